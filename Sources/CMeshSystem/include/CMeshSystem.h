// The Linux calls that Swift's Glibc module leaves out, wrapped so Swift sees plain C types.
// Only Sources/Mesh/Transport/Socket.swift and EventLoop.swift call these.
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

extern const uint32_t cmesh_epollin;
extern const uint32_t cmesh_epollout;
extern const uint32_t cmesh_epollerr;
extern const uint32_t cmesh_epollhup;
extern const uint32_t cmesh_epollrdhup;

#endif
