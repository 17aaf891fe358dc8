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
