/* aclwatch: the ACL and client commands of a rotation (common/aclops.h) aimed at one
 * credential's nodes, and the revocation watch's bookkeeping.
 *
 * aclwatch_target_open() lists the nodes as validation does (every primary and replica a
 * cluster's discovery finds: ACLs and connections are per node) and logs in as
 * rotation.admin_username, whose password it reads from admin_password_file, or else as
 * the login given (the credential itself). The target owns what it points to; close it.
 *
 * aclwatch_read() reads ACL LOG on every node and compares it with the previous read of
 * the same node (aclops_log_diff): the new `auth` failures of the users watched, as one
 * line for the event "127.0.0.1:7001: 10.0.0.5:51234 x3 (app)". The first read of a node
 * is its baseline. A node that refuses ACL LOG (no acl|log permission) is named in
 * `problem`; the others are read anyway.
 *
 * Worker thread, blocking (each step bounded by redis.timeout). One watch is used by one
 * thread at a time (the rotation's job owns it while its step runs). Errors: -errno with
 * text that never holds a secret.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "aclops.h"
#include "config.h"
#include "secret.h"

struct validate_nodes;

struct aclwatch_target {
    struct aclops_target t;
    struct validate_nodes *v;
    struct rnet_node *nodes;
    const char **problems;
    struct secret *admin_pw;
};

int aclwatch_target_open(const struct config_credential *cc, const char *login_user,
                         const struct secret *login_password, struct aclwatch_target *ret,
                         char *err, size_t errlen);
void aclwatch_target_close(struct aclwatch_target *t);   /* NULL-safe, idempotent */

struct aclwatch {
    struct aclops_result prev;    /* the last read of every node; prev.n == 0: none yet */
};

/* The number of new failed AUTHs found (0: none) with their line in `what`, or -errno
 * when no node could be read (why in `problem`). `problem` also names nodes that could
 * not be read when others were ("" when none). */
int aclwatch_read(struct aclwatch *w, const struct aclops_target *t, const char *const *users,
                  size_t nusers, char *what, size_t size, char *problem, size_t psize);
void aclwatch_clear(struct aclwatch *w);   /* forgets the baseline */
