/* AUTH for hiredis connections from a libredis-creds handle: current, then previous, then
 * a re-read of the file (DESIGN §4 "previous is the fallback a client tries"). */
#include "redis_creds_hiredis.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RC_EXPIRY_MARGIN_S 30

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

/* Redis' answers to a wrong password (DESIGN §8 "Refused means ..."). */
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

/* Tries current then previous of one snapshot: 0, 1 (all refused), -errno. */
static int auth_snapshot(redisContext *c, const struct rc_creds *cr, struct rc_redis_session *s) {
    int r = auth_once(c, &cr->current);
    if (r == 0) {
        record(s, cr, false);
        return 0;
    }
    if (r < 0 || !cr->previous)
        return r;
    r = auth_once(c, cr->previous);
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

int rc_redis_reauth_if_changed(redisContext *c, rc_handle *h, struct rc_redis_session *s) {
    if (!c || !h || !s)
        return -EINVAL;
    if (s->generation != 0 && s->generation == rc_generation(h)) {
        if (!s->expires_at)
            return 0;
        int64_t now = wall_s();
        if (now < s->expires_at - RC_EXPIRY_MARGIN_S)
            return 0;
        int64_t m = mono_ms();
        if (s->checked_ms && m - s->checked_ms < 1000)
            return now >= s->expires_at ? -EKEYEXPIRED : 0;
        s->checked_ms = m;
        rc_reload(h); /* near expiry: make sure no change was missed */
        if (s->generation == rc_generation(h))
            return now >= s->expires_at ? -EKEYEXPIRED : 0;
    }
    int r = rc_redis_auth_session(c, h, s);
    return r < 0 ? r : 1;
}
