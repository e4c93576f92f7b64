/* confcheck: what a loaded configuration names on this machine, checked for the user the
 * agent runs as (--check-config, and the agent at start).
 *
 * config_load() checks what the text decides. confcheck_run() walks the same key tables
 * (the host's and each plugin's) and checks the rest, declared by CONFIG_CHECK_* flags:
 *   - FILE / DIR keys: the file (directory) exists and the user can read it (and search
 *     every directory above it), from the mode bits (ACLs are not read; root reads all);
 *   - GROUP keys: the group exists and the user is in it (its primary group, or one of
 *     `groups`); "" (the agent's own group) is not checked;
 *   - every absolute path the configuration sets, under /home, /root, /run/user, /tmp or
 *     /var/tmp: a warning, since the shipped unit's sandbox hides those.
 * A group the user is not in is an error when `groups` are the process's own (getgroups():
 * the agent at start), a warning when they come from the group database (systemd may add
 * it with SupplementaryGroups=). Each finding is one line, "FILE:LINE: key: what; the fix",
 * handed to `report`. Reads files' metadata only; any thread.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"

#define CONFCHECK_GROUPS_MAX 256

struct confcheck_user {
    char name[64];
    uid_t uid;
    gid_t gid;                              /* primary group */
    gid_t groups[CONFCHECK_GROUPS_MAX];     /* supplementary groups */
    size_t n_groups;
    bool process;                           /* groups are the process's own (getgroups) */
};

enum confcheck_level { CONFCHECK_ERROR, CONFCHECK_WARNING };

typedef void (*confcheck_report)(void *userdata, enum confcheck_level level, const char *msg);

/* The user named `name` (NULL: the effective user), with its groups from the group
 * database. 0, or -errno with err filled (no such user). */
int confcheck_user_lookup(const char *name, struct confcheck_user *ret, char *err, size_t errlen);
/* This process: effective uid and gid, getgroups(). 0 or -errno. */
int confcheck_user_self(struct confcheck_user *ret, char *err, size_t errlen);

/* Checks c for user u; reports each finding. Returns the number of errors. */
unsigned confcheck_run(const struct config *c, const struct confcheck_user *u,
                       confcheck_report report, void *userdata);

/* For a reload: c checked for this process (confcheck_user_self()), warnings ignored.
 * 0, or -EINVAL with the first error in err ("FILE:LINE: key: what; the fix"). */
int confcheck_self(const struct config *c, char *err, size_t errlen);
