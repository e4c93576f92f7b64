/* resp: Redis connection with deadlines, the capped RESP reader, and AUTH judgement.
 * See resp.h for the contract.
 *
 * Notes on hiredis 0.14.1 (Debian 12), which shape this file:
 * - Its reader has no limit on a multi-bulk count and its default createArray callocs
 *   count * sizeof(pointer) up front, so "*100000000\r\n" costs 800 MB. We give the
 *   reader our own object functions; createArray refuses counts over max_elements by
 *   returning NULL, which the reader turns into a sticky (OOM-flavoured) error that we
 *   re-label from our own flag. The objects are plain redisReply structs built exactly
 *   as hiredis.c builds them, so freeReplyObject() frees them.
 * - Its reader buffers everything it is fed, and a bulk string waits in the buffer until
 *   it is complete: the byte cap is therefore enforced at feed time, per reply.
 * - redisFormatCommandArgv() builds the whole command in one malloc()ed buffer with no
 *   intermediate copies; we wipe that buffer for commands carrying secrets (hiredis's
 *   redisFreeCommand() is a plain free()).
 * - The reader's sds buffer is freed and memmove()d without wiping. We wipe the bytes it
 *   has consumed after every reply and the whole buffer before freeing the reader, so an
 *   error reply that echoed a secret does not linger there. (Copies left behind by
 *   realloc() when the buffer grows, and the buffer hiredis frees itself on a protocol
 *   error, are out of our reach.)
 */
#include "resp.h"

#include "rctime.h"

#include <arpa/inet.h>
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
#include <time.h>
#include <unistd.h>

#include <hiredis/read.h>
#include <hiredis/sds.h>

#define READ_CHUNK 16384

static void fmt_msg(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fmt_msg(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;

    if (!buf || size == 0)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------
 * Reader
 */

struct resp_reader {
    redisReader *rd;
    size_t max_bytes;
    size_t max_elements;
    size_t pending;      /* bytes fed that belong to replies not yet returned */
    size_t objects;      /* objects made for the reply under way (RESP_MAX_OBJECTS) */
    int err;             /* sticky: 0 or -errno */
    bool over_cap;       /* set by create_array when it refused a count */
    bool over_objects;   /* set by charge() when it refused an object */
    char errstr[128];
};

static void reader_fail(struct resp_reader *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reader_fail(struct resp_reader *r, int err, const char *fmt, ...) {
    va_list ap;

    r->err = err;
    va_start(ap, fmt);
    (void)vsnprintf(r->errstr, sizeof(r->errstr), fmt, ap);
    va_end(ap);
}

/* Counts one more object of the reply under way; false (and the reader failed, over
 * its cap) past RESP_MAX_OBJECTS. */
static bool charge(const redisReadTask *task) {
    struct resp_reader *r = task->privdata;

    if (r->objects >= RESP_MAX_OBJECTS) {
        r->over_cap = r->over_objects = true;
        reader_fail(r, -EMSGSIZE, "reply of more than %d objects", RESP_MAX_OBJECTS);
        return false;
    }
    r->objects++;
    return true;
}

/* Hook a new object into its parent array, as hiredis.c does. */
static void *attach(const redisReadTask *task, redisReply *obj) {
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        if (!parent || parent->type != REDIS_REPLY_ARRAY || task->idx < 0 ||
            (size_t)task->idx >= parent->elements) {
            freeReplyObject(obj);   /* cannot happen with a sane reader; fail safe */
            return NULL;
        }
        parent->element[task->idx] = obj;
    }
    return obj;
}

static void *create_string(const redisReadTask *task, char *str, size_t len) {
    redisReply *obj;
    char *buf;

    if (len == SIZE_MAX || !charge(task))
        return NULL;
    obj = calloc(1, sizeof(*obj));
    if (!obj)
        return NULL;
    buf = malloc(len + 1);
    if (!buf) {
        free(obj);
        return NULL;
    }
    memcpy(buf, str, len);
    buf[len] = '\0';
    obj->type = task->type;
    obj->str = buf;
    obj->len = len;
    return attach(task, obj);
}

static void *create_array(const redisReadTask *task, int elements) {
    struct resp_reader *r = task->privdata;
    redisReply *obj;

    if (elements < 0 || (size_t)elements > r->max_elements) {
        r->over_cap = true;
        reader_fail(r, -EMSGSIZE, "array of %d elements exceeds the limit of %zu",
                    elements, r->max_elements);
        return NULL;
    }
    if (!charge(task))
        return NULL;
    obj = calloc(1, sizeof(*obj));
    if (!obj)
        return NULL;
    obj->type = REDIS_REPLY_ARRAY;
    if (elements > 0) {
        obj->element = calloc((size_t)elements, sizeof(*obj->element));
        if (!obj->element) {
            free(obj);
            return NULL;
        }
    }
    obj->elements = (size_t)elements;
    return attach(task, obj);
}

static void *create_integer(const redisReadTask *task, long long value) {
    redisReply *obj = charge(task) ? calloc(1, sizeof(*obj)) : NULL;

    if (!obj)
        return NULL;
    obj->type = REDIS_REPLY_INTEGER;
    obj->integer = value;
    return attach(task, obj);
}

static void *create_nil(const redisReadTask *task) {
    redisReply *obj = charge(task) ? calloc(1, sizeof(*obj)) : NULL;

    if (!obj)
        return NULL;
    obj->type = REDIS_REPLY_NIL;
    return attach(task, obj);
}

static redisReplyObjectFunctions reply_functions = {
    .createString = create_string,
    .createArray = create_array,
    .createInteger = create_integer,
    .createNil = create_nil,
    .freeObject = freeReplyObject,
};

/* Zero what the reader has consumed ([0, pos)) and the slack past the live data
 * ([len, alloc)), which may hold stale bytes after hiredis's memmove(). Bytes before
 * pos are never looked at again by the reader. */
static void reader_wipe_stale(redisReader *rd) {
    size_t alloc;

    if (!rd->buf)
        return;
    alloc = sdsalloc(rd->buf);
    if (rd->pos > 0 && rd->pos <= rd->len)
        explicit_bzero(rd->buf, rd->pos);
    if (alloc > rd->len)
        explicit_bzero(rd->buf + rd->len, alloc - rd->len);
}

struct resp_reader *resp_reader_new(size_t max_bytes, size_t max_elements) {
    struct resp_reader *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->max_bytes = max_bytes ? max_bytes : RESP_MAX_REPLY_BYTES;
    r->max_elements = max_elements ? max_elements : RESP_MAX_ELEMENTS;
    if (r->max_elements > INT_MAX)
        r->max_elements = INT_MAX;
    r->rd = redisReaderCreateWithFunctions(&reply_functions);
    if (!r->rd) {
        free(r);
        errno = ENOMEM;
        return NULL;
    }
    /* Not redisReaderSetPrivdata(): it casts the pointer to int. Every task the reader
     * creates copies this, which is how create_array finds our caps. */
    r->rd->privdata = r;
    return r;
}

struct resp_reader *resp_reader_free(struct resp_reader *r) {
    if (!r)
        return NULL;
    if (r->rd) {
        if (r->rd->buf)
            explicit_bzero(r->rd->buf, sdsalloc(r->rd->buf));
        redisReaderFree(r->rd);
    }
    free(r);
    return NULL;
}

int resp_reader_feed(struct resp_reader *r, const char *buf, size_t len) {
    if (!r || (!buf && len))
        return -EINVAL;
    if (r->err)
        return r->err;
    if (len == 0)
        return 0;
    if (len > r->max_bytes - r->pending) {
        reader_fail(r, -EMSGSIZE, "reply exceeds the limit of %zu bytes", r->max_bytes);
        return r->err;
    }
    if (redisReaderFeed(r->rd, buf, len) != REDIS_OK) {
        reader_fail(r, -ENOMEM, "out of memory");
        return r->err;
    }
    r->pending += len;
    return 0;
}

int resp_reader_get(struct resp_reader *r, redisReply **ret) {
    void *obj = NULL;

    if (!r || !ret)
        return -EINVAL;
    if (r->err)
        return r->err;
    if (redisReaderGetReply(r->rd, &obj) != REDIS_OK) {
        if (r->over_cap)
            return r->err;   /* message set by create_array */
        if (r->rd->err == REDIS_ERR_OOM)
            reader_fail(r, -ENOMEM, "out of memory");
        else
            reader_fail(r, -EPROTO, "protocol error: %s", r->rd->errstr);
        return r->err;
    }
    if (!obj)
        return 0;
    /* What is left unparsed belongs to the next reply and counts against its caps. */
    r->pending = r->rd->len - r->rd->pos;
    r->objects = 0;
    reader_wipe_stale(r->rd);
    *ret = obj;
    return 1;
}

bool resp_reader_over_objects(const struct resp_reader *r) {
    return r && r->over_objects;
}

const char *resp_reader_errstr(const struct resp_reader *r) {
    if (!r)
        return "no reader";
    return r->err ? r->errstr : "";
}

/* ------------------------------------------------------------------------------------
 * Plain socket transport
 */

struct sock_transport {
    struct resp_transport t;   /* first, so the callbacks can cast back */
    int fd;
};

/* Waits until fd is ready for events (or has an error/hangup, which the next syscall
 * reports) or the deadline passes. EINTR restarts with the remaining time. */
int resp_wait_fd(int fd, short events, uint64_t deadline) {
    for (;;) {
        uint64_t now = rctime_mono_usec();
        struct pollfd p = {.fd = fd, .events = events};
        uint64_t ms;
        int n;

        if (now >= deadline)
            return -ETIMEDOUT;
        ms = (deadline - now + 999) / 1000;   /* round up: never spin on a 0 timeout */
        n = poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n > 0)
            return 0;
    }
}

static ssize_t sock_read(struct resp_transport *t, void *buf, size_t len, uint64_t deadline) {
    struct sock_transport *s = (struct sock_transport *)t;

    for (;;) {
        ssize_t n = recv(s->fd, buf, len, 0);
        int rc;

        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        rc = resp_wait_fd(s->fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
    }
}

static ssize_t sock_write(struct resp_transport *t, const void *buf, size_t len,
                          uint64_t deadline) {
    struct sock_transport *s = (struct sock_transport *)t;

    for (;;) {
        ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);
        int rc;

        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        rc = resp_wait_fd(s->fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
    }
}

static void sock_close(struct resp_transport *t) {
    struct sock_transport *s = (struct sock_transport *)t;

    if (!s)
        return;
    if (s->fd >= 0)
        (void)close(s->fd);
    free(s);
}

static struct resp_transport *sock_transport_new(int fd) {
    struct sock_transport *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->t.read = sock_read;
    s->t.write = sock_write;
    s->t.close = sock_close;
    s->fd = fd;
    return &s->t;
}

/* ------------------------------------------------------------------------------------
 * Connection
 */

struct resp_conn {
    struct resp_transport *t;
    struct resp_reader *reader;
    uint64_t timeout_usec;
    int err;              /* sticky: 0 or -errno; a failed exchange desynchronises */
    char errstr[256];
};

static int conn_fail(struct resp_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int conn_fail(struct resp_conn *c, int err, const char *fmt, ...) {
    va_list ap;

    c->err = err;
    va_start(ap, fmt);
    (void)vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
    va_end(ap);
    return err;
}

/* Text for a -errno from I/O: timeouts name the configured timeout. */
static const char *io_reason(int err, uint64_t timeout_usec, char *buf, size_t size) {
    if (err == -ETIMEDOUT) {
        fmt_msg(buf, size, "timed out after %llu ms",
                (unsigned long long)(timeout_usec / 1000));
        return buf;
    }
    return strerror_r(-err, buf, size);   /* GNU: returns buf or a static string */
}

/* The transport's own words for a failure when it has them (a TLS alert), else the
 * errno's. A timeout is always ours: it names the configured timeout. */
static const char *transport_reason(const struct resp_conn *c, int err, char *buf, size_t size) {
    const char *s;

    if (err != -ETIMEDOUT && c->t->errstr && (s = c->t->errstr(c->t)) && *s)
        return s;
    return io_reason(err, c->timeout_usec, buf, size);
}

/* Takes ownership of t: on failure t is closed. */
struct resp_conn *resp_conn_new(struct resp_transport *t, uint64_t timeout_usec) {
    struct resp_conn *c;

    if (!t) {
        errno = EINVAL;
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c)
        c->reader = resp_reader_new(RESP_MAX_REPLY_BYTES, RESP_MAX_ELEMENTS);
    if (!c || !c->reader) {
        free(c);
        t->close(t);
        errno = ENOMEM;
        return NULL;
    }
    c->t = t;
    c->timeout_usec = timeout_usec;
    return c;
}

struct resp_conn *resp_close(struct resp_conn *c) {
    if (!c)
        return NULL;
    if (c->t)
        c->t->close(c->t);
    c->reader = resp_reader_free(c->reader);
    free(c);
    return NULL;
}

const char *resp_errstr(const struct resp_conn *c) {
    if (!c)
        return "not connected";
    return c->err ? c->errstr : "";
}

static int send_all(struct resp_conn *c, const char *buf, size_t len, uint64_t deadline) {
    while (len > 0) {
        ssize_t n = c->t->write(c->t, buf, len, deadline);
        if (n < 0)
            return n >= -4095 ? (int)n : -EIO;   /* a transport must return -errno */
        if (n == 0)
            return -EIO;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_reply(struct resp_conn *c, uint64_t deadline, redisReply **ret) {
    char buf[READ_CHUNK];
    char why[96];
    int rc;

    for (;;) {
        redisReply *reply = NULL;
        ssize_t n;

        rc = resp_reader_get(c->reader, &reply);
        if (rc > 0 && reply) {
            *ret = reply;
            rc = 0;
            break;
        }
        if (rc < 0) {
            conn_fail(c, rc, "read: %s", resp_reader_errstr(c->reader));
            break;
        }
        n = c->t->read(c->t, buf, sizeof(buf), deadline);
        if (n == 0) {
            rc = conn_fail(c, -ECONNRESET, "read: connection closed by server");
            break;
        }
        if (n < 0) {
            rc = n >= -4095 ? (int)n : -EIO;   /* a transport must return -errno */
            conn_fail(c, rc, "read: %s", transport_reason(c, rc, why, sizeof(why)));
            break;
        }
        rc = resp_reader_feed(c->reader, buf, (size_t)n);
        if (rc < 0) {
            conn_fail(c, rc, "read: %s", resp_reader_errstr(c->reader));
            break;
        }
    }
    /* The chunk may hold an error reply that echoed a secret argument. */
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

/* Sends one command and reads one reply; error replies are returned whole. */
static int command(struct resp_conn *c, int argc, const char **argv, const size_t *argvlen,
                   bool secret_args, redisReply **ret) {
    char why[96];
    char *cmd = NULL;
    uint64_t deadline;
    int len, rc;

    if (!c || argc <= 0 || !argv || !ret)
        return -EINVAL;
    /* hiredis 0.14 sizes the command in an int: keep far away from overflowing it. */
    size_t total = 0;
    for (int i = 0; i < argc; i++) {
        if (!argv[i])
            return -EINVAL;
        total += argvlen ? argvlen[i] : strlen(argv[i]);
        if (total > INT_MAX / 2)
            return -E2BIG;
    }
    if (c->err)
        return c->err;

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0 || !cmd)
        return -ENOMEM;   /* nothing sent: not sticky */

    deadline = rctime_deadline(c->timeout_usec);
    rc = send_all(c, cmd, (size_t)len, deadline);
    if (secret_args)
        explicit_bzero(cmd, (size_t)len);
    free(cmd);
    if (rc < 0)
        return conn_fail(c, rc, "write: %s", transport_reason(c, rc, why, sizeof(why)));

    return read_reply(c, deadline, ret);
}

/* Length of the first word of an error reply ("WRONGPASS", "ERR", "NOPERM"). */
static size_t first_word_len(const redisReply *r) {
    size_t n = 0;

    if (!r->str)
        return 0;
    while (n < r->len && r->str[n] != ' ' && r->str[n] != '\t' && r->str[n] != '\r' &&
           r->str[n] != '\n' && r->str[n] != '\0')
        n++;
    return n;
}

/* Writes at most 32 printable bytes of the first word, for messages. */
static const char *first_word(const redisReply *r, char *buf, size_t size) {
    size_t n = first_word_len(r), i;

    if (n > 32)
        n = 32;
    if (n >= size)
        n = size - 1;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)r->str[i];
        buf[i] = (ch > 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    buf[i] = '\0';
    return buf;
}

/* Is the first word of an error reply to a secret-carrying command fit to show? It must
 * look like a Redis error code (ERR, WRONGPASS, NOPERM, ...) and contain none of the
 * command's arguments: a server that echoed the secret first must not get it logged. */
static bool word_is_safe(const redisReply *r, size_t n, int argc, const char *const *argv,
                         const size_t *argvlen) {
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = r->str[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return false;
    }
    for (int i = 1; i < argc; i++) {
        size_t alen = argvlen ? argvlen[i] : strlen(argv[i]);
        if (alen >= 3 && memmem(r->str, n, argv[i], alen))
            return false;
        /* A piece of an argument (a long password's first 32 bytes, say) in the word. */
        size_t w = n < 6 ? n : 6;
        for (size_t k = 0; w >= 4 && k + w <= n; k++)
            if (memmem(argv[i], alen, r->str + k, w))
                return false;
    }
    return true;
}

#define REDACTED "(redacted)"

/* Cuts an error reply to a secret-carrying command down to its first word, wiping the
 * rest, or to REDACTED when that word is not fit to show. */
static void keep_first_word(redisReply *r, int argc, const char *const *argv,
                            const size_t *argvlen) {
    size_t n = first_word_len(r);
    char *red;

    if (word_is_safe(r, n, argc, argv, argvlen)) {
        explicit_bzero(r->str + n, r->len - n);
        r->len = n;
        return;
    }
    explicit_bzero(r->str, r->len);
    red = strdup(REDACTED);
    if (red) {
        char *old = r->str;
        r->str = red;
        r->len = strlen(REDACTED);
        free(old);
    } else {
        r->len = 0;   /* the wiped buffer, now an empty string */
    }
}

/* Wipes every string in a reply tree (error replies to secret commands can echo them). */
static void wipe_reply(redisReply *r) {
    if (!r)
        return;
    if (r->str && r->len)
        explicit_bzero(r->str, r->len);
    if (r->type == REDIS_REPLY_ARRAY && r->element)
        for (size_t i = 0; i < r->elements; i++)
            wipe_reply(r->element[i]);
}

static void free_secret_reply(redisReply *r) {
    wipe_reply(r);
    freeReplyObject(r);
}

void resp_reply_wipe_free(redisReply *r) {
    if (r)
        free_secret_reply(r);
}

/* The replies to a secret-carrying command that may quote it: errors (Redis's own ACL
 * SETUSER errors do), and the text of a status or bulk string a look-alike server or a
 * proxy answers with instead. "+OK" keeps its one word. */
static bool may_echo(const redisReply *r) {
    return r->str && (r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS ||
                      r->type == REDIS_REPLY_STRING);
}

void resp_reply_text(const redisReply *r, char *buf, size_t size) {
    size_t n = 0;

    if (!buf || size == 0)
        return;
    if (r && r->str)
        while (n < r->len && n + 1 < size && n < 120 && r->str[n] >= 0x20 && r->str[n] < 0x7f) {
            buf[n] = r->str[n];
            n++;
        }
    buf[n] = '\0';
}

void resp_redact_error(redisReply *r, int argc, const char *const *argv,
                       const size_t *argvlen) {
    if (r && may_echo(r))
        keep_first_word(r, argc, argv, argvlen);
}

int resp_command(struct resp_conn *c, int argc, const char **argv, const size_t *argvlen,
                 bool secret_args, redisReply **ret) {
    redisReply *reply = NULL;
    int rc = command(c, argc, argv, argvlen, secret_args, &reply);

    if (rc < 0 || !reply)
        return rc < 0 ? rc : -EPROTO;
    /* Redis echoes arguments in some errors ("ACL SETUSER u <pw" does): for a command
     * that carries a secret the caller only ever sees the first word of a text reply. */
    if (secret_args && may_echo(reply))
        keep_first_word(reply, argc, argv, argvlen);
    *ret = reply;
    return 0;
}

static int connect_fd(int fd, const struct sockaddr *sa, socklen_t salen, uint64_t deadline) {
    for (;;) {
        int soerr = 0, rc;
        socklen_t l = sizeof(soerr);

        if (connect(fd, sa, salen) == 0)
            return 0;
        switch (errno) {
        case EISCONN:
            return 0;
        case EINTR:
            /* The connect goes on in the background; asking again tells us its state
             * (EALREADY, EISCONN or the error). */
            continue;
        case EAGAIN: {
            /* AF_UNIX: the listener's backlog is full, and poll() cannot wait for room. */
            uint64_t now = rctime_mono_usec();
            uint64_t nap = 5000;
            if (now >= deadline)
                return -ETIMEDOUT;
            if (deadline - now < nap)
                nap = deadline - now;
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(nap * 1000)};
            (void)nanosleep(&ts, NULL);
            continue;
        }
        case EINPROGRESS:
        case EALREADY:
            rc = resp_wait_fd(fd, POLLOUT, deadline);
            if (rc < 0)
                return rc;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0)
                return -errno;
            return soerr ? -soerr : 0;
        default:
            return -errno;
        }
    }
}

static int connect_unix(const struct endpoint *ep, uint64_t deadline, int *ret_fd) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t plen = strnlen(ep->path, sizeof(ep->path));
    int fd, rc;

    if (plen == 0 || plen >= sizeof(ep->path) || plen >= sizeof(sa.sun_path))
        return -EINVAL;
    memcpy(sa.sun_path, ep->path, plen);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    rc = connect_fd(fd, (const struct sockaddr *)&sa,
                    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1), deadline);
    if (rc < 0) {
        (void)close(fd);
        return rc;
    }
    *ret_fd = fd;
    return 0;
}

static int gai_to_errno(int gai) {
    switch (gai) {
    case EAI_SYSTEM:
        return errno ? -errno : -EIO;
    case EAI_MEMORY:
        return -ENOMEM;
    default:
        return -EHOSTUNREACH;
    }
}

/* Tries each resolved address in turn. Each attempt gets an equal share of the time
 * left, so one black-holed address does not eat the whole timeout. On failure, label
 * and the return describe the last attempt. */
static int connect_tcp(const struct endpoint *ep, uint64_t deadline, int *ret_fd,
                       char *label, size_t label_size, bool *resolve_failed) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    size_t left = 0;
    int rc, gai;

    fmt_msg(port, sizeof(port), "%u", (unsigned)ep->port);
    /* getaddrinfo() cannot be given a deadline; names are resolved by the system's
     * resolver timeouts (resolv.conf). Address literals never block. */
    gai = getaddrinfo(ep->host, port, &hints, &res);
    if (gai != 0) {
        rc = gai_to_errno(gai);
        fmt_msg(label, label_size, "%s", gai_strerror(gai));
        *resolve_failed = true;
        return rc;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        left++;

    rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next, left--) {
        char addr[NI_MAXHOST];
        uint64_t now = rctime_mono_usec(), attempt_deadline;
        int fd;

        if (now >= deadline) {
            rc = -ETIMEDOUT;
            break;
        }
        attempt_deadline = now + (deadline - now) / left;

        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL, 0,
                        NI_NUMERICHOST) != 0)
            fmt_msg(addr, sizeof(addr), "?");
        if (strcmp(addr, ep->host) == 0)
            label[0] = '\0';
        else
            fmt_msg(label, label_size, " (%s)", addr);

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        rc = connect_fd(fd, ai->ai_addr, ai->ai_addrlen, attempt_deadline);
        if (rc == 0) {
            int one = 1;
            /* Small request/response exchanges: do not let Nagle hold the command back.
             * Failure only costs latency. */
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            *ret_fd = fd;
            break;
        }
        (void)close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

int resp_socket_connect(const struct endpoint *ep, uint64_t timeout_usec, int *ret_fd,
                        char *err, size_t errlen) {
    char epname[300], detail[NI_MAXHOST + 16] = "", why[96];
    bool resolve_failed = false;
    uint64_t deadline = rctime_deadline(timeout_usec);
    int fd = -1, rc;

    if (!ep || !ret_fd) {
        fmt_msg(err, errlen, "connect: invalid arguments");
        return -EINVAL;
    }
    endpoint_format(ep, epname, sizeof(epname));

    if (ep->kind == ENDPOINT_UNIX)
        rc = connect_unix(ep, deadline, &fd);
    else if (ep->kind == ENDPOINT_TCP)
        rc = connect_tcp(ep, deadline, &fd, detail, sizeof(detail), &resolve_failed);
    else
        rc = -EINVAL;

    if (rc < 0) {
        if (resolve_failed)
            fmt_msg(err, errlen, "connect %s: resolve: %s", epname, detail);
        else
            fmt_msg(err, errlen, "connect %s%s: %s", epname, detail,
                    io_reason(rc, timeout_usec, why, sizeof(why)));
        return rc;
    }
    *ret_fd = fd;
    return 0;
}

int resp_connect(const struct endpoint *ep, uint64_t timeout_usec,
                 struct resp_conn **ret, char *err, size_t errlen) {
    char epname[300];
    struct resp_transport *t;
    struct resp_conn *c;
    int fd = -1, rc;

    if (!ep || !ret) {
        fmt_msg(err, errlen, "connect: invalid arguments");
        return -EINVAL;
    }
    rc = resp_socket_connect(ep, timeout_usec, &fd, err, errlen);
    if (rc < 0)
        return rc;

    endpoint_format(ep, epname, sizeof(epname));
    t = sock_transport_new(fd);
    if (!t) {
        (void)close(fd);
        fmt_msg(err, errlen, "connect %s: out of memory", epname);
        return -ENOMEM;
    }
    c = resp_conn_new(t, timeout_usec);   /* closes t on failure */
    if (!c) {
        fmt_msg(err, errlen, "connect %s: out of memory", epname);
        return -ENOMEM;
    }
    *ret = c;
    return 0;
}

/* ------------------------------------------------------------------------------------
 * AUTH
 */

const char *resp_auth_result_to_string(enum resp_auth_result r) {
    switch (r) {
    case RESP_AUTH_ACCEPTED:
        return "accepted";
    case RESP_AUTH_REFUSED:
        return "refused";
    case RESP_AUTH_NOPASS:
        return "no password configured";
    case RESP_AUTH_UNEXPECTED:
        return "unexpected reply";
    case RESP_AUTH_IO:
        return "I/O error";
    }
    return "unknown";
}

static bool reply_is(const redisReply *r, int type, const char *s) {
    return r->type == type && r->str && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

static bool starts_with(const redisReply *r, const char *prefix) {
    size_t n = strlen(prefix);
    return r->str && r->len >= n && strncasecmp(r->str, prefix, n) == 0;
}

/* Error replies are NUL-terminated by create_string; an embedded NUL only shortens
 * what we search, which is fine for matching Redis's fixed phrases. */
static bool contains(const redisReply *r, const char *needle) {
    return r->str && strcasestr(r->str, needle) != NULL;
}

const char *resp_reply_type_name(int type) {
    switch (type) {
    case REDIS_REPLY_STRING: return "bulk string";
    case REDIS_REPLY_ARRAY: return "array";
    case REDIS_REPLY_INTEGER: return "integer";
    case REDIS_REPLY_NIL: return "nil";
    case REDIS_REPLY_STATUS: return "status";
    case REDIS_REPLY_ERROR: return "error";
    }
    return "unknown";
}

void resp_ping_judge(redisReply *reply, char *detail, size_t detail_len) {
    char word[40];

    if (!reply)
        fmt_msg(detail, detail_len, "PING after AUTH: no reply");
    else if (reply_is(reply, REDIS_REPLY_STATUS, "PONG"))
        fmt_msg(detail, detail_len, "%s", "");
    else if (reply->type == REDIS_REPLY_ERROR && starts_with(reply, "NOPERM"))
        /* The user may not run PING; AUTH itself said +OK, which is what counts. */
        fmt_msg(detail, detail_len, "PING not permitted for this user (NOPERM)");
    else if (reply->type == REDIS_REPLY_ERROR)
        /* PING rides right behind AUTH: a server out of step could be echoing the
         * password here, so only a word shaped like an error code is shown. */
        fmt_msg(detail, detail_len, "PING after AUTH: %s",
                word_is_safe(reply, first_word_len(reply), 0, NULL, NULL)
                    ? first_word(reply, word, sizeof(word)) : REDACTED);
    else
        fmt_msg(detail, detail_len, "PING after AUTH: unexpected %s reply",
                resp_reply_type_name(reply->type));
    if (reply)
        free_secret_reply(reply);
}

static enum resp_auth_result judge_ping(struct resp_conn *c, char *detail, size_t detail_len) {
    static const char *ping[] = {"PING"};
    redisReply *reply = NULL;
    int rc = command(c, 1, ping, NULL, false, &reply);

    if (rc < 0 || !reply) {
        fmt_msg(detail, detail_len, "PING after AUTH: %s", resp_errstr(c));
        return RESP_AUTH_IO;
    }
    resp_ping_judge(reply, detail, detail_len);
    return RESP_AUTH_ACCEPTED;
}

int resp_auth_argv(const char *username, const struct secret *password, const char *argv[3],
                   size_t argvlen[3]) {
    int argc = 0;

    if (!password || !secret_data(password))
        return -EINVAL;
    argv[argc] = "AUTH";
    argvlen[argc++] = 4;
    if (username) {
        argv[argc] = username;
        argvlen[argc++] = strlen(username);
    }
    argv[argc] = secret_data(password);
    argvlen[argc++] = secret_len(password);
    return argc;
}

enum resp_auth_result resp_auth_judge(redisReply *reply, int argc, const char *const *argv,
                                      const size_t *argvlen, char *detail, size_t detail_len) {
    enum resp_auth_result res;
    char word[40];

    fmt_msg(detail, detail_len, "%s", "");
    if (!reply) {
        fmt_msg(detail, detail_len, "AUTH: no reply");
        return RESP_AUTH_IO;
    }
    if (reply_is(reply, REDIS_REPLY_STATUS, "OK")) {
        free_secret_reply(reply);
        return RESP_AUTH_ACCEPTED;
    }

    /* Only our own fixed phrases and the error's first word go into detail. */
    if (reply->type == REDIS_REPLY_ERROR) {
        if (starts_with(reply, "WRONGPASS")) {
            res = RESP_AUTH_REFUSED;
            fmt_msg(detail, detail_len, "AUTH refused: WRONGPASS");
        } else if (contains(reply, "invalid username-password pair")) {
            res = RESP_AUTH_REFUSED;
            fmt_msg(detail, detail_len, "AUTH refused: invalid username-password pair");
        } else if (contains(reply, "invalid password")) {
            res = RESP_AUTH_REFUSED;
            fmt_msg(detail, detail_len, "AUTH refused: invalid password");
        } else if (contains(reply, "without any password configured") ||
                   contains(reply, "but no password is set")) {   /* Redis < 6 */
            res = RESP_AUTH_NOPASS;
            fmt_msg(detail, detail_len,
                    "AUTH: the server has no password configured for the default user");
        } else {
            res = RESP_AUTH_UNEXPECTED;
            keep_first_word(reply, argc, argv, argvlen);
            fmt_msg(detail, detail_len, "AUTH: unexpected error reply %s",
                    first_word(reply, word, sizeof(word)));
        }
    } else if (reply->type == REDIS_REPLY_STATUS) {
        res = RESP_AUTH_UNEXPECTED;
        keep_first_word(reply, argc, argv, argvlen);
        fmt_msg(detail, detail_len, "AUTH: unexpected status reply %s",
                first_word(reply, word, sizeof(word)));
    } else {
        res = RESP_AUTH_UNEXPECTED;
        fmt_msg(detail, detail_len, "AUTH: unexpected %s reply", resp_reply_type_name(reply->type));
    }
    free_secret_reply(reply);
    return res;
}

enum resp_auth_result resp_auth(struct resp_conn *c, const char *username,
                                const struct secret *password, char *detail, size_t detail_len) {
    const char *argv[3];
    size_t argvlen[3];
    redisReply *reply = NULL;
    enum resp_auth_result res;
    int argc, rc;

    fmt_msg(detail, detail_len, "%s", "");
    if (!c) {
        fmt_msg(detail, detail_len, "not connected");
        return RESP_AUTH_IO;
    }
    argc = resp_auth_argv(username, password, argv, argvlen);
    if (argc < 0) {
        fmt_msg(detail, detail_len, "AUTH: no password given");
        return RESP_AUTH_UNEXPECTED;
    }
    rc = command(c, argc, argv, argvlen, true, &reply);
    if (rc < 0 || !reply) {
        fmt_msg(detail, detail_len, "AUTH: %s", resp_errstr(c));
        return RESP_AUTH_IO;
    }
    res = resp_auth_judge(reply, argc, argv, argvlen, detail, detail_len);
    if (res == RESP_AUTH_ACCEPTED)
        return judge_ping(c, detail, detail_len);
    return res;
}

/* ------------------------------------------------------------------------------------
 * Cluster topology
 */

static bool is_str(const redisReply *r) {
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->str;
}

static bool str_is(const redisReply *r, const char *s) {
    return is_str(r) && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* What a node advertises as its address: a host name or an address literal, checked as
 * a configured one is (endpoint.h). "" for "?" / empty (unknown). */
static int take_host(const redisReply *r, char *host, size_t size) {
    if (!r || r->type == REDIS_REPLY_NIL) {
        host[0] = '\0';
        return 0;
    }
    if (!is_str(r) || memchr(r->str, '\0', r->len))
        return -EPROTO;
    if (r->len == 0 || (r->len == 1 && r->str[0] == '?')) {
        host[0] = '\0';
        return 0;
    }
    if (r->len >= size || !endpoint_host_valid(r->str, r->len))
        return -EPROTO;
    memcpy(host, r->str, r->len);
    host[r->len] = '\0';
    return 0;
}

static int take_port(const redisReply *r, uint16_t *ret) {
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < 0 || r->integer > 65535)
        return -EPROTO;
    *ret = (uint16_t)r->integer;
    return 0;
}

/* Adds n unless a node with the same address is there already. */
static int add_node(struct resp_cluster_node *nodes, size_t max, size_t *count,
                    const struct resp_cluster_node *n) {
    for (size_t i = 0; i < *count && i < max; i++)
        if (strcmp(nodes[i].host, n->host) == 0 && nodes[i].port == n->port &&
            nodes[i].tls_port == n->tls_port) {
            nodes[i].primary = nodes[i].primary || n->primary;
            return 0;
        }
    if (*count < max)
        nodes[*count] = *n;
    (*count)++;
    return 0;
}

/* One node of CLUSTER SHARDS: a flat map [key, value, ...]. */
static int parse_shard_node(const redisReply *m, struct resp_cluster_node *ret) {
    struct resp_cluster_node n = {0};
    char ip[256] = "", endpoint[256] = "";
    bool have_role = false;
    int rc;

    if (!m || m->type != REDIS_REPLY_ARRAY || m->elements % 2)
        return -EPROTO;
    for (size_t i = 0; i < m->elements; i += 2) {
        const redisReply *k = m->element[i], *v = m->element[i + 1];

        if (!is_str(k))
            return -EPROTO;
        if (str_is(k, "ip"))
            rc = take_host(v, ip, sizeof(ip));
        else if (str_is(k, "endpoint"))
            rc = take_host(v, endpoint, sizeof(endpoint));
        else if (str_is(k, "port"))
            rc = take_port(v, &n.port);
        else if (str_is(k, "tls-port"))
            rc = take_port(v, &n.tls_port);
        else if (str_is(k, "role")) {
            if (!is_str(v))
                return -EPROTO;
            n.primary = str_is(v, "master") || str_is(v, "primary");
            have_role = true;
            rc = 0;
        } else if (str_is(k, "health")) {
            if (!is_str(v))
                return -EPROTO;
            n.failed = str_is(v, "failed") || str_is(v, "fail");
            rc = 0;
        } else
            rc = 0;   /* id, hostname, replication-offset, and whatever comes later */
        if (rc < 0)
            return rc;
    }
    if (!have_role || (n.port == 0 && n.tls_port == 0))
        return -EPROTO;
    /* "endpoint" is what the server tells clients to use (cluster-preferred-endpoint-type);
     * servers before it existed only have "ip". */
    memcpy(n.host, endpoint[0] ? endpoint : ip, sizeof(n.host));
    *ret = n;
    return 0;
}

int resp_cluster_parse_shards(const redisReply *r, struct resp_cluster_node *nodes, size_t max) {
    size_t count = 0;

    if (!r || r->type != REDIS_REPLY_ARRAY || (!nodes && max))
        return -EPROTO;
    for (size_t s = 0; s < r->elements; s++) {
        const redisReply *shard = r->element[s], *list = NULL;

        if (!shard || shard->type != REDIS_REPLY_ARRAY || shard->elements % 2)
            return -EPROTO;
        for (size_t i = 0; i < shard->elements; i += 2) {
            if (!is_str(shard->element[i]))
                return -EPROTO;
            if (str_is(shard->element[i], "nodes"))
                list = shard->element[i + 1];
        }
        if (!list || list->type != REDIS_REPLY_ARRAY)
            return -EPROTO;
        for (size_t i = 0; i < list->elements; i++) {
            struct resp_cluster_node n;
            int rc = parse_shard_node(list->element[i], &n);

            if (rc < 0)
                return rc;
            add_node(nodes, max, &count, &n);
        }
    }
    if (count > max)
        return -E2BIG;
    return count > INT_MAX ? -E2BIG : (int)count;
}

int resp_cluster_parse_slots(const redisReply *r, struct resp_cluster_node *nodes, size_t max) {
    size_t count = 0;

    if (!r || r->type != REDIS_REPLY_ARRAY || (!nodes && max))
        return -EPROTO;
    for (size_t s = 0; s < r->elements; s++) {
        const redisReply *range = r->element[s];

        /* [start, end, primary, replica...] */
        if (!range || range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
            range->element[0]->type != REDIS_REPLY_INTEGER ||
            range->element[1]->type != REDIS_REPLY_INTEGER)
            return -EPROTO;
        for (size_t i = 2; i < range->elements; i++) {
            const redisReply *node = range->element[i];
            struct resp_cluster_node n = {0};
            int rc;

            /* [ip, port, id (Redis >= 3.2), metadata map (>= 7.0)] */
            if (!node || node->type != REDIS_REPLY_ARRAY || node->elements < 2)
                return -EPROTO;
            if ((rc = take_host(node->element[0], n.host, sizeof(n.host))) < 0 ||
                (rc = take_port(node->element[1], &n.port)) < 0)
                return rc;
            if (n.port == 0)
                return -EPROTO;
            n.tls_port = n.port;
            n.primary = i == 2;
            add_node(nodes, max, &count, &n);
        }
    }
    if (count > max)
        return -E2BIG;
    return count > INT_MAX ? -E2BIG : (int)count;
}
