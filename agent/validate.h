/* validate: judge a candidate credential against the Redis nodes of a credential
 * (DESIGN §8). Runs on a worker thread; blocking, each node bounded by the timeout.
 *
 * Every configured endpoint is a required node. The result counts accepted, refused and
 * unreachable nodes and names them; validate_decide() applies the policy: publish,
 * refused (keep current, retry), or unreachable (keep current, retry). Under "all" an
 * unreachable node blocks publication only while the current credential still works on
 * the reachable nodes (so a store that rotated with RESETPASS is not stuck behind a dead
 * node). Pure data in, data out: no logging, no shared state.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "resp.h"
#include "secret.h"

enum validate_outcome {
    VALIDATE_PUBLISH = 0,      /* the policy is met */
    VALIDATE_REFUSED,          /* a node refused the candidate */
    VALIDATE_UNREACHABLE,      /* not enough nodes could be asked */
    VALIDATE_MISCONFIGURED,    /* a node has no password configured */
    VALIDATE_ERROR,            /* unexpected replies */
};

struct validate_result {
    enum validate_outcome outcome;
    unsigned accepted, refused, unreachable, other;
    unsigned total;
    char nodes[512];    /* "127.0.0.1:6379=accepted,..." for REDIS_CREDS_NODES */
    char detail[512];   /* first problem, human readable, no secrets */
};

const char *validate_outcome_to_string(enum validate_outcome o);

/* current_* may be NULL (no current credential). */
void validate_candidate(const struct config_redis *redis,
                        const char *username, const struct secret *password,
                        const char *current_username, const struct secret *current_password,
                        struct validate_result *ret);
