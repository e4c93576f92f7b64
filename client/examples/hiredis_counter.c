/* A hiredis program that keeps working while redis-creds rotates its password.
 *
 *   cc hiredis_counter.c $(pkg-config --cflags --libs redis-creds-hiredis) -o counter
 *   REDIS_CREDS_RUNTIME_DIR=/run/redis-creds ./counter cache 127.0.0.1 6379 [COUNT [INTERVAL_MS]]
 *
 * It INCRs a counter every INTERVAL_MS (default 100) COUNT times (default: forever). Before
 * each command, rc_redis_reauth_if_changed re-AUTHs the connection when a new credential
 * was published (an atomic load when nothing changed); after a reconnect, rc_redis_auth
 * falls back to `previous` if the server does not know the new password yet.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <redis_creds_hiredis.h>

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s NAME HOST PORT [COUNT [INTERVAL_MS]]\n", argv[0]);
        return 2;
    }
    const char *name = argv[1], *host = argv[2];
    int port = (int)strtol(argv[3], NULL, 10);
    long count = argc > 4 ? strtol(argv[4], NULL, 10) : 0;
    long interval = argc > 5 ? strtol(argv[5], NULL, 10) : 100;

    /* Wait up to 30 s for the agent's first publication. */
    rc_handle *h = NULL;
    int r = rc_open_ex(name, NULL, RC_OPEN_WAIT, 30000, &h);
    if (r < 0) {
        fprintf(stderr, "%s: %s\n", name, rc_strerror(r));
        return 1;
    }

    redisContext *c = NULL;
    struct rc_redis_session session = {0};
    long failures = 0;
    for (long i = 0; count == 0 || i < count; i++) {
        if (!c || c->err) {
            redisFree(c);
            struct timeval tv = {2, 0};
            c = redisConnectWithTimeout(host, port, tv);
            rc_redis_session_reset(&session);
            if (!c || c->err) {
                fprintf(stderr, "connect: %s\n", c ? c->errstr : "out of memory");
                failures++;
                sleep_ms(interval);
                continue;
            }
        }
        r = rc_redis_reauth_if_changed(c, h, &session);
        if (r < 0) {
            fprintf(stderr, "auth: %s\n", rc_strerror(r));
            failures++;
            if (r == -ECONNRESET || r == -ETIMEDOUT) {
                redisFree(c);
                c = NULL;
            }
            sleep_ms(interval);
            continue;
        }
        if (r == 1) {
            const struct rc_creds *cr = NULL;
            if (rc_get(h, &cr) == 0) { /* versions are not secrets: fine to print */
                int prev = session.used_previous && cr->previous;
                printf("authenticated with version %s%s\n",
                       prev ? cr->previous->version : cr->current.version,
                       prev ? " (previous)" : "");
            }
            rc_creds_unref(cr);
        }
        redisReply *reply = redisCommand(c, "INCR %s", "demo:counter");
        if (!reply || reply->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "INCR: %s\n", reply ? reply->str : c->errstr);
            failures++;
        } else {
            printf("counter %lld\n", reply->integer);
        }
        freeReplyObject(reply);
        fflush(stdout);
        sleep_ms(interval);
    }
    redisFree(c);
    rc_close(h);
    printf("failures %ld\n", failures);
    return failures ? 1 : 0;
}
