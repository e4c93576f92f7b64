/* systemd-credentials: an example source plugin, built out of tree against the installed
 * redis-creds plugin SDK (pkg-config redis-creds-plugin; see docs/plugins.md).
 *
 * Type "systemd-credentials", served by systemd.so (the first word of the type). Each
 * credential names a credential that systemd handed the agent's service with
 * LoadCredential= (or SetCredential=, LoadCredentialEncrypted=); the plugin reads
 * $CREDENTIALS_DIRECTORY/<credential>. Only the directory's path comes from the
 * environment: the secret is always read from the file. The file holds the bare password
 * (one trailing newline is dropped); `username` in the config names the Redis user.
 * The version is the host's keyed hash of username + password, so an unchanged file is
 * no change. systemd credentials are fixed for the service's life, so fetch() just reads
 * again at every poll_interval.
 *
 * It links nothing but libc: every secret it hands over and every config value it reads
 * goes through the host's struct rc_services, so plugin.h is its whole interface.
 */
#define _GNU_SOURCE   /* secure_getenv */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <plugin.h>

#define CREDENTIAL_MAX 4096   /* bytes; a Redis password is far shorter */

static const struct rc_services *svc;   /* set by the host when it loads us */

static const struct rc_config_key sd_source_keys[] = {
    { .name = NULL },
};

static const struct rc_config_key sd_credential_keys[] = {
    { .name = "credential", .type = RC_CONF_T_STRING, .required = true },
    { .name = "username", .type = RC_CONF_T_STRING },
    { .name = NULL },
};

struct sd_cred {
    char *name;         /* the agent's credential name */
    char *file;         /* the systemd credential's name */
    char *username;     /* NULL: the default user */
};

struct sd_source {
    const struct rc_host *host;
    char *directory;
    struct sd_cred *creds;
    size_t n_creds;
};

static void sd_close(void *state) {
    struct sd_source *s = state;
    if (!s)
        return;
    for (size_t i = 0; i < s->n_creds; i++) {
        free(s->creds[i].name);
        free(s->creds[i].file);
        free(s->creds[i].username);
    }
    free(s->creds);
    free(s->directory);
    free(s);
}

/* A credential name is one path component: systemd allows no more. */
static int name_ok(const char *n) {
    return n && n[0] && !strchr(n, '/') && strcmp(n, ".") != 0 && strcmp(n, "..") != 0 &&
           strlen(n) < NAME_MAX;
}

static int sd_open_cred(struct sd_cred *c, const struct rc_credential *rc, struct rc_error *err) {
    const char *file = svc->conf_string(rc->node, "credential");
    const char *user = svc->conf_string(rc->node, "username");
    if (!name_ok(file))
        return rc_error_set(err, RC_ERR_FATAL, "credential %s: credential \"%s\" is not a systemd "
                            "credential name (one path component)", rc->name, file ? file : "");
    c->name = strdup(rc->name);
    c->file = strdup(file);
    c->username = user ? strdup(user) : NULL;
    if (!c->name || !c->file || (user && !c->username))
        return rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
    return 0;
}

static int sd_open(const struct rc_host *host, const struct rc_config_node *source,
                   const struct rc_credential *credentials, size_t n_credentials,
                   void **ret_state, struct rc_error *err) {
    (void)source;
    if (!svc)
        return rc_error_set(err, RC_ERR_FATAL, "the host did not provide its services");
    const char *dir = secure_getenv("CREDENTIALS_DIRECTORY");
    if (!dir || dir[0] != '/')
        return rc_error_set(err, RC_ERR_FATAL, "CREDENTIALS_DIRECTORY is not set to an absolute path: "
                            "start the agent from a unit with LoadCredential= (systemd.exec(5))");
    struct sd_source *s = calloc(1, sizeof *s);
    if (!s || !(s->directory = strdup(dir)) ||
        !(s->creds = calloc(n_credentials ? n_credentials : 1, sizeof *s->creds))) {
        sd_close(s);
        return rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
    }
    s->host = host;
    for (size_t i = 0; i < n_credentials; i++, s->n_creds++)
        if (sd_open_cred(&s->creds[i], &credentials[i], err) < 0) {
            s->n_creds++;
            sd_close(s);
            return -1;
        }
    *ret_state = s;
    return 0;
}

/* Reads the file into buf[CREDENTIAL_MAX + 1]: its length, or -1 with err. */
static ssize_t read_credential(const char *dir, const char *file, char *buf, struct rc_error *err) {
    char path[PATH_MAX];
    struct stat st;
    int n = snprintf(path, sizeof path, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= sizeof path)
        return rc_error_set(err, RC_ERR_FATAL, "%s/%s: path too long", dir, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0)
        return rc_error_set(err, errno == ENOENT ? RC_ERR_NOT_FOUND : errno == ELOOP ? RC_ERR_INVALID
                            : RC_ERR_TRANSIENT, "%s: %s", path, errno == ELOOP ? "a symlink (refused)"
                            : strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return rc_error_set(err, RC_ERR_INVALID, "%s: not a regular file", path);
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, CREDENTIAL_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return rc_error_set(err, RC_ERR_TRANSIENT, "%s: %s", path, strerror(e));
        }
        len += (size_t)r;
        if (r == 0 || len > CREDENTIAL_MAX)
            break;
    }
    close(fd);
    if (len > CREDENTIAL_MAX)
        return rc_error_set(err, RC_ERR_INVALID, "%s: longer than %d bytes", path, CREDENTIAL_MAX);
    return (ssize_t)len;
}

/* The bare password in buf[0, len): drop one trailing newline, refuse control bytes. */
static ssize_t password_of(const char *file, char *buf, size_t len, struct rc_error *err) {
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if (len == 0)
        return rc_error_set(err, RC_ERR_INVALID, "%s: empty password", file);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)   /* never quote the byte itself */
            return rc_error_set(err, RC_ERR_INVALID, "%s: the password has a control character at "
                                "byte %zu", file, i);
    return (ssize_t)len;
}

static int sd_fill(const struct sd_source *s, const struct sd_cred *c, const char *pw, size_t len,
                   struct rc_candidate *ret, struct rc_error *err) {
    int r = rc_credential_version(s->host, c->username, pw, len, ret->version);
    if (r < 0)
        return rc_error_set(err, RC_ERR_TRANSIENT, "cannot compute the version: %s", strerror(-r));
    ret->password = svc->secret_new(pw, len);
    ret->username = c->username ? strdup(c->username) : NULL;
    if (!ret->password || (c->username && !ret->username)) {
        ret->password = svc->secret_free(ret->password);
        free(ret->username);
        ret->username = NULL;
        return rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
    }
    ret->role = RC_CAND_CURRENT;
    return 1;
}

static int sd_fetch(void *state, const struct rc_credential *cred,
                    struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err) {
    struct sd_source *s = state;
    const struct sd_cred *c = NULL;
    for (size_t i = 0; i < s->n_creds && !c; i++)
        if (strcmp(s->creds[i].name, cred->name) == 0)
            c = &s->creds[i];
    if (!c)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s is not known to this source", cred->name);
    char *buf = malloc(CREDENTIAL_MAX + 1);
    if (!buf)
        return rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
    ssize_t len = read_credential(s->directory, c->file, buf, err);
    if (len >= 0)
        len = password_of(c->file, buf, (size_t)len, err);
    int r = len < 0 ? -1 : sd_fill(s, c, buf, (size_t)len, &ret[0], err);
    svc->wipe_free(buf, CREDENTIAL_MAX + 1);
    return r;
}

static const struct rc_source_type sd_types[] = {
    {
        .type = "systemd-credentials",
        .source_keys = sd_source_keys,
        .credential_keys = sd_credential_keys,
        .open = sd_open,
        .fetch = sd_fetch,
        .close = sd_close,
    },
};

RC_PLUGIN_EXPORT const struct rc_plugin redis_creds_plugin = {
    RC_PLUGIN_HEADER,
    .name = "systemd",
    .types = sd_types,
    .n_types = sizeof sd_types / sizeof sd_types[0],
    .services = &svc,
};
