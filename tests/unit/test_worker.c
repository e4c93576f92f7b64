/* Unit tests for agent/worker: jobs run off the loop and their done() runs on the loop
 * thread, once each; in_flight counts submitted jobs until their done(); done() may
 * submit again; stop drops queued jobs without calling done(), joins idle threads, and
 * reports (and survives) a thread stuck in a job. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <time.h>

#include "worker.h"

struct tjob {
    struct job job;
    struct worker_pool *pool;
    sd_event *e;
    pthread_t run_thread;
    unsigned done_calls;
    unsigned resubmit;           /* done() submits the job again this many times */
    sem_t *block;                /* run() waits on it when set */
    unsigned *remaining;         /* the loop exits when it reaches 0 */
};

static atomic_uint runs;
static pthread_t loop_thread;
static struct worker_pool *leaked_pool;   /* kept reachable: a stuck thread still uses it */

static void t_run(struct job *j) {
    struct tjob *t = (struct tjob *)j;
    t->run_thread = pthread_self();
    if (t->block)
        sem_wait(t->block);
    atomic_fetch_add(&runs, 1);
}

static void t_done(struct job *j) {
    struct tjob *t = (struct tjob *)j;
    assert_true(pthread_equal(pthread_self(), loop_thread));
    assert_false(pthread_equal(t->run_thread, loop_thread));
    t->done_calls++;
    if (t->resubmit) {
        t->resubmit--;
        worker_pool_submit(t->pool, &t->job);
        return;
    }
    if (--*t->remaining == 0)
        sd_event_exit(t->e, 0);
}

static uint64_t mono_usec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void test_jobs_run_off_loop_done_on_loop(void **state) {
    enum { N = 64 };
    struct worker_pool *p;
    sd_event *e;
    static struct tjob jobs[N];
    unsigned remaining = N;
    loop_thread = pthread_self();
    atomic_store(&runs, 0);
    assert_int_equal(worker_pool_new(3, &p), 0);
    assert_int_equal(sd_event_new(&e), 0);
    assert_int_equal(worker_pool_attach(p, e), 0);
    for (int i = 0; i < N; i++) {
        jobs[i] = (struct tjob){ .job = { .run = t_run, .done = t_done }, .pool = p, .e = e,
                                 .remaining = &remaining, .resubmit = i % 4 == 0 ? 2 : 0 };
        worker_pool_submit(p, &jobs[i].job);
    }
    assert_int_equal(worker_pool_in_flight(p), N);
    assert_int_equal(sd_event_loop(e), 0);
    assert_int_equal(worker_pool_in_flight(p), 0);
    unsigned total = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].done_calls, i % 4 == 0 ? 3 : 1);
        total += jobs[i].done_calls;
    }
    assert_int_equal(atomic_load(&runs), total);
    assert_true(worker_pool_stop(p, mono_usec() + 5000000));
    sd_event_unref(e);
}

struct stopper {
    struct worker_pool *p;
    atomic_bool calling;
    bool joined;
};

static void *stop_thread(void *arg) {
    struct stopper *st = arg;
    atomic_store(&st->calling, true);
    st->joined = worker_pool_stop(st->p, mono_usec() + 10000000);
    return NULL;
}

/* stop: the running job finishes, the queued ones are dropped and never run. */
static void test_stop_drops_queued_jobs(void **state) {
    sem_t block;
    unsigned remaining = 100;
    static struct tjob first, queued[3];
    struct stopper st = { 0 };
    pthread_t t;
    atomic_store(&runs, 0);
    sem_init(&block, 0, 0);
    assert_int_equal(worker_pool_new(1, &st.p), 0);
    first = (struct tjob){ .job = { .run = t_run, .done = t_done }, .block = &block, .remaining = &remaining };
    worker_pool_submit(st.p, &first.job);
    for (int i = 0; i < 3; i++) {
        queued[i] = (struct tjob){ .job = { .run = t_run, .done = t_done }, .remaining = &remaining };
        worker_pool_submit(st.p, &queued[i].job);
    }
    while (!first.run_thread)   /* the thread holds the first job */
        sched_yield();
    /* Stop while it is in the job; release the job once stop has begun (its first step,
     * under the lock, drops the queue; the join then waits for the job). */
    assert_int_equal(pthread_create(&t, NULL, stop_thread, &st), 0);
    while (!atomic_load(&st.calling))
        sched_yield();
    nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
    sem_post(&block);
    pthread_join(t, NULL);
    assert_true(st.joined);
    assert_int_equal(atomic_load(&runs), 1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(queued[i].done_calls, 0);
        assert_true(queued[i].run_thread == 0);
    }
    sem_destroy(&block);
}

/* A thread stuck in a job past the deadline: stop says so and leaves the pool alone. */
static void test_stop_reports_stuck_thread(void **state) {
    static sem_t block;
    static struct tjob stuck;
    unsigned remaining = 100;
    sem_init(&block, 0, 0);
    assert_int_equal(worker_pool_new(1, &leaked_pool), 0);
    stuck = (struct tjob){ .job = { .run = t_run, .done = t_done }, .block = &block, .remaining = &remaining };
    worker_pool_submit(leaked_pool, &stuck.job);
    while (!stuck.run_thread)
        sched_yield();
    uint64_t t0 = mono_usec();
    assert_false(worker_pool_stop(leaked_pool, t0 + 100000));
    assert_true(mono_usec() - t0 >= 90000);   /* it waited for the deadline */
    sem_post(&block);                         /* the thread ends; the pool stays leaked */
}

static void test_stop_null(void **state) {
    assert_true(worker_pool_stop(NULL, 0));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_run_off_loop_done_on_loop),
        cmocka_unit_test(test_stop_drops_queued_jobs),
        cmocka_unit_test(test_stop_reports_stuck_thread),
        cmocka_unit_test(test_stop_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
