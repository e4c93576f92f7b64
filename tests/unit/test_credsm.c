/* Unit tests for agent/credsm: the credential's state machine. Every event is tried in
 * every state (check phase x rotation step, with and without the latches), against the
 * rules of credsm.h written out here again; then the scenarios of two past bugs and of a
 * whole rotation, and the one "is it published already" predicate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "credsm.h"

#define N_CHECK 5   /* IDLE QUEUED FETCH VALIDATE REVALIDATE */

static bool holding(enum rot_step s) {
    return s == RS_CLAIMING || s == RS_ADDING || s == RS_WRITING || s == RS_ROLLBACK || s == RS_REMOVING ||
           s == RS_WATCHING;
}

static int step(struct credsm *sm, struct credsm_event ev, struct credsm_fx *fx) {
    *fx = (struct credsm_fx){ 0 };
    return credsm_step(sm, &ev, fx);
}

/* A refused event leaves the state as it was and asks for nothing. */
static void check_refused(const struct credsm *before, const struct credsm *after,
                          const struct credsm_fx *fx, int r) {
    assert_true(r == -EINVAL || r == -EBUSY);
    assert_memory_equal(before, after, sizeof *before);
    assert_int_equal(fx->mask, 0);
}

/* Feeds ev; true when the machine took it (it must, exactly when the check is in
 * phase `only`), false after checking that it refused it cleanly. */
static bool taken_in(struct credsm *sm, struct credsm_event ev, enum phase only, struct credsm_fx *fx) {
    struct credsm before = *sm;
    int r = step(sm, ev, fx);
    if (before.check != only) {
        check_refused(&before, sm, fx, r);
        return false;
    }
    assert_int_equal(r, 0);
    return true;
}

/* Every state: each check phase x each rotation step x wake_pending. */
#define FOR_EACH_STATE(sm)                                                           \
    for (int ck_ = 0; ck_ < N_CHECK; ck_++)                                          \
        for (int rs_ = 0; rs_ < RS_N_STEPS; rs_++)                                   \
            for (int wp_ = 0; wp_ < 2; wp_++)                                        \
                for (struct credsm sm = { .check = (enum phase)ck_, .rot = (enum rot_step)rs_, \
                                          .wake_pending = wp_ }, *once_ = &sm; once_; once_ = NULL)

static void test_wake_every_state(void **state) {
    FOR_EACH_STATE(sm) {
        struct credsm_fx fx;
        bool busy = sm.check == PH_FETCH || sm.check == PH_VALIDATE || sm.check == PH_REVALIDATE ||
                    holding(sm.rot);
        enum phase before = sm.check;
        assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_WAKE }, &fx), 0);
        if (busy) {
            assert_true(sm.wake_pending);
            assert_int_equal(sm.check, before);
            assert_int_equal(fx.mask, 0);
        } else if (before == PH_QUEUED) {
            assert_int_equal(sm.check, PH_QUEUED);
            assert_int_equal(fx.mask, CSM_FX_DISPATCH);
        } else {
            assert_int_equal(sm.check, PH_QUEUED);
            assert_int_equal(fx.mask, CSM_FX_QUEUE_FETCH);
        }
    }
}

static void test_fetch_start_every_state(void **state) {
    FOR_EACH_STATE(sm) {
        struct credsm before = sm;
        struct credsm_fx fx;
        if (!taken_in(&sm, (struct credsm_event){ .type = CSM_FETCH_START }, PH_QUEUED, &fx))
            continue;
        assert_int_equal(sm.check, PH_FETCH);
        assert_int_equal(sm.rot, before.rot);
        assert_int_equal(fx.mask, CSM_FX_RUN_FETCH);
    }
}

/* The after-check rule, for a state whose check just ended. */
static void check_after(const struct credsm *before, const struct credsm *sm, const struct credsm_fx *fx) {
    assert_int_equal(sm->check, before->check == PH_IDLE ? PH_IDLE : sm->check);
    assert_true(fx->mask & CSM_FX_CHECK_ENDED);
    assert_false(sm->recovering);   /* a recovery ends with its check */
    if (before->rot_requested) {
        assert_true(fx->mask & CSM_FX_ROT_BEGIN);
        assert_int_equal(fx->manual, before->rot_manual);
        assert_false(sm->rot_requested);
        assert_false(fx->mask & CSM_FX_QUEUE_FETCH);
    } else if (before->wake_pending && !holding(before->rot)) {
        assert_int_equal(sm->check, PH_QUEUED);
        assert_false(sm->wake_pending);
        assert_int_equal(fx->mask, CSM_FX_CHECK_ENDED | CSM_FX_QUEUE_FETCH);
    } else {
        assert_int_equal(sm->check, PH_IDLE);
        assert_int_equal(sm->wake_pending, before->wake_pending);
        assert_int_equal(fx->mask, CSM_FX_CHECK_ENDED);
    }
}

/* FETCH_DONE with each result, and VALIDATE_DONE (res == CSM_FR_N), with the latch of
 * a rotation asked for (none, scheduled, manual), in a normal and in a recovery check. */
static void test_check_done_every_state(void **state) {
    for (int res = 0; res <= CSM_FR_N; res++)
        for (int req = 0; req < 6; req++)
            FOR_EACH_STATE(sm) {
                sm.rot_requested = req % 3 > 0;
                sm.rot_manual = req % 3 == 2;
                sm.recovering = req >= 3;
                struct credsm before = sm;
                struct credsm_fx fx;
                bool validate = res == CSM_FR_N;
                struct credsm_event ev = { .type = validate ? CSM_VALIDATE_DONE : CSM_FETCH_DONE,
                                           .fetch = validate ? CSM_FR_SAME : (enum credsm_fetch_result)res };
                if (res == CSM_FR_RECOVER && !before.recovering) {   /* only in a recovery */
                    check_refused(&before, &sm, &fx, step(&sm, ev, &fx));
                    continue;
                }
                if (!taken_in(&sm, ev, validate ? PH_VALIDATE : PH_FETCH, &fx))
                    continue;
                assert_int_equal(sm.rot, before.rot);
                if (res == CSM_FR_RECOVER) {   /* the candidates go to a worker */
                    assert_int_equal(sm.check, PH_REVALIDATE);
                    assert_int_equal(fx.mask, CSM_FX_RUN_REVALIDATE);
                    assert_true(sm.recovering);
                    assert_int_equal(sm.rot_requested, before.rot_requested);
                    assert_int_equal(sm.wake_pending, before.wake_pending);
                } else if (res == CSM_FR_NEW) {
                    assert_false(sm.recovering);
                    assert_int_equal(sm.check, PH_VALIDATE);
                    assert_int_equal(fx.mask, CSM_FX_RUN_VALIDATE);
                    assert_int_equal(sm.rot_requested, before.rot_requested);
                } else
                    check_after(&before, &sm, &fx);
            }
    struct credsm sm = { .check = PH_FETCH };
    struct credsm_fx fx;
    assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_FETCH_DONE, .fetch = CSM_FR_N }, &fx), -EINVAL);
}

/* REVALIDATE starts only in an idle check with no holding step; else it is refused
 * (-EBUSY) and changes nothing: the driver tries again shortly. */
static void test_revalidate_every_state(void **state) {
    for (int rec = 0; rec < 2; rec++)
        FOR_EACH_STATE(sm) {
            sm.recovering = rec && sm.check != PH_IDLE;
            struct credsm before = sm;
            struct credsm_fx fx;
            int r = step(&sm, (struct credsm_event){ .type = CSM_REVALIDATE }, &fx);
            if (before.check != PH_IDLE || holding(before.rot)) {
                assert_int_equal(r, -EBUSY);
                check_refused(&before, &sm, &fx, r);
                continue;
            }
            assert_int_equal(r, 0);
            assert_int_equal(sm.check, PH_REVALIDATE);
            assert_int_equal(fx.mask, CSM_FX_RUN_REVALIDATE);
            assert_int_equal(sm.rot, before.rot);
            assert_int_equal(sm.wake_pending, before.wake_pending);
            assert_false(sm.recovering);
        }
}

/* REVALIDATE_DONE, accepted only in REVALIDATE: with each verdict, in a periodic
 * re-validation and in a recovery, with each rotation latch. */
static void test_revalidate_done_every_state(void **state) {
    for (int revoked = 0; revoked < 2; revoked++)
        for (int req = 0; req < 6; req++)
            FOR_EACH_STATE(sm) {
                sm.rot_requested = req % 3 > 0;
                sm.rot_manual = req % 3 == 2;
                sm.recovering = req >= 3;
                struct credsm before = sm;
                struct credsm_fx fx;
                if (!taken_in(&sm, (struct credsm_event){ .type = CSM_REVALIDATE_DONE, .revoked = revoked },
                              PH_REVALIDATE, &fx))
                    continue;
                assert_int_equal(sm.rot, before.rot);
                if (before.recovering) {   /* a recovery check ends as a check does */
                    check_after(&before, &sm, &fx);
                    continue;
                }
                assert_false(fx.mask & CSM_FX_CHECK_ENDED);   /* no store was read */
                assert_true(fx.mask & CSM_FX_STATUS);
                if (revoked) {   /* a fresh fetch brings the candidates */
                    assert_int_equal(sm.check, PH_QUEUED);
                    assert_true(sm.recovering);
                    assert_int_equal(fx.mask, CSM_FX_STATUS | CSM_FX_QUEUE_FETCH);
                    assert_int_equal(sm.rot_requested, before.rot_requested);
                    assert_int_equal(sm.wake_pending, before.wake_pending);
                } else if (before.rot_requested) {
                    assert_int_equal(sm.check, PH_IDLE);
                    assert_int_equal(fx.mask, CSM_FX_STATUS | CSM_FX_ROT_BEGIN);
                    assert_int_equal(fx.manual, before.rot_manual);
                    assert_false(sm.rot_requested);
                } else if (before.wake_pending && !holding(before.rot)) {
                    assert_int_equal(sm.check, PH_QUEUED);
                    assert_false(sm.wake_pending);
                    assert_false(sm.recovering);
                    assert_int_equal(fx.mask, CSM_FX_STATUS | CSM_FX_QUEUE_FETCH);
                } else {
                    assert_int_equal(sm.check, PH_IDLE);
                    assert_int_equal(sm.wake_pending, before.wake_pending);
                    assert_int_equal(fx.mask, CSM_FX_STATUS);
                }
            }
}

static void test_rot_request_every_state(void **state) {
    for (int manual = 0; manual < 2; manual++)
        FOR_EACH_STATE(sm) {
            struct credsm before = sm;
            struct credsm_fx fx;
            int r = step(&sm, (struct credsm_event){ .type = CSM_ROT_REQUEST, .manual = manual }, &fx);
            /* the revocation watch gives way to a new rotation */
            if (before.rot != RS_NONE && before.rot != RS_RETRY_WAIT && before.rot != RS_WATCH) {
                assert_int_equal(r, -EBUSY);
                check_refused(&before, &sm, &fx, r);
                continue;
            }
            assert_int_equal(r, 0);
            if (before.check != PH_IDLE) {   /* latched until the check ends */
                assert_true(sm.rot_requested);
                assert_int_equal(sm.rot_manual, manual);
                assert_int_equal(fx.mask, 0);
            } else {
                assert_false(sm.rot_requested);
                assert_int_equal(fx.mask, CSM_FX_ROT_BEGIN);
                assert_int_equal(fx.manual, manual);
            }
        }
}

/* The moves of credsm.h's diagram, written out: from -> to (besides any -> NONE,
 * RETRY_WAIT and the same step). */
static bool move_allowed(enum rot_step from, enum rot_step to) {
    if (to == RS_NONE || to == RS_RETRY_WAIT || to == from)
        return true;
    switch (from) {
    case RS_NONE:   /* at a start: a revocation watch cut short goes on */
        return to == RS_CLAIMING || to == RS_AWAIT_FETCH || to == RS_GRACE || to == RS_REMOVING ||
               to == RS_WATCH;
    case RS_RETRY_WAIT:
        return to == RS_CLAIMING || to == RS_AWAIT_FETCH || to == RS_GRACE || to == RS_REMOVING;
    case RS_CLAIMING:   /* a takeover in phase removing goes on to GRACE or REMOVING, one in
                           phase rolling_back (or its owner's retry) to ROLLBACK */
        return to == RS_AWAIT_FETCH || to == RS_ADDING || to == RS_GRACE || to == RS_REMOVING ||
               to == RS_ROLLBACK;
    case RS_AWAIT_FETCH:
        return to == RS_ADDING;
    case RS_ADDING:
        return to == RS_ROLLBACK || to == RS_GRACE || to == RS_REMOVING || to == RS_WRITING;
    case RS_WRITING:
        return to == RS_ROLLBACK || to == RS_GRACE || to == RS_REMOVING;
    case RS_GRACE:
        return to == RS_REMOVING;
    case RS_REMOVING:   /* the revocation watch after the old password went; a drain */
        return to == RS_WATCH || to == RS_DRAINING;
    case RS_DRAINING:   /* redis-acl-users: checked again */
        return to == RS_REMOVING;
    case RS_WATCH:
        return to == RS_WATCHING || to == RS_CLAIMING;
    case RS_WATCHING:
        return to == RS_WATCH;
    default:
        return false;
    }
}

static void check_rot_step(struct credsm sm, enum rot_step to, bool store) {
    struct credsm before = sm;
    struct credsm_fx fx;
    int r = step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = to, .store = store }, &fx);
    if (!move_allowed(before.rot, to)) {
        assert_int_equal(r, -EINVAL);
        check_refused(&before, &sm, &fx, r);
        return;
    }
    if (to == RS_CLAIMING && before.check != PH_IDLE) {
        assert_int_equal(r, -EBUSY);   /* never a claim (rotate()) beside a check (fetch()) */
        check_refused(&before, &sm, &fx, r);
        return;
    }
    assert_int_equal(r, 0);
    assert_int_equal(sm.rot, to);
    assert_true(fx.mask & CSM_FX_STATUS);
    if (holding(to)) {
        assert_int_equal(fx.mask, CSM_FX_STATUS | (store ? CSM_FX_ROT_QUEUE_STORE : CSM_FX_ROT_RUN));
        assert_int_equal(sm.check, before.check);
        assert_int_equal(sm.wake_pending, before.wake_pending);
        return;
    }
    bool waits = to == RS_GRACE || to == RS_RETRY_WAIT || to == RS_NONE || to == RS_WATCH ||
                 to == RS_DRAINING;
    assert_int_equal(!!(fx.mask & CSM_FX_ROT_ARM), waits);
    bool wake = before.wake_pending || to == RS_AWAIT_FETCH;
    if (wake && before.check == PH_IDLE) {
        assert_int_equal(sm.check, PH_QUEUED);       /* the wake-up held back runs now */
        assert_true(fx.mask & CSM_FX_QUEUE_FETCH);
        assert_false(sm.wake_pending);
    } else if (wake && before.check == PH_QUEUED) {
        assert_true(fx.mask & CSM_FX_DISPATCH);
        assert_false(sm.wake_pending);
    } else {
        assert_int_equal(sm.check, before.check);
        assert_int_equal(sm.wake_pending, wake);
        assert_false(fx.mask & (CSM_FX_QUEUE_FETCH | CSM_FX_DISPATCH));
    }
}

static void test_rot_step_every_state(void **state) {
    for (int to = 0; to < RS_N_STEPS; to++)
        for (int store = 0; store < 2; store++)
            FOR_EACH_STATE(sm)
                check_rot_step(sm, (enum rot_step)to, store);
    struct credsm sm = { 0 };
    struct credsm_fx fx;
    assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_N_STEPS }, &fx), -EINVAL);
}

static void test_rot_store_start_and_publish_every_state(void **state) {
    FOR_EACH_STATE(sm) {
        struct credsm before = sm, sm2 = sm;
        struct credsm_fx fx;
        int r = step(&sm, (struct credsm_event){ .type = CSM_ROT_STORE_START }, &fx);
        if (!holding(before.rot))
            check_refused(&before, &sm, &fx, r);
        else {
            assert_int_equal(r, 0);
            assert_memory_equal(&before, &sm, sizeof sm);
            assert_int_equal(fx.mask, CSM_FX_ROT_RUN);
        }
        r = step(&sm2, (struct credsm_event){ .type = CSM_ROT_PUBLISH }, &fx);
        if (before.rot != RS_ADDING && before.rot != RS_WRITING)
            check_refused(&before, &sm2, &fx, r);
        else {
            assert_int_equal(r, 0);
            assert_memory_equal(&before, &sm2, sizeof sm2);
            assert_int_equal(fx.mask, CSM_FX_ROT_PUBLISH);
        }
    }
}

/* STOP in every state; afterwards nothing new starts, and the jobs still out come back. */
static void test_stop_every_state(void **state) {
    FOR_EACH_STATE(sm) {
        struct credsm_fx fx;
        struct credsm before = sm;
        assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_STOP }, &fx), 0);
        assert_true(sm.stopping);
        assert_int_equal(fx.mask, 0);
        struct credsm stopped = sm;
        assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_WAKE }, &fx), 0);
        assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_ROT_REQUEST }, &fx), 0);
        assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_FETCH_START }, &fx), 0);
        assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_REVALIDATE }, &fx), 0);
        assert_memory_equal(&stopped, &sm, sizeof sm);
        assert_int_equal(fx.mask, 0);
        enum credsm_event_type back = before.check == PH_VALIDATE     ? CSM_VALIDATE_DONE
                                      : before.check == PH_REVALIDATE ? CSM_REVALIDATE_DONE
                                                                      : CSM_FETCH_DONE;
        int r = step(&sm, (struct credsm_event){ .type = back, .fetch = CSM_FR_NEW, .revoked = true }, &fx);
        if (before.check == PH_FETCH || before.check == PH_VALIDATE || before.check == PH_REVALIDATE) {
            assert_int_equal(r, 0);
            assert_int_equal(sm.check, PH_IDLE);   /* back, and nothing follows */
            assert_int_equal(fx.mask, 0);
        }
    }
}

static void test_unknown_event(void **state) {
    struct credsm sm = { 0 }, before = sm;
    struct credsm_fx fx;
    check_refused(&before, &sm, &fx, step(&sm, (struct credsm_event){ .type = CSM_N_EVENTS }, &fx));
}

/* Past bug: a reload freed credentials a job still used. The machine says when a job of
 * the credential is out (queued, on a worker, or a rotation step): the old generation
 * may be freed only when that is over. */
static void test_bug_reload_frees_credential_in_use(void **state) {
    struct credsm sm = { 0 };
    struct credsm_fx fx;
    assert_false(credsm_in_flight(&sm));
    step(&sm, (struct credsm_event){ .type = CSM_WAKE }, &fx);
    assert_true(credsm_in_flight(&sm));                /* queued: the queue points at it */
    step(&sm, (struct credsm_event){ .type = CSM_FETCH_START }, &fx);
    assert_true(credsm_in_flight(&sm));
    step(&sm, (struct credsm_event){ .type = CSM_FETCH_DONE, .fetch = CSM_FR_NEW }, &fx);
    assert_true(credsm_in_flight(&sm));                /* validating */
    step(&sm, (struct credsm_event){ .type = CSM_VALIDATE_DONE }, &fx);
    assert_false(credsm_in_flight(&sm));
    for (int s = 0; s < RS_N_STEPS; s++) {
        struct credsm r = { .rot = (enum rot_step)s };
        assert_int_equal(credsm_in_flight(&r), holding((enum rot_step)s));   /* a step's job */
    }
}

/* Past bug: a plugin's rotate() ran beside its fetch(). A rotation asked for during a
 * check waits for it; the claim never starts while the check runs; the claim goes
 * through the source's queue; a wake-up during the claim waits for it. */
static void test_bug_rotate_beside_fetch(void **state) {
    struct credsm sm = { 0 };
    struct credsm_fx fx;
    step(&sm, (struct credsm_event){ .type = CSM_WAKE }, &fx);
    step(&sm, (struct credsm_event){ .type = CSM_FETCH_START }, &fx);
    assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_ROT_REQUEST, .manual = true }, &fx), 0);
    assert_false(fx.mask & CSM_FX_ROT_BEGIN);
    assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_CLAIMING,
                                                      .store = true }, &fx), -EBUSY);
    assert_int_equal(sm.rot, RS_NONE);
    step(&sm, (struct credsm_event){ .type = CSM_FETCH_DONE, .fetch = CSM_FR_SAME }, &fx);
    assert_true(fx.mask & CSM_FX_ROT_BEGIN);
    assert_true(fx.manual);
    assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_CLAIMING,
                                                      .store = true }, &fx), 0);
    assert_int_equal(fx.mask, CSM_FX_ROT_QUEUE_STORE | CSM_FX_STATUS);
    step(&sm, (struct credsm_event){ .type = CSM_WAKE }, &fx);   /* the store changed */
    assert_int_equal(fx.mask, 0);
    assert_int_equal(sm.check, PH_IDLE);
    assert_true(sm.wake_pending);
    step(&sm, (struct credsm_event){ .type = CSM_ROT_STORE_START }, &fx);
    assert_int_equal(fx.mask, CSM_FX_ROT_RUN);
    step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_ADDING }, &fx);
    assert_int_equal(sm.check, PH_IDLE);                /* still held */
    step(&sm, (struct credsm_event){ .type = CSM_ROT_PUBLISH }, &fx);
    assert_int_equal(fx.mask, CSM_FX_ROT_PUBLISH);
    step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_GRACE }, &fx);
    assert_int_equal(fx.mask, CSM_FX_STATUS | CSM_FX_ROT_ARM | CSM_FX_QUEUE_FETCH);
    assert_int_equal(sm.check, PH_QUEUED);
}

/* The rotation record's flow: every step is a store step (it re-reads the record first);
 * WRITING holds the check until the entry and the record are written, then publishes. */
static void test_scenario_record_flow(void **state) {
    struct credsm sm = { 0 };
    struct credsm_fx fx;
    step(&sm, (struct credsm_event){ .type = CSM_ROT_REQUEST }, &fx);
    assert_int_equal(fx.mask, CSM_FX_ROT_BEGIN);
    step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_CLAIMING, .store = true }, &fx);
    step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_ADDING, .store = true }, &fx);
    assert_int_equal(fx.mask, CSM_FX_STATUS | CSM_FX_ROT_QUEUE_STORE);
    assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_WRITING,
                                                      .store = true }, &fx), 0);
    assert_int_equal(fx.mask, CSM_FX_STATUS | CSM_FX_ROT_QUEUE_STORE);
    step(&sm, (struct credsm_event){ .type = CSM_WAKE }, &fx);   /* the entry changed: held */
    assert_int_equal(fx.mask, 0);
    assert_true(sm.wake_pending);
    assert_true(credsm_holds_check(&sm));
    step(&sm, (struct credsm_event){ .type = CSM_ROT_PUBLISH }, &fx);
    assert_int_equal(fx.mask, CSM_FX_ROT_PUBLISH);
    step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_GRACE }, &fx);
    assert_int_equal(fx.mask, CSM_FX_STATUS | CSM_FX_ROT_ARM | CSM_FX_QUEUE_FETCH);
    /* a takeover in phase removing, past its wait: CLAIMING -> REMOVING */
    struct credsm t = { 0 };
    step(&t, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_CLAIMING, .store = true }, &fx);
    assert_int_equal(step(&t, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_REMOVING,
                                                     .store = true }, &fx), 0);
    /* a record in phase rolling_back, taken over or retried: CLAIMING -> ROLLBACK, a store
     * step (docs/design.md §9.5) */
    struct credsm b = { 0 };
    step(&b, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_CLAIMING, .store = true }, &fx);
    assert_int_equal(step(&b, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_ROLLBACK,
                                                     .store = true }, &fx), 0);
    assert_int_equal(b.rot, RS_ROLLBACK);
    /* the entry held someone else's password: WRITING -> ROLLBACK */
    struct credsm w = { .rot = RS_WRITING };
    assert_int_equal(step(&w, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_ROLLBACK,
                                                     .store = true }, &fx), 0);
    assert_int_equal(credsm_step_name(RS_WRITING)[0], 'w');
}

/* A store that makes the password: the claim, then the next fetch hands it over. */
static void test_scenario_await_fetch(void **state) {
    struct credsm sm = { 0 };
    struct credsm_fx fx;
    step(&sm, (struct credsm_event){ .type = CSM_ROT_REQUEST }, &fx);
    assert_int_equal(fx.mask, CSM_FX_ROT_BEGIN);
    step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_CLAIMING, .store = true }, &fx);
    step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_AWAIT_FETCH }, &fx);
    assert_true(fx.mask & CSM_FX_QUEUE_FETCH);
    step(&sm, (struct credsm_event){ .type = CSM_FETCH_START }, &fx);
    step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_ADDING }, &fx);   /* taken */
    assert_int_equal(fx.mask, CSM_FX_STATUS | CSM_FX_ROT_RUN);
    step(&sm, (struct credsm_event){ .type = CSM_FETCH_DONE, .fetch = CSM_FR_TAKEN }, &fx);
    assert_int_equal(fx.mask, CSM_FX_CHECK_ENDED);
    step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_NONE }, &fx);
    assert_int_equal(fx.mask, CSM_FX_STATUS | CSM_FX_ROT_ARM);
    assert_false(credsm_in_flight(&sm));
}

/* A failed publish during a rotation: the step goes to RETRY_WAIT, which arms the one
 * timer; the check's own retry is not asked for. */
static void test_failed_publish_arms_one_timer(void **state) {
    struct credsm sm = { .rot = RS_ADDING };
    struct credsm_fx fx;
    step(&sm, (struct credsm_event){ .type = CSM_ROT_PUBLISH }, &fx);
    step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_RETRY_WAIT }, &fx);
    assert_int_equal(fx.mask, CSM_FX_STATUS | CSM_FX_ROT_ARM);
}

/* Continuous re-validation (reval.h): Redis refuses the published credential; a fresh
 * fetch brings the candidates, which are judged in REVALIDATE; a rotation asked for
 * meanwhile waits for the recovery, and no claim runs beside it. */
static void test_scenario_revoked_recovery(void **state) {
    struct credsm sm = { 0 };
    struct credsm_fx fx;
    assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_REVALIDATE }, &fx), 0);
    assert_int_equal(fx.mask, CSM_FX_RUN_REVALIDATE);
    assert_true(credsm_in_flight(&sm));                /* a reload waits for the job */
    assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_ROT_REQUEST }, &fx), 0);
    assert_true(sm.rot_requested);                     /* latched */
    assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_ROT_STEP, .step = RS_CLAIMING,
                                                      .store = true }, &fx), -EBUSY);
    step(&sm, (struct credsm_event){ .type = CSM_WAKE }, &fx);
    assert_true(sm.wake_pending);
    step(&sm, (struct credsm_event){ .type = CSM_REVALIDATE_DONE, .revoked = true }, &fx);
    assert_int_equal(fx.mask, CSM_FX_STATUS | CSM_FX_QUEUE_FETCH);
    assert_int_equal(sm.check, PH_QUEUED);
    assert_true(sm.recovering);
    step(&sm, (struct credsm_event){ .type = CSM_FETCH_START }, &fx);
    step(&sm, (struct credsm_event){ .type = CSM_FETCH_DONE, .fetch = CSM_FR_RECOVER }, &fx);
    assert_int_equal(fx.mask, CSM_FX_RUN_REVALIDATE);
    assert_int_equal(sm.check, PH_REVALIDATE);
    step(&sm, (struct credsm_event){ .type = CSM_REVALIDATE_DONE }, &fx);
    assert_int_equal(fx.mask, CSM_FX_CHECK_ENDED | CSM_FX_ROT_BEGIN);
    assert_false(sm.recovering);
    assert_int_equal(sm.check, PH_IDLE);
    assert_true(sm.wake_pending);                      /* runs when the rotation's step allows */
    /* the next periodic re-validation is an ordinary one again */
    step(&sm, (struct credsm_event){ .type = CSM_REVALIDATE }, &fx);
    step(&sm, (struct credsm_event){ .type = CSM_REVALIDATE_DONE }, &fx);
    assert_int_equal(fx.mask, CSM_FX_STATUS | CSM_FX_QUEUE_FETCH);   /* the pending wake-up */
    assert_false(sm.recovering);
}

/* A recovery whose fetch failed and had no previous to try ends like a failed check. */
static void test_scenario_recovery_without_candidates(void **state) {
    struct credsm sm = { .check = PH_REVALIDATE };
    struct credsm_fx fx;
    step(&sm, (struct credsm_event){ .type = CSM_REVALIDATE_DONE, .revoked = true }, &fx);
    step(&sm, (struct credsm_event){ .type = CSM_FETCH_START }, &fx);
    step(&sm, (struct credsm_event){ .type = CSM_FETCH_DONE, .fetch = CSM_FR_ERROR }, &fx);
    assert_int_equal(fx.mask, CSM_FX_CHECK_ENDED);
    assert_false(sm.recovering);
    assert_false(credsm_in_flight(&sm));
    /* later, an ordinary check cannot claim to be a recovery */
    step(&sm, (struct credsm_event){ .type = CSM_WAKE }, &fx);
    step(&sm, (struct credsm_event){ .type = CSM_FETCH_START }, &fx);
    assert_int_equal(step(&sm, (struct credsm_event){ .type = CSM_FETCH_DONE, .fetch = CSM_FR_RECOVER }, &fx),
                     -EINVAL);
}

static void test_step_names(void **state) {
    assert_string_equal(credsm_step_name(RS_NONE), "idle");
    assert_string_equal(credsm_step_name(RS_AWAIT_FETCH), "reading-store");
    assert_string_equal(credsm_step_name(RS_RETRY_WAIT), "retry-wait");
    for (int s = 0; s < RS_N_STEPS; s++)
        assert_non_null(credsm_step_name((enum rot_step)s));
    assert_string_equal(credsm_step_name(RS_N_STEPS), "?");
}

static void test_published(void **state) {
    assert_true(credsm_published("v1", NULL, "v1", NULL));
    assert_true(credsm_published("v1", "v0", "v1", NULL));
    assert_false(credsm_published("v1", NULL, "v2", NULL));
    assert_false(credsm_published(NULL, NULL, "v1", NULL));   /* nothing published */
    /* the other access key: part of what is published, as previous */
    assert_true(credsm_published("k1", "k2", "k1", "k2"));
    assert_false(credsm_published("k1", "k2", "k1", "k3"));    /* the peer was regenerated */
    assert_false(credsm_published("k1", NULL, "k1", "k2"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wake_every_state),
        cmocka_unit_test(test_fetch_start_every_state),
        cmocka_unit_test(test_check_done_every_state),
        cmocka_unit_test(test_revalidate_every_state),
        cmocka_unit_test(test_revalidate_done_every_state),
        cmocka_unit_test(test_rot_request_every_state),
        cmocka_unit_test(test_rot_step_every_state),
        cmocka_unit_test(test_rot_store_start_and_publish_every_state),
        cmocka_unit_test(test_stop_every_state),
        cmocka_unit_test(test_unknown_event),
        cmocka_unit_test(test_bug_reload_frees_credential_in_use),
        cmocka_unit_test(test_bug_rotate_beside_fetch),
        cmocka_unit_test(test_scenario_await_fetch),
        cmocka_unit_test(test_scenario_record_flow),
        cmocka_unit_test(test_failed_publish_arms_one_timer),
        cmocka_unit_test(test_scenario_revoked_recovery),
        cmocka_unit_test(test_scenario_recovery_without_candidates),
        cmocka_unit_test(test_step_names),
        cmocka_unit_test(test_published),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
