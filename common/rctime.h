/* rctime: the clocks and the time text that the agent, the plugins and the CLI share (one
 * home for each; the client library keeps its own, see client/redis_creds.c).
 *
 * Clocks are in microseconds: rctime_mono_usec() is CLOCK_MONOTONIC (timers, deadlines,
 * durations; the clock sd-event's timers use), rctime_real_usec() is CLOCK_REALTIME as
 * unix time (what a store's or a file's times are compared with). rctime_deadline() and
 * rctime_add_sat() saturate at UINT64_MAX, so a huge timeout means "never", not a
 * deadline that wrapped into the past.
 *
 * RFC 3339: rctime_format() writes UTC with 'Z' ("2026-11-22T10:00:00Z", the published
 * file's form); rctime_parse() reads "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)" ('T'
 * and 'Z' in either case, or a space for 'T', as RFC 3339 allows) with the rules every
 * reader of the published file applies (tests/vectors): month 1-12, day 1-31 (a day past
 * the month's end rolls over, as timegm does), hour <= 23, minute <= 59, second <= 60 (a
 * leap second), zone <= 23:59; a fraction is dropped.
 *
 * RC_NO_EXPIRY is the unix time that stands for "does not expire" (in the published
 * file: no expires_at). It is the value plugin.h's ABI gives for "none" (INT64_MIN).
 * Reentrant; no I/O.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define RC_NO_EXPIRY INT64_MIN
#define RCTIME_USEC_PER_SEC 1000000ULL

uint64_t rctime_mono_usec(void);
int64_t rctime_real_usec(void);
/* a + b, or UINT64_MAX when that does not fit. */
uint64_t rctime_add_sat(uint64_t a, uint64_t b);
/* rctime_mono_usec() + timeout_usec, saturating. */
uint64_t rctime_deadline(uint64_t timeout_usec);

/* Unix seconds as RFC 3339 UTC into buf; returns buf, "" for a time outside years
 * 0-9999 or a buffer too small (21 bytes are enough). */
const char *rctime_format(int64_t t, char *buf, size_t size);
/* RFC 3339 text to unix seconds. 0 and *ret, or -EINVAL. */
int rctime_parse(const char *s, int64_t *ret);
