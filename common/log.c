/* log: journald native protocol or one stderr line per event.
 *
 * The journal's native protocol (systemd.journal-fields(7), "Native Journal Protocol"):
 * one datagram per entry on an AF_UNIX SOCK_DGRAM socket, each field either
 *   KEY=value\n                          (value without newlines), or
 *   KEY\n <64-bit LE length> value \n    (value may contain anything).
 * We speak it ourselves rather than link sd_journal_send() so the socket path can be
 * pointed at a test's socket ($REDIS_CREDS_JOURNAL_SOCKET).
 *
 * Every message and context field is passed through secret_scrub() first, whatever module
 * wrote it: the bytes of a live secret never reach the journal or stderr.
 *
 * Each event is formatted into one buffer and sent with one sendmsg() or one write(),
 * under a mutex, so lines from different threads never interleave. errno is preserved
 * across every call, so `log_error(...); return -errno;` works.
 */
#include "log.h"

#include "fdio.h"
#include "secret.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define LOG_DEFAULT_JOURNAL_SOCKET "/run/systemd/journal/socket"
#define LOG_MSG_MAX 4096      /* formatted message, truncated beyond */
#define LOG_LINE_MAX 8192     /* one stderr line */
#define LOG_IDENT_MAX 64

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_ident[LOG_IDENT_MAX] = "redis-creds";
static int log_level = LOG_INFO;
static bool log_to_journal;
static int journal_fd = -1;
static struct sockaddr_un journal_addr;
static socklen_t journal_addr_len;

static const char *const level_names[] = {
    [LOG_EMERG] = "emerg",   [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
    [LOG_ERR] = "err",       [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
    [LOG_INFO] = "info",     [LOG_DEBUG] = "debug",
};

int log_level_from_string(const char *s) {
    if (!s)
        return -EINVAL;
    /* Only the five documented names (config: log_level). */
    for (int l = LOG_ERR; l <= LOG_DEBUG; l++)
        if (strcmp(s, level_names[l]) == 0)
            return l;
    return -EINVAL;
}

const char *log_level_to_string(int level) {
    if (level < LOG_EMERG || level > LOG_DEBUG)
        return "unknown";
    return level_names[level];
}

void log_set_level(int level) {
    if (level < LOG_EMERG)
        level = LOG_EMERG;
    if (level > LOG_DEBUG)
        level = LOG_DEBUG;
    __atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

int log_get_level(void) {
    return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

/* $JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected to stdout/stderr. */
static bool journal_stream_is_stderr(void) {
    const char *e = secure_getenv("JOURNAL_STREAM");
    if (!e || !*e)
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long dev = strtoull(e, &end, 10);
    if (errno || end == e || *end != ':')
        return false;
    const char *p = end + 1;
    errno = 0;
    unsigned long long ino = strtoull(p, &end, 10);
    if (errno || end == p || *end != '\0')
        return false;
    struct stat st;
    if (fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* Called with log_lock held. */
static bool journal_setup(void) {
    const char *path = secure_getenv("REDIS_CREDS_JOURNAL_SOCKET");
    if (!path || !*path)
        path = LOG_DEFAULT_JOURNAL_SOCKET;
    size_t n = strlen(path);
    if (n >= sizeof(journal_addr.sun_path))
        return false;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    memset(&journal_addr, 0, sizeof(journal_addr));
    journal_addr.sun_family = AF_UNIX;
    memcpy(journal_addr.sun_path, path, n + 1);
    journal_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    journal_fd = fd;
    return true;
}

void log_open(const char *ident, enum log_target target) {
    int saved_errno = errno;
    pthread_mutex_lock(&log_lock);
    if (ident && *ident) {
        size_t n = strlen(ident);
        if (n >= sizeof(log_ident))
            n = sizeof(log_ident) - 1;
        memcpy(log_ident, ident, n);
        log_ident[n] = '\0';
    }
    if (journal_fd >= 0) {
        close(journal_fd);
        journal_fd = -1;
    }
    bool journal = target == LOG_TARGET_JOURNAL ||
                   (target == LOG_TARGET_AUTO && journal_stream_is_stderr());
    log_to_journal = journal && journal_setup();
    pthread_mutex_unlock(&log_lock);
    errno = saved_errno;
}

/* ---- journal ----------------------------------------------------------------------- */

struct jbuf {
    char *p;
    size_t len, cap;
    bool overflow;
};

static void jbuf_put(struct jbuf *b, const void *data, size_t n) {
    if (b->overflow || n > b->cap - b->len) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void jbuf_field(struct jbuf *b, const char *key, const char *value) {
    if (!value)
        return;
    size_t klen = strlen(key), vlen = strlen(value);
    if (!memchr(value, '\n', vlen)) {
        jbuf_put(b, key, klen);
        jbuf_put(b, "=", 1);
        jbuf_put(b, value, vlen);
        jbuf_put(b, "\n", 1);
        return;
    }
    unsigned char le[8];
    uint64_t v = vlen;
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(v >> (8 * i));
    jbuf_put(b, key, klen);
    jbuf_put(b, "\n", 1);
    jbuf_put(b, le, sizeof(le));
    jbuf_put(b, value, vlen);
    jbuf_put(b, "\n", 1);
}

/* Called with log_lock held. Returns true when the journal took the entry. */
static bool journal_send(int level, const struct log_ctx *ctx, const char *msg) {
    char buf[LOG_MSG_MAX + 1024];
    struct jbuf b = { .p = buf, .cap = sizeof(buf) };
    char prio[2] = { (char)('0' + (level & 7)), '\0' };
    jbuf_field(&b, "PRIORITY", prio);
    jbuf_field(&b, "SYSLOG_IDENTIFIER", log_ident);
    jbuf_field(&b, "MESSAGE", msg);
    if (ctx) {
        jbuf_field(&b, "MESSAGE_ID", ctx->message_id);
        jbuf_field(&b, "REDIS_CREDS_NAME", ctx->name);
        jbuf_field(&b, "REDIS_CREDS_VERSION", ctx->version);
        jbuf_field(&b, "REDIS_CREDS_SOURCE", ctx->source);
        jbuf_field(&b, "REDIS_CREDS_NODES", ctx->nodes);
    }
    if (b.overflow)
        return false;
    struct iovec iov = { .iov_base = buf, .iov_len = b.len };
    struct msghdr mh = {
        .msg_name = &journal_addr,
        .msg_namelen = journal_addr_len,
        .msg_iov = &iov,
        .msg_iovlen = 1,
    };
    ssize_t r;
    do
        r = sendmsg(journal_fd, &mh, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r >= 0;
}

/* ---- stderr ------------------------------------------------------------------------ */

struct lbuf {
    char p[LOG_LINE_MAX];
    size_t len;
};

/* Appends s, turning control characters into spaces so an event stays one line. Leaves
 * room for the final newline. */
static void lbuf_put(struct lbuf *b, const char *s) {
    for (; *s && b->len < sizeof(b->p) - 1; s++) {
        unsigned char c = (unsigned char)*s;
        b->p[b->len++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
}

static void lbuf_kv(struct lbuf *b, const char *key, const char *value) {
    if (!value)
        return;
    lbuf_put(b, " ");
    lbuf_put(b, key);
    lbuf_put(b, "=");
    lbuf_put(b, value);
}

static void stderr_write(int level, const struct log_ctx *ctx, const char *msg) {
    struct lbuf b = { .len = 0 };
    char pid[32];
    snprintf(pid, sizeof(pid), "[%ld]: ", (long)getpid());
    lbuf_put(&b, log_ident);
    lbuf_put(&b, pid);
    lbuf_put(&b, log_level_to_string(level));
    lbuf_put(&b, ": ");
    lbuf_put(&b, msg);
    if (ctx) {
        lbuf_kv(&b, "name", ctx->name);
        lbuf_kv(&b, "version", ctx->version);
        lbuf_kv(&b, "source", ctx->source);
        lbuf_kv(&b, "nodes", ctx->nodes);
    }
    b.p[b.len++] = '\n';
    (void)fdio_write_all(STDERR_FILENO, b.p, b.len);   /* a failure: nowhere left to report it */
}

/* The context with every field that can carry text scrubbed (secret_scrub): names and
 * versions come from config and stores, node lists from Redis. A field longer than its
 * copy is cut (each is far longer than what the agent puts there). */
struct ctx_copy {
    char name[256], version[256], source[256], nodes[1024];
    struct log_ctx ctx;
};

static const char *field_scrubbed(char *buf, size_t cap, const char *value) {
    if (!value)
        return NULL;
    snprintf(buf, cap, "%s", value);
    secret_scrub(buf, cap);
    return buf;
}

static const struct log_ctx *ctx_scrubbed(const struct log_ctx *in, struct ctx_copy *c) {
    c->ctx = (struct log_ctx){
        .message_id = in->message_id,
        .name = field_scrubbed(c->name, sizeof c->name, in->name),
        .version = field_scrubbed(c->version, sizeof c->version, in->version),
        .source = field_scrubbed(c->source, sizeof c->source, in->source),
        .nodes = field_scrubbed(c->nodes, sizeof c->nodes, in->nodes),
    };
    return &c->ctx;
}

void log_ctx_vmsg(int level, const struct log_ctx *ctx, const char *fmt, va_list ap) {
    if (level > log_get_level())
        return;
    int saved_errno = errno;
    char msg[LOG_MSG_MAX];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);   /* %m still sees the caller's errno */
    if (n < 0)
        msg[0] = '\0';
    /* Before the "...": a secret the cut left only the beginning of is found at the end. */
    secret_scrub(msg, sizeof(msg));
    if (n >= 0 && (size_t)n >= sizeof(msg)) {
        size_t len = strlen(msg);
        len = len > sizeof(msg) - 4 ? sizeof(msg) - 4 : len;
        memcpy(msg + len, "...", 4);
    }
    if (level < LOG_EMERG)
        level = LOG_EMERG;
    struct ctx_copy copy;
    const struct log_ctx *c = ctx ? ctx_scrubbed(ctx, &copy) : NULL;

    pthread_mutex_lock(&log_lock);
    if (!log_to_journal || !journal_send(level, c, msg))
        stderr_write(level, c, msg);
    pthread_mutex_unlock(&log_lock);
    errno = saved_errno;
}

void log_ctx_msg(int level, const struct log_ctx *ctx, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_ctx_vmsg(level, ctx, fmt, ap);
    va_end(ap);
}
