/* redis_creds_hiredis.h: AUTH a hiredis connection with the credential a libredis-creds
 * handle follows (built when hiredis is found; link redis-creds-hiredis).
 *
 * Contract:
 * - For blocking redisContexts (redisConnect*), with no reply outstanding.
 * - rc_redis_auth sends AUTH with the current credential; when Redis refuses it, with
 *   `previous`; when that is refused too, it reloads the file and, if a newer credential
 *   arrived meanwhile, tries it once. 0 on success; -EKEYREJECTED when every candidate was
 *   refused; -ECONNRESET (c->err/c->errstr say more) on a connection error; -EPROTO on
 *   any other error reply (e.g. a server without passwords); errors of rc_get.
 * - rc_redis_reauth_if_changed is for long-lived connections: call it before using the
 *   connection. When the credential has not changed it costs an atomic load (no system
 *   call) and returns 0; when it changed it AUTHs again and returns 1. Tokens: the agent
 *   publishes a fresh token before the current one's expires_at, so the connection is
 *   re-AUTHed before it expires; in the last 30 s before expires_at it also re-reads the
 *   file (at most once a second) in case a change was missed, and once expires_at has
 *   passed with nothing newer it returns -EKEYEXPIRED.
 * - Secrets: the AUTH command is formatted into a buffer of ours, written to the socket
 *   directly (hiredis < 1.0) and wiped; hiredis never holds a copy. Error replies are not
 *   kept. Nothing is printed.
 * - Thread safety: as hiredis: one thread per redisContext (and its session) at a time;
 *   the rc_handle may be shared by any number of threads.
 */
#ifndef REDIS_CREDS_HIREDIS_H
#define REDIS_CREDS_HIREDIS_H

#include <hiredis/hiredis.h>
#include <stdint.h>

#include "redis_creds.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a connection authenticated with. Zero-initialise one per connection, and again
 * (or rc_redis_session_reset) after a reconnect. */
struct rc_redis_session {
    uint64_t generation; /* of the snapshot used; 0 = not authenticated */
    int64_t expires_at;  /* of the credential used; 0 = none */
    int used_previous;   /* 1 when current was refused and previous accepted */
    int64_t checked_ms;  /* internal: last near-expiry re-read (monotonic ms) */
};

static inline void rc_redis_session_reset(struct rc_redis_session *s) {
    s->generation = 0;
    s->expires_at = 0;
    s->used_previous = 0;
    s->checked_ms = 0;
}

int rc_redis_auth(redisContext *c, rc_handle *h);
int rc_redis_auth_session(redisContext *c, rc_handle *h, struct rc_redis_session *s);
int rc_redis_reauth_if_changed(redisContext *c, rc_handle *h, struct rc_redis_session *s);

#ifdef __cplusplus
}
#endif
#endif
