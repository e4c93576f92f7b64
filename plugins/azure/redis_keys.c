/* The `azure-redis-keys` source: the two access keys of an Azure cache (DESIGN §3).
 *
 *   POST {management_url}{path}/listKeys?api-version=...  -> {"primaryKey","secondaryKey"}
 *
 * `path` is the resource id of an Azure Managed Redis database
 * (/subscriptions/S/resourceGroups/G/providers/Microsoft.Cache/redisEnterprise/C/databases/D)
 * or of a classic Azure Cache for Redis (.../providers/Microsoft.Cache/redis/N). Both keys
 * are candidates in the same cycle: the `prefer`red one as RC_CAND_CURRENT, the other as
 * RC_CAND_PEER, so the host publishes the one Redis accepts (the preferred one when both
 * are) and the other as `previous` when it validated too: the primary/secondary failover
 * of Microsoft's guidance, done once for every client on the host.
 *
 * Versions are "primary-" / "secondary-" + the host's keyed hash of the key: the key
 * never shows, and a regenerated key is a new version. Errors: 401 retried once with a
 * new token, then AUTH; 403 (RBAC: the identity needs listKeys, e.g. the Contributor
 * role or a custom role with .../listKeys/action) AUTH; 404 NOT_FOUND; 409/429/5xx
 * TRANSIENT; 400 FATAL.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "azure.h"

#define RK_DEFAULT_MANAGEMENT_URL "https://management.azure.com"
#define RK_DEFAULT_SCOPE "https://management.azure.com/.default"
/* Stable api-versions that have listKeys (Azure/azure-rest-api-specs). */
#define RK_API_ENTERPRISE "2025-04-01"
#define RK_API_CLASSIC "2024-11-01"

struct rk_cred {
    char *name;
    char *path;          /* resource id, no trailing '/' */
    const char *short_path;  /* into path, from "providers/" on, for messages */
    const char *api_version;
    bool prefer_secondary;
    char *username;
};

struct rk_source {
    const struct rc_host *host;
    struct az_endpoint ep;
    char *api_version;   /* configured, or NULL: by resource type */
    struct az_token_ref *tok;
    struct rk_cred *creds;
    size_t n_creds;
};

const struct config_key az_redis_keys_source_keys[] = {
    { .name = "management_url", .type = CONFIG_T_STRING, .default_value = RK_DEFAULT_MANAGEMENT_URL },
    { .name = "api_version", .type = CONFIG_T_STRING },
    { .name = "scope", .type = CONFIG_T_STRING },
    { .name = "timeout", .type = CONFIG_T_DURATION, .default_value = AZ_DEFAULT_TIMEOUT },
    { .name = "identity", .type = CONFIG_T_GROUP, .group_keys = az_identity_keys },
    AZ_TLS_KEYS,
    { .name = NULL },
};

const struct config_key az_redis_keys_credential_keys[] = {
    { .name = "path", .type = CONFIG_T_STRING, .required = true },
    { .name = "prefer", .type = CONFIG_T_STRING, .default_value = "primary" },
    { .name = "username", .type = CONFIG_T_STRING },
    { .name = NULL },
};

void az_redis_keys_close(void *state) {
    struct rk_source *s = state;
    if (!s)
        return;
    az_endpoint_close(&s->ep);
    az_tokens_release(s->tok);
    for (size_t i = 0; i < s->n_creds; i++) {
        free(s->creds[i].name);
        free(s->creds[i].path);
        free(s->creds[i].username);
    }
    free(s->creds);
    free(s->api_version);
    free(s);
}

/* Splits a resource id into its segments and checks the two shapes we know. Returns
 * the api-version default for it, or NULL when it is neither. */
static const char *resource_kind(const char *path, const char **ret_short) {
    char buf[1024];
    const char *seg[16];
    size_t n = 0;
    if (path[0] != '/' || strlen(path) >= sizeof buf)
        return NULL;
    for (const char *p = path; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!isalnum(c) && c != '/' && c != '-' && c != '_' && c != '.' && c != '(' && c != ')')
            return NULL;
    }
    if (strstr(path, "//") || strstr(path, "/./") || strstr(path, "/../"))
        return NULL;
    snprintf(buf, sizeof buf, "%s", path + 1);
    for (char *save = NULL, *t = strtok_r(buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (n == sizeof seg / sizeof seg[0])
            return NULL;
        seg[n++] = t;
    }
    if (n < 8 || strcasecmp(seg[0], "subscriptions") || strcasecmp(seg[2], "resourceGroups") ||
        strcasecmp(seg[4], "providers") || strcasecmp(seg[5], "Microsoft.Cache"))
        return NULL;
    *ret_short = strcasestr(path, "/providers/") + 1;
    if (n == 8 && strcasecmp(seg[6], "redis") == 0)
        return RK_API_CLASSIC;
    if (n == 10 && strcasecmp(seg[6], "redisEnterprise") == 0 && strcasecmp(seg[8], "databases") == 0)
        return RK_API_ENTERPRISE;
    return NULL;
}

/* https://management.<cloud>/.default for the management URL's host, else the public one. */
static char *rk_default_scope(const char *url) {
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t hl = strcspn(h, ":/");
    char *out = NULL;
    if (strncasecmp(url, "https://", 8) == 0 && hl > 11 && strncasecmp(h, "management.", 11) == 0 &&
        asprintf(&out, "https://%.*s/.default", (int)hl, h) < 0)
        out = NULL;
    return out ? out : strdup(RK_DEFAULT_SCOPE);
}

int az_redis_keys_open(const struct rc_host *host, const struct config_node *source,
                       const struct rc_credential *credentials, size_t n_credentials,
                       void **ret_state, struct rc_error *err) {
    struct rk_source *s = calloc(1, sizeof *s);
    struct az_identity id = { 0 };
    char *scope = NULL;
    if (!s)
        return rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
    s->host = host;
    if (az_endpoint_open(host, source, "management_url", &s->ep, err) < 0 ||
        az_config_string(source, "api_version", &s->api_version, err) < 0)
        goto fail;
    const char *sc = config_node_string(source, "scope");
    scope = sc && sc[0] ? strdup(sc) : rk_default_scope(s->ep.base_url);
    s->creds = calloc(n_credentials ? n_credentials : 1, sizeof *s->creds);
    if (!scope || !s->creds) {
        rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
        goto fail;
    }
    for (const char *p = s->api_version; p && *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.') {
            rc_error_set(err, RC_ERR_FATAL, "api_version \"%s\": not an api-version", s->api_version);
            goto fail;
        }
    for (size_t i = 0; i < n_credentials; i++) {
        const struct config_node *n = &credentials[i].node;
        struct rk_cred *c = &s->creds[i];
        const char *path = config_node_string(n, "path");
        const char *prefer = config_node_string(n, "prefer");
        s->n_creds = i + 1;
        c->name = strdup(credentials[i].name);
        c->path = path ? strdup(path) : NULL;
        if (!c->name || (path && !c->path)) {
            rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
            goto fail;
        }
        for (size_t l = c->path ? strlen(c->path) : 0; l > 1 && c->path[l - 1] == '/'; l--)
            c->path[l - 1] = '\0';
        const char *kind = c->path ? resource_kind(c->path, &c->short_path) : NULL;
        if (!kind) {
            rc_error_set(err, RC_ERR_FATAL, "credential %s: path must be the resource id of a cache: "
                         "/subscriptions/S/resourceGroups/G/providers/Microsoft.Cache/redisEnterprise/C/databases/D "
                         "or .../providers/Microsoft.Cache/redis/NAME", credentials[i].name);
            goto fail;
        }
        c->api_version = s->api_version ? s->api_version : kind;
        if (!prefer || strcmp(prefer, "primary") == 0)
            c->prefer_secondary = false;
        else if (strcmp(prefer, "secondary") == 0)
            c->prefer_secondary = true;
        else {
            rc_error_set(err, RC_ERR_FATAL, "credential %s: prefer must be \"primary\" or \"secondary\"",
                         credentials[i].name);
            goto fail;
        }
        if (az_config_string(n, "username", &c->username, err) < 0)
            goto fail;
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
    az_redis_keys_close(s);
    return -1;
}

static const struct rk_cred *rk_find(const struct rk_source *s, const char *name) {
    for (size_t i = 0; i < s->n_creds; i++)
        if (strcmp(s->creds[i].name, name) == 0)
            return &s->creds[i];
    return NULL;
}

/* One key into a candidate: "<which>-" + keyed hash of the key. */
static int rk_candidate(const struct rk_source *s, const struct rk_cred *rc, const char *which, json_t *key,
                        enum rc_cand_role role, struct rc_candidate *c, struct rc_error *err) {
    char v[RC_VERSION_MAX];
    *c = (struct rc_candidate){ .expires_at = INT64_MIN, .role = role };
    int r = s->host->keyed_version(s->host->h, json_string_value(key), json_string_length(key), v);
    if (r < 0)
        return rc_error_set(err, RC_ERR_TRANSIENT, "cannot compute a version: %s", strerror(-r));
    snprintf(c->version, sizeof c->version, "%s-%s", which, v);
    c->password = secret_new(json_string_value(key), json_string_length(key));
    c->username = rc->username ? strdup(rc->username) : NULL;
    if (!c->password || (rc->username && !c->username)) {
        c->password = secret_free(c->password);
        free(c->username);
        c->username = NULL;
        return rc_error_set(err, RC_ERR_TRANSIENT, "out of memory");
    }
    return 0;
}

int az_redis_keys_fetch(void *state, const struct rc_credential *cred,
                        struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err) {
    struct rk_source *s = state;
    const struct rk_cred *rc = rk_find(s, cred->name);
    char url[1200], what[700];
    if (!rc)
        return rc_error_set(err, RC_ERR_FATAL, "credential %s is not known to this source", cred->name);
    snprintf(url, sizeof url, "%s/listKeys?api-version=%s", rc->path, rc->api_version);
    snprintf(what, sizeof what, "POST %s/listKeys", rc->short_path);

    struct http_response r = { 0 };
    if (az_authed_request(s->host, &s->ep, s->tok, "POST", url, &r, err) < 0)
        return -1;
    if (r.status != 200) {
        az_service_error(err, what, &r);
        if (r.status == 401) {
            char ch[512];
            az_challenge_describe(&r, ch, sizeof ch);
            size_t l = strlen(err->message);
            snprintf(err->message + l, sizeof err->message - l, "%s", ch);
        }
        http_response_clear(&r);
        return -1;
    }
    json_t *root = json_loadb(r.body, r.body_len, JSON_REJECT_DUPLICATES, NULL);
    http_response_clear(&r);
    json_t *pk = json_object_get(root, "primaryKey"), *sk = json_object_get(root, "secondaryKey");
    int n = -1;
    if (!json_is_object(root))
        rc_error_set(err, RC_ERR_INVALID, "%s: response is not a JSON object", what);
    else if (!json_is_string(pk) || !json_is_string(sk) || !json_string_length(pk) || !json_string_length(sk))
        rc_error_set(err, RC_ERR_INVALID, "%s: response lacks primaryKey or secondaryKey "
                     "(is access key authentication disabled on the cache?)", what);
    else {
        json_t *first = rc->prefer_secondary ? sk : pk, *second = rc->prefer_secondary ? pk : sk;
        const char *fn = rc->prefer_secondary ? "secondary" : "primary";
        const char *sn = rc->prefer_secondary ? "primary" : "secondary";
        if (rk_candidate(s, rc, fn, first, RC_CAND_CURRENT, &ret[0], err) == 0) {
            if (rk_candidate(s, rc, sn, second, RC_CAND_PEER, &ret[1], err) == 0)
                n = 2;
            else {
                free(ret[0].username);
                ret[0].username = NULL;
                ret[0].password = secret_free(ret[0].password);
            }
        }
    }
    json_decref(root);   /* jansson's free wipes the keys (secret_init) */
    return n;
}
