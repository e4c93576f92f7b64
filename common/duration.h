/* duration: parse and print human durations ("500ms", "30s", "5m", "12h", "30d").
 * Pure functions, no allocation, any thread. Values are microseconds (uint64_t). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define USEC_PER_MSEC 1000ULL
#define USEC_PER_SEC 1000000ULL

/* Accepts a non-negative integer followed by one unit: us, ms, s, m, h, d.
 * Returns 0 and writes *ret_usec, or -EINVAL (bad syntax/unit) / -ERANGE (overflow). */
int duration_parse(const char *s, uint64_t *ret_usec);
/* Formats the largest exact unit ("90s" -> "90s", 300000000 -> "5m"). Returns buf. */
const char *duration_format(uint64_t usec, char *buf, size_t size);
