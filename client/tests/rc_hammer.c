/* rc_hammer: workers INCR a key on Redis back to back, reconnecting every K commands (the
 * connection churn of pools and short-lived workers), until SIGTERM; then prints one JSON
 * line of counts and latencies.
 *
 *   rc_hammer --name cache --dir RUNTIME_DIR --port PORT [--host H] [--mode lib|seed]
 *             [--workers N] [--reconnect-every K] [--torn-check]
 *
 * --mode lib   (default) AUTH through redis_creds_hiredis.h: rc_redis_reauth_if_changed
 *              before each command, current -> previous -> re-read on a refusal.
 * --mode seed  what the seed's RedisKeyManager does: take the primary and secondary
 *              passwords once at start; on an auth error switch to the other one and
 *              reconnect; nobody calls update_primary_key.
 * --torn-check a thread calls rc_get in a tight loop and checks every snapshot against
 *              the test's password scheme (client_test_util.h tu_password: rotation n has
 *              password tu_password(n), previous is rotation n-1).
 * Prints "ready" once every worker has run a command. Never prints a secret.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_test_util.h"
#include "redis_creds_hiredis.h"

#define HIST_US 200000 /* 1 µs buckets up to 200 ms, then one overflow bucket */

static volatile sig_atomic_t stop;
static const char *host = "127.0.0.1";
static int port;
static int reconnect_every = 20;
static bool seed_mode;
static rc_handle *handle;
static atomic_int ready_workers;
static char seed_user[256], seed_pw[2][256];
static bool seed_has_user;

struct worker {
    pthread_t t;
    int id;
    long ok, failed, auth_failed, reconnects, fallbacks, reauths;
    uint32_t *hist;
    char first_error[160];
};

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void note_error(struct worker *w, const char *what, const char *detail) {
    if (w->first_error[0])
        return;
    snprintf(w->first_error, sizeof w->first_error, "%s: %s", what, detail);
    for (char *p = w->first_error; *p; p++) /* it goes into a JSON string */
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '\'';
}

static redisContext *connect_redis(void) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c && !c->err)
        redisSetTimeout(c, tv);
    return c;
}

/* seed: AUTH with one of the two passwords it was given; 0 ok, 1 refused, -1 error */
static int seed_auth(redisContext *c, int idx) {
    redisReply *r = seed_has_user ? redisCommand(c, "AUTH %s %s", seed_user, seed_pw[idx])
                                  : redisCommand(c, "AUTH %s", seed_pw[idx]);
    if (!r)
        return -1;
    int ok = r->type == REDIS_REPLY_STATUS ? 0 : 1;
    freeReplyObject(r);
    return ok;
}

static void *work(void *arg) {
    struct worker *w = arg;
    redisContext *c = NULL;
    struct rc_redis_session s = {0};
    int since = 0, seed_idx = 0;
    bool counted_ready = false;
    char key[32];
    snprintf(key, sizeof key, "hammer:%d", w->id);
    while (!stop) {
        long long t0 = tu_now_ns();
        if (!c || c->err || (reconnect_every > 0 && since >= reconnect_every)) {
            redisFree(c);
            c = connect_redis();
            rc_redis_session_reset(&s);
            since = 0;
            w->reconnects++;
            if (!c || c->err) {
                w->failed++;
                note_error(w, "connect", c ? c->errstr : "oom");
                tu_sleep_ms(1);
                continue;
            }
            if (seed_mode) {
                int r = seed_auth(c, seed_idx);
                if (r == 1) { /* RedisKeyManager: switch to the other key, reconnect */
                    seed_idx ^= 1;
                    redisFree(c);
                    c = connect_redis();
                    r = c && !c->err ? seed_auth(c, seed_idx) : -1;
                }
                if (r != 0) {
                    w->failed++;
                    w->auth_failed++;
                    note_error(w, "AUTH", r == 1 ? "refused" : "connection error");
                    redisFree(c);
                    c = NULL;
                    tu_sleep_ms(1);
                    continue;
                }
            }
        }
        if (!seed_mode) {
            int r = rc_redis_reauth_if_changed(c, handle, &s);
            if (r < 0) {
                w->failed++;
                w->auth_failed++;
                note_error(w, "AUTH", rc_strerror(r));
                redisFree(c);
                c = NULL;
                tu_sleep_ms(1);
                continue;
            }
            if (r == 1) {
                w->reauths++;
                if (s.used_previous)
                    w->fallbacks++;
            }
        }
        redisReply *reply = redisCommand(c, "INCR %s", key);
        long long dt = (tu_now_ns() - t0) / 1000;
        since++;
        if (!reply || reply->type == REDIS_REPLY_ERROR) {
            w->failed++;
            note_error(w, "INCR", reply ? reply->str : c->errstr);
            freeReplyObject(reply);
            continue;
        }
        freeReplyObject(reply);
        w->ok++;
        w->hist[dt < HIST_US ? dt : HIST_US]++;
        if (!counted_ready) {
            counted_ready = true;
            atomic_fetch_add(&ready_workers, 1);
        }
    }
    redisFree(c);
    return NULL;
}

/* ------------------------------------------------------------------ torn check */

static atomic_long torn_reads, torn_bad;
static char torn_first[200];

static unsigned pw_rotation(const char *pw) {
    return strncmp(pw, "pw-", 3) == 0 ? (unsigned)strtoul(pw + 3, NULL, 10) : 0;
}

static void *torn_check(void *arg) {
    (void)arg;
    struct { char version[64]; unsigned n; } seen[1024];
    int nseen = 0;
    uint64_t last_gen = 0;
    while (!stop) {
        const struct rc_creds *c = NULL;
        if (rc_get(handle, &c) != 0)
            continue;
        atomic_fetch_add(&torn_reads, 1);
        const char *bad = NULL;
        unsigned n = pw_rotation(c->current.password);
        if (c->generation < last_gen)
            bad = "generation went backwards";
        else if (tu_check_password(c->current.password, n) != 0)
            bad = "current password is not a whole password";
        else if (c->previous && (tu_check_password(c->previous->password, n - 1) != 0))
            bad = "previous is not the rotation before current";
        else if (c->generation != last_gen) {
            /* a new snapshot: each version always comes with the same password */
            for (int i = 0; i < nseen && !bad; i++) {
                if (strcmp(seen[i].version, c->current.version) == 0 && seen[i].n != n)
                    bad = "a version seen with two passwords (mixed)";
                if (c->previous && strcmp(seen[i].version, c->previous->version) == 0 &&
                    seen[i].n != n - 1)
                    bad = "previous.version does not match previous.password (mixed)";
            }
            if (!bad && nseen < 1024) {
                snprintf(seen[nseen].version, sizeof seen[nseen].version, "%s", c->current.version);
                seen[nseen++].n = n;
            }
        }
        if (bad && atomic_fetch_add(&torn_bad, 1) == 0)
            snprintf(torn_first, sizeof torn_first, "%s (version %s, generation %llu)", bad,
                     c->current.version, (unsigned long long)c->generation);
        last_gen = c->generation;
        rc_creds_unref(c);
    }
    return NULL;
}

/* ------------------------------------------------------------------ main */

static long percentile(const uint64_t *hist, long total, double p) {
    long want = (long)(p * (double)total), acc = 0;
    for (long i = 0; i <= HIST_US; i++) {
        acc += (long)hist[i];
        if (acc > want)
            return i;
    }
    return HIST_US;
}

int main(int argc, char **argv) {
    const char *name = "cache", *dir = NULL;
    int nworkers = 4;
    bool torn = false;
    static const struct option opts[] = {
        {"name", required_argument, 0, 'n'}, {"dir", required_argument, 0, 'd'},
        {"host", required_argument, 0, 'H'}, {"port", required_argument, 0, 'p'},
        {"mode", required_argument, 0, 'm'}, {"workers", required_argument, 0, 'w'},
        {"reconnect-every", required_argument, 0, 'r'}, {"torn-check", no_argument, 0, 't'},
        {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'n': name = optarg; break;
        case 'd': dir = optarg; break;
        case 'H': host = optarg; break;
        case 'p': port = (int)strtol(optarg, NULL, 10); break;
        case 'm': seed_mode = strcmp(optarg, "seed") == 0; break;
        case 'w': nworkers = (int)strtol(optarg, NULL, 10); break;
        case 'r': reconnect_every = (int)strtol(optarg, NULL, 10); break;
        case 't': torn = true; break;
        default: fprintf(stderr, "rc_hammer: see the comment at the top of rc_hammer.c\n"); return 2;
        }
    }
    if (!port || nworkers < 1 || nworkers > 64) {
        fprintf(stderr, "rc_hammer: --port is required; 1 <= --workers <= 64\n");
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int r = rc_open_ex(name, dir, RC_OPEN_WAIT, 10000, &handle);
    if (r < 0) {
        fprintf(stderr, "rc_hammer: %s: %s\n", name, rc_strerror(r));
        return 1;
    }
    if (seed_mode) {
        const struct rc_creds *c = NULL;
        rc_get(handle, &c);
        seed_has_user = c->current.username != NULL;
        snprintf(seed_user, sizeof seed_user, "%s", seed_has_user ? c->current.username : "");
        snprintf(seed_pw[0], sizeof seed_pw[0], "%s", c->current.password);
        snprintf(seed_pw[1], sizeof seed_pw[1], "%s",
                 c->previous ? c->previous->password : c->current.password);
        rc_creds_unref(c);
    }
    uint64_t gen0 = rc_generation(handle);
    struct worker *w = calloc((size_t)nworkers, sizeof *w);
    long long t_start = tu_now_ns();
    for (int i = 0; i < nworkers; i++) {
        w[i].id = i;
        w[i].hist = calloc(HIST_US + 1, sizeof *w[i].hist);
        pthread_create(&w[i].t, NULL, work, &w[i]);
    }
    pthread_t tt;
    if (torn)
        pthread_create(&tt, NULL, torn_check, NULL);
    while (!stop && atomic_load(&ready_workers) < nworkers)
        tu_sleep_ms(1);
    printf("ready\n");
    fflush(stdout);
    while (!stop)
        tu_sleep_ms(5);
    double secs = (double)(tu_now_ns() - t_start) / 1e9;
    long ok = 0, failed = 0, auth_failed = 0, reconnects = 0, fallbacks = 0, reauths = 0;
    uint64_t *hist = calloc(HIST_US + 1, sizeof *hist);
    const char *first_error = "";
    for (int i = 0; i < nworkers; i++) {
        pthread_join(w[i].t, NULL);
        ok += w[i].ok;
        failed += w[i].failed;
        auth_failed += w[i].auth_failed;
        reconnects += w[i].reconnects;
        fallbacks += w[i].fallbacks;
        reauths += w[i].reauths;
        for (long k = 0; k <= HIST_US; k++)
            hist[k] += w[i].hist[k];
        if (!*first_error && w[i].first_error[0])
            first_error = w[i].first_error;
    }
    if (torn)
        pthread_join(tt, NULL);
    unsigned final_rotation = 0;
    const struct rc_creds *fc = NULL;
    if (rc_get(handle, &fc) == 0) /* the test's password scheme: which rotation is current */
        final_rotation = pw_rotation(fc->current.password);
    fc = rc_creds_unref(fc);
    printf("{\"mode\": \"%s\", \"seconds\": %.3f, \"commands_ok\": %ld, \"failed\": %ld, "
           "\"auth_failed\": %ld, \"reconnects\": %ld, \"reauths\": %ld, \"fallbacks\": %ld, "
           "\"generations_seen\": %llu, \"p50_us\": %ld, \"p99_us\": %ld, \"p999_us\": %ld, "
           "\"max_us\": %ld, \"final_rotation\": %u, \"torn_reads\": %ld, \"torn_bad\": %ld, \"torn_first\": \"%s\", "
           "\"first_error\": \"%s\"}\n",
           seed_mode ? "seed" : "lib", secs, ok, failed, auth_failed, reconnects, reauths,
           fallbacks, (unsigned long long)(rc_generation(handle) - gen0), percentile(hist, ok, 0.50),
           percentile(hist, ok, 0.99), percentile(hist, ok, 0.999), percentile(hist, ok, 1.0 - 1e-12),
           final_rotation, atomic_load(&torn_reads), atomic_load(&torn_bad), torn_first, first_error);
    fflush(stdout);
    for (int i = 0; i < nworkers; i++)
        free(w[i].hist);
    free(w);
    free(hist);
    rc_close(handle);
    return 0;
}
