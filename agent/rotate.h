/* rotate: the parts of agent-driven rotation (docs/design.md §9, strategy redis-acl) that are
 * not scheduling: the phase record in state_dir, new passwords, the ACL commands on every
 * node, and what to do with an interrupted rotation at start. rotation.c drives the
 * steps (claim -> add -> validate -> publish -> grace -> remove) on the agent's loop and
 * worker pool.
 *
 * Phase record: <state_dir>/rotation-<name>.json, mode 0600, written atomically at every
 * phase change. It holds versions and times only, never a secret: what a crash needs is
 * recovered from the store (the new password is there once the rotation is claimed) and
 * from the published file (the old password is `password` before publication and
 * `previous` after it). Before the claim nothing has changed anywhere, so a crash then
 * needs no record.
 *
 * Threads: rotate_acl_apply() runs on a worker (blocking; every node is asked at the
 * same time through common/rnet.h, each step bounded by the credential's Redis timeout);
 * the rest is pure or local-file I/O and may run anywhere.
 * Errors: 0 / -errno; messages never contain a secret.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "plugin.h"
#include "secret.h"

enum rotate_phase {
    ROTATE_IDLE = 0,       /* no rotation under way */
    ROTATE_CLAIMED,        /* the store holds the new version; Redis may not know it yet */
    ROTATE_ADDED,          /* every node accepts old and new; not published yet */
    ROTATE_PUBLISHED,      /* new published with old as `previous`; old removed after grace */
};
const char *rotate_phase_to_string(enum rotate_phase p);

/* The phase record's format: 1 had no `format` key (the previous release: CLAIMED and
 * ADDED mean the store holds the new version already); 2 adds the fleet clock and the
 * rotation record. */
#define ROTATE_STATE_FORMAT 2

struct rotate_state {
    int format;               /* as read (1: no `format` key); written as 2 */
    enum rotate_phase phase;
    bool record;              /* the rotation is held in the store's rotation record (rotrec.h):
                                 CLAIMED = phase adding, PUBLISHED = phase removing */
    bool revoke;              /* `rotate --revoke`: grace 0, the old password is never restored */
    char old_version[RC_VERSION_MAX];
    char new_version[RC_VERSION_MAX];
    int64_t started_at;       /* unix seconds: the claim */
    int64_t grace_until;      /* unix seconds: PUBLISHED, when the old password goes */
    int64_t last_completed;   /* unix seconds of the last completed rotation; 0 = never */
    int64_t baseline;         /* unix seconds the schedule counts from when never rotated */
    int64_t fleet_rotated_at; /* the fleet clock: rotated_at of the newest marked version this
                                 host published or saw in the store, never later than when
                                 this host saw it (rotate_clock_see); 0 = none */
    int64_t fleet_mark;       /* that version's rotated_at as the store gave it (later than
                                 fleet_rotated_at when it was in the future); 0 = none (a
                                 record from before: the same as fleet_rotated_at) */
    int64_t watch_until;      /* unix seconds: the revocation watch reads ACL LOG until then;
                                 0 = no watch */
    bool watch_revoke;        /* the watched rotation was `rotate --revoke`: never restored */
    char restored[65];        /* SHA-256 hex of an old password the watch put back; "" none.
                                 Removed again (ACL SETUSER user !hash) at restore_until, or
                                 at the next start */
    int64_t restore_until;    /* unix seconds */
    int64_t restores;         /* restores since the rotation (rotation.restore_limit) */
};

#define ROTATE_STATE_MAX 4096

/* Pure: the record as JSON (one line + newline) into buf; bytes written, or -ENOBUFS. */
int rotate_state_format(const struct rotate_state *st, char *buf, size_t size);
/* Pure: parses what rotate_state_format wrote; unknown keys are ignored. 0, or -EINVAL. */
int rotate_state_parse(const char *buf, size_t len, struct rotate_state *ret);
/* <state_dir>/rotation-<name>.json. load: -ENOENT when there is none. err: why, naming
 * the file. */
int rotate_state_load(const char *state_dir, const char *name, struct rotate_state *ret,
                      char *err, size_t errlen);
int rotate_state_save(const char *state_dir, const char *name, const struct rotate_state *st,
                      char *err, size_t errlen);

/* When the next scheduled rotation is due (unix seconds): interval + splay_s after the
 * fleet clock, else after the last completed one (a format-1 record), else after the
 * baseline. */
int64_t rotate_next_due(const struct rotate_state *st, uint64_t interval_usec, int64_t splay_s);
/* The fleet clock sees a store's rotated_at (docs/design.md §9.6). A time not seen
 * before (fleet_mark) and later than the clock moves the clock, to `now` at most: a mark
 * in the future (the clock of the host that wrote it ran ahead, or a hand edit) must not
 * hold every host's schedule until that date, nor make a later real rotation's mark look
 * old. The mark itself is kept, so that reading it again is no news. Returns how far the
 * mark was in the future (seconds, 0 when not) when the clock moved, or -1 when it did
 * not move. Pure. */
int64_t rotate_clock_see(struct rotate_state *st, int64_t rotated_at, int64_t now);
/* A phase record read at start: times this host wrote while its clock ran ahead (the
 * fleet clock, the last rotation, the baseline) are brought back to `now`. Returns true
 * when something was, false when the record was sane. Pure. */
bool rotate_clock_sane(struct rotate_state *st, int64_t now);
/* A uniform draw in [0, splay_usec] usec, at millisecond grain (OpenSSL's CSPRNG; 0 when
 * it fails). */
uint64_t rotate_splay_draw(uint64_t splay_usec);

/* A new password of `length` characters drawn uniformly from `alphabet` with OpenSSL's
 * CSPRNG (rejection sampling, no modulo bias). 0 and *ret, or -errno. */
int rotate_generate_password(const char *alphabet, unsigned length, struct secret **ret);

/* What an interrupted rotation needs, from its record and what is published now. */
enum rotate_resume {
    ROTATE_RESUME_NONE = 0,   /* nothing under way */
    ROTATE_RESUME_ADD,        /* claimed, not published: take the new password from the
                                 store, add it on every node, validate, publish */
    ROTATE_RESUME_REMOVE,     /* published: remove the old password once grace is over */
    ROTATE_RESUME_ABANDON,    /* the published credential moved on: nothing can be finished */
};
enum rotate_resume rotate_resume_decide(const struct rotate_state *st,
                                        const char *published_version,
                                        const char *published_previous_version);

enum rotate_acl_op { ROTATE_ACL_ADD, ROTATE_ACL_REMOVE };

struct rotate_acl_result {
    unsigned total, done;     /* nodes, nodes where the command (and ACL SAVE) succeeded */
    char nodes[512];          /* "host:port=ok,host:port=NOPERM" */
    char detail[512];         /* the first failure, human readable; "" on success */
};

/* `ACL SETUSER <user> >password` (ADD) or `<password` (REMOVE), then ACL SAVE when
 * ro->acl_save, on every node of the credential (every primary and replica of a cluster:
 * ACLs are per node). Logs in as ro->admin_username with the password read from
 * ro->admin_password_file, else as login_user/login_password (the credential itself).
 * user NULL is the default user. Every node is tried even when one fails. 0 when every
 * node succeeded, else -errno with res->detail. */
int rotate_acl_apply(const struct config_redis *redis, const struct config_rotation *ro,
                     const char *user, enum rotate_acl_op op, const struct secret *password,
                     const char *login_user, const struct secret *login_password,
                     struct rotate_acl_result *res);
