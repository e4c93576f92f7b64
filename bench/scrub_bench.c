/* bench/scrub_bench: what secret_scrub() (common/secret.h) costs a log line or a status text.
 *
 *   cmake --build build --target scrub_bench && build/bench/scrub_bench [CREDENTIALS [ITERATIONS]]
 *
 * CREDENTIALS (default 1000) credentials' worth of live secrets: three each (the published
 * password, the previous one, and a candidate or a worker's copy), 32 random printable
 * bytes, in the secure heap as the agent has them. Then ns per scrub of a 512-byte message
 * without a secret (the usual case), with one, and with none registered; and ns per
 * secret_new + secret_free pair (the registry's lock and link). Prints numbers; asserts
 * nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "secret.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void random_printable(char *p, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t i = 0; i < n; i++)
        p[i] = abc[(size_t)rand() % (sizeof abc - 1)];
}

/* A 512-byte message like the agent's refusals, with `secret` (may be NULL) in it. */
static void message(char *out, const char *secret) {
    char filler[512];
    memset(filler, 0, sizeof filler);
    for (size_t i = 0; i + 1 < sizeof filler; i++)
        filler[i] = "candidate version h-3f2a refused by Redis (2/3 nodes refused: "[i % 62];
    snprintf(out, 513, "cache: AUTH: unexpected error reply %s; %s", secret ? secret : "WRONGPASS",
             filler);
}

static double time_scrub(const char *secret, long iterations) {
    char buf[600];
    double t0 = now_ns();
    for (long i = 0; i < iterations; i++) {
        message(buf, secret);
        secret_scrub(buf, sizeof buf);
    }
    double base0 = now_ns();
    for (long i = 0; i < iterations; i++)
        message(buf, secret);   /* what building the message costs, taken off */
    double base1 = now_ns();
    double ns = ((base0 - t0) - (base1 - base0)) / (double)iterations;
    return ns > 0 ? ns : 0;   /* below the noise of building the message */
}

int main(int argc, char **argv) {
    long creds = argc > 1 ? atol(argv[1]) : 1000;
    long iterations = argc > 2 ? atol(argv[2]) : 20000;
    if (creds < 0 || iterations <= 0)
        return 2;
    secret_init(4u << 20);
    srand(42);
    printf("no secret registered: %.0f ns per 512-byte scrub\n", time_scrub(NULL, iterations));
    size_t n = (size_t)creds * 3;
    struct secret **live = calloc(n ? n : 1, sizeof *live);
    char pw[33] = "";
    for (size_t i = 0; i < n; i++) {
        random_printable(pw, 32);
        live[i] = secret_new(pw, 32);
    }
    printf("%zu live secrets (%ld credentials x 3, 32 bytes):\n", n, creds);
    printf("  512-byte message without a secret: %.0f ns per scrub\n", time_scrub(NULL, iterations));
    printf("  512-byte message with one:         %.0f ns per scrub\n",
           time_scrub(secret_data(live[n / 2]), iterations));
    double t0 = now_ns();
    for (long i = 0; i < iterations; i++)
        secret_free(secret_new(pw, 32));
    printf("  secret_new + secret_free:          %.0f ns per pair\n", (now_ns() - t0) / (double)iterations);
    for (size_t i = 0; i < n; i++)
        secret_free(live[i]);
    free(live);
    return 0;
}
