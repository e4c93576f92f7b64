/* redis_creds_hiredis.h: AUTH a hiredis connection with the credential a libredis-creds
 * handle follows (built when hiredis is found; link redis-creds-hiredis).
 *
 * Contract:
 * - For blocking redisContexts (redisConnect*), with no reply outstanding.
 * - rc_redis_auth sends AUTH with the current credential; when Redis refuses it, with
 *   `previous` (unless rc_usable_previous says it is no longer valid); when that is
 *   refused too, it reloads the file and, if a newer credential
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
 * - Long-lived connections with expiring credentials (Entra tokens on Azure Managed Redis
 *   close a connection whose token expired unless it sent AUTH with a newer one):
 *   rc_redis_blocking_argv runs a blocking command (BLPOP, BRPOP, BLMOVE, BZPOPMIN: the
 *   timeout last) in slices that end RC_REDIS_BLOCK_MARGIN_MS before the session's
 *   expires_at (an AUTH would wait behind the blocked command), re-AUTHing in between.
 *   rc_redis_subscriber_* keep a SUBSCRIBE across changes by make-before-break: hiredis
 *   0.14 has no RESP3, and Redis refuses AUTH on a RESP2 subscribed connection, so at a
 *   change it subscribes on a new connection with the new credential, then unsubscribes
 *   the old one and hands out what it still delivers until Redis confirms, then closes
 *   it. No message is lost; messages published between the two confirmations may be
 *   delivered twice (rc_redis_subscriber_switches counts the switches). Both wait with
 *   poll() on the context's fd (plain TCP or unix sockets; not TLS contexts, whose
 *   library may hold decrypted bytes poll() cannot see).
 * - Secrets: the AUTH command is formatted into a buffer of ours, written to the socket
 *   directly (hiredis < 1.0) and wiped; hiredis never holds a copy. Error replies are not
 *   kept. Nothing is printed.
 * - Thread safety: as hiredis: one thread per redisContext (and its session), and per
 *   rc_redis_subscriber, at a time; the rc_handle may be shared by any number of threads.
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

/* ---- Blocking commands. */
#define RC_REDIS_BLOCK_MARGIN_MS 2000 /* a blocking slice ends this long before expires_at */
#define RC_REDIS_MIN_BLOCK_MS 100     /* never less (a timeout of 0 would block forever) */
#define RC_REDIS_MAX_BLOCK_ARGS 64

/* How long one blocking slice may last: want_ms (<= 0: no limit of the caller's), capped
 * to end RC_REDIS_BLOCK_MARGIN_MS before the session's expires_at, at least
 * RC_REDIS_MIN_BLOCK_MS; 0 when nothing limits it (block forever). */
int64_t rc_redis_block_ms(const struct rc_redis_session *s, int64_t want_ms);

/* Runs argv (the command without its timeout: "BLPOP", "jobs") with a timeout argument
 * appended, in slices of rc_redis_block_ms, calling rc_redis_reauth_if_changed before
 * each, until Redis answers something other than nil or timeout_ms (0: forever) passed.
 * 1 with *ret_reply (freeReplyObject it), 0 when the time ran out, -errno: those of
 * rc_redis_reauth_if_changed (-EKEYEXPIRED, -EKEYREJECTED, ...), -ECONNRESET, -ETIMEDOUT
 * when Redis did not answer within 5 s of the slice's end (then the context is unusable,
 * as after any error). Does not touch the context's socket timeouts. */
int rc_redis_blocking_argv(redisContext *c, rc_handle *h, struct rc_redis_session *s, int argc,
                           const char **argv, const size_t *argvlen, int64_t timeout_ms,
                           redisReply **ret_reply);

/* ---- Subscribers (make-before-break; see the contract above). */
#define RC_REDIS_MAX_CHANNELS 1024

/* Opens a new blocking context (redisConnectWithTimeout...) for a subscriber, or NULL.
 * It may authenticate it itself (rc_redis_auth_session(c, h, s), e.g. to send CLIENT
 * SETNAME after it); if s->generation is still 0 on return, the subscriber does. */
typedef redisContext *(*rc_redis_connect_fn)(void *arg, rc_handle *h, struct rc_redis_session *s);

struct rc_redis_subscriber;

/* Connects (connect(arg, ...)), authenticates and SUBSCRIBEs to the channels (copied),
 * waiting up to 10 s for the confirmations. */
int rc_redis_subscriber_open(rc_handle *h, rc_redis_connect_fn connect, void *arg,
                             const char *const *channels, size_t n,
                             struct rc_redis_subscriber **ret_sub);

/* The next message: 1 with *ret_msg, a reply ["message", channel, payload] to free with
 * freeReplyObject; 0 when timeout_ms passed without one; -errno (-ECONNRESET: the
 * connection failed, messages may be lost; -EKEYEXPIRED: the credential expired and
 * nothing newer was published; -ETIMEDOUT: Redis did not confirm a switch). Before
 * waiting, and every 250 ms while it waits, it checks for a new credential (an atomic
 * load) and switches connections when there is one: call it often (a loop around it). */
int rc_redis_subscriber_next(struct rc_redis_subscriber *sub, int timeout_ms,
                             redisReply **ret_msg);

/* How many make-before-break switches happened (each may have duplicated messages). */
unsigned rc_redis_subscriber_switches(const struct rc_redis_subscriber *sub);

/* Closes the connection and frees everything; accepts NULL; returns NULL. */
struct rc_redis_subscriber *rc_redis_subscriber_close(struct rc_redis_subscriber *sub);

#ifdef __cplusplus
}
#endif
#endif
