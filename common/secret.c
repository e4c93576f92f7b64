/* secret: secret bytes in the OpenSSL secure heap, else in mlock()ed pages; always wiped.
 *
 * Layout: one block holding a small header (length, where it came from) and the bytes
 * plus a NUL. A block comes from, in order of preference:
 *   1. OpenSSL's secure heap (CRYPTO_secure_malloc), once secret_init() set it up: the
 *      heap is mlock()ed, excluded from core dumps and surrounded by guard pages;
 *   2. its own anonymous mapping, mlock()ed (failure ignored: an unprivileged process
 *      may have a tiny RLIMIT_MEMLOCK) and marked MADV_DONTDUMP. A mapping of its own
 *      (rather than malloc + mlock) because mlock is not reference counted: unlocking
 *      one malloc block would unlock its neighbours on the same page.
 * Whatever the origin, the block is wiped with explicit_bzero() before it is released.
 *
 * jansson: secret_init() installs allocation functions that keep the block size in a
 * header so that the free function can wipe the whole block. Every JSON string that
 * ever held a password (parsing, dumping) goes through them.
 */
#include "secret.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#define SECRET_DEFAULT_HEAP (256 * 1024)
#define SECRET_HEAP_MINSIZE 16

enum secret_origin { ORIGIN_SECURE_HEAP = 1, ORIGIN_MMAP = 2 };

struct secret {
    size_t len;          /* bytes of data, without the NUL */
    size_t block_size;   /* size of the whole block (header + data + NUL) */
    int origin;
    char data[];
};

/* Test hook, not part of the API: when set, called with every block this module
 * releases, after it was wiped and before it is freed. The unit test uses it to check
 * that the wiping happens. Declared here only; tests declare it themselves. */
void (*secret_test_release_hook)(const void *p, size_t len);

static void release_hook(const void *p, size_t len) {
    void (*hook)(const void *, size_t) = secret_test_release_hook;
    if (hook)
        hook(p, len);
}

static size_t round_up_pow2(size_t n) {
    size_t p = 1;
    while (p < n) {
        if (p > SIZE_MAX / 2)
            return 0;
        p <<= 1;
    }
    return p;
}

/* ---- jansson's wiping allocator ----------------------------------------------------
 * The header is a max_align_t-sized slot so the pointer handed to jansson keeps malloc's
 * alignment guarantee. */
union json_hdr {
    size_t size;
    max_align_t align;
};

static void *json_wiping_malloc(size_t size) {
    if (size > SIZE_MAX - sizeof(union json_hdr))
        return NULL;
    union json_hdr *h = malloc(sizeof(*h) + size);
    if (!h)
        return NULL;
    h->size = size;
    return h + 1;
}

static void json_wiping_free(void *p) {
    if (!p)
        return;
    union json_hdr *h = (union json_hdr *)p - 1;
    size_t total = sizeof(*h) + h->size;
    explicit_bzero(h, total);
    release_hook(h, total);
    free(h);
}

int secret_init(size_t heap_size) {
    json_set_alloc_funcs(json_wiping_malloc, json_wiping_free);

    if (CRYPTO_secure_malloc_initialized())
        return 0;
    if (heap_size == 0)
        heap_size = SECRET_DEFAULT_HEAP;
    /* sh_init() wants a power of two, and a heap larger than the minimum block. */
    heap_size = round_up_pow2(heap_size);
    if (heap_size < 4096)
        heap_size = 4096;
    if (heap_size == 0 || heap_size > (size_t)1 << 30)
        return -EINVAL;
    /* 1: set up; 2: set up but mlock() failed (still guarded and MADV_DONTDUMP). */
    int r = CRYPTO_secure_malloc_init(heap_size, SECRET_HEAP_MINSIZE);
    if (r == 0)
        return -ENOMEM;
    return 0;
}

bool secret_secure_heap_active(void) {
    return CRYPTO_secure_malloc_initialized() != 0;
}

static struct secret *secret_alloc(size_t len) {
    if (len > SIZE_MAX - sizeof(struct secret) - 1) {
        errno = ENOMEM;
        return NULL;
    }
    size_t size = sizeof(struct secret) + len + 1;
    struct secret *s = NULL;

    if (CRYPTO_secure_malloc_initialized()) {
        /* Returns NULL when the heap is exhausted; then fall back to a mapping. With
         * file NULL and line 0 a failure leaves nothing on OpenSSL's error queue. */
        s = CRYPTO_secure_malloc(size, NULL, 0);
        if (s) {
            s->origin = ORIGIN_SECURE_HEAP;
            s->block_size = size;
        }
    }
    if (!s) {
        long pg = sysconf(_SC_PAGESIZE);
        size_t page = pg > 0 ? (size_t)pg : 4096;
        if (size > SIZE_MAX - page) {
            errno = ENOMEM;
            return NULL;
        }
        size_t msize = (size + page - 1) / page * page;
        void *m = mmap(NULL, msize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;   /* errno set by mmap */
        (void)mlock(m, msize);
        (void)madvise(m, msize, MADV_DONTDUMP);
        s = m;
        s->origin = ORIGIN_MMAP;
        s->block_size = msize;
    }
    s->len = len;
    return s;
}

struct secret *secret_new(const void *data, size_t len) {
    if (!data && len > 0) {
        errno = EINVAL;
        return NULL;
    }
    struct secret *s = secret_alloc(len);
    if (!s)
        return NULL;
    if (len > 0)
        memcpy(s->data, data, len);
    s->data[len] = '\0';
    return s;
}

struct secret *secret_new_str(const char *str) {
    if (!str) {
        errno = EINVAL;
        return NULL;
    }
    return secret_new(str, strlen(str));
}

struct secret *secret_dup(const struct secret *s) {
    if (!s) {
        errno = EINVAL;
        return NULL;
    }
    return secret_new(s->data, s->len);
}

struct secret *secret_free(struct secret *s) {
    if (!s)
        return NULL;
    int saved_errno = errno;
    int origin = s->origin;
    size_t size = s->block_size;
    explicit_bzero(s, size);
    release_hook(s, size);
    if (origin == ORIGIN_SECURE_HEAP)
        CRYPTO_secure_clear_free(s, size, NULL, 0);
    else
        (void)munmap(s, size);   /* unmapping also unlocks */
    errno = saved_errno;
    return NULL;
}

const char *secret_data(const struct secret *s) {
    return s ? s->data : NULL;
}

size_t secret_len(const struct secret *s) {
    return s ? s->len : 0;
}

bool secret_equal(const struct secret *a, const struct secret *b) {
    if (!a || !b)
        return a == b;
    /* The length is not secret (it is in every log-free API anyway); the contents are. */
    if (a->len != b->len)
        return false;
    return CRYPTO_memcmp(a->data, b->data, a->len) == 0;
}

void secret_wipe_free(void *p, size_t len) {
    if (!p)
        return;
    explicit_bzero(p, len);
    release_hook(p, len);
    free(p);
}
