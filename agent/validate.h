/* validate: judge a candidate credential against the Redis nodes of a credential
 * (docs/design.md §7). Runs on a worker thread; blocking, bounded by the credential's timeout.
 *
 * The required nodes are the configured endpoints, or with `cluster = true` the nodes a
 * seed endpoint lists (CLUSTER SHARDS, else CLUSTER SLOTS): every primary, and every
 * replica too with `validate_replicas = true`. Discovery logs in with the current
 * credential, else with the candidate. All required nodes are asked at the same time
 * through common/rnet.h (one thread, one poll(); at most 128 connections open at once),
 * each with its own deadlines (connect + TLS handshake within one timeout, AUTH and PING
 * written together, AUTH's reply due within one timeout and PING's within two), so twelve
 * nodes cost about one round trip, and a node that never answers delays nobody but itself.
 *
 * With `tls = true` every node's certificate is verified against `server_name`, else the
 * host of the configured endpoint, and for discovered nodes the host of the seed that
 * listed them: never against a name a server advertised, so a candidate password only
 * goes to a host somebody configured. A certificate problem is reported as one
 * ("certificate-error"), not as a refused password.
 *
 * Each node ends in one enum validate_node, mapped from rnet's failure classes and the
 * AUTH judge's verdict, never from message text. The policy (validate_decide) is a pure
 * function of the policy setting and those states: publish, refused (keep current,
 * retry), unreachable (keep current, retry), misconfigured (a node has no password at
 * all), error (unexpected replies). Under "all" an unreachable node blocks publication
 * only while the current credential still works on the reachable nodes (so a store that
 * rotated with RESETPASS is not stuck behind a dead node). Pure data in, data out: no
 * logging, no shared state.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "resp.h"
#include "rnet.h"
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

/* What one node said; the words (validate_node_to_string) are what REDIS_CREDS_NODES shows. */
enum validate_node {
    VALIDATE_NODE_ACCEPTED = 0,
    VALIDATE_NODE_REFUSED,
    VALIDATE_NODE_NOPASS,          /* "no-password": the server has no password at all */
    VALIDATE_NODE_UNEXPECTED,
    VALIDATE_NODE_UNREACHABLE,
    VALIDATE_NODE_TLS,             /* TLS failed for another reason than the certificate */
    VALIDATE_NODE_CERT,            /* the certificate did not verify */
};
#define VALIDATE_NODE_COUNT (VALIDATE_NODE_CERT + 1)
const char *validate_node_to_string(enum validate_node s);

/* Does the current credential still work on a reachable node? Only asked for (and only
 * matters) under "all" when some nodes are down and the rest accept the candidate. */
enum validate_current {
    VALIDATE_CURRENT_UNKNOWN = 0,  /* not asked yet */
    VALIDATE_CURRENT_WORKS,        /* it does (or that could not be found out) */
    VALIDATE_CURRENT_GONE,         /* it does not, or there is no current credential */
};

/* Which nodes a failure's message names. */
enum validate_blame {
    VALIDATE_BLAME_PROBLEM = 0,    /* every node that did not accept */
    VALIDATE_BLAME_REFUSED,
    VALIDATE_BLAME_NOPASS,
    VALIDATE_BLAME_UNEXPECTED,
    VALIDATE_BLAME_UNREACHABLE,    /* unreachable, tls-error, certificate-error */
};
bool validate_blames(enum validate_blame b, enum validate_node s);

struct validate_verdict {
    enum validate_outcome outcome;
    enum validate_blame blame;
    bool ask_current;              /* decide again once the current credential was tried */
};

/* The policy, pure: from the policy setting and every node's state. "none" publishes (the
 * agent does not validate then). With ask_current set the outcome is provisional: try the
 * current credential on the reachable nodes and call again with the answer. */
struct validate_verdict validate_decide(enum validate_policy policy,
                                        const enum validate_node *states, size_t n,
                                        enum validate_current current);

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
/* For callers that run commands of their own on every node with rnet_run(): fills
 * nodes[0..count) (endpoint and TLS name; the script is the caller's to set, NULL leaves a
 * node out) and *o (the credential's TLS context, valid until validate_nodes_free, and
 * timeout; on_reply and userdata are the caller's). validate_nodes_problem() says why
 * node i cannot be asked at all (its endpoint is unusable; static text), else NULL. */
void validate_nodes_rnet(const struct validate_nodes *v, struct rnet_node *nodes,
                         struct rnet_opts *o);
const char *validate_nodes_problem(const struct validate_nodes *v, size_t i);
struct validate_nodes *validate_nodes_free(struct validate_nodes *v);
