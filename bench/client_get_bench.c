/* bench/client_get_bench: what libredis-creds' steady-state read costs, and how soon a
 * publication is visible.
 *
 *   cmake --build build --target rc_client_get_bench
 *   build/client/rc_client_get_bench [ITERATIONS [ROTATIONS [BASE_DIR]]]   (BASE_DIR: /dev/shm)
 *
 * 1. rc_get + rc_creds_unref ns/op on an unchanged file (1 thread and 2 threads), against
 *    the naive way (open, read, parse the JSON with jansson, close) per call: the ratio.
 * 2. rename -> rc_get sees the new version: a writer publishes like the agent (temporary
 *    file, write, rename; no fsync, so the file system is not what is measured) and notes
 *    the time just before rename(); a reader spinning on rc_generation notes when it changed.
 *    p50/p99/max over ROTATIONS publications.
 * Prints numbers; asserts nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../client/tests/client_test_util.h"
#include "redis_creds.h"

static long iterations = 2000000;
static rc_handle *h;
static char path[512];

static double bench_rc_get(long n) {
    long long t0 = tu_now_ns();
    for (long i = 0; i < n; i++) {
        const struct rc_creds *c = NULL;
        if (rc_get(h, &c) != 0)
            abort();
        __asm__ volatile("" : : "r"(c->current.password) : "memory");
        rc_creds_unref(c);
    }
    return (double)(tu_now_ns() - t0) / (double)n;
}

static void *thread_rc_get(void *arg) {
    *(double *)arg = bench_rc_get(iterations);
    return NULL;
}

/* The naive reader: what an application without the library does per use. */
static double bench_naive(long n) {
    char buf[65536];
    long long t0 = tu_now_ns();
    for (long i = 0; i < n; i++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            abort();
        ssize_t len = read(fd, buf, sizeof buf);
        close(fd);
        if (len <= 0)
            abort();
        json_t *j = json_loadb(buf, (size_t)len, 0, NULL);
        const char *pw = json_string_value(json_object_get(j, "password"));
        if (!pw)
            abort();
        __asm__ volatile("" : : "r"(pw) : "memory");
        json_decref(j);
    }
    return (double)(tu_now_ns() - t0) / (double)n;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static atomic_llong *seen_at; /* [generation]: when the spinning reader first saw it */
static uint64_t max_gen;
static atomic_int stop;

static void *spin_reader(void *arg) {
    (void)arg;
    uint64_t last = 0;
    while (!atomic_load(&stop)) {
        uint64_t g = rc_generation(h);
        if (g != last && g <= max_gen) {
            atomic_store(&seen_at[g], tu_now_ns());
            last = g;
        }
    }
    return NULL;
}


/* After install, the library calls the on-change callback: the instant rc_get would
 * return the new snapshot, measured without a spinning reader competing for a core. */
static void on_change(rc_handle *hh, const struct rc_creds *c, int err, void *arg) {
    (void)hh;
    (void)arg;
    if (err == 0 && c->generation <= max_gen)
        atomic_store(&seen_at[c->generation], tu_now_ns());
}

/* spinning: a reader thread spins on rc_generation (the strict "rc_get sees it");
 * otherwise the callback's timestamp. Rotations first..first+n-1. */
static void measure_rotations(const char *dir, int rotations, int spinning, unsigned first) {
    long long *lat = calloc((size_t)rotations, sizeof *lat);
    long long *ren = calloc((size_t)rotations, sizeof *ren);
    max_gen = first + (uint64_t)rotations;
    seen_at = calloc(max_gen + 1, sizeof *seen_at);
    atomic_store(&stop, 0);
    pthread_t rd;
    if (spinning)
        pthread_create(&rd, NULL, spin_reader, NULL);
    else
        rc_on_change(h, on_change, NULL);
    for (int i = 0; i < rotations; i++) {
        unsigned n = first + (unsigned)i;
        char doc[2048];
        tu_doc(doc, sizeof doc, "cache", n);
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s/.cache.json.tmp", dir);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0 || write(fd, doc, strlen(doc)) < 0)
            exit(1);
        close(fd);
        long long t_rename = tu_now_ns(); /* before: the reader may see it before rename returns */
        if (rename(tmp, path) < 0)
            exit(1);
        long long t_after = tu_now_ns();
        ren[i] = t_after - t_rename;
        /* generation n is rotation n: the next one is written only after this one was
         * seen, so the library never coalesces two */
        while (atomic_load(&seen_at[n]) == 0) {
            if (tu_now_ns() - t_rename > 5000000000LL) {
                fprintf(stderr, "rotation %u not seen within 5 s (generation %llu)\n", n,
                        (unsigned long long)rc_generation(h));
                exit(1);
            }
            struct timespec ts = {0, 20000}; /* leave the cores to the library and the reader */
            nanosleep(&ts, NULL);
        }
        lat[i] = atomic_load(&seen_at[n]) - t_rename;
        tu_sleep_ms(1);
    }
    atomic_store(&stop, 1);
    if (spinning)
        pthread_join(rd, NULL);
    else
        rc_on_change(h, NULL, NULL);
    qsort(lat, (size_t)rotations, sizeof *lat, cmp_ll);
    qsort(ren, (size_t)rotations, sizeof *ren, cmp_ll);
    long within = 0;
    for (int i = 0; i < rotations; i++)
        within += lat[i] <= 1000000;
    printf("rename -> visible to rc_get, %-28s p50 %7.1f us, p99 %7.1f us, max %8.1f us; "
           "within 1 ms: %ld/%d\n", spinning ? "(a reader spinning on it):" : "(on-change callback time):",
           lat[rotations / 2] / 1e3, lat[(rotations * 99) / 100] / 1e3, lat[rotations - 1] / 1e3,
           within, rotations);
    if (spinning)
        printf("  (rename() itself took p50 %.1f us, p99 %.1f us: the times above start before it)\n",
               ren[rotations / 2] / 1e3, ren[(rotations * 99) / 100] / 1e3);
    free(lat);
    free(ren);
    free(seen_at);
}

int main(int argc, char **argv) {
    if (argc > 1)
        iterations = strtol(argv[1], NULL, 10);
    int rotations = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 1000;
    /* /run, where the agent publishes, is a tmpfs: measure on one (/dev/shm), not on a
     * disk file system whose rename alone takes ~200 us here. */
    const char *base = argc > 3 ? argv[3] : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    char *dir = malloc(strlen(base) + 32);
    snprintf(dir, strlen(base) + 32, "%s/rc-bench-XXXXXX", base);
    if (!mkdtemp(dir))
        return 1;
    printf("runtime directory: %s\n", dir);
    if (tu_publish_n(dir, "cache", 1) < 0)
        return 1;
    snprintf(path, sizeof path, "%s/cache.json", dir);
    int r = rc_open("cache", dir, &h);
    if (r < 0) {
        fprintf(stderr, "rc_open: %s\n", rc_strerror(r));
        return 1;
    }
    bench_rc_get(iterations / 10); /* warm up */
    double one = bench_rc_get(iterations);
    double two[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, thread_rc_get, &two[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    long naive_n = iterations / 20 > 10000 ? iterations / 20 : 10000;
    double naive = bench_naive(naive_n);
    printf("rc_get+unref, unchanged file, 1 thread:   %8.1f ns/op (%ld ops)\n", one, iterations);
    printf("rc_get+unref, unchanged file, 2 threads:  %8.1f / %.1f ns/op\n", two[0], two[1]);
    printf("naive open+read+json_loadb+close per call: %8.1f ns/op (%ld ops)\n", naive, naive_n);
    printf("ratio naive / rc_get (1 thread):           %8.0fx\n", naive / one);

    measure_rotations(dir, rotations, 1, 2);
    measure_rotations(dir, rotations, 0, 2 + (unsigned)rotations);
    rc_close(h);
    tu_rm_rf(dir);
    free(dir);
    return 0;
}
