// The Linux calls that Swift's Glibc module leaves out, wrapped so Swift sees plain C types.
// Only Sources/Mesh/Transport/Socket.swift, EventLoop.swift and Launch/ProcessHub.swift call these.
#ifndef CMESH_SYSTEM_H
#define CMESH_SYSTEM_H

#include <stdint.h>

/// epoll_create1(EPOLL_CLOEXEC).
int cmesh_epoll_create(void);

/// epoll_ctl with the event mask and a 64-bit token; op is 1 add, 2 delete, 3 modify.
int cmesh_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token);

/// epoll_wait into two parallel arrays (epoll_event is packed on x86_64, awkward from Swift).
int cmesh_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int capacity, int timeout_ms);

/// eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC).
int cmesh_eventfd(void);

/// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC.
int cmesh_accept(int fd, void *address, uint32_t *length);

/// socket() with SOCK_NONBLOCK | SOCK_CLOEXEC added to the type.
int cmesh_socket(int domain, int type);

/// Makes standard output line-buffered, so piped output appears line by line.
void cmesh_line_buffer_stdout(void);

/// Starts `path` (an absolute path) as a child process, without a shell, for `mesh launch`.
///
/// Between fork and exec the child only makes async-signal-safe calls: it becomes the leader of a
/// new process group, asks for SIGKILL when the forking thread ends (PR_SET_PDEATHSIG; call this
/// from a thread that lives as long as the process), exits at once if its parent is already gone,
/// resets every signal's disposition and mask, puts stdin_fd, stdout_fd and stderr_fd on 0, 1 and
/// 2, changes to `cwd` when it is not NULL, and marks every other descriptor close-on-exec.
/// Returns the child's pid, or -1 with `*failed_errno` set and `*failed_step` naming the step that
/// failed ("fork", "chdir", "exec", ...); a child that failed before exec has been reaped.
int cmesh_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd, int stdin_fd,
                int stdout_fd, int stderr_fd, int *failed_errno, const char **failed_step);

/// pipe2 with O_CLOEXEC, and O_NONBLOCK on both ends when `nonblocking` is not 0.
int cmesh_pipe(int fds[2], int nonblocking);

/// pidfd_open(pid, 0): a descriptor that polls readable when the process exits; -1 where unsupported.
int cmesh_pidfd_open(int pid);

/// waitpid(pid, &status, WNOHANG): the pid once it has exited (then `*status` is the raw wait
/// status), 0 while it runs, -1 on error.
int cmesh_reap(int pid, int *status);

/// Decodes a raw wait status: the exit code, or -1 when a signal ended the process.
int cmesh_exit_code(int status);

/// The signal that ended the process, or 0.
int cmesh_exit_signal(int status);

extern const uint32_t cmesh_epollin;
extern const uint32_t cmesh_epollout;
extern const uint32_t cmesh_epollerr;
extern const uint32_t cmesh_epollhup;
extern const uint32_t cmesh_epollrdhup;

#endif
