/* A hiredis subscriber that outlives expiring credentials (Entra tokens on Azure Managed
 * Redis, which closes a connection whose token expired unless it re-AUTHed).
 *
 *   cc hiredis_subscriber.c $(pkg-config --cflags --libs redis-creds-hiredis) -o subscriber
 *   REDIS_CREDS_RUNTIME_DIR=/run/redis-creds ./subscriber NAME HOST PORT CHANNEL...
 *
 * It prints each message's channel and payload. At each published change of the
 * credential, the library subscribes on a new connection with the new one, then
 * unsubscribes and closes the old connection (make-before-break: Redis refuses AUTH on a
 * RESP2 subscribed connection): no message is lost, one may be printed twice.
 */
#include <stdio.h>
#include <stdlib.h>

#include <redis_creds_hiredis.h>

struct target {
    const char *host;
    int port;
};

static redisContext *connect_fn(void *arg, rc_handle *h, struct rc_redis_session *s) {
    const struct target *t = arg;
    (void)h;
    (void)s; /* the library AUTHs the new connection */
    return redisConnectWithTimeout(t->host, t->port, (struct timeval){2, 0});
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s NAME HOST PORT CHANNEL...\n", argv[0]);
        return 2;
    }
    struct target t = {argv[2], (int)strtol(argv[3], NULL, 10)};
    rc_handle *h = NULL;
    int r = rc_open_ex(argv[1], NULL, RC_OPEN_WAIT, 30000, &h);
    if (r < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], rc_strerror(r));
        return 1;
    }
    struct rc_redis_subscriber *sub = NULL;
    for (;;) {
        if (!sub && (r = rc_redis_subscriber_open(h, connect_fn, &t, (const char *const *)argv + 4,
                                                  (size_t)(argc - 4), &sub)) < 0) {
            fprintf(stderr, "subscribe: %s\n", rc_strerror(r));
            break;
        }
        redisReply *m = NULL;
        r = rc_redis_subscriber_next(sub, 1000, &m);
        if (r == 1) {
            printf("%s: %.*s\n", m->element[1]->str, (int)m->element[2]->len, m->element[2]->str);
            fflush(stdout);
            freeReplyObject(m);
        } else if (r < 0) { /* the connection failed: messages may have been lost */
            fprintf(stderr, "subscriber: %s; subscribing again\n", rc_strerror(r));
            sub = rc_redis_subscriber_close(sub);
        }
    }
    rc_redis_subscriber_close(sub);
    rc_close(h);
    return 1;
}
