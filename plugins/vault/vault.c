/* The `vault` source: HashiCorp Vault KV v2, KV v1 and database static roles
 * (docs/design.md §4.4, docs/vault.md). The parsing half is vault_parse.c; this file does the
 * requests, the token's life and the scheduling.
 *
 * Requests: one http_client per source (one curl handle, so a steady poll reuses one
 * keep-alive connection and no TLS handshake), X-Vault-Token as a secret header,
 * X-Vault-Namespace when configured, no automatic redirects: a 307 from a standby is
 * followed by hand at most 3 times, only to https on the configured host.
 *
 * Tokens: logged in (or read from token_file) lazily at the start of a fetch, looked up,
 * renewed at about 2/3 of the TTL with jitter; logged in again when the token is not
 * renewable, when renewal stops extending it (max TTL), and on a 403 that says the token
 * is invalid (or a 403 after which lookup-self fails too), once per fetch, then AUTH.
 * next_check() wakes the credential before the renewal point.
 *
 * KV v2: metadata/ is the cheap check (one request per look when nothing changed);
 * data/ is read only when current_version moved. A 403 on metadata/ with a token that
 * lookup-self accepts means the policy grants only data/: that credential then reads
 * data/ at every look (logged once). The first read after open also fetches the prior
 * readable version as a start-up HINT (docs/design.md §8.3).
 *
 * Agent-driven rotation (KV v2): rotate_write() is a check-and-set write (options.cas) of
 * the credential's fields plus, with a mark, redis_creds_rotated_at/_by; fetch() then
 * dates a version carrying that key by its created_time. The rotation record is the
 * secret `<path>.rotation` in the same mount, written with options.cas = its version
 * (0: must not exist); removing it writes {} (docs/operations.md).
 *
 * Static roles: see vault_rot_update() in vault_parse.h; a version's rotated_at is its
 * last_vault_rotation.
 *
 * Threads: open() and close() on the loop; fetch() and next_check() on a
 * worker, never concurrently for one instance (so the token and per-credential state
 * need no lock). The next look each credential wants (a static role's TTL, the token's
 * renewal point) goes to the host through next_check().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "backoff.h"
#include "http.h"
#include "plugin.h"
#include "rctime.h"
#include "secret.h"
#include "host_services.h"
#include "jsonload.h"
#include "secretfile.h"
#include "vault_parse.h"

#define VAULT_MAX_REDIRECTS 3
#define VAULT_TOKEN_RETRY_USEC (30 * VAULT_USEC_PER_SEC)
#define VAULT_HINT_PROBES 3
#define VAULT_DEFAULT_JWT_FILE "/var/run/secrets/kubernetes.io/serviceaccount/token"
/* The rotation record of a KV v2 secret `<path>` is the secret `<path>.rotation`. */
#define VAULT_RECORD_SUFFIX ".rotation"
#define VAULT_SENT_MAX 4

enum vault_engine { ENGINE_KV2, ENGINE_KV1, ENGINE_DATABASE };
enum vault_method { METHOD_TOKEN, METHOD_APPROLE, METHOD_KUBERNETES };

struct vault_cred_rt {
    char *name;
    enum vault_engine engine;
    char *path;                  /* as configured, for messages */
    char *api_data;              /* encoded API path (after /v1/): data, KV v1 or static-creds */
    char *api_meta;              /* KV v2 metadata */
    char *api_rotate;            /* database: rotate-role/ROLE (strategy vault-database) */
    char *api_record;            /* KV v2: the rotation record, data/<path>.rotation */
    char *ufield, *pfield;
    struct vault_fields fields;

    /* KV v2 */
    bool data_only;              /* metadata/ is denied: read data/ at every look */
    bool started;                /* a read succeeded since open: no more start-up hints */
    int64_t cached_version;
    struct vault_cred cached;
    struct vault_cred hint;
    char hint_version[RC_VERSION_MAX];
    int64_t hint_for;            /* the current version the hint belongs to */

    /* database static role */
    struct vault_rot rot;
    bool schedule_noted;

    uint64_t poll_usec;          /* the credential's poll_interval */
    uint64_t due;                /* monotonic usec of the look this credential wants; 0 none */
};

struct vault_source {
    const struct rc_host *host;
    char *base;                  /* address without trailing '/' */
    char *namespace;
    struct http_client *http;

    enum vault_method method;
    char *token_file, *role_id_file, *secret_id_file, *jwt_file, *role;
    char *login_path;            /* "auth/approle/login" */
    char cred_token[300], cred_role_id[300], cred_secret_id[300];   /* $CREDENTIALS_DIRECTORY names */
    bool remove_secret_id;
    struct secret *cached_role_id, *cached_secret_id;
    struct secret *last_jwt;     /* only to scrub messages */
    /* The passwords a write under way sends (the entry's, the rotation record's): only to
     * scrub its error messages. */
    struct secret *sent[VAULT_SENT_MAX];
    size_t n_sent;

    struct secret *token;
    bool token_renewable;
    bool relogin_at_due;         /* renewal no longer extends the token: log in again */
    bool need_lookup;
    int64_t token_increment;     /* seconds asked for at renew-self */
    uint64_t token_due;          /* monotonic usec: renew / log in again; 0 never */
    uint64_t token_expires;      /* monotonic usec; 0 never or unknown */
    bool relogged;               /* logged in during this fetch */
    bool lookup_denied_noted;

    struct vault_cred_rt *creds;
    size_t n_creds;
    uint64_t timeout_usec;       /* per request; also bounds waiting for a rotate-role */

};

/* ---- config schema ---------------------------------------------------------------------- */

static const struct rc_config_key vault_auth_keys[] = {
    { .name = "method", .type = RC_CONF_T_STRING, .required = true },
    { .name = "token_file", .type = RC_CONF_T_STRING },
    { .name = "role_id_file", .type = RC_CONF_T_STRING },
    { .name = "secret_id_file", .type = RC_CONF_T_STRING },
    { .name = "remove_secret_id_file_after_reading", .type = RC_CONF_T_BOOL, .default_value = "false" },
    { .name = "role", .type = RC_CONF_T_STRING },
    { .name = "jwt_file", .type = RC_CONF_T_STRING, .default_value = VAULT_DEFAULT_JWT_FILE },
    { .name = "mount", .type = RC_CONF_T_STRING },
    { .name = NULL },
};

static const struct rc_config_key vault_source_keys[] = {
    { .name = "address", .type = RC_CONF_T_STRING, .required = true },
    { .name = "namespace", .type = RC_CONF_T_STRING, .default_value = "" },
    { .name = "ca_file", .type = RC_CONF_T_STRING },
    { .name = "ca_path", .type = RC_CONF_T_STRING },
    { .name = "cert_file", .type = RC_CONF_T_STRING },
    { .name = "key_file", .type = RC_CONF_T_STRING },
    { .name = "server_name", .type = RC_CONF_T_STRING },
    { .name = "tls_insecure_skip_verify", .type = RC_CONF_T_BOOL, .default_value = "false" },
    { .name = "timeout", .type = RC_CONF_T_DURATION, .default_value = "10s" },
    { .name = "auth", .type = RC_CONF_T_GROUP, .required = true, .group_keys = vault_auth_keys },
    { .name = NULL },
};

static const struct rc_config_key vault_credential_keys[] = {
    { .name = "path", .type = RC_CONF_T_STRING, .required = true },
    { .name = "engine", .type = RC_CONF_T_STRING, .default_value = "kv2" },
    { .name = "mount", .type = RC_CONF_T_STRING },
    { .name = "username_field", .type = RC_CONF_T_STRING, .default_value = "username" },
    { .name = "password_field", .type = RC_CONF_T_STRING, .default_value = "password" },
    { .name = NULL },
};

/* ---- small helpers ------------------------------------------------------------------------ */

static char *xstrdup_or_null(const char *s) {
    return s && s[0] ? strdup(s) : NULL;
}

/* The first bytes of needle (6 or more) ending at msg + end: replaced with "***".
 * Returns where msg + end is now. */
static size_t scrub_cut_at(char *msg, size_t end, const char *needle, size_t n) {
    for (size_t k = n - 1 < end ? n - 1 : end; k >= 6; k--)
        if (memcmp(msg + end - k, needle, k) == 0) {
            memcpy(msg + end - k, "***", 3);
            memmove(msg + end - k + 3, msg + end, strlen(msg + end) + 1);
            return end - k + 3;
        }
    return end;
}

/* Replaces every occurrence of needle in msg (a server may echo what we sent), and its
 * first bytes where a text was cut short: before "..." or at the end of msg. */
static void scrub_bytes(char *msg, const char *needle, size_t n) {
    char *p;
    if (!needle || n < 4)
        return;
    while ((p = memmem(msg, strlen(msg), needle, n))) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + n, strlen(p + n) + 1);
    }
    for (p = msg; (p = strstr(p, "...")); p += 3)
        p = msg + scrub_cut_at(msg, (size_t)(p - msg), needle, n);
    (void)scrub_cut_at(msg, strlen(msg), needle, n);
}

static void scrub(char *msg, const struct secret *s) {
    if (s)
        scrub_bytes(msg, secret_data(s), secret_len(s));
}

/* Our bootstrap secrets, the passwords we handed out last and those a write under way
 * sends (a server, or anything on the way to it, could echo them into an error text).
 * Every text that may quote a server goes through here before it is logged or returned. */
static void scrub_text(struct vault_source *s, char *msg) {
    scrub(msg, s->token);
    scrub(msg, s->cached_role_id);
    scrub(msg, s->cached_secret_id);
    scrub(msg, s->last_jwt);
    for (size_t i = 0; i < s->n_creds; i++) {
        scrub(msg, s->creds[i].cached.password);
        scrub(msg, s->creds[i].hint.password);
    }
    for (size_t i = 0; i < s->n_sent; i++)
        scrub(msg, s->sent[i]);
}

static void scrub_all(struct vault_source *s, struct rc_error *err) {
    scrub_text(s, err->message);
}

/* Vault's error list of a response as one line, scrubbed while it is whole, then cut
 * to VAULT_ERRTEXT_MAX (a cut first could split an echoed secret past recognition). */
static void errors_text(struct vault_source *s, const struct http_response *resp, char *out,
                        size_t outlen) {
    char whole[VAULT_ERRTEXT_WHOLE_MAX];
    vault_errors_text_whole(resp->body, resp->body_len, whole, sizeof whole);
    scrub_text(s, whole);
    vault_errors_cut(whole);
    snprintf(out, outlen, "%s", whole);
    explicit_bzero(whole, sizeof whole);
}


/* ---- HTTP ------------------------------------------------------------------------------------ */

/* One request to /v1/<api_path>, following a standby's 307 by hand. Returns 0 with
 * *resp for any final HTTP status, or -1 with err for a transport failure. */
static int vault_http(struct vault_source *s, const char *method, const char *api_path,
                      const void *body, size_t body_len, bool with_token,
                      struct http_response *resp, struct rc_error *err) {
    struct http_header hdrs[4];
    size_t nh = 0;
    char url[VAULT_PATH_MAX + 1024], e[512];
    hdrs[nh++] = (struct http_header){ .name = "X-Vault-Request", .value = "true" };
    if (s->namespace)
        hdrs[nh++] = (struct http_header){ .name = "X-Vault-Namespace", .value = s->namespace };
    if (with_token && s->token)
        hdrs[nh++] = (struct http_header){ .name = "X-Vault-Token", .value = secret_data(s->token),
                                           .secret = true };
    if (body)
        hdrs[nh++] = (struct http_header){ .name = "Content-Type", .value = "application/json" };
    snprintf(url, sizeof url, "v1/%s", api_path);

    for (int hops = 0;; hops++) {
        struct http_request req = { .method = method, .url = url, .headers = hdrs, .n_headers = nh,
                                    .body = body, .body_len = body_len };
        memset(resp, 0, sizeof *resp);
        int r = http_request(s->http, &req, resp, e, sizeof e);
        if (r < 0)
            return rc_error_set(err, rc_transport_class(r), "%s", e);
        if (resp->status != 307 && resp->status != 308)
            return 0;
        char target[sizeof url], why[256];
        const char *loc = http_response_header(resp, "location");
        if (hops >= VAULT_MAX_REDIRECTS) {
            http_response_clear(resp);
            return rc_error_set(err, RC_ERR_TRANSIENT, "%s %s: more than %d redirects (a standby "
                                "without a reachable active node?)", method, api_path, VAULT_MAX_REDIRECTS);
        }
        if (vault_redirect_target(s->base, loc, target, sizeof target, why, sizeof why) < 0) {
            long status = resp->status;
            http_response_clear(resp);
            return rc_error_set(err, RC_ERR_TRANSIENT, "%s %s: %ld from a standby: not following %s",
                                method, api_path, status, why);
        }
        http_response_clear(resp);
        snprintf(url, sizeof url, "%s", target);
    }
}

/* "METHOD path: 503 Vault is sealed" with the class of the status and Retry-After. */
static int status_error(struct vault_source *s, const struct http_response *resp, const char *what,
                        const char *extra, struct rc_error *err) {
    char text[VAULT_ERRTEXT_MAX + 8];
    errors_text(s, resp, text, sizeof text);
    enum rc_err_class cls = vault_status_class(resp->status);
    rc_error_set(err, cls, "%s: %ld %s%s", what, resp->status,
                 text[0] ? text : resp->status == 404 ? "not found" : "(no error text)", extra ? extra : "");
    if (cls == RC_ERR_TRANSIENT) {
        uint64_t ra;
        if (http_retry_after_parse(http_response_header(resp, "retry-after"), &ra) == 0)
            err->retry_after_usec = ra;
    }
    return -1;
}

/* ---- tokens ---------------------------------------------------------------------------------- */

/* Plans the token's next renewal (or re-login) from its TTL in seconds. */
static void token_plan(struct vault_source *s, int64_t ttl, bool renewable) {
    uint64_t now = rctime_mono_usec();
    s->token_renewable = renewable;
    s->token_expires = ttl > 0 ? now + (uint64_t)ttl * VAULT_USEC_PER_SEC : 0;
    s->token_due = vault_token_due(now, ttl, backoff_random());
}

/* GET auth/token/lookup-self: 1 the token is good (and its TTL is noted), 0 Vault says
 * it is not (403), -1 cannot tell (transient, or an answer we cannot read). */
static int token_lookup(struct vault_source *s, bool plan) {
    struct http_response resp;
    struct rc_error e = { 0 };
    if (vault_http(s, "GET", "auth/token/lookup-self", NULL, 0, true, &resp, &e) < 0) {
        scrub_all(s, &e);
        s->host->log(s->host->h, LOG_DEBUG, NULL, "token lookup: %s", e.message);
        return -1;
    }
    int r = -1;
    struct vault_lookup l;
    if (resp.status == 200 && vault_parse_lookup(resp.body, resp.body_len, &l, "GET auth/token/lookup-self", &e) == 0) {
        r = 1;
        if (plan) {
            token_plan(s, l.ttl, l.renewable);
            if (l.creation_ttl > 0)
                s->token_increment = l.creation_ttl;
            else if (!s->token_increment)
                s->token_increment = l.ttl;
            s->host->log(s->host->h, LOG_DEBUG, NULL, "token: %s, ttl %llds, %srenewable",
                         l.type[0] ? l.type : "type unknown", (long long)l.ttl, l.renewable ? "" : "not ");
        }
    } else if (resp.status == 403)
        r = 0;
    else if (resp.status == 200) {
        scrub_all(s, &e);
        s->host->log(s->host->h, LOG_DEBUG, NULL, "token lookup: %s", e.message);
    }
    http_response_clear(&resp);
    return r;
}

/* Reads a file that must not be readable by others (token, role id, secret id). */
static int read_bootstrap(const char *path, const char *cred_name, struct secret **ret,
                          const char *what, struct rc_error *err) {
    char e[512];
    int r = secretfile_read(path, cred_name, ret, e, sizeof e);
    if (r < 0)
        return rc_error_set(err, RC_ERR_AUTH, "%s: %s", what, e);
    return 0;
}

/* The service-account JWT: kubelet writes it through a symlink swap and mode 0644, so
 * the file is followed and may be world-readable; it is still bounded and a regular file. */
static int read_jwt(const char *path, struct secret **ret, struct rc_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return rc_error_set(err, RC_ERR_AUTH, "jwt_file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > SECRETFILE_MAX) {
        close(fd);
        return rc_error_set(err, RC_ERR_AUTH, "jwt_file %s: not a regular file of at most %d bytes",
                            path, SECRETFILE_MAX);
    }
    char *buf = malloc(SECRETFILE_MAX + 1);
    size_t len = 0;
    if (!buf) {
        close(fd);
        return rc_error_oom(err);
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, SECRETFILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len > SECRETFILE_MAX)
            break;
    }
    close(fd);
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    int r = 0;
    if (len == 0 || len > SECRETFILE_MAX)
        r = rc_error_set(err, RC_ERR_AUTH, "jwt_file %s: %s", path, len ? "too large" : "empty");
    else if (!(*ret = secret_new(buf, len)))
        r = rc_error_oom(err);
    secret_wipe_free(buf, SECRETFILE_MAX + 1);
    return r;
}

/* The login request's JSON body, in a buffer that is wiped when freed. */
static struct secret *login_body(struct vault_source *s, struct rc_error *err) {
    json_t *o = json_object();
    struct secret *jwt = NULL, *role_id = NULL, *secret_id = NULL, *out = NULL;
    int r = 0;
    if (!o)
        goto nomem;
    if (s->method == METHOD_KUBERNETES) {
        if ((r = read_jwt(s->jwt_file, &jwt, err)) < 0)
            goto out;
        secret_free(s->last_jwt);
        s->last_jwt = secret_dup(jwt);
        if (json_object_set_new(o, "role", json_string(s->role)) < 0 ||
            json_object_set_new(o, "jwt", json_stringn(secret_data(jwt), secret_len(jwt))) < 0)
            goto nomem;
    } else {
        /* AppRole: the files win; a value read before is used when a file is gone
         * (remove_secret_id_file_after_reading), as Vault Agent does. */
        struct rc_error e = { 0 };
        if (read_bootstrap(s->role_id_file, s->cred_role_id, &role_id, "role_id_file", &e) == 0) {
            secret_free(s->cached_role_id);
            s->cached_role_id = secret_dup(role_id);
        } else if (!s->cached_role_id) {
            *err = e;
            r = -1;
            goto out;
        }
        bool want_secret_id = s->secret_id_file || secure_getenv("CREDENTIALS_DIRECTORY");
        if (want_secret_id) {
            e = (struct rc_error){ 0 };
            if (read_bootstrap(s->secret_id_file, s->cred_secret_id, &secret_id, "secret_id_file", &e) == 0) {
                secret_free(s->cached_secret_id);
                s->cached_secret_id = secret_dup(secret_id);
                if (s->remove_secret_id && s->secret_id_file && unlink(s->secret_id_file) < 0)
                    s->host->log(s->host->h, LOG_WARNING, NULL, "cannot remove secret_id_file %s: %s",
                                 s->secret_id_file, strerror(errno));
            } else if (!s->cached_secret_id && s->secret_id_file) {
                *err = e;
                r = -1;
                goto out;
            }
        }
        const struct secret *rid = role_id ? role_id : s->cached_role_id;
        const struct secret *sid = secret_id ? secret_id : s->cached_secret_id;
        if (json_object_set_new(o, "role_id", json_stringn(secret_data(rid), secret_len(rid))) < 0 ||
            (sid && json_object_set_new(o, "secret_id", json_stringn(secret_data(sid), secret_len(sid))) < 0))
            goto nomem;
    }
    size_t n = json_dumpb(o, NULL, 0, JSON_COMPACT);
    char *buf = n ? malloc(n) : NULL;
    if (!buf || json_dumpb(o, buf, n, JSON_COMPACT) != n) {
        free(buf);
        goto nomem;
    }
    out = secret_new(buf, n);
    secret_wipe_free(buf, n);
    if (!out)
        goto nomem;
    goto out;
nomem:
    r = rc_error_oom(err);
out:
    json_decref(o);
    secret_free(jwt);
    secret_free(role_id);
    secret_free(secret_id);
    if (r < 0)
        out = secret_free(out);
    return out;
}

/* method token: the token is token_file's content, looked up to learn its TTL (and that
 * Vault still takes it). 0, or -1 with err. */
static int token_from_file(struct vault_source *s, struct rc_error *err) {
    struct secret *t = NULL;
    if (read_bootstrap(s->token_file, s->cred_token, &t, "token_file", err) < 0)
        return -1;
    const char *d = secret_data(t);
    for (size_t i = 0; i < secret_len(t); i++)
        if ((unsigned char)d[i] <= 0x20 || d[i] == 0x7f) {
            secret_free(t);
            return rc_error_set(err, RC_ERR_AUTH, "token_file: the token contains blanks or "
                                "control characters");
        }
    secret_free(s->token);
    s->token = t;
    s->token_increment = 0;
    s->need_lookup = false;
    s->relogin_at_due = false;
    int ok = token_lookup(s, true);
    if (ok == 0) {
        s->token = secret_free(s->token);
        return rc_error_set(err, RC_ERR_AUTH, "GET auth/token/lookup-self: 403 Vault refuses the "
                            "token from token_file (expired or revoked?)");
    }
    if (ok < 0) {
        /* Cannot tell now; the read will say. Look it up at the next fetch. */
        s->need_lookup = true;
        s->token_due = 0;
        s->token_expires = 0;
    }
    return 0;
}

/* POST to the login path (approle, kubernetes): 0 with the auth block in *a, or -1. */
static int login_post(struct vault_source *s, struct vault_auth *a, struct rc_error *err) {
    char what[VAULT_PATH_MAX + 16];
    snprintf(what, sizeof what, "POST %s", s->login_path);
    struct secret *body = login_body(s, err);
    if (!body)
        return -1;
    struct http_response resp;
    int r = vault_http(s, "POST", s->login_path, secret_data(body), secret_len(body), false, &resp, err);
    secret_free(body);
    if (r < 0)
        return -1;
    if (resp.status != 200) {
        /* The store refused our identity (400 invalid role or secret ID, 403 for a JWT it
         * does not accept): AUTH. 404: the auth method is not mounted there. */
        if (resp.status == 400 || resp.status == 401 || resp.status == 403) {
            char text[VAULT_ERRTEXT_MAX + 8];
            errors_text(s, &resp, text, sizeof text);
            rc_error_set(err, RC_ERR_AUTH, "%s: %ld %s", what, resp.status, text[0] ? text : "login refused");
        } else
            status_error(s, &resp, what, resp.status == 404 ? " (is the auth method mounted there? see auth.mount)" : NULL, err);
        http_response_clear(&resp);
        return -1;
    }
    r = vault_parse_auth(resp.body, resp.body_len, a, what, err);
    http_response_clear(&resp);
    return r < 0 ? -1 : 0;
}

/* Logs in (approle, kubernetes) or reads token_file (token). Replaces the token. */
static int token_login(struct vault_source *s, struct rc_error *err) {
    struct vault_auth a;

    s->relogged = true;
    if (s->method == METHOD_TOKEN)
        return token_from_file(s, err);
    if (login_post(s, &a, err) < 0)
        return -1;
    secret_free(s->token);
    s->token = a.client_token;
    s->token_increment = a.lease_duration;
    s->need_lookup = false;
    s->relogin_at_due = false;
    token_plan(s, a.lease_duration, a.renewable);
    s->host->log(s->host->h, LOG_INFO, NULL, "logged in to Vault (%s), token ttl %llds%s",
                 s->method == METHOD_APPROLE ? "approle" : "kubernetes", (long long)a.lease_duration,
                 a.renewable ? "" : ", not renewable");
    /* Look the new token up: its real TTL (a period, a max TTL) and a check that it works
     * in this namespace. A policy without lookup-self is no reason to fail. */
    int ok = token_lookup(s, true);
    if (ok == 0 && !s->lookup_denied_noted) {
        s->lookup_denied_noted = true;
        s->host->log(s->host->h, LOG_NOTICE, NULL, "auth/token/lookup-self is denied for the new "
                     "token; using the TTL from the login answer");
    }
    if (ok <= 0)
        token_plan(s, a.lease_duration, a.renewable);
    return 0;
}

/* POST auth/token/renew-self. 0 renewed (or cannot now: try later), 1 log in again. */
static int token_renew(struct vault_source *s) {
    char body[64];
    int n = snprintf(body, sizeof body, "{\"increment\":%lld}", (long long)(s->token_increment > 0 ? s->token_increment : 3600));
    struct http_response resp;
    struct rc_error e = { 0 };
    uint64_t now = rctime_mono_usec();
    if (vault_http(s, "POST", "auth/token/renew-self", body, (size_t)n, true, &resp, &e) < 0) {
        /* Vault unreachable: keep the token while it lasts; try again soon. */
        scrub_all(s, &e);
        s->host->log(s->host->h, LOG_DEBUG, NULL, "token renewal failed: %s", e.message);
        uint64_t left = s->token_expires > now ? s->token_expires - now : 0;
        s->token_due = now + (left / 4 < VAULT_TOKEN_RETRY_USEC ? left / 4 + VAULT_USEC_PER_SEC : VAULT_TOKEN_RETRY_USEC);
        return 0;
    }
    int r = 1;
    if (resp.status == 200) {
        struct vault_auth a;
        if (vault_parse_auth(resp.body, resp.body_len, &a, "POST auth/token/renew-self", &e) == 0) {
            uint64_t old_expires = s->token_expires;
            /* A renewed token keeps its value; take the new one if Vault says otherwise. */
            secret_free(s->token);
            s->token = a.client_token;
            token_plan(s, a.lease_duration, a.renewable);
            bool extended = !old_expires || s->token_expires > old_expires + VAULT_USEC_PER_SEC;
            if (a.ttl_capped_warning || !extended || (s->token_increment && a.lease_duration + 1 < s->token_increment)) {
                /* At the max TTL: renewal no longer extends it. */
                s->relogin_at_due = true;
                s->host->log(s->host->h, LOG_INFO, NULL, "token renewed to its max TTL (%llds left); "
                             "will log in again before it expires", (long long)a.lease_duration);
            } else
                s->host->log(s->host->h, LOG_DEBUG, NULL, "token renewed, ttl %llds", (long long)a.lease_duration);
            r = 0;
        } else {
            scrub_all(s, &e);
            s->host->log(s->host->h, LOG_DEBUG, NULL, "token renewal: %s", e.message);
        }
    } else if (vault_status_class(resp.status) == RC_ERR_TRANSIENT) {
        uint64_t left = s->token_expires > now ? s->token_expires - now : 0;
        s->token_due = now + (left / 4 < VAULT_TOKEN_RETRY_USEC ? left / 4 + VAULT_USEC_PER_SEC : VAULT_TOKEN_RETRY_USEC);
        r = 0;
    } else {
        char text[VAULT_ERRTEXT_MAX + 8];
        errors_text(s, &resp, text, sizeof text);
        s->host->log(s->host->h, LOG_INFO, NULL, "token renewal refused (%ld %s)%s", resp.status, text,
                     s->method == METHOD_TOKEN ? "" : "; logging in again");
    }
    http_response_clear(&resp);
    return r;
}

/* At the start of a fetch: a token, renewed or replaced when due. */
static int token_ensure(struct vault_source *s, struct rc_error *err) {
    if (!s->token)
        return token_login(s, err);
    if (s->need_lookup) {
        int ok = token_lookup(s, true);
        if (ok >= 0)
            s->need_lookup = false;
        if (ok == 0)
            return token_login(s, err);
    }
    uint64_t now = rctime_mono_usec();
    if (!s->token_due || now < s->token_due)
        return 0;
    if (s->method == METHOD_TOKEN) {
        /* Someone may have put a fresh token in the file; else renew what we have. */
        struct secret *t = NULL;
        struct rc_error e = { 0 };
        if (read_bootstrap(s->token_file, s->cred_token, &t, "token_file", &e) == 0 && !secret_equal(t, s->token)) {
            secret_free(t);
            s->host->log(s->host->h, LOG_INFO, NULL, "token_file holds a new token; using it");
            return token_login(s, err);
        }
        secret_free(t);
        if (!s->token_renewable || s->relogin_at_due || token_renew(s) != 0) {
            /* Nothing more to do for it: use it until Vault refuses it. */
            s->token_due = 0;
        }
        return 0;
    }
    if (s->token_renewable && !s->relogin_at_due && token_renew(s) == 0)
        return 0;
    struct rc_error e = { 0 };
    if (token_login(s, &e) == 0)
        return 0;
    if (s->token_expires && now + VAULT_USEC_PER_SEC < s->token_expires) {
        /* The old token still works for a while: go on with it, try again soon. */
        scrub_all(s, &e);
        s->host->log(s->host->h, LOG_WARNING, NULL, "cannot log in again (%s); using the current token "
                     "while it lasts", e.message);
        uint64_t left = s->token_expires - now;
        s->token_due = now + (left / 4 < VAULT_TOKEN_RETRY_USEC ? left / 4 + VAULT_USEC_PER_SEC : VAULT_TOKEN_RETRY_USEC);
        return 0;
    }
    *err = e;
    return -1;
}

/* A request with the token. A 403 whose text says the token is invalid, or after which
 * lookup-self refuses the token too, makes us log in again (once per fetch) and repeat.
 * A 403 for a token Vault still accepts is handed back (*ret_token_ok set): the policy
 * does not grant the path. */
static int vault_authed(struct vault_source *s, const char *method, const char *api_path,
                        const void *body, size_t body_len,
                        struct http_response *resp, bool *ret_token_ok, struct rc_error *err) {
    *ret_token_ok = false;
    if (vault_http(s, method, api_path, body, body_len, true, resp, err) < 0)
        return -1;
    if (resp->status != 403)
        return 0;
    bool invalid = vault_errors_has(resp->body, resp->body_len, "invalid token");
    if (!invalid) {
        int ok = token_lookup(s, false);
        if (ok != 0) {
            *ret_token_ok = ok > 0;
            return 0;
        }
    }
    if (s->relogged)
        return 0;
    s->host->log(s->host->h, LOG_INFO, NULL, "Vault refused the token (%s %s: 403); %s", method, api_path,
                 s->method == METHOD_TOKEN ? "reading token_file again" : "logging in again");
    http_response_clear(resp);
    if (token_login(s, err) < 0)
        return -1;
    if (vault_http(s, method, api_path, body, body_len, true, resp, err) < 0)
        return -1;
    if (resp->status == 403 && !vault_errors_has(resp->body, resp->body_len, "invalid token"))
        *ret_token_ok = true;
    return 0;
}

static int auth_error(struct vault_source *s, const struct http_response *resp, bool token_ok, const char *what, struct rc_error *err) {
    return status_error(s, resp, what, token_ok ? " (the token is valid: does its policy grant read here?)"
                                             : " (after logging in again)", err);
}

/* ---- candidates ------------------------------------------------------------------------------ */

static int candidate_from(const struct vault_cred *c, const char *version, enum rc_cand_role role,
                          struct rc_candidate *ret, struct rc_error *err) {
    struct rc_candidate cand = { .expires_at = RC_NO_EXPIRY, .role = role,
                                 .rotated_at = c->rotated_at ? c->rotated_at : INT64_MIN };
    cand.password = secret_dup(c->password);
    if (c->username)
        cand.username = strdup(c->username);
    if (!cand.password || (c->username && !cand.username)) {
        secret_free(cand.password);
        free(cand.username);
        return rc_error_oom(err);
    }
    snprintf(cand.version, sizeof cand.version, "%s", version);
    *ret = cand;
    return 0;
}

static void candidates_free(struct rc_candidate *ret, int n) {
    for (int i = 0; i < n; i++) {
        free(ret[i].username);
        ret[i].username = NULL;
        ret[i].password = secret_free(ret[i].password);
    }
}

/* ---- KV v2 ------------------------------------------------------------------------------------- */

/* The start-up hint: the newest readable version before `version` (docs/design.md §8.3). */
static void kv2_find_hint(struct vault_source *s, struct vault_cred_rt *c, int64_t version, int64_t prior) {
    int64_t probes[VAULT_HINT_PROBES];
    int n = 0;
    if (prior > 0)
        probes[n++] = prior;
    else if (c->data_only)
        for (int64_t v = version - 1; v > 0 && n < VAULT_HINT_PROBES; v--)
            probes[n++] = v;
    for (int i = 0; i < n; i++) {
        char path[VAULT_PATH_MAX + 32], what[VAULT_PATH_MAX + 40];
        struct http_response resp;
        struct rc_error e = { 0 };
        snprintf(path, sizeof path, "%s?version=%lld", c->api_data, (long long)probes[i]);
        snprintf(what, sizeof what, "GET %s", path);
        if (vault_http(s, "GET", path, NULL, 0, true, &resp, &e) < 0)
            return;   /* not logged */
        if (resp.status != 200 && resp.status != 404) {
            http_response_clear(&resp);
            return;
        }
        struct vault_cred hint = { 0 };
        int64_t v = 0;
        int r = vault_parse_kv2_data(resp.status, resp.body, resp.body_len, &c->fields, &hint, &v, what, &e);
        http_response_clear(&resp);
        if (r == 0) {
            vault_cred_clear(&c->hint);
            c->hint = hint;
            c->hint_for = version;
            snprintf(c->hint_version, sizeof c->hint_version, "%lld", (long long)v);
            s->host->log(s->host->h, LOG_DEBUG, c->name, "start-up hint: version %lld", (long long)v);
            return;
        }
        scrub_all(s, &e);
        s->host->log(s->host->h, LOG_DEBUG, c->name, "no start-up hint from version %lld: %s",
                     (long long)probes[i], e.message);
    }
}

static int kv2_result(struct vault_cred_rt *c, struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err) {
    char v[RC_VERSION_MAX];
    snprintf(v, sizeof v, "%lld", (long long)c->cached_version);
    if (candidate_from(&c->cached, v, RC_CAND_CURRENT, &ret[0], err) < 0)
        return -1;
    if (c->hint.password && c->hint_for == c->cached_version) {
        if (candidate_from(&c->hint, c->hint_version, RC_CAND_HINT, &ret[1], err) < 0) {
            candidates_free(ret, 1);
            return -1;
        }
        return 2;
    }
    return 1;
}

static int kv2_fetch(struct vault_source *s, struct vault_cred_rt *c,
                     struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err) {
    char what[VAULT_PATH_MAX + 16];
    struct http_response resp;
    bool token_ok;
    int64_t prior = 0;

    if (!c->data_only) {
        snprintf(what, sizeof what, "GET %s", c->api_meta);
        if (vault_authed(s, "GET", c->api_meta, NULL, 0, &resp, &token_ok, err) < 0)
            return -1;
        if (resp.status == 403 && token_ok) {
            /* Many policies grant only data/: read it at every look instead. */
            c->data_only = true;
            s->host->log(s->host->h, LOG_NOTICE, c->name, "%s: 403 permission denied for a valid token; "
                         "reading %s at every check instead (grant read on metadata/ for the cheaper check)",
                         what, c->api_data);
            http_response_clear(&resp);
        } else if (resp.status == 200) {
            struct vault_kv2_meta m;
            int r = vault_parse_kv2_metadata(resp.body, resp.body_len, (int64_t)time(NULL), &m, what, err);
            http_response_clear(&resp);
            if (r < 0)
                return -1;
            if (m.current_version == 0)
                return rc_error_set(err, RC_ERR_NOT_FOUND, "%s: no version written yet", what);
            if (m.current_destroyed)
                return rc_error_set(err, RC_ERR_INVALID, "%s: the current version %lld is destroyed; write "
                                    "a new version", what, (long long)m.current_version);
            if (m.current_deleted)
                return rc_error_set(err, RC_ERR_NOT_FOUND, "%s: the current version %lld is deleted; "
                                    "undelete it or write a new version", what, (long long)m.current_version);
            if (c->cached.password && m.current_version == c->cached_version)
                return kv2_result(c, ret, err);   /* unchanged: one request */
            prior = m.prior_version;
        } else {
            if (resp.status == 403)
                auth_error(s, &resp, false, what, err);
            else
                status_error(s, &resp, what, resp.status == 404 ? " (no such secret; is the mount right? "
                             "set `mount` for a multi-segment mount)" : NULL, err);
            http_response_clear(&resp);
            return -1;
        }
    }

    snprintf(what, sizeof what, "GET %s", c->api_data);
    if (vault_authed(s, "GET", c->api_data, NULL, 0, &resp, &token_ok, err) < 0)
        return -1;
    if (resp.status != 200 && resp.status != 404) {
        if (resp.status == 403)
            auth_error(s, &resp, token_ok, what, err);
        else
            status_error(s, &resp, what, NULL, err);
        http_response_clear(&resp);
        return -1;
    }
    struct vault_cred cred = { 0 };
    int64_t version = 0;
    int r = vault_parse_kv2_data(resp.status, resp.body, resp.body_len, &c->fields, &cred, &version, what, err);
    http_response_clear(&resp);
    if (r < 0)
        return -1;
    vault_cred_clear(&c->cached);
    c->cached = cred;
    c->cached_version = version;
    if (!c->started) {
        c->started = true;
        kv2_find_hint(s, c, version, prior);
    } else if (c->hint_for != version)
        vault_cred_clear(&c->hint);
    return kv2_result(c, ret, err);
}

/* ---- KV v1 ------------------------------------------------------------------------------------- */

static int kv1_fetch(struct vault_source *s, struct vault_cred_rt *c,
                     struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err) {
    char what[VAULT_PATH_MAX + 16];
    struct http_response resp;
    bool token_ok;
    snprintf(what, sizeof what, "GET %s", c->api_data);
    if (vault_authed(s, "GET", c->api_data, NULL, 0, &resp, &token_ok, err) < 0)
        return -1;
    if (resp.status != 200) {
        if (resp.status == 403)
            auth_error(s, &resp, token_ok, what, err);
        else
            status_error(s, &resp, what, NULL, err);
        http_response_clear(&resp);
        return -1;
    }
    struct vault_cred cred = { 0 };
    int r = vault_parse_kv1_data(resp.body, resp.body_len, &c->fields, &cred, what, err);
    http_response_clear(&resp);
    if (r < 0)
        return -1;

    /* KV v1 has no version: the keyed hash of what AUTH will use (docs/design.md §5.1). */
    char version[RC_VERSION_MAX];
    r = rc_credential_version(s->host, cred.username, secret_data(cred.password),
                              secret_len(cred.password), version);
    if (r < 0) {
        vault_cred_clear(&cred);
        return rc_error_set(err, RC_ERR_TRANSIENT, "cannot compute version: %s", strerror(-r));
    }
    vault_cred_clear(&c->cached);
    c->cached.password = secret_dup(cred.password);   /* only to scrub messages */
    ret[0] = (struct rc_candidate){ .username = cred.username, .password = cred.password,
                                    .expires_at = RC_NO_EXPIRY, .rotated_at = INT64_MIN,
                                    .role = RC_CAND_CURRENT };
    snprintf(ret[0].version, sizeof ret[0].version, "%s", version);
    return 1;
}

/* ---- database static roles ------------------------------------------------------------------ */

/* GET static-creds into *ret (the caller clears ret->cred). 0, or -1 with err. */
static int db_read(struct vault_source *s, struct vault_cred_rt *c, struct vault_static_creds *ret,
                   struct rc_error *err) {
    char what[VAULT_PATH_MAX + 16];
    struct http_response resp;
    bool token_ok;
    snprintf(what, sizeof what, "GET %s", c->api_data);
    if (vault_authed(s, "GET", c->api_data, NULL, 0, &resp, &token_ok, err) < 0)
        return -1;
    if (resp.status != 200) {
        if (resp.status == 403)
            auth_error(s, &resp, token_ok, what, err);
        else
            status_error(s, &resp, what, NULL, err);
        http_response_clear(&resp);
        return -1;
    }
    int r = vault_parse_static_creds(resp.body, resp.body_len, ret, what, err);
    http_response_clear(&resp);
    return r < 0 ? -1 : 0;
}

static int db_fetch(struct vault_source *s, struct vault_cred_rt *c,
                    struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err) {
    struct vault_static_creds sc;
    if (db_read(s, c, &sc, err) < 0)
        return -1;
    bool changed;
    uint64_t now = rctime_mono_usec();
    c->due = vault_rot_update(&c->rot, sc.version, sc.ttl, now, &changed);
    if (!c->schedule_noted) {
        c->schedule_noted = true;
        if (sc.rotation_schedule[0])
            s->host->log(s->host->h, LOG_DEBUG, c->name, "static role rotates on schedule \"%s\"",
                         sc.rotation_schedule);
        else
            s->host->log(s->host->h, LOG_DEBUG, c->name, "static role rotates every %llds",
                         (long long)sc.rotation_period);
    }
    s->host->log(s->host->h, LOG_DEBUG, c->name, "static role: last rotation %s, ttl %llds, next look in %llums%s",
                 sc.version, (long long)sc.ttl, (unsigned long long)((c->due - now) / 1000),
                 c->rot.awaiting ? " (waiting for Vault to rotate)" : "");
    vault_cred_clear(&c->cached);
    c->cached.password = secret_dup(sc.cred.password);   /* only to scrub messages */
    ret[0] = (struct rc_candidate){ .username = sc.cred.username, .password = sc.cred.password,
                                    .expires_at = RC_NO_EXPIRY, .rotated_at = INT64_MIN,
                                    .role = RC_CAND_CURRENT };
    snprintf(ret[0].version, sizeof ret[0].version, "%s", sc.version);
    /* Every version of a static role is a rotation, dated by Vault's clock. */
    int64_t t;
    if (rctime_parse(sc.version, &t) == 0 && t > 0)
        ret[0].rotated_at = t;
    return 1;
}

/* ---- the source type ------------------------------------------------------------------------ */

static struct vault_cred_rt *find_cred(struct vault_source *s, const char *name) {
    for (size_t i = 0; i < s->n_creds; i++)
        if (strcmp(s->creds[i].name, name) == 0)
            return &s->creds[i];
    return NULL;
}

static int vault_fetch(void *state, const struct rc_credential *cred,
                       struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err) {
    struct vault_source *s = state;
    struct vault_cred_rt *c = find_cred(s, cred->name);
    if (!c)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s is not known to this source", cred->name);
    s->relogged = false;
    c->due = 0;

    int n = token_ensure(s, err);
    if (n == 0) {
        switch (c->engine) {
        case ENGINE_KV2: n = kv2_fetch(s, c, ret, err); break;
        case ENGINE_KV1: n = kv1_fetch(s, c, ret, err); break;
        case ENGINE_DATABASE: n = db_fetch(s, c, ret, err); break;
        }
    }
    if (n < 0) {
        c->due = 0;
        scrub_all(s, err);
        return -1;
    }
    /* The look we want next: a static role's own, else one poll_interval from now; or the
     * token's renewal point when that comes first and no other credential of the source
     * looks by then anyway (one look renews the token for all of them). */
    uint64_t want = c->due ? c->due : rctime_mono_usec() + c->poll_usec;
    if (s->token_due && s->token_due < want) {
        bool covered = false;
        for (size_t i = 0; i < s->n_creds; i++)
            if (&s->creds[i] != c && s->creds[i].due && s->creds[i].due <= s->token_due + VAULT_USEC_PER_SEC)
                covered = true;
        if (!covered)
            want = s->token_due;
    }
    c->due = want;
    return n;
}

/* ---- rotate: a database static role (strategy vault-database) ---- */

#define VAULT_ROTATE_POLL_USEC (200 * 1000)

/* Asks Vault to rotate the static role now (POST rotate-role, 204), then reads
 * static-creds until last_vault_rotation moves: Vault answers rotate-role once its
 * database plugin changed the password, but a Vault that queued the rotation (it retries
 * failed ones from its queue) serves the old value a little longer. The check of
 * expected_version before the POST is a read, not a check-and-set: two agents could both
 * pass it and Vault would rotate twice (harmless for Redis, the second password wins), so
 * only the configured rotator host calls this (docs/vault.md). */
static int db_rotate(struct vault_source *s, struct vault_cred_rt *c, const char *expected_version,
                     char *ret_version, struct rc_error *err) {
    char what[VAULT_PATH_MAX + 16];
    struct vault_static_creds sc;
    struct http_response resp;
    bool token_ok;

    if (db_read(s, c, &sc, err) < 0)
        return -1;
    vault_cred_clear(&sc.cred);
    if (strcmp(sc.version, expected_version) != 0)
        return rc_error_set(err, RC_ERR_CONFLICT, "%s: the static role was last rotated at %s, not at "
                            "the published %s (it rotated since)", c->path, sc.version, expected_version);

    snprintf(what, sizeof what, "POST %s", c->api_rotate);
    if (vault_authed(s, "POST", c->api_rotate, NULL, 0, &resp, &token_ok, err) < 0)
        return -1;
    int r = 0;
    if (resp.status == 403)
        r = status_error(s, &resp, what, token_ok ? " (the token is valid: does its policy grant update "
                         "on rotate-role?)" : " (after logging in again)", err);
    else if (resp.status != 204 && resp.status != 200)
        r = status_error(s, &resp, what, NULL, err);
    http_response_clear(&resp);
    if (r < 0)
        return -1;

    uint64_t deadline = rctime_mono_usec() + s->timeout_usec;
    for (;;) {
        if (db_read(s, c, &sc, err) < 0)
            return -1;
        vault_cred_clear(&sc.cred);
        if (strcmp(sc.version, expected_version) != 0)
            break;
        if (rctime_mono_usec() >= deadline)
            return rc_error_set(err, RC_ERR_TRANSIENT, "%s: Vault accepted rotate-role, but static-creds "
                                "still report the rotation of %s after %llums", c->path, expected_version,
                                (unsigned long long)(s->timeout_usec / 1000));
        struct timespec ts = { .tv_sec = 0, .tv_nsec = VAULT_ROTATE_POLL_USEC * 1000 };
        nanosleep(&ts, NULL);
    }
    snprintf(ret_version, RC_VERSION_MAX, "%s", sc.version);
    s->host->log(s->host->h, LOG_DEBUG, c->name, "%s: static role rotated, last rotation %s",
                 what, sc.version);
    return 0;
}

/* ---- rotate: KV v2 check-and-set write (agent-driven rotation) ---- */

/* rotate_self(): Vault makes the password itself, only for a database static role. */
static int vault_rotate_self(void *state, const struct rc_credential *cred, const char *expected_version,
                             char *ret_version, struct rc_error *err) {
    struct vault_source *s = state;
    struct vault_cred_rt *c = find_cred(s, cred->name);
    if (!c)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s is not known to this source", cred->name);
    if (c->engine != ENGINE_DATABASE || !c->api_rotate)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s: Vault makes a new password itself "
                            "only for engine = \"database\" (strategy vault-database)", cred->name);
    s->relogged = false;
    if (token_ensure(s, err) < 0 || db_rotate(s, c, expected_version, ret_version, err) < 0) {
        scrub_all(s, err);
        return -1;
    }
    return 0;
}

/* The KV v2 credential `cred` names, or NULL with err FATAL (`why` says what needs kv2). */
static struct vault_cred_rt *kv2_cred(struct vault_source *s, const struct rc_credential *cred,
                                      const char *why, struct rc_error *err) {
    struct vault_cred_rt *c = find_cred(s, cred->name);
    if (!c)
        rc_error_set(err, RC_ERR_FATAL, "credential %s is not known to this source", cred->name);
    else if (c->engine != ENGINE_KV2)
        rc_error_set(err, RC_ERR_FATAL, "credential %s: %s needs engine = \"kv2\" (a check-and-set "
                     "write)", cred->name, why);
    else
        return c;
    return NULL;
}

/* Notes the passwords a write body carries (data's password field, and the rotation
 * record's password and old_password) in s->sent, for scrub_text(); sent_clear() forgets
 * them. What cannot be noted (out of memory) is scrubbed less, not sent less. */
static void sent_note(struct vault_source *s, const struct vault_cred_rt *c, const char *body,
                      size_t len) {
    json_t *root = jsonload_buf(body, len, 0, NULL);
    json_t *data = json_object_get(root, "data");
    const char *k;
    json_t *v;
    json_object_foreach(data, k, v) {
        size_t kl = strlen(k);
        bool pw = strcmp(k, c->fields.password) == 0 ||
                  (kl >= 8 && strcmp(k + kl - 8, "password") == 0);
        if (pw && json_is_string(v) && s->n_sent < VAULT_SENT_MAX)
            s->sent[s->n_sent++] = secret_new(json_string_value(v), json_string_length(v));
    }
    json_decref(root);   /* jansson's free wipes (secret_init) */
}

static void sent_clear(struct vault_source *s) {
    for (size_t i = 0; i < s->n_sent; i++)
        s->sent[i] = secret_free(s->sent[i]);
    s->n_sent = 0;
}

/* POSTs a KV v2 write body (it holds secrets: wiped and freed here) to api_path (of c), whose
 * options.cas is `cas`. 0 with the version written, or -1 with err: CONFLICT when Vault
 * says the cas did not match (someone else wrote first). */
static int kv2_cas_post_once(struct vault_source *s, const struct vault_cred_rt *c, const char *api_path,
                        char *body, size_t body_len, long long cas, int64_t *ret_version,
                        struct rc_error *err) {
    char what[VAULT_PATH_MAX + 16];
    struct http_response resp;
    bool token_ok;
    int r;

    s->relogged = false;
    if (token_ensure(s, err) < 0) {
        secret_wipe_free(body, body_len);
        scrub_all(s, err);
        return -1;
    }
    snprintf(what, sizeof what, "POST %s", api_path);
    r = vault_authed(s, "POST", api_path, body, body_len, &resp, &token_ok, err);
    secret_wipe_free(body, body_len);
    if (r < 0) {
        scrub_all(s, err);
        return -1;
    }
    if (resp.status == 200)
        r = vault_parse_kv2_write(resp.body, resp.body_len, ret_version, what, err);
    else if (resp.status == 400 && vault_errors_has(resp.body, resp.body_len, "did not match the current version"))
        r = rc_error_set(err, RC_ERR_CONFLICT, "%s: 400 check-and-set parameter did not match the "
                         "current version (%lld; someone else wrote first)", what, cas);
    else if (resp.status == 403)
        r = status_error(s, &resp, what, token_ok ? " (the token is valid: does its policy grant create "
                         "and update here?)" : " (after logging in again)", err);
    else
        r = status_error(s, &resp, what, NULL, err);
    http_response_clear(&resp);
    if (r < 0) {
        scrub_all(s, err);
        return -1;
    }
    s->host->log(s->host->h, LOG_DEBUG, c->name, "%s: wrote version %lld (cas %lld)", what,
                 (long long)*ret_version, cas);
    return 0;
}

/* kv2_cas_post_once() with the body's passwords scrubbed out of whatever Vault answers. */
static int kv2_cas_post(struct vault_source *s, const struct vault_cred_rt *c, const char *api_path,
                        char *body, size_t body_len, long long cas, int64_t *ret_version,
                        struct rc_error *err) {
    sent_note(s, c, body, body_len);
    int r = kv2_cas_post_once(s, c, api_path, body, body_len, cas, ret_version, err);
    sent_clear(s);
    return r;
}

/* A version number as the agent hands it back (a KV v2 version: a cas). */
static bool parse_cas(const char *text, long long *ret) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v <= 0)
        return false;
    *ret = v;
    return true;
}

/* rotate_write(): a check-and-set write of the agent's password, engine kv2 only. */
static int vault_rotate_write(void *state, const struct rc_credential *cred, const char *expected_version,
                              const char *username, const struct secret *password,
                              const struct rc_rotation_mark *mark, char *ret_version,
                              struct rc_error *err) {
    struct vault_source *s = state;
    struct vault_cred_rt *c = kv2_cred(s, cred, "rotation", err);
    char *body = NULL;
    size_t body_len = 0;
    long long cas = 0;
    int64_t v = 0;
    int r;

    if (!c)
        return -1;
    /* The agent's version of a KV v2 secret is its version number: the cas to write with. */
    if (!parse_cas(expected_version, &cas))
        return rc_error_set(err, RC_ERR_CONFLICT, "%s: the published version \"%s\" is not a version "
                            "of this secret", c->path, expected_version);
    if ((r = vault_kv2_write_body(&c->fields, username, password, mark, cas, &body, &body_len)) < 0)
        return r == -ENOMEM ? rc_error_oom(err)
                            : rc_error_set(err, RC_ERR_INVALID, "%s: the new credential is not valid "
                                           "UTF-8 (JSON cannot carry it)", c->path);
    if (kv2_cas_post(s, c, c->api_data, body, body_len, cas, &v, err) < 0)
        return -1;
    snprintf(ret_version, RC_VERSION_MAX, "%lld", (long long)v);
    return 0;
}

/* ---- the rotation record: the KV v2 secret <path>.rotation (RC_CAP_ROTATION_RECORD) ---- */

static int vault_record_read(void *state, const struct rc_credential *cred, struct secret **ret_record,
                             char *ret_revision, struct rc_error *err) {
    struct vault_source *s = state;
    struct vault_cred_rt *c = kv2_cred(s, cred, "a rotation record", err);
    char what[VAULT_PATH_MAX + 16];
    struct http_response resp;
    struct secret *rec = NULL;
    int64_t v = 0;
    bool token_ok;
    int r = -1;

    if (!c)
        return -1;
    s->relogged = false;
    if (token_ensure(s, err) < 0) {
        scrub_all(s, err);
        return -1;
    }
    snprintf(what, sizeof what, "GET %s", c->api_record);
    if (vault_authed(s, "GET", c->api_record, NULL, 0, &resp, &token_ok, err) < 0) {
        scrub_all(s, err);
        return -1;
    }
    if (resp.status == 200 || resp.status == 404)
        r = vault_parse_kv2_record(resp.status, resp.body, resp.body_len, &rec, &v, what, err);
    else if (resp.status == 403)
        auth_error(s, &resp, token_ok, what, err);
    else
        status_error(s, &resp, what, NULL, err);
    http_response_clear(&resp);
    if (r < 0) {
        scrub_all(s, err);
        return -1;
    }
    *ret_record = rec;
    if (v > 0)
        snprintf(ret_revision, RC_REVISION_MAX, "%lld", (long long)v);
    else
        ret_revision[0] = '\0';
    return 0;
}

static int vault_record_write(void *state, const struct rc_credential *cred, const char *expected_revision,
                              const struct secret *record, char *ret_revision, struct rc_error *err) {
    struct vault_source *s = state;
    struct vault_cred_rt *c = kv2_cred(s, cred, "a rotation record", err);
    char *body = NULL;
    size_t body_len = 0;
    long long cas = 0;
    int64_t v = 0;
    int r;

    if (!c)
        return -1;
    /* The revision is the record's KV version; "" (none written): cas 0, must not exist. */
    if (expected_revision[0] && !parse_cas(expected_revision, &cas))
        return rc_error_set(err, RC_ERR_CONFLICT, "%s" VAULT_RECORD_SUFFIX ": \"%s\" is not a "
                            "revision of this rotation record", c->path, expected_revision);
    if ((r = vault_kv2_record_body(record, cas, &body, &body_len)) < 0)
        return r == -ENOMEM ? rc_error_oom(err)
                            : rc_error_set(err, RC_ERR_INVALID, "%s" VAULT_RECORD_SUFFIX ": the rotation "
                                           "record is not a JSON object", c->path);
    if (kv2_cas_post(s, c, c->api_record, body, body_len, cas, &v, err) < 0)
        return -1;
    snprintf(ret_revision, RC_REVISION_MAX, "%lld", (long long)v);
    return 0;
}

static uint64_t vault_next_check(void *state, const struct rc_credential *cred) {
    struct vault_source *s = state;
    struct vault_cred_rt *c = find_cred(s, cred->name);
    if (!c || !c->due)
        return 0;
    uint64_t now = rctime_mono_usec();
    return c->due > now + 1000 ? c->due - now : 1000;
}

static void cred_rt_clear(struct vault_cred_rt *c) {
    free(c->name);
    free(c->path);
    free(c->api_data);
    free(c->api_meta);
    free(c->api_rotate);
    free(c->api_record);
    free(c->ufield);
    free(c->pfield);
    vault_cred_clear(&c->cached);
    vault_cred_clear(&c->hint);
}

static void vault_close(void *state) {
    struct vault_source *s = state;
    if (!s)
        return;
    for (size_t i = 0; i < s->n_creds; i++)
        cred_rt_clear(&s->creds[i]);
    free(s->creds);
    http_client_free(s->http);
    secret_free(s->token);
    secret_free(s->cached_role_id);
    secret_free(s->cached_secret_id);
    secret_free(s->last_jwt);
    sent_clear(s);
    free(s->base);
    free(s->namespace);
    free(s->token_file);
    free(s->role_id_file);
    free(s->secret_id_file);
    free(s->jwt_file);
    free(s->role);
    free(s->login_path);
    free(s);
}

/* cred_setup's first step: the credential's names, its poll interval and its fields. */
static int cred_fields(const struct rc_credential *rc, struct vault_cred_rt *c, struct rc_error *err) {
    const struct rc_config_node *n = rc->node;
    const char *path = conf_string(n, "path");
    c->name = strdup(rc->name);
    c->path = strdup(path ? path : "");
    c->ufield = strdup(conf_string(n, "username_field"));
    c->pfield = strdup(conf_string(n, "password_field"));
    if (!c->name || !c->path || !c->ufield || !c->pfield)
        return rc_error_oom(err);
    /* poll_interval is the host's key; read here to know whether another look comes
     * before the token's renewal point anyway. Unset: the documented default. */
    c->poll_usec = conf_duration(n, "poll_interval");
    if (!c->poll_usec)
        c->poll_usec = 30 * VAULT_USEC_PER_SEC;
    c->fields = (struct vault_fields){ .username = c->ufield, .password = c->pfield,
                                       .username_required = conf_has(n, "username_field") };
    if (!c->ufield[0] || !c->pfield[0])
        return rc_error_set(err, RC_ERR_FATAL, "credential %s: username_field and password_field must "
                            "not be empty", rc->name);
    return 0;
}

/* cred_setup's second step: the engine, and whether the credential's rotation (if any) is
 * one that engine can do; *rotate_db: a vault-database rotation (a static role's). */
static int cred_engine(const struct rc_credential *rc, struct vault_cred_rt *c, bool *rotate_db,
                       struct rc_error *err) {
    const struct rc_config_node *n = rc->node;
    const char *engine = conf_string(n, "engine");
    if (strcmp(engine, "kv2") == 0)
        c->engine = ENGINE_KV2;
    else if (strcmp(engine, "kv1") == 0)
        c->engine = ENGINE_KV1;
    else if (strcmp(engine, "database") == 0)
        c->engine = ENGINE_DATABASE;
    else
        return rc_error_set(err, RC_ERR_FATAL, "credential %s: engine \"%s\" is not one of kv2, kv1, "
                            "database", rc->name, engine);
    /* `rotation` is the host's key. Strategy redis-acl writes with a KV v2 check-and-set,
     * which the other engines do not have; vault-database asks a static role to rotate,
     * which only the database engine has: say so at start, not at the first rotation. */
    *rotate_db = false;
    if (!conf_has(n, "rotation"))
        return 0;
    const char *strategy = conf_string(n, "rotation.strategy");   /* not in our table: a path */
    *rotate_db = strategy && strcmp(strategy, "vault-database") == 0;
    if (*rotate_db && c->engine != ENGINE_DATABASE)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s: strategy vault-database needs engine "
                            "= \"database\" (a static role); engine \"%s\" cannot rotate so",
                            rc->name, engine);
    if (!*rotate_db && c->engine != ENGINE_KV2)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s: rotation needs engine = \"kv2\" (a "
                            "check-and-set write) or strategy vault-database with engine "
                            "\"database\"; engine \"%s\" cannot rotate so", rc->name, engine);
    return 0;
}

/* The API paths of a database credential (enc_r is "static-creds/" + the encoded role). */
static int cred_database_paths(const struct rc_credential *rc, struct vault_cred_rt *c, const char *rest,
                               const char *enc_m, const char *enc_r, bool rotate_db, struct rc_error *err) {
    const struct rc_config_node *n = rc->node;
    const char *role = strncmp(rest, "static-creds/", 13) == 0 ? rest + 13 : NULL;
    if (!role || !role[0] || strchr(role, '/'))
        return rc_error_set(err, RC_ERR_FATAL, "credential %s: a database path is MOUNT/static-creds/ROLE, "
                            "not \"%s\"", rc->name, c->path);
    if (conf_has(n, "username_field") || conf_has(n, "password_field"))
        return rc_error_set(err, RC_ERR_FATAL, "credential %s: username_field and password_field do not "
                            "apply to engine database (Vault names them username and password)", rc->name);
    if (asprintf(&c->api_data, "%s/%s", enc_m, enc_r) < 0) {
        c->api_data = NULL;
        return rc_error_oom(err);
    }
    if (rotate_db && asprintf(&c->api_rotate, "%s/rotate-role/%s", enc_m, enc_r + 13) < 0) {
        c->api_rotate = NULL;
        return rc_error_oom(err);
    }
    return 0;
}

/* cred_setup's last step: the API paths of the credential's engine, from its encoded mount
 * and the rest of its path. */
static int cred_api_paths(const struct rc_credential *rc, struct vault_cred_rt *c, const char *rest,
                          const char *enc_m, const char *enc_r, bool rotate_db, struct rc_error *err) {
    switch (c->engine) {
    case ENGINE_KV2:
        /* A rest starting with data/ is legal (a key may be named so); docs/vault.md
         * says the path is the CLI's spelling, without data/. */
        if (asprintf(&c->api_data, "%s/data/%s", enc_m, enc_r) < 0 ||
            asprintf(&c->api_meta, "%s/metadata/%s", enc_m, enc_r) < 0 ||
            asprintf(&c->api_record, "%s/data/%s" VAULT_RECORD_SUFFIX, enc_m, enc_r) < 0) {
            c->api_data = c->api_meta = c->api_record = NULL;
            return rc_error_oom(err);
        }
        return 0;
    case ENGINE_KV1:
        if (asprintf(&c->api_data, "%s/%s", enc_m, enc_r) < 0) {
            c->api_data = NULL;
            return rc_error_oom(err);
        }
        return 0;
    case ENGINE_DATABASE:
        return cred_database_paths(rc, c, rest, enc_m, enc_r, rotate_db, err);
    }
    return 0;
}

/* One credential's settings into c: its fields, its engine, its API paths. 0 or -1 + err. */
static int cred_setup(const struct rc_credential *rc, struct vault_cred_rt *c, struct rc_error *err) {
    const char *path = conf_string(rc->node, "path");
    const char *mount = conf_string(rc->node, "mount");
    char *m = NULL, *rest = NULL, enc_m[VAULT_PATH_MAX], enc_r[VAULT_PATH_MAX];
    bool rotate_db = false;
    int r;

    if (cred_fields(rc, c, err) < 0 || cred_engine(rc, c, &rotate_db, err) < 0)
        return -1;
    if (vault_path_split(path, mount, &m, &rest, err) < 0) {
        char msg[sizeof err->message];
        snprintf(msg, sizeof msg, "%s", err->message);
        return rc_error_set(err, RC_ERR_FATAL, "credential %s: %s", rc->name, msg);
    }
    if (vault_path_encode(m, enc_m, sizeof enc_m) < 0 || vault_path_encode(rest, enc_r, sizeof enc_r) < 0)
        r = rc_error_set(err, RC_ERR_FATAL, "credential %s: path \"%s\" has an empty, \".\" or \"..\" segment, "
                         "a control character, or is too long", rc->name, path);
    else
        r = cred_api_paths(rc, c, rest, enc_m, enc_r, rotate_db, err);
    free(m);
    free(rest);
    return r;
}

/* A header value from config: printable, no CR/LF. */
static bool header_value_ok(const char *v) {
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || *v == 0x7f)
            return false;
    return true;
}

static int auth_setup(struct vault_source *s, const struct rc_config_node *source, struct rc_error *err) {
    const struct rc_config_node *a = conf_group(source, "auth");
    const char *method = conf_string(a, "method");
    static const char *const only_for[][2] = {
        { "token_file", "token" }, { "role_id_file", "approle" }, { "secret_id_file", "approle" },
        { "remove_secret_id_file_after_reading", "approle" }, { "role", "kubernetes" },
        { "jwt_file", "kubernetes" },
    };
    if (!method || (strcmp(method, "token") && strcmp(method, "approle") && strcmp(method, "kubernetes")))
        return rc_error_set(err, RC_ERR_FATAL, "auth.method \"%s\" is not one of token, approle, kubernetes",
                            method ? method : "");
    s->method = !strcmp(method, "token") ? METHOD_TOKEN : !strcmp(method, "approle") ? METHOD_APPROLE
                                                                                     : METHOD_KUBERNETES;
    for (size_t i = 0; i < sizeof only_for / sizeof only_for[0]; i++)
        if (conf_has(a, only_for[i][0]) && strcmp(method, only_for[i][1]) != 0)
            return rc_error_set(err, RC_ERR_FATAL, "auth.%s does not apply to method %s (only to %s)",
                                only_for[i][0], method, only_for[i][1]);
    if (s->method == METHOD_TOKEN && conf_has(a, "mount"))
        return rc_error_set(err, RC_ERR_FATAL, "auth.mount does not apply to method token");

    s->token_file = xstrdup_or_null(conf_string(a, "token_file"));
    s->role_id_file = xstrdup_or_null(conf_string(a, "role_id_file"));
    s->secret_id_file = xstrdup_or_null(conf_string(a, "secret_id_file"));
    s->jwt_file = xstrdup_or_null(conf_string(a, "jwt_file"));
    s->role = xstrdup_or_null(conf_string(a, "role"));
    s->remove_secret_id = conf_bool(a, "remove_secret_id_file_after_reading");
    snprintf(s->cred_token, sizeof s->cred_token, "%s.token", s->host->instance);
    snprintf(s->cred_role_id, sizeof s->cred_role_id, "%s.role-id", s->host->instance);
    snprintf(s->cred_secret_id, sizeof s->cred_secret_id, "%s.secret-id", s->host->instance);

    if (s->method == METHOD_KUBERNETES && !s->role)
        return rc_error_set(err, RC_ERR_FATAL, "auth.role is required for method kubernetes");
    if (s->method == METHOD_KUBERNETES && (!s->jwt_file || s->jwt_file[0] != '/'))
        return rc_error_set(err, RC_ERR_FATAL, "auth.jwt_file must be an absolute path");
    if (s->remove_secret_id && !s->secret_id_file)
        return rc_error_set(err, RC_ERR_FATAL, "auth.remove_secret_id_file_after_reading needs "
                            "auth.secret_id_file");
    if (s->method != METHOD_TOKEN) {
        const char *mount = conf_string(a, "mount");
        char *mm = strdup(mount && mount[0] ? mount : method), enc[VAULT_PATH_MAX];
        if (!mm)
            return rc_error_oom(err);
        char *p = mm;
        while (*p == '/')
            p++;
        if (strncmp(p, "auth/", 5) == 0)
            p += 5;
        size_t l = strlen(p);
        while (l && p[l - 1] == '/')
            p[--l] = '\0';
        int bad = vault_path_encode(p, enc, sizeof enc);
        free(mm);
        if (bad < 0)
            return rc_error_set(err, RC_ERR_FATAL, "auth.mount \"%s\" is not a valid mount path", mount);
        if (asprintf(&s->login_path, "auth/%s/login", enc) < 0) {
            s->login_path = NULL;
            return rc_error_oom(err);
        }
    }
    return 0;
}

static int vault_open(const struct rc_host *host, const struct rc_config_node *source,
                      const struct rc_credential *credentials, size_t n_credentials,
                      void **ret_state, struct rc_error *err) {
    struct vault_source *s = calloc(1, sizeof *s);
    if (!s)
        return rc_error_oom(err);
    s->host = host;

    const char *address = conf_string(source, "address");
    const char *ns = conf_string(source, "namespace");
    uint64_t timeout = conf_duration(source, "timeout");
    s->timeout_usec = timeout;
    size_t al = address ? strlen(address) : 0;
    while (al && address[al - 1] == '/')
        al--;
    s->base = address ? strndup(address, al) : NULL;
    if (!s->base)
        goto nomem;
    if (ns && ns[0]) {
        if (!header_value_ok(ns)) {
            rc_error_set(err, RC_ERR_FATAL, "namespace contains control characters");
            goto fail;
        }
        if (!(s->namespace = strdup(ns)))
            goto nomem;
    }
    if (timeout < 100 * 1000 || timeout > 300 * VAULT_USEC_PER_SEC) {
        rc_error_set(err, RC_ERR_FATAL, "timeout must be between 100ms and 5m");
        goto fail;
    }
    const char *cert = conf_string(source, "cert_file"), *key = conf_string(source, "key_file");
    if (key && key[0] && !(cert && cert[0])) {
        rc_error_set(err, RC_ERR_FATAL, "key_file is set without cert_file");
        goto fail;
    }
    struct http_tls tls = {
        .ca_file = conf_string(source, "ca_file"),
        .ca_path = conf_string(source, "ca_path"),
        .cert_file = cert,
        .key_file = key,
        .server_name = conf_string(source, "server_name"),
        .insecure_skip_verify = conf_bool(source, "tls_insecure_skip_verify"),
    };
    char e[512];
    if (http_client_new(s->base, &tls, timeout, &s->http, e, sizeof e) < 0) {
        rc_error_set(err, RC_ERR_FATAL, "address: %s", e);
        goto fail;
    }
    if (tls.insecure_skip_verify)
        host->log(host->h, LOG_WARNING, NULL, "tls_insecure_skip_verify is on: the certificate of %s is "
                  "not verified, so anyone on the path can impersonate Vault and read the token", s->base);
    if (auth_setup(s, source, err) < 0)
        goto fail;

    s->creds = calloc(n_credentials ? n_credentials : 1, sizeof *s->creds);
    if (!s->creds)
        goto nomem;
    for (size_t i = 0; i < n_credentials; i++) {
        s->n_creds = i + 1;
        if (cred_setup(&credentials[i], &s->creds[i], err) < 0)
            goto fail;
    }
    *ret_state = s;
    return 0;
nomem:
    rc_error_oom(err);
fail:
    vault_close(s);
    return -1;
}

static const struct rc_source_type vault_types[] = {
    {
        .type = "vault",
        .source_keys = vault_source_keys,
        .credential_keys = vault_credential_keys,
        .open = vault_open,
        .fetch = vault_fetch,
        .next_check = vault_next_check,
        .caps = RC_CAP_ROTATE_WRITE | RC_CAP_ROTATE_SELF | RC_CAP_ROTATION_RECORD,
        .rotate_write = vault_rotate_write,
        .rotate_self = vault_rotate_self,
        .record_read = vault_record_read,
        .record_write = vault_record_write,
        .close = vault_close,
    },
};

const struct rc_services *rc_svc;   /* host_services.h */

RC_PLUGIN_EXPORT const struct rc_plugin redis_creds_plugin = {
    RC_PLUGIN_HEADER,
    .name = "vault",
    .services = &rc_svc,
    .types = vault_types,
    .n_types = sizeof vault_types / sizeof vault_types[0],
};
