/* Framing of the control protocol over SOCK_SEQPACKET.
 *
 * One packet carries one protobuf-c message of at most WIRE_MAX_PACKET
 * bytes and at most WIRE_MAX_FDS descriptors (SCM_RIGHTS), referred to by
 * their index. wire_recv rejects a packet that was truncated (MSG_TRUNC) or
 * whose descriptors were (MSG_CTRUNC), closing whatever arrived; every fd
 * it returns is close-on-exec. A received fd set is owned by the caller:
 * wire_fds_take() claims one by index, wire_fds_close() closes the rest,
 * so an fd a message does not refer to never leaks. */
#ifndef MBQ_PROTO_WIRE_H
#define MBQ_PROTO_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WIRE_MAX_PACKET 65536
/* A queue's segment and its up to BQ_MAX_TRIGGERS trigger eventfds go in
 * one packet; the kernel allows at most 253 (SCM_MAX_FD). */
#define WIRE_MAX_FDS 160

struct wire_fds {
    int fd[WIRE_MAX_FDS];
    unsigned n;
};

/* Sends one packet with nfds descriptors (borrowed). Non-blocking if the
 * socket is. Returns 0, -EMSGSIZE, or -errno (-EAGAIN when the socket
 * buffer is full). Never raises SIGPIPE. */
int wire_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds);
/* Receives one packet into buf (cap >= WIRE_MAX_PACKET recommended).
 * Returns its length (0 for an orderly shutdown), -EMSGSIZE for a truncated
 * packet or descriptor array (everything received is closed), or -errno. */
ssize_t wire_recv(int sock, void *buf, size_t cap, struct wire_fds *fds);
/* Takes the descriptor at index out of the set: returns it, or -1 if the
 * index is out of range or already taken. */
int wire_fds_take(struct wire_fds *fds, uint32_t index);
void wire_fds_close(struct wire_fds *fds);

#endif
