/* The kernel transports: POSIX message queues and Unix SOCK_SEQPACKET.
 *
 * Both copy: the producer writes the payload into its own buffer, the
 * kernel copies it in at send and out at receive into the consumer's
 * buffer. With two consumers the producer sends twice. Busy-poll mode uses
 * non-blocking calls in a loop (O_NONBLOCK / MSG_DONTWAIT, EAGAIN); blocking
 * mode the plain blocking calls.
 *
 * Limits met here, and stated rather than hidden (tx_spec.note):
 *  - mq: fs.mqueue.msg_max (10 here) caps the depth and fs.mqueue.msgsize_max
 *    (8192) the message size; raising either needs CAP_SYS_RESOURCE, which
 *    this machine's root lacks, and RLIMIT_MSGQUEUE (800 KiB per user) caps
 *    the bytes. A larger payload goes as msgsize_max fragments (as iceperf
 *    does); the consumer reassembles them.
 *  - SOCK_SEQPACKET: a datagram must fit the socket's send buffer
 *    (net.core.wmem_max); the buffers are sized for the depth with
 *    SO_SNDBUFFORCE where CAP_NET_ADMIN allows, else SO_SNDBUF. A datagram
 *    the kernel refuses (EMSGSIZE) is split in halves until it fits, and the
 *    fragment size is noted. */
#ifndef MBQ_BENCH_TX_KERNEL_H
#define MBQ_BENCH_TX_KERNEL_H

#include "transports.h"

#include <fcntl.h>
#include <mqueue.h>
#include <sys/socket.h>

struct kq_shared {
    long msgsize;               /* mq: bytes per kernel message */
    _Atomic long frag;          /* uds: the datagram size that fits */
    int sv[TX_MAX_FAN][2];      /* uds: [i][0] producer, [i][1] consumer i */
    char mqname[TX_MAX_FAN][96];
};

struct kq_end {
    struct tx_spec *s;
    struct kq_shared *sh;
    unsigned n;
    mqd_t mq[TX_MAX_FAN];
    int fd[TX_MAX_FAN];
    long frag;
    uint8_t *buf;
};

static long read_proc_long(const char *path, long dflt)
{
    FILE *f = fopen(path, "re");
    long v = dflt;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = dflt;
        fclose(f);
    }
    return v;
}

static int kq_end_new(struct tx_spec *s, struct kq_end **out)
{
    struct kq_end *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->s = s;
    e->sh = s->shared;
    e->buf = aligned_alloc(4096, (s->payload + 4095) & ~(size_t)4095);
    if (!e->buf) {
        free(e);
        return -ENOMEM;
    }
    memset(e->buf, 0, s->payload);
    for (unsigned i = 0; i < TX_MAX_FAN; i++) {
        e->mq[i] = (mqd_t)-1;
        e->fd[i] = -1;
    }
    *out = e;
    return 0;
}

static void kq_close(void *p)
{
    struct kq_end *e = p;
    for (unsigned i = 0; i < TX_MAX_FAN; i++)
        if (e->mq[i] != (mqd_t)-1)
            mq_close(e->mq[i]);
    free(e->buf);
    free(e);
}

static int kq_proc_init(struct tx_spec *s)
{
    (void)s;
    return 0;
}

static void kq_proc_fini(void)
{
}

static void *kq_loan(void *tx, int *err)
{
    (void)err;
    return ((struct kq_end *)tx)->buf;
}

static void kq_done(void *rx, const void *payload)
{
    (void)rx;
    (void)payload;
}

/* ---- POSIX mq ---- */

static int mq_prepare(struct tx_spec *s)
{
    struct kq_shared *sh = tx_shared_alloc(s, sizeof(struct kq_shared));
    if (!sh)
        return -ENOMEM;
    long msg_max = read_proc_long("/proc/sys/fs/mqueue/msg_max", 10);
    long size_max = read_proc_long("/proc/sys/fs/mqueue/msgsize_max", 8192);
    long depth = s->depth < (uint32_t)msg_max ? (long)s->depth : msg_max;
    sh->msgsize = (long)s->payload < size_max ? (long)s->payload : size_max;
    if (depth != (long)s->depth)
        tx_note(s, "mq depth %ld (fs.mqueue.msg_max)", depth);
    if (sh->msgsize != (long)s->payload)
        tx_note(s, "mq: %zu fragments of %ld B (fs.mqueue.msgsize_max)",
                s->payload / (size_t)sh->msgsize, sh->msgsize);
    for (unsigned i = 0; i < s->fan; i++) {
        snprintf(sh->mqname[i], sizeof(sh->mqname[i]), "/mbqbench-%d-%s-%u", (int)getpid(),
                 s->name, i);
        struct mq_attr a = {.mq_maxmsg = depth, .mq_msgsize = sh->msgsize};
        mqd_t m = mq_open(sh->mqname[i], O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, &a);
        if (m == (mqd_t)-1)
            return -errno;
        mq_close(m);
    }
    return 0;
}

static void mq_unprepare(struct tx_spec *s)
{
    struct kq_shared *sh = s->shared;
    if (sh)
        for (unsigned i = 0; i < s->fan; i++)
            if (sh->mqname[i][0])
                mq_unlink(sh->mqname[i]);
    tx_shared_free(s);
}

static int mq_open_end(struct tx_spec *s, bool tx, unsigned which, void **out)
{
    struct kq_end *e;
    int r = kq_end_new(s, &e);
    if (r < 0)
        return r;
    int flags = (tx ? O_WRONLY : O_RDONLY) | O_CLOEXEC | (s->wait == TX_POLL ? O_NONBLOCK : 0);
    unsigned first = tx ? 0 : which, last = tx ? s->fan : which + 1;
    for (unsigned i = first; i < last; i++) {
        e->mq[e->n] = mq_open(e->sh->mqname[i], flags);
        if (e->mq[e->n] == (mqd_t)-1) {
            r = -errno;
            kq_close(e);
            return r;
        }
        e->n++;
    }
    *out = e;
    return 0;
}

static int mq_open_tx(struct tx_spec *s, void **out)
{
    return mq_open_end(s, true, 0, out);
}

static int mq_open_rx(struct tx_spec *s, unsigned which, void **out)
{
    return mq_open_end(s, false, which, out);
}

static int mq_send_(void *tx, void *payload, uint64_t seq)
{
    struct kq_end *e = tx;
    (void)seq;
    size_t total = e->s->payload, chunk = (size_t)e->sh->msgsize;
    for (unsigned i = 0; i < e->n; i++) {
        for (size_t off = 0; off < total; off += chunk) {
            size_t len = total - off < chunk ? total - off : chunk;
            while (mq_send(e->mq[i], (const char *)payload + off, len, 0) != 0) {
                if (errno == EAGAIN)
                    cpu_relax();
                else if (errno != EINTR)
                    return -errno;
            }
        }
    }
    return 0;
}

static const void *mq_recv_(void *rx, int *err)
{
    struct kq_end *e = rx;
    size_t total = e->s->payload, got = 0;
    while (got < total) {
        ssize_t n = mq_receive(e->mq[0], (char *)e->buf + got, (size_t)e->sh->msgsize, NULL);
        if (n < 0) {
            if (errno == EAGAIN && got == 0) {
                *err = -EAGAIN;
                return NULL;
            }
            if (errno == EAGAIN) { /* the rest of the message is on its way */
                cpu_relax();
                continue;
            }
            if (errno == EINTR)
                continue;
            *err = -errno;
            return NULL;
        }
        got += (size_t)n;
    }
    return e->buf;
}

static const struct tx_ops tx_mq = {
    .name = "mq",
    .prepare = mq_prepare,
    .unprepare = mq_unprepare,
    .proc_init = kq_proc_init,
    .proc_fini = kq_proc_fini,
    .open_tx = mq_open_tx,
    .open_rx = mq_open_rx,
    .close_tx = kq_close,
    .close_rx = kq_close,
    .loan = kq_loan,
    .send = mq_send_,
    .recv = mq_recv_,
    .done = kq_done,
};

/* ---- Unix SOCK_SEQPACKET ---- */

static int uds_size_buffer(int fd, int opt_force, int opt, int want)
{
    if (setsockopt(fd, SOL_SOCKET, opt_force, &want, sizeof(want)) == 0)
        return 1;
    setsockopt(fd, SOL_SOCKET, opt, &want, sizeof(want));
    return 0;
}

static int uds_prepare(struct tx_spec *s)
{
    struct kq_shared *sh = tx_shared_alloc(s, sizeof(struct kq_shared));
    if (!sh)
        return -ENOMEM;
    for (unsigned i = 0; i < TX_MAX_FAN; i++)
        sh->sv[i][0] = sh->sv[i][1] = -1;
    /* room for depth messages (the kernel doubles the figure for its
     * bookkeeping), at least one whole message */
    size_t want = (size_t)s->depth * (s->payload + 1024);
    if (want < s->payload + 65536)
        want = s->payload + 65536;
    if (want > (1u << 30))
        want = 1u << 30;
    int forced = 1;
    for (unsigned i = 0; i < s->fan; i++) {
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sh->sv[i]) != 0)
            return -errno;
        forced &= uds_size_buffer(sh->sv[i][0], SO_SNDBUFFORCE, SO_SNDBUF, (int)want);
        forced &= uds_size_buffer(sh->sv[i][1], SO_RCVBUFFORCE, SO_RCVBUF, (int)want);
    }
    if (!forced)
        tx_note(s, "uds buffers capped by net.core.[rw]mem_max");
    sh->frag = (long)s->payload;
    return 0;
}

static void uds_unprepare(struct tx_spec *s)
{
    struct kq_shared *sh = s->shared;
    if (sh)
        for (unsigned i = 0; i < TX_MAX_FAN; i++)
            for (unsigned k = 0; k < 2; k++)
                if (sh->sv[i][k] >= 0)
                    close(sh->sv[i][k]);
    tx_shared_free(s);
}

static int uds_open_tx(struct tx_spec *s, void **out)
{
    struct kq_end *e;
    int r = kq_end_new(s, &e);
    if (r < 0)
        return r;
    for (unsigned i = 0; i < s->fan; i++)
        e->fd[e->n++] = e->sh->sv[i][0];
    e->frag = atomic_load(&e->sh->frag);
    *out = e;
    return 0;
}

static int uds_open_rx(struct tx_spec *s, unsigned which, void **out)
{
    struct kq_end *e;
    int r = kq_end_new(s, &e);
    if (r < 0)
        return r;
    e->fd[e->n++] = e->sh->sv[which][1];
    *out = e;
    return 0;
}

static int uds_send(void *tx, void *payload, uint64_t seq)
{
    struct kq_end *e = tx;
    (void)seq;
    int flags = MSG_NOSIGNAL | (e->s->wait == TX_POLL ? MSG_DONTWAIT : 0);
    size_t total = e->s->payload;
    for (unsigned i = 0; i < e->n; i++) {
        for (size_t off = 0; off < total;) {
            size_t len = total - off < (size_t)e->frag ? total - off : (size_t)e->frag;
            ssize_t n = send(e->fd[i], (const char *)payload + off, len, flags);
            if (n >= 0) {
                off += (size_t)n;
                continue;
            }
            if (errno == EAGAIN) {
                cpu_relax();
            } else if (errno == EMSGSIZE && e->frag > 4096) {
                e->frag /= 2;
                if (atomic_exchange(&e->sh->frag, e->frag) != e->frag)
                    tx_note(e->s, "uds: %ld B datagrams", e->frag);
            } else if (errno != EINTR) {
                return -errno;
            }
        }
    }
    return 0;
}

static const void *uds_recv(void *rx, int *err)
{
    struct kq_end *e = rx;
    int flags = e->s->wait == TX_POLL ? MSG_DONTWAIT : 0;
    size_t total = e->s->payload, got = 0;
    while (got < total) {
        ssize_t n = recv(e->fd[0], e->buf + got, total - got, flags);
        if (n < 0) {
            if (errno == EAGAIN && got == 0) {
                *err = -EAGAIN;
                return NULL;
            }
            if (errno == EAGAIN) {
                cpu_relax();
                continue;
            }
            if (errno == EINTR)
                continue;
            *err = -errno;
            return NULL;
        }
        if (n == 0) {
            *err = -EPIPE;
            return NULL;
        }
        got += (size_t)n;
    }
    return e->buf;
}

static const struct tx_ops tx_uds = {
    .name = "uds",
    .prepare = uds_prepare,
    .unprepare = uds_unprepare,
    .proc_init = kq_proc_init,
    .proc_fini = kq_proc_fini,
    .open_tx = uds_open_tx,
    .open_rx = uds_open_rx,
    .close_tx = kq_close,
    .close_rx = kq_close,
    .loan = kq_loan,
    .send = uds_send,
    .recv = uds_recv,
    .done = kq_done,
};

#endif
