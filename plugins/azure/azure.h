/* azure: what the three Azure source types of azure.so share (internal header).
 *
 * azure.so serves `azure-keyvault`, `azure-entra` and `azure-redis-keys` (docs/design.md §4.4).
 * Each source block names an identity (`identity = { type = ...; }`); tokens for an
 * (identity, scope) pair live in one process-wide cache shared by every source instance
 * of the three types, so three sources using one managed identity for the management
 * scope make one token request, not three.
 *
 * Threads: open()/close() run on the loop thread, fetch()/next_check() on workers, and
 * different source instances run in parallel. The cache has a global mutex for its table
 * and one mutex per entry held while that entry talks to its token endpoint, so a second
 * instance that wants the same token waits for the first instead of asking again. Nothing
 * here holds a lock while calling back into the host except the entry lock around a
 * debug log line.
 *
 * Errors are rc_error classes (plugin.h); messages name the endpoint, the HTTP status and
 * the service's error code, never a token, a key or a secret value.
 */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "plugin.h"
#include "secret.h"
#include "host_services.h"
#include "http.h"

#define AZ_DEFAULT_TIMEOUT "10s"
#define AZ_TOKEN_MAX_LEN (32 * 1024)     /* an access token; Entra's are ~1.5-4 KiB */
#define AZ_ID_MAX 256                    /* client/object/tenant ids, resource ids */

/* ---- clock ------------------------------------------------------------------------ */

/* Wall clock (unix usec) and CLOCK_MONOTONIC (usec). Tests replace them. */
int64_t az_now_real(void);
uint64_t az_now_mono(void);
void az_clock_override(int64_t (*real)(void), uint64_t (*mono)(void));   /* NULL: system */

/* ---- config pieces ------------------------------------------------------------------ */

extern const struct rc_config_key az_identity_keys[];

/* TLS vocabulary of docs/design.md §4.2, for a source block or the identity block. */
#define AZ_TLS_KEYS                                                                 \
    { .name = "ca_file", .type = RC_CONF_T_STRING },                                 \
    { .name = "ca_path", .type = RC_CONF_T_STRING },                                 \
    { .name = "cert_file", .type = RC_CONF_T_STRING },                               \
    { .name = "key_file", .type = RC_CONF_T_STRING },                                \
    { .name = "server_name", .type = RC_CONF_T_STRING },                             \
    { .name = "tls_insecure_skip_verify", .type = RC_CONF_T_BOOL, .default_value = "false" }

struct az_tls {
    char *ca_file, *ca_path, *cert_file, *key_file, *server_name;
    bool insecure;
};
int az_tls_parse(const struct rc_config_node *n, struct az_tls *ret, struct rc_error *err);
void az_tls_clear(struct az_tls *t);
struct http_tls az_tls_view(const struct az_tls *t);

/* An owned copy of a string key ("" counts as unset): NULL when unset. */
int az_config_string(const struct rc_config_node *n, const char *key, char **ret, struct rc_error *err);

/* ---- identity ----------------------------------------------------------------------- */

enum az_id_type { AZ_ID_MANAGED = 0, AZ_ID_WORKLOAD, AZ_ID_CLIENT_SECRET };
enum az_mi_kind { AZ_MI_IMDS = 0, AZ_MI_APP_SERVICE, AZ_MI_ARC };

/* An identity with config and environment resolved (config wins). */
struct az_identity {
    enum az_id_type type;
    enum az_mi_kind mi;                 /* managed only */
    char *client_id, *object_id, *resource_id, *tenant_id;
    char *authority_host;               /* workload, client_secret: no trailing '/' */
    char *imds_url;                     /* managed + IMDS: no trailing '/' */
    char *identity_endpoint;            /* managed + App Service or Azure Arc */
    struct secret *identity_header;     /* App Service's X-IDENTITY-HEADER value */
    char *arc_token_dir;                /* managed + Azure Arc: where challenge files may be */
    char *federated_token_file;         /* workload */
    char *client_secret_file;           /* client_secret; NULL: $CREDENTIALS_DIRECTORY */
    struct az_tls tls;                  /* for the token endpoint */
    char *key;                          /* cache key: every field above but secrets */
    char *describe;                     /* "managed identity (IMDS, client_id ...)" for messages */
};

/* Reads the `identity` group of a source (and the environment). 0, or -1 with err
 * (FATAL for a configuration that cannot work). */
int az_identity_parse(const struct rc_config_node *source, struct az_identity *ret,
                      struct rc_error *err);
void az_identity_clear(struct az_identity *id);
/* Warns (at every open) when the identity's TLS checks are off. */
void az_identity_warn(const struct rc_host *host, const struct az_identity *id);

/* Azure Arc-enabled servers (docs/azure.md): the local agent (himds) answers a token
 * request with 401 and `WWW-Authenticate: Basic realm=<file>`; whoever can read that file
 * (root and the himds group) repeats the request with `Authorization: Basic <content>`.
 * The file is trusted only in AZ_ARC_TOKEN_DIR (identity.arc_token_dir, for tests), as a
 * plain `<name>.key` of at most AZ_ARC_KEY_MAX bytes, as MSAL does. */
#define AZ_ARC_TOKEN_DIR "/var/opt/azcmagent/tokens"
#define AZ_ARC_KEY_MAX 4096
/* The challenge file a 401's WWW-Authenticate value names, if it is `<token_dir>/<name>.key`
 * (name: [A-Za-z0-9._-], no "..", not starting with '.'). Pure. 0 and the path in ret, or
 * -EINVAL with why (the realm, cleaned, may be in it: it is a path, not a secret). */
int az_arc_realm_path(const char *www_authenticate, const char *token_dir, char *ret, size_t retlen,
                      char *why, size_t whylen);
/* Reads a challenge file: not through a symlink (-ELOOP), a regular file (-EINVAL) of at
 * most AZ_ARC_KEY_MAX bytes (-EFBIG), trailing whitespace dropped, not empty (-ENODATA),
 * printable (-EBADMSG). 0 and *ret, or -errno from open/read (-EACCES: not in the himds
 * group). */
int az_arc_read_key(const char *path, struct secret **ret);

/* The name under $CREDENTIALS_DIRECTORY when client_secret_file is not set. */
#define AZ_CLIENT_SECRET_CREDENTIAL "azure-client-secret"

/* ---- token cache -------------------------------------------------------------------- */

/* When to ask for a new token: at `ratio` of its lifetime (iat..exp), and by `margin`
 * before exp at the latest. */
struct az_refresh {
    double ratio;
    uint64_t margin_usec;
};

/* The smallest and largest gap between asks while the endpoint keeps handing back the
 * token we have (IMDS caches tokens). Doubles from MIN to MAX. */
#define AZ_SAME_TOKEN_MIN_GAP (30 * 1000000ULL)
#define AZ_SAME_TOKEN_MAX_GAP (16 * 60 * 1000000ULL)

struct az_token {
    struct secret *value;
    int64_t exp;              /* unix seconds */
    char oid[AZ_ID_MAX];      /* the token's oid claim, "" when absent */
};
void az_token_clear(struct az_token *t);

struct az_token_ref;

/* A handle on the shared cache entry for (identity, scope). The entry copies what it
 * needs from id. 0, or -1 with err. */
int az_tokens_acquire(const struct az_identity *id, const char *scope, uint64_t timeout_usec,
                      struct az_token_ref **ret, struct rc_error *err);
/* Drops the handle; the entry goes with its last handle. NULL is accepted. */
void az_tokens_release(struct az_token_ref *r);

enum {
    AZ_TOKEN_FORCE = 1 << 0,     /* the service refused the cached token: ask anew */
    AZ_TOKEN_STALE_OK = 1 << 1,  /* a failed refresh may hand back a token still valid */
};

/* A token for the handle's scope: the cached one while the refresh point is ahead, else
 * a new one from the identity endpoint. Returns 0 and *ret (a copy; clear it), or -1
 * with err. `host` is used for debug lines only. */
int az_token_get(struct az_token_ref *r, const struct rc_host *host, const struct az_refresh *p,
                 unsigned flags, struct az_token *ret, struct rc_error *err);
/* Usec from now until the handle's entry wants its next look under policy p (at least
 * 100 ms); 0 when nothing is cached. `host` for an info line when the wall clock jumped. */
uint64_t az_token_next(struct az_token_ref *r, const struct rc_host *host, const struct az_refresh *p);
/* exp of the cached token (unix seconds), or 0. */
int64_t az_token_cached_exp(struct az_token_ref *r);
/* Token requests this process made for the handle's entry (benchmarks, tests). */
uint64_t az_token_requests(struct az_token_ref *r);

/* Pure parts of the cache, exposed for unit tests. Times in usec (mono). */
uint64_t az_refresh_point(uint64_t iat_mono, uint64_t exp_mono, const struct az_refresh *p);
uint64_t az_same_token_next_ask(uint64_t now, unsigned same_count, uint64_t exp_mono,
                                uint64_t margin_usec);

/* Parses a token endpoint's 200 body (IMDS: numbers as strings; v2: integers). now is
 * unix seconds. Fills value, exp, oid, and *ret_iat (issue time, unix seconds). */
int az_token_parse(const char *body, size_t len, int64_t now, struct az_token *ret,
                   int64_t *ret_iat, struct rc_error *err);

/* ---- HTTP helpers ------------------------------------------------------------------ */

/* Percent-encodes s for a query or form value into a malloc'd, wiped-on-free buffer
 * (*ret_len set). NULL on allocation failure. */
char *az_urlencode(const char *s, size_t len, size_t *ret_len);
/* Frees what az_urlencode returned (or any buffer) after wiping len bytes. */
void az_wipe_free(char *p, size_t len);

/* Maps a non-2xx response from Key Vault or Azure Resource Manager to an error class
 * and message: "<what>: <status> <code>[/<inner code>]: <message>". Always -1. */
int az_service_error(struct rc_error *err, const char *what, const struct http_response *r);
/* The same, with every occurrence of the nsec secrets (and of a JWT: see
 * az_clean_scrubbed) in the service's texts replaced by "***" before they are cut short (a service, or a proxy, may echo what it was sent or
 * served: a cut first would let the first bytes of a split echo through). */
int az_service_error_scrubbed(struct rc_error *err, const char *what, const struct http_response *r,
                              const struct secret *const *sec, size_t nsec);
/* A transport failure (-errno from http_request) with its class (rc_transport_class). Always -1. */
int az_transport_error(struct rc_error *err, int r, const char *msg);
/* Retry-After (or x-ms-retry-after-ms) of a response, 0 when none. */
uint64_t az_retry_after(const struct http_response *r);
/* The first `max` printable characters of s, for messages (no control characters). */
void az_clean_text(const char *s, size_t max, char *out, size_t outlen);
/* Replaces every occurrence of secret s (of 4 bytes or more) in msg with "***". */
void az_scrub(char *msg, const struct secret *s);
/* az_clean_text() of s with the nsec secrets, and anything shaped like a JWT (an access
 * token, an assertion), scrubbed out first (out is "" when there is no memory to scrub
 * in: nothing rather than a secret). */
void az_clean_scrubbed(const char *s, size_t max, const struct secret *const *sec, size_t nsec,
                       char *out, size_t outlen);

/* ---- the source types ------------------------------------------------------------- */

#define AZ_DECLARE_TYPE(p)                                                                \
    extern const struct rc_config_key p##_source_keys[];                                     \
    extern const struct rc_config_key p##_credential_keys[];                                 \
    int p##_open(const struct rc_host *host, const struct rc_config_node *source,            \
                 const struct rc_credential *credentials, size_t n_credentials,           \
                 void **ret_state, struct rc_error *err);                                 \
    int p##_fetch(void *state, const struct rc_credential *cred,                          \
                  struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err);      \
    void p##_close(void *state)

AZ_DECLARE_TYPE(az_keyvault);
/* How a Key Vault secret's value is read (value_format): by its contentType, as JSON
 * {"username","password"}, or as the password itself. */
enum az_kv_format { AZ_KV_AUTO = 0, AZ_KV_JSON, AZ_KV_PASSWORD };
/* A SecretBundle (the 200 body of GET secrets/{name}[/{version}]) into *c: version from
 * `id`, expires_at from attributes.exp, the value as `format` says. `username` is used
 * for a bare value (NULL: the default user). Pure: no I/O. `what` prefixes messages,
 * which never quote the value. 0, or -1 with err (INVALID for an unusable answer). */
/* One page of GET secrets/{name}/versions: folds into *best (best->id "" at first) the
 * newest enabled version other than `latest` (by created, then updated), and hands back
 * the page's nextLink (malloc'd; NULL when none) in *ret_next. Pure: no I/O; the caller
 * checks where nextLink points. 0, or -1 with err. */
struct az_kv_version {
    char id[80];
    int64_t created, updated;
};
int az_keyvault_parse_versions(const char *body, size_t len, const char *latest, const char *what,
                               struct az_kv_version *best, char **ret_next, struct rc_error *err);
int az_keyvault_parse_bundle(const char *body, size_t len, enum az_kv_format format, const char *username,
                             const char *what, struct rc_candidate *c, struct rc_error *err);
AZ_DECLARE_TYPE(az_entra);
AZ_DECLARE_TYPE(az_redis_keys);
/* The 200 body of POST .../listKeys: *ret_root holds primaryKey and secondaryKey, both
 * non-empty strings (json_decref it; jansson's free wipes the keys). Pure: no I/O.
 * 0, or -1 with err (INVALID; the message never quotes the body). */
int az_redis_keys_parse_list(const char *body, size_t len, const char *what, json_t **ret_root,
                             struct rc_error *err);
uint64_t az_entra_next_check(void *state, const struct rc_credential *cred);
/* Strategy azure-keys (plugin.h rotate_self()): regenerates the key that is
 * not expected_version; ret_version is the regenerated key's new version. */
int az_redis_keys_rotate(void *state, const struct rc_credential *cred, const char *expected_version,
                         char *ret_version, struct rc_error *err);

/* A source-level timeout (`timeout` key), TLS and one HTTP client on a base URL. */
struct az_endpoint {
    struct http_client *http;
    char *base_url;           /* no trailing '/' */
    uint64_t timeout_usec;
    struct az_tls tls;
};
int az_endpoint_open(const struct rc_host *host, const struct rc_config_node *source,
                     const char *url_key, struct az_endpoint *ret, struct rc_error *err);
void az_endpoint_close(struct az_endpoint *e);

/* How long Key Vault and management tokens are used before a refresh is tried: like
 * MSAL's managed identity cache (refresh with 5 min left), and at 70% of the lifetime. */
extern const struct az_refresh az_data_plane_refresh;

/* One request with "Authorization: Bearer <token for tok's scope>". A 401 makes one
 * more attempt with a token asked for anew (the cached one may have been revoked or be
 * for the wrong tenant); a second 401 is handed back like any other response. Returns 0
 * and *ret for any HTTP response, or -1 with err (no token, transport failure). */
int az_authed_request(const struct rc_host *host, struct az_endpoint *ep, struct az_token_ref *tok,
                      const char *method, const char *url, struct http_response *ret,
                      struct rc_error *err);
/* The same with a JSON body (not a secret; Content-Type: application/json). */
int az_authed_request_body(const struct rc_host *host, struct az_endpoint *ep, struct az_token_ref *tok,
                           const char *method, const char *url, const char *body,
                           struct http_response *ret, struct rc_error *err);
/* The resource (and authorization) named by a 401's WWW-Authenticate, for messages. */
void az_challenge_describe(const struct http_response *r, char *out, size_t outlen);
