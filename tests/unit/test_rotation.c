/* rotation: the real agent/rotation.c inside the real agent (agent_fixture.h: the agent on
 * a real sd-event loop, the file plugin as the store, a real redis-server), driven through
 * agent.h. Strategy redis-acl: `rotate` runs every step (the new password added on Redis,
 * written to the store, published with the old one as `previous`, the old one removed
 * after grace); a step Redis refuses is retried and nothing is published; the fleet clock
 * (the store entry's rotated_at, read by rotation_fetched() at each fetch) moves the
 * schedule forward and never back. The pure parts are test_rotate and test_rotrec; many
 * hosts at once, crashes and restarts are tests/integration/test_rotation.py and
 * test_fleet.py. Skipped without /usr/bin/redis-server.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent_fixture.h"
#include "rctime.h"
#include "redis_server.h"

static struct redis_fixture fx = { .prefix = "rc-test-rotation", .n = 1 };

REDIS_FIXTURE_GROUP(fx)

/* Redis user app: on, password pw, and the rules given (what it may run). */
static void redis_app(const char *pw, const char *rule) {
    char p[80];
    snprintf(p, sizeof p, ">%s", pw);
    const char *rules[] = { "reset", "on", p, "~*", "&*", "+@all", rule };
    assert_int_equal(af_acl_setuser(fx.srv[0].port, "app", rules, rule ? 7 : 6), 0);
}

/* A fixture whose credential "cache" rotates (redis-acl, as the credential itself) with the
 * settings given, its store holding app / pw-one, started. */
static void start_rotating(struct agent_fixture *f, const char *rotation) {
    char extra[512], cred[1024];
    assert_int_equal(af_init(f, "rc-rot", fx.srv[0].port), 0);
    af_store(f, "cache.json", "app", "pw-one");
    snprintf(extra, sizeof extra, "rotation = { strategy = \"redis-acl\"; %s };", rotation);
    af_write_config(f, af_cred(cred, sizeof cred, "cache", extra));
    assert_int_equal(af_start(f, false), 0);
}

static void wait_status(struct agent_fixture *f, const char *key, const char *value) {
    assert_true(af_wait_status(f, "cache", key, value));
}

static bool old_refused(struct agent_fixture *f, void *ud) {
    return !af_can_login(f->port, "app", ud);
}

/* `rotate cache`: every step, then the rotation is over (phase idle, a last rotation). */
static void test_rotate_runs_every_step(void **st) {
    struct agent_fixture f;
    char err[256], fresh[256];
    (void)st;
    NEED_REDIS(&fx);
    redis_app("pw-one", NULL);
    /* (no revocation watch: this test's own login with the old password would trip it) */
    start_rotating(&f, "grace = \"1s\"; interval = \"30d\"; splay = \"0s\"; revocation_watch = \"0s\";");
    wait_status(&f, "state", "current");
    wait_status(&f, "rotation.phase", "idle");

    assert_int_equal(agent_rotate(f.a, "cache", false, err, sizeof err), 0);
    assert_true(af_wait_published(&f, "cache", "pw-one", true));
    json_t *doc = af_published(&f, "cache");
    snprintf(fresh, sizeof fresh, "%s", af_str(doc, "password"));
    assert_string_equal(af_str(doc, "previous.password"), "pw-one");
    assert_string_not_equal(af_str(doc, "previous_valid_until"), "");
    json_decref(doc);
    assert_true(af_can_login(f.port, "app", fresh));
    /* The store holds the new password, with the rotation's mark. */
    char path[400];
    snprintf(path, sizeof path, "%s/cache.json", f.store);
    json_t *entry = json_load_file(path, 0, NULL);
    assert_string_equal(af_str(entry, "password"), fresh);
    assert_string_not_equal(af_str(entry, "redis_creds_rotated_at"), "");
    json_decref(entry);
    /* After grace the old password is removed, and the rotation is over. */
    assert_true(af_run_until(&f, old_refused, "pw-one", AF_WAIT));
    wait_status(&f, "rotation.step", "idle");
    json_t *row = af_status(&f, "cache");
    assert_string_equal(af_str(row, "rotation.phase"), "idle");
    /* The next one is scheduled interval after this one. */
    int64_t last, next;
    assert_int_equal(rctime_parse(af_str(row, "rotation.last_rotation"), &last), 0);
    assert_int_equal(rctime_parse(af_str(row, "rotation.next_rotation"), &next), 0);
    assert_true(next >= last + 30 * 86400 - 2 && next <= last + 30 * 86400 + 2);
    assert_string_equal(af_str(row, "rotation.last_error"), "");
    assert_string_equal(af_str(row, "state"), "current");
    json_decref(row);
    assert_true(af_can_login(f.port, "app", fresh));
    af_stop(&f);
}

/* Redis refuses the step (the credential may not run ACL SETUSER): the rotation waits to
 * retry, says why, and nothing new is published or written to the store. */
static void test_refused_step_waits_to_retry(void **st) {
    struct agent_fixture f;
    char err[256];
    (void)st;
    NEED_REDIS(&fx);
    redis_app("pw-one", "-acl");
    start_rotating(&f, "grace = \"1s\"; interval = \"30d\"; splay = \"0s\";");
    wait_status(&f, "state", "current");
    assert_int_equal(agent_rotate(f.a, "cache", false, err, sizeof err), 0);
    wait_status(&f, "rotation.step", "retry-wait");
    json_t *row = af_status(&f, "cache");
    assert_non_null(strstr(af_str(row, "rotation.last_error"), "NOPERM"));
    assert_string_not_equal(af_str(row, "rotation.retry_at"), "");
    assert_string_equal(af_str(row, "state"), "current");
    json_decref(row);
    json_t *doc = af_published(&f, "cache");
    assert_string_equal(af_str(doc, "password"), "pw-one");
    json_decref(doc);
    assert_true(af_can_login(f.port, "app", "pw-one"));
    af_stop(&f);
}

/* Without a rotation group, `rotate` says what to add. */
static void test_rotate_unconfigured_says_so(void **st) {
    struct agent_fixture f;
    char cred[512], err[256];
    (void)st;
    NEED_REDIS(&fx);
    redis_app("pw-one", NULL);
    assert_int_equal(af_init(&f, "rc-rot", fx.srv[0].port), 0);
    af_store(&f, "cache.json", "app", "pw-one");
    af_write_config(&f, af_cred(cred, sizeof cred, "cache", ""));
    assert_int_equal(af_start(&f, false), 0);
    assert_int_equal(agent_rotate(f.a, "cache", false, err, sizeof err), -EOPNOTSUPP);
    assert_non_null(strstr(err, "rotation is not configured"));
    assert_int_equal(agent_rotate(f.a, "nosuch", false, err, sizeof err), -ENOENT);
    af_stop(&f);
}

/* ---- the fleet clock ---------------------------------------------------------------------- */

/* The store's entry as another host's rotation leaves it: password and its mark. */
static void store_rotated(struct agent_fixture *f, const char *pw, int64_t rotated_at) {
    char at[32], text[256];
    snprintf(text, sizeof text, "{\"username\": \"app\", \"password\": \"%s\", "
             "\"redis_creds_rotated_at\": \"%s\"}", pw, rctime_format(rotated_at, at, sizeof at));
    af_store_text(f, "cache.json", text);
}

struct due {
    int64_t want;    /* unix seconds */
};

/* The schedule's next rotation is due at want (to the second the status rounds to). */
static bool due_at(struct agent_fixture *f, void *ud) {
    const struct due *d = ud;
    json_t *row = af_status(f, "cache");
    int64_t t;
    bool ok = row && rctime_parse(af_str(row, "rotation.next_rotation"), &t) == 0 &&
              t >= d->want - 2 && t <= d->want + 2;
    json_decref(row);
    return ok;
}

/* Each fetch hands the entry's rotated_at to the rotation (rotation_fetched): a newer one
 * moves the schedule to it + interval, an older one does not move it back. */
static void test_fleet_clock_moves_the_schedule(void **st) {
    struct agent_fixture f;
    (void)st;
    NEED_REDIS(&fx);
    redis_app("pw-one", ">pw-two");
    int64_t now = rctime_real_usec() / (int64_t)RCTIME_USEC_PER_SEC;
    assert_int_equal(af_init(&f, "rc-rot", fx.srv[0].port), 0);
    store_rotated(&f, "pw-one", now - 1200);
    char extra[256], cred[1024];
    snprintf(extra, sizeof extra, "rotation = { strategy = \"redis-acl\"; interval = \"1h\"; splay = \"0s\"; };");
    af_write_config(&f, af_cred(cred, sizeof cred, "cache", extra));
    assert_int_equal(af_start(&f, false), 0);
    /* (a clock in whole seconds counts from the second after it) */
    struct due d = { now - 1200 + 3600 + 1 };
    assert_true(af_run_until(&f, due_at, &d, AF_WAIT));

    /* Another host rotated since: the store's wake-up fetch moves the clock. */
    store_rotated(&f, "pw-two", now - 60);
    d.want = now - 60 + 3600 + 1;
    assert_true(af_run_until(&f, due_at, &d, AF_WAIT));
    assert_true(af_wait_published(&f, "cache", "pw-one", true));

    /* An older mark (an entry restored from a backup) does not move it back: once that
     * fetch's version is published, the schedule is where it was. */
    store_rotated(&f, "pw-one", now - 1800);
    assert_true(af_wait_published(&f, "cache", "pw-two", true));
    assert_true(due_at(&f, &d));
    af_stop(&f);
}

static bool reloaded(struct agent_fixture *f, void *ud) {
    return f->reloads >= *(int *)ud;
}

/* Rewrites the credential's rotation settings and reloads. */
static void reload_rotation(struct agent_fixture *f, const char *rotation) {
    char extra[512], cred[1024];
    snprintf(extra, sizeof extra, "rotation = { strategy = \"redis-acl\"; %s };", rotation);
    af_write_config(f, af_cred(cred, sizeof cred, "cache", extra));
    int want = f->reloads + 1;
    agent_request_reload(f->a, false);
    assert_true(af_run_until(f, reloaded, &want, AF_WAIT));
    assert_int_equal(f->reload_result, 0);
}

static void assert_last_rotation(struct agent_fixture *f, bool rotates_here, const char *last) {
    json_t *row = af_status(f, "cache");
    assert_int_equal(json_is_true(json_object_get(json_object_get(row, "rotation"), "rotates_here")), rotates_here);
    assert_string_equal(af_str(row, "rotation.phase"), "idle");
    assert_string_equal(af_str(row, "rotation.last_rotation"), last);
    json_decref(row);
}

/* The phase record exists only while this host rotates the credential: a reload moves it
 * to the next generation; a reload that makes this host an observer drops it (its status:
 * idle, no rotation of its own); one that makes it a rotator again reads it back from the
 * state file. */
static void test_reload_moves_or_drops_the_phase_record(void **st) {
    struct agent_fixture f;
    char err[256], last[64];
    static const char base[] = "grace = \"1s\"; interval = \"30d\"; splay = \"0s\"; revocation_watch = \"0s\";";
    char observer[256];
    (void)st;
    NEED_REDIS(&fx);
    redis_app("pw-one", NULL);
    start_rotating(&f, base);
    wait_status(&f, "state", "current");
    assert_int_equal(agent_rotate(f.a, "cache", false, err, sizeof err), 0);
    assert_true(af_run_until(&f, old_refused, "pw-one", AF_WAIT));
    wait_status(&f, "rotation.step", "idle");
    json_t *row = af_status(&f, "cache");
    snprintf(last, sizeof last, "%s", af_str(row, "rotation.last_rotation"));
    json_decref(row);
    assert_string_not_equal(last, "");

    reload_rotation(&f, base);
    assert_last_rotation(&f, true, last);
    snprintf(observer, sizeof observer, "%s rotators = [ \"no-such-host.invalid\" ];", base);
    reload_rotation(&f, observer);
    assert_last_rotation(&f, false, "");
    reload_rotation(&f, base);
    assert_last_rotation(&f, true, last);
    af_stop(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotate_runs_every_step),
        cmocka_unit_test(test_refused_step_waits_to_retry),
        cmocka_unit_test(test_rotate_unconfigured_says_so),
        cmocka_unit_test(test_fleet_clock_moves_the_schedule),
        cmocka_unit_test(test_reload_moves_or_drops_the_phase_record),
    };
    return cmocka_run_group_tests(tests, redis_setup, redis_teardown);
}
