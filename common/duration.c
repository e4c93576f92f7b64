/* duration: "500ms", "30s", "5m", "12h", "30d" <-> microseconds. See duration.h.
 *
 * One non-negative decimal integer and one unit, nothing else: no sign, no spaces, no
 * fractions, no compound forms ("1h30m"). Strict on purpose: a config value that looks
 * almost right ("30 s", "1.5m") is an error the user sees, not a guess.
 */
#include "duration.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct duration_unit {
    const char *suffix;
    uint64_t usec;
};

/* Largest first: duration_format() takes the first unit that divides exactly. */
static const struct duration_unit units[] = {
    { "d", 24ULL * 60 * 60 * USEC_PER_SEC },
    { "h", 60ULL * 60 * USEC_PER_SEC },
    { "m", 60ULL * USEC_PER_SEC },
    { "s", USEC_PER_SEC },
    { "ms", USEC_PER_MSEC },
    { "us", 1 },
};

int duration_parse(const char *s, uint64_t *ret_usec) {
    uint64_t n = 0;
    const char *p = s;

    if (!s)
        return -EINVAL;
    if (*p < '0' || *p > '9')
        return -EINVAL;
    bool overflow = false;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            overflow = true;   /* keep scanning: a bad unit is still -EINVAL */
        else
            n = n * 10 + d;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(p, units[i].suffix) != 0)
            continue;
        if (overflow || (n != 0 && n > UINT64_MAX / units[i].usec))
            return -ERANGE;
        *ret_usec = n * units[i].usec;
        return 0;
    }
    return -EINVAL;
}

const char *duration_format(uint64_t usec, char *buf, size_t size) {
    if (!buf || size == 0)
        return buf;
    if (usec == 0) {
        snprintf(buf, size, "0s");
        return buf;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (usec % units[i].usec == 0) {
            snprintf(buf, size, "%llu%s", (unsigned long long)(usec / units[i].usec),
                     units[i].suffix);
            return buf;
        }
    }
    return buf;   /* not reached: "us" divides everything */
}
