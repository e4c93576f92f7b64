/* validate: judge a candidate credential against the Redis nodes of a credential
 * (DESIGN §8). Runs on a worker thread; blocking, bounded by the credential's timeout.
 *
 * The required nodes are the configured endpoints, or with `cluster = true` the nodes a
 * seed endpoint lists (CLUSTER SHARDS, else CLUSTER SLOTS): every primary, and every
 * replica too with `validate_replicas = true`. Discovery logs in with the current
 * credential, else with the candidate. All required nodes are asked at the same time from
 * the calling thread (non-blocking sockets, one poll(); at most 128 connections open at
 * once), each connection with its own timeout (connect + TLS handshake within one
 * timeout, then AUTH and PING within one each), so twelve nodes cost about one round
 * trip, and a node that never answers delays nobody but itself.
 *
 * With `tls = true` every node's certificate is verified against `server_name`, else the
 * host of the configured endpoint, and for discovered nodes the host of the seed that
 * listed them: never against a name a server advertised, so a candidate password only
 * goes to a host somebody configured. A certificate problem is reported as one
 * ("certificate-error"), not as a refused password.
 *
 * The result counts accepted, refused and unreachable nodes and names them; the policy
 * decides: publish, refused (keep current, retry), unreachable (keep current, retry),
 * misconfigured (a node has no password at all), error (unexpected replies). Under "all"
 * an unreachable node blocks publication only while the current credential still works
 * on the reachable nodes (so a store that rotated with RESETPASS is not stuck behind a
 * dead node). Pure data in, data out: no logging, no shared state.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#define VALIDATE_MAX_NODES 512     /* a cluster listing more is an error, not a truncation */

struct validate_result {
    enum validate_outcome outcome;
    unsigned accepted, refused, unreachable, other;
    unsigned total;
    /* "127.0.0.1:6379=accepted,..." for REDIS_CREDS_NODES; one word per node: accepted,
     * refused, unreachable, certificate-error, tls-error, no-password, unexpected. */
    char nodes[512];
    /* what decided a failure: the nodes in question and the first one's reason (or the
     * first problem on success), human readable, no secrets */
    char detail[512];
    bool discovered;           /* the nodes came from cluster discovery */
    uint64_t elapsed_usec;     /* the whole validation, discovery included */
    uint64_t discovery_usec;   /* the discovery part (0 without cluster) */
    uint64_t slowest_node_usec;   /* the slowest single node's connect+AUTH+PING */
};

const char *validate_outcome_to_string(enum validate_outcome o);

/* current_* may be NULL (no current credential). */
void validate_candidate(const struct config_redis *redis,
                        const char *username, const struct secret *password,
                        const char *current_username, const struct secret *current_password,
                        struct validate_result *ret);

/* Warnings about a credential's Redis settings, to log at every start and reload
 * (tls_insecure_skip_verify; TLS files set while tls = false). Fills up to max static
 * strings (no secrets) and returns how many there are. */
size_t validate_config_warnings(const struct config_redis *redis, const char **ret, size_t max);

/* The nodes a credential's Redis commands go to, for callers that run commands of their
 * own on each (rotation's ACL SETUSER): the configured endpoints, or with cluster = true
 * every node a seed lists (primaries, and replicas when `replicas`), found exactly as
 * validation finds them (same discovery, same TLS names). Discovery logs in with
 * username/password, else username2/password2 (either may be NULL). Worker thread;
 * blocking, bounded by the credential's timeout. 0 and *ret, or -errno with err (no
 * secrets). */
struct validate_nodes;
int validate_nodes_list(const struct config_redis *redis, bool replicas,
                        const char *username, const struct secret *password,
                        const char *username2, const struct secret *password2,
                        struct validate_nodes **ret, char *err, size_t errlen);
size_t validate_nodes_count(const struct validate_nodes *v);
const char *validate_nodes_name(const struct validate_nodes *v, size_t i);   /* host:port */
/* Connects to node i (TLS as configured) within the credential's timeout. */
int validate_nodes_connect(const struct validate_nodes *v, size_t i, struct resp_conn **ret,
                           char *err, size_t errlen);
struct validate_nodes *validate_nodes_free(struct validate_nodes *v);
