/* AUTH for hiredis connections from a libredis-creds handle: current, then previous, then
 * a re-read of the file (docs/design.md §5.1 "previous is the fallback a client tries"). */
#include "redis_creds_hiredis.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RC_EXPIRY_MARGIN_S 30

/* The clocks in this library's units; not common/rctime.h: the client libraries link
 * nothing of ours (see parse_rfc3339 in redis_creds.c). */
static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no system call */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* Redis' answers to a wrong password (docs/design.md §7 "Refused means ..."). */
static bool is_refusal(const char *s, size_t n) {
    static const char *const pfx[] = {"WRONGPASS", "ERR invalid password",
                                      "ERR invalid username-password pair", "invalid password"};
    for (size_t i = 0; i < sizeof pfx / sizeof pfx[0]; i++) {
        size_t k = strlen(pfx[i]);
        if (n >= k && memcmp(s, pfx[i], k) == 0)
            return true;
    }
    return false;
}

/* Writes a formatted command without hiredis keeping a copy in its output buffer. */
static int send_secret(redisContext *c, const char *cmd, size_t len) {
#if HIREDIS_MAJOR >= 1
    /* hiredis >= 1.0 may wrap the socket (TLS): go through it. Its output buffer is freed
     * unwiped; applications that care can install wiping allocators (hiredisSetAllocators). */
    return redisAppendFormattedCommand(c, cmd, len) == REDIS_OK ? 0 : -ECONNRESET;
#else
    int done = 0;
    do { /* flush anything pipelined before us, in order */
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return -ECONNRESET;
    } while (!done);
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(c->fd, cmd + off, len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -ECONNRESET;
        }
        off += (size_t)n;
    }
    return 0;
#endif
}

/* One AUTH. 0 accepted, 1 refused, -errno otherwise. */
static int auth_once(redisContext *c, const struct rc_credential *cr) {
    const char *argv[3];
    size_t argvlen[3];
    int argc = 0;
    argv[argc] = "AUTH";
    argvlen[argc++] = 4;
    if (cr->username) {
        argv[argc] = cr->username;
        argvlen[argc++] = strlen(cr->username);
    }
    argv[argc] = cr->password;
    argvlen[argc++] = cr->password_len;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0 || !cmd)
        return -ENOMEM;
    int r = send_secret(c, cmd, (size_t)len);
    explicit_bzero(cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (r < 0)
        return r;
    redisReply *reply = NULL;
    if (redisGetReply(c, (void **)&reply) != REDIS_OK || !reply)
        return c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT
                                                                                   : -ECONNRESET;
    if (reply->type == REDIS_REPLY_STATUS && reply->len == 2 && memcmp(reply->str, "OK", 2) == 0)
        r = 0;
    else if (reply->type == REDIS_REPLY_ERROR && is_refusal(reply->str, (size_t)reply->len))
        r = 1;
    else
        r = -EPROTO;
    freeReplyObject(reply);
    return r;
}

static void record(struct rc_redis_session *s, const struct rc_creds *cr, bool prev) {
    if (!s)
        return;
    s->generation = cr->generation;
    s->expires_at = prev ? cr->previous->expires_at : cr->current.expires_at;
    s->used_previous = prev;
    s->checked_ms = 0;
}

/* Tries current then previous (unless expired or past previous_valid_until) of one
 * snapshot: 0, 1 (all refused), -errno. */
static int auth_snapshot(redisContext *c, const struct rc_creds *cr, struct rc_redis_session *s) {
    int r = auth_once(c, &cr->current);
    if (r == 0) {
        record(s, cr, false);
        return 0;
    }
    const struct rc_credential *prev = rc_usable_previous(cr, (int64_t)time(NULL));
    if (r < 0 || !prev)
        return r;
    r = auth_once(c, prev);
    if (r == 0)
        record(s, cr, true);
    return r;
}

int rc_redis_auth_session(redisContext *c, rc_handle *h, struct rc_redis_session *s) {
    if (!c || !h)
        return -EINVAL;
    if (c->err)
        return -ECONNRESET;
    if (!(c->flags & REDIS_BLOCK))
        return -EINVAL;
    const struct rc_creds *cr = NULL;
    int r = rc_get(h, &cr);
    if (r < 0)
        return r;
    r = auth_snapshot(c, cr, s);
    if (r == 1) {
        /* Both refused: a newer credential may have been published a moment ago (the
         * server already dropped what we have). Read the file now rather than wait. */
        uint64_t tried = cr->generation;
        rc_reload(h);
        cr = rc_creds_unref(cr);
        if (rc_get(h, &cr) == 0 && cr->generation != tried)
            r = auth_snapshot(c, cr, s);
    }
    rc_creds_unref(cr);
    return r == 1 ? -EKEYREJECTED : r;
}

int rc_redis_auth(redisContext *c, rc_handle *h) {
    return rc_redis_auth_session(c, h, NULL);
}

/* Whether the session's credential was replaced: 0 no, 1 yes (or never authenticated),
 * -EKEYEXPIRED when it has expired with nothing newer. Near expiry (the last 30 s) it
 * re-reads the file at most once a second, in case a change was missed. */
static int session_stale(rc_handle *h, struct rc_redis_session *s) {
    if (s->generation == 0 || s->generation != rc_generation(h))
        return 1;
    if (!s->expires_at)
        return 0;
    int64_t now = wall_s();
    if (now < s->expires_at - RC_EXPIRY_MARGIN_S)
        return 0;
    int64_t m = mono_ms();
    if (s->checked_ms && m - s->checked_ms < 1000)
        return now >= s->expires_at ? -EKEYEXPIRED : 0;
    s->checked_ms = m;
    rc_reload(h);
    if (s->generation != rc_generation(h))
        return 1;
    return now >= s->expires_at ? -EKEYEXPIRED : 0;
}

int rc_redis_reauth_if_changed(redisContext *c, rc_handle *h, struct rc_redis_session *s) {
    if (!c || !h || !s)
        return -EINVAL;
    int r = session_stale(h, s);
    if (r <= 0)
        return r;
    r = rc_redis_auth_session(c, h, s);
    return r < 0 ? r : 1;
}

/* ------------------------------------------------------------------------------------
 * Long-lived connections: blocking commands and subscribers. */

#define RC_REPLY_SLACK_MS 5000 /* how long past a blocking command's own timeout we wait */
#define RC_SUB_POLL_MS 250     /* a subscriber re-checks its credential this often */
#define RC_SUB_CONFIRM_MS 10000

static int flush_output(redisContext *c) {
    int done = 0;
    do {
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return -ECONNRESET;
    } while (!done);
    return 0;
}

/* The next reply, waiting up to timeout_ms with poll() so that running out of time leaves
 * the context usable: 1 with *ret, 0 on timeout, -ECONNRESET. */
static int read_reply(redisContext *c, int timeout_ms, redisReply **ret) {
    void *r = NULL;
    int64_t end = mono_ms() + timeout_ms;
    if (redisGetReplyFromReader(c, &r) != REDIS_OK)
        return -ECONNRESET;
    while (!r) {
        int64_t left = end - mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        if (redisBufferRead(c) != REDIS_OK || redisGetReplyFromReader(c, &r) != REDIS_OK)
            return -ECONNRESET;
    }
    *ret = r;
    return 1;
}

int64_t rc_redis_block_ms(const struct rc_redis_session *s, int64_t want_ms) {
    int64_t cap = want_ms > 0 ? want_ms : INT64_MAX;
    if (s && s->expires_at) {
        int64_t until = (s->expires_at - wall_s()) * 1000 - RC_REDIS_BLOCK_MARGIN_MS;
        if (until < cap)
            cap = until;
    }
    if (cap == INT64_MAX)
        return 0;
    return cap < RC_REDIS_MIN_BLOCK_MS ? RC_REDIS_MIN_BLOCK_MS : cap;
}

/* One blocking command with its timeout (ms, 0: forever) appended: 1 reply, -errno. */
static int block_once(redisContext *c, int argc, const char **argv, const size_t *argvlen,
                      int64_t block_ms, redisReply **ret) {
    const char *v[RC_REDIS_MAX_BLOCK_ARGS + 1];
    size_t vl[RC_REDIS_MAX_BLOCK_ARGS + 1];
    char tmo[32];
    memcpy(v, argv, (size_t)argc * sizeof *v);
    memcpy(vl, argvlen, (size_t)argc * sizeof *vl);
    int n = snprintf(tmo, sizeof tmo, "%lld.%03lld", (long long)(block_ms / 1000),
                     (long long)(block_ms % 1000));
    v[argc] = tmo;
    vl[argc] = (size_t)n;
    if (redisAppendCommandArgv(c, argc + 1, v, vl) != REDIS_OK)
        return -ECONNRESET;
    int r = flush_output(c);
    if (r < 0)
        return r;
    int64_t wait = block_ms ? block_ms + RC_REPLY_SLACK_MS : INT32_MAX;
    r = read_reply(c, wait > INT32_MAX ? INT32_MAX : (int)wait, ret);
    return r == 0 ? -ETIMEDOUT : r;
}

int rc_redis_blocking_argv(redisContext *c, rc_handle *h, struct rc_redis_session *s, int argc,
                           const char **argv, const size_t *argvlen, int64_t timeout_ms,
                           redisReply **ret_reply) {
    if (!c || !h || !s || !argv || !argvlen || argc < 1 || argc > RC_REDIS_MAX_BLOCK_ARGS ||
        !ret_reply || timeout_ms < 0)
        return -EINVAL;
    int64_t end = timeout_ms ? mono_ms() + timeout_ms : 0;
    for (;;) {
        int r = rc_redis_reauth_if_changed(c, h, s);
        if (r < 0)
            return r;
        int64_t left = end ? end - mono_ms() : 0;
        if (end && left <= 0)
            return 0;
        redisReply *reply = NULL;
        r = block_once(c, argc, argv, argvlen, rc_redis_block_ms(s, left), &reply);
        if (r < 0)
            return r;
        if (reply->type != REDIS_REPLY_NIL) {
            *ret_reply = reply;
            return 1;
        }
        freeReplyObject(reply);
    }
}

struct rc_redis_subscriber {
    rc_handle *h;
    rc_redis_connect_fn connect;
    void *arg;
    char **channels;
    size_t n;
    redisContext *c;
    struct rc_redis_session s;
    redisReply **queue; /* messages to hand out before reading c again */
    size_t qhead, qlen, qcap;
    unsigned switches;
};

static int queue_push(struct rc_redis_subscriber *sub, redisReply *m) {
    if (sub->qlen == sub->qcap) {
        size_t cap = sub->qcap ? sub->qcap * 2 : 16;
        redisReply **q = realloc(sub->queue, cap * sizeof *q);
        if (!q)
            return -ENOMEM;
        sub->queue = q;
        sub->qcap = cap;
    }
    sub->queue[sub->qlen++] = m;
    return 0;
}

/* The kind of a pub/sub reply: its first element, when it is an array of 3. */
static bool push_is(const redisReply *r, const char *kind) {
    size_t k = strlen(kind);
    return r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
           r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len == k &&
           memcmp(r->element[0]->str, kind, k) == 0;
}

/* Reads replies until `want` confirmations of `kind` (or, for "unsubscribe", the one that
 * says 0 channels are left) arrived; "message"s on the way go to the queue. */
static int read_until(struct rc_redis_subscriber *sub, redisContext *c, const char *kind,
                      size_t want) {
    int64_t end = mono_ms() + RC_SUB_CONFIRM_MS;
    bool unsub = strcmp(kind, "unsubscribe") == 0;
    while (want > 0) {
        redisReply *r = NULL;
        int64_t left = end - mono_ms();
        int k = left > 0 ? read_reply(c, (int)left, &r) : 0;
        if (k <= 0)
            return k == 0 ? -ETIMEDOUT : k;
        if (push_is(r, "message")) {
            k = queue_push(sub, r);
            if (k < 0) {
                freeReplyObject(r);
                return k;
            }
            continue;
        }
        if (push_is(r, kind) && (!unsub || (r->element[2]->type == REDIS_REPLY_INTEGER &&
                                           r->element[2]->integer == 0)))
            want--;
        freeReplyObject(r);
    }
    return 0;
}

/* A new connection (the application's connect function), authenticated, subscribed to
 * every channel, its confirmations read. Messages that arrive meanwhile are queued. */
static int subscribe_new(struct rc_redis_subscriber *sub, redisContext **ret_c,
                         struct rc_redis_session *ret_s) {
    struct rc_redis_session s = {0};
    redisContext *c = sub->connect(sub->arg, sub->h, &s);
    if (!c)
        return -ECONNRESET;
    int r = c->err ? -ECONNRESET : 0;
    if (r == 0 && s.generation == 0)
        r = rc_redis_auth_session(c, sub->h, &s);
    const char **argv = r == 0 ? calloc(sub->n + 1, sizeof *argv) : NULL;
    size_t *argvlen = argv ? calloc(sub->n + 1, sizeof *argvlen) : NULL;
    if (r == 0 && !argvlen)
        r = -ENOMEM;
    if (r == 0) {
        argv[0] = "SUBSCRIBE";
        argvlen[0] = 9;
        for (size_t i = 0; i < sub->n; i++) {
            argv[i + 1] = sub->channels[i];
            argvlen[i + 1] = strlen(sub->channels[i]);
        }
        r = redisAppendCommandArgv(c, (int)sub->n + 1, argv, argvlen) == REDIS_OK
                ? flush_output(c)
                : -ECONNRESET;
    }
    free(argv);
    free(argvlen);
    if (r == 0)
        r = read_until(sub, c, "subscribe", sub->n);
    if (r < 0) {
        redisFree(c);
        return r;
    }
    *ret_c = c;
    *ret_s = s;
    return 0;
}

/* queue[from, mid) and queue[mid, qlen) swap places (order kept within each). */
static int queue_rotate(struct rc_redis_subscriber *sub, size_t from, size_t mid) {
    size_t a = mid - from, b = sub->qlen - mid;
    if (a == 0 || b == 0)
        return 0;
    redisReply **tmp = malloc(a * sizeof *tmp);
    if (!tmp)
        return -ENOMEM;
    memcpy(tmp, sub->queue + from, a * sizeof *tmp);
    memmove(sub->queue + from, sub->queue + mid, b * sizeof *tmp);
    memcpy(sub->queue + from + b, tmp, a * sizeof *tmp);
    free(tmp);
    return 0;
}

/* Make-before-break: subscribe on a new connection (new credential), then UNSUBSCRIBE the
 * old one and keep what it delivers until Redis confirms; the old connection's messages
 * are handed out first, then the new one's. */
static int subscriber_switch(struct rc_redis_subscriber *sub) {
    size_t mark = sub->qlen;
    redisContext *nc = NULL;
    struct rc_redis_session ns;
    int r = subscribe_new(sub, &nc, &ns);
    if (r < 0)
        return r;
    size_t mid = sub->qlen;
    redisContext *old = sub->c;
    sub->c = nc;
    sub->s = ns;
    sub->switches++;
    static const char *const unsub[] = {"UNSUBSCRIBE"};
    static const size_t unsublen[] = {11};
    if (redisAppendCommandArgv(old, 1, (const char **)unsub, unsublen) != REDIS_OK)
        r = -ECONNRESET;
    if (r == 0)
        r = flush_output(old);
    if (r == 0)
        r = read_until(sub, old, "unsubscribe", 1);
    redisFree(old);
    int q = queue_rotate(sub, mark, mid);
    /* The old connection failing now may have lost messages: say so (the new one is in
     * place, so the caller can carry on). */
    return r < 0 ? r : q;
}

int rc_redis_subscriber_open(rc_handle *h, rc_redis_connect_fn connect, void *arg,
                             const char *const *channels, size_t n,
                             struct rc_redis_subscriber **ret_sub) {
    if (!h || !connect || !channels || n == 0 || n > RC_REDIS_MAX_CHANNELS || !ret_sub)
        return -EINVAL;
    struct rc_redis_subscriber *sub = calloc(1, sizeof *sub);
    if (!sub)
        return -ENOMEM;
    sub->h = h;
    sub->connect = connect;
    sub->arg = arg;
    sub->channels = calloc(n, sizeof *sub->channels);
    int r = sub->channels ? 0 : -ENOMEM;
    for (size_t i = 0; r == 0 && i < n; i++) {
        sub->channels[i] = strdup(channels[i]);
        sub->n = i + 1;
        if (!sub->channels[i])
            r = -ENOMEM;
    }
    if (r == 0)
        r = subscribe_new(sub, &sub->c, &sub->s);
    if (r < 0) {
        rc_redis_subscriber_close(sub);
        return r;
    }
    *ret_sub = sub;
    return 0;
}

int rc_redis_subscriber_next(struct rc_redis_subscriber *sub, int timeout_ms,
                             redisReply **ret_msg) {
    if (!sub || !ret_msg || timeout_ms < 0)
        return -EINVAL;
    int64_t end = mono_ms() + timeout_ms;
    for (;;) {
        if (sub->qhead < sub->qlen) {
            *ret_msg = sub->queue[sub->qhead++];
            return 1;
        }
        sub->qhead = sub->qlen = 0; /* empty: switches queue from the start */
        int r = session_stale(sub->h, &sub->s);
        if (r < 0)
            return r;
        if (r == 1) {
            r = subscriber_switch(sub);
            if (r < 0)
                return r;
            continue;
        }
        int64_t left = end - mono_ms();
        if (left <= 0)
            return 0;
        redisReply *m = NULL;
        r = read_reply(sub->c, left < RC_SUB_POLL_MS ? (int)left : RC_SUB_POLL_MS, &m);
        if (r < 0)
            return r;
        if (r == 1 && push_is(m, "message")) {
            *ret_msg = m;
            return 1;
        }
        if (m)
            freeReplyObject(m);
    }
}

unsigned rc_redis_subscriber_switches(const struct rc_redis_subscriber *sub) {
    return sub ? sub->switches : 0;
}

struct rc_redis_subscriber *rc_redis_subscriber_close(struct rc_redis_subscriber *sub) {
    if (!sub)
        return NULL;
    for (size_t i = sub->qhead; i < sub->qlen; i++)
        freeReplyObject(sub->queue[i]);
    free(sub->queue);
    for (size_t i = 0; i < sub->n; i++)
        free(sub->channels[i]);
    free(sub->channels);
    if (sub->c)
        redisFree(sub->c);
    free(sub);
    return NULL;
}
