/* rnet: see rnet.h.
 *
 * Each node is a small state machine driven by rnet_run's poll() loop:
 *   connecting (each resolved address in turn, sharing the connect timeout)
 *   -> handshake (TLS only) -> send (one batch of commands, one buffer)
 *   -> recv (one reply per command of the batch, each handed to on_reply)
 *   -> send the next batch, or done.
 * Every state has a deadline; the loop sleeps until the earliest one. Where a failure is
 * met decides its class, so no caller has to read a message to learn what happened.
 */
#include "rnet.h"

#include "rctime.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

const char *rnet_class_to_string(enum rnet_class c) {
    switch (c) {
    case RNET_OK: return "ok";
    case RNET_UNREACHABLE: return "unreachable";
    case RNET_TLS: return "tls-error";
    case RNET_CERT: return "certificate-error";
    case RNET_PROTOCOL: return "protocol-error";
    case RNET_INTERNAL: return "internal-error";
    }
    return "?";
}

enum cstate { C_CONNECTING, C_HANDSHAKE, C_SEND, C_RECV, C_DONE };

struct conn {
    struct rnet_node *nd;
    const struct rnet_opts *o;
    enum cstate st;
    int fd;
    struct addrinfo *ais, *ai;     /* TCP: the resolved addresses, tried in turn */
    size_t ai_left;
    int last_err;                  /* the last connect attempt's -errno */
    char name[300];                /* host:port as configured */
    char label[NI_MAXHOST + 8];    /* " (addr)" when the address is not what was asked */
    struct tls_session *tls;
    char *out;                     /* the batch, formatted; wiped after use */
    size_t out_len, out_off;
    struct resp_reader *rd;
    short want;
    uint64_t t0, connect_deadline, deadline;
    size_t cur;                    /* the command whose reply comes next */
    size_t batch_start, batch_end; /* the batch written last: [start, end) */
    uint64_t batch_t0;             /* when its write began */
    long jump;                     /* >= 0: after the batch's replies, go there */
};

static void conn_close(struct conn *c) {
    if (c->tls)
        c->tls = tls_session_free(c->tls);   /* closes the fd it owns */
    else if (c->fd >= 0)
        (void)close(c->fd);
    c->fd = -1;
    if (c->out) {
        explicit_bzero(c->out, c->out_len);
        free(c->out);
        c->out = NULL;
    }
    c->rd = resp_reader_free(c->rd);
    if (c->ais)
        freeaddrinfo(c->ais);
    c->ais = c->ai = NULL;
}

static void conn_done(struct conn *c, enum rnet_class cls) {
    conn_close(c);
    c->st = C_DONE;
    c->nd->cls = cls;
    c->nd->step = c->cur;
    c->nd->usec = rctime_mono_usec() - c->t0;
}

static void conn_fail(struct conn *c, enum rnet_class cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_fail(struct conn *c, enum rnet_class cls, const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(c->nd->msg, sizeof c->nd->msg, fmt, ap);
    va_end(ap);
    conn_done(c, cls);
}

static const char *io_why(int err, uint64_t timeout_usec, char *buf, size_t size) {
    if (err == -ETIMEDOUT) {
        snprintf(buf, size, "timed out after %llu ms", (unsigned long long)(timeout_usec / 1000));
        return buf;
    }
    return strerror_r(-err, buf, size);
}

static const char *step_label(const struct conn *c) {
    const struct rnet_cmd *cmd = &c->nd->script[c->cur < c->nd->nscript ? c->cur : 0];
    return cmd->label ? cmd->label : cmd->argv[0];
}

/* How long the reply now awaited was allowed: k timeouts for the k-th of its batch. */
static uint64_t reply_allowance(const struct conn *c) {
    return (uint64_t)(c->cur - c->batch_start + 1) * c->o->timeout_usec;
}

/* ------------------------------------------------------------------------------------
 * Commands
 */

static void conn_io(struct conn *c);

/* Formats commands from `start` (and those pipelined after it) into one buffer. hiredis's
 * copy is wiped here, ours once written or in conn_close(): any command may carry a
 * secret. */
static int format_batch(struct conn *c, size_t start, size_t *ret_end) {
    const struct rnet_node *nd = c->nd;
    char *buf = NULL;
    size_t len = 0, end = start;
    int r = 0;

    do {
        const struct rnet_cmd *cmd = &nd->script[end];
        bool lens = false;
        for (int i = 0; i < cmd->argc; i++)
            lens = lens || cmd->argvlen[i];
        char *one = NULL;
        int n = redisFormatCommandArgv(&one, cmd->argc, (const char **)cmd->argv,
                                       lens ? cmd->argvlen : NULL);
        char *grown = n < 0 || !one ? NULL : malloc(len + (size_t)n);
        if (grown) {
            if (buf)
                memcpy(grown, buf, len);
            memcpy(grown + len, one, (size_t)n);
        }
        if (buf) {
            explicit_bzero(buf, len);
            free(buf);
        }
        if (one) {
            explicit_bzero(one, n > 0 ? (size_t)n : 0);
            free(one);
        }
        buf = grown;
        if (!buf) {
            r = -ENOMEM;
            break;
        }
        len += (size_t)n;
        end++;
    } while (end < nd->nscript && nd->script[end].pipelined);
    if (r < 0)
        return r;
    c->out = buf;
    c->out_len = len;
    c->out_off = 0;
    *ret_end = end;
    return 0;
}

static void send_batch(struct conn *c, size_t start) {
    if (start >= c->nd->nscript) {
        conn_done(c, RNET_OK);
        return;
    }
    c->cur = start;
    if (format_batch(c, start, &c->batch_end) < 0) {
        conn_fail(c, RNET_INTERNAL, "%s: out of memory", step_label(c));
        return;
    }
    c->batch_start = start;
    c->batch_t0 = rctime_mono_usec();
    c->deadline = rctime_add_sat(c->batch_t0, c->o->timeout_usec);
    c->jump = -1;
    c->st = C_SEND;
}

static void start_script(struct conn *c) {
    c->rd = resp_reader_new(c->o->max_reply_bytes ? c->o->max_reply_bytes : RESP_MAX_REPLY_BYTES,
                            RESP_MAX_ELEMENTS);
    if (!c->rd) {
        conn_fail(c, RNET_INTERNAL, "out of memory");
        return;
    }
    send_batch(c, c->nd->first);
}

/* A whole reply came for command c->cur: hand it over (or drop it, jumped over) and
 * decide what comes next. */
static void got_reply(struct conn *c, redisReply *reply) {
    long next;

    c->nd->answered = true;
    if (c->jump >= 0) {
        resp_reply_wipe_free(reply);
        next = c->jump;
    } else {
        next = c->o->on_reply(c->o->userdata, c->nd, c->cur, reply);
        if (next == RNET_STOP || next < 0 || (size_t)next >= c->nd->nscript) {
            conn_done(c, RNET_OK);
            return;
        }
    }
    if (c->cur + 1 < c->batch_end) {
        /* more replies of this batch are on their way */
        if ((size_t)next != c->cur + 1)
            c->jump = next;
        c->cur++;
        c->deadline = rctime_add_sat(c->batch_t0, reply_allowance(c));
        return;
    }
    send_batch(c, (size_t)next);
}

/* ------------------------------------------------------------------------------------
 * Reading and writing
 */

static ssize_t plain_result(ssize_t n) {
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
}

static ssize_t conn_write(struct conn *c, const void *buf, size_t len, short *ev) {
    if (c->tls)
        return tls_session_write(c->tls, buf, len, ev);
    return plain_result(send(c->fd, buf, len, MSG_NOSIGNAL));
}

static ssize_t conn_read(struct conn *c, void *buf, size_t len, short *ev) {
    if (c->tls)
        return tls_session_read(c->tls, buf, len, ev);
    return plain_result(recv(c->fd, buf, len, 0));
}

/* The link failed while writing or reading (rc: 0 = closed, else -errno). Over TLS an
 * alert is a TLS error, and so is the server dropping the connection before its first
 * reply: with TLS 1.3 the server judges our certificate (mutual TLS) only after our side
 * of the handshake is done, and its alert may be lost in the reset. After a reply came, a
 * failure other than an alert is the link's, as over TCP. The alert, when one came, is
 * picked up by one more read if the write met the reset first. */
static void link_failed(struct conn *c, const char *dir, int rc) {
    char why[160];
    const char *t = c->tls ? tls_session_errstr(c->tls) : "";
    const char *how = rc == 0 ? "connection closed by server"
                              : io_why(rc, c->o->timeout_usec, why, sizeof why);

    if (c->tls && rc != -EPROTO && !*t && !c->nd->answered) {
        char buf[256];
        short ev;
        ssize_t r = tls_session_read(c->tls, buf, sizeof buf, &ev);
        explicit_bzero(buf, sizeof buf);
        if (r == -EPROTO && *tls_session_errstr(c->tls))
            rc = -EPROTO;
        t = tls_session_errstr(c->tls);
    }
    if (c->tls && rc == -EPROTO && *t)
        conn_fail(c, RNET_TLS, "%s: %s: %s", step_label(c), dir, t);
    else if (!c->tls || c->nd->answered)
        conn_fail(c, RNET_UNREACHABLE, "%s: %s: %s", step_label(c), dir, how);
    else
        conn_fail(c, RNET_TLS, "%s: %s: %s right after the TLS handshake (does the server "
                  "require a client certificate, or not trust ours?)", step_label(c), dir, how);
}

/* Writes what is left of the batch; false when it must wait (or ended). */
static bool do_send(struct conn *c) {
    while (c->out_off < c->out_len) {
        short ev = POLLOUT;
        ssize_t n = conn_write(c, c->out + c->out_off, c->out_len - c->out_off, &ev);
        if (n == -EAGAIN) {
            c->want = ev;
            return false;
        }
        if (n <= 0) {
            link_failed(c, "write", n ? (int)n : -EPIPE);
            return false;
        }
        c->out_off += (size_t)n;
    }
    explicit_bzero(c->out, c->out_len);
    free(c->out);
    c->out = NULL;
    c->deadline = rctime_add_sat(c->batch_t0, reply_allowance(c));
    c->st = C_RECV;
    return true;
}

/* The reader refused the reply (rc: -EPROTO, or -EMSGSIZE over a cap). */
static void over_cap(struct conn *c, int rc) {
    c->nd->over_cap = rc == -EMSGSIZE;
    c->nd->over_objects = c->nd->over_cap && resp_reader_over_objects(c->rd);
    conn_fail(c, RNET_PROTOCOL, "%s: read: %s", step_label(c), resp_reader_errstr(c->rd));
}

/* Takes a reply out of the reader, or reads more; false when it must wait (or ended). */
static bool do_recv(struct conn *c) {
    char buf[16384];
    redisReply *reply = NULL;
    int rc = resp_reader_get(c->rd, &reply);

    if (rc < 0) {
        over_cap(c, rc);
        return false;
    }
    if (rc > 0) {
        got_reply(c, reply);
        return c->st != C_DONE;
    }
    short ev = POLLIN;
    ssize_t n = conn_read(c, buf, sizeof buf, &ev);
    if (n == -EAGAIN) {
        c->want = ev;
        return false;
    }
    if (n <= 0) {
        link_failed(c, "read", (int)n);
        return false;
    }
    rc = resp_reader_feed(c->rd, buf, (size_t)n);
    explicit_bzero(buf, (size_t)n);
    if (rc < 0) {
        over_cap(c, rc);
        return false;
    }
    return true;
}

/* false when it must wait (or ended). */
static bool do_handshake(struct conn *c) {
    short ev = 0;
    int rc = tls_session_handshake(c->tls, &ev);
    char msg[300];

    if (rc == 1) {
        c->want = ev;
        return false;
    }
    if (rc == 0) {
        c->nd->connected = true;
        start_script(c);
        return c->st != C_DONE;
    }
    tls_session_handshake_error(c->tls, rc, c->o->timeout_usec, msg, sizeof msg);
    conn_fail(c, rc == -EKEYREJECTED ? RNET_CERT
                 : tls_session_errstr(c->tls)[0] || rc == -EPROTO ? RNET_TLS
                                                                  : RNET_UNREACHABLE,
              "connect %s: %s", c->name, msg);
    return false;
}

/* Moves c on as far as it can go without waiting; sets c->want when it must wait. */
static void conn_io(struct conn *c) {
    for (;;) {
        switch (c->st) {
        case C_DONE:
        case C_CONNECTING:
            return;
        case C_HANDSHAKE:
            if (!do_handshake(c))
                return;
            break;
        case C_SEND:
            if (!do_send(c))
                return;
            break;
        case C_RECV:
            if (!do_recv(c))
                return;
            break;
        }
    }
}

/* ------------------------------------------------------------------------------------
 * Connecting
 */

static void connected(struct conn *c) {
    char err[300];
    const char *vn = c->nd->verify_name && *c->nd->verify_name ? c->nd->verify_name
                                                               : c->nd->ep.host;
    int one = 1;

    if (c->nd->ep.kind == ENDPOINT_TCP)
        /* Small request/response exchanges: do not let Nagle hold a command back. */
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->ais)
        freeaddrinfo(c->ais);
    c->ais = c->ai = NULL;
    if (!c->o->tls || c->nd->ep.kind != ENDPOINT_TCP) {
        c->nd->connected = true;
        start_script(c);
        conn_io(c);
        return;
    }
    if (tls_session_new(c->o->tls, c->fd, vn, &c->tls, err, sizeof err) < 0) {
        c->fd = -1;   /* closed by tls_session_new */
        conn_fail(c, RNET_TLS, "connect %s: %s", c->name, err);
        return;
    }
    c->st = C_HANDSHAKE;
    c->deadline = c->connect_deadline;
    conn_io(c);
}

static void address_label(struct conn *c) {
    char addr[NI_MAXHOST];

    if (getnameinfo(c->ai->ai_addr, c->ai->ai_addrlen, addr, sizeof addr, NULL, 0,
                    NI_NUMERICHOST) != 0)
        snprintf(addr, sizeof addr, "?");
    if (strcmp(addr, c->nd->ep.host) == 0)
        c->label[0] = '\0';
    else
        snprintf(c->label, sizeof c->label, " (%s)", addr);
}

/* Starts connecting to the next address, or gives up with the last attempt's error. */
static void try_next_address(struct conn *c) {
    char why[96];

    for (; c->ai; c->ai = c->ai->ai_next, c->ai_left--) {
        uint64_t now = rctime_mono_usec();
        if (now >= c->connect_deadline) {
            c->last_err = -ETIMEDOUT;
            break;
        }
        address_label(c);
        c->fd = socket(c->ai->ai_family, c->ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                       c->ai->ai_protocol);
        if (c->fd < 0) {
            c->last_err = -errno;
            continue;
        }
        if (connect(c->fd, c->ai->ai_addr, c->ai->ai_addrlen) == 0) {
            connected(c);
            return;
        }
        if (errno == EINPROGRESS || errno == EINTR) {
            /* each address gets an equal share of the time left (one black-holed
             * address must not eat the whole timeout) */
            c->deadline = now + (c->connect_deadline - now) / (c->ai_left ? c->ai_left : 1);
            c->st = C_CONNECTING;
            c->want = POLLOUT;
            return;
        }
        c->last_err = -errno;
        (void)close(c->fd);
        c->fd = -1;
    }
    conn_fail(c, RNET_UNREACHABLE, "connect %s%s: %s", c->name, c->label,
              io_why(c->last_err ? c->last_err : -EHOSTUNREACH, c->o->timeout_usec, why,
                     sizeof why));
}

/* The address under way failed (err) or timed out: on to the next one. */
static void next_address(struct conn *c, int err) {
    c->last_err = err;
    (void)close(c->fd);
    c->fd = -1;
    c->ai = c->ai->ai_next;
    c->ai_left--;
    try_next_address(c);
}

/* The fd became ready (or errored) while connecting. */
static void connect_ready(struct conn *c) {
    int soerr = 0;
    socklen_t l = sizeof soerr;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0)
        soerr = errno;
    if (soerr == 0)
        connected(c);
    else
        next_address(c, -soerr);
}

/* Local: connect() on a unix socket does not wait on the network (a full backlog fails
 * at once with EAGAIN). */
static void begin_unix(struct conn *c) {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t plen = strnlen(c->nd->ep.path, sizeof c->nd->ep.path);
    char why[96];

    if (plen >= sizeof sa.sun_path) {
        conn_fail(c, RNET_INTERNAL, "connect %s: path too long", c->name);
        return;
    }
    memcpy(sa.sun_path, c->nd->ep.path, plen);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa,
                             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1)) < 0) {
        int e = errno;
        conn_fail(c, RNET_UNREACHABLE, "connect %s: %s", c->name, strerror_r(e, why, sizeof why));
        return;
    }
    connected(c);
}

static void begin_tcp(struct conn *c) {
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    char port[8];
    int gai;

    snprintf(port, sizeof port, "%u", (unsigned)c->nd->ep.port);
    /* getaddrinfo() has no deadline: names are resolved within the resolver's own
     * timeouts (resolv.conf); address literals never wait. */
    gai = getaddrinfo(c->nd->ep.host, port, &hints, &c->ais);
    if (gai != 0) {
        c->ais = NULL;
        conn_fail(c, RNET_UNREACHABLE, "connect %s: resolve: %s", c->name, gai_strerror(gai));
        return;
    }
    for (c->ai = c->ais; c->ai; c->ai = c->ai->ai_next)
        c->ai_left++;
    c->ai = c->ais;
    try_next_address(c);
}

static void conn_begin(const struct rnet_opts *o, struct conn *c, struct rnet_node *nd) {
    memset(c, 0, sizeof *c);
    c->nd = nd;
    c->o = o;
    c->fd = -1;
    c->jump = -1;
    c->t0 = rctime_mono_usec();
    c->connect_deadline = rctime_add_sat(c->t0, o->timeout_usec);
    endpoint_format(&nd->ep, c->name, sizeof c->name);
    nd->msg[0] = '\0';
    nd->answered = nd->connected = nd->over_cap = nd->over_objects = false;
    c->cur = nd->first;
    if (nd->ep.kind == ENDPOINT_UNIX)
        begin_unix(c);
    else
        begin_tcp(c);
}

/* The current step's deadline passed. */
static void conn_timeout(struct conn *c) {
    char why[96], msg[300];

    switch (c->st) {
    case C_CONNECTING:
        next_address(c, -ETIMEDOUT);
        break;
    case C_HANDSHAKE:
        tls_session_handshake_error(c->tls, -ETIMEDOUT, c->o->timeout_usec, msg, sizeof msg);
        conn_fail(c, RNET_UNREACHABLE, "connect %s: %s", c->name, msg);
        break;
    case C_SEND:
        conn_fail(c, RNET_UNREACHABLE, "%s: write: %s", step_label(c),
                  io_why(-ETIMEDOUT, c->o->timeout_usec, why, sizeof why));
        break;
    case C_RECV:
        conn_fail(c, RNET_UNREACHABLE, "%s: read: %s", step_label(c),
                  io_why(-ETIMEDOUT, reply_allowance(c), why, sizeof why));
        break;
    case C_DONE:
        break;
    }
}

/* ------------------------------------------------------------------------------------
 * The loop
 */

struct run {
    const struct rnet_opts *o;
    struct rnet_node *nodes;
    struct conn *cs;
    size_t n, next, max_open;
    struct pollfd *pfd;
    size_t *idx;
};

/* Opens connections up to the limit; fills the poll set. Returns its size and the
 * earliest deadline. */
static size_t fill_poll_set(struct run *r, uint64_t *ret_first) {
    size_t active = 0, k = 0;

    for (size_t i = 0; i < r->next; i++)
        active += r->cs[i].st != C_DONE;
    while (active < r->max_open && r->next < r->n) {
        size_t i = r->next++;
        if (!r->nodes[i].script)
            continue;
        conn_begin(r->o, &r->cs[i], &r->nodes[i]);
        active += r->cs[i].st != C_DONE;
    }
    *ret_first = UINT64_MAX;
    for (size_t i = 0; i < r->next && k < r->max_open; i++) {
        if (r->cs[i].st == C_DONE)
            continue;
        r->pfd[k] = (struct pollfd){ .fd = r->cs[i].fd, .events = r->cs[i].want };
        r->idx[k++] = i;
        if (r->cs[i].deadline < *ret_first)
            *ret_first = r->cs[i].deadline;
    }
    return k;
}

static void poll_round(struct run *r, size_t k, uint64_t first) {
    uint64_t now = rctime_mono_usec();
    uint64_t ms = first > now ? (first - now + 999) / 1000 : 0;
    int pr = poll(r->pfd, k, ms > INT_MAX ? INT_MAX : (int)ms);

    if (pr < 0)
        pr = 0;   /* EINTR; nothing else with valid fds. Deadlines still end every node. */
    now = rctime_mono_usec();
    for (size_t j = 0; j < k; j++) {
        struct conn *c = &r->cs[r->idx[j]];
        if (pr > 0 && r->pfd[j].revents) {
            if (c->st == C_CONNECTING)
                connect_ready(c);
            else
                conn_io(c);
        } else if (now >= c->deadline)
            conn_timeout(c);
    }
}

int rnet_run(const struct rnet_opts *o, struct rnet_node *nodes, size_t n) {
    struct run r = { .o = o, .nodes = nodes, .n = n,
                     .max_open = o && o->max_open ? o->max_open : 128 };
    int rc = 0;

    if (!o || !o->on_reply || (n && !nodes))
        return -EINVAL;
    r.cs = calloc(n ? n : 1, sizeof *r.cs);
    r.pfd = calloc(r.max_open, sizeof *r.pfd);
    r.idx = calloc(r.max_open, sizeof *r.idx);
    if (!r.cs || !r.pfd || !r.idx) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        r.cs[i].st = C_DONE;   /* not started yet: nothing to wait for */
    for (;;) {
        uint64_t first;
        size_t k = fill_poll_set(&r, &first);
        if (k > 0)
            poll_round(&r, k, first);
        else if (r.next >= n)
            break;
    }
out:
    free(r.cs);
    free(r.pfd);
    free(r.idx);
    return rc;
}
