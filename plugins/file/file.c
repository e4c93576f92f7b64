/* The `file` source: credentials in a local directory (docs/design.md §4.4, docs/sources.md).
 *
 * Each credential's `path` names a file in `directory` holding JSON {"username",
 * "password"} or a bare password (one trailing newline is dropped). The directory is
 * watched with inotify (IN_CLOSE_WRITE, IN_MOVED_TO), so a write is picked up at once;
 * poll_interval stays as the fallback. The version is the host's keyed hash of the
 * username and password, never a plain hash of the secret.
 *
 * JSON keys other than those two are refused (naming the key, with a suggestion), except
 * keys starting with `redis_creds_`: those are the agent's (docs/sources.md). Of them,
 * fetch() reads `redis_creds_rotated_at` (the fleet's rotation clock); none is part of the
 * version.
 *
 * rotate_write() (agent-driven rotation, docs/design.md §9) writes the next version into the file with
 * a check-and-set under an flock in the directory, so the directory must be writable by
 * the agent for credentials with `rotation`; with a mark it also writes
 * `redis_creds_rotated_at` and `redis_creds_rotated_by`. The rotation record of a
 * credential (RC_CAP_ROTATION_RECORD) is the file `.<path>.rotation` beside it, mode 0600,
 * replaced atomically under the same flock; its revision is the host's keyed hash of its
 * bytes. fetch() never reads it and the inotify watch wakes nobody for it.
 *
 * State: the directory path and the inotify fd are set in open() and only read after;
 * watch_event() (loop thread) touches nothing fetch() (worker) uses but the immutable
 * list of credential paths.
 */
#include <errno.h>
#include <fcntl.h>
#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "credfile.h"
#include "fdio.h"
#include "rctime.h"
#include "jsonload.h"
#include "plugin.h"
#include "secret.h"
#include "host_services.h"

#define FILE_MAX_SIZE (64 * 1024)

/* Keys of a credential file that belong to the agent (docs/operations.md). */
#define RESERVED_PREFIX "redis_creds_"
#define KEY_ROTATED_AT RESERVED_PREFIX "rotated_at"
#define KEY_ROTATED_BY RESERVED_PREFIX "rotated_by"
/* The rotation record beside the credential file `path`: `.<path>` RECORD_SUFFIX. */
#define RECORD_SUFFIX ".rotation"

struct file_cred {
    char *name;   /* credential name */
    char *path;   /* file name inside the directory */
    bool said_readable;   /* warned once that others can read the file */
    char said_bad_mark[RC_VERSION_MAX];   /* the version whose bad rotated_at was reported */
};

struct file_source {
    const struct rc_host *host;
    char *directory;
    int inotify_fd;
    bool watch_lost;
    struct file_cred *creds;
    size_t n_creds;
};

static const struct rc_config_key file_source_keys[] = {
    { .name = "directory", .type = RC_CONF_T_STRING, .required = true,
      .checks = RC_CONF_CHECK_ABSOLUTE | RC_CONF_CHECK_DIR },
    { .name = NULL },
};

static const struct rc_config_key file_credential_keys[] = {
    { .name = "path", .type = RC_CONF_T_STRING, .required = true,
      .checks = RC_CONF_CHECK_FILE_NAME },
    { .name = NULL },
};

/* A file name inside the directory: no '/', not hidden (temporary files of writers
 * that rename into place start with '.'), at most NAME_MAX. */
static bool file_name_ok(const char *p) {
    size_t n = strlen(p);
    return n > 0 && n <= NAME_MAX && p[0] != '.' && !strchr(p, '/');
}

static void file_close(void *state) {
    struct file_source *s = state;
    if (!s)
        return;
    if (s->inotify_fd >= 0)
        close(s->inotify_fd);
    for (size_t i = 0; i < s->n_creds; i++) {
        free(s->creds[i].name);
        free(s->creds[i].path);
    }
    free(s->creds);
    free(s->directory);
    free(s);
}

static int file_open(const struct rc_host *host, const struct rc_config_node *source,
                     const struct rc_credential *credentials, size_t n_credentials,
                     void **ret_state, struct rc_error *err) {
    const char *dir = conf_string(source, "directory");
    struct stat st;

    if (!dir || dir[0] != '/')
        return rc_error_set(err, RC_ERR_FATAL, "directory must be an absolute path");
    if (stat(dir, &st) < 0)
        return rc_error_set(err, RC_ERR_FATAL, "directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return rc_error_set(err, RC_ERR_FATAL, "directory %s: not a directory", dir);

    struct file_source *s = calloc(1, sizeof *s);
    if (!s)
        return rc_error_oom(err);
    s->host = host;
    s->inotify_fd = -1;
    s->directory = strdup(dir);
    s->creds = calloc(n_credentials ? n_credentials : 1, sizeof *s->creds);
    if (!s->directory || !s->creds)
        goto oom;
    for (size_t i = 0; i < n_credentials; i++) {
        const char *p = conf_string(credentials[i].node, "path");
        if (!p || !file_name_ok(p)) {
            rc_error_set(err, RC_ERR_FATAL,
                         "credential %s: path must be a file name in %s (no '/', not starting with '.')",
                         credentials[i].name, dir);
            file_close(s);
            return -1;
        }
        s->creds[i].name = strdup(credentials[i].name);
        s->creds[i].path = strdup(p);
        s->n_creds = i + 1;
        if (!s->creds[i].name || !s->creds[i].path)
            goto oom;
    }

    s->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (s->inotify_fd < 0 ||
        inotify_add_watch(s->inotify_fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
        /* Not fatal: poll_interval still finds changes. */
        host->log(host->h, LOG_WARNING, NULL, "cannot watch %s (%s); relying on poll_interval",
                  dir, strerror(errno));
        if (s->inotify_fd >= 0)
            close(s->inotify_fd);
        s->inotify_fd = -1;
    }
    *ret_state = s;
    return 0;
oom:
    file_close(s);
    return rc_error_oom(err);
}

static const struct file_cred *file_find(const struct file_source *s, const char *name) {
    for (size_t i = 0; i < s->n_creds; i++)
        if (strcmp(s->creds[i].name, name) == 0)
            return &s->creds[i];
    return NULL;
}

/* Reads at most FILE_MAX_SIZE bytes of a regular file into a wiped-on-free buffer, and
 * its permission bits (from the fstat the read does anyway) into *ret_mode. */
static int file_read(const char *dir, const char *path, struct secret **ret, mode_t *ret_mode,
                     struct rc_error *err) {
    char full[PATH_MAX];
    struct stat st;
    int n = snprintf(full, sizeof full, "%s/%s", dir, path);
    if (n < 0 || (size_t)n >= sizeof full)
        return rc_error_set(err, RC_ERR_FATAL, "%s/%s: path too long", dir, path);

    /* O_NONBLOCK: a FIFO planted at the name must not hang the worker. */
    int fd = open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return rc_error_set(err, RC_ERR_NOT_FOUND, "%s: no such file", full);
        if (e == EACCES || e == EPERM)
            return rc_error_set(err, RC_ERR_AUTH, "%s: %s", full, strerror(e));
        if (e == ELOOP)
            return rc_error_set(err, RC_ERR_INVALID, "%s: is a symlink (refused)", full);
        return rc_error_set(err, RC_ERR_TRANSIENT, "%s: %s", full, strerror(e));
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return rc_error_set(err, RC_ERR_INVALID, "%s: not a regular file", full);
    }
    if (st.st_size > FILE_MAX_SIZE) {
        close(fd);
        return rc_error_set(err, RC_ERR_INVALID, "%s: larger than %d bytes", full, FILE_MAX_SIZE);
    }

    char *buf = malloc(FILE_MAX_SIZE + 1);
    size_t len = 0;
    if (!buf) {
        close(fd);
        return rc_error_oom(err);
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, FILE_MAX_SIZE + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            secret_wipe_free(buf, FILE_MAX_SIZE + 1);
            return rc_error_set(err, RC_ERR_TRANSIENT, "%s: read: %s", full, strerror(e));
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > FILE_MAX_SIZE) {
            close(fd);
            secret_wipe_free(buf, FILE_MAX_SIZE + 1);
            return rc_error_set(err, RC_ERR_INVALID, "%s: larger than %d bytes", full, FILE_MAX_SIZE);
        }
    }
    close(fd);
    *ret = secret_new(buf, len);
    secret_wipe_free(buf, FILE_MAX_SIZE + 1);
    if (!*ret)
        return rc_error_oom(err);
    *ret_mode = st.st_mode & 07777;
    return 0;
}

/* Optimal string alignment distance (edits and swaps of neighbours), ignoring case; keys
 * longer than 32 bytes count as far from everything. */
static size_t key_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), d[33][33];
    if (la > 32 || lb > 32)
        return SIZE_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int x = tolower((unsigned char)a[i - 1]), y = tolower((unsigned char)b[j - 1]);
            size_t v = d[i - 1][j - 1] + (x != y);
            if (d[i - 1][j] + 1 < v)
                v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && x == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == y && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

/* The key an unknown one was probably meant to be: at most two edits away, or its
 * start ("user", "pass"); NULL when neither fits. */
static const char *key_suggestion(const char *key) {
    static const char *const known[] = { "username", "password" };
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        size_t dist = key_distance(key, known[i]);
        if (strlen(key) >= 3 && strncasecmp(key, known[i], strlen(key)) == 0)
            dist = 1;
        if (dist < best_d) {
            best_d = dist;
            best = known[i];
        }
    }
    return best;
}

/* Refuses a key that is neither username, password nor the agent's (redis_creds_*),
 * naming it (printable, cut short, and never when it holds the password: someone who
 * swapped a key and its value). 0 or -1 + err. */
static int file_check_keys(const char *full, json_t *root, struct rc_error *err) {
    const char *key;
    json_t *v;
    json_t *pass = json_object_get(root, "password");
    json_object_foreach(root, key, v) {
        if (strcmp(key, "username") == 0 || strcmp(key, "password") == 0 ||
            strncmp(key, RESERVED_PREFIX, strlen(RESERVED_PREFIX)) == 0)
            continue;
        char shown[72] = "`";
        size_t n = 1;
        for (const char *k = key; *k && n < 65; k++)
            shown[n++] = isprint((unsigned char)*k) ? *k : '?';
        snprintf(shown + n, sizeof shown - n, "%s`", strlen(key) + 1 > n ? "..." : "");
        if (json_is_string(pass) && json_string_length(pass) > 0 && strstr(key, json_string_value(pass)))
            snprintf(shown, sizeof shown, "(not shown: it contains the password)");
        const char *hint = key_suggestion(key);
        char mean[48] = "";
        if (hint)
            snprintf(mean, sizeof mean, " (did you mean `%s`?)", hint);
        return rc_error_set(err, RC_ERR_INVALID, "%s: unknown key %s%s; a credential file holds "
                            "`username` and `password` only (keys starting with `" RESERVED_PREFIX
                            "` are reserved for the agent)", full, shown, mean);
    }
    return 0;
}

/* The agent's mark: c->rotated_at from redis_creds_rotated_at when it is an RFC 3339 time
 * (absent or null: none). false when it is there but unusable. */
static bool file_parse_mark(json_t *root, struct rc_candidate *c) {
    json_t *at = json_object_get(root, KEY_ROTATED_AT);
    int64_t t;
    if (!at || json_is_null(at))
        return true;
    if (!json_is_string(at) || rctime_parse(json_string_value(at), &t) < 0)
        return false;
    c->rotated_at = t;
    return true;
}

/* JSON {"username": string|null (optional), "password": string, "redis_creds_*": any}.
 * *ret_bad_mark: redis_creds_rotated_at is there but not a time (the caller says so). */
static int file_parse_json(const char *full, const struct secret *content, struct rc_candidate *c,
                           bool *ret_bad_mark, struct rc_error *err) {
    struct jsonload_error jerr;
    json_t *root = jsonload_buf(secret_data(content), secret_len(content), JSON_REJECT_DUPLICATES, &jerr);
    if (!root)  /* position and a generic reason only: jansson's text may quote the input */
        return rc_error_set(err, RC_ERR_INVALID, "%s: malformed JSON at line %d column %d (%s)",
                            full, jerr.line, jerr.column, jerr.reason);
    int r = -1;
    json_t *user = json_object_get(root, "username");
    json_t *pass = json_object_get(root, "password");
    if (!json_is_object(root))
        rc_error_set(err, RC_ERR_INVALID, "%s: expected a JSON object", full);
    else if (file_check_keys(full, root, err) < 0)
        ;
    else if (!pass)
        rc_error_set(err, RC_ERR_NOT_FOUND, "%s: no \"password\" field", full);
    else if (!json_is_string(pass))
        rc_error_set(err, RC_ERR_INVALID, "%s: \"password\" must be a string", full);
    else if (json_string_length(pass) == 0)
        rc_error_set(err, RC_ERR_INVALID, "%s: empty password", full);
    else if (user && !json_is_string(user) && !json_is_null(user))
        rc_error_set(err, RC_ERR_INVALID, "%s: \"username\" must be a string or null", full);
    else if (json_is_string(user) && json_string_length(user) == 0)
        rc_error_set(err, RC_ERR_INVALID, "%s: empty username (use null for the default user)", full);
    else {
        c->username = json_is_string(user) ? strdup(json_string_value(user)) : NULL;
        c->password = secret_new(json_string_value(pass), json_string_length(pass));
        if ((json_is_string(user) && !c->username) || !c->password) {
            free(c->username);
            c->username = NULL;
            c->password = secret_free(c->password);
            rc_error_oom(err);
        } else {
            *ret_bad_mark = !file_parse_mark(root, c);
            r = 0;
        }
    }
    json_decref(root);   /* jansson's free wipes (secret_init) */
    return r;
}

/* Reads and parses fc's file into *ret (username, password, version, rotated_at), its
 * permission bits into *ret_mode and whether its redis_creds_rotated_at was unusable into
 * *ret_bad_mark. 0 or -1 + err. */
static int file_load(const struct file_source *s, const struct file_cred *fc,
                     struct rc_candidate *ret, mode_t *ret_mode, bool *ret_bad_mark,
                     struct rc_error *err) {
    _cleanup_secret_ struct secret *content = NULL;
    struct rc_candidate c = { .expires_at = RC_NO_EXPIRY, .rotated_at = INT64_MIN };
    bool bad_mark = false;
    mode_t mode;

    if (file_read(s->directory, fc->path, &content, &mode, err) < 0)
        return -1;

    const char *d = secret_data(content);
    size_t len = secret_len(content), i = 0;
    while (i < len && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r'))
        i++;
    if (i < len && d[i] == '{') {
        if (file_parse_json(fc->path, content, &c, &bad_mark, err) < 0)
            return -1;
    } else {
        /* A bare password: drop one trailing newline (editors add one). */
        if (len > 0 && d[len - 1] == '\n')
            len--;
        if (len > 0 && d[len - 1] == '\r')
            len--;
        if (len == 0)
            return rc_error_set(err, RC_ERR_INVALID, "%s: empty password", fc->path);
        /* The published files are JSON: refuse now what could never be published. */
        size_t at;
        const char *why = credfile_value_problem(d, len, &at);
        if (why)
            return rc_error_set(err, RC_ERR_INVALID, "%s: the password %s (at byte %zu), which the published "
                                "credential files cannot carry; write it without", fc->path, why, at);
        c.password = secret_new(d, len);
        if (!c.password)
            return rc_error_oom(err);
    }

    /* Version: keyed hash of what AUTH will use, so reformatting the file is no change. */
    int r = rc_credential_version(s->host, c.username, secret_data(c.password),
                                  secret_len(c.password), c.version);
    if (r < 0) {
        free(c.username);
        secret_free(c.password);
        return rc_error_set(err, RC_ERR_TRANSIENT, "cannot compute version: %s", strerror(-r));
    }
    *ret = c;
    *ret_mode = mode;
    *ret_bad_mark = bad_mark;
    return 0;
}

static int file_fetch(void *state, const struct rc_credential *cred,
                      struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err) {
    struct file_source *s = state;
    const struct file_cred *fc = file_find(s, cred->name);

    if (!fc)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s is not known to this source", cred->name);
    mode_t mode;
    bool bad_mark;
    if (file_load(s, fc, &ret[0], &mode, &bad_mark, err) < 0)
        return -1;
    /* A secret others can read is worth a word, once (fetches of a source never overlap). */
    struct file_cred *w = &s->creds[fc - s->creds];
    if ((mode & S_IROTH) && !w->said_readable) {
        w->said_readable = true;
        s->host->log(s->host->h, LOG_WARNING, cred->name, "%s/%s is readable by others (mode %04o): "
                     "anyone on this host can read this credential; chmod o-r it",
                     s->directory, fc->path, (unsigned)mode);
    }
    /* The credential itself is fine; only the fleet's clock cannot count from it. Once
     * per version: a poll must not repeat it. */
    if (bad_mark && strcmp(w->said_bad_mark, ret[0].version) != 0) {
        snprintf(w->said_bad_mark, sizeof w->said_bad_mark, "%s", ret[0].version);
        s->host->log(s->host->h, LOG_WARNING, cred->name, "%s/%s: `" KEY_ROTATED_AT "` is not an RFC 3339 "
                     "time (\"2026-12-02T06:30:00Z\"); the rotation schedule ignores it (the agent "
                     "writes this key; do not edit it)", s->directory, fc->path);
    }
    return 1;
}

/* ---- rotate: check-and-set write of the next version ----
 *
 * Writers agree through an flock on LOCK_NAME in the directory: under it, re-read the
 * file, compare its version with the expected one, write a temporary file (the mode the
 * re-read saw), fsync, rename over the file, fsync the directory. Readers
 * (fetch, other agents' fetch, people) need no lock: the rename is atomic. The lock file
 * starts with '.', so it can never be a credential's path. */
#define LOCK_NAME ".redis-creds-rotate.lock"
#define LOCK_WAIT_USEC (5 * 1000 * 1000)

static int file_lock(const struct file_source *s, const char *target, int *ret_fd,
                     struct rc_error *err) {
    char lock[PATH_MAX];
    int n = snprintf(lock, sizeof lock, "%s/%s", s->directory, LOCK_NAME);
    if (n < 0 || (size_t)n >= sizeof lock)
        return rc_error_set(err, RC_ERR_FATAL, "%s: path too long", s->directory);
    int fd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        int e = errno;
        return rc_error_set(err, e == EACCES || e == EPERM || e == EROFS ? RC_ERR_FATAL : RC_ERR_TRANSIENT,
                            "cannot rotate %s: cannot create the lock file %s (the directory must be "
                            "writable by the agent): %s", target, lock, strerror(e));
    }
    /* Bounded wait: a writer that hangs with the lock must not hang this worker. */
    for (unsigned waited = 0;; waited += 10000) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if ((errno != EWOULDBLOCK && errno != EINTR) || waited >= LOCK_WAIT_USEC) {
            int e = errno;
            close(fd);
            return rc_error_set(err, RC_ERR_TRANSIENT, "cannot rotate %s: lock %s: %s", target, lock,
                                e == EWOULDBLOCK ? "held by another writer for too long" : strerror(e));
        }
        usleep(10000);
    }
    *ret_fd = fd;
    return 0;
}

/* The JSON the file holds after a rotation, with the mark when there is one, in a buffer
 * the caller wipes and frees. */
static int file_format(const char *username, const struct secret *password,
                       const struct rc_rotation_mark *mark, char **ret, size_t *ret_len) {
    char at[32] = "";
    if (mark && (!rctime_format(mark->rotated_at, at, sizeof at)[0] || !mark->rotated_by))
        return -EINVAL;
    json_t *o = json_object();
    json_t *pw = json_stringn(secret_data(password), secret_len(password));
    int r = -EINVAL;
    if (o && pw && json_object_set_new(o, "username", username ? json_string(username) : json_null()) == 0 &&
        json_object_set(o, "password", pw) == 0 &&
        (!mark || (json_object_set_new(o, KEY_ROTATED_AT, json_string(at)) == 0 &&
                   json_object_set_new(o, KEY_ROTATED_BY, json_string(mark->rotated_by)) == 0))) {
        size_t need = json_dumpb(o, NULL, 0, JSON_COMPACT);
        char *buf = need ? malloc(need + 1) : NULL;
        if (buf && json_dumpb(o, buf, need, JSON_COMPACT) == need) {
            buf[need] = '\n';
            *ret = buf;
            *ret_len = need + 1;
            r = 0;
        } else {
            if (buf)
                secret_wipe_free(buf, need + 1);
            r = -ENOMEM;
        }
    }
    json_decref(pw);
    json_decref(o);   /* jansson's free wipes (secret_init) */
    return r;
}

static void fsync_dir(const char *dir) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);   /* the change is done; a failed fsync only weakens durability */
        close(dfd);
    }
}

/* Replaces `name` in the directory with content (mode), atomically: a temporary file
 * `.<name>.rotate-XXXXXX` written and fsynced, renamed over it, the directory fsynced. The
 * caller holds the flock. `what` names the operation in errors. 0 or -1 + err. */
static int file_replace(const struct file_source *s, const char *name, const char *content, size_t len,
                        mode_t mode, const char *what, struct rc_error *err) {
    char target[PATH_MAX], tmp[PATH_MAX];
    int r = snprintf(target, sizeof target, "%s/%s", s->directory, name);
    int r2 = snprintf(tmp, sizeof tmp, "%s/.%s.rotate-XXXXXX", s->directory, name);
    if (r < 0 || (size_t)r >= sizeof target || r2 < 0 || (size_t)r2 >= sizeof tmp)
        return rc_error_set(err, RC_ERR_FATAL, "%s/%s: path too long", s->directory, name);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return rc_error_set(err, e == EACCES || e == EPERM || e == EROFS ? RC_ERR_FATAL : RC_ERR_TRANSIENT,
                            "cannot %s %s: cannot create a temporary file in %s (the directory must be "
                            "writable by the agent): %s", what, target, s->directory, strerror(e));
    }
    if ((r = fchmod(fd, mode) < 0 ? -errno : 0) < 0 || (r = fdio_write_all(fd, content, len)) < 0 ||
        (r = fsync(fd) < 0 ? -errno : 0) < 0) {
        rc_error_set(err, RC_ERR_TRANSIENT, "cannot %s %s: writing %s: %s", what, target, tmp, strerror(-r));
        goto fail;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, target) < 0) {
        int e = errno;
        rc_error_set(err, RC_ERR_TRANSIENT, "cannot %s %s: rename: %s", what, target, strerror(e));
        goto fail;
    }
    fsync_dir(s->directory);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return -1;
}

static int file_rotate(void *state, const struct rc_credential *cred, const char *expected_version,
                       const char *username, const struct secret *password,
                       const struct rc_rotation_mark *mark, char *ret_version, struct rc_error *err) {
    struct file_source *s = state;
    const struct file_cred *fc = file_find(s, cred->name);
    char target[PATH_MAX], version[RC_VERSION_MAX];
    struct rc_candidate cur = { .expires_at = RC_NO_EXPIRY };
    char *content = NULL;
    size_t len = 0;
    int lock_fd = -1, r;
    mode_t mode;
    bool bad_mark;

    if (!fc)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s is not known to this source", cred->name);
    r = snprintf(target, sizeof target, "%s/%s", s->directory, fc->path);
    if (r < 0 || (size_t)r >= sizeof target)
        return rc_error_set(err, RC_ERR_FATAL, "%s/%s: path too long", s->directory, fc->path);
    if (file_lock(s, target, &lock_fd, err) < 0)
        return -1;

    /* Under the lock: is the store still at the version the agent has? */
    r = -1;
    if (file_load(s, fc, &cur, &mode, &bad_mark, err) < 0)
        goto out;
    free(cur.username);
    secret_free(cur.password);
    if (strcmp(cur.version, expected_version) != 0)
        rc_error_set(err, RC_ERR_CONFLICT, "%s: holds version %s, not the expected %s (rotated by "
                     "someone else)", target, cur.version, expected_version);
    else if ((r = rc_credential_version(s->host, username, secret_data(password),
                                        secret_len(password), version)) < 0)
        rc_error_set(err, RC_ERR_TRANSIENT, "cannot compute version: %s", strerror(-r));
    else if ((r = file_format(username, password, mark, &content, &len)) < 0)
        rc_error_set(err, r == -ENOMEM ? RC_ERR_TRANSIENT : RC_ERR_INVALID,
                     "%s: cannot encode the new credential as JSON", target);
    else if ((r = file_replace(s, fc->path, content, len, mode, "rotate", err)) == 0)
        memcpy(ret_version, version, RC_VERSION_MAX);
    if (content)
        secret_wipe_free(content, len);
out:
    close(lock_fd);   /* releases the flock */
    return r < 0 ? -1 : 0;
}

/* ---- the rotation record: `.<path>.rotation`, check-and-set under the same flock ---- */

/* The record's file name for fc into name[NAME_MAX + 1]. 0 or -1 + err. */
static int record_name(const struct file_source *s, const struct file_cred *fc, char *name,
                       struct rc_error *err) {
    int n = snprintf(name, NAME_MAX + 1, ".%s" RECORD_SUFFIX, fc->path);
    if (n < 0 || n > NAME_MAX)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s: the rotation record's name .%s" RECORD_SUFFIX
                            " in %s is longer than %d bytes; use a shorter path", fc->name, fc->path,
                            s->directory, NAME_MAX);
    return 0;
}

/* A record must be one JSON object; checked without quoting it (it holds passwords). */
static int record_check(const char *full, const struct secret *rec, struct rc_error *err) {
    struct jsonload_error jerr;
    if (secret_len(rec) > FILE_MAX_SIZE)
        return rc_error_set(err, RC_ERR_INVALID, "%s: larger than %d bytes", full, FILE_MAX_SIZE);
    json_t *root = jsonload_buf(secret_data(rec), secret_len(rec), JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return rc_error_set(err, RC_ERR_INVALID, "%s: the rotation record is malformed JSON at line %d "
                            "column %d (%s); the agent writes this file: remove it once no agent runs "
                            "a rotation", full, jerr.line, jerr.column, jerr.reason);
    bool obj = json_is_object(root);
    json_decref(root);
    if (!obj)
        return rc_error_set(err, RC_ERR_INVALID, "%s: the rotation record is not a JSON object", full);
    return 0;
}

/* The revision of a record's bytes: the host's keyed hash. */
static int record_revision(const struct file_source *s, const struct secret *rec, char *ret,
                           struct rc_error *err) {
    char v[RC_VERSION_MAX];
    int r = s->host->keyed_version(s->host->h, secret_data(rec), secret_len(rec), v);
    if (r < 0)
        return rc_error_set(err, RC_ERR_TRANSIENT, "cannot compute the record's revision: %s", strerror(-r));
    snprintf(ret, RC_REVISION_MAX, "%s", v);
    return 0;
}

/* Reads the record and its revision: *ret NULL and "" when there is none. */
static int record_load(const struct file_source *s, const char *name, struct secret **ret,
                       char *ret_revision, struct rc_error *err) {
    struct secret *rec = NULL;
    mode_t mode;
    if (file_read(s->directory, name, &rec, &mode, err) < 0) {
        if (err->cls != RC_ERR_NOT_FOUND)
            return -1;
        *err = (struct rc_error){ 0 };
        *ret = NULL;
        ret_revision[0] = '\0';
        return 0;
    }
    if (record_revision(s, rec, ret_revision, err) < 0) {
        secret_free(rec);
        return -1;
    }
    *ret = rec;
    return 0;
}

static int file_record_read(void *state, const struct rc_credential *cred, struct secret **ret_record,
                            char *ret_revision, struct rc_error *err) {
    struct file_source *s = state;
    const struct file_cred *fc = file_find(s, cred->name);
    char name[NAME_MAX + 1], full[PATH_MAX + NAME_MAX + 2];
    struct secret *rec = NULL;

    if (!fc)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s is not known to this source", cred->name);
    if (record_name(s, fc, name, err) < 0 || record_load(s, name, &rec, ret_revision, err) < 0)
        return -1;
    snprintf(full, sizeof full, "%s/%s", s->directory, name);
    if (rec && record_check(full, rec, err) < 0) {
        secret_free(rec);
        return -1;
    }
    *ret_record = rec;
    return 0;
}

static int file_record_write(void *state, const struct rc_credential *cred, const char *expected_revision,
                             const struct secret *record, char *ret_revision, struct rc_error *err) {
    struct file_source *s = state;
    const struct file_cred *fc = file_find(s, cred->name);
    char name[NAME_MAX + 1], full[PATH_MAX + NAME_MAX + 2], cur[RC_REVISION_MAX], next[RC_REVISION_MAX] = "";
    struct secret *old = NULL;
    int lock_fd = -1, r = -1;

    if (!fc)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s is not known to this source", cred->name);
    if (record_name(s, fc, name, err) < 0)
        return -1;
    snprintf(full, sizeof full, "%s/%s", s->directory, name);
    if (record && (record_check(full, record, err) < 0 || record_revision(s, record, next, err) < 0))
        return -1;
    if (file_lock(s, full, &lock_fd, err) < 0)
        return -1;
    if (record_load(s, name, &old, cur, err) < 0)
        goto out;
    old = secret_free(old);
    if (strcmp(cur, expected_revision) != 0)
        rc_error_set(err, RC_ERR_CONFLICT, "%s: the rotation record's revision is %s, not the expected "
                     "%s (another agent changed it)", full, cur[0] ? cur : "none (no record)",
                     expected_revision[0] ? expected_revision : "none (no record)");
    else if (record)
        r = file_replace(s, name, secret_data(record), secret_len(record), 0600, "write the rotation record",
                         err);
    else if (cur[0] && unlink(full) < 0) {
        int e = errno;
        rc_error_set(err, e == EACCES || e == EPERM || e == EROFS ? RC_ERR_FATAL : RC_ERR_TRANSIENT,
                     "cannot remove the rotation record %s: %s", full, strerror(e));
    } else {
        if (cur[0])
            fsync_dir(s->directory);
        r = 0;
    }
    if (r == 0)
        snprintf(ret_revision, RC_REVISION_MAX, "%s", next);
out:
    close(lock_fd);   /* releases the flock */
    return r;
}

static int file_watch_fd(void *state) {
    struct file_source *s = state;
    return s->inotify_fd;
}

static void file_watch_event(void *state) {
    struct file_source *s = state;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

    for (;;) {
        ssize_t n = read(s->inotify_fd, buf, sizeof buf);
        if (n <= 0)
            return;   /* EAGAIN: drained */
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
                if (!s->watch_lost)
                    s->host->log(s->host->h, LOG_WARNING, NULL,
                                 "directory %s went away; relying on poll_interval until restart or reload",
                                 s->directory);
                s->watch_lost = true;
                continue;
            }
            if (!ev->len)
                continue;
            for (size_t i = 0; i < s->n_creds; i++)
                if (strcmp(ev->name, s->creds[i].path) == 0)
                    s->host->wake(s->host->h, s->creds[i].name);
        }
    }
}

static const struct rc_source_type file_types[] = {
    {
        .type = "file",
        .source_keys = file_source_keys,
        .credential_keys = file_credential_keys,
        .open = file_open,
        .fetch = file_fetch,
        .caps = RC_CAP_ROTATE_WRITE | RC_CAP_ROTATION_RECORD,
        .rotate_write = file_rotate,
        .record_read = file_record_read,
        .record_write = file_record_write,
        .watch_fd = file_watch_fd,
        .watch_event = file_watch_event,
        .close = file_close,
    },
};

const struct rc_services *rc_svc;   /* host_services.h */

RC_PLUGIN_EXPORT const struct rc_plugin redis_creds_plugin = {
    RC_PLUGIN_HEADER,
    .name = "file",
    .services = &rc_svc,
    .types = file_types,
    .n_types = sizeof file_types / sizeof file_types[0],
};
