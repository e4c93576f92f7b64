/* credfile: the published credential file (docs/design.md §5): format, parse, atomic write.
 *
 * The parser takes bytes and returns a struct credfile (no I/O; fuzzable); it refuses
 * anything over CREDFILE_MAX_SIZE, non-objects, wrong types and a missing name or
 * password. The writer publishes atomically through a directory fd: a temporary file
 * ".tmp-<target>-<random>" is created with openat(O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC),
 * given its mode and group, written, fsynced, renamed over the target, and the directory
 * is fsynced; a symlink at the target is replaced, never followed. Passwords live in
 * struct secret; formatted file contents are returned as a secret too.
 * Functions are reentrant; struct credfile is owned by the caller (credfile_clear).
 *
 * Env format: exactly two lines, "REDIS_USERNAME='<username>'\n" and
 * "REDIS_PASSWORD='<password>'\n"; for the default user (username NULL) the first line is
 * REDIS_USERNAME='' so a shell sourcing the file always sees both variables.
 * Parsing: "username" missing, null or "" means the default user; "source", "validated",
 * "published_at", "expires_at", "previous" and "previous_valid_until" may be missing or
 * null; "format" (integer 1), "name", "password" (non-empty, without \u0000) and
 * "version" are required; unknown keys are ignored.
 * Directory fds must be opened O_RDONLY|O_DIRECTORY (not O_PATH): the writer fsyncs them.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rctime.h"
#include "secret.h"

#define CREDFILE_MAX_SIZE (64 * 1024)
#define CREDFILE_FORMAT 1
#define CREDFILE_TMP_PREFIX ".tmp-"

struct cred_value {
    char *username;           /* NULL: the Redis default user (AUTH with password alone) */
    struct secret *password;
    char *version;
    int64_t expires_at;       /* unix seconds, or RC_NO_EXPIRY */
};

struct credfile {
    char *name;
    char *source;             /* "<source>[:<path>]" */
    int64_t published_at;     /* unix seconds */
    char *validated;          /* "all" | "any" | "none" */
    struct cred_value cur;
    bool has_previous;
    struct cred_value prev;
    /* From then on `previous` must not be tried (the agent removed it from Redis).
     * Zeroed (false) means the file has none: a struct credfile = { 0 } publishes none. */
    bool has_previous_valid_until;
    int64_t previous_valid_until;   /* unix seconds, when has_previous_valid_until */
};

void cred_value_clear(struct cred_value *v);
int cred_value_copy(const struct cred_value *from, struct cred_value *to);  /* 0 or -ENOMEM */
void credfile_clear(struct credfile *cf);

/* Parses a credential file. Returns 0, or with a reason in err (never containing secret
 * bytes) -EINVAL (malformed), -EPROTONOSUPPORT (a "format" other than 1), -EFBIG or
 * -ENOMEM. The shared vectors in tests/vectors pin what it accepts (and the README there
 * the few files it deliberately refuses although a client accepts them). */
int credfile_parse(const char *data, size_t len, struct credfile *ret, char *err, size_t errlen);
/* Reads <dirfd>/<filename> (O_NOFOLLOW, at most CREDFILE_MAX_SIZE) and parses it. */
int credfile_read(int dirfd, const char *filename, struct credfile *ret, char *err, size_t errlen);

/* Why the published files cannot carry data[0..len) as a password or user name: NULL
 * when they can, else a reason that quotes no byte of the value ("contains a NUL byte",
 * "is not valid UTF-8"), and where in *ret_offset (may be NULL). JSON strings can hold
 * neither, so credfile_format_json() would refuse the value at every publish. */
const char *credfile_value_problem(const char *data, size_t len, size_t *ret_offset);

/* The three formats. env refuses values with ', \ or control characters (-EINVAL). */
int credfile_format_json(const struct credfile *cf, struct secret **ret);
int credfile_format_env(const struct credfile *cf, struct secret **ret, char *err, size_t errlen);
int credfile_format_password(const struct credfile *cf, struct secret **ret);

/* Atomic publish of data to <dirfd>/<filename>. gid (gid_t)-1 keeps the agent's group.
 * Returns 0 or -errno; on failure the target is untouched and the temp file removed. */
int credfile_write_atomic(int dirfd, const char *filename, const void *data, size_t len,
                          mode_t mode, gid_t gid);
/* Removes leftover temporary files (CREDFILE_TMP_PREFIX) in the directory. Returns the
 * number removed or -errno. Call only while holding the runtime directory lock. */
int credfile_remove_temps(int dirfd);

