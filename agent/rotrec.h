/* rotrec: the fleet's rotation record (docs/design.md §9.5), pure.
 *
 * One record beside a credential in its store says which host rotates it now, with the
 * pending password (not yet in the credential's entry) and the old one (still in Redis
 * until the rotation removes it), so that no password is ever in Redis that neither the
 * entry nor a live record holds. The store keeps it with a check-and-set
 * (plugin.h record_read()/record_write()); this module only formats, parses and decides:
 *   - rotrec_format()/rotrec_parse(): the JSON object text (docs/operations.md has its
 *     form). Secrets stay in struct secret; every transient copy is wiped. Parse errors
 *     name keys, never input bytes.
 *   - rotrec_decide(): what this host does with the record it read (claim, go on, wait,
 *     take over, stop), and rotrec_takeover_at(): when a record counts as abandoned.
 *   - rotrec_next_step(): what the holder does with a record's phase (add, remove, or
 *     finish a roll-back); rotrec_roll_back()/rotrec_rollback_complete(): a roll-back is
 *     written (phase rolling_back) before anything leaves Redis, and the record goes only
 *     once every node confirmed the removal.
 *   - rotrec_entry_is(): whether the credential's entry still holds the record's old
 *     password, the pending one (written), or something else.
 * A struct rotrec owns its strings and secrets (rotrec_clear()). No I/O, no clock (the
 * caller passes `now`), any thread. Errors: 0 / -errno.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin.h"
#include "secret.h"

#define ROTREC_FORMAT 1   /* rolling_back too: a release that does not know that phase
                             finds the record unreadable, blocks and touches nothing
                             (design.md §9.5, "Record formats") */
#define ROTREC_HOST_MAX 256
#define ROTREC_TEXT_MAX 16384

enum rotrec_phase {
    ROTREC_ADDING = 0,   /* the pending password is being added and validated; the entry
                            still holds the base version */
    ROTREC_REMOVING,     /* the entry holds the pending password; the old one goes at
                            wait_until */
    ROTREC_ROLLING_BACK, /* the rotation failed before the entry changed: the pending
                            password is being removed from every node */
};
const char *rotrec_phase_to_string(enum rotrec_phase p);

struct rotrec {
    char owner[ROTREC_HOST_MAX];          /* the host name (logs, operators) */
    char owner_id[RC_VERSION_MAX];        /* the owning agent: a keyed hash of its host key,
                                             so that two agents on one host differ; "" none */
    uint64_t epoch;                       /* +1 at every takeover */
    enum rotrec_phase phase;
    char base_version[RC_VERSION_MAX];    /* the owner's version of the entry it replaces */
    char *username;                       /* pending; NULL = the default user */
    struct secret *password;
    char *old_username;
    struct secret *old_password;
    int64_t claimed_at, updated_at;       /* unix seconds */
    int64_t wait_until;                   /* 0 = none (null) */
    bool revoke;                          /* `rotate --revoke`: grace 0, never restored */
};

/* Frees the strings and secrets (wiped) and zeroes r. NULL accepted. */
void rotrec_clear(struct rotrec *r);
/* A deep copy into *to (cleared first). 0 or -ENOMEM (then *to is cleared). */
int rotrec_copy(const struct rotrec *from, struct rotrec *to);

/* The record as a JSON object text, in a secret. 0, -EINVAL (no password, an owner or
 * version empty, an epoch 0 or past INT64_MAX, a password that JSON cannot carry),
 * -ENOMEM, -ENOBUFS. */
int rotrec_format(const struct rotrec *r, struct secret **ret);
/* Parses what rotrec_format() wrote (unknown keys ignored). 0 and *ret, or -EINVAL with
 * a reason in err that quotes no input, -EPROTONOSUPPORT for a format other than 1. */
int rotrec_parse(const char *text, size_t len, struct rotrec *ret, char *err, size_t errlen);

/* When another host may take the record over: pending_timeout after the later of
 * updated_at and wait_until. */
int64_t rotrec_takeover_at(const struct rotrec *r, int64_t pending_timeout_s);

enum rotrec_action {
    ROTREC_CLAIM = 0,    /* no record: this host may claim (create it, CAS "") */
    ROTREC_CONTINUE,     /* this host's record at the epoch it holds: go on from its phase */
    ROTREC_RESUME,       /* this host's record from an earlier run (a restart): take it back
                            now, epoch + 1 */
    ROTREC_WAIT,         /* another host's live record: wait until rotrec_takeover_at() */
    ROTREC_TAKE_OVER,    /* another host's record, past its takeover time: epoch + 1 */
    ROTREC_LOST,         /* this host held the record (held_epoch) but it moved on or is
                            gone: stop, quietly */
};
const char *rotrec_action_to_string(enum rotrec_action a);

/* What this agent (host name, owner_id) does with the record it read (NULL: none).
 * held_epoch: the epoch its running rotation holds, 0 when it holds none. */
enum rotrec_action rotrec_decide(const struct rotrec *read, const char *host, const char *owner_id,
                                 uint64_t held_epoch, int64_t now, int64_t pending_timeout_s);

enum rotrec_step {
    ROTREC_STEP_ADD = 0,     /* adding: add the pending password, validate, write the entry */
    ROTREC_STEP_REMOVE,      /* removing: wait for wait_until, remove the old password */
    ROTREC_STEP_ROLL_BACK,   /* rolling_back: remove the pending password (never add it) */
};
/* What whoever holds the record (its owner, after a restart, or a taker) does next. */
enum rotrec_step rotrec_next_step(const struct rotrec *r);

/* Turns r into phase rolling_back, updated at now (also a retry's sign of life); the
 * caller writes it with a check-and-set on the revision it read at its epoch BEFORE it
 * removes anything, so that a stale owner's roll-back fails there. -EPERM (r unchanged)
 * for phase removing: the entry holds the pending password, it must stay. */
int rotrec_roll_back(struct rotrec *r, int64_t now);
/* Whether a roll-back may delete the record: phase rolling_back and every one of `nodes`
 * (more than 0) confirmed that the pending password is gone (`removed`: it removed it,
 * or the password does not log in there, e.g. a node that never had it). */
bool rotrec_rollback_complete(const struct rotrec *r, unsigned nodes, unsigned removed);

enum rotrec_entry {
    ROTREC_ENTRY_BASE = 0,   /* the entry still holds the old credential */
    ROTREC_ENTRY_PENDING,    /* the entry holds the pending credential: written */
    ROTREC_ENTRY_OTHER,      /* someone else wrote the entry */
};
/* Compares the credential's entry (username NULL = default user) with the record's old
 * and pending credentials, in constant time for the passwords. */
enum rotrec_entry rotrec_entry_is(const struct rotrec *r, const char *username,
                                  const struct secret *password);
