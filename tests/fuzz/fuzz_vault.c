/* libFuzzer: the vault source's parsers (plugins/vault/vault_parse) take any response
 * body, and any string where a path, URL, Location or time is read. Every body parser
 * sees each input; a value they hand back must be one the published files can carry. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "rctime.h"
#include "vault/vault_parse.h"

static void bodies(const char *b, size_t n) {
    static const struct vault_fields f = { .username = "username", .password = "password" };
    struct rc_error err;
    struct vault_cred c = { 0 };
    int64_t v;
    char text[VAULT_ERRTEXT_MAX + 8];

    vault_errors_text(b, n, text, sizeof text);
    if (strlen(text) >= VAULT_ERRTEXT_MAX)
        abort();
    (void)vault_errors_has(b, n, "permission denied");
    struct vault_kv2_meta meta;
    (void)vault_parse_kv2_metadata(b, n, 1800000000, &meta, "m", &err);
    for (long status = 200; status <= 404; status += 204)
        if (vault_parse_kv2_data(status, b, n, &f, &c, &v, "d", &err) == 0) {
            fuzz_check_value(c.password, c.username);
            vault_cred_clear(&c);
        }
    if (vault_parse_kv1_data(b, n, &f, &c, "1", &err) == 0) {
        fuzz_check_value(c.password, c.username);
        vault_cred_clear(&c);
    }
    (void)vault_parse_kv2_write(b, n, &v, "w", &err);
    struct vault_static_creds sc = { 0 };
    if (vault_parse_static_creds(b, n, &sc, "s", &err) == 0) {
        fuzz_check_value(sc.cred.password, sc.cred.username);
        vault_cred_clear(&sc.cred);
    }
    struct vault_auth a = { 0 };
    if (vault_parse_auth(b, n, &a, "a", &err) == 0)
        vault_auth_clear(&a);
    struct vault_lookup l;
    (void)vault_parse_lookup(b, n, &l, "l", &err);
}

static void strings(const char *s) {
    struct rc_error err;
    char *mount = NULL, *rest = NULL, out[VAULT_PATH_MAX], why[128], scheme[16], host[256];
    long port;
    int64_t t;
    if (vault_path_split(s, NULL, &mount, &rest, &err) == 0) {
        free(mount);
        free(rest);
    }
    (void)vault_path_encode(s, out, sizeof out);
    (void)vault_url_parts(s, scheme, sizeof scheme, host, sizeof host, &port);
    (void)vault_redirect_target("https://vault.example:8200", s, out, sizeof out, why, sizeof why);
    (void)rctime_parse(s, &t);   /* how the vault source reads Vault's times */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_run(data, size, bodies, strings);
}
