/* Proves that rc_get / rc_creds_unref / rc_generation make no system call, also while the
 * credential is being republished (the background thread does the work).
 *
 * A child process opens a handle (background thread), warms up, then installs a seccomp
 * filter on its reading thread only (no TSYNC: the library's thread is unaffected) that
 * turns every system call except rt_sigreturn and exit_group into SIGSYS; the handler
 * counts them. The child reads in a tight loop while the parent republishes, and reports
 * through shared memory. Any system call in the loop, e.g. a futex from a lock or an
 * mmap from an allocation, shows up as a count and its number.
 *
 * Without ASan the test also counts calls to malloc/calloc/realloc/free in the window
 * (interposed here): the steady-state read allocates nothing.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <cmocka.h>

#include "client_test_util.h"
#include "redis_creds.h"

#if defined(__SANITIZE_ADDRESS__)
#define RC_COUNT_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RC_COUNT_MALLOC 0
#endif
#endif
#ifndef RC_COUNT_MALLOC
#define RC_COUNT_MALLOC 1
#endif

#define ROTATIONS 5

struct shared {
    atomic_int ready, stop, done;
    atomic_ullong seen_gen;
    atomic_long reads, torn;
    atomic_long trapped;
    atomic_long allocs;
    atomic_int first_nr[8];
};

static struct shared *shm;
static __thread volatile sig_atomic_t window; /* this thread reads in the window */

#if RC_COUNT_MALLOC
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
void *malloc(size_t n) {
    if (window && shm)
        atomic_fetch_add(&shm->allocs, 1);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    if (window && shm)
        atomic_fetch_add(&shm->allocs, 1);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    if (window && shm)
        atomic_fetch_add(&shm->allocs, 1);
    return __libc_realloc(p, n);
}
void free(void *p) {
    if (window && shm && p)
        atomic_fetch_add(&shm->allocs, 1);
    __libc_free(p);
}
#endif

static void on_sigsys(int sig, siginfo_t *si, void *uc_) {
    (void)sig;
    long k = atomic_fetch_add(&shm->trapped, 1);
    if (k < 8)
        atomic_store(&shm->first_nr[k], si->si_syscall);
#ifdef __x86_64__
    ucontext_t *uc = uc_;
    uc->uc_mcontext.gregs[REG_RAX] = -ENOSYS; /* the call fails instead of running */
#else
    (void)uc_;
#endif
}

static int install_filter(void) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rt_sigreturn, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit_group, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return -errno;
    return 0;
}

/* The child: never returns. Exit status 0 when it ran the loop (the verdict is in shm).
 * with_syscall: one getppid() per read, to show that the counter does count. */
static void child(const char *dir, bool with_syscall) {
    rc_handle *h = NULL;
    if (rc_open("cache", dir, &h) < 0)
        _exit(10);
    const struct rc_creds *c = NULL;
    for (int i = 0; i < 1000; i++) { /* warm up: lazy binding, sanitizer stacks */
        if (rc_get(h, &c) < 0)
            _exit(11);
        c = rc_creds_unref(c);
        (void)rc_generation(h);
    }
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) < 0)
        _exit(12);
    if (install_filter() < 0)
        _exit(13);
    window = 1;
    atomic_store(&shm->ready, 1);
    uint64_t last = 0;
    while (!atomic_load(&shm->stop)) {
        if (rc_get(h, &c) != 0) {
            atomic_fetch_add(&shm->torn, 1);
            continue;
        }
        unsigned n = 0;
        for (const char *p = c->current.version + 2; *p >= '0' && *p <= '9'; p++)
            n = n * 10 + (unsigned)(*p - '0');
        char want[256];
        tu_password(want, sizeof want, n);
        if (strcmp(want, c->current.password) != 0 || c->generation < last)
            atomic_fetch_add(&shm->torn, 1);
        last = c->generation;
        c = rc_creds_unref(c);
        if (rc_generation(h) != last && rc_generation(h) < last)
            atomic_fetch_add(&shm->torn, 1);
        atomic_store(&shm->seen_gen, last);
        atomic_fetch_add(&shm->reads, 1);
        if (with_syscall)
            (void)getppid();
    }
    window = 0;
    atomic_store(&shm->done, 1);
    syscall(SYS_exit_group, 0); /* allowed; skips atexit handlers that would trap */
    for (;;) {
    }
}

static int wait_for(atomic_int *flag, long timeout_ms) {
    long long t0 = tu_now_ns();
    while (!atomic_load(flag)) {
        if (tu_now_ns() - t0 > timeout_ms * 1000000LL)
            return -1;
        tu_sleep_ms(1);
    }
    return 0;
}

struct result {
    long reads, steady_reads, steady_allocs, trapped, torn;
    unsigned long long seen_gen;
    int ok, status;
};

static struct result run_child(bool with_syscall) {
    struct result res = {0};
    char *dir = tu_mkdtemp();
    assert_non_null(dir);
    shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(shm != MAP_FAILED);
    memset(shm, 0, sizeof *shm);
    assert_int_equal(tu_publish_n(dir, "cache", 1), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child(dir, with_syscall);
    int ok = wait_for(&shm->ready, 10000);
    tu_sleep_ms(50); /* a stretch of pure steady state */
    long steady_reads = atomic_load(&shm->reads);
    /* allocator calls only in the pure steady state: after a change, the reader that drops
     * the last reference to the old snapshot frees it (with free(), no system call) */
    long steady_allocs = atomic_load(&shm->allocs);
    for (unsigned n = 2; ok == 0 && n <= ROTATIONS + 1; n++) {
        assert_int_equal(tu_publish_n(dir, "cache", n), 0);
        long long t0 = tu_now_ns();
        while (atomic_load(&shm->seen_gen) < n && tu_now_ns() - t0 < 5000000000LL)
            tu_sleep_ms(1);
    }
    tu_sleep_ms(20);
    atomic_store(&shm->stop, 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    res.ok = ok;
    res.status = status;
    res.reads = atomic_load(&shm->reads);
    res.steady_reads = steady_reads;
    res.steady_allocs = steady_allocs;
    res.trapped = atomic_load(&shm->trapped);
    res.torn = atomic_load(&shm->torn);
    res.seen_gen = atomic_load(&shm->seen_gen);
    print_message("child: %ld reads (%ld before the first change), generation %llu, "
                  "%ld system calls, %ld allocator calls in the steady state%s, %ld torn\n",
                  res.reads, steady_reads, res.seen_gen, res.trapped, steady_allocs,
                  RC_COUNT_MALLOC ? "" : " (not counted under ASan)", res.torn);
    for (long i = 0; i < res.trapped && i < 8; i++)
        print_message("  system call number %d\n", atomic_load(&shm->first_nr[i]));
    assert_int_equal(atomic_load(&shm->done), 1);
    munmap(shm, sizeof *shm);
    shm = NULL;
    tu_rm_rf(dir);
    free(dir);
    return res;
}

static void test_steady_state_read_makes_no_system_call(void **state) {
    (void)state;
    struct result r = run_child(false);
    assert_int_equal(r.ok, 0);
    assert_true(WIFEXITED(r.status));
    assert_int_equal(WEXITSTATUS(r.status), 0);
    assert_int_equal(r.trapped, 0);
    assert_int_equal(r.steady_allocs, 0);
    assert_int_equal(r.torn, 0);
    assert_true(r.steady_reads > 1000);
    assert_int_equal(r.seen_gen, ROTATIONS + 1);
}

/* The same harness with one getppid() per read: the counter must see them (so a zero
 * above means something). */
static void test_the_counter_does_count_system_calls(void **state) {
    (void)state;
    struct result r = run_child(true);
    assert_int_equal(r.ok, 0);
    assert_true(WIFEXITED(r.status));
    assert_true(r.trapped >= r.reads);
    assert_true(r.reads > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steady_state_read_makes_no_system_call),
        cmocka_unit_test(test_the_counter_does_count_system_calls),
    };
    return cmocka_run_group_tests_name("client_nosyscall", tests, NULL, NULL);
}
