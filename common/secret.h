/* secret: the one type that holds secret bytes (passwords, tokens, keys).
 *
 * A secret owns a buffer of `len` bytes plus a terminating NUL (so a password can be
 * passed to APIs that want a C string), allocated from OpenSSL's secure heap when
 * secret_init() could set it up (locked, guarded pages), else from mlock()ed memory,
 * else plain memory. The buffer is wiped with explicit_bzero() before it is freed.
 * Secrets are immutable after creation; any thread may use one, one thread frees it.
 *
 * Nothing in this module prints or logs; callers must never format secret_data().
 * As a second line of defence, every live secret of SECRET_SCRUB_MIN bytes or more is
 * in a registry (thread-safe: any thread may make, free and scrub), and secret_scrub()
 * takes their bytes out of a text bound for an operator (logs, status).
 * secret_init() also makes jansson wipe every block it frees, so JSON strings that
 * held a password do not linger on the heap.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct secret;

/* Set up the secure heap (size in bytes, 0 = default 256 KiB) and jansson's wiping
 * allocator. Call once at start, before threads. Returns 0, or -errno when the secure
 * heap could not be set up (secrets then fall back to mlock()ed memory: not fatal). */
int secret_init(size_t heap_size);
bool secret_secure_heap_active(void);

/* Copies len bytes of data. Returns NULL on allocation failure (errno set). */
struct secret *secret_new(const void *data, size_t len);
struct secret *secret_new_str(const char *s);
struct secret *secret_dup(const struct secret *s);
/* Returns NULL, so `s = secret_free(s);` clears the pointer. NULL is accepted. */
struct secret *secret_free(struct secret *s);

const char *secret_data(const struct secret *s);  /* NUL-terminated */
size_t secret_len(const struct secret *s);
/* Constant-time comparison of contents; two NULLs are equal. */
bool secret_equal(const struct secret *a, const struct secret *b);

/* ---- scrubbing texts ----
 * secret_scrub() replaces, in place, every occurrence in text of a live secret (one made
 * by secret_new() and not yet freed) with SECRET_SCRUB_MARKER. What is found:
 *   - a secret of SECRET_SCRUB_MIN bytes or more, as itself or JSON-escaped (", \, / and
 *     control characters, in any of JSON's spellings) when its first SECRET_SCRUB_MIN
 *     bytes need no escaping;
 *   - its first SECRET_SCRUB_PREFIX bytes or more anywhere (an echo cut short), and its
 *     first SECRET_SCRUB_MIN bytes or more at the very end of the text (a text cut short);
 *   - overlapping or touching occurrences become one marker.
 * Not found: secrets under SECRET_SCRUB_MIN bytes, freed ones, and any other transformed
 * echo (URL- or base64-encoded, case-changed, \uXXXX of non-ASCII, a part that is not
 * the beginning). It is a second line of defence: modules still keep secrets out of texts.
 * Secrets that a copy of this module linked into a plugin makes are found once this copy
 * has read one of them (secret_data()), up to 8 such copies.
 * text: NUL-terminated, in a buffer of cap bytes; the result never goes past it: when the
 * marker makes the text longer than cap - 1 bytes, the text ends with the marker (cut).
 * Cost: one hash lookup per byte of text, plus a comparison with each secret whose first
 * SECRET_SCRUB_MIN bytes hash alike, all under the registries' locks (secret_new and
 * secret_free wait meanwhile): about O(text length), whatever the number of secrets
 * (docs/benchmarks.md). Returns the number of markers written. */
#define SECRET_SCRUB_MIN 6
#define SECRET_SCRUB_PREFIX 10
#define SECRET_SCRUB_MARKER "[redacted]"
size_t secret_scrub(char *text, size_t cap);

/* Wipe and free a heap buffer that held secret bytes (hiredis commands, curl buffers). */
void secret_wipe_free(void *p, size_t len);

static inline void secret_freep(struct secret **s) { *s = secret_free(*s); }
#define _cleanup_secret_ __attribute__((cleanup(secret_freep)))
