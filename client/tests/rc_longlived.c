/* rc_longlived: a long-lived hiredis client for the token-expiry test
 * (tests/integration/test_token_expiry.py), one kind per process:
 *
 *   rc_longlived subscriber|blocking|pooled|naive
 *
 * Environment: REDIS_HOST, REDIS_PORT, REDIS_CREDS_NAME, REDIS_CREDS_RUNTIME_DIR, TE_KEY
 * (the channel, list or counter), TE_CLIENT_NAME (CLIENT SETNAME, for the proxy's events).
 * - subscriber: SUBSCRIBE TE_KEY through rc_redis_subscriber_*;
 * - blocking: BLPOP TE_KEY through rc_redis_blocking_argv;
 * - pooled: INCR TE_KEY every 20 ms on three connections in turn, each
 *   rc_redis_reauth_if_changed before use;
 * - naive: like blocking, but AUTHs once and never again (the failure to show).
 * Payloads are sequence numbers 1..N, then "end:N". It prints "ready" once subscribed or
 * connected, and at "end:N" (pooled: at SIGTERM) one JSON line of counts, then exits 0.
 * A connection error is counted and the connection made again. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "redis_creds_hiredis.h"

static volatile sig_atomic_t stop;
static void on_term(int sig) {
    (void)sig;
    stop = 1;
}

struct counts {
    unsigned char *seen;
    long cap, received, duplicates, errors, ok, failed, end;
};

static const char *env_or(const char *k, const char *d) {
    const char *v = getenv(k);
    return v && *v ? v : d;
}

static redisContext *connect_plain(void) {
    const char *port = env_or("REDIS_PORT", "6379");
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(env_or("REDIS_HOST", "127.0.0.1"),
                                              (int)strtol(port, NULL, 10), tv);
    if (c && !c->err)
        redisSetTimeout(c, (struct timeval){30, 0});
    return c;
}

static void set_name(redisContext *c) {
    redisReply *r = redisCommand(c, "CLIENT SETNAME %s", env_or("TE_CLIENT_NAME", "rc-longlived"));
    if (r)
        freeReplyObject(r);
}

/* The subscriber's connect function: connect, AUTH, CLIENT SETNAME. */
static redisContext *sub_connect(void *arg, rc_handle *h, struct rc_redis_session *s) {
    (void)arg;
    redisContext *c = connect_plain();
    if (!c || c->err || rc_redis_auth_session(c, h, s) < 0) {
        if (c)
            redisFree(c);
        return NULL;
    }
    set_name(c);
    return c;
}

/* Counts one payload; 1 at "end:N". */
static int count(struct counts *k, const char *p, size_t len) {
    char buf[32];
    if (len >= sizeof buf)
        return 0;
    memcpy(buf, p, len);
    buf[len] = 0;
    if (strncmp(buf, "end:", 4) == 0) {
        k->end = strtol(buf + 4, NULL, 10);
        return 1;
    }
    long n = strtol(buf, NULL, 10);
    k->received++;
    if (n <= 0)
        return 0;
    if (n >= k->cap) {
        long cap = n * 2;
        unsigned char *s = realloc(k->seen, (size_t)cap);
        if (!s)
            exit(3);
        memset(s + k->cap, 0, (size_t)(cap - k->cap));
        k->seen = s;
        k->cap = cap;
    }
    if (k->seen[n])
        k->duplicates++;
    k->seen[n] = 1;
    return 0;
}

static void report(const char *kind, const struct counts *k, unsigned switches) {
    long distinct = 0;
    for (long i = 1; i <= k->end && i < k->cap; i++)
        distinct += k->seen[i];
    char missing[32] = "null", end[32] = "null"; /* known once "end:N" arrived */
    if (k->end > 0) {
        snprintf(missing, sizeof missing, "%ld", k->end - distinct);
        snprintf(end, sizeof end, "%ld", k->end);
    }
    printf("{\"lib\": \"c\", \"kind\": \"%s\", \"received\": %ld, \"missing\": %s, "
           "\"duplicates\": %ld, \"errors\": %ld, \"switches\": %u, \"ok\": %ld, "
           "\"failed\": %ld, \"end\": %s}\n",
           kind, k->received, missing, k->duplicates, k->errors, switches, k->ok, k->failed,
           end);
    fflush(stdout);
}

static int run_subscriber(rc_handle *h, struct counts *k) {
    const char *ch[] = {env_or("TE_KEY", "te")};
    struct rc_redis_subscriber *sub = NULL;
    int r = rc_redis_subscriber_open(h, sub_connect, NULL, ch, 1, &sub);
    if (r < 0) {
        fprintf(stderr, "subscribe: %s\n", rc_strerror(r));
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    unsigned switches = 0;
    while (!stop) {
        redisReply *m = NULL;
        r = rc_redis_subscriber_next(sub, 1000, &m);
        if (r == 1) {
            int done = count(k, m->element[2]->str, m->element[2]->len);
            freeReplyObject(m);
            if (done)
                break;
        } else if (r < 0) {
            fprintf(stderr, "subscriber: %s\n", rc_strerror(r));
            k->errors++;
            switches += rc_redis_subscriber_switches(sub);
            sub = rc_redis_subscriber_close(sub);
            while (!stop && rc_redis_subscriber_open(h, sub_connect, NULL, ch, 1, &sub) < 0)
                nanosleep(&(struct timespec){0, 100000000}, NULL);
        }
    }
    report("subscriber", k, switches + rc_redis_subscriber_switches(sub));
    rc_redis_subscriber_close(sub);
    return 0;
}

static redisContext *connect_authed(rc_handle *h, struct rc_redis_session *s) {
    for (;;) {
        rc_redis_session_reset(s);
        redisContext *c = connect_plain();
        if (c && !c->err && rc_redis_reauth_if_changed(c, h, s) >= 0) {
            set_name(c);
            return c;
        }
        if (c)
            redisFree(c);
        if (stop)
            return NULL;
        nanosleep(&(struct timespec){0, 100000000}, NULL);
    }
}

static int run_blocking(rc_handle *h, struct counts *k, int naive) {
    struct rc_redis_session s = {0};
    redisContext *c = connect_authed(h, &s);
    const char *key = env_or("TE_KEY", "te");
    const char *argv[] = {"BLPOP", key};
    size_t argvlen[] = {5, strlen(key)};
    printf("ready\n");
    fflush(stdout);
    while (c && !stop) {
        redisReply *r = NULL;
        int n;
        if (naive) {
            r = redisCommand(c, "BLPOP %s 1", key);
            n = r ? (r->type == REDIS_REPLY_NIL ? 0 : 1) : -ECONNRESET;
            if (n == 0)
                r = (freeReplyObject(r), NULL);
        } else {
            n = rc_redis_blocking_argv(c, h, &s, 2, argv, argvlen, 1000, &r);
        }
        if (n == 1) {
            int done = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                       count(k, r->element[1]->str, r->element[1]->len);
            freeReplyObject(r);
            if (done)
                break;
        } else if (n < 0) {
            fprintf(stderr, "blocking: %s\n", rc_strerror(n));
            k->errors++;
            redisFree(c);
            c = connect_authed(h, &s);
        }
    }
    report(naive ? "naive" : "blocking", k, 0);
    if (c)
        redisFree(c);
    return 0;
}

static int run_pooled(rc_handle *h, struct counts *k) {
    enum { N = 3 };
    redisContext *c[N];
    struct rc_redis_session s[N];
    memset(s, 0, sizeof s);
    for (int i = 0; i < N; i++)
        c[i] = connect_authed(h, &s[i]);
    printf("ready\n");
    fflush(stdout);
    const char *key = env_or("TE_KEY", "te");
    for (unsigned i = 0; !stop; i++) {
        redisContext **ci = &c[i % N];
        struct rc_redis_session *si = &s[i % N];
        int r = rc_redis_reauth_if_changed(*ci, h, si);
        redisReply *rep = r >= 0 ? redisCommand(*ci, "INCR %s", key) : NULL;
        if (rep && rep->type == REDIS_REPLY_INTEGER) {
            k->ok++;
        } else {
            k->failed++;
            if (!rep || (*ci)->err) {
                fprintf(stderr, "pooled: %s\n", r < 0 ? rc_strerror(r) : (*ci)->errstr);
                k->errors++;
                redisFree(*ci);
                *ci = connect_authed(h, si);
                if (!*ci)
                    break;
            }
        }
        if (rep)
            freeReplyObject(rep);
        nanosleep(&(struct timespec){0, 20000000}, NULL);
    }
    report("pooled", k, 0);
    for (int i = 0; i < N; i++)
        if (c[i])
            redisFree(c[i]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: rc_longlived subscriber|blocking|pooled|naive\n");
        return 2;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    rc_handle *h = NULL;
    int r = rc_open_ex(env_or("REDIS_CREDS_NAME", "cache"), NULL, RC_OPEN_WAIT, 30000, &h);
    if (r < 0) {
        fprintf(stderr, "rc_open: %s\n", rc_strerror(r));
        return 1;
    }
    struct counts k = {0};
    if (strcmp(argv[1], "subscriber") == 0)
        r = run_subscriber(h, &k);
    else if (strcmp(argv[1], "blocking") == 0 || strcmp(argv[1], "naive") == 0)
        r = run_blocking(h, &k, strcmp(argv[1], "naive") == 0);
    else if (strcmp(argv[1], "pooled") == 0)
        r = run_pooled(h, &k);
    else
        r = 2;
    free(k.seen);
    rc_close(h);
    return r;
}
