/* Unit tests for agent/reval: the verdict on a re-validation under each policy, the
 * splay of the interval, the no-flap rule, and what a check does with the store's offer
 * while a refused version is latched or a recovery runs (the candidates it takes, in
 * which cases, and the state it leaves). The whole loop (timer, worker, publish) runs in
 * tests/integration/test_revalidate.py against a real redis-server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "agent_internal.h"
#include "reval.h"

static struct validate_result res(unsigned accepted, unsigned refused, unsigned unreachable, unsigned other) {
    return (struct validate_result){ .accepted = accepted, .refused = refused, .unreachable = unreachable,
                                     .other = other, .total = accepted + refused + unreachable + other };
}

static enum reval_verdict judge(enum validate_policy p, struct validate_result r) {
    return reval_judge(p, &r);
}

static void test_judge_all(void **state) {
    assert_int_equal(judge(VALIDATE_ALL, res(3, 0, 0, 0)), REVAL_ACCEPTED);
    assert_int_equal(judge(VALIDATE_ALL, res(2, 1, 0, 0)), REVAL_REFUSED);   /* one node refuses */
    assert_int_equal(judge(VALIDATE_ALL, res(0, 1, 2, 0)), REVAL_REFUSED);
    /* an unreachable node is not a refusal, and not an acceptance either */
    assert_int_equal(judge(VALIDATE_ALL, res(2, 0, 1, 0)), REVAL_INCONCLUSIVE);
    assert_int_equal(judge(VALIDATE_ALL, res(0, 0, 3, 0)), REVAL_INCONCLUSIVE);
    assert_int_equal(judge(VALIDATE_ALL, res(2, 0, 0, 1)), REVAL_INCONCLUSIVE);   /* no-password */
    assert_int_equal(judge(VALIDATE_ALL, res(0, 0, 0, 0)), REVAL_INCONCLUSIVE);   /* no node asked */
}

static void test_judge_any(void **state) {
    assert_int_equal(judge(VALIDATE_ANY, res(1, 2, 0, 0)), REVAL_ACCEPTED);   /* one node is enough */
    assert_int_equal(judge(VALIDATE_ANY, res(0, 3, 0, 0)), REVAL_REFUSED);    /* every node refuses */
    assert_int_equal(judge(VALIDATE_ANY, res(0, 2, 1, 0)), REVAL_INCONCLUSIVE); /* the third may accept */
    assert_int_equal(judge(VALIDATE_ANY, res(0, 0, 3, 0)), REVAL_INCONCLUSIVE);
    assert_int_equal(judge(VALIDATE_ANY, res(0, 1, 0, 1)), REVAL_INCONCLUSIVE);
    assert_int_equal(judge(VALIDATE_NONE, res(0, 3, 0, 0)), REVAL_INCONCLUSIVE);   /* never asked */
    assert_string_equal(reval_verdict_to_string(REVAL_REFUSED), "refused");
    assert_string_equal(reval_verdict_to_string((enum reval_verdict)7), "?");
}

static void test_delay_splay(void **state) {
    const uint64_t min5 = 300ull * 1000 * 1000;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (uint64_t r = 0; r < 200000; r += 7) {
        uint64_t d = reval_delay(min5, r * 2654435761u);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo >= min5 - min5 / 10 && lo < min5 - min5 / 20);   /* spread over -10% .. */
    assert_true(hi <= min5 + min5 / 10 && hi > min5 + min5 / 20);   /* .. +10% */
    assert_int_equal(reval_delay(min5, 0), min5 - min5 / 10);
    assert_int_equal(reval_delay(min5, min5 / 5), min5 + min5 / 10);
    assert_int_equal(reval_delay(5, 12345), 5);   /* too short to splay */
}

static void test_offer_no_flap(void **state) {
    /* nothing latched, or the store moved on: judged as usual */
    assert_int_equal(reval_offer("", "v1", "v1", NULL), REVAL_TAKE_NONE);
    assert_int_equal(reval_offer(NULL, "v1", "v1", NULL), REVAL_TAKE_NONE);
    assert_int_equal(reval_offer("v1", "v1", "v2", NULL), REVAL_TAKE_NONE);
    /* the store still offers the refused version */
    assert_int_equal(reval_offer("v1", "v1", "v1", NULL), REVAL_TAKE_REVOKED);     /* nothing replaced it */
    assert_int_equal(reval_offer("v1", "v0", "v1", NULL), REVAL_TAKE_REVOKED);     /* running on previous */
    assert_int_equal(reval_offer("pk", "sk", "pk", "sk"), REVAL_TAKE_CURRENT);     /* the other key */
    assert_int_equal(reval_offer("pk", NULL, "pk", "pk"), REVAL_TAKE_REVOKED);
    /* the other key changed (regenerated) and is not published: judge it */
    assert_int_equal(reval_offer("pk", "sk", "pk", "sk2"), REVAL_TAKE_NONE);
    /* still publishing the refused key: each re-validation's recovery tries the other */
    assert_int_equal(reval_offer("pk", "pk", "pk", "sk"), REVAL_TAKE_REVOKED);
}

/* ---- reval_take_fetched on a credential built by hand ---- */

struct fixture {
    struct agent a;
    struct config_credential cfg;
    struct cred_rt c;
    struct rc_candidate cands[2];
};

static void set_value(struct cred_value *v, const char *version, const char *password) {
    v->version = strdup(version);
    v->password = secret_new_str(password);
    v->expires_at = RC_NO_EXPIRY;
}

/* Published: current `cur` (and previous `prev` when not NULL). */
static struct fixture *fixture(const char *cur, const char *prev) {
    struct fixture *f = calloc(1, sizeof *f);
    f->cfg.name = "cache";
    f->cfg.redis.validate = VALIDATE_ALL;
    f->cfg.redis.revalidate_interval_usec = 2 * 1000 * 1000;
    f->c.a = &f->a;
    f->c.cfg = &f->cfg;
    f->c.have_cur = true;
    set_value(&f->c.cur.cur, cur, "pw-cur");
    if (prev) {
        f->c.cur.has_previous = true;
        set_value(&f->c.cur.prev, prev, "pw-prev");
    }
    return f;
}

static void offer(struct fixture *f, const char *version, const char *peer) {
    f->cands[0] = (struct rc_candidate){ .password = secret_new_str("pw-store"), .role = RC_CAND_CURRENT };
    snprintf(f->cands[0].version, sizeof f->cands[0].version, "%s", version);
    if (peer) {
        f->cands[1] = (struct rc_candidate){ .password = secret_new_str("pw-peer"), .role = RC_CAND_PEER };
        snprintf(f->cands[1].version, sizeof f->cands[1].version, "%s", peer);
    }
}

static void fixture_free(struct fixture *f) {
    for (int i = 0; i < 2; i++)
        secret_free(f->cands[i].password);
    credfile_clear(&f->c.cur);
    reval_clear(&f->c);
    text_clear(&f->c.last_error);
    text_clear(&f->c.logged_error);
    text_clear(&f->c.nodes);
    text_clear(&f->c.pending_version);
    free(f);
}

static void latch(struct fixture *f, const char *version) {
    text_set(&f->c.reval.revoked_version, "%s", version);
    f->c.reval.published_refused = true;
    text_set(&f->c.reval.why, "Redis refused the published version %s", version);
}

static void test_take_keeps_refused_version_out(void **state) {
    struct fixture *f = fixture("v1", NULL);
    latch(f, "v1");
    f->c.state = CS_STORE_ERROR;
    offer(f, "v1", NULL);
    assert_int_equal(reval_take_fetched(&f->c, f->cands, 1), REVAL_TAKE_REVOKED);
    assert_int_equal(f->c.state, CS_REVOKED);             /* not `current`: Redis refuses it */
    assert_string_equal(f->c.last_error, "Redis refused the published version v1");
    assert_string_equal(f->c.pending_version, "v1");
    assert_non_null(f->cands[0].password);                /* nothing taken */
    /* the store moves on: judged as usual, and the latch goes */
    secret_free(f->cands[0].password);
    offer(f, "v2", NULL);
    assert_int_equal(reval_take_fetched(&f->c, f->cands, 1), REVAL_TAKE_NONE);
    assert_null(f->c.reval.revoked_version);
    assert_true(reval_previous_refused(&f->c));           /* v1 never becomes `previous` */
    reval_after_publish(&f->c);
    assert_false(reval_previous_refused(&f->c));
    fixture_free(f);
}

static void test_take_other_key_is_current(void **state) {
    struct fixture *f = fixture("secondary-2", NULL);   /* published after the refusal */
    latch(f, "primary-1");
    offer(f, "primary-1", "secondary-2");
    assert_int_equal(reval_take_fetched(&f->c, f->cands, 2), REVAL_TAKE_CURRENT);
    assert_non_null(f->cands[0].password);
    assert_non_null(f->cands[1].password);
    /* a regenerated secondary is judged, the primary stays latched */
    secret_free(f->cands[0].password);
    secret_free(f->cands[1].password);
    offer(f, "primary-1", "secondary-3");
    assert_int_equal(reval_take_fetched(&f->c, f->cands, 2), REVAL_TAKE_NONE);
    assert_string_equal(f->c.reval.revoked_version, "primary-1");
    /* a regenerated primary is a new version: judged as usual */
    secret_free(f->cands[0].password);
    secret_free(f->cands[1].password);
    offer(f, "primary-3", "secondary-2");
    assert_int_equal(reval_take_fetched(&f->c, f->cands, 2), REVAL_TAKE_NONE);
    fixture_free(f);
}

static void test_recovery_takes_the_other_key_and_previous(void **state) {
    struct fixture *f = fixture("primary-1", "secondary-1");
    latch(f, "primary-1");
    f->c.sm.recovering = true;
    offer(f, "primary-1", "secondary-1");
    assert_int_equal(reval_take_fetched(&f->c, f->cands, 2), REVAL_TAKE_RECOVER);
    assert_non_null(f->cands[0].password);                /* the refused one stays out */
    assert_null(f->cands[1].password);                    /* the other key is a candidate */
    struct job *j = reval_job(&f->c);                     /* the prepared recovery job */
    assert_non_null(j);
    assert_ptr_equal(reval_job_cred(j), &f->c);
    fixture_free(f);
}

static void test_recovery_previous_when_the_store_fails(void **state) {
    struct fixture *f = fixture("v2", "v1");
    latch(f, "v2");
    f->c.sm.recovering = true;
    assert_int_equal(reval_take_fetched(&f->c, NULL, -1), REVAL_TAKE_RECOVER);
    fixture_free(f);
    /* no previous and a failed store: nothing to try, the store error is what is said */
    f = fixture("v2", NULL);
    latch(f, "v2");
    f->c.sm.recovering = true;
    assert_int_equal(reval_take_fetched(&f->c, NULL, -1), REVAL_TAKE_NONE);
    fixture_free(f);
}

static void test_recovery_without_candidates(void **state) {
    struct fixture *f = fixture("v2", NULL);
    latch(f, "v2");
    f->c.sm.recovering = true;
    offer(f, "v2", NULL);
    assert_int_equal(reval_take_fetched(&f->c, f->cands, 1), REVAL_TAKE_REVOKED);
    assert_true(f->c.reval.said);                         /* warned once */
    assert_non_null(f->cands[0].password);
    fixture_free(f);
    /* a previous that a rotation removed from Redis is not tried */
    f = fixture("v2", "v1");
    f->c.cur.has_previous_valid_until = true;
    f->c.cur.previous_valid_until = 1000;
    latch(f, "v2");
    f->c.sm.recovering = true;
    offer(f, "v2", NULL);
    assert_int_equal(reval_take_fetched(&f->c, f->cands, 1), REVAL_TAKE_REVOKED);
    fixture_free(f);
}

static void test_forget(void **state) {
    struct fixture *f = fixture("v0", NULL);
    latch(f, "v1");
    reval_forget(&f->c);                                  /* running on v0: v1 is judged again */
    assert_null(f->c.reval.revoked_version);
    fixture_free(f);
    f = fixture("v1", NULL);
    latch(f, "v1");
    reval_forget(&f->c);                                  /* v1 is published: re-validation judges it */
    assert_string_equal(f->c.reval.revoked_version, "v1");
    fixture_free(f);
}

static void test_status_json(void **state) {
    struct fixture *f = fixture("v1", NULL);
    latch(f, "v1");
    json_t *j = reval_status_json(&f->c, 0, 1000);
    assert_int_equal(json_integer_value(json_object_get(j, "interval_seconds")), 2);
    assert_string_equal(json_string_value(json_object_get(j, "refused_version")), "v1");
    assert_true(json_is_null(json_object_get(j, "last")));
    json_decref(j);
    f->cfg.redis.revalidate_interval_usec = 0;            /* off */
    assert_true(json_is_null(reval_status_json(&f->c, 0, 1000)));
    fixture_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_judge_all),
        cmocka_unit_test(test_judge_any),
        cmocka_unit_test(test_delay_splay),
        cmocka_unit_test(test_offer_no_flap),
        cmocka_unit_test(test_take_keeps_refused_version_out),
        cmocka_unit_test(test_take_other_key_is_current),
        cmocka_unit_test(test_recovery_takes_the_other_key_and_previous),
        cmocka_unit_test(test_recovery_previous_when_the_store_fails),
        cmocka_unit_test(test_recovery_without_candidates),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_status_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
