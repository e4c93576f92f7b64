/* validate_bench: times validate_candidate() against the given endpoints.
 *
 *   validate_bench [--tls --ca FILE [--server-name NAME]] [--cluster] [--timeout-ms N]
 *                  [--iterations N] [--one-by-one] --user USER ENDPOINT...
 *
 * The password is read from the environment variable RC_BENCH_PASSWORD (never argv).
 * --one-by-one validates each endpoint on its own, one after another, and sums the
 * times: what asking the nodes in turn would cost. Prints one JSON line:
 *   {"nodes":N,"tls":B,"mode":"concurrent","outcome":"accepted","min_ms":..,
 *    "median_ms":..,"p90_ms":..,"max_ms":..}
 * Driven by bench/validate_scaling.py; results in docs/benchmarks.md.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "resp.h"
#include "secret.h"
#include "validate.h"

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double ms_at(const uint64_t *v, size_t n, double p) {
    size_t k = (size_t)((double)(n - 1) * p + 0.5);
    return (double)v[k] / 1000.0;
}

static int usage(void) {
    fprintf(stderr, "usage: validate_bench [--tls --ca FILE [--server-name NAME]] [--cluster] "
                    "[--timeout-ms N] [--iterations N] [--one-by-one] --user USER ENDPOINT...\n"
                    "(password from $RC_BENCH_PASSWORD)\n");
    return 2;
}

int main(int argc, char **argv) {
    struct config_redis r = { .validate = VALIDATE_ALL, .timeout_usec = 2000000 };
    const char *user = NULL, *pw = secure_getenv("RC_BENCH_PASSWORD");
    unsigned long iterations = 20;
    bool one_by_one = false;
    int i;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--tls") == 0)
            r.tls.enabled = true;
        else if (strcmp(a, "--cluster") == 0)
            r.cluster = true;
        else if (strcmp(a, "--one-by-one") == 0)
            one_by_one = true;
        else if (strcmp(a, "--ca") == 0 && v)
            r.tls.ca_file = argv[++i];
        else if (strcmp(a, "--server-name") == 0 && v)
            r.tls.server_name = argv[++i];
        else if (strcmp(a, "--user") == 0 && v)
            user = argv[++i];
        else if (strcmp(a, "--timeout-ms") == 0 && v)
            r.timeout_usec = strtoull(argv[++i], NULL, 10) * 1000;
        else if (strcmp(a, "--iterations") == 0 && v)
            iterations = strtoul(argv[++i], NULL, 10);
        else
            return usage();
    }
    if (!pw || !user || i >= argc || iterations == 0 || iterations > 100000)
        return usage();
    r.endpoints = argv + i;
    r.n_endpoints = (size_t)(argc - i);
    secret_init(0);

    struct secret *password = secret_new_str(pw);
    uint64_t *t = calloc(iterations, sizeof *t);
    const char *outcome = "accepted";
    if (!password || !t)
        return 1;

    /* one warm-up round: name resolution, first TLS context, page faults */
    struct validate_result res;
    struct rusage ru0, ru1;
    validate_candidate(&r, user, password, NULL, NULL, &res);
    getrusage(RUSAGE_SELF, &ru0);
    for (unsigned long k = 0; k < iterations; k++) {
        if (one_by_one) {
            struct config_redis one = r;
            one.n_endpoints = 1;
            for (size_t e = 0; e < r.n_endpoints; e++) {
                one.endpoints = r.endpoints + e;
                validate_candidate(&one, user, password, NULL, NULL, &res);
                t[k] += res.elapsed_usec;
                if (res.outcome != VALIDATE_PUBLISH)
                    outcome = validate_outcome_to_string(res.outcome);
            }
        } else {
            validate_candidate(&r, user, password, NULL, NULL, &res);
            t[k] = res.elapsed_usec;
            if (res.outcome != VALIDATE_PUBLISH)
                outcome = validate_outcome_to_string(res.outcome);
        }
        if (res.outcome != VALIDATE_PUBLISH)
            fprintf(stderr, "validate_bench: %s: %s\n", validate_outcome_to_string(res.outcome),
                    res.detail);
    }
    getrusage(RUSAGE_SELF, &ru1);
    double cpu_ms = ((double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1e3 +
                     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e3 +
                     (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e3 +
                     (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e3) /
                    (double)iterations;
    qsort(t, iterations, sizeof *t, cmp_u64);
    printf("{\"nodes\":%u,\"tls\":%s,\"mode\":\"%s\",\"outcome\":\"%s\",\"min_ms\":%.3f,"
           "\"median_ms\":%.3f,\"p90_ms\":%.3f,\"max_ms\":%.3f,\"cpu_ms\":%.3f}\n",
           res.total, r.tls.enabled ? "true" : "false", one_by_one ? "one-by-one" : "concurrent",
           outcome, ms_at(t, iterations, 0), ms_at(t, iterations, 0.5), ms_at(t, iterations, 0.9),
           ms_at(t, iterations, 1.0), cpu_ms);
    free(t);
    secret_free(password);
    return strcmp(outcome, "accepted") == 0 ? 0 : 1;
}
