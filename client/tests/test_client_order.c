/* On-change callbacks come in the order of the changes, also when writers on two threads
 * race (redis_creds.h, rc_on_change).
 *
 * A writer installs a snapshot under wlock, then takes cblock to report it; in between,
 * another thread's rc_reload can install and report a newer one. pthread_mutex_lock is
 * interposed here (the library is linked statically into this program) to hold the
 * first writer exactly there, so the race happens every time: without ordering, the
 * callback is told about the newer credential, then about the replaced one.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client_fixture.h"

static int (*real_lock)(pthread_mutex_t *);
static rc_handle *watched;       /* the handle whose writer is held */
static _Thread_local bool hold;  /* this thread is the writer to hold */
static sem_t go;

int pthread_mutex_lock(pthread_mutex_t *m) {
    /* the held writer's first lock after its install (generation 2 is in): cblock */
    if (hold && watched && rc_generation(watched) >= 2) {
        hold = false;
        while (sem_wait(&go) < 0) {
        }
    }
    return real_lock(m);
}

static atomic_uint nseen;
static uint64_t seen[8];

static void on_change(rc_handle *h, const struct rc_creds *c, int err, void *arg) {
    (void)h;
    (void)arg;
    unsigned i = atomic_fetch_add(&nseen, 1);
    if (i < 8)
        seen[i] = err == 0 && c ? c->generation : 0;
}

static void *held_writer(void *arg) {
    hold = true;
    rc_reload(arg);
    return NULL;
}

static void test_an_overtaken_change_is_not_reported_after_the_newer_one(void **state) {
    struct fx *f = *state;
    assert_int_equal(tu_publish_n(f->dir, "cache", 1), 0);
    assert_int_equal(rc_open_ex("cache", f->dir, RC_OPEN_NO_THREAD, 0, &f->h), 0);
    assert_int_equal(rc_on_change(f->h, on_change, NULL), 0);
    assert_int_equal(sem_init(&go, 0, 0), 0);
    watched = f->h;

    assert_int_equal(tu_publish_n(f->dir, "cache", 2), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, held_writer, f->h), 0);
    while (rc_generation(f->h) < 2) /* installed, now held before reporting */
        tu_sleep_ms(1);
    assert_int_equal(tu_publish_n(f->dir, "cache", 3), 0);
    assert_int_equal(rc_reload(f->h), 1); /* installs and reports generation 3 */
    assert_int_equal(sem_post(&go), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    watched = NULL;
    sem_destroy(&go);

    assert_int_equal(rc_generation(f->h), 3);
    assert_int_equal(atomic_load(&nseen), 1); /* generation 2 was overtaken: not told */
    assert_int_equal(seen[0], 3);
}

int main(void) {
    real_lock = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
    if (!real_lock)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_an_overtaken_change_is_not_reported_after_the_newer_one, setup, teardown),
    };
    return cmocka_run_group_tests_name("client_order", tests, NULL, NULL);
}
