/* secret: the one type that holds secret bytes (passwords, tokens, keys).
 *
 * A secret owns a buffer of `len` bytes plus a terminating NUL (so a password can be
 * passed to APIs that want a C string), allocated from OpenSSL's secure heap when
 * secret_init() could set it up (locked, guarded pages), else from mlock()ed memory,
 * else plain memory. The buffer is wiped with explicit_bzero() before it is freed.
 * Secrets are immutable after creation; any thread may use one, one thread frees it.
 *
 * Nothing in this module prints or logs; callers must never format secret_data().
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

/* Wipe and free a heap buffer that held secret bytes (hiredis commands, curl buffers). */
void secret_wipe_free(void *p, size_t len);

static inline void secret_freep(struct secret **s) { *s = secret_free(*s); }
#define _cleanup_secret_ __attribute__((cleanup(secret_freep)))
