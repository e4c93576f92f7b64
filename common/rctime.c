/* rctime: see rctime.h. */
#include "rctime.h"

#include <errno.h>
#include <time.h>

/* ---- clocks ------------------------------------------------------------------------ */

uint64_t rctime_mono_usec(void) {
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * RCTIME_USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t rctime_real_usec(void) {
    struct timespec ts;

    (void)clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * (int64_t)RCTIME_USEC_PER_SEC + ts.tv_nsec / 1000;
}

uint64_t rctime_add_sat(uint64_t a, uint64_t b) {
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t rctime_deadline(uint64_t timeout_usec) {
    return rctime_add_sat(rctime_mono_usec(), timeout_usec);
}

/* ---- RFC 3339 ---------------------------------------------------------------------- */

const char *rctime_format(int64_t t, char *buf, size_t size) {
    if (!buf || size == 0)
        return buf;
    buf[0] = '\0';
    time_t tt = (time_t)t;
    struct tm tm;
    if ((int64_t)tt != t || !gmtime_r(&tt, &tm))
        return buf;
    if (tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return buf;
    if (strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        buf[0] = '\0';
    return buf;
}

static int digits(const char **p, int n, int *ret) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -EINVAL;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *ret = v;
    return 0;
}

/* The grammar and the rules are in rctime.h. */
int rctime_parse(const char *s, int64_t *ret) {
    if (!s)
        return -EINVAL;
    const char *p = s;
    int Y, M, D, h, m, sec;
    if (digits(&p, 4, &Y) < 0 || *p++ != '-' || digits(&p, 2, &M) < 0 || *p++ != '-' ||
        digits(&p, 2, &D) < 0)
        return -EINVAL;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -EINVAL;
    p++;
    if (digits(&p, 2, &h) < 0 || *p++ != ':' || digits(&p, 2, &m) < 0 || *p++ != ':' ||
        digits(&p, 2, &sec) < 0)
        return -EINVAL;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    int offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) < 0 || *p++ != ':' || digits(&p, 2, &om) < 0)
            return -EINVAL;
        if (oh > 23 || om > 59)
            return -EINVAL;
        offset = sign * (oh * 3600 + om * 60);
    } else {
        return -EINVAL;
    }
    if (*p != '\0')
        return -EINVAL;

    if (M < 1 || M > 12 || D < 1 || D > 31)
        return -EINVAL;
    if (h > 23 || m > 59 || sec > 60)   /* 60: a leap second */
        return -EINVAL;
    struct tm tm = {
        .tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D,
        .tm_hour = h, .tm_min = m, .tm_sec = sec,
    };
    time_t t = timegm(&tm);
    *ret = (int64_t)t - offset;
    return 0;
}
