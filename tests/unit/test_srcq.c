/* Unit tests for agent/srcq: the per-source queue of store operations. The limit is a
 * property of the queue (never more running than it allows, whatever is pushed), a
 * rotation step goes ahead of routine fetches, an operation is queued once, and
 * cancelling and resetting leave the queue consistent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "srcq.h"

static void test_default_limit_is_one_at_a_time(void **state) {
    struct srcq q;
    struct srcq_op a = { 0 }, b = { 0 };
    srcq_init(&q, SRCQ_DEFAULT_LIMIT);
    assert_int_equal(q.limit, 1);
    assert_true(srcq_push(&q, &a, SRCQ_FETCH));
    assert_true(srcq_push(&q, &b, SRCQ_FETCH));
    assert_ptr_equal(srcq_next(&q), &a);
    assert_int_equal(a.state, SRCQ_OP_RUNNING);
    assert_null(srcq_next(&q));          /* one runs: b waits */
    assert_int_equal(b.state, SRCQ_OP_QUEUED);
    srcq_done(&q, &a);
    assert_int_equal(a.state, SRCQ_OP_IDLE);
    assert_ptr_equal(srcq_next(&q), &b);
    assert_null(srcq_next(&q));
    srcq_done(&q, &b);
    assert_int_equal(q.running, 0);
    assert_int_equal(q.queued, 0);
}

static void test_zero_limit_means_one(void **state) {
    struct srcq q;
    struct srcq_op a = { 0 };
    srcq_init(&q, 0);
    srcq_push(&q, &a, SRCQ_FETCH);
    assert_ptr_equal(srcq_next(&q), &a);
}

/* A plugin that takes three calls at once gets three and never a fourth, however the
 * pushes, starts and completions interleave. */
static void test_limit_never_exceeded(void **state) {
    enum { N = 40, LIMIT = 3 };
    struct srcq q;
    struct srcq_op ops[N] = { { 0 } };
    struct srcq_op *running[N];
    size_t n_running = 0, started = 0;
    uint32_t rnd = 12345;
    srcq_init(&q, LIMIT);
    for (int round = 0; round < 2000; round++) {
        rnd = rnd * 1103515245u + 12345u;
        unsigned pick = (rnd >> 8) % 3;
        if (pick == 0) {
            struct srcq_op *op = &ops[(rnd >> 12) % N];
            bool idle = op->state == SRCQ_OP_IDLE;
            assert_int_equal(srcq_push(&q, op, (rnd >> 20) & 1 ? SRCQ_ROTATION : SRCQ_FETCH), idle);
        } else if (pick == 1) {
            struct srcq_op *op = srcq_next(&q);
            if (op) {
                assert_int_equal(op->state, SRCQ_OP_RUNNING);
                running[n_running++] = op;
                started++;
            } else
                assert_true(n_running == LIMIT || q.queued == 0);
        } else if (n_running) {
            size_t k = (rnd >> 12) % n_running;
            srcq_done(&q, running[k]);
            running[k] = running[--n_running];
        }
        assert_true(n_running <= LIMIT);
        assert_int_equal(q.running, n_running);
    }
    assert_true(started > 100);
}

static void test_rotation_goes_ahead_of_fetches(void **state) {
    struct srcq q;
    struct srcq_op f1 = { 0 }, f2 = { 0 }, r1 = { 0 }, r2 = { 0 }, busy = { 0 };
    srcq_init(&q, 1);
    srcq_push(&q, &busy, SRCQ_FETCH);
    assert_ptr_equal(srcq_next(&q), &busy);   /* a fetch of another credential runs */
    srcq_push(&q, &f1, SRCQ_FETCH);
    srcq_push(&q, &f2, SRCQ_FETCH);
    srcq_push(&q, &r1, SRCQ_ROTATION);
    srcq_push(&q, &r2, SRCQ_ROTATION);
    assert_null(srcq_next(&q));
    srcq_done(&q, &busy);
    struct srcq_op *want[] = { &r1, &r2, &f1, &f2 };
    for (size_t i = 0; i < 4; i++) {
        struct srcq_op *op = srcq_next(&q);
        assert_ptr_equal(op, want[i]);
        assert_null(srcq_next(&q));
        srcq_done(&q, op);
    }
    assert_null(srcq_next(&q));
}

/* The bug of a plugin's rotate() running beside its fetch(): a rotation step pushed while
 * a fetch runs on the same instance does not start until that fetch is done. */
static void test_rotate_never_beside_fetch(void **state) {
    struct srcq q;
    struct srcq_op fetch = { 0 }, rot = { 0 };
    srcq_init(&q, SRCQ_DEFAULT_LIMIT);
    srcq_push(&q, &fetch, SRCQ_FETCH);
    assert_ptr_equal(srcq_next(&q), &fetch);
    assert_true(srcq_push(&q, &rot, SRCQ_ROTATION));
    assert_null(srcq_next(&q));
    assert_int_equal(rot.state, SRCQ_OP_QUEUED);
    srcq_done(&q, &fetch);
    assert_ptr_equal(srcq_next(&q), &rot);
}

static void test_push_twice_is_one_operation(void **state) {
    struct srcq q;
    struct srcq_op a = { 0 };
    srcq_init(&q, 2);
    assert_true(srcq_push(&q, &a, SRCQ_FETCH));
    assert_false(srcq_push(&q, &a, SRCQ_FETCH));
    assert_false(srcq_push(&q, &a, SRCQ_ROTATION));
    assert_int_equal(q.queued, 1);
    assert_ptr_equal(srcq_next(&q), &a);
    assert_false(srcq_push(&q, &a, SRCQ_FETCH));   /* running */
    assert_null(srcq_next(&q));
    srcq_done(&q, &a);
    srcq_done(&q, &a);                              /* a second done changes nothing */
    assert_int_equal(q.running, 0);
    assert_true(srcq_push(&q, &a, SRCQ_FETCH));
}

static void test_cancel(void **state) {
    struct srcq q;
    struct srcq_op a = { 0 }, b = { 0 }, c = { 0 }, idle = { 0 };
    srcq_init(&q, 1);
    srcq_push(&q, &a, SRCQ_FETCH);
    srcq_push(&q, &b, SRCQ_FETCH);
    srcq_push(&q, &c, SRCQ_FETCH);
    assert_false(srcq_cancel(&q, &idle));
    assert_true(srcq_cancel(&q, &c));                /* the tail */
    assert_false(srcq_cancel(&q, &c));
    assert_true(srcq_cancel(&q, &a));                /* the head */
    assert_int_equal(q.queued, 1);
    srcq_push(&q, &c, SRCQ_FETCH);                   /* the tail was kept right */
    assert_ptr_equal(srcq_next(&q), &b);
    assert_false(srcq_cancel(&q, &b));               /* running: not cancelled */
    srcq_done(&q, &b);
    assert_ptr_equal(srcq_next(&q), &c);
    srcq_done(&q, &c);
    assert_null(srcq_next(&q));
}

static void test_reset(void **state) {
    struct srcq q;
    struct srcq_op a = { 0 }, b = { 0 }, r = { 0 };
    srcq_init(&q, 1);
    srcq_push(&q, &a, SRCQ_FETCH);
    srcq_next(&q);
    srcq_push(&q, &b, SRCQ_FETCH);
    srcq_push(&q, &r, SRCQ_ROTATION);
    srcq_reset(&q);
    assert_int_equal(b.state, SRCQ_OP_IDLE);
    assert_int_equal(r.state, SRCQ_OP_IDLE);
    assert_int_equal(q.queued, 0);
    assert_null(srcq_next(&q));
    assert_true(srcq_push(&q, &b, SRCQ_FETCH));
    assert_ptr_equal(srcq_next(&q), &b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_limit_is_one_at_a_time),
        cmocka_unit_test(test_zero_limit_means_one),
        cmocka_unit_test(test_limit_never_exceeded),
        cmocka_unit_test(test_rotation_goes_ahead_of_fetches),
        cmocka_unit_test(test_rotate_never_beside_fetch),
        cmocka_unit_test(test_push_twice_is_one_operation),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
