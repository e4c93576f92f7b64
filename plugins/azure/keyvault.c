/* The `azure-keyvault` source: a Key Vault secret per credential (docs/design.md §4.4).
 *
 *   GET {vault_url}/secrets/{path}?api-version=...      the latest version
 *
 * The secret's value is the password, or JSON {"username","password"} when its
 * contentType is application/json or the credential says value_format = "json". The
 * version is Key Vault's own version id; expires_at is the secret's `exp` attribute.
 *
 * A disabled latest version answers 403 SecretDisabled: not a candidate (INVALID: the
 * published credential stays). 401 gets one retry with a token asked for anew, then is
 * AUTH with what the challenge wants; 403 (RBAC, access policy, firewall) is AUTH; 404
 * NOT_FOUND; 429/5xx TRANSIENT with Retry-After; 400 FATAL.
 *
 * Start-up hint (docs/design.md §8.3): on the first successful fetch after open, the version list
 * (GET .../versions, following nextLink only on the vault's own origin) gives the newest
 * enabled version other than the latest; its value comes back as an RC_CAND_HINT, which
 * the host uses as `previous` only when no file was published yet. Later fetches make
 * one request each. The list is not ordered by the service, so we sort by `created`.
 *
 * State: set in open(); a credential's `hint_done` is written by fetch() only, and the
 * host never runs fetch() concurrently for one instance.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "azure.h"
#include "rctime.h"
#include "jsonload.h"

#define KV_DEFAULT_API_VERSION "2025-07-01"
#define KV_DEFAULT_SCOPE "https://vault.azure.net/.default"
#define KV_MAX_PAGES 40           /* 25 versions a page: 1000 versions */

struct kv_cred {
    char *name;          /* credential name */
    char *secret;        /* secret name */
    char *username;      /* for a bare value; NULL = the default user */
    enum az_kv_format format;
    bool hint_done;
    struct secret *served;   /* the last value read: only to scrub error texts that echo it */
};

struct kv_source {
    const struct rc_host *host;
    struct az_endpoint ep;
    char *api_version;
    struct az_token_ref *tok;
    struct kv_cred *creds;
    size_t n_creds;
};

const struct rc_config_key az_keyvault_source_keys[] = {
    { .name = "vault_url", .type = RC_CONF_T_STRING, .required = true },
    { .name = "api_version", .type = RC_CONF_T_STRING, .default_value = KV_DEFAULT_API_VERSION },
    { .name = "scope", .type = RC_CONF_T_STRING },
    { .name = "timeout", .type = RC_CONF_T_DURATION, .default_value = AZ_DEFAULT_TIMEOUT },
    { .name = "identity", .type = RC_CONF_T_GROUP, .group_keys = az_identity_keys },
    AZ_TLS_KEYS,
    { .name = NULL },
};

const struct rc_config_key az_keyvault_credential_keys[] = {
    { .name = "path", .type = RC_CONF_T_STRING, .required = true },
    { .name = "username", .type = RC_CONF_T_STRING },
    { .name = "value_format", .type = RC_CONF_T_STRING, .default_value = "auto" },
    { .name = NULL },
};

/* Key Vault secret names: ^[0-9a-zA-Z-]+$, at most 127 characters. */
static bool secret_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 127)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

/* Version ids are 32 hex digits in practice; accept what can be a path segment. */
static bool version_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= 80)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]))
            return false;
    return true;
}

void az_keyvault_close(void *state) {
    struct kv_source *s = state;
    if (!s)
        return;
    az_endpoint_close(&s->ep);
    az_tokens_release(s->tok);
    for (size_t i = 0; i < s->n_creds; i++) {
        free(s->creds[i].name);
        free(s->creds[i].secret);
        free(s->creds[i].username);
        secret_free(s->creds[i].served);
    }
    free(s->creds);
    free(s->api_version);
    free(s);
}

/* The data-plane scope for a vault URL: https://vault.<cloud suffix>/.default for the
 * public and sovereign clouds (*.vault.azure.net, *.vault.azure.cn, ...), Managed HSM's
 * own, else the public one. */
static char *kv_default_scope(const char *url) {
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t hl = strcspn(h, ":/");
    char host[256];
    if (hl == 0 || hl >= sizeof host)
        return strdup(KV_DEFAULT_SCOPE);
    memcpy(host, h, hl);
    host[hl] = '\0';
    const char *v = strstr(host, ".vault.");
    const char *m = strstr(host, ".managedhsm.");
    char *out = NULL;
    if (v && asprintf(&out, "https://vault.%s/.default", v + 7) < 0)
        out = NULL;
    else if (!v && m && asprintf(&out, "https://managedhsm.%s/.default", m + 12) < 0)
        out = NULL;
    return out ? out : strdup(KV_DEFAULT_SCOPE);
}

int az_keyvault_open(const struct rc_host *host, const struct rc_config_node *source,
                     const struct rc_credential *credentials, size_t n_credentials,
                     void **ret_state, struct rc_error *err) {
    struct kv_source *s = calloc(1, sizeof *s);
    struct az_identity id = { 0 };
    char *scope = NULL;
    if (!s)
        return rc_error_oom(err);
    s->host = host;
    if (az_endpoint_open(host, source, "vault_url", &s->ep, err) < 0)
        goto fail;
    const char *av = conf_string(source, "api_version");
    s->api_version = strdup(av && av[0] ? av : KV_DEFAULT_API_VERSION);
    const char *sc = conf_string(source, "scope");
    scope = sc && sc[0] ? strdup(sc) : kv_default_scope(s->ep.base_url);
    s->creds = calloc(n_credentials ? n_credentials : 1, sizeof *s->creds);
    if (!s->api_version || !scope || !s->creds) {
        rc_error_oom(err);
        goto fail;
    }
    for (const char *p = s->api_version; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.') {
            rc_error_set(err, RC_ERR_FATAL, "api_version \"%s\": not an api-version", s->api_version);
            goto fail;
        }
    for (size_t i = 0; i < n_credentials; i++) {
        const struct rc_config_node *n = credentials[i].node;
        struct kv_cred *c = &s->creds[i];
        const char *path = conf_string(n, "path");
        const char *fmt = conf_string(n, "value_format");
        s->n_creds = i + 1;
        if (!path || !secret_name_ok(path)) {
            rc_error_set(err, RC_ERR_FATAL, "credential %s: path must be a Key Vault secret name "
                         "([0-9A-Za-z-], at most 127 characters)", credentials[i].name);
            goto fail;
        }
        if (!fmt || strcmp(fmt, "auto") == 0)
            c->format = AZ_KV_AUTO;
        else if (strcmp(fmt, "json") == 0)
            c->format = AZ_KV_JSON;
        else if (strcmp(fmt, "password") == 0)
            c->format = AZ_KV_PASSWORD;
        else {
            rc_error_set(err, RC_ERR_FATAL, "credential %s: value_format must be auto, json or password",
                         credentials[i].name);
            goto fail;
        }
        c->name = strdup(credentials[i].name);
        c->secret = strdup(path);
        if (!c->name || !c->secret || az_config_string(n, "username", &c->username, err) < 0) {
            rc_error_oom(err);
            goto fail;
        }
    }
    if (az_identity_parse(source, &id, err) < 0 ||
        az_tokens_acquire(&id, scope, s->ep.timeout_usec, &s->tok, err) < 0)
        goto fail;
    az_identity_warn(host, &id);
    az_identity_clear(&id);
    free(scope);
    *ret_state = s;
    return 0;
fail:
    az_identity_clear(&id);
    free(scope);
    az_keyvault_close(s);
    return -1;
}

static struct kv_cred *kv_find(struct kv_source *s, const char *name) {
    for (size_t i = 0; i < s->n_creds; i++)
        if (strcmp(s->creds[i].name, name) == 0)
            return &s->creds[i];
    return NULL;
}

/* The last path segment of a secret id (https://{vault}/secrets/{name}/{version}). */
static int id_version(const char *id, char *out, size_t outlen) {
    const char *slash = id ? strrchr(id, '/') : NULL;
    if (!slash || !version_ok(slash + 1) || strlen(slash + 1) >= outlen)
        return -EINVAL;
    snprintf(out, outlen, "%s", slash + 1);
    return 0;
}

static bool content_type_is_json(const char *ct) {
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strlen("application/json");
    return strncasecmp(ct, "application/json", n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* A value that holds {"username": ..., "password": ...}: *ret_inner is the parsed object
 * (the caller frees it, also on failure); *user, *pw and *pwlen move into it. */
static int inner_value(const char *what, const char *version, json_t **ret_inner, const char **user,
                       const char **pw, size_t *pwlen, struct rc_error *err) {
    struct jsonload_error jerr;
    json_t *inner = *ret_inner = jsonload_buf(*pw, *pwlen, JSON_REJECT_DUPLICATES, &jerr);
    json_t *u = json_object_get(inner, "username"), *p = json_object_get(inner, "password");
    if (!inner) {   /* position and a generic reason only: jansson's text may quote the secret */
        rc_error_set(err, RC_ERR_INVALID, "%s: version %s: value is not JSON (line %d column %d: %s)",
                     what, version, jerr.line, jerr.column, jerr.reason);
        return -1;
    }
    if (!json_is_object(inner)) {
        rc_error_set(err, RC_ERR_INVALID, "%s: version %s: value is not a JSON object", what, version);
        return -1;
    }
    if (!json_is_string(p) || json_string_length(p) == 0) {
        rc_error_set(err, RC_ERR_INVALID, "%s: version %s: value has no non-empty \"password\" string",
                     what, version);
        return -1;
    }
    if (u && !json_is_string(u) && !json_is_null(u)) {
        rc_error_set(err, RC_ERR_INVALID, "%s: version %s: \"username\" must be a string or null", what,
                     version);
        return -1;
    }
    if (json_is_string(u) && json_string_length(u) == 0) {
        rc_error_set(err, RC_ERR_INVALID, "%s: version %s: empty \"username\" (use null for the default user)",
                     what, version);
        return -1;
    }
    if (u)
        *user = json_is_string(u) ? json_string_value(u) : NULL;
    *pw = json_string_value(p);
    *pwlen = json_string_length(p);
    return 0;
}

int az_keyvault_parse_bundle(const char *body, size_t len, enum az_kv_format format, const char *username,
                             const char *what, struct rc_candidate *c, struct rc_error *err) {
    struct jsonload_error jerr;
    json_t *root = jsonload_buf(body, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *inner = NULL;
    int ret = -1;
    if (!root) {   /* position and a generic reason only: jansson's text may quote the value */
        rc_error_set(err, RC_ERR_INVALID, "%s: response is not a JSON object: malformed at line %d column %d (%s)", what,
                     jerr.line, jerr.column, jerr.reason);
        goto out;
    }
    if (!json_is_object(root)) {
        rc_error_set(err, RC_ERR_INVALID, "%s: response is not a JSON object", what);
        goto out;
    }
    json_t *value = json_object_get(root, "value");
    json_t *attrs = json_object_get(root, "attributes");
    const char *ct = json_string_value(json_object_get(root, "contentType"));
    if (id_version(json_string_value(json_object_get(root, "id")), c->version, sizeof c->version) < 0) {
        rc_error_set(err, RC_ERR_INVALID, "%s: no usable version in \"id\"", what);
        goto out;
    }
    if (json_is_false(json_object_get(attrs, "enabled"))) {
        rc_error_set(err, RC_ERR_INVALID, "%s: version %s is disabled", what, c->version);
        goto out;
    }
    if (!json_is_string(value) || json_string_length(value) == 0) {
        rc_error_set(err, RC_ERR_INVALID, "%s: version %s has no value", what, c->version);
        goto out;
    }
    json_t *exp = json_object_get(attrs, "exp");
    if (json_is_integer(exp))
        c->expires_at = (int64_t)json_integer_value(exp);

    bool as_json = format == AZ_KV_JSON || (format == AZ_KV_AUTO && content_type_is_json(ct));
    const char *user = username;
    const char *pw = json_string_value(value);
    size_t pwlen = json_string_length(value);
    if (as_json && inner_value(what, c->version, &inner, &user, &pw, &pwlen, err) < 0)
        goto out;
    c->password = secret_new(pw, pwlen);
    c->username = user ? strdup(user) : NULL;
    if (!c->password || (user && !c->username)) {
        c->password = secret_free(c->password);
        free(c->username);
        c->username = NULL;
        rc_error_oom(err);
        goto out;
    }
    ret = 0;
out:
    json_decref(inner);   /* jansson's free wipes (secret_init) */
    json_decref(root);
    return ret;
}

/* GET one version ("" = latest) into c. */
static int kv_get(struct kv_source *s, const struct kv_cred *kc, const char *version,
                  struct rc_candidate *c, struct rc_error *err) {
    char url[512], what[256];
    snprintf(url, sizeof url, "/secrets/%s%s%s?api-version=%s", kc->secret, version[0] ? "/" : "", version,
             s->api_version);
    snprintf(what, sizeof what, "GET secrets/%s%s%s", kc->secret, version[0] ? "/" : "", version);
    struct http_response r = { 0 };
    if (az_authed_request(s->host, &s->ep, s->tok, "GET", url, &r, err) < 0)
        return -1;
    int ret;
    if (r.status == 200)
        ret = az_keyvault_parse_bundle(r.body, r.body_len, kc->format, kc->username, what, c, err);
    else {
        const struct secret *served[] = { kc->served };
        ret = az_service_error_scrubbed(err, what, &r, served, 1);
        if (r.status == 401) {
            char ch[512];
            az_challenge_describe(&r, ch, sizeof ch);
            size_t l = strlen(err->message);
            snprintf(err->message + l, sizeof err->message - l, "%s", ch);
        }
    }
    http_response_clear(&r);
    return ret;
}

int az_keyvault_parse_versions(const char *body, size_t len, const char *latest, const char *what,
                               struct az_kv_version *best, char **ret_next, struct rc_error *err) {
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *items = json_object_get(root, "value");
    if (!json_is_array(items)) {
        json_decref(root);
        return rc_error_set(err, RC_ERR_INVALID, "%s: no \"value\" list", what);
    }
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        json_t *a = json_object_get(it, "attributes");
        struct az_kv_version v = { 0 };
        if (id_version(json_string_value(json_object_get(it, "id")), v.id, sizeof v.id) < 0 ||
            strcmp(v.id, latest) == 0 || !json_is_true(json_object_get(a, "enabled")))
            continue;
        json_t *cr = json_object_get(a, "created"), *up = json_object_get(a, "updated");
        v.created = json_is_integer(cr) ? (int64_t)json_integer_value(cr) : 0;
        v.updated = json_is_integer(up) ? (int64_t)json_integer_value(up) : 0;
        if (!best->id[0] || v.created > best->created ||
            (v.created == best->created && v.updated > best->updated))
            *best = v;
    }
    const char *nl = json_string_value(json_object_get(root, "nextLink"));
    char *next = nl && nl[0] ? strdup(nl) : NULL;
    bool oom = nl && nl[0] && !next;
    json_decref(root);
    if (oom)
        return rc_error_oom(err);
    *ret_next = next;
    return 0;
}

/* The newest enabled version other than `latest`, from the paged version list. 0 and
 * *ret (ret->id "" when there is none), or -1 with err. The whole list gets two of the
 * source's timeouts: the first publish waits for it, and a vault that answers every page
 * slowly, each pointing at another, must not hold it back for KV_MAX_PAGES timeouts. */
static int kv_pick_previous(struct kv_source *s, const struct kv_cred *kc, const char *latest,
                            struct az_kv_version *ret, struct rc_error *err) {
    char first[512];
    char *next = NULL;
    struct az_kv_version best = { .id = "" };
    uint64_t deadline = az_now_mono() + 2 * s->ep.timeout_usec;
    int r = 0;
    snprintf(first, sizeof first, "/secrets/%s/versions?api-version=%s&maxresults=25", kc->secret, s->api_version);
    for (int page = 0; page < KV_MAX_PAGES; page++) {
        if (page > 0 && az_now_mono() >= deadline) {
            r = rc_error_set(err, RC_ERR_TRANSIENT, "secrets/%s/versions: still listing after %d pages "
                             "and %llu ms; given up", kc->secret, page,
                             (unsigned long long)(2 * s->ep.timeout_usec / 1000));
            break;
        }
        struct http_response resp = { 0 };
        char what[200];
        snprintf(what, sizeof what, "GET secrets/%s/versions", kc->secret);
        if (az_authed_request(s->host, &s->ep, s->tok, "GET", next ? next : first, &resp, err) < 0) {
            r = -1;
            break;
        }
        if (resp.status != 200) {
            r = az_service_error(err, what, &resp);
            http_response_clear(&resp);
            break;
        }
        char *nl = NULL;
        r = az_keyvault_parse_versions(resp.body, resp.body_len, latest, what, &best, &nl, err);
        http_response_clear(&resp);
        free(next);
        next = NULL;
        if (r < 0)
            break;
        if (nl) {
            /* Only on the vault's own scheme, host and port (docs/design.md §14.4). */
            if (!http_same_origin(nl, s->ep.base_url)) {
                s->host->log(s->host->h, LOG_WARNING, kc->name,
                             "secrets/%s/versions: nextLink points to another origin; not followed", kc->secret);
                free(nl);
                break;
            }
            next = nl;
        }
        if (!next)
            break;
    }
    free(next);
    if (r == 0)
        *ret = best;
    return r;
}

int az_keyvault_fetch(void *state, const struct rc_credential *cred,
                      struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err) {
    struct kv_source *s = state;
    struct kv_cred *kc = kv_find(s, cred->name);
    struct rc_candidate c = { .expires_at = RC_NO_EXPIRY, .rotated_at = INT64_MIN, .role = RC_CAND_CURRENT };
    if (!kc)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s is not known to this source", cred->name);
    if (kv_get(s, kc, "", &c, err) < 0)
        return -1;
    ret[0] = c;
    secret_free(kc->served);
    kc->served = secret_dup(c.password);   /* NULL when out of memory: scrubbed less */
    if (kc->hint_done)
        return 1;

    /* First look since open: find the start-up hint. Its failure costs nothing but the
     * hint (a missing secrets/list permission is common and fine). */
    kc->hint_done = true;
    struct az_kv_version prev;
    struct rc_error herr = { 0 };
    if (kv_pick_previous(s, kc, c.version, &prev, &herr) < 0) {
        s->host->log(s->host->h, LOG_NOTICE, kc->name, "no start-up hint for previous: %s", herr.message);
        return 1;
    }
    if (!prev.id[0])
        return 1;
    struct rc_candidate h = { .expires_at = RC_NO_EXPIRY, .rotated_at = INT64_MIN, .role = RC_CAND_HINT };
    if (kv_get(s, kc, prev.id, &h, &herr) < 0) {
        s->host->log(s->host->h, LOG_NOTICE, kc->name, "no start-up hint for previous: %s", herr.message);
        return 1;
    }
    ret[1] = h;
    return 2;
}
