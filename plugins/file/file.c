/* The `file` source: credentials in a local directory (docs/design.md §4.4, docs/sources.md).
 *
 * Each credential's `path` names a file in `directory` holding JSON {"username",
 * "password"} or a bare password (one trailing newline is dropped). The directory is
 * watched with inotify (IN_CLOSE_WRITE, IN_MOVED_TO), so a write is picked up at once;
 * poll_interval stays as the fallback. The version is the host's keyed hash of the
 * username and password, never a plain hash of the secret.
 *
 * rotate_write() (agent-driven rotation, docs/design.md §9) writes the next version into the file with
 * a check-and-set under an flock in the directory, so the directory must be writable by
 * the agent for credentials with `rotation`.
 *
 * State: the directory path and the inotify fd are set in open() and only read after;
 * watch_event() (loop thread) touches nothing fetch() (worker) uses but the immutable
 * list of credential paths.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "credfile.h"
#include "jsonload.h"
#include "plugin.h"
#include "secret.h"
#include "host_services.h"

#define FILE_MAX_SIZE (64 * 1024)

struct file_cred {
    char *name;   /* credential name */
    char *path;   /* file name inside the directory */
    bool said_readable;   /* warned once that others can read the file */
};

struct file_source {
    const struct rc_host *host;
    char *directory;
    int inotify_fd;
    bool watch_lost;
    struct file_cred *creds;
    size_t n_creds;
};

static const struct config_key file_source_keys[] = {
    { .name = "directory", .type = CONFIG_T_STRING, .required = true,
      .checks = CONFIG_CHECK_ABSOLUTE | CONFIG_CHECK_DIR },
    { .name = NULL },
};

static const struct config_key file_credential_keys[] = {
    { .name = "path", .type = CONFIG_T_STRING, .required = true,
      .checks = CONFIG_CHECK_FILE_NAME },
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

static int file_open(const struct rc_host *host, const struct config_node *source,
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
        return rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
    s->host = host;
    s->inotify_fd = -1;
    s->directory = strdup(dir);
    s->creds = calloc(n_credentials ? n_credentials : 1, sizeof *s->creds);
    if (!s->directory || !s->creds)
        goto oom;
    for (size_t i = 0; i < n_credentials; i++) {
        const char *p = conf_string(&credentials[i].node, "path");
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
    return rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
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
        return rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
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
        return rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
    *ret_mode = st.st_mode & 07777;
    return 0;
}

/* JSON {"username": string|null (optional), "password": string}. */
static int file_parse_json(const char *full, const struct secret *content, struct rc_candidate *c,
                           struct rc_error *err) {
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
            rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
        } else
            r = 0;
    }
    json_decref(root);   /* jansson's free wipes (secret_init) */
    return r;
}

/* Reads and parses fc's file into *ret (username, password, version) and, when ret_mode
 * is not NULL, its permission bits into *ret_mode. 0 or -1 + err. */
static int file_load(const struct file_source *s, const struct file_cred *fc,
                     struct rc_candidate *ret, mode_t *ret_mode, struct rc_error *err) {
    _cleanup_secret_ struct secret *content = NULL;
    struct rc_candidate c = { .expires_at = INT64_MIN };
    mode_t mode;

    if (file_read(s->directory, fc->path, &content, &mode, err) < 0)
        return -1;

    const char *d = secret_data(content);
    size_t len = secret_len(content), i = 0;
    while (i < len && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r'))
        i++;
    if (i < len && d[i] == '{') {
        if (file_parse_json(fc->path, content, &c, err) < 0)
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
            return rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
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
    if (ret_mode)
        *ret_mode = mode;
    return 0;
}

static int file_fetch(void *state, const struct rc_credential *cred,
                      struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err) {
    struct file_source *s = state;
    const struct file_cred *fc = file_find(s, cred->name);

    if (!fc)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s is not known to this source", cred->name);
    mode_t mode;
    if (file_load(s, fc, &ret[0], &mode, err) < 0)
        return -1;
    /* A secret others can read is worth a word, once (fetches of a source never overlap). */
    bool *said = &s->creds[fc - s->creds].said_readable;
    if ((mode & S_IROTH) && !*said) {
        *said = true;
        s->host->log(s->host->h, LOG_WARNING, cred->name, "%s/%s is readable by others (mode %04o): "
                     "anyone on this host can read this credential; chmod o-r it",
                     s->directory, fc->path, (unsigned)mode);
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

/* The JSON the file holds after a rotation, in a buffer the caller wipes and frees. */
static int file_format(const char *username, const struct secret *password, char **ret,
                       size_t *ret_len, size_t *ret_cap) {
    json_t *o = json_object();
    json_t *pw = json_stringn(secret_data(password), secret_len(password));
    int r = -EINVAL;
    if (o && pw && json_object_set_new(o, "username", username ? json_string(username) : json_null()) == 0 &&
        json_object_set(o, "password", pw) == 0) {
        size_t need = json_dumpb(o, NULL, 0, JSON_COMPACT);
        char *buf = need ? malloc(need + 1) : NULL;
        if (buf && json_dumpb(o, buf, need, JSON_COMPACT) == need) {
            buf[need] = '\n';
            *ret = buf;
            *ret_len = need + 1;
            *ret_cap = need + 1;
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

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static int file_rotate(void *state, const struct rc_credential *cred, const char *expected_version,
                       const char *username, const struct secret *password,
                       const struct rc_rotation_mark *mark, char *ret_version, struct rc_error *err) {
    struct file_source *s = state;
    (void)mark;   /* written from ABI 4 on: the next step */
    const struct file_cred *fc = file_find(s, cred->name);
    char target[PATH_MAX], tmp[PATH_MAX], version[RC_VERSION_MAX];
    struct rc_candidate cur = { .expires_at = INT64_MIN };
    char *content = NULL;
    size_t len = 0, cap = 0;
    int lock_fd = -1, fd = -1, r;
    mode_t mode;

    if (!fc)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s is not known to this source", cred->name);
    r = snprintf(target, sizeof target, "%s/%s", s->directory, fc->path);
    int r2 = snprintf(tmp, sizeof tmp, "%s/.%s.rotate-XXXXXX", s->directory, fc->path);
    if (r < 0 || (size_t)r >= sizeof target || r2 < 0 || (size_t)r2 >= sizeof tmp)
        return rc_error_set(err, RC_ERR_FATAL, "%s/%s: path too long", s->directory, fc->path);
    if (file_lock(s, target, &lock_fd, err) < 0)
        return -1;

    /* Under the lock: is the store still at the version the agent has? */
    if (file_load(s, fc, &cur, &mode, err) < 0)
        goto fail;
    free(cur.username);
    secret_free(cur.password);
    if (strcmp(cur.version, expected_version) != 0) {
        rc_error_set(err, RC_ERR_CONFLICT, "%s: holds version %s, not the expected %s (rotated by "
                     "someone else)", target, cur.version, expected_version);
        goto fail;
    }
    if ((r = rc_credential_version(s->host, username, secret_data(password),
                                       secret_len(password), version)) < 0) {
        rc_error_set(err, RC_ERR_TRANSIENT, "cannot compute version: %s", strerror(-r));
        goto fail;
    }
    if ((r = file_format(username, password, &content, &len, &cap)) < 0) {
        rc_error_set(err, r == -ENOMEM ? RC_ERR_TRANSIENT : RC_ERR_INVALID,
                     "%s: cannot encode the new credential as JSON", target);
        goto fail;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        rc_error_set(err, e == EACCES || e == EPERM || e == EROFS ? RC_ERR_FATAL : RC_ERR_TRANSIENT,
                     "cannot rotate %s: cannot create a temporary file in %s (the directory must be "
                     "writable by the agent): %s", target, s->directory, strerror(e));
        goto fail;
    }
    if ((r = fchmod(fd, mode) < 0 ? -errno : 0) < 0 || (r = write_all(fd, content, len)) < 0 ||
        (r = fsync(fd) < 0 ? -errno : 0) < 0) {
        rc_error_set(err, RC_ERR_TRANSIENT, "cannot rotate %s: writing %s: %s", target, tmp, strerror(-r));
        goto fail_unlink;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, target) < 0) {
        int e = errno;
        rc_error_set(err, RC_ERR_TRANSIENT, "cannot rotate %s: rename: %s", target, strerror(e));
        goto fail_unlink;
    }
    int dfd = open(s->directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);   /* the rename is done; a failed fsync only weakens durability */
        close(dfd);
    }
    secret_wipe_free(content, cap);
    close(lock_fd);   /* releases the flock */
    memcpy(ret_version, version, RC_VERSION_MAX);
    return 0;

fail_unlink:
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlink(tmp);
fail:
    if (content)
        secret_wipe_free(content, cap);
    close(lock_fd);
    return -1;
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
        .caps = RC_CAP_ROTATE_WRITE,
        .rotate_write = file_rotate,
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
