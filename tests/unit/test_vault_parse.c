/* Unit tests of plugins/vault/vault_parse.c: canned Vault answers in, values or classified
 * errors out. The module is compiled into this program directly (it has no I/O and no
 * dependency beyond jansson and common/secret). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../plugins/vault/vault_parse.c"
#include "stack_residue.h"

#define S(x) x, strlen(x)

static const struct vault_fields default_fields = { .username = "username", .password = "password" };

/* The whole text (for a caller that scrubs it before the cut) keeps what the cut text
 * drops, and the cut of it is the cut text. */
static void test_errors_text_whole_then_cut_is_the_cut_text(void **st) {
    char big[2000] = "{\"errors\":[\"", whole[VAULT_ERRTEXT_WHOLE_MAX], cut[256];
    size_t n = strlen(big);

    (void)st;
    memset(big + n, 'x', 300);
    snprintf(big + n + 300, sizeof big - n - 300, " tail-echo\"]}");
    vault_errors_text_whole(big, strlen(big), whole, sizeof whole);
    assert_int_equal(strlen(whole), 310);
    assert_non_null(strstr(whole, "tail-echo"));
    vault_errors_text(big, strlen(big), cut, sizeof cut);
    vault_errors_cut(whole);
    assert_string_equal(whole, cut);
    assert_null(strstr(cut, "tail-echo"));
}

static void test_errors_text_flattens_multierror_and_lists(void **st) {
    char out[256];
    vault_errors_text(S("{\"errors\":[\"2 errors occurred:\\n\\t* permission denied\\n\\t* invalid token\\n\\n\"]}\n"),
                      out, sizeof out);
    assert_string_equal(out, "permission denied; invalid token");
    vault_errors_text(S("{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\\n\"]}"), out, sizeof out);
    assert_string_equal(out, "permission denied");
    vault_errors_text(S("{\"errors\":[\"Vault is sealed\"]}"), out, sizeof out);
    assert_string_equal(out, "Vault is sealed");
    vault_errors_text(S("{\"errors\":[\"a\",\"b\\u0007c\"]}"), out, sizeof out);
    assert_string_equal(out, "a; b c");
    vault_errors_text(S("{\"errors\":[]}"), out, sizeof out);
    assert_string_equal(out, "");
    vault_errors_text(S("<html>502</html>"), out, sizeof out);
    assert_string_equal(out, "");
    /* Cut short, never longer than VAULT_ERRTEXT_MAX. */
    char big[2000] = "{\"errors\":[\"";
    memset(big + strlen(big), 'x', 1500);
    strcpy(big + strlen(big), "\"]}");
    vault_errors_text(big, strlen(big), out, sizeof out);
    assert_true(strlen(out) < VAULT_ERRTEXT_MAX);
    assert_non_null(strstr(out, "..."));
    assert_true(vault_errors_has(S("{\"errors\":[\"2 errors occurred:\\n\\t* permission denied\\n\\t* invalid token\\n\\n\"]}"),
                                 "invalid token"));
    assert_false(vault_errors_has(S("{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\\n\"]}"),
                                  "invalid token"));
}

static void test_status_classes_follow_design_section_7(void **st) {
    assert_int_equal(vault_status_class(400), RC_ERR_FATAL);
    assert_int_equal(vault_status_class(403), RC_ERR_AUTH);
    assert_int_equal(vault_status_class(404), RC_ERR_NOT_FOUND);
    assert_int_equal(vault_status_class(405), RC_ERR_FATAL);
    assert_int_equal(vault_status_class(412), RC_ERR_TRANSIENT);
    assert_int_equal(vault_status_class(429), RC_ERR_TRANSIENT);
    assert_int_equal(vault_status_class(500), RC_ERR_TRANSIENT);
    assert_int_equal(vault_status_class(502), RC_ERR_TRANSIENT);
    assert_int_equal(vault_status_class(503), RC_ERR_TRANSIENT);
    assert_int_equal(vault_status_class(301), RC_ERR_INVALID);
    assert_int_equal(vault_status_class(204), RC_ERR_INVALID);
}

static void test_path_split_uses_first_segment_or_the_configured_mount(void **st) {
    char *m, *r;
    struct rc_error err = { 0 };
    assert_int_equal(vault_path_split("secret/redis/cache", NULL, &m, &r, &err), 0);
    assert_string_equal(m, "secret");
    assert_string_equal(r, "redis/cache");
    free(m);
    free(r);
    assert_int_equal(vault_path_split("/team/kv/redis/cache/", "team/kv/", &m, &r, &err), 0);
    assert_string_equal(m, "team/kv");
    assert_string_equal(r, "redis/cache");
    free(m);
    free(r);
    assert_int_equal(vault_path_split("secret", NULL, &m, &r, &err), -1);
    assert_int_equal(err.cls, RC_ERR_FATAL);
    assert_int_equal(vault_path_split("other/x", "team/kv", &m, &r, &err), -1);
    assert_non_null(strstr(err.message, "does not start with its mount"));
    assert_int_equal(vault_path_split("team/kv", "team/kv", &m, &r, &err), -1);
}

static void test_path_encode_escapes_and_refuses_dot_segments(void **st) {
    char out[128];
    assert_int_equal(vault_path_encode("redis/cache-1_x.y~z", out, sizeof out), 0);
    assert_string_equal(out, "redis/cache-1_x.y~z");
    assert_int_equal(vault_path_encode("a b/c?d#e%", out, sizeof out), 0);
    assert_string_equal(out, "a%20b/c%3Fd%23e%25");
    assert_int_equal(vault_path_encode("a/../b", out, sizeof out), -1);
    assert_int_equal(vault_path_encode("a/./b", out, sizeof out), -1);
    assert_int_equal(vault_path_encode("a//b", out, sizeof out), -1);
    assert_int_equal(vault_path_encode("a\nb", out, sizeof out), -1);
    assert_int_equal(vault_path_encode("abcdef", out, 4), -1);
}

static void test_redirects_only_to_https_on_the_configured_host(void **st) {
    char out[256], why[256];
    const char *base = "https://vault.example.com:8200";
    assert_int_equal(vault_redirect_target(base, "https://VAULT.example.com:8201/v1/secret/data/x", out,
                                           sizeof out, why, sizeof why), 0);
    assert_string_equal(out, "https://VAULT.example.com:8201/v1/secret/data/x");
    assert_int_equal(vault_redirect_target(base, "/v1/x", out, sizeof out, why, sizeof why), 0);
    assert_string_equal(out, "https://vault.example.com:8200/v1/x");
    assert_int_equal(vault_redirect_target(base, "http://vault.example.com:8200/v1/x", out, sizeof out, why, sizeof why), -1);
    assert_non_null(strstr(why, "only https"));
    assert_int_equal(vault_redirect_target(base, "https://evil.example.com/v1/x", out, sizeof out, why, sizeof why), -1);
    assert_non_null(strstr(why, "another host"));
    assert_int_equal(vault_redirect_target(base, "https://vault.example.com@evil.example.com/v1/x", out,
                                           sizeof out, why, sizeof why), -1);
    assert_int_equal(vault_redirect_target(base, "//evil.example.com/v1/x", out, sizeof out, why, sizeof why), -1);
    assert_int_equal(vault_redirect_target(base, NULL, out, sizeof out, why, sizeof why), -1);
    assert_int_equal(vault_redirect_target(base, "https://vault.example.com/v1/x\r\nX: y", out, sizeof out, why,
                                           sizeof why), -1);
    assert_int_equal(vault_redirect_target("https://[::1]:8200", "https://[::1]:8300/v1/x", out, sizeof out, why,
                                           sizeof why), 0);
}

/* Vault's times (nanoseconds, offsets) are read by the shared parser (rctime.h). */
static void test_rfc3339_with_fraction_and_offsets(void **st) {
    int64_t t;
    assert_int_equal(rctime_parse("2026-10-03T21:22:01.220348343Z", &t), 0);
    assert_int_equal(t, 1791062521);
    assert_int_equal(rctime_parse("2019-05-06T15:26:42.525302-05:00", &t), 0);
    assert_int_equal(t, 1557174402);
    assert_int_equal(rctime_parse("2019-05-06T20:26:42Z", &t), 0);
    assert_int_equal(t, 1557174402);
    assert_int_equal(rctime_parse("", &t), -EINVAL);
    assert_int_equal(rctime_parse("2019-05-06T20:26:42", &t), -EINVAL);
    assert_int_equal(rctime_parse("2019-05-06T20:26:42Zjunk", &t), -EINVAL);
}

static const char KV2_OK[] =
    "{\"request_id\":\"r\",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":0,"
    "\"data\":{\"data\":{\"password\":\"s3cr3t\",\"username\":\"app\"},"
    "\"metadata\":{\"created_time\":\"2018-03-22T02:24:06.945319214Z\",\"custom_metadata\":null,"
    "\"deletion_time\":\"\",\"destroyed\":false,\"version\":7}},"
    "\"wrap_info\":null,\"warnings\":null,\"auth\":null,\"mount_type\":\"kv\"}\n";

static void test_kv2_data_gives_credential_and_version(void **st) {
    struct vault_cred c = { 0 };
    struct rc_error err = { 0 };
    int64_t v = 0;
    assert_int_equal(vault_parse_kv2_data(200, S(KV2_OK), &default_fields, &c, &v, "GET x", &err), 0);
    assert_string_equal(c.username, "app");
    assert_string_equal(secret_data(c.password), "s3cr3t");
    assert_int_equal(v, 7);
    vault_cred_clear(&c);
    vault_cred_clear(&c);   /* twice: harmless */

    struct vault_fields other = { .username = "user", .password = "pass" };
    assert_int_equal(vault_parse_kv2_data(200, S(KV2_OK), &other, &c, &v, "GET secret/data/x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "\"pass\""));
    assert_non_null(strstr(err.message, "GET secret/data/x"));
    /* username absent: the default user, unless username_field was configured. */
    const char *nouser = "{\"data\":{\"data\":{\"password\":\"p\"},\"metadata\":{\"version\":1}}}";
    assert_int_equal(vault_parse_kv2_data(200, S(nouser), &default_fields, &c, &v, "GET x", &err), 0);
    assert_null(c.username);
    vault_cred_clear(&c);
    struct vault_fields req = { .username = "username", .password = "password", .username_required = true };
    assert_int_equal(vault_parse_kv2_data(200, S(nouser), &req, &c, &v, "GET x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "username_field"));
}

static void test_kv2_deleted_and_destroyed_versions(void **st) {
    struct vault_cred c = { 0 };
    struct rc_error err = { 0 };
    int64_t v = 0;
    const char *deleted = "{\"request_id\":\"r\",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":0,"
        "\"data\":{\"data\":null,\"metadata\":{\"created_time\":\"2026-01-01T00:00:00Z\",\"custom_metadata\":null,"
        "\"deletion_time\":\"2026-10-03T21:22:01.220348343Z\",\"destroyed\":false,\"version\":2}},"
        "\"wrap_info\":null,\"warnings\":null,\"auth\":null,\"mount_type\":\"\"}";
    assert_int_equal(vault_parse_kv2_data(404, S(deleted), &default_fields, &c, &v, "GET x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "version 2 is deleted"));
    const char *destroyed = "{\"data\":{\"data\":null,\"metadata\":{\"deletion_time\":\"\",\"destroyed\":true,\"version\":3}}}";
    assert_int_equal(vault_parse_kv2_data(404, S(destroyed), &default_fields, &c, &v, "GET x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_non_null(strstr(err.message, "version 3 is destroyed"));
    assert_int_equal(vault_parse_kv2_data(404, S("{\"errors\":[]}\n"), &default_fields, &c, &v, "GET x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);
}

static void test_kv2_wrong_shapes_are_invalid_and_never_quote_the_body(void **st) {
    struct vault_cred c = { 0 };
    struct rc_error err = { 0 };
    int64_t v = 0;
    static const char *const bad[] = {
        "{\"data\":{\"data\":{\"password\":\"hunter2-secret\",",          /* truncated */
        "<html><body>hunter2-secret</body></html>",
        "[\"hunter2-secret\"]",
        "{\"data\":\"hunter2-secret\"}",
        "{\"data\":{\"data\":\"hunter2-secret\",\"metadata\":{\"version\":1}}}",
        "{\"data\":{\"data\":{\"password\":\"hunter2-secret\"},\"metadata\":{\"version\":\"1\"}}}",
        "{\"data\":{\"data\":{\"password\":7},\"metadata\":{\"version\":1}}}",
        "{\"data\":{\"data\":{\"password\":\"\"},\"metadata\":{\"version\":1}}}",
        "{\"data\":{\"data\":{\"password\":\"p\",\"username\":\"\"},\"metadata\":{\"version\":1}}}",
        "{\"data\":{\"data\":{\"password\":\"p\",\"username\":[1]},\"metadata\":{\"version\":1}}}",
        "{\"data\":{\"data\":{\"password\":\"p\",\"password\":\"q\"},\"metadata\":{\"version\":1}}}",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(vault_parse_kv2_data(200, S(bad[i]), &default_fields, &c, &v, "GET x", &err), -1);
        assert_int_equal(err.cls, RC_ERR_INVALID);
        assert_null(strstr(err.message, "hunter2"));
        assert_null(c.password);
    }
}

static void test_kv2_metadata_current_version_and_prior_readable_version(void **st) {
    struct vault_kv2_meta m;
    struct rc_error err = { 0 };
    const char *body = "{\"data\":{\"cas_required\":false,\"created_time\":\"2018-03-22T02:24:06.945319214Z\","
        "\"current_version\":5,\"custom_metadata\":null,\"delete_version_after\":\"0s\",\"max_versions\":0,"
        "\"oldest_version\":0,\"updated_time\":\"2018-03-22T02:36:43.986212308Z\",\"versions\":{"
        "\"1\":{\"created_time\":\"x\",\"deletion_time\":\"\",\"destroyed\":false},"
        "\"2\":{\"created_time\":\"x\",\"deletion_time\":\"\",\"destroyed\":false},"
        "\"3\":{\"created_time\":\"x\",\"deletion_time\":\"2020-01-01T00:00:00Z\",\"destroyed\":false},"
        "\"4\":{\"created_time\":\"x\",\"deletion_time\":\"\",\"destroyed\":true},"
        "\"5\":{\"created_time\":\"x\",\"deletion_time\":\"2999-01-01T00:00:00Z\",\"destroyed\":false}}}}";
    assert_int_equal(vault_parse_kv2_metadata(S(body), 1700000000, &m, "GET x", &err), 0);
    assert_int_equal(m.current_version, 5);
    assert_false(m.current_deleted);     /* deletion in the future: still readable */
    assert_false(m.current_destroyed);
    assert_int_equal(m.prior_version, 2);  /* 4 destroyed, 3 deleted */
    assert_int_equal(vault_parse_kv2_metadata(S("{\"data\":{\"current_version\":\"5\"}}"), 0, &m, "GET x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_int_equal(vault_parse_kv2_metadata(S("{\"data\":{\"current_version\":2,\"versions\":7}}"), 0, &m, "GET x", &err), 0);
    assert_int_equal(m.prior_version, 0);
}

static void test_kv1_flat_data(void **st) {
    struct vault_cred c = { 0 };
    struct rc_error err = { 0 };
    const char *ok = "{\"request_id\":\"r\",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":2764800,"
        "\"data\":{\"password\":\"p1\",\"user\":\"app\"},\"wrap_info\":null,\"warnings\":null,\"auth\":null}";
    struct vault_fields f = { .username = "user", .password = "password" };
    assert_int_equal(vault_parse_kv1_data(S(ok), &f, &c, "GET kv/x", &err), 0);
    assert_string_equal(c.username, "app");
    vault_cred_clear(&c);
    assert_int_equal(vault_parse_kv1_data(S(KV2_OK), &default_fields, &c, "GET kv/x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_non_null(strstr(err.message, "engine = \"kv2\""));
}

static void test_static_creds_parse(void **st) {
    struct vault_static_creds sc;
    struct rc_error err = { 0 };
    const char *ok = "{\"request_id\":\"r\",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":0,"
        "\"data\":{\"last_vault_rotation\":\"2019-05-06T15:26:42.525302-05:00\",\"password\":\"132ae3ef\","
        "\"rotation_period\":30,\"ttl\":28,\"username\":\"static-user\"},"
        "\"wrap_info\":null,\"warnings\":null,\"auth\":null,\"mount_type\":\"database\"}";
    assert_int_equal(vault_parse_static_creds(S(ok), &sc, "GET database/static-creds/r", &err), 0);
    assert_string_equal(sc.version, "2019-05-06T15:26:42.525302-05:00");
    assert_int_equal(sc.ttl, 28);
    assert_int_equal(sc.rotation_period, 30);
    assert_string_equal(sc.cred.username, "static-user");
    vault_cred_clear(&sc.cred);
    const char *sched = "{\"data\":{\"last_vault_rotation\":\"t1\",\"password\":\"p\",\"rotation_schedule\":\"0 0 * * SAT\","
        "\"rotation_window\":3600,\"ttl\":27.6,\"username\":\"u\"}}";
    assert_int_equal(vault_parse_static_creds(S(sched), &sc, "GET x", &err), 0);
    assert_string_equal(sc.rotation_schedule, "0 0 * * SAT");
    assert_int_equal(sc.ttl, 28);
    vault_cred_clear(&sc.cred);
    const char *rsa = "{\"data\":{\"last_vault_rotation\":\"t\",\"rsa_private_key\":\"k\",\"ttl\":1,\"username\":\"u\"}}";
    assert_int_equal(vault_parse_static_creds(S(rsa), &sc, "GET x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    const char *nolvr = "{\"data\":{\"password\":\"p\",\"ttl\":1,\"username\":\"u\"}}";
    assert_int_equal(vault_parse_static_creds(S(nolvr), &sc, "GET x", &err), -1);
    assert_non_null(strstr(err.message, "last_vault_rotation"));
    const char *negttl = "{\"data\":{\"last_vault_rotation\":\"t\",\"password\":\"p\",\"ttl\":-1,\"username\":\"u\"}}";
    assert_int_equal(vault_parse_static_creds(S(negttl), &sc, "GET x", &err), -1);
}

static void test_auth_and_lookup_blocks(void **st) {
    struct vault_auth a;
    struct rc_error err = { 0 };
    const char *login = "{\"request_id\":\"r\",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":0,\"data\":null,"
        "\"wrap_info\":null,\"warnings\":null,\"auth\":{\"client_token\":\"hvs.CAESabc\",\"accessor\":\"QJ\","
        "\"policies\":[\"app-policy\",\"default\"],\"token_policies\":[\"app-policy\",\"default\"],"
        "\"metadata\":{\"role_name\":\"vault-demo\"},\"lease_duration\":3600,\"renewable\":true,\"entity_id\":\"d2\","
        "\"token_type\":\"service\",\"orphan\":true,\"mfa_requirement\":null,\"num_uses\":0},\"mount_type\":\"\"}";
    assert_int_equal(vault_parse_auth(S(login), &a, "POST auth/approle/login", &err), 0);
    assert_string_equal(secret_data(a.client_token), "hvs.CAESabc");
    assert_int_equal(a.lease_duration, 3600);
    assert_true(a.renewable);
    assert_false(a.ttl_capped_warning);
    vault_auth_clear(&a);
    const char *capped = "{\"auth\":{\"client_token\":\"t\",\"lease_duration\":600,\"renewable\":true},"
        "\"warnings\":[\"TTL of \\\"1h0m0s\\\" exceeded the effective max_ttl of \\\"10m0s\\\"; TTL value is capped accordingly\"]}";
    assert_int_equal(vault_parse_auth(S(capped), &a, "POST x", &err), 0);
    assert_true(a.ttl_capped_warning);
    vault_auth_clear(&a);
    assert_int_equal(vault_parse_auth(S("{\"auth\":null}"), &a, "POST x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_int_equal(vault_parse_auth(S("{\"auth\":{\"client_token\":\"a b\",\"lease_duration\":1}}"), &a, "POST x", &err), -1);

    struct vault_lookup l;
    const char *lk = "{\"data\":{\"accessor\":\"a\",\"creation_ttl\":2764800,\"expire_time\":null,\"id\":\"t\","
        "\"renewable\":false,\"ttl\":0,\"type\":\"service\"}}";
    assert_int_equal(vault_parse_lookup(S(lk), &l, "GET x", &err), 0);
    assert_int_equal(l.ttl, 0);
    assert_false(l.renewable);
    assert_string_equal(l.type, "service");
    assert_int_equal(vault_parse_lookup(S("{\"data\":{\"ttl\":\"5\"}}"), &l, "GET x", &err), -1);
}

static void test_token_due_is_about_two_thirds_with_jitter(void **st) {
    assert_int_equal(vault_token_due(100, 0, 0), 0);
    uint64_t lo = UINT64_MAX, hi = 0;
    for (uint64_t r = 0; r < 2000; r += 7) {
        uint64_t d = vault_token_due(0, 60, r * 104729) ;
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo >= 34 * VAULT_USEC_PER_SEC);   /* 40 s - up to 6 s */
    assert_true(hi <= 40 * VAULT_USEC_PER_SEC);
    assert_true(hi > lo);
    assert_true(vault_token_due(0, 1, 0) >= 400 * 1000);
}

static void test_static_role_waits_for_ttl_then_polls_until_rotation(void **st) {
    struct vault_rot r = { 0 };
    bool changed;
    const uint64_t s = VAULT_USEC_PER_SEC;
    uint64_t now = 1000 * s;
    uint64_t next = vault_rot_update(&r, "t1", 10, now, &changed);
    assert_true(changed);
    assert_int_equal(next, now + 10 * s - VAULT_ROT_LEAD_USEC);
    /* An early look (poll_interval) refreshes the expectation. */
    now += 3 * s;
    next = vault_rot_update(&r, "t1", 7, now, &changed);
    assert_false(changed);
    assert_int_equal(next, now + 7 * s - VAULT_ROT_LEAD_USEC);
    /* At the deadline, not rotated yet: poll fast. */
    now = next;
    next = vault_rot_update(&r, "t1", 0, now, &changed);
    assert_false(changed);
    assert_true(r.awaiting);
    assert_int_equal(next, now + VAULT_ROT_POLL_USEC);
    /* Vault issue #31918: the ttl jumps back up before the password changes: keep polling. */
    now = next;
    next = vault_rot_update(&r, "t1", 3600, now, &changed);
    assert_true(r.awaiting);
    assert_int_equal(next, now + VAULT_ROT_POLL_USEC);
    /* Rotated: back to sleeping until the next ttl. */
    now = next;
    next = vault_rot_update(&r, "t2", 10, now, &changed);
    assert_true(changed);
    assert_false(r.awaiting);
    assert_int_equal(next, now + 10 * s - VAULT_ROT_LEAD_USEC);
}

static void test_static_role_gives_up_polling_after_30s(void **st) {
    struct vault_rot r = { 0 };
    bool changed;
    const uint64_t s = VAULT_USEC_PER_SEC;
    uint64_t now = 50 * s, next;
    vault_rot_update(&r, "t1", 0, now, &changed);
    assert_true(r.awaiting);
    unsigned polls = 0;
    do {
        now += VAULT_ROT_POLL_USEC;
        next = vault_rot_update(&r, "t1", 0, now, &changed);
        polls++;
    } while (r.awaiting && polls < 1000);
    assert_true(polls >= 30 * s / VAULT_ROT_POLL_USEC - 1 && polls <= 30 * s / VAULT_ROT_POLL_USEC + 2);
    assert_int_equal(next, now + VAULT_ROT_STUCK_RETRY_USEC);
}


static void test_kv2_write_body_carries_cas_and_fields_and_the_answer_its_version(void **st) {
    struct vault_fields f = { .username = "user", .password = "pass" };
    struct secret *pw = secret_new_str("n3w-\"pw\"");
    char *body = NULL;
    size_t len = 0;
    struct rc_error err = { 0 };
    int64_t v = 0;

    assert_int_equal(vault_kv2_write_body(&f, "app", pw, NULL, 7, &body, &len), 0);
    json_t *root = json_loadb(body, len, 0, NULL);
    assert_non_null(root);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "options"), "cas")), 7);
    json_t *data = json_object_get(root, "data");
    assert_string_equal(json_string_value(json_object_get(data, "user")), "app");
    assert_string_equal(json_string_value(json_object_get(data, "pass")), "n3w-\"pw\"");
    assert_int_equal(json_object_size(data), 2);
    json_decref(root);
    secret_wipe_free(body, len);

    /* the default user: no username field at all */
    assert_int_equal(vault_kv2_write_body(&f, NULL, pw, NULL, 1, &body, &len), 0);
    root = json_loadb(body, len, 0, NULL);
    assert_int_equal(json_object_size(json_object_get(root, "data")), 1);
    json_decref(root);
    secret_wipe_free(body, len);
    secret_free(pw);

    /* JSON cannot carry bytes that are not UTF-8 */
    pw = secret_new("\xff\xfe", 2);
    assert_int_equal(vault_kv2_write_body(&f, "app", pw, NULL, 1, &body, &len), -EINVAL);
    secret_free(pw);

    const char ok[] = "{\"request_id\":\"x\",\"data\":{\"created_time\":\"2026-11-22T10:00:00Z\","
                      "\"custom_metadata\":null,\"deletion_time\":\"\",\"destroyed\":false,\"version\":8}}";
    assert_int_equal(vault_parse_kv2_write(ok, strlen(ok), &v, "POST x", &err), 0);
    assert_int_equal(v, 8);
    const char bad[] = "{\"data\":{\"version\":0}}";
    assert_int_equal(vault_parse_kv2_write(bad, strlen(bad), &v, "POST x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_non_null(strstr(err.message, "POST x"));
}

/* D3: jansson's error text quotes the bytes near the error ("... near '"p4ss'"). Neither
 * the message nor the dead stack below the caller may keep a piece of the password. */
static void test_malformed_answers_leave_no_password_fragment_in_message_or_stack(void **st) {
    struct vault_cred c = { 0 };
    struct vault_static_creds sc = { 0 };
    struct vault_auth a = { 0 };
    struct rc_error err = { 0 };
    int64_t v = 0;
    /* A control character inside the string: jansson quotes the string read so far. */
    assert_int_equal(vault_parse_kv2_data(200, S("{\"data\":{\"data\":{\"password\":\"Kv2Fr4gment\x01\"}}}"),
                                          &default_fields, &c, &v, "GET kv", &err), -1);
    assert_no_residue("Kv2Fr4gment", &err);
    /* Cut off inside the string. */
    assert_int_equal(vault_parse_kv1_data(S("{\"data\":{\"password\":\"Kv1Fr4gment"), &default_fields,
                                          &c, "GET kv1", &err), -1);
    assert_no_residue("Kv1Fr4gment", &err);
    assert_int_equal(vault_parse_static_creds(S("{\"data\":{\"username\":\"u\",\"password\":\"St4ticFr4g\x02\"}}"),
                                              &sc, "GET db", &err), -1);
    assert_no_residue("St4ticFr4g", &err);
    assert_int_equal(vault_parse_auth(S("{\"auth\":{\"client_token\":\"hvs.T0kenFr4g\x03\"}}"), &a, "login", &err), -1);
    assert_no_residue("hvs.T0kenFr4g", &err);
}

static void test_kv2_record_read_tells_none_from_a_record_and_from_a_missing_mount(void **st) {
    struct secret *rec = NULL;
    struct rc_error err = { 0 };
    int64_t v = -1;
    /* never written: a bare 404 */
    assert_int_equal(vault_parse_kv2_record(404, S("{\"errors\":[]}\n"), &rec, &v, "GET x", &err), 0);
    assert_null(rec);
    assert_int_equal(v, 0);
    /* a missing mount is not a missing record */
    assert_int_equal(vault_parse_kv2_record(404, S("{\"errors\":[\"no handler for route \\\"nope/data/r\\\". "
                                                   "route entry not found.\"]}"), &rec, &v, "GET x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "no handler for route"));
    /* removed: written empty; or the version deleted: none, at that version */
    const char empty[] = "{\"data\":{\"data\":{},\"metadata\":{\"created_time\":\"2026-12-02T06:30:00Z\","
                         "\"deletion_time\":\"\",\"destroyed\":false,\"version\":3}}}";
    assert_int_equal(vault_parse_kv2_record(200, S(empty), &rec, &v, "GET x", &err), 0);
    assert_null(rec);
    assert_int_equal(v, 3);
    const char deleted[] = "{\"data\":{\"data\":null,\"metadata\":{\"deletion_time\":\"2026-12-02T06:30:00Z\","
                           "\"destroyed\":false,\"version\":4}}}";
    assert_int_equal(vault_parse_kv2_record(404, S(deleted), &rec, &v, "GET x", &err), 0);
    assert_null(rec);
    assert_int_equal(v, 4);
    /* a record: its fields as one JSON object text */
    const char one[] = "{\"data\":{\"data\":{\"epoch\":2,\"password\":\"Rec0rd-pw\"},\"metadata\":{\"version\":5}}}";
    assert_int_equal(vault_parse_kv2_record(200, S(one), &rec, &v, "GET x", &err), 0);
    assert_int_equal(v, 5);
    assert_string_equal(secret_data(rec), "{\"epoch\":2,\"password\":\"Rec0rd-pw\"}");
    rec = secret_free(rec);
    /* malformed: an error that quotes nothing */
    const char bad[] = "{\"data\":{\"data\":{\"password\":\"Rec0rd-pw\" x}}}";
    assert_int_equal(vault_parse_kv2_record(200, S(bad), &rec, &v, "GET x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_null(strstr(err.message, "Rec0rd"));
    const char shape[] = "{\"data\":{\"data\":[\"Rec0rd-pw\"],\"metadata\":{\"version\":5}}}";
    assert_int_equal(vault_parse_kv2_record(200, S(shape), &rec, &v, "GET x", &err), -1);
    assert_int_equal(err.cls, RC_ERR_INVALID);
    assert_null(strstr(err.message, "Rec0rd"));
}

static void test_kv2_mark_and_record_bodies(void **st) {
    struct vault_fields f = { .username = "username", .password = "password" };
    struct secret *pw = secret_new_str("pw-m");
    struct rc_rotation_mark mark = { .rotated_by = "host-a" };
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(rctime_parse("2026-12-02T06:30:00Z", &mark.rotated_at), 0);
    assert_int_equal(vault_kv2_write_body(&f, "app", pw, &mark, 2, &body, &len), 0);
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *data = json_object_get(root, "data");
    assert_string_equal(json_string_value(json_object_get(data, "redis_creds_rotated_at")), "2026-12-02T06:30:00Z");
    assert_string_equal(json_string_value(json_object_get(data, "redis_creds_rotated_by")), "host-a");
    json_decref(root);
    secret_wipe_free(body, len);
    secret_free(pw);

    struct secret *rec = secret_new_str("{\"epoch\":1,\"password\":\"x\"}");
    assert_int_equal(vault_kv2_record_body(rec, 0, &body, &len), 0);
    root = json_loadb(body, len, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "options"), "cas")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "data"), "epoch")), 1);
    json_decref(root);
    secret_wipe_free(body, len);
    secret_free(rec);
    assert_int_equal(vault_kv2_record_body(NULL, 9, &body, &len), 0);
    assert_memory_equal(body, "{\"options\":{\"cas\":9},\"data\":{}}", len);
    secret_wipe_free(body, len);
    rec = secret_new_str("\"not an object\"");
    assert_int_equal(vault_kv2_record_body(rec, 1, &body, &len), -EINVAL);
    secret_free(rec);
}

int main(void) {
    secret_init(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_text_flattens_multierror_and_lists),
        cmocka_unit_test(test_errors_text_whole_then_cut_is_the_cut_text),
        cmocka_unit_test(test_kv2_write_body_carries_cas_and_fields_and_the_answer_its_version),
        cmocka_unit_test(test_status_classes_follow_design_section_7),
        cmocka_unit_test(test_path_split_uses_first_segment_or_the_configured_mount),
        cmocka_unit_test(test_path_encode_escapes_and_refuses_dot_segments),
        cmocka_unit_test(test_redirects_only_to_https_on_the_configured_host),
        cmocka_unit_test(test_rfc3339_with_fraction_and_offsets),
        cmocka_unit_test(test_kv2_data_gives_credential_and_version),
        cmocka_unit_test(test_kv2_deleted_and_destroyed_versions),
        cmocka_unit_test(test_kv2_wrong_shapes_are_invalid_and_never_quote_the_body),
        cmocka_unit_test(test_kv2_metadata_current_version_and_prior_readable_version),
        cmocka_unit_test(test_kv1_flat_data),
        cmocka_unit_test(test_static_creds_parse),
        cmocka_unit_test(test_auth_and_lookup_blocks),
        cmocka_unit_test(test_token_due_is_about_two_thirds_with_jitter),
        cmocka_unit_test(test_static_role_waits_for_ttl_then_polls_until_rotation),
        cmocka_unit_test(test_static_role_gives_up_polling_after_30s),
        cmocka_unit_test(test_malformed_answers_leave_no_password_fragment_in_message_or_stack),
        cmocka_unit_test(test_kv2_record_read_tells_none_from_a_record_and_from_a_missing_mount),
        cmocka_unit_test(test_kv2_mark_and_record_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
