/* backoff: exponential delays with equal jitter. See backoff.h. */
#include "backoff.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

void backoff_init(struct backoff *b, uint64_t min_usec, uint64_t max_usec) {
    b->min_usec = min_usec;
    b->max_usec = max_usec;
    b->attempt = 0;
}

void backoff_reset(struct backoff *b) {
    b->attempt = 0;
}

/* min * 2^attempt, capped at max, computed without ever shifting bits out: the shift is
 * only done when min <= max >> attempt, which guarantees min << attempt <= max. */
static uint64_t nominal(const struct backoff *b) {
    unsigned n = b->attempt;

    if (n >= 64 || b->min_usec > (b->max_usec >> n))
        return b->max_usec;
    return b->min_usec << n;
}

uint64_t backoff_next(struct backoff *b, uint64_t rnd) {
    uint64_t base = nominal(b);
    uint64_t low = base / 2;
    uint64_t span = base - low;          /* <= 2^63, so span + 1 cannot wrap */
    uint64_t d = low + rnd % (span + 1);  /* uniform enough: span is far below 2^64 */

    if (b->attempt < UINT_MAX)
        b->attempt++;
    return d;
}

/* splitmix64 finaliser: spreads the few bits of entropy a clock gives over all 64. */
static uint64_t mix64(uint64_t z) {
    z += UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

uint64_t backoff_random(void) {
    uint64_t v = 0;
    ssize_t n;

    /* GRND_NONBLOCK: early in boot the pool may not be ready yet, and a retry delay is
     * not worth blocking for. Jitter only needs to differ between hosts. */
    do {
        n = getrandom(&v, sizeof(v), GRND_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(v))
        return v;

    struct timespec mono = {0}, real = {0};
    (void)clock_gettime(CLOCK_MONOTONIC, &mono);
    (void)clock_gettime(CLOCK_REALTIME, &real);
    v = mix64((uint64_t)mono.tv_nsec ^ ((uint64_t)mono.tv_sec << 30));
    v = mix64(v ^ (uint64_t)real.tv_nsec ^ ((uint64_t)real.tv_sec << 30));
    v = mix64(v ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)&v);
    return v;
}
