/* azure.so: the plugin object and the helpers its three source types share.
 * See azure.h for the threading and error rules. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "azure.h"
#include "rctime.h"

/* ---- clock ---------------------------------------------------------------------- */

static int64_t (*clock_real)(void) = rctime_real_usec;
static uint64_t (*clock_mono)(void) = rctime_mono_usec;

int64_t az_now_real(void) {
    return clock_real();
}

uint64_t az_now_mono(void) {
    return clock_mono();
}

void az_clock_override(int64_t (*real)(void), uint64_t (*mono)(void)) {
    clock_real = real ? real : rctime_real_usec;
    clock_mono = mono ? mono : rctime_mono_usec;
}

/* ---- config pieces ------------------------------------------------------------------ */

int az_config_string(const struct rc_config_node *n, const char *key, char **ret, struct rc_error *err) {
    const char *v = conf_string(n, key);
    *ret = NULL;
    if (!v || !v[0])
        return 0;
    *ret = strdup(v);
    if (!*ret)
        return rc_error_oom(err);
    return 0;
}

void az_tls_clear(struct az_tls *t) {
    free(t->ca_file);
    free(t->ca_path);
    free(t->cert_file);
    free(t->key_file);
    free(t->server_name);
    memset(t, 0, sizeof *t);
}

int az_tls_parse(const struct rc_config_node *n, struct az_tls *ret, struct rc_error *err) {
    struct az_tls t = { 0 };
    if (az_config_string(n, "ca_file", &t.ca_file, err) < 0 ||
        az_config_string(n, "ca_path", &t.ca_path, err) < 0 ||
        az_config_string(n, "cert_file", &t.cert_file, err) < 0 ||
        az_config_string(n, "key_file", &t.key_file, err) < 0 ||
        az_config_string(n, "server_name", &t.server_name, err) < 0) {
        az_tls_clear(&t);
        return -1;
    }
    t.insecure = conf_bool(n, "tls_insecure_skip_verify");
    if (!t.cert_file != !t.key_file) {
        az_tls_clear(&t);
        return rc_error_set(err, RC_ERR_FATAL, "cert_file and key_file go together");
    }
    *ret = t;
    return 0;
}

struct http_tls az_tls_view(const struct az_tls *t) {
    return (struct http_tls){ .ca_file = t->ca_file, .ca_path = t->ca_path,
                              .cert_file = t->cert_file, .key_file = t->key_file,
                              .server_name = t->server_name,
                              .insecure_skip_verify = t->insecure };
}

/* ---- HTTP helpers ------------------------------------------------------------------ */

void az_wipe_free(char *p, size_t len) {
    if (p) {
        explicit_bzero(p, len);
        free(p);
    }
}

char *az_urlencode(const char *s, size_t len, size_t *ret_len) {
    static const char hex[] = "0123456789ABCDEF";
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    char *out = malloc(len * 3 + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
            out[o++] = (char)c;
        else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    *ret_len = o;
    return out;
}

void az_clean_text(const char *s, size_t max, char *out, size_t outlen) {
    size_t o = 0;
    if (!outlen)
        return;
    for (size_t i = 0; s && s[i] && i < max && o + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n' || c == '\t')
            c = ' ';
        if (c < 0x20 || c == 0x7f)
            continue;
        out[o++] = (char)c;
    }
    /* Trim trailing blanks. */
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

void az_scrub(char *msg, const struct secret *s) {
    const char *needle = s ? secret_data(s) : NULL;
    size_t n = s ? secret_len(s) : 0;
    char *p;
    if (!msg || !needle || n < 4)
        return;
    while ((p = memmem(msg, strlen(msg), needle, n))) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + n, strlen(p + n) + 1);
    }
}

static bool b64url_char(char c) {
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

/* Every JWT-shaped run ("eyJ" and 17 or more base64url characters or dots): the access
 * tokens and assertions Azure deals in are JWTs, and which one a text echoes (the bearer
 * token of the request, an earlier one) is not known here. */
static void scrub_jwts(char *msg) {
    for (char *p = msg; (p = strstr(p, "eyJ"));) {
        size_t n = 3;
        while (b64url_char(p[n]))
            n++;
        if (n < 20) {
            p += n;
            continue;
        }
        memcpy(p, "***", 3);
        memmove(p + 3, p + n, strlen(p + n) + 1);
        p += 3;
    }
}

void az_clean_scrubbed(const char *s, size_t max, const struct secret *const *sec, size_t nsec,
                       char *out, size_t outlen) {
    if (!s) {
        az_clean_text(s, max, out, outlen);
        return;
    }
    size_t n = strlen(s);
    char *dup = malloc(n + 1);
    if (!dup) {
        if (outlen)
            out[0] = '\0';
        return;
    }
    memcpy(dup, s, n + 1);
    for (size_t i = 0; i < nsec; i++)
        az_scrub(dup, sec[i]);
    scrub_jwts(dup);
    az_clean_text(dup, max, out, outlen);
    az_wipe_free(dup, n + 1);
}

uint64_t az_retry_after(const struct http_response *r) {
    uint64_t usec = 0;
    const char *ms = http_response_header(r, "x-ms-retry-after-ms");
    if (ms) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(ms, &end, 10);
        if (!errno && end != ms && v < 86400000ULL)
            return (uint64_t)v * 1000ULL;
    }
    if (http_retry_after_parse(http_response_header(r, "retry-after"), &usec) == 0)
        return usec;
    return 0;
}

int az_transport_error(struct rc_error *err, int r, const char *msg) {
    return rc_error_set(err, rc_transport_class(r), "%s", msg);
}

int az_service_error(struct rc_error *err, const char *what, const struct http_response *r) {
    return az_service_error_scrubbed(err, what, r, NULL, 0);
}

int az_service_error_scrubbed(struct rc_error *err, const char *what, const struct http_response *r,
                              const struct secret *const *sec, size_t nsec) {
    char code[96] = "", inner[96] = "", msg[240] = "";
    json_t *root = r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    json_t *e = json_object_get(root, "error");
    if (json_is_object(e)) {
        /* Key Vault and ARM: {"error": {"code", "message", "innererror": {"code"}}} */
        az_clean_scrubbed(json_string_value(json_object_get(e, "code")), 80, sec, nsec, code, sizeof code);
        az_clean_scrubbed(json_string_value(json_object_get(e, "message")), 200, sec, nsec, msg, sizeof msg);
        json_t *ie = json_object_get(e, "innererror");
        az_clean_scrubbed(json_string_value(json_object_get(ie, "code")), 80, sec, nsec, inner, sizeof inner);
    } else if (json_is_string(e)) {
        /* OAuth style: {"error": "...", "error_description": "..."} */
        az_clean_scrubbed(json_string_value(e), 80, sec, nsec, code, sizeof code);
        az_clean_scrubbed(json_string_value(json_object_get(root, "error_description")), 200, sec, nsec,
                          msg, sizeof msg);
    }
    json_decref(root);

    long st = r->status;
    enum rc_err_class cls;
    const char *hint = "";
    uint64_t retry_after = 0;
    if (st >= 300 && st < 400) {
        cls = RC_ERR_FATAL;
        hint = " (redirects are not followed: check the configured URL)";
    } else if (st == 400)
        cls = RC_ERR_FATAL;
    else if (st == 401)
        cls = RC_ERR_AUTH;
    else if (st == 403) {
        if (strcmp(inner, "SecretDisabled") == 0) {
            cls = RC_ERR_INVALID;
            hint = " (a disabled version is not a candidate)";
        } else
            cls = RC_ERR_AUTH;
    } else if (st == 404)
        cls = RC_ERR_NOT_FOUND;
    else if (st == 408 || st == 409 || st == 429 || st >= 500) {
        cls = RC_ERR_TRANSIENT;
        retry_after = az_retry_after(r);
    } else
        cls = RC_ERR_INVALID;

    rc_error_set(err, cls, "%s: %ld%s%s%s%s%s%s%s", what, st, code[0] ? " " : "", code,
                 inner[0] ? "/" : "", inner, msg[0] ? ": " : "", msg, hint);
    err->retry_after_usec = retry_after;
    return -1;
}

/* ---- endpoints --------------------------------------------------------------------- */

int az_endpoint_open(const struct rc_host *host, const struct rc_config_node *source,
                     const char *url_key, struct az_endpoint *ret, struct rc_error *err) {
    struct az_endpoint e = { 0 };
    const char *url = conf_string(source, url_key);
    char msg[512];
    if (!url || !url[0])
        return rc_error_set(err, RC_ERR_FATAL, "%s is required", url_key);
    e.base_url = strdup(url);
    if (!e.base_url)
        return rc_error_oom(err);
    for (size_t n = strlen(e.base_url); n > 0 && e.base_url[n - 1] == '/'; n--)
        e.base_url[n - 1] = '\0';
    if (strchr(e.base_url, '?') || strchr(e.base_url, '#')) {
        free(e.base_url);
        return rc_error_set(err, RC_ERR_FATAL, "%s %s: must not carry a query or fragment", url_key, url);
    }
    e.timeout_usec = conf_duration(source, "timeout");
    if (az_tls_parse(source, &e.tls, err) < 0) {
        free(e.base_url);
        return -1;
    }
    struct http_tls t = az_tls_view(&e.tls);
    if (http_client_new(e.base_url, &t, e.timeout_usec, &e.http, msg, sizeof msg) < 0) {
        az_endpoint_close(&e);
        return rc_error_set(err, RC_ERR_FATAL, "%s: %s", url_key, msg);
    }
    if (e.tls.insecure)
        host->log(host->h, LOG_WARNING, NULL,
                  "tls_insecure_skip_verify is on: the certificate of %s is not checked", e.base_url);
    *ret = e;
    return 0;
}

void az_endpoint_close(struct az_endpoint *e) {
    e->http = http_client_free(e->http);
    free(e->base_url);
    az_tls_clear(&e->tls);
    memset(e, 0, sizeof *e);
}

/* ---- the plugin ------------------------------------------------------------------- */

static const struct rc_source_type azure_types[] = {
    {
        .type = "azure-keyvault",
        .source_keys = az_keyvault_source_keys,
        .credential_keys = az_keyvault_credential_keys,
        .open = az_keyvault_open,
        .fetch = az_keyvault_fetch,
        .close = az_keyvault_close,
    },
    {
        .type = "azure-entra",
        .source_keys = az_entra_source_keys,
        .credential_keys = az_entra_credential_keys,
        .open = az_entra_open,
        .fetch = az_entra_fetch,
        .next_check = az_entra_next_check,
        .close = az_entra_close,
    },
    {
        .type = "azure-redis-keys",
        .source_keys = az_redis_keys_source_keys,
        .credential_keys = az_redis_keys_credential_keys,
        .open = az_redis_keys_open,
        .fetch = az_redis_keys_fetch,
        .caps = RC_CAP_ROTATE_OTHER_KEY,
        .rotate_self = az_redis_keys_rotate,
        .close = az_redis_keys_close,
    },
};

const struct rc_services *rc_svc;   /* host_services.h */

RC_PLUGIN_EXPORT const struct rc_plugin redis_creds_plugin = {
    RC_PLUGIN_HEADER,
    .name = "azure",
    .services = &rc_svc,
    .types = azure_types,
    .n_types = sizeof azure_types / sizeof azure_types[0],
};

/* ---- authenticated requests ------------------------------------------------------ */

const struct az_refresh az_data_plane_refresh = { .ratio = 0.7, .margin_usec = 300 * 1000000ULL };

#define DATA_PLANE_BODY_MAX (1024 * 1024)

static int bearer_request(struct az_endpoint *ep, const struct az_token *t, const char *method,
                          const char *url, const char *body, struct http_response *ret,
                          struct rc_error *err) {
    size_t len = strlen("Bearer ") + secret_len(t->value) + 1;
    char *auth = malloc(len);
    if (!auth)
        return rc_error_oom(err);
    snprintf(auth, len, "Bearer %s", secret_data(t->value));
    struct http_header h[] = {
        { "Authorization", auth, true },
        { "Accept", "application/json", false },
        { "Content-Type", "application/json", false },
    };
    struct http_request req = { .method = method, .url = url, .headers = h, .n_headers = body ? 3 : 2,
                                .body = body, .body_len = body ? strlen(body) : 0,
                                .max_body = DATA_PLANE_BODY_MAX };
    char msg[512];
    int r = http_request(ep->http, &req, ret, msg, sizeof msg);
    az_wipe_free(auth, len);
    if (r < 0)
        return az_transport_error(err, r, msg);
    return 0;
}

int az_authed_request(const struct rc_host *host, struct az_endpoint *ep, struct az_token_ref *tok,
                      const char *method, const char *url, struct http_response *ret,
                      struct rc_error *err) {
    return az_authed_request_body(host, ep, tok, method, url, NULL, ret, err);
}

int az_authed_request_body(const struct rc_host *host, struct az_endpoint *ep, struct az_token_ref *tok,
                           const char *method, const char *url, const char *body,
                           struct http_response *ret, struct rc_error *err) {
    struct az_token t = { 0 };
    if (az_token_get(tok, host, &az_data_plane_refresh, AZ_TOKEN_STALE_OK, &t, err) < 0)
        return -1;
    int r = bearer_request(ep, &t, method, url, body, ret, err);
    az_token_clear(&t);
    if (r < 0 || ret->status != 401)
        return r;
    /* Refused: drop this answer and try once with a token asked for anew. */
    host->log(host->h, LOG_DEBUG, NULL, "%s %s: 401; asking for a new token and trying once more", method, url);
    struct http_response first = *ret;
    memset(ret, 0, sizeof *ret);
    if (az_token_get(tok, host, &az_data_plane_refresh, AZ_TOKEN_FORCE, &t, err) < 0) {
        http_response_clear(&first);   /* the identity's own failure says more */
        return -1;
    }
    r = bearer_request(ep, &t, method, url, body, ret, err);
    az_token_clear(&t);
    if (r < 0) {
        *ret = first;
        return 0;
    }
    http_response_clear(&first);
    return 0;
}

/* Copies the quoted value of `name="..."` out of a challenge. */
static void challenge_param(const char *h, const char *name, char *out, size_t outlen) {
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = h; (p = strstr(p, name)); p += nl) {
        if ((p != h && isalnum((unsigned char)p[-1])) || p[nl] != '=' || p[nl + 1] != '"')
            continue;
        const char *v = p + nl + 2, *end = strchr(v, '"');
        if (!end)
            return;
        char tmp[256];
        size_t n = (size_t)(end - v) < sizeof tmp - 1 ? (size_t)(end - v) : sizeof tmp - 1;
        memcpy(tmp, v, n);
        tmp[n] = '\0';
        az_clean_text(tmp, 200, out, outlen);
        return;
    }
}

void az_challenge_describe(const struct http_response *r, char *out, size_t outlen) {
    const char *h = http_response_header(r, "www-authenticate");
    char res[220], scope[220], auth[220];
    out[0] = '\0';
    if (!h)
        return;
    challenge_param(h, "resource", res, sizeof res);
    challenge_param(h, "scope", scope, sizeof scope);
    challenge_param(h, "authorization", auth, sizeof auth);
    if (!auth[0])
        challenge_param(h, "authorization_uri", auth, sizeof auth);
    if (res[0] || scope[0])
        snprintf(out, outlen, "; the service wants a token for %s%s%s", res[0] ? res : scope,
                 auth[0] ? " from " : "", auth);
}
