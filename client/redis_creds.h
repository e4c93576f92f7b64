/* redis_creds.h: libredis-creds, the C client of the redis-creds agent.
 *
 * Contract:
 * - A handle (rc_open) follows one published credential, <runtime_dir>/<name>.json
 *   (docs/design.md §5.4). runtime_dir NULL means $REDIS_CREDS_RUNTIME_DIR, else /run/redis-creds;
 *   the agent's configuration is never read.
 * - rc_get hands out a reference to an immutable, reference-counted snapshot: the caller
 *   can never see a half-updated credential, and nothing it holds is freed under it. Give
 *   it back with rc_creds_unref. rc_get makes no system call and no allocation: changes are
 *   picked up by inotify on the directory, either in a background thread (the default) or
 *   by the application's own event loop through rc_fd() + rc_process() (RC_OPEN_NO_THREAD).
 *   While the directory cannot be watched (it is gone, or inotify's watch limit is
 *   reached), the background thread reads the file every second instead, and so does
 *   each call of rc_process. When no inotify instance can be had at all
 *   (fs.inotify.max_user_instances reached), the file is read every second: rc_fd is then
 *   a timer that becomes readable every second.
 * - The last good credential is kept when the file turns malformed, disappears or its
 *   directory is removed; rc_last_error tells what went wrong, and an on-change callback
 *   hears about it. The directory being recreated is followed.
 * - Every function that can fail returns 0 (or a count) on success and -errno on failure;
 *   rc_strerror gives the text. Out-parameters (ret_*) are written only on success.
 * - Thread safety: every function may be called from any thread, concurrently, except
 *   rc_close (once, when no other call on the handle is running) and the restrictions on
 *   the callback (see rc_on_change). Destructors accept NULL.
 * - Secrets: snapshot memory and every buffer that held the file are wiped
 *   (explicit_bzero) before they are freed. Nothing here prints or logs anything.
 */
#ifndef REDIS_CREDS_H
#define REDIS_CREDS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RC_VERSION_MAJOR 0
#define RC_VERSION_MINOR 1

typedef struct rc_handle rc_handle;

/* One credential. Strings are NUL-terminated and belong to the snapshot. */
struct rc_credential {
    const char *username;  /* NULL: the Redis `default` user (AUTH <password> alone) */
    const char *password;  /* never NULL, never empty; may contain NUL bytes: use password_len */
    size_t password_len;
    const char *version;   /* opaque: compare only for equality */
    int64_t expires_at;    /* Unix time (seconds) it stops working; 0 = does not expire */
};

/* An immutable snapshot of the published file. */
struct rc_creds {
    const char *name;                      /* the credential's name */
    struct rc_credential current;
    const struct rc_credential *previous;  /* the one it replaced (fallback), or NULL */
    uint64_t generation;  /* 1 for the first credential this handle loaded, +1 per change */
    /* The file's previous_valid_until: Unix time from which `previous` must not be tried
     * (the agent removed it from Redis); 0 = none. See rc_usable_previous. Added at the
     * end: the library allocates snapshots, so older binaries are unaffected. */
    int64_t previous_valid_until;
};

/* `previous`, or NULL when there is none, when its expires_at has passed, or when
 * previous_valid_until has: the credential worth trying when Redis refuses current
 * (c->previous stays as published). now is Unix time in seconds (time(NULL)). No system
 * call, no allocation. */
const struct rc_credential *rc_usable_previous(const struct rc_creds *c, int64_t now);

/* rc_open_ex flags */
#define RC_OPEN_NO_THREAD     0x1u /* no background thread: poll rc_fd(), call rc_process() */
#define RC_OPEN_WAIT          0x2u /* file missing or bad at open: wait up to wait_ms for a
                                      good one (wait_ms < 0: forever); then -ENOENT etc. */
#define RC_OPEN_ALLOW_MISSING 0x4u /* file missing or bad at open: succeed anyway; rc_get
                                      returns the error until a good file is published */

/* Opens the credential `name` ([A-Za-z0-9_.-]{1,64}, not starting with '.') in runtime_dir
 * (NULL: $REDIS_CREDS_RUNTIME_DIR, else /run/redis-creds), with a background thread.
 * A missing file is -ENOENT, a malformed one -EBADMSG, an unknown format
 * -EPROTONOSUPPORT. */
int rc_open(const char *name, const char *runtime_dir, rc_handle **ret_h);
int rc_open_ex(const char *name, const char *runtime_dir, unsigned flags, int wait_ms,
               rc_handle **ret_h);

/* Stops the thread, closes the fds, drops the handle's snapshot (snapshots still held by
 * callers stay valid until they are unref'd). Accepts NULL; returns NULL. */
rc_handle *rc_close(rc_handle *h);

/* The current snapshot, referenced: release it with rc_creds_unref. No system call, no
 * allocation. -ENOENT (or the error that kept the first load from succeeding) while no
 * credential was ever loaded. */
int rc_get(rc_handle *h, const struct rc_creds **ret_creds);
const struct rc_creds *rc_creds_ref(const struct rc_creds *c);
/* Accepts NULL; returns NULL (so: `c = rc_creds_unref(c);`). */
const struct rc_creds *rc_creds_unref(const struct rc_creds *c);

/* The generation of the current snapshot (0 when none), without taking a reference: a
 * cheap "did it change since I last looked?". No system call. */
uint64_t rc_generation(rc_handle *h);

/* The result of the last attempt to load the file: 0, or -ENOENT (file or directory
 * gone), -EBADMSG (malformed), -EPROTONOSUPPORT, -EFBIG, -EACCES... The last good
 * credential stays current whatever this says. No system call. */
int rc_last_error(rc_handle *h);

/* Reads the file now (e.g. after Redis refused both current and previous). Returns 1 when
 * the credential changed, 0 when it did not, -errno when the file could not be loaded
 * (the last good credential is kept). */
int rc_reload(rc_handle *h);

/* For RC_OPEN_NO_THREAD: a non-blocking fd to poll for POLLIN (the inotify fd, or the
 * one-second timer when no inotify instance could be had; it stays the same for the
 * handle's lifetime), and the function to call when it is readable (or whenever you
 * like: it never blocks; while the directory cannot be watched, call it every second).
 * rc_process returns 1 when the credential changed, 0 when not, -errno on error. With the
 * background thread, rc_fd returns -EINVAL. */
int rc_fd(rc_handle *h);
int rc_process(rc_handle *h);

/* Called after each change (err == 0, creds = the new snapshot) and after each failed
 * load (err < 0, creds = the credential kept, or NULL). creds is valid for the call;
 * rc_creds_ref it to keep it. Runs on the background thread, or inside rc_process /
 * rc_reload; calls are serialised and come in the order of the changes (one overtaken by
 * a newer one, e.g. from rc_reload on another thread, is skipped). It may call rc_get,
 * rc_generation, rc_last_error; it must not call rc_reload, rc_process, rc_on_change or
 * rc_close on the same handle. One callback per handle; NULL removes it. */
typedef void (*rc_change_fn)(rc_handle *h, const struct rc_creds *creds, int err, void *arg);
int rc_on_change(rc_handle *h, rc_change_fn fn, void *arg);

/* Text for a -errno (or errno) value returned by this library; never NULL, static. */
const char *rc_strerror(int err);

/* The path of the file this handle follows (owned by the handle). */
const char *rc_path(rc_handle *h);

#ifdef __cplusplus
}
#endif
#endif
