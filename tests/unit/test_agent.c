/* agent: the real agent/agent.c, driven through agent.h on a real sd-event loop, with the
 * file plugin as its store and a real redis-server judging the candidates
 * (agent_fixture.h). What a fetch leads to (publish, keep what is published and say why,
 * a store error, a version Redis refuses, an unreachable Redis, validate = "none"), what a
 * refresh does, what a reload carries over and what it refuses, and --once's outcome. The
 * credential's state machine alone is test_credsm; the binary end to end is
 * tests/integration. Skipped without /usr/bin/redis-server.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent_fixture.h"
#include "agent_internal.h"
#include "rctime.h"
#include "redis_server.h"

static struct redis_fixture fx = { .prefix = "rc-test-agent", .n = 1 };

REDIS_FIXTURE_GROUP(fx)

/* Redis user `user` is on with exactly these passwords. */
static void redis_user(const char *user, const char *pw1, const char *pw2) {
    char p1[80], p2[80];
    snprintf(p1, sizeof p1, ">%s", pw1);
    snprintf(p2, sizeof p2, ">%s", pw2 ? pw2 : pw1);
    const char *rules[] = { "reset", "on", p1, p2, "~*", "&*", "+@all" };
    assert_int_equal(af_acl_setuser(fx.srv[0].port, user, rules, 7), 0);
}

static bool reloaded(struct agent_fixture *f, void *ud) {
    return f->reloads >= *(int *)ud;
}

static bool never(struct agent_fixture *f, void *ud) {
    (void)f;
    (void)ud;
    return false;
}

static void wait_published(struct agent_fixture *f, const char *name, const char *password) {
    assert_true(af_wait_published(f, name, password, false));
}

static void wait_state(struct agent_fixture *f, const char *name, const char *state) {
    assert_true(af_wait_status(f, name, "state", state));
}

static json_int_t status_int(struct agent_fixture *f, const char *name, const char *key) {
    json_t *row = af_status(f, name);
    assert_non_null(row);
    json_int_t v = json_integer_value(json_object_get(row, key));
    json_decref(row);
    return v;
}

/* A fixture with the credentials `creds` (libconfig entries), started. */
static void start(struct agent_fixture *f, const char *creds, bool once) {
    assert_int_equal(af_init(f, "rc-agent", fx.srv[0].port), 0);
    af_write_config(f, creds);
    assert_int_equal(af_start(f, once), 0);
}

/* ---- a fetch's outcome ---------------------------------------------------------------- */

/* A version Redis accepts is published; one it refuses is not, and what is published
 * stays, with the refused version as pending; a refresh after Redis took it publishes it,
 * with what was published before as `previous`. */
static void test_accepted_published_refused_kept(void **st) {
    struct agent_fixture f;
    char cred[512], err[256];
    (void)st;
    NEED_REDIS(&fx);
    redis_user("app", "pw-one", NULL);
    start(&f, af_cred(cred, sizeof cred, "cache", ""), false);
    af_store(&f, "cache.json", "app", "pw-one");
    wait_published(&f, "cache", "pw-one");   /* (the store's wake-up, or the first look) */
    wait_state(&f, "cache", "current");
    json_t *doc = af_published(&f, "cache");
    char v1[128];
    snprintf(v1, sizeof v1, "%s", af_str(doc, "version"));
    assert_string_equal(af_str(doc, "username"), "app");
    assert_string_equal(af_str(doc, "validated"), "all");
    json_decref(doc);

    /* The store changes to a password Redis does not know: its wake-up fetches it. */
    af_store(&f, "cache.json", "app", "pw-two");
    wait_state(&f, "cache", "refused");
    doc = af_published(&f, "cache");
    assert_string_equal(af_str(doc, "password"), "pw-one");
    assert_string_equal(af_str(doc, "version"), v1);
    json_decref(doc);
    json_t *row = af_status(&f, "cache");
    assert_string_not_equal(af_str(row, "pending_version"), "");
    assert_string_not_equal(af_str(row, "pending_version"), v1);
    assert_string_equal(af_str(row, "version"), v1);
    assert_non_null(strstr(af_str(row, "last_error"), "refused by Redis"));
    assert_false(json_is_true(json_object_get(row, "current")));
    json_decref(row);
    assert_true(status_int(&f, "cache", "errors_total") >= 1);

    /* Redis learns it; a refresh checks again at once and publishes it. */
    redis_user("app", "pw-one", "pw-two");
    assert_int_equal(agent_refresh(f.a, "cache", err, sizeof err), 0);
    wait_published(&f, "cache", "pw-two");
    wait_state(&f, "cache", "current");
    doc = af_published(&f, "cache");
    assert_string_equal(af_str(doc, "previous.password"), "pw-one");
    assert_string_equal(af_str(doc, "previous.version"), v1);
    json_decref(doc);
    row = af_status(&f, "cache");
    assert_string_equal(af_str(row, "pending_version"), "");
    assert_string_equal(af_str(row, "last_error"), "");
    json_decref(row);

    assert_int_equal(agent_refresh(f.a, "nosuch", err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "nosuch"));
    af_stop(&f);
}

/* A store that fails keeps what is published; the same content again is "unchanged" (no
 * new publish) and clears the error. */
static void test_store_error_keeps_published(void **st) {
    struct agent_fixture f;
    char cred[512];
    (void)st;
    NEED_REDIS(&fx);
    redis_user("app", "pw-one", NULL);
    assert_int_equal(af_init(&f, "rc-agent", fx.srv[0].port), 0);
    af_store(&f, "cache.json", "app", "pw-one");
    af_write_config(&f, af_cred(cred, sizeof cred, "cache", ""));
    assert_int_equal(af_start(&f, false), 0);
    wait_published(&f, "cache", "pw-one");
    wait_state(&f, "cache", "current");
    json_int_t changed = status_int(&f, "cache", "errors_total");
    json_t *row = af_status(&f, "cache");
    char last_change[64];
    snprintf(last_change, sizeof last_change, "%s", af_str(row, "last_change"));
    json_decref(row);

    af_store_text(&f, "cache.json", "{\"username\": \"app\"}");   /* no password */
    wait_state(&f, "cache", "store-error");
    row = af_status(&f, "cache");
    assert_non_null(strstr(af_str(row, "last_error"), "store local"));
    assert_non_null(strstr(af_str(row, "last_error"), "keeping the published credential"));
    json_decref(row);
    assert_true(status_int(&f, "cache", "errors_total") > changed);
    json_t *doc = af_published(&f, "cache");
    assert_string_equal(af_str(doc, "password"), "pw-one");
    json_decref(doc);

    af_store(&f, "cache.json", "app", "pw-one");
    wait_state(&f, "cache", "current");
    row = af_status(&f, "cache");
    assert_string_equal(af_str(row, "last_error"), "");
    assert_string_equal(af_str(row, "last_change"), last_change);   /* nothing published again */
    json_decref(row);
    af_stop(&f);
}

/* Redis that cannot be asked: nothing is published (state unreachable); with validate =
 * "none" the same store is published without asking. */
static void test_unreachable_and_validate_none(void **st) {
    struct agent_fixture f;
    char creds[1024];
    (void)st;
    NEED_REDIS(&fx);
    uint16_t nobody = free_port();
    snprintf(creds, sizeof creds,
             "{ name = \"cache\"; source = \"local\"; path = \"cache.json\";\n"
             "  redis = { endpoints = [\"127.0.0.1:%u\"]; timeout = \"1s\"; }; },\n"
             "{ name = \"blind\"; source = \"local\"; path = \"cache.json\";\n"
             "  redis = { endpoints = [\"127.0.0.1:%u\"]; timeout = \"1s\"; validate = \"none\"; }; }",
             (unsigned)nobody, (unsigned)nobody);
    assert_int_equal(af_init(&f, "rc-agent", fx.srv[0].port), 0);
    af_store(&f, "cache.json", "app", "pw-one");
    af_write_config(&f, creds);
    assert_int_equal(af_start(&f, false), 0);
    wait_state(&f, "cache", "unreachable");
    wait_published(&f, "blind", "pw-one");
    json_t *doc = af_published(&f, "blind");
    assert_string_equal(af_str(doc, "validated"), "none");
    json_decref(doc);
    assert_null(af_published(&f, "cache"));
    json_t *row = af_status(&f, "cache");
    assert_non_null(strstr(af_str(row, "last_error"), "unreachable"));
    assert_string_equal(af_str(row, "version"), "");
    json_decref(row);
    af_stop(&f);
}

/* ---- reload ----------------------------------------------------------------------------- */

static void reload(struct agent_fixture *f, bool allow_removals) {
    int want = f->reloads + 1;
    agent_request_reload(f->a, allow_removals);
    assert_true(af_run_until(f, reloaded, &want, AF_WAIT));
}

/* A reload carries each credential's history over by name (what is published, its
 * errors, when it last changed) and adds new ones; a config that does not load, or that
 * would delete most published credentials, is refused and the running one goes on; the
 * removal asked for is carried out (the files of removed credentials go). */
static void test_reload_carries_history_and_refuses_what_it_must(void **st) {
    struct agent_fixture f;
    char c1[512], c2[512], c3[512], creds[1600];
    (void)st;
    NEED_REDIS(&fx);
    redis_user("app", "pw-one", NULL);
    assert_int_equal(af_init(&f, "rc-agent", fx.srv[0].port), 0);
    af_store(&f, "cache.json", "app", "pw-one");
    af_store(&f, "other.json", "app", "pw-one");
    af_store(&f, "third.json", "app", "pw-one");
    snprintf(creds, sizeof creds, "%s, %s", af_cred(c1, sizeof c1, "cache", ""),
             af_cred(c2, sizeof c2, "other", ""));
    af_write_config(&f, creds);
    assert_int_equal(af_start(&f, false), 0);
    wait_published(&f, "cache", "pw-one");
    wait_published(&f, "other", "pw-one");
    af_store(&f, "cache.json", "app", "pw-refused");   /* an error to carry over */
    wait_state(&f, "cache", "refused");
    wait_state(&f, "other", "current");
    json_int_t errors = status_int(&f, "cache", "errors_total");
    json_t *before = af_status(&f, "cache");

    /* A third credential: the two others carry over as they were. The reload is applied
     * at once (no rotation step is out), before any check of the new generation ends. */
    snprintf(creds, sizeof creds, "%s, %s, %s", c1, c2, af_cred(c3, sizeof c3, "third", ""));
    af_write_config(&f, creds);
    reload(&f, false);
    assert_int_equal(f.reload_result, 0);
    json_t *after = af_status(&f, "cache");
    static const char *const same[] = { "state", "version", "pending_version", "last_change",
                                        "last_check", "last_error", "nodes" };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        assert_string_equal(af_str(after, same[i]), af_str(before, same[i]));
    assert_string_equal(af_str(after, "state"), "refused");
    assert_int_equal(status_int(&f, "cache", "errors_total"), errors);
    json_decref(before);
    json_decref(after);
    wait_published(&f, "third", "pw-one");

    /* A file that does not load: refused, the three go on. */
    af_write_config(&f, "{ name = \"broken\"; ");
    reload(&f, false);
    assert_true(f.reload_result < 0);
    json_t *row = af_status(&f, "third");
    assert_non_null(row);
    json_decref(row);

    /* Two of three published credentials removed: refused unless asked for. */
    af_write_config(&f, c3);
    reload(&f, false);
    assert_int_equal(f.reload_result, -EPERM);
    assert_non_null(strstr(f.reload_why, "allow_removals"));
    row = af_status(&f, "cache");
    assert_non_null(row);
    json_decref(row);
    reload(&f, true);
    assert_int_equal(f.reload_result, 0);
    assert_null(af_status(&f, "cache"));
    assert_null(af_published(&f, "cache"));   /* its file pruned */
    assert_null(af_published(&f, "other"));
    json_t *doc = af_published(&f, "third");
    assert_string_equal(af_str(doc, "password"), "pw-one");
    json_decref(doc);
    af_stop(&f);
}

/* ---- --once ----------------------------------------------------------------------------- */

/* One attempt per credential, then the loop ends by itself: exit code 0 when each is
 * current, 1 when one is not (here: a password Redis refuses). */
static void test_once_ends_the_loop_with_the_outcome(void **st) {
    char creds[1200], c1[512], c2[512];
    (void)st;
    NEED_REDIS(&fx);
    redis_user("app", "pw-one", NULL);
    for (int bad = 0; bad < 2; bad++) {
        struct agent_fixture f;
        assert_int_equal(af_init(&f, "rc-agent", fx.srv[0].port), 0);
        af_store(&f, "cache.json", "app", "pw-one");
        af_store(&f, "other.json", "app", bad ? "pw-wrong" : "pw-one");
        snprintf(creds, sizeof creds, "%s, %s", af_cred(c1, sizeof c1, "cache", ""),
                 af_cred(c2, sizeof c2, "other", ""));
        af_write_config(&f, creds);
        assert_int_equal(af_start(&f, true), 0);
        assert_false(af_run_until(&f, never, NULL, AF_WAIT));
        assert_int_equal(sd_event_get_state(f.e), SD_EVENT_FINISHED);
        assert_int_equal(agent_exit_code(f.a), bad ? 1 : 0);
        json_t *doc = af_published(&f, "other");
        if (bad)
            assert_null(doc);
        else
            assert_string_equal(af_str(doc, "password"), "pw-one");
        json_decref(doc);
        af_stop(&f);
    }
}

/* Texts a credential stores (its last error, a node's detail, a rotation's error) never
 * keep a live secret's bytes, whoever formatted them: agent_internal.h's text_set(). */
static void test_stored_texts_hold_no_live_secret(void **state) {
    static const char pw[] = "Stored-Text-Secret-42";
    struct secret *s = secret_new(pw, strlen(pw));
    char *t = NULL;
    (void)state;
    assert_non_null(s);
    text_set(&t, "AUTH refused: WRONGPASS for %s (node 127.0.0.1:1)", secret_data(s));
    assert_non_null(t);
    assert_null(strstr(t, pw));
    assert_non_null(strstr(t, "AUTH refused: WRONGPASS for "));
    assert_non_null(strstr(t, "(node 127.0.0.1:1)"));
    text_clear(&t);
    secret_free(s);
    text_set(&t, "no secret here");
    assert_string_equal(t, "no secret here");
    text_clear(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted_published_refused_kept),
        cmocka_unit_test(test_store_error_keeps_published),
        cmocka_unit_test(test_unreachable_and_validate_none),
        cmocka_unit_test(test_reload_carries_history_and_refuses_what_it_must),
        cmocka_unit_test(test_once_ends_the_loop_with_the_outcome),
        cmocka_unit_test(test_stored_texts_hold_no_live_secret),
    };
    return cmocka_run_group_tests(tests, redis_setup, redis_teardown);
}
