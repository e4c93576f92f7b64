/* Unit tests of agent/rotrec.c: the fleet's rotation record (format, parse, the decisions). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rotrec.h"
#include "secret.h"

#define T0 1796200000   /* 2026-12-02T... */

static void fill(struct rotrec *r) {
    *r = (struct rotrec){ .epoch = 3, .phase = ROTREC_ADDING, .claimed_at = T0, .updated_at = T0 + 5 };
    snprintf(r->owner, sizeof r->owner, "host-a");
    snprintf(r->owner_id, sizeof r->owner_id, "h-aaaa");
    snprintf(r->base_version, sizeof r->base_version, "h-0123456789abcdef");
    r->username = strdup("app");
    r->old_username = strdup("app");
    r->password = secret_new_str("pending-pw-\"quoted\"");
    r->old_password = secret_new_str("old-pw");
}

static void test_round_trip(void **st) {
    struct rotrec in, out = { 0 };
    struct secret *text = NULL;
    char err[256] = "";
    fill(&in);
    in.wait_until = T0 + 60;
    in.revoke = true;
    in.phase = ROTREC_REMOVING;
    assert_int_equal(rotrec_format(&in, &text), 0);
    assert_non_null(strstr(secret_data(text), "\"format\":1"));
    assert_non_null(strstr(secret_data(text), "\"wait_until\":\"20"));
    assert_int_equal(rotrec_parse(secret_data(text), secret_len(text), &out, err, sizeof err), 0);
    assert_string_equal(out.owner, "host-a");
    assert_string_equal(out.owner_id, "h-aaaa");
    assert_int_equal(out.epoch, 3);
    assert_int_equal(out.phase, ROTREC_REMOVING);
    assert_string_equal(out.base_version, in.base_version);
    assert_string_equal(out.username, "app");
    assert_true(secret_equal(out.password, in.password));
    assert_true(secret_equal(out.old_password, in.old_password));
    assert_int_equal(out.claimed_at, T0);
    assert_int_equal(out.updated_at, T0 + 5);
    assert_int_equal(out.wait_until, T0 + 60);
    assert_true(out.revoke);
    secret_free(text);
    rotrec_clear(&in);
    rotrec_clear(&out);
}

static void test_default_user_and_no_wait_are_null(void **st) {
    struct rotrec in, out = { 0 };
    struct secret *text = NULL;
    char err[256];
    fill(&in);
    free(in.username);
    free(in.old_username);
    in.username = in.old_username = NULL;
    assert_int_equal(rotrec_format(&in, &text), 0);
    assert_non_null(strstr(secret_data(text), "\"username\":null"));
    assert_non_null(strstr(secret_data(text), "\"wait_until\":null"));
    assert_int_equal(rotrec_parse(secret_data(text), secret_len(text), &out, err, sizeof err), 0);
    assert_null(out.username);
    assert_null(out.old_username);
    assert_int_equal(out.wait_until, 0);
    assert_false(out.revoke);
    secret_free(text);
    rotrec_clear(&in);
    rotrec_clear(&out);
}

static void test_format_refuses_what_it_cannot_write(void **st) {
    struct rotrec in;
    struct secret *text = NULL;
    fill(&in);
    in.epoch = 0;
    assert_int_equal(rotrec_format(&in, &text), -EINVAL);
    in.epoch = 1;
    secret_free(in.password);
    in.password = secret_new("\xff\xfe", 2);   /* not UTF-8 */
    assert_int_equal(rotrec_format(&in, &text), -EINVAL);
    assert_null(text);
    rotrec_clear(&in);
}

/* What format writes, parse reads: an epoch past what JSON integers hold here (a takeover
 * of a record at INT64_MAX) is refused, not written as a negative number that every host
 * then fails to read (rotation blocked for the fleet). */
static void test_format_never_writes_an_epoch_parse_refuses(void **st) {
    struct rotrec in, out = { 0 };
    struct secret *text = NULL;
    char err[256];
    fill(&in);
    in.epoch = (uint64_t)INT64_MAX;
    assert_int_equal(rotrec_format(&in, &text), 0);
    assert_int_equal(rotrec_parse(secret_data(text), secret_len(text), &out, err, sizeof err), 0);
    assert_true(out.epoch == (uint64_t)INT64_MAX);
    text = secret_free(text);
    in.epoch = (uint64_t)INT64_MAX + 1;
    assert_int_equal(rotrec_format(&in, &text), -EINVAL);
    assert_null(text);
    rotrec_clear(&in);
    rotrec_clear(&out);
}

static int parse(const char *text, char *err, size_t errlen) {
    struct rotrec out = { 0 };
    int r = rotrec_parse(text, strlen(text), &out, err, errlen);
    rotrec_clear(&out);
    return r;
}

#define GOOD_HEAD "{\"format\":1,\"owner\":\"h\",\"epoch\":1,\"phase\":\"adding\",\"base_version\":\"v\","
#define GOOD_TAIL "\"claimed_at\":\"2026-12-02T06:30:00Z\",\"updated_at\":\"2026-12-02T06:30:00Z\"}"

static void test_parse_errors_never_quote_input(void **st) {
    char err[256];
    /* a broken document whose bytes would be a password */
    assert_int_equal(parse("{\"password\": hunter2-secret}", err, sizeof err), -EINVAL);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "not JSON"));
    assert_int_equal(parse(GOOD_HEAD "\"username\":null,\"password\":7,\"old_username\":null,"
                           "\"old_password\":\"hunter2-secret\"," GOOD_TAIL, err, sizeof err), -EINVAL);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "\"password\""));
    assert_int_equal(parse(GOOD_HEAD "\"username\":null,\"password\":\"p\",\"old_username\":null,"
                           "\"old_password\":\"hunter2-secret\",\"claimed_at\":\"hunter2-secret\","
                           "\"updated_at\":\"2026-12-02T06:30:00Z\"}", err, sizeof err), -EINVAL);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "claimed_at"));
}

static void test_parse_refuses_other_formats_and_shapes(void **st) {
    char err[256];
    assert_int_equal(parse("{\"format\":2}", err, sizeof err), -EPROTONOSUPPORT);
    assert_int_equal(parse("{\"owner\":\"h\"}", err, sizeof err), -EINVAL);   /* no format */
    assert_int_equal(parse("[1]", err, sizeof err), -EINVAL);
    assert_int_equal(parse("{\"format\":1,\"owner\":\"h\",\"epoch\":0}", err, sizeof err), -EINVAL);
    assert_int_equal(parse("{\"format\":1,\"owner\":\"h\",\"epoch\":1,\"phase\":\"done\"}", err, sizeof err),
                     -EINVAL);
    assert_int_equal(parse(GOOD_HEAD "\"username\":null,\"password\":\"\",\"old_username\":null,"
                           "\"old_password\":\"o\"," GOOD_TAIL, err, sizeof err), -EINVAL);
    assert_int_equal(parse(GOOD_HEAD "\"username\":null,\"password\":\"p\",\"old_username\":null,"
                           "\"old_password\":\"o\",\"x_unknown\":1," GOOD_TAIL, err, sizeof err), 0);
}

static void test_takeover_time_is_after_the_later_of_updated_and_wait(void **st) {
    struct rotrec r = { .updated_at = T0, .wait_until = 0 };
    assert_int_equal(rotrec_takeover_at(&r, 600), T0 + 600);
    r.wait_until = T0 + 100;
    assert_int_equal(rotrec_takeover_at(&r, 600), T0 + 700);
}

static void test_decide(void **st) {
    struct rotrec r = { .epoch = 4, .updated_at = T0 };
    snprintf(r.owner, sizeof r.owner, "host-a");
    snprintf(r.owner_id, sizeof r.owner_id, "id-a");
    /* no record */
    assert_int_equal(rotrec_decide(NULL, "host-b", "id-b", 0, T0, 600), ROTREC_CLAIM);
    assert_int_equal(rotrec_decide(NULL, "host-a", "id-a", 4, T0, 600), ROTREC_LOST);
    /* another host's record: live, then past the timeout (strictly after) */
    assert_int_equal(rotrec_decide(&r, "host-b", "id-b", 0, T0 + 600, 600), ROTREC_WAIT);
    assert_int_equal(rotrec_decide(&r, "host-b", "id-b", 0, T0 + 601, 600), ROTREC_TAKE_OVER);
    /* a live record is never taken over while its wait runs */
    r.wait_until = T0 + 3600;
    assert_int_equal(rotrec_decide(&r, "host-b", "id-b", 0, T0 + 601, 600), ROTREC_WAIT);
    /* this agent's own */
    assert_int_equal(rotrec_decide(&r, "host-a", "id-a", 4, T0, 600), ROTREC_CONTINUE);
    assert_int_equal(rotrec_decide(&r, "host-a", "id-a", 3, T0, 600), ROTREC_LOST);   /* taken and back */
    assert_int_equal(rotrec_decide(&r, "host-a", "id-a", 0, T0, 600), ROTREC_RESUME);
    /* another agent on the same host is another owner */
    assert_int_equal(rotrec_decide(&r, "host-a", "id-x", 0, T0, 600), ROTREC_WAIT);
    assert_int_equal(rotrec_decide(&r, "host-a", "id-x", 4, T0, 600), ROTREC_LOST);
    /* held, but another host has it now */
    assert_int_equal(rotrec_decide(&r, "host-b", "id-a", 4, T0, 600), ROTREC_LOST);
    assert_string_equal(rotrec_action_to_string(ROTREC_TAKE_OVER), "take-over");
    assert_string_equal(rotrec_action_to_string((enum rotrec_action)99), "?");
}


/* A record in each phase, owned by host-a (id-a) at epoch 4, updated at T0. */
static void head(struct rotrec *r, enum rotrec_phase phase) {
    *r = (struct rotrec){ .epoch = 4, .updated_at = T0, .phase = phase };
    snprintf(r->owner, sizeof r->owner, "host-a");
    snprintf(r->owner_id, sizeof r->owner_id, "id-a");
}

/* Every phase x every reader: the action does not depend on the phase (a stale owner
 * stops in every phase, so its roll-back never touches Redis); what the holder then does
 * does (rotrec_next_step): a taker of a rolling_back record rolls back, never adds. */
static void test_decide_every_phase_and_reader(void **st) {
    static const enum rotrec_phase phases[] = { ROTREC_ADDING, ROTREC_REMOVING, ROTREC_ROLLING_BACK };
    static const enum rotrec_step steps[] = { ROTREC_STEP_ADD, ROTREC_STEP_REMOVE, ROTREC_STEP_ROLL_BACK };
    for (size_t i = 0; i < 3; i++) {
        struct rotrec r;
        head(&r, phases[i]);
        /* the owner, at the epoch it holds: goes on */
        assert_int_equal(rotrec_decide(&r, "host-a", "id-a", 4, T0, 600), ROTREC_CONTINUE);
        /* a stale owner (frozen, then taken over: epoch 5 now, maybe by itself after a
         * restart): stops before touching Redis */
        r.epoch = 5;
        assert_int_equal(rotrec_decide(&r, "host-a", "id-a", 4, T0 + 9999, 600), ROTREC_LOST);
        r.epoch = 4;
        /* a stale owner whose record another host holds now */
        snprintf(r.owner, sizeof r.owner, "host-b");
        snprintf(r.owner_id, sizeof r.owner_id, "id-b");
        assert_int_equal(rotrec_decide(&r, "host-a", "id-a", 4, T0 + 9999, 600), ROTREC_LOST);
        head(&r, phases[i]);
        /* the owner after a restart: takes it back */
        assert_int_equal(rotrec_decide(&r, "host-a", "id-a", 0, T0, 600), ROTREC_RESUME);
        /* another host: waits while the record lives, takes it over after */
        assert_int_equal(rotrec_decide(&r, "host-b", "id-b", 0, T0 + 600, 600), ROTREC_WAIT);
        assert_int_equal(rotrec_decide(&r, "host-b", "id-b", 0, T0 + 601, 600), ROTREC_TAKE_OVER);
        /* gone: the owner stops, another host may claim */
        assert_int_equal(rotrec_decide(NULL, "host-a", "id-a", 4, T0, 600), ROTREC_LOST);
        assert_int_equal(rotrec_decide(NULL, "host-b", "id-b", 0, T0, 600), ROTREC_CLAIM);
        /* whoever holds it (owner, resumer, taker) goes on with the phase's step */
        assert_int_equal(rotrec_next_step(&r), steps[i]);
    }
    assert_string_equal(rotrec_phase_to_string(ROTREC_ROLLING_BACK), "rolling_back");
}

/* The owner's roll-back first turns the record into rolling_back (then writes it with a
 * check-and-set on its epoch), never a record whose entry holds the pending password. */
static void test_roll_back_marks_the_record_first(void **st) {
    struct rotrec r;
    head(&r, ROTREC_ADDING);
    assert_int_equal(rotrec_roll_back(&r, T0 + 30), 0);
    assert_int_equal(r.phase, ROTREC_ROLLING_BACK);
    assert_int_equal(r.epoch, 4);   /* the owner's epoch: the CAS fails if it moved on */
    assert_int_equal(r.updated_at, T0 + 30);
    assert_int_equal(rotrec_roll_back(&r, T0 + 60), 0);   /* a retry renews it */
    assert_int_equal(r.updated_at, T0 + 60);
    head(&r, ROTREC_REMOVING);
    assert_int_equal(rotrec_roll_back(&r, T0 + 30), -EPERM);
    assert_int_equal(r.phase, ROTREC_REMOVING);
    assert_int_equal(r.updated_at, T0);
}

/* The record goes only when every node confirmed the removal (a node that never had the
 * password counts as confirmed: rotate_acl_apply() checks it no longer logs in). */
static void test_rollback_deletes_the_record_only_when_every_node_confirmed(void **st) {
    struct rotrec r;
    head(&r, ROTREC_ROLLING_BACK);
    assert_true(rotrec_rollback_complete(&r, 3, 3));
    assert_false(rotrec_rollback_complete(&r, 3, 2));   /* a node down or refusing: retried */
    assert_false(rotrec_rollback_complete(&r, 0, 0));   /* no node list at all */
    head(&r, ROTREC_ADDING);
    assert_false(rotrec_rollback_complete(&r, 3, 3));   /* never without the mark first */
}

/* rolling_back stays format 1 (a format bump would make every older agent refuse the
 * record; see design.md §9.5 "Record formats"): it round-trips, and an unknown phase
 * (what an older agent meets in it) is -EINVAL with a reason that says a newer
 * redis-creds may have written it. */
static void test_rolling_back_round_trips_and_an_unknown_phase_is_refused(void **st) {
    struct rotrec in, out = { 0 };
    struct secret *text = NULL;
    char err[256];
    fill(&in);
    in.phase = ROTREC_ROLLING_BACK;
    assert_int_equal(rotrec_format(&in, &text), 0);
    assert_non_null(strstr(secret_data(text), "\"format\":1"));
    assert_non_null(strstr(secret_data(text), "\"phase\":\"rolling_back\""));
    assert_int_equal(rotrec_parse(secret_data(text), secret_len(text), &out, err, sizeof err), 0);
    assert_int_equal(out.phase, ROTREC_ROLLING_BACK);
    assert_true(secret_equal(out.password, in.password));
    secret_free(text);
    assert_int_equal(parse("{\"format\":1,\"owner\":\"h\",\"epoch\":1,\"phase\":\"undoing\"}", err,
                           sizeof err), -EINVAL);
    assert_non_null(strstr(err, "newer"));
    rotrec_clear(&in);
    rotrec_clear(&out);
}

static void test_entry_is(void **st) {
    struct rotrec r;
    fill(&r);
    struct secret *old = secret_new_str("old-pw"), *pend = secret_dup(r.password),
                  *other = secret_new_str("hand-written");
    assert_int_equal(rotrec_entry_is(&r, "app", old), ROTREC_ENTRY_BASE);
    assert_int_equal(rotrec_entry_is(&r, "app", pend), ROTREC_ENTRY_PENDING);
    assert_int_equal(rotrec_entry_is(&r, "app", other), ROTREC_ENTRY_OTHER);
    assert_int_equal(rotrec_entry_is(&r, NULL, old), ROTREC_ENTRY_OTHER);   /* default user */
    assert_int_equal(rotrec_entry_is(&r, "bob", pend), ROTREC_ENTRY_OTHER);
    secret_free(old);
    secret_free(pend);
    secret_free(other);
    rotrec_clear(&r);
}

static void test_copy_and_clear(void **st) {
    struct rotrec a, b = { 0 };
    fill(&a);
    assert_int_equal(rotrec_copy(&a, &b), 0);
    assert_ptr_not_equal(a.password, b.password);
    assert_true(secret_equal(a.password, b.password));
    assert_string_equal(b.old_username, "app");
    rotrec_clear(&a);
    rotrec_clear(&b);
    rotrec_clear(&b);    /* twice: zeroed */
    rotrec_clear(NULL);
    assert_string_equal(rotrec_phase_to_string(ROTREC_REMOVING), "removing");
    assert_string_equal(rotrec_phase_to_string((enum rotrec_phase)7), "?");
}

int main(void) {
    secret_init(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_default_user_and_no_wait_are_null),
        cmocka_unit_test(test_format_refuses_what_it_cannot_write),
        cmocka_unit_test(test_format_never_writes_an_epoch_parse_refuses),
        cmocka_unit_test(test_parse_errors_never_quote_input),
        cmocka_unit_test(test_parse_refuses_other_formats_and_shapes),
        cmocka_unit_test(test_takeover_time_is_after_the_later_of_updated_and_wait),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_decide_every_phase_and_reader),
        cmocka_unit_test(test_roll_back_marks_the_record_first),
        cmocka_unit_test(test_rollback_deletes_the_record_only_when_every_node_confirmed),
        cmocka_unit_test(test_rolling_back_round_trips_and_an_unknown_phase_is_refused),
        cmocka_unit_test(test_entry_is),
        cmocka_unit_test(test_copy_and_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
