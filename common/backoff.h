/* backoff: exponential delays with jitter, for the scheduler's retries.
 *
 * The n-th delay (n from 0) is drawn uniformly from [base/2, base] where
 * base = min(max, min * 2^n): "equal jitter", so retries from many hosts spread out but
 * a delay is never below half the nominal one. Plain struct, owned by the caller, no
 * locking. The random source is injectable for tests. */
#pragma once
#include <stdint.h>

struct backoff {
    uint64_t min_usec;
    uint64_t max_usec;
    unsigned attempt;     /* delays handed out since the last reset */
};

void backoff_init(struct backoff *b, uint64_t min_usec, uint64_t max_usec);
/* Next delay in usec; advances attempt. rnd is a uniformly random 64-bit value
 * (pass backoff_random() in production). */
uint64_t backoff_next(struct backoff *b, uint64_t rnd);
void backoff_reset(struct backoff *b);
/* 64 random bits from the CSPRNG (getrandom); never fails (falls back to a clock mix). */
uint64_t backoff_random(void);
