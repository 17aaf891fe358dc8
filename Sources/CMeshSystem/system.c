#define _GNU_SOURCE
#include "CMeshSystem.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <stdio.h>

const uint32_t cmesh_epollin = EPOLLIN;
const uint32_t cmesh_epollout = EPOLLOUT;
const uint32_t cmesh_epollerr = EPOLLERR;
const uint32_t cmesh_epollhup = EPOLLHUP;
const uint32_t cmesh_epollrdhup = EPOLLRDHUP;

int cmesh_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cmesh_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token) {
    struct epoll_event event;
    event.events = events;
    event.data.u64 = token;
    int cop = op == 1 ? EPOLL_CTL_ADD : (op == 2 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD);
    return epoll_ctl(epfd, cop, fd, &event);
}

int cmesh_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int capacity, int timeout_ms) {
    struct epoll_event ready[256];
    if (capacity > 256) capacity = 256;
    int count = epoll_wait(epfd, ready, capacity, timeout_ms);
    for (int i = 0; i < count; i++) {
        tokens[i] = ready[i].data.u64;
        events[i] = ready[i].events;
    }
    return count;
}

int cmesh_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int cmesh_accept(int fd, void *address, uint32_t *length) {
    return accept4(fd, (struct sockaddr *)address, (socklen_t *)length, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int cmesh_socket(int domain, int type) { return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); }

void cmesh_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

// ---- Child processes for `mesh launch` ----

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/// What the child writes to the error pipe when a step before exec (or exec itself) fails.
struct spawn_failure {
    int step;
    int error;
};

static const char *spawn_steps[] = {"fork", "setpgid", "prctl", "parent gone", "dup", "chdir", "exec"};

/// The child's side: never returns. Only async-signal-safe calls from here on.
static void spawn_child(const char *path, char *const argv[], char *const envp[], const char *cwd, int fds[3],
                        int report, pid_t parent) {
    struct spawn_failure failure = {0, 0};
    if (setpgid(0, 0) != 0) { failure.step = 1; goto fail; }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) { failure.step = 2; goto fail; }
    // The parent may have died between fork and prctl: then nobody would ever kill us.
    if (getppid() != parent) { failure.step = 3; errno = ESRCH; goto fail; }
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = SIG_DFL;
        sigaction(sig, &action, NULL);  // fails harmlessly for the signals libc reserves
    }
    // Move the three descriptors above 2 first, so none is overwritten by another's dup2.
    int high[3];
    for (int i = 0; i < 3; i++) {
        high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
        if (high[i] < 0) { failure.step = 4; goto fail; }
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(high[i], i) < 0) { failure.step = 4; goto fail; }
    }
    if (cwd != NULL && chdir(cwd) != 0) { failure.step = 5; goto fail; }
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 3; fd < 65536; fd++) {
            if (fd != report) fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(path, argv, envp);
    failure.step = 6;
fail:
    failure.error = errno;
    while (write(report, &failure, sizeof failure) < 0 && errno == EINTR) {}
    _exit(127);
}

int cmesh_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd, int stdin_fd,
                int stdout_fd, int stderr_fd, int *failed_errno, const char **failed_step) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        *failed_errno = errno;
        *failed_step = "pipe";
        return -1;
    }
    // Signals stay blocked across fork so no handler runs in the child before it resets them.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        int fds[3] = {stdin_fd, stdout_fd, stderr_fd};
        spawn_child(path, argv, envp, cwd, fds, report[1], parent);
    }
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(report[1]);
    if (pid < 0) {
        close(report[0]);
        *failed_errno = fork_errno;
        *failed_step = "fork";
        return -1;
    }
    // The pipe closes on a successful exec; otherwise the child says which step failed.
    struct spawn_failure failure;
    ssize_t count;
    do { count = read(report[0], &failure, sizeof failure); } while (count < 0 && errno == EINTR);
    close(report[0]);
    if (count == (ssize_t)sizeof failure) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        *failed_errno = failure.error;
        *failed_step = spawn_steps[failure.step];
        return -1;
    }
    return pid;
}

int cmesh_pipe(int fds[2], int nonblocking) { return pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0)); }

int cmesh_pidfd_open(int pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

int cmesh_reap(int pid, int *status) {
    int result;
    do { result = waitpid(pid, status, WNOHANG); } while (result < 0 && errno == EINTR);
    return result;
}

int cmesh_exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

int cmesh_exit_signal(int status) { return WIFSIGNALED(status) ? WTERMSIG(status) : 0; }
