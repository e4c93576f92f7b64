/* aclops: the Redis ACL and client commands of strategy redis-acl-users and of the
 * revocation watch, run on every node of a credential at once through rnet.h (one
 * thread, one poll(); each step bounded by the target's timeout):
 *   - ACL GETUSER of two users, compared (flags but on/off/nopass, commands, keys,
 *     channels, selectors; never passwords), with a diff a person can read;
 *   - CLIENT LIST with its own reply cap, parsed in place line by line: the `addr=` of
 *     the connections authenticated as a user (`user=`), and their count;
 *   - CLIENT KILL USER (the count killed);
 *   - ACL SETUSER `on resetpass >new`, `off resetpass`, `!<sha256>`, `on >old` (then ACL
 *     SAVE when asked);
 *   - ACL LOG 128, and a pure diff of two reads: the new `auth` failures of some users.
 *     ACL LOG RESET is never sent: the log is the operators' too.
 *
 * Every call logs in first (AUTH [user] password + PING) unless the target has no
 * password. Results are per node (struct aclops_node), every node tried even when one
 * fails; a node's `why` names the node's step and never holds a secret (error replies to
 * commands that carry a password are cut to their first word). A reply over the caller's
 * CLIENT LIST cap is the node's error -EMSGSIZE "reply over N bytes", never "no clients"
 * (one of more than RESP_MAX_OBJECTS objects: "reply of more than N objects").
 * A command the login may not run is -EACCES with `noperm` set (ACL LOG: "no acl|log
 * permission"), so a caller can say it once and carry on.
 *
 * Pure parts (parsers, diffs) do no I/O and may run anywhere; the network calls block the
 * calling thread (a worker's). No logging. Results own their memory:
 * aclops_result_clear() frees it (NULL-safe, and safe on a zeroed or cleared result).
 * Errors: 0 when every node succeeded, -errno of the first failed node otherwise (results
 * filled for all), or -ENOMEM / -EINVAL before any node was asked.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rnet.h"
#include "secret.h"

#define ACLOPS_CLIENT_LIST_CAP (64u * 1024 * 1024)   /* default CLIENT LIST reply cap */
#define ACLOPS_ADDR_MAX 64        /* "[ipv6]:port" and unix "/path:0" cut to fit */
#define ACLOPS_USER_MAX 128       /* longer user names in ACL LOG are cut (and never match) */
#define ACLOPS_LOG_MAX 128        /* entries asked of ACL LOG */

/* The nodes to ask: endpoints and TLS names as validate_nodes_rnet() fills them (the
 * scripts are ours), and how to log in. */
struct aclops_target {
    const struct rnet_node *nodes;
    size_t n;
    const char *const *problems;         /* NULL, or per node: why it cannot be asked
                                            (static text; NULL entry: it can) */
    struct tls_ctx *tls;                 /* NULL: no TLS */
    uint64_t timeout_usec;               /* the credential's Redis timeout */
    const char *login_user;              /* NULL: AUTH with the password alone */
    const struct secret *login_password; /* NULL: no AUTH (a server without passwords) */
};

/* One ACL LOG entry, as much as a watch needs. */
struct aclops_log_entry {
    char reason[16];              /* "auth", "command", "key", "channel" */
    char context[16];             /* "toplevel", "multi", "lua" */
    char username[ACLOPS_USER_MAX];
    char addr[ACLOPS_ADDR_MAX];   /* client-info's addr= of the last failing client */
    long long count;
    double age_seconds;           /* since the entry was last updated */
    long long entry_id;           /* Redis >= 7.2; -1 when absent */
};

struct aclops_node {
    char name[300];               /* host:port as configured */
    int r;                        /* 0, or -errno */
    bool noperm;                  /* -EACCES because the login lacks the command */
    char why[256];                /* "" on success */
    /* aclops_compare_users */
    unsigned differences;
    /* aclops_client_list: connections authenticated as the user; aclops_client_kill_user:
     * connections closed */
    long long count;
    char (*addrs)[ACLOPS_ADDR_MAX];   /* client list: the first naddrs of them */
    size_t naddrs;
    /* aclops_acl_log */
    struct aclops_log_entry *log;
    size_t nlog;
    uint64_t read_usec;           /* CLOCK_MONOTONIC when the reply came */
};

struct aclops_result {
    struct aclops_node *nodes;
    size_t n;
    unsigned ok, failed;          /* nodes */
    char diff[2048];              /* compare: "127.0.0.1:7001: app_b lacks +@write; keys
                                     ~cache:* vs ~*", cut with "..." */
};

void aclops_result_clear(struct aclops_result *res);
/* Appends formatted text to the NUL-terminated buf; what does not fit is cut and the
 * text then ends with "..." (the diff's and the watch's lines). */
void aclops_text_append(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The node of that name, or NULL. */
const struct aclops_node *aclops_result_find(const struct aclops_result *res, const char *name);

/* --- pure parts --- */

/* Compares the replies of ACL GETUSER a and ACL GETUSER b (RESP2 arrays; nil: no such
 * user). Appends "<node>: <difference>; <difference>" to diff (cut with "...") and
 * returns the number of differences, or -EPROTO when a reply is not ACL GETUSER's. */
int aclops_user_diff(const char *node, const char *name_a, const redisReply *a,
                     const char *name_b, const redisReply *b, char *diff, size_t size);

/* Parses a CLIENT LIST reply in place: counts the lines whose user= is `user` (skipping
 * the connection whose id= is skip_id; -1: none) and copies the addr= of the first
 * max_addrs of them into addrs. 0, or -EPROTO when a line lacks id=, addr= or user=. */
int aclops_client_list_parse(const char *text, size_t len, const char *user,
                             long long skip_id, char (*addrs)[ACLOPS_ADDR_MAX],
                             size_t max_addrs, long long *ret_count, size_t *ret_naddrs);

/* Parses an ACL LOG reply into entries (at most max). Returns their number, or -EPROTO. */
int aclops_log_parse(const redisReply *r, struct aclops_log_entry *entries, size_t max);

/* A new authentication failure: `count` more failed AUTHs as `username`, the last from
 * addr. */
struct aclops_failure {
    char username[ACLOPS_USER_MAX];
    char addr[ACLOPS_ADDR_MAX];
    long long count;
};

/* The new `auth` failures for any of users[0..nusers) in one node's read `now` since its
 * read `prev` (both as aclops_acl_log() left them; prev NULL: `now` is the first read,
 * which only sets the baseline: 0). Entries carrying entry-id (Redis >= 7.2) are matched
 * by it; else (7.0) an entry is the same as one in prev when reason and username match
 * and either the count is equal and its age grew by the time between the reads (give or
 * take a second), or the count grew (it was updated: the delta is new). What matches
 * nothing is new, all of its count. Failures from one addr are summed. Returns the
 * number written to out (at most max). */
size_t aclops_log_diff(const struct aclops_node *prev, const struct aclops_node *now,
                       const char *const *users, size_t nusers, struct aclops_failure *out,
                       size_t max);

/* --- on every node --- */

/* ACL GETUSER a and b; res->diff and each node's `differences`. 0 when every node
 * answered (res->diff says whether they differ: differences > 0), else -errno. */
int aclops_compare_users(const struct aclops_target *t, const char *a, const char *b,
                         struct aclops_result *res);

/* CLIENT LIST (the reply capped at cap_bytes; 0: ACLOPS_CLIENT_LIST_CAP) and the
 * connections authenticated as user, but ours: count, and up to max_addrs addresses per
 * node. */
int aclops_client_list(const struct aclops_target *t, const char *user, size_t cap_bytes,
                       size_t max_addrs, struct aclops_result *res);

/* CLIENT KILL USER user (never our own connection): count = connections closed. */
int aclops_client_kill_user(const struct aclops_target *t, const char *user,
                            struct aclops_result *res);

enum aclops_setuser_op {
    ACLOPS_ENABLE,        /* ACL SETUSER user on resetpass >password */
    ACLOPS_DISABLE,       /* ACL SETUSER user off resetpass */
    ACLOPS_FORGET_HASH,   /* ACL SETUSER user !<hash>: a password removed by its SHA-256
                             (64 hex digits); already gone counts as done */
    ACLOPS_RESTORE,       /* ACL SETUSER user on >password: a password put back beside the
                             user's others (the revocation watch's restore) */
};
/* password: ACLOPS_ENABLE's and ACLOPS_RESTORE's; hash: ACLOPS_FORGET_HASH's; else NULL.
 * save: ACL SAVE after it. */
int aclops_setuser(const struct aclops_target *t, const char *user, enum aclops_setuser_op op,
                   const struct secret *password, const char *hash, bool save,
                   struct aclops_result *res);

/* ACL LOG 128: each node's entries and read time, for aclops_log_diff(). */
int aclops_acl_log(const struct aclops_target *t, struct aclops_result *res);
