/* validate: see validate.h.
 *
 * Shape of one call:
 *   1. the node list: the configured endpoints, or (cluster) what a seed lists;
 *   2. every node: connect (+TLS), then AUTH candidate and PING pipelined (one write,
 *      two replies), all at once from this thread, one poll() over all the connections;
 *   3. the policy; under "all" with nodes down and the rest accepting, the current
 *      credential is tried on the reachable nodes, again all at once.
 * Nothing outlives the call: every connection is closed before it returns.
 */
#include "validate.h"

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

#include "tls.h"

const char *validate_outcome_to_string(enum validate_outcome o) {
    switch (o) {
    case VALIDATE_PUBLISH: return "accepted";
    case VALIDATE_REFUSED: return "refused";
    case VALIDATE_UNREACHABLE: return "unreachable";
    case VALIDATE_MISCONFIGURED: return "misconfigured";
    case VALIDATE_ERROR: return "error";
    }
    return "?";
}

/* What one node said. The words are what REDIS_CREDS_NODES shows. */
enum node_state {
    N_ACCEPTED = 0,
    N_REFUSED,
    N_NOPASS,
    N_UNEXPECTED,
    N_UNREACHABLE,
    N_TLS,           /* handshake failed for another reason than the certificate */
    N_CERT,          /* the certificate did not verify */
};

static const char *node_word(enum node_state s) {
    switch (s) {
    case N_ACCEPTED: return "accepted";
    case N_REFUSED: return "refused";
    case N_NOPASS: return "no-password";
    case N_UNEXPECTED: return "unexpected";
    case N_UNREACHABLE: return "unreachable";
    case N_TLS: return "tls-error";
    case N_CERT: return "certificate-error";
    }
    return "?";
}

static bool unreachable(enum node_state s) {
    return s == N_UNREACHABLE || s == N_TLS || s == N_CERT;
}

struct vnode {
    struct resp_endpoint ep;
    bool ep_ok;               /* ep usable; else the node fails with bad_ep/bad_state */
    const char *bad_ep;       /* why not (static text); NULL: not a valid endpoint */
    enum node_state bad_state;
    bool replica;
    char name[300];           /* host:port, for messages */
    char verify_name[256];    /* TLS: the name its certificate must carry */
    /* results */
    enum node_state state;
    char detail[256];
    uint64_t usec;
};

struct vrun {
    const struct config_redis *redis;
    struct tls_ctx *tls;      /* NULL: plain TCP */
};

/* ------------------------------------------------------------------------------------
 * Connections (discovery uses one at a time, blocking with deadlines)
 */

static int node_connect(const struct vrun *x, const struct vnode *nd, struct resp_conn **ret,
                        char *err, size_t errlen) {
    /* Redis has no TLS on unix sockets; a local socket is not on the network anyway. */
    if (x->tls && nd->ep.kind == RESP_EP_TCP)
        return tls_connect(x->tls, &nd->ep, nd->verify_name, x->redis->timeout_usec, ret, err,
                           errlen);
    return resp_connect(&nd->ep, x->redis->timeout_usec, ret, err, errlen);
}

static enum node_state connect_state(int rc) {
    return rc == -EKEYREJECTED ? N_CERT : rc == -EPROTO ? N_TLS : N_UNREACHABLE;
}

static enum node_state auth_state(enum resp_auth_result r) {
    switch (r) {
    case RESP_AUTH_ACCEPTED: return N_ACCEPTED;
    case RESP_AUTH_REFUSED: return N_REFUSED;
    case RESP_AUTH_NOPASS: return N_NOPASS;
    case RESP_AUTH_UNEXPECTED: return N_UNEXPECTED;
    case RESP_AUTH_IO: return N_UNREACHABLE;
    }
    return N_UNEXPECTED;
}

/* ------------------------------------------------------------------------------------
 * All nodes at once: one thread, one poll() over every connection.
 *
 * Each node is a small state machine: connect (each resolved address in turn, sharing
 * the timeout) -> TLS handshake -> AUTH and PING in one write -> AUTH's reply -> PING's
 * reply -> done. Pipelining saves a round trip; Redis runs the PING after the AUTH, so it
 * sees the login AUTH made. Connect + handshake get one timeout. AUTH and PING get the
 * two timeouts they had when sent one after the other: AUTH's reply (and the write) is
 * due within one timeout of the write, PING's within two. The replies are judged by
 * resp.c's own judges, so the outcome words are the same as for one node and as before:
 * AUTH's reply alone decides; PING's only checks the link after +OK. After any other
 * AUTH verdict PING's reply (-NOAUTH, or +PONG for an open default user) is read and
 * ignored, and whatever happens to the link then (closed, timed out, garbage) does not
 * change the verdict.
 * No threads: on two cores starting a dozen threads costs more than the round trips.
 */

enum pstate { P_CONNECTING, P_HANDSHAKE, P_SEND, P_RECV, P_DONE };

struct probe {
    struct vnode *nd;
    enum pstate st;
    bool ping;                    /* AUTH's reply is in; the next reply is PING's */
    bool ignore_ping;             /* ...and only read to be ignored: verdict stands */
    enum node_state verdict;      /* AUTH's verdict, when ignore_ping */
    int fd;
    struct addrinfo *ais, *ai;    /* TCP: the resolved addresses, tried in turn */
    size_t ai_left;
    int last_err;                 /* the last connect attempt's -errno */
    char label[NI_MAXHOST + 8];   /* " (addr)" when the address is not what was asked */
    struct tls_session *tls;
    const char *argv[3];          /* AUTH's, pointing into the caller's secret */
    size_t argvlen[3];
    int argc;
    char *out;                    /* the formatted command, wiped after use */
    size_t out_len, out_off;
    struct resp_reader *rd;
    short want;
    uint64_t t0, connect_deadline, deadline;
    uint64_t ping_deadline;       /* PING's reply: two timeouts after the write began */
    const char *username;         /* what to AUTH with (the caller's, outlive the probe) */
    const struct secret *password;
};

static void probe_finish(struct probe *p, enum node_state st) {
    p->nd->state = st;
    p->st = P_DONE;
    if (p->tls)
        p->tls = tls_session_free(p->tls);   /* closes the fd it owns */
    else if (p->fd >= 0)
        (void)close(p->fd);
    p->fd = -1;
    if (p->out) {
        explicit_bzero(p->out, p->out_len);
        free(p->out);
        p->out = NULL;
    }
    p->rd = resp_reader_free(p->rd);
    if (p->ais)
        freeaddrinfo(p->ais);
    p->ais = p->ai = NULL;
    p->nd->usec = resp_now_usec() - p->t0;
}

static void probe_fail(struct probe *p, enum node_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void probe_fail(struct probe *p, enum node_state st, const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(p->nd->detail, sizeof p->nd->detail, fmt, ap);
    va_end(ap);
    probe_finish(p, st);
}

static const char *io_why(int err, uint64_t timeout_usec, char *buf, size_t size) {
    if (err == -ETIMEDOUT) {
        snprintf(buf, size, "timed out after %llu ms", (unsigned long long)(timeout_usec / 1000));
        return buf;
    }
    return strerror_r(-err, buf, size);
}

static void probe_io(const struct vrun *x, struct probe *p);

/* Frees a reply we do not look at, wiping its text first (it came on a connection that
 * carried the password; an ignored reply is not supposed to echo it, but need not be
 * trusted not to). */
static void ignore_reply(redisReply *r) {
    if (!r)
        return;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements && r->element; i++)
            if (r->element[i] && r->element[i]->str)
                explicit_bzero(r->element[i]->str, r->element[i]->len);
    } else if (r->str)
        explicit_bzero(r->str, r->len);
    freeReplyObject(r);
}

/* The RESP encoding of PING, sent right behind AUTH. */
static const char ping_cmd[] = "*1\r\n$4\r\nPING\r\n";

static uint64_t add_sat(uint64_t a, uint64_t b) {
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Formats AUTH followed by PING into p->out, one buffer for one write. Both copies of the
 * formatted AUTH (it carries the password) are wiped: hiredis's here, ours in
 * probe_finish() or once written. */
static int send_auth_ping(struct probe *p, uint64_t timeout) {
    char *cmd = NULL, *out;
    int len = redisFormatCommandArgv(&cmd, p->argc, p->argv, p->argvlen);
    uint64_t now;

    if (len < 0 || !cmd)
        return -ENOMEM;
    out = malloc((size_t)len + sizeof ping_cmd - 1);
    if (out) {
        memcpy(out, cmd, (size_t)len);
        memcpy(out + len, ping_cmd, sizeof ping_cmd - 1);
    }
    explicit_bzero(cmd, (size_t)len);
    free(cmd);
    if (!out)
        return -ENOMEM;
    p->out = out;
    p->out_len = (size_t)len + sizeof ping_cmd - 1;
    p->out_off = 0;
    now = resp_now_usec();
    p->deadline = add_sat(now, timeout);
    p->ping_deadline = add_sat(p->deadline, timeout);
    p->st = P_SEND;
    return 0;
}

static void start_auth(const struct vrun *x, struct probe *p) {
    p->argc = resp_auth_argv(p->username, p->password, p->argv, p->argvlen);
    if (p->argc < 0) {
        probe_fail(p, N_UNEXPECTED, "AUTH: no password given");
        return;
    }
    p->rd = resp_reader_new(RESP_MAX_REPLY_BYTES, RESP_MAX_ELEMENTS);
    if (!p->rd || send_auth_ping(p, x->redis->timeout_usec) < 0) {
        probe_fail(p, N_UNEXPECTED, "out of memory");
        return;
    }
    probe_io(x, p);
}

static void connected(const struct vrun *x, struct probe *p);

/* Starts connecting to the next address, or gives up with the last attempt's error. */
static void try_next_address(const struct vrun *x, struct probe *p) {
    char why[96];

    for (; p->ai; p->ai = p->ai->ai_next, p->ai_left--) {
        uint64_t now = resp_now_usec();
        char addr[NI_MAXHOST];

        if (now >= p->connect_deadline) {
            p->last_err = -ETIMEDOUT;
            break;
        }
        if (getnameinfo(p->ai->ai_addr, p->ai->ai_addrlen, addr, sizeof addr, NULL, 0,
                        NI_NUMERICHOST) != 0)
            snprintf(addr, sizeof addr, "?");
        if (strcmp(addr, p->nd->ep.host) == 0)
            p->label[0] = '\0';
        else
            snprintf(p->label, sizeof p->label, " (%s)", addr);
        p->fd = socket(p->ai->ai_family, p->ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                       p->ai->ai_protocol);
        if (p->fd < 0) {
            p->last_err = -errno;
            continue;
        }
        if (connect(p->fd, p->ai->ai_addr, p->ai->ai_addrlen) == 0) {
            p->ai = p->ai->ai_next;
            connected(x, p);
            return;
        }
        if (errno == EINPROGRESS || errno == EINTR) {
            /* each address gets an equal share of the time left (one black-holed
             * address must not eat the whole timeout) */
            p->deadline = now + (p->connect_deadline - now) / (p->ai_left ? p->ai_left : 1);
            p->st = P_CONNECTING;
            p->want = POLLOUT;
            return;
        }
        p->last_err = -errno;
        (void)close(p->fd);
        p->fd = -1;
    }
    probe_fail(p, N_UNREACHABLE, "connect %s%s: %s", p->nd->name, p->label,
               io_why(p->last_err ? p->last_err : -EHOSTUNREACH, x->redis->timeout_usec, why,
                      sizeof why));
}

static void probe_begin(const struct vrun *x, struct probe *p, struct vnode *nd,
                        const char *username, const struct secret *password) {
    memset(p, 0, sizeof *p);
    p->nd = nd;
    p->username = username;
    p->password = password;
    p->fd = -1;
    p->t0 = resp_now_usec();
    p->connect_deadline = p->t0 + x->redis->timeout_usec;
    nd->detail[0] = '\0';
    if (!nd->ep_ok) {
        if (nd->bad_ep)
            probe_fail(p, nd->bad_state, "%s: %s", nd->name, nd->bad_ep);
        else
            probe_fail(p, N_UNEXPECTED, "not a valid endpoint");
        return;
    }
    if (nd->ep.kind == RESP_EP_UNIX) {
        /* Local: connect() on a unix socket does not wait on the network (a full backlog
         * fails at once with EAGAIN here, where resp_connect would retry). */
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t plen = strnlen(nd->ep.path, sizeof nd->ep.path);
        char why[96];
        if (plen >= sizeof sa.sun_path) {
            probe_fail(p, N_UNEXPECTED, "connect %s: path too long", nd->name);
            return;
        }
        memcpy(sa.sun_path, nd->ep.path, plen);
        p->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (p->fd < 0 || connect(p->fd, (struct sockaddr *)&sa,
                                 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1)) < 0) {
            int e = errno;
            probe_fail(p, N_UNREACHABLE, "connect %s: %s", nd->name,
                       strerror_r(e, why, sizeof why));
            return;
        }
        connected(x, p);
        return;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    char port[8];
    int gai;

    snprintf(port, sizeof port, "%u", (unsigned)nd->ep.port);
    /* getaddrinfo() has no deadline: names are resolved within the resolver's own
     * timeouts (resolv.conf); address literals never wait. */
    gai = getaddrinfo(nd->ep.host, port, &hints, &p->ais);
    if (gai != 0) {
        p->ais = NULL;
        probe_fail(p, N_UNREACHABLE, "connect %s: resolve: %s", nd->name, gai_strerror(gai));
        return;
    }
    for (p->ai = p->ais; p->ai; p->ai = p->ai->ai_next)
        p->ai_left++;
    p->ai = p->ais;
    try_next_address(x, p);
}

static void connected(const struct vrun *x, struct probe *p) {
    char err[300];
    int rc;

    if (p->nd->ep.kind == RESP_EP_TCP) {
        int one = 1;
        /* Small request/response exchanges: do not let Nagle hold the command back. */
        (void)setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (p->ais)
        freeaddrinfo(p->ais);
    p->ais = p->ai = NULL;
    if (!x->tls || p->nd->ep.kind != RESP_EP_TCP) {
        start_auth(x, p);
        return;
    }
    rc = tls_session_new(x->tls, p->fd, p->nd->verify_name, &p->tls, err, sizeof err);
    if (rc < 0) {
        p->fd = -1;   /* closed by tls_session_new */
        probe_fail(p, N_TLS, "connect %s: %s", p->nd->name, err);
        return;
    }
    p->st = P_HANDSHAKE;
    p->deadline = p->connect_deadline;
    probe_io(x, p);
}

/* One non-blocking write / read on the probe's connection, TLS or plain, with the same
 * contract as tls_session_write/read: bytes moved, 0 on EOF (read), -EAGAIN with *ev set
 * to what to wait for, or -errno. */
static ssize_t plain_result(ssize_t n) {
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
}

static ssize_t probe_write(struct probe *p, const void *buf, size_t len, short *ev) {
    if (p->tls)
        return tls_session_write(p->tls, buf, len, ev);
    return plain_result(send(p->fd, buf, len, MSG_NOSIGNAL));
}

static ssize_t probe_read(struct probe *p, void *buf, size_t len, short *ev) {
    if (p->tls)
        return tls_session_read(p->tls, buf, len, ev);
    return plain_result(recv(p->fd, buf, len, 0));
}

/* A TLS connection failed after its handshake (rc: 0 = closed, else -errno). A TLS alert
 * is a TLS error, and so is the server dropping the connection before it answered AUTH:
 * with TLS 1.3 the server judges our certificate (mutual TLS) only after our side of the
 * handshake is done, and its alert may be lost in the reset. Once AUTH was answered, a
 * failure other than an alert is the link's, as over TCP. The alert, when one came, is
 * picked up by one more read if the write met the reset first. */
static void tls_failed(const struct vrun *x, struct probe *p, const char *step, int rc) {
    char why[160];
    const char *t = tls_session_errstr(p->tls);

    if (rc != -EPROTO && !*t && !p->ping) {
        char buf[256];
        short ev;
        ssize_t r = tls_session_read(p->tls, buf, sizeof buf, &ev);
        explicit_bzero(buf, sizeof buf);
        if (r == -EPROTO && *tls_session_errstr(p->tls))
            rc = -EPROTO;
        t = tls_session_errstr(p->tls);
    }
    if (rc == -EPROTO && *t) {
        probe_fail(p, N_TLS, "%s: %s", step, t);
        return;
    }
    if (p->ping) {
        probe_fail(p, N_UNREACHABLE, "%s: %s", step,
                   rc == 0 ? "connection closed by server"
                           : io_why(rc, x->redis->timeout_usec, why, sizeof why));
        return;
    }
    probe_fail(p, N_TLS, "%s: %s right after the TLS handshake (does the server require a "
               "client certificate, or not trust ours?)", step,
               rc == 0 ? "connection closed by server"
                       : io_why(rc, x->redis->timeout_usec, why, sizeof why));
}

/* Moves p on as far as it can go without waiting; sets p->want when it must wait. */
static void probe_io(const struct vrun *x, struct probe *p) {
    char buf[16384], why[160];

    for (;;) {
        switch (p->st) {
        case P_DONE:
        case P_CONNECTING:
            return;
        case P_HANDSHAKE: {
            short ev = 0;
            int rc = tls_session_handshake(p->tls, &ev);
            if (rc == 1) {
                p->want = ev;
                return;
            }
            if (rc < 0) {
                char msg[300];
                tls_session_handshake_error(p->tls, rc, x->redis->timeout_usec, msg, sizeof msg);
                if (rc != -EKEYREJECTED && tls_session_errstr(p->tls)[0])
                    rc = -EPROTO;
                probe_fail(p, connect_state(rc), "connect %s: %s", p->nd->name, msg);
                return;
            }
            start_auth(x, p);   /* recurses once into probe_io with P_SEND */
            return;
        }
        case P_SEND:
            while (p->out_off < p->out_len) {
                short ev = POLLOUT;
                ssize_t n = probe_write(p, p->out + p->out_off, p->out_len - p->out_off, &ev);
                if (n == -EAGAIN) {
                    p->want = ev;
                    return;
                }
                if (n <= 0) {
                    if (p->tls) {
                        tls_failed(x, p, "AUTH: write", n ? (int)n : -EPIPE);
                        return;
                    }
                    probe_fail(p, N_UNREACHABLE, "AUTH: write: %s",
                               io_why(n ? (int)n : -EPIPE, x->redis->timeout_usec, why,
                                      sizeof why));
                    return;
                }
                p->out_off += (size_t)n;
            }
            explicit_bzero(p->out, p->out_len);
            free(p->out);
            p->out = NULL;
            p->st = P_RECV;
            break;
        case P_RECV: {
            redisReply *reply = NULL;
            int rc = resp_reader_get(p->rd, &reply);
            if (rc != 0 && p->ignore_ping) {
                /* PING's reply after a refused (etc.) AUTH: whatever it is, it changes
                 * nothing. Wiped like any reply on a connection that carried a secret. */
                if (rc > 0)
                    ignore_reply(reply);
                probe_finish(p, p->verdict);
                return;
            }
            if (rc < 0) {
                probe_fail(p, p->ping ? N_UNREACHABLE : N_UNEXPECTED, "%s: read: %s",
                           p->ping ? "PING after AUTH" : "AUTH", resp_reader_errstr(p->rd));
                return;
            }
            if (rc > 0) {
                if (p->ping) {
                    resp_ping_judge(reply, p->nd->detail, sizeof p->nd->detail);
                    probe_finish(p, N_ACCEPTED);
                    return;
                }
                enum resp_auth_result r = resp_auth_judge(reply, p->argc, p->argv, p->argvlen,
                                                          p->nd->detail, sizeof p->nd->detail);
                /* PING is already on its way: its reply is next, due by ping_deadline.
                 * Unless AUTH said +OK it is only read to be ignored. */
                p->ping = true;
                p->deadline = p->ping_deadline;
                if (r != RESP_AUTH_ACCEPTED) {
                    p->ignore_ping = true;
                    p->verdict = auth_state(r);
                }
                break;
            }
            short ev = POLLIN;
            ssize_t n = probe_read(p, buf, sizeof buf, &ev);
            if (n == -EAGAIN) {
                p->want = ev;
                return;
            }
            if (n > 0 && resp_reader_feed(p->rd, buf, (size_t)n) == 0) {
                explicit_bzero(buf, (size_t)n);
                break;
            }
            explicit_bzero(buf, sizeof buf);
            if (p->ignore_ping) {
                /* closed (or failed) after AUTH's reply: AUTH's verdict stands */
                probe_finish(p, p->verdict);
                return;
            }
            if (n <= 0 && p->tls) {
                tls_failed(x, p, p->ping ? "PING after AUTH: read" : "AUTH: read", (int)n);
                return;
            }
            const char *t = n > 0 ? resp_reader_errstr(p->rd) : "";
            probe_fail(p, n > 0 && !p->ping ? N_UNEXPECTED : N_UNREACHABLE,
                       "%s: read: %s", p->ping ? "PING after AUTH" : "AUTH",
                       *t ? t : n == 0 ? "connection closed by server"
                                       : io_why((int)n, x->redis->timeout_usec, why, sizeof why));
            return;
        }
        }
    }
}

/* The fd became ready (or errored) while connecting. */
static void connect_ready(const struct vrun *x, struct probe *p) {
    int soerr = 0;
    socklen_t l = sizeof soerr;

    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0)
        soerr = errno;
    if (soerr == 0) {
        p->ai = p->ai->ai_next;
        connected(x, p);
        return;
    }
    p->last_err = -soerr;
    (void)close(p->fd);
    p->fd = -1;
    p->ai = p->ai->ai_next;
    p->ai_left--;
    try_next_address(x, p);
}

/* The current step's deadline passed. */
static void probe_timeout(const struct vrun *x, struct probe *p) {
    char why[96];

    switch (p->st) {
    case P_CONNECTING:
        p->last_err = -ETIMEDOUT;
        (void)close(p->fd);
        p->fd = -1;
        p->ai = p->ai->ai_next;
        p->ai_left--;
        try_next_address(x, p);
        break;
    case P_HANDSHAKE: {
        char msg[300];
        tls_session_handshake_error(p->tls, -ETIMEDOUT, x->redis->timeout_usec, msg, sizeof msg);
        probe_fail(p, N_UNREACHABLE, "connect %s: %s", p->nd->name, msg);
        break;
    }
    case P_SEND:
    case P_RECV:
        if (p->ignore_ping) {
            /* AUTH's reply came and decided; PING's never did: the verdict stands */
            probe_finish(p, p->verdict);
            break;
        }
        /* as resp_auth(): a link that fails right after +OK is not a working node.
         * PING's reply was due two timeouts after the pipelined write began. */
        probe_fail(p, N_UNREACHABLE, "%s: %s: %s",
                   p->ping ? "PING after AUTH" : "AUTH", p->st == P_SEND ? "write" : "read",
                   io_why(-ETIMEDOUT, p->ping ? 2 * x->redis->timeout_usec
                                              : x->redis->timeout_usec, why, sizeof why));
        break;
    case P_DONE:
        break;
    }
}

#define MAX_INFLIGHT 128   /* connections open at once (file descriptors) */

/* Asks every node (but those in skip) at once and returns when all have answered or
 * timed out. */
static void check_all(const struct vrun *x, struct vnode *nodes, size_t n, const bool *skip,
                      const char *username, const struct secret *password) {
    struct probe *ps = calloc(n ? n : 1, sizeof *ps);
    struct pollfd pfd[MAX_INFLIGHT];
    size_t idx[MAX_INFLIGHT];
    size_t next = 0;

    if (!ps) {
        for (size_t i = 0; i < n; i++) {
            nodes[i].state = N_UNEXPECTED;
            snprintf(nodes[i].detail, sizeof nodes[i].detail, "out of memory");
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        ps[i].st = P_DONE;   /* not started yet counts as nothing to wait for */

    for (;;) {
        size_t active = 0, k = 0;
        uint64_t now, first = UINT64_MAX;

        for (size_t i = 0; i < next; i++)
            active += ps[i].st != P_DONE;
        while (active < MAX_INFLIGHT && next < n) {
            size_t i = next++;
            if (skip && skip[i])
                continue;
            probe_begin(x, &ps[i], &nodes[i], username, password);
            active += ps[i].st != P_DONE;
        }
        for (size_t i = 0; i < next && k < MAX_INFLIGHT; i++) {
            if (ps[i].st == P_DONE)
                continue;
            pfd[k] = (struct pollfd){ .fd = ps[i].fd, .events = ps[i].want };
            idx[k++] = i;
            if (ps[i].deadline < first)
                first = ps[i].deadline;
        }
        if (k == 0) {
            if (next >= n)
                break;
            continue;
        }
        now = resp_now_usec();
        uint64_t ms = first > now ? (first - now + 999) / 1000 : 0;
        int r = poll(pfd, k, ms > INT_MAX ? INT_MAX : (int)ms);
        if (r < 0 && errno != EINTR)
            r = 0;   /* cannot happen with valid fds; deadlines still end every probe */
        now = resp_now_usec();
        for (size_t j = 0; j < k; j++) {
            struct probe *p = &ps[idx[j]];
            if (r > 0 && pfd[j].revents) {
                if (p->st == P_CONNECTING)
                    connect_ready(x, p);
                else
                    probe_io(x, p);
            } else if (now >= p->deadline)
                probe_timeout(x, p);
        }
    }
    free(ps);
}

/* ------------------------------------------------------------------------------------
 * Node lists
 */

static void node_from_endpoint(const struct config_redis *redis, const char *endpoint,
                               struct vnode *nd) {
    memset(nd, 0, sizeof *nd);
    nd->ep_ok = resp_endpoint_parse(endpoint, &nd->ep) == 0;
    if (nd->ep_ok)
        resp_endpoint_format(&nd->ep, nd->name, sizeof nd->name);
    else
        snprintf(nd->name, sizeof nd->name, "%s", endpoint);
    snprintf(nd->verify_name, sizeof nd->verify_name, "%s",
             redis->tls.server_name ? redis->tls.server_name : nd->ep_ok ? nd->ep.host : "");
}

static struct vnode *configured_nodes(const struct config_redis *redis, size_t *ret_n) {
    struct vnode *nodes = calloc(redis->n_endpoints ? redis->n_endpoints : 1, sizeof *nodes);

    if (!nodes)
        return NULL;
    for (size_t i = 0; i < redis->n_endpoints; i++)
        node_from_endpoint(redis, redis->endpoints[i], &nodes[i]);
    *ret_n = redis->n_endpoints;
    return nodes;
}

/* Primaries first, then by name: a stable order for messages and REDIS_CREDS_NODES. */
static int node_cmp(const void *a, const void *b) {
    const struct vnode *x = a, *y = b;

    if (x->replica != y->replica)
        return x->replica ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* The required nodes of a topology a seed listed. host "" means "the address you asked";
 * the TLS name is server_name or the seed's host, never what the node advertised. */
static struct vnode *topology_nodes(const struct config_redis *redis, bool replicas,
                                    const struct vnode *seed,
                                    const struct resp_cluster_node *cn, size_t ncn,
                                    size_t *ret_n) {
    struct vnode *nodes = calloc(ncn ? ncn : 1, sizeof *nodes);
    size_t n = 0;

    if (!nodes)
        return NULL;
    for (size_t i = 0; i < ncn; i++) {
        struct vnode *nd = &nodes[n];
        uint16_t port;

        if (cn[i].failed || (!cn[i].primary && !replicas))
            continue;
        port = redis->tls.enabled ? cn[i].tls_port : cn[i].port;
        nd->ep.kind = RESP_EP_TCP;
        snprintf(nd->ep.host, sizeof nd->ep.host, "%s",
                 cn[i].host[0] ? cn[i].host : seed->ep.kind == RESP_EP_TCP ? seed->ep.host
                                                                           : "127.0.0.1");
        nd->ep.port = port;
        nd->replica = !cn[i].primary;
        nd->ep_ok = true;
        snprintf(nd->verify_name, sizeof nd->verify_name, "%s", seed->verify_name);
        if (port == 0) {
            /* The node advertises no port for the transport we were told to speak: only
             * a TLS port with tls = false; or, with tls = true, only its plaintext port
             * (a cluster without tls-cluster yes knows no TLS ports). Never try TLS on a
             * plaintext port, or the reverse: say which setting does not match. */
            nd->ep_ok = false;
            nd->ep.port = redis->tls.enabled ? cn[i].port : cn[i].tls_port;
            resp_endpoint_format(&nd->ep, nd->name, sizeof nd->name);
            if (redis->tls.enabled) {
                nd->bad_state = N_TLS;
                nd->bad_ep = "the cluster advertises no TLS port for this node, only a "
                             "plaintext one (the servers need tls-cluster yes for TLS "
                             "clients to find each other's TLS ports)";
            } else {
                nd->bad_state = N_UNEXPECTED;
                nd->bad_ep = "the cluster advertises only a TLS port for this node: "
                             "set tls = true";
            }
        } else
            resp_endpoint_format(&nd->ep, nd->name, sizeof nd->name);
        n++;
    }
    qsort(nodes, n, sizeof *nodes, node_cmp);
    *ret_n = n;
    return nodes;
}

/* ------------------------------------------------------------------------------------
 * Cluster discovery
 */

enum discovery {
    D_OK = 0,
    D_STANDALONE,     /* the seed has cluster support disabled: validate the seeds */
    D_FAILED,         /* this seed could not give a topology; seed->state says why */
};

/* The first word of an error reply, printable, for messages. */
static void reply_word(const redisReply *r, char *buf, size_t size) {
    size_t n = 0;

    if (r && r->type == REDIS_REPLY_ERROR && r->str)
        while (n < r->len && n + 1 < size && n < 32 && r->str[n] > 0x20 && r->str[n] < 0x7f) {
            buf[n] = r->str[n];
            n++;
        }
    buf[n] = '\0';
}

static bool reply_says(const redisReply *r, const char *phrase) {
    return r && r->type == REDIS_REPLY_ERROR && r->str && strcasestr(r->str, phrase);
}

/* Logs in on c: the current credential first (so discovery does not depend on the
 * candidate), else the candidate. On failure seed->state/detail say why. */
/* The first exchange on a TLS connection failed: as tls_failed() judges it for a probe, a
 * TLS alert or a connection dropped before any answer is a TLS error; a timeout is not. */
static void first_io_failed(bool tls, struct vnode *seed, const char *detail) {
    bool alert = strstr(detail, "TLS: ") != NULL;
    bool timeout = strstr(detail, "timed out") != NULL;

    seed->state = tls && !timeout ? N_TLS : N_UNREACHABLE;
    snprintf(seed->detail, sizeof seed->detail, "%s%s", detail,
             tls && !timeout && !alert ? " right after the TLS handshake (does the server "
                                         "require a client certificate, or not trust ours?)"
                                       : "");
}

static bool discovery_login(struct resp_conn *c, bool tls, struct vnode *seed,
                            const char *cand_user, const struct secret *cand_pw,
                            const char *cur_user, const struct secret *cur_pw) {
    char detail[256];
    enum resp_auth_result r;

    if (cur_pw) {
        r = resp_auth(c, cur_user, cur_pw, detail, sizeof detail);
        if (r == RESP_AUTH_ACCEPTED || r == RESP_AUTH_NOPASS)
            return true;   /* NOPASS: an open server needs no login to list its nodes */
        if (r == RESP_AUTH_IO) {
            first_io_failed(tls, seed, detail);
            return false;
        }
    }
    r = resp_auth(c, cand_user, cand_pw, detail, sizeof detail);
    if (r == RESP_AUTH_ACCEPTED || r == RESP_AUTH_NOPASS)
        return true;
    if (r == RESP_AUTH_IO && !cur_pw) {
        first_io_failed(tls, seed, detail);
        return false;
    }
    seed->state = auth_state(r);
    snprintf(seed->detail, sizeof seed->detail, "%s%s", detail,
             r == RESP_AUTH_REFUSED && cur_pw ? " (cluster discovery: the current credential "
                                                "was refused too)" : "");
    return false;
}

static enum discovery discover_from(const struct vrun *x, struct vnode *seed,
                                    const char *cand_user, const struct secret *cand_pw,
                                    const char *cur_user, const struct secret *cur_pw,
                                    struct resp_cluster_node *cn, size_t max, size_t *ret_n) {
    static const char *shards[] = { "CLUSTER", "SHARDS" };
    static const char *slots[] = { "CLUSTER", "SLOTS" };
    struct resp_conn *c = NULL;
    redisReply *reply = NULL;
    char w1[40] = "", w2[40] = "";
    enum discovery d = D_FAILED;
    bool from_slots = false;
    int rc, n;

    seed->detail[0] = '\0';
    if (!seed->ep_ok) {
        seed->state = N_UNEXPECTED;
        snprintf(seed->detail, sizeof seed->detail, "not a valid endpoint");
        return D_FAILED;
    }
    if ((rc = node_connect(x, seed, &c, seed->detail, sizeof seed->detail)) < 0) {
        seed->state = connect_state(rc);
        return D_FAILED;
    }
    if (!discovery_login(c, x->tls && seed->ep.kind == RESP_EP_TCP, seed, cand_user, cand_pw,
                         cur_user, cur_pw))
        goto out;

    if (resp_command(c, 2, shards, NULL, false, &reply) < 0)
        goto io;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (reply_says(reply, "cluster support disabled")) {
            d = D_STANDALONE;
            goto out;
        }
        /* Redis < 7.0 ("unknown subcommand"), or a user allowed CLUSTER SLOTS only. */
        reply_word(reply, w1, sizeof w1);
        freeReplyObject(reply);
        reply = NULL;
        if (resp_command(c, 2, slots, NULL, false, &reply) < 0)
            goto io;
        if (reply->type == REDIS_REPLY_ERROR) {
            if (reply_says(reply, "cluster support disabled")) {
                d = D_STANDALONE;
                goto out;
            }
            reply_word(reply, w2, sizeof w2);
            seed->state = N_UNEXPECTED;
            snprintf(seed->detail, sizeof seed->detail,
                     "cluster discovery: CLUSTER SHARDS: %s, CLUSTER SLOTS: %s%s", w1, w2,
                     strcmp(w2, "NOPERM") == 0 ? " (the user needs +cluster|shards or "
                                                 "+cluster|slots)" : "");
            goto out;
        }
        from_slots = true;
    }
    n = from_slots ? resp_cluster_parse_slots(reply, cn, max)
                   : resp_cluster_parse_shards(reply, cn, max);
    if (n <= 0) {
        seed->state = N_UNEXPECTED;
        snprintf(seed->detail, sizeof seed->detail, "cluster discovery: CLUSTER %s: %s",
                 from_slots ? "SLOTS" : "SHARDS",
                 n == 0 ? "no nodes listed (are slots assigned?)"
                 : n == -E2BIG ? "more nodes than the limit"
                               : "reply not understood");
        goto out;
    }
    *ret_n = (size_t)n;
    d = D_OK;
    goto out;
io:
    seed->state = N_UNREACHABLE;
    snprintf(seed->detail, sizeof seed->detail, "cluster discovery: %s", resp_errstr(c));
out:
    if (reply)
        freeReplyObject(reply);
    resp_close(c);
    return d;
}

/* ------------------------------------------------------------------------------------
 * Result
 */

static void append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...) {
    size_t used = strnlen(buf, size);
    va_list ap;

    if (used + 1 >= size)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(buf + used, size - used, fmt, ap);
    va_end(ap);
}

/* "a:1: reason" for one node, "a:1, b:2: reason-of-a" for several (at most 4 named). */
static void describe(const struct vnode *nodes, size_t n, bool (*pick)(enum node_state),
                     char *buf, size_t size) {
    const struct vnode *first = NULL;
    size_t named = 0, more = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!pick(nodes[i].state))
            continue;
        if (!first)
            first = &nodes[i];
        if (named < 4) {
            append(buf, size, "%s%s", named ? ", " : "", nodes[i].name);
            named++;
        } else
            more++;
    }
    if (!first)
        return;
    if (more)
        append(buf, size, " and %zu more", more);
    append(buf, size, ": %s", first->detail[0] ? first->detail : node_word(first->state));
}

static bool pick_refused(enum node_state s) { return s == N_REFUSED; }
static bool pick_nopass(enum node_state s) { return s == N_NOPASS; }
static bool pick_other(enum node_state s) { return s == N_UNEXPECTED; }
static bool pick_unreachable(enum node_state s) { return unreachable(s); }
static bool pick_problem(enum node_state s) { return s != N_ACCEPTED; }

static void tally(const struct vnode *nodes, size_t n, struct validate_result *res) {
    res->total = (unsigned)n;
    for (size_t i = 0; i < n; i++) {
        append(res->nodes, sizeof res->nodes, "%s%s=%s", i ? "," : "", nodes[i].name,
               node_word(nodes[i].state));
        if (nodes[i].usec > res->slowest_node_usec)
            res->slowest_node_usec = nodes[i].usec;
        switch (nodes[i].state) {
        case N_ACCEPTED: res->accepted++; break;
        case N_REFUSED: res->refused++; break;
        case N_UNREACHABLE:
        case N_TLS:
        case N_CERT: res->unreachable++; break;
        case N_NOPASS:
        case N_UNEXPECTED: res->other++; break;
        }
    }
}

/* The policy over tallied nodes. Needs the current credential only in one case (below). */
static void decide(const struct vrun *x, struct vnode *nodes, size_t n,
                   const char *current_username, const struct secret *current_password,
                   struct validate_result *res) {
    const struct config_redis *redis = x->redis;
    bool (*why)(enum node_state) = pick_problem;
    bool nopass = false;

    for (size_t i = 0; i < n; i++)
        nopass = nopass || nodes[i].state == N_NOPASS;

    if (nopass) {
        /* reported as such whatever the other nodes said */
        res->outcome = VALIDATE_MISCONFIGURED;
        why = pick_nopass;
    } else if (redis->validate == VALIDATE_ANY) {
        res->outcome = res->accepted > 0 ? VALIDATE_PUBLISH
                     : res->refused > 0  ? VALIDATE_REFUSED
                     : res->other > 0    ? VALIDATE_ERROR
                                         : VALIDATE_UNREACHABLE;
        why = res->accepted > 0 ? pick_problem : res->refused > 0 ? pick_refused
            : res->other > 0 ? pick_other : pick_unreachable;
    } else if (res->refused > 0) {
        res->outcome = VALIDATE_REFUSED;
        why = pick_refused;
    } else if (res->other > 0) {
        res->outcome = VALIDATE_ERROR;
        why = pick_other;
    } else if (res->unreachable == 0) {
        res->outcome = VALIDATE_PUBLISH;
    } else if (res->accepted == 0) {
        res->outcome = VALIDATE_UNREACHABLE;
        why = pick_unreachable;
    } else {
        /* Some nodes down, the rest accept. Publish only when the current credential
         * works nowhere any more among the reachable nodes (DESIGN §8). */
        bool current_works = false;
        why = pick_unreachable;
        if (current_password) {
            struct vnode *cur = malloc(n * sizeof *cur);
            bool *skip = calloc(n, sizeof *skip);
            if (cur && skip) {
                memcpy(cur, nodes, n * sizeof *cur);
                for (size_t i = 0; i < n; i++)
                    skip[i] = unreachable(nodes[i].state);
                check_all(x, cur, n, skip, current_username, current_password);
                for (size_t i = 0; i < n; i++)
                    current_works = current_works || (!skip[i] && cur[i].state == N_ACCEPTED);
            } else
                current_works = true;   /* cannot tell: the safe side is to keep it */
            free(cur);
            free(skip);
        }
        res->outcome = current_works ? VALIDATE_UNREACHABLE : VALIDATE_PUBLISH;
    }
    describe(nodes, n, why, res->detail, sizeof res->detail);
}

/* ------------------------------------------------------------------------------------
 * Entry points
 */

static void fail_all(struct validate_result *res, enum validate_outcome o, const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));
static void fail_all(struct validate_result *res, enum validate_outcome o, const char *fmt,
                     ...) {
    va_list ap;

    res->outcome = o;
    va_start(ap, fmt);
    (void)vsnprintf(res->detail, sizeof res->detail, fmt, ap);
    va_end(ap);
}

/* The TLS context of a credential's Redis settings; *ret stays NULL without TLS. */
static int vrun_tls(const struct config_redis *redis, struct vrun *x, char *err, size_t errlen) {
    if (!redis->tls.enabled)
        return 0;
    struct tls_options o = {
        .ca_file = redis->tls.ca_file, .ca_path = redis->tls.ca_path,
        .cert_file = redis->tls.cert_file, .key_file = redis->tls.key_file,
        .insecure_skip_verify = redis->tls.insecure_skip_verify,
    };
    return tls_ctx_new(&o, &x->tls, err, errlen);
}

/* Cluster discovery over the seeds, one after another (the first healthy one answers in
 * one round trip). D_OK: *ret_nodes (the required nodes; replicas too when asked);
 * D_STANDALONE: the seeds are the nodes; D_FAILED: each seed's state says why. */
static enum discovery discover(const struct vrun *x, bool replicas, struct vnode *seeds,
                               size_t nseeds, const char *user, const struct secret *pw,
                               const char *user2, const struct secret *pw2,
                               struct vnode **ret_nodes, size_t *ret_n) {
    struct resp_cluster_node *cn = calloc(VALIDATE_MAX_NODES, sizeof *cn);
    enum discovery d = D_FAILED;
    size_t ncn = 0, i;

    if (!cn)
        return D_FAILED;
    for (i = 0; i < nseeds; i++) {
        d = discover_from(x, &seeds[i], user, pw, user2, pw2, cn, VALIDATE_MAX_NODES, &ncn);
        if (d != D_FAILED)
            break;
    }
    if (d == D_OK) {
        *ret_nodes = topology_nodes(x->redis, replicas, &seeds[i], cn, ncn, ret_n);
        if (!*ret_nodes)
            d = D_FAILED;
    }
    free(cn);
    return d;
}

void validate_candidate(const struct config_redis *redis,
                        const char *username, const struct secret *password,
                        const char *current_username, const struct secret *current_password,
                        struct validate_result *ret) {
    struct validate_result res = { .outcome = VALIDATE_PUBLISH };
    struct vrun x = { .redis = redis };
    struct vnode *nodes = NULL, *seeds = NULL;
    uint64_t t0 = resp_now_usec();
    size_t n = 0, nseeds = 0;
    char err[400];

    if (vrun_tls(redis, &x, err, sizeof err) < 0) {
        /* Our own TLS set-up is broken: no node can be asked. Retried like an
         * unreachable Redis, since the files may yet appear. */
        res.total = (unsigned)redis->n_endpoints;
        res.unreachable = res.total;
        for (size_t i = 0; i < redis->n_endpoints; i++)
            append(res.nodes, sizeof res.nodes, "%s%s=tls-error", i ? "," : "",
                   redis->endpoints[i]);
        fail_all(&res, VALIDATE_UNREACHABLE, "%s", err);
        goto done;
    }

    if (redis->cluster) {
        uint64_t d0 = resp_now_usec();

        seeds = configured_nodes(redis, &nseeds);
        if (!seeds) {
            fail_all(&res, VALIDATE_ERROR, "out of memory");
            goto done;
        }
        enum discovery d = discover(&x, redis->validate_replicas, seeds, nseeds, username,
                                    password, current_username, current_password, &nodes, &n);
        res.discovery_usec = resp_now_usec() - d0;
        if (d == D_OK)
            res.discovered = true;
        else if (d == D_FAILED) {
            /* No seed gave a topology: the seeds' own answers decide. */
            tally(seeds, nseeds, &res);
            decide(&x, seeds, nseeds, NULL, NULL, &res);
            if (res.outcome == VALIDATE_PUBLISH)   /* cannot happen: a seed failed */
                res.outcome = VALIDATE_ERROR;
            goto done;
        }
        /* D_STANDALONE: not a cluster after all; the configured endpoints are the nodes. */
    }
    if (!nodes) {
        nodes = configured_nodes(redis, &n);
        if (!nodes) {
            fail_all(&res, VALIDATE_ERROR, "out of memory");
            goto done;
        }
    }

    check_all(&x, nodes, n, NULL, username, password);
    tally(nodes, n, &res);
    decide(&x, nodes, n, current_username, current_password, &res);

done:
    res.elapsed_usec = resp_now_usec() - t0;
    free(nodes);
    free(seeds);
    tls_ctx_free(x.tls);
    *ret = res;
}

/* ------------------------------------------------------------------------------------
 * Node lists for other callers (rotation)
 */

struct validate_nodes {
    struct vrun x;
    struct vnode *nodes;
    size_t n;
};

struct validate_nodes *validate_nodes_free(struct validate_nodes *v) {
    if (!v)
        return NULL;
    free(v->nodes);
    tls_ctx_free(v->x.tls);
    free(v);
    return NULL;
}

int validate_nodes_list(const struct config_redis *redis, bool replicas,
                        const char *username, const struct secret *password,
                        const char *username2, const struct secret *password2,
                        struct validate_nodes **ret, char *err, size_t errlen) {
    struct validate_nodes *v = calloc(1, sizeof *v);
    struct vnode *seeds = NULL;
    size_t nseeds = 0;
    int r;

    if (!v)
        return -ENOMEM;
    v->x.redis = redis;
    if ((r = vrun_tls(redis, &v->x, err, errlen)) < 0)
        goto fail;
    if (redis->cluster) {
        seeds = configured_nodes(redis, &nseeds);
        if (!seeds) {
            r = -ENOMEM;
            goto fail;
        }
        /* discover() tries its second pair first: username/password go there. */
        enum discovery d = password2
            ? discover(&v->x, replicas, seeds, nseeds, username2, password2, username, password,
                       &v->nodes, &v->n)
            : discover(&v->x, replicas, seeds, nseeds, username, password, NULL, NULL,
                       &v->nodes, &v->n);
        if (d == D_FAILED) {
            char detail[512];
            detail[0] = '\0';
            describe(seeds, nseeds, pick_problem, detail, sizeof detail);
            snprintf(err, errlen, "cluster discovery failed: %s", detail);
            r = -EHOSTUNREACH;
            goto fail;
        }
    }
    if (!v->nodes && !(v->nodes = configured_nodes(redis, &v->n))) {
        r = -ENOMEM;
        goto fail;
    }
    free(seeds);
    *ret = v;
    return 0;
fail:
    free(seeds);
    validate_nodes_free(v);
    return r;
}

size_t validate_nodes_count(const struct validate_nodes *v) {
    return v->n;
}

const char *validate_nodes_name(const struct validate_nodes *v, size_t i) {
    return v->nodes[i].name;
}

int validate_nodes_connect(const struct validate_nodes *v, size_t i, struct resp_conn **ret,
                           char *err, size_t errlen) {
    const struct vnode *nd = &v->nodes[i];
    if (!nd->ep_ok) {
        snprintf(err, errlen, "%s", nd->bad_ep ? nd->bad_ep : "not a valid endpoint");
        return -EINVAL;
    }
    return node_connect(&v->x, nd, ret, err, errlen);
}

size_t validate_config_warnings(const struct config_redis *redis, const char **ret, size_t max) {
    size_t n = 0;

    if (redis->tls.enabled && redis->tls.insecure_skip_verify && n < max)
        ret[n++] = "redis.tls_insecure_skip_verify = true: the Redis servers' certificates "
                   "are not verified, so anyone on the network path can pose as Redis and "
                   "collect every candidate password; never use this in production";
    if (!redis->tls.enabled && (redis->tls.ca_file || redis->tls.ca_path ||
                                redis->tls.cert_file || redis->tls.key_file ||
                                redis->tls.server_name || redis->tls.insecure_skip_verify) &&
        n < max)
        ret[n++] = "redis: TLS settings (ca_file, ca_path, cert_file, key_file, server_name, "
                   "tls_insecure_skip_verify) are set but tls = false: connecting without TLS";
    return n;
}
