/* libFuzzer: the azure source's parsers of HTTP bodies and headers take any bytes: token
 * answers (IMDS, Entra, App Service), Key Vault SecretBundles (each value_format) and
 * version lists, Redis listKeys answers, the services' error bodies, and the
 * WWW-Authenticate / Retry-After values. A value they hand back must be one the
 * published files can carry. */
#include <stdlib.h>
#include <string.h>

#include "azure/azure.h"
#include "fuzz_util.h"

static void bodies(const char *b, size_t n) {
    struct rc_error err;
    struct az_token t = { 0 };
    int64_t iat;
    if (az_token_parse(b, n, 1800000000, &t, &iat, &err) == 0)
        az_token_clear(&t);
    static const enum az_kv_format fmts[] = { AZ_KV_AUTO, AZ_KV_JSON, AZ_KV_PASSWORD };
    for (size_t i = 0; i < 3; i++) {
        struct rc_candidate c = { 0 };
        if (az_keyvault_parse_bundle(b, n, fmts[i], i ? "app" : NULL, "kv", &c, &err) == 0) {
            fuzz_check_value(c.password, c.username);
            free(c.username);
            secret_free(c.password);
        }
    }
    struct az_kv_version best = { .id = "" };
    char *next = NULL;
    if (az_keyvault_parse_versions(b, n, "0123abcd", "v", &best, &next, &err) == 0)
        free(next);
    json_t *root = NULL;
    if (az_redis_keys_parse_list(b, n, "rk", &root, &err) == 0)
        json_decref(root);
    /* Error bodies, as they come with the statuses that matter. */
    static const long statuses[] = { 400, 401, 403, 404, 429, 503 };
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        struct http_response r = { .status = statuses[i], .body = (char *)b, .body_len = n };
        (void)az_service_error(&err, "e", &r);
    }
}

static void strings(const char *s) {
    char out[512], why[256];
    uint64_t usec;
    az_clean_text(s, 200, out, sizeof out);
    (void)az_arc_realm_path(s, "/var/opt/azcmagent/tokens", out, sizeof out, why, sizeof why);
    (void)http_retry_after_parse(s, &usec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_run(data, size, bodies, strings);
}
