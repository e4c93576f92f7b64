/* vault_parse: the I/O-free half of the vault source (docs/vault.md).
 *
 * Everything here takes bytes (a response body, a config path, a clock reading) and
 * returns values or a classified error; nothing does I/O, logs or keeps state between
 * calls, so it is unit-tested with canned Vault responses and could be fuzzed. The
 * network half is vault.c.
 *
 * Errors: functions return 0, or -1 with *err filled (class of docs/design.md §8.4 and a message
 * prefixed with `what`, e.g. "GET secret/data/redis/cache"). Messages never contain a
 * secret: response text is only taken from Vault's `errors` list, flattened to one line,
 * stripped of control characters and cut short. Any thread; no globals.
 *
 * Ownership: a struct vault_cred owns its username (malloc) and password (secret);
 * vault_cred_clear() frees both and accepts a zeroed struct.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin.h"
#include "secret.h"

#define VAULT_PATH_MAX 1024
#define VAULT_ERRTEXT_MAX 200

/* ---- error bodies and status codes ---------------------------------------------- */

/* Vault's {"errors":[...]} as one line: go-multierror texts ("2 errors occurred:\n\t*
 * permission denied\n\t* invalid token\n\n") become "permission denied; invalid token".
 * "" when the body has no errors list or it is empty (a plain 404). */
void vault_errors_text(const char *body, size_t len, char *out, size_t outlen);
/* The same, not cut short (as much as fits in out, at most VAULT_ERRTEXT_WHOLE_MAX is
 * useful): for a caller that scrubs secrets out of it first, then cuts it with
 * vault_errors_cut() to VAULT_ERRTEXT_MAX (ending "..."). Scrubbing after the cut would
 * miss an echoed secret the cut split, and let its first bytes through. */
#define VAULT_ERRTEXT_WHOLE_MAX 4096
void vault_errors_text_whole(const char *body, size_t len, char *out, size_t outlen);
void vault_errors_cut(char *text);
/* True when one of the errors contains `needle` (case-insensitive). */
bool vault_errors_has(const char *body, size_t len, const char *needle);
/* The class of docs/design.md §8.4 for a final (non-redirect, non-2xx) HTTP status of a read. */
enum rc_err_class vault_status_class(long status);

/* ---- paths and URLs ---------------------------------------------------------------- */

/* Splits a credential path spelled as the Vault CLI spells it into mount and the rest.
 * `mount` (may be NULL or "") is the configured mount; unset, it is the first segment.
 * *ret_mount and *ret_rest are malloc'd, without leading or trailing '/'. */
int vault_path_split(const char *path, const char *mount, char **ret_mount, char **ret_rest,
                     struct rc_error *err);
/* Checks a path of segments separated by '/' (no empty, "." or ".." segment, no control
 * character) and percent-encodes what is not [A-Za-z0-9-._~] in each segment. */
int vault_path_encode(const char *path, char *out, size_t outlen);

/* scheme://host[:port]/...: lower-cased scheme and host (IPv6 keeps its brackets),
 * port (default 443 / 80). 0 or -1. */
int vault_url_parts(const char *url, char *scheme, size_t slen, char *host, size_t hlen, long *port);
/* May a 307 Location be followed, given the configured base URL? Only https, only to
 * the configured host (docs/design.md §14.4). A relative Location ("/v1/...") resolves against the
 * base. Writes the absolute URL to out. 0, or -1 with why (no secrets involved). */
int vault_redirect_target(const char *base, const char *location, char *out, size_t outlen,
                          char *why, size_t whylen);

/* ---- credentials out of Vault's data --------------------------------------------- */

struct vault_cred {
    char *username;            /* NULL: the Redis default user */
    struct secret *password;
    /* KV v2: unix seconds of the version's created_time when its data carries
     * VAULT_KEY_ROTATED_AT (an agent's rotation wrote it); 0: none. */
    int64_t rotated_at;
};

/* The data fields an agent's rotation writes beside username_field and password_field
 * (keys starting with redis_creds_ are the agent's: docs/operations.md). */
#define VAULT_KEY_ROTATED_AT "redis_creds_rotated_at"
#define VAULT_KEY_ROTATED_BY "redis_creds_rotated_by"
void vault_cred_clear(struct vault_cred *c);

struct vault_fields {
    const char *username;      /* field names */
    const char *password;
    bool username_required;    /* configured explicitly: absent is NOT_FOUND */
};

/* KV v2 metadata: what the cheap check needs. */
struct vault_kv2_meta {
    int64_t current_version;   /* 0: nothing written (or every version removed) */
    bool current_deleted;      /* soft-deleted: deletion_time in the past */
    bool current_destroyed;
    int64_t prior_version;     /* highest earlier version still readable; 0: none known */
};
int vault_parse_kv2_metadata(const char *body, size_t len, int64_t now_unix,
                             struct vault_kv2_meta *ret, const char *what, struct rc_error *err);

/* KV v2 data read answered with `status` 200 or 404. A 404 carrying the envelope with
 * data.data null is a deleted (NOT_FOUND) or destroyed (INVALID) version; a bare 404 is
 * NOT_FOUND. On success the credential and data.metadata.version. */
int vault_parse_kv2_data(long status, const char *body, size_t len, const struct vault_fields *f,
                         struct vault_cred *ret, int64_t *ret_version, const char *what,
                         struct rc_error *err);
/* The body of a KV v2 write of a rotated credential (agent-driven rotation):
 * {"options":{"cas":cas},"data":{<password field>: password, <username field>: username}}
 * (no username field for the default user), plus, with a mark, VAULT_KEY_ROTATED_AT
 * (RFC 3339 UTC) and VAULT_KEY_ROTATED_BY. A malloc'd buffer holding the password: the
 * caller wipes and frees it with secret_wipe_free(*ret, *ret_len). 0, -ENOMEM, or -EINVAL
 * when the password or username is not UTF-8 (JSON cannot carry it) or the mark's time
 * cannot be written. */
int vault_kv2_write_body(const struct vault_fields *f, const char *username,
                         const struct secret *password, const struct rc_rotation_mark *mark,
                         int64_t cas, char **ret, size_t *ret_len);
/* The rotation record (RC_CAP_ROTATION_RECORD) is a KV v2 secret of its own; its fields
 * are the record's. The body of its write: {"options":{"cas":cas},"data":<record>}, or
 * data {} for record NULL (a removal). Buffer as for vault_kv2_write_body(). 0, -ENOMEM,
 * or -EINVAL when record is not a JSON object text. */
int vault_kv2_record_body(const struct secret *record, int64_t cas, char **ret, size_t *ret_len);
/* A read of the record answered with `status` 200 or 404: *ret its data as JSON object
 * text (a secret), or NULL when there is none: a bare 404 (*ret_version 0: nothing
 * written), a deleted or destroyed version, or empty data {} (*ret_version: that
 * version, which the next write must name). A 404 with an error text is an error. */
int vault_parse_kv2_record(long status, const char *body, size_t len, struct secret **ret,
                           int64_t *ret_version, const char *what, struct rc_error *err);
/* A KV v2 write's 200 answer: data.version is the version just written. */
int vault_parse_kv2_write(const char *body, size_t len, int64_t *ret_version, const char *what,
                          struct rc_error *err);
/* KV v1 read (200): the fields of the flat data object. */
int vault_parse_kv1_data(const char *body, size_t len, const struct vault_fields *f,
                         struct vault_cred *ret, const char *what, struct rc_error *err);

struct vault_static_creds {
    struct vault_cred cred;
    char version[RC_VERSION_MAX];   /* last_vault_rotation */
    int64_t ttl;                    /* seconds until the next rotation is due (>= 0) */
    int64_t rotation_period;        /* seconds; 0 for a schedule-based role */
    char rotation_schedule[64];     /* "" for a period-based role */
};
int vault_parse_static_creds(const char *body, size_t len, struct vault_static_creds *ret,
                             const char *what, struct rc_error *err);

/* ---- tokens ------------------------------------------------------------------------- */

/* The `auth` block of a login or renew-self answer. */
struct vault_auth {
    struct secret *client_token;
    int64_t lease_duration;         /* seconds; 0 = does not expire */
    bool renewable;
    bool ttl_capped_warning;        /* a warning says the max TTL capped it */
};
void vault_auth_clear(struct vault_auth *a);
int vault_parse_auth(const char *body, size_t len, struct vault_auth *ret, const char *what,
                     struct rc_error *err);

struct vault_lookup {
    int64_t ttl;                    /* seconds; 0 = does not expire */
    int64_t creation_ttl;
    bool renewable;
    char type[16];                  /* "service", "batch", or "" */
};
int vault_parse_lookup(const char *body, size_t len, struct vault_lookup *ret, const char *what,
                       struct rc_error *err);

/* ---- timing -------------------------------------------------------------------------- */

#define VAULT_USEC_PER_SEC 1000000ULL

/* When to act on a token of `ttl_s` seconds obtained at `now`: about 2/3 of its TTL,
 * minus up to a tenth of the TTL of jitter (rnd: any 64 random bits), never sooner than
 * a second from now. 0 for a token that does not expire. */
uint64_t vault_token_due(uint64_t now, int64_t ttl_s, uint64_t rnd);

/* Database static roles. Vault rotates from a queue it checks every 5 s, so when `ttl`
 * reaches 0 the password has usually not changed yet: the source sleeps until the TTL is
 * nearly over, then re-reads every VAULT_ROT_POLL_USEC until last_vault_rotation changes,
 * for at most VAULT_ROT_AWAIT_MAX_USEC, then sleeps until the next TTL again. The TTL is
 * never taken as a sign of rotation on its own (Vault issue #31918: a schedule-based
 * role's TTL resets at the cron boundary before the password changes). The poll is a
 * little faster than once a second so that the read, the validation against Redis and
 * the publication together stay within 1 s of Vault's rotation (at most about 8 reads
 * per rotation: Vault rotates within one 5 s tick of the TTL). */
#define VAULT_ROT_POLL_USEC (600 * 1000ULL)        /* pickup + validation + publish < 1 s */
#define VAULT_ROT_LEAD_USEC (500 * 1000ULL)        /* ttl is rounded to whole seconds */
#define VAULT_ROT_AWAIT_MAX_USEC (30 * VAULT_USEC_PER_SEC)
#define VAULT_ROT_STUCK_RETRY_USEC (30 * VAULT_USEC_PER_SEC)

struct vault_rot {
    bool have;
    char version[RC_VERSION_MAX];
    uint64_t expected;             /* monotonic usec the next rotation is due; 0 unknown */
    bool awaiting;
    uint64_t await_start;
};
/* Feeds one read (version, ttl) at monotonic `now`; returns when to read next
 * (monotonic usec). *ret_changed: the version differs from the last one fed. */
uint64_t vault_rot_update(struct vault_rot *st, const char *version, int64_t ttl_s, uint64_t now,
                          bool *ret_changed);
