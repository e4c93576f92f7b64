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
#include <pthread.h>
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

struct secret_registry;

struct secret {
    size_t len;          /* bytes of data, without the NUL */
    size_t block_size;   /* size of the whole block (header + data + NUL) */
    int origin;
    /* The registry (secret_scrub) of the copy of this module that made it; NULL when it
     * is shorter than SECRET_SCRUB_MIN or the registry could not be set up. */
    struct secret_registry *reg;
    struct secret *next, **pprev;   /* in reg's bucket, under reg->lock */
    uint64_t key;                   /* reg_key() of the first SECRET_SCRUB_MIN bytes */
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

static void reg_add(struct secret *s);
static void reg_remove(struct secret *s);
static void reg_learn(const struct secret *s);

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
    reg_add(s);
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
    reg_remove(s);   /* before the wipe: a scrub must never read a half-wiped secret */
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
    if (!s)
        return NULL;
    reg_learn(s);
    return s->data;
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

/* ---- the registry of live secrets, and secret_scrub() --------------------------------
 * Every secret of SECRET_SCRUB_MIN bytes or more is linked, from secret_new() until
 * secret_free(), into a hash table keyed by its first SECRET_SCRUB_MIN bytes. A scrub
 * hashes the SECRET_SCRUB_MIN bytes at each position of the text and compares only the
 * secrets of that bucket: its cost grows with the text, hardly with the number of secrets.
 *
 * Copies of this module: the agent links it, and so does each in-tree plugin (statically,
 * hidden). Each copy has a registry of its own, so a secret records the registry it is in
 * and any copy's secret_free() unlinks it there, under that registry's lock. A copy learns
 * another copy's registry when it reads a secret made there (secret_data()), e.g. the
 * agent a candidate password a plugin made, and scrubs with it too from then on.
 * Registries are mapped once and never unmapped: one a plugin made stays valid after the
 * plugin is unloaded. */

#define REG_BUCKET_BITS 12   /* 32 KiB a registry; 1,000 credentials' secrets: < 1 a bucket */
#define REG_MAX_KNOWN 8   /* other copies' registries one copy scrubs with */

struct secret_registry {
    pthread_mutex_t lock;
    size_t count;   /* secrets linked */
    struct secret *bucket[1u << REG_BUCKET_BITS];
};

static struct secret_registry *reg_own;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static struct secret_registry *reg_known[REG_MAX_KNOWN];   /* atomic; filled from 0 */

/* A mapping of its own, never unmapped, rather than malloc: it outlives the plugin whose
 * copy made it (that copy's pointer to it goes when the plugin is unloaded, the host's may
 * stay), and leak checkers (valgrind, LeakSanitizer) do not count a mapping as lost. */
static void reg_setup(void) {
    struct secret_registry *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED)
        r = NULL;
    else if (pthread_mutex_init(&r->lock, NULL) != 0) {
        (void)munmap(r, sizeof *r);
        r = NULL;
    }
    __atomic_store_n(&reg_own, r, __ATOMIC_RELEASE);
}

static struct secret_registry *reg_get(void) {
    pthread_once(&reg_once, reg_setup);
    return __atomic_load_n(&reg_own, __ATOMIC_ACQUIRE);
}

static uint64_t reg_key(const char *p) {
    uint64_t v = 0;
    memcpy(&v, p, SECRET_SCRUB_MIN);
    return (v + 1) * 0x9E3779B97F4A7C15ull;
}

static size_t reg_slot(uint64_t key) {
    return (size_t)(key >> (64 - REG_BUCKET_BITS));
}

static void reg_add(struct secret *s) {
    s->reg = NULL;
    if (s->len < SECRET_SCRUB_MIN)
        return;
    struct secret_registry *r = reg_get();
    if (!r)
        return;   /* out of memory at the first secret: scrubbing finds nothing */
    s->key = reg_key(s->data);
    struct secret **head = &r->bucket[reg_slot(s->key)];
    pthread_mutex_lock(&r->lock);
    s->next = *head;
    s->pprev = head;
    if (*head)
        (*head)->pprev = &s->next;
    *head = s;
    s->reg = r;
    r->count++;
    pthread_mutex_unlock(&r->lock);
}

static void reg_remove(struct secret *s) {
    struct secret_registry *r = s->reg;
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    *s->pprev = s->next;
    if (s->next)
        s->next->pprev = s->pprev;
    r->count--;
    pthread_mutex_unlock(&r->lock);
}

static void reg_learn(const struct secret *s) {
    struct secret_registry *r = s->reg;
    if (!r || r == __atomic_load_n(&reg_own, __ATOMIC_ACQUIRE))
        return;
    for (size_t i = 0; i < REG_MAX_KNOWN; i++) {
        struct secret_registry *k = __atomic_load_n(&reg_known[i], __ATOMIC_ACQUIRE);
        if (k == r)
            return;
        if (!k && __atomic_compare_exchange_n(&reg_known[i], &k, r, false, __ATOMIC_ACQ_REL,
                                              __ATOMIC_ACQUIRE))
            return;
        if (k == r)
            return;   /* another thread put it there first */
    }
}

/* ---- matching ---- */

#define SCRUB_MARKER_LEN (sizeof(SECRET_SCRUB_MARKER) - 1)

/* How a JSON encoder may write byte c of a secret: "\\x" (x returned), "\\u00XX" (-1),
 * or as itself (0). '/' may be either itself or "\\/": 1. */
static int json_escape_of(unsigned char c) {
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    case '/': return 1;
    default: return c < 0x20 ? -1 : 0;
    }
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Text bytes that JSON-escaped byte c takes at t[0..avail): 0 when t does not hold it,
 * or holds only part of it (the caller then treats the text as ending there). */
static size_t json_byte_at(unsigned char c, const char *t, size_t avail, bool *ret_cut) {
    int e = json_escape_of(c);
    *ret_cut = false;
    if (e == 0 || (e == 1 && avail >= 1 && t[0] == '/'))
        return avail >= 1 && (unsigned char)t[0] == c ? 1 : 0;
    if (avail < 2 || t[0] != '\\') {
        *ret_cut = avail == 1 && t[0] == '\\';
        return 0;
    }
    if (e > 1 && t[1] == e)
        return 2;
    if (e == 1 && t[1] == '/')
        return 2;
    if (t[1] != 'u')
        return 0;
    if (avail < 6) {
        *ret_cut = true;
        return 0;
    }
    int h[4] = { hexval(t[2]), hexval(t[3]), hexval(t[4]), hexval(t[5]) };
    return h[0] == 0 && h[1] == 0 && h[2] >= 0 && h[3] >= 0 && h[2] * 16 + h[3] == c ? 6 : 0;
}

/* Whether secret bytes matched (j of len), with the text ending there (at_end), count as
 * an occurrence: the whole secret, its first SECRET_SCRUB_PREFIX bytes (an echo cut
 * short), or its first SECRET_SCRUB_MIN bytes when the text ends (a text cut short). */
static bool enough(size_t j, size_t len, bool at_end) {
    return j == len || j >= SECRET_SCRUB_PREFIX || (at_end && j >= SECRET_SCRUB_MIN);
}

/* Text bytes from t[0..avail) that s occupies, as itself or JSON-escaped; 0: none. */
static size_t match_at(const struct secret *s, const char *t, size_t avail) {
    size_t j = 0, max = s->len < avail ? s->len : avail;
    while (j < max && s->data[j] == t[j])
        j++;
    if (enough(j, s->len, j == avail))
        return j;
    size_t p = 0;
    bool cut = false;
    for (j = 0; j < s->len && p < avail && !cut; j++) {
        size_t n = json_byte_at((unsigned char)s->data[j], t + p, avail - p, &cut);
        if (!n)
            break;
        p += n;
    }
    return p > 0 && enough(j, s->len, p == avail || cut) ? (cut ? avail : p) : 0;
}

/* The longest occurrence of any registered secret at t[0..avail). */
static size_t longest_at(struct secret_registry *const *regs, size_t nregs, const char *t,
                         size_t avail) {
    uint64_t key = reg_key(t);
    size_t best = 0;
    for (size_t r = 0; r < nregs; r++)
        for (const struct secret *s = regs[r]->bucket[reg_slot(key)]; s; s = s->next) {
            if (s->key != key)
                continue;
            size_t n = match_at(s, t, avail);
            if (n > best)
                best = n;
        }
    return best;
}

/* ---- scrub ---- */

/* Replaces text[cs..ce) with the marker; when the result would not fit in cap, the text
 * ends with the marker (cut if need be). Returns the new length. */
static size_t replace_span(char *text, size_t cap, size_t n, size_t cs, size_t ce) {
    size_t grown = n - (ce - cs) + SCRUB_MARKER_LEN;
    if (grown < cap) {
        memmove(text + cs + SCRUB_MARKER_LEN, text + ce, n - ce + 1);
        memcpy(text + cs, SECRET_SCRUB_MARKER, SCRUB_MARKER_LEN);
        return grown;
    }
    size_t k = cap - 1 - cs < SCRUB_MARKER_LEN ? cap - 1 - cs : SCRUB_MARKER_LEN;
    memcpy(text + cs, SECRET_SCRUB_MARKER, k);
    explicit_bzero(text + cs + k, n - cs - k);
    text[cs + k] = '\0';
    return cs + k;
}

/* The registries to scrub with, locked in address order (two copies scrubbing at once
 * take them in the same order). Returns how many, or 0 (none locked) when no secret is
 * live. */
static size_t regs_lock(struct secret_registry **regs) {
    size_t n = 0;
    struct secret_registry *own = reg_get();
    if (own)
        regs[n++] = own;
    for (size_t i = 0; i < REG_MAX_KNOWN; i++) {
        struct secret_registry *k = __atomic_load_n(&reg_known[i], __ATOMIC_ACQUIRE);
        if (k && k != own)
            regs[n++] = k;
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && (uintptr_t)regs[j] < (uintptr_t)regs[j - 1]; j--) {
            struct secret_registry *t = regs[j];
            regs[j] = regs[j - 1];
            regs[j - 1] = t;
        }
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&regs[i]->lock);
        live += regs[i]->count;
    }
    if (!live) {   /* nothing to look for: the scan is skipped */
        for (size_t i = n; i > 0; i--)
            pthread_mutex_unlock(&regs[i - 1]->lock);
        return 0;
    }
    return n;
}

size_t secret_scrub(char *text, size_t cap) {
    if (!text || cap == 0)
        return 0;
    struct secret_registry *regs[REG_MAX_KNOWN + 1];
    size_t nregs = regs_lock(regs);
    if (nregs == 0)
        return 0;
    size_t n = strnlen(text, cap - 1), count = 0;
    size_t cs = 0, ce = 0;   /* the span being gathered; ce == 0: none */
    text[n] = '\0';
    /* Occurrences may overlap or touch: their union becomes one marker, replaced only
     * once no later occurrence can reach into it, so each is found in the original bytes. */
    for (size_t i = 0; i + SECRET_SCRUB_MIN <= n; i++) {
        if (ce && i > ce) {
            bool cut = n - (ce - cs) + SCRUB_MARKER_LEN >= cap;   /* the text ends there */
            size_t m = replace_span(text, cap, n, cs, ce);
            count++;
            i = i - (ce - cs) + SCRUB_MARKER_LEN;   /* the same byte, moved */
            ce = 0;
            n = m;
            if (cut)
                break;
        }
        size_t len = longest_at(regs, nregs, text + i, n - i);
        if (len && ce && i + len > ce)
            ce = i + len;
        else if (len && !ce) {
            cs = i;
            ce = i + len;
        }
    }
    if (ce) {
        replace_span(text, cap, n, cs, ce);
        count++;
    }
    for (size_t i = nregs; i > 0; i--)
        pthread_mutex_unlock(&regs[i - 1]->lock);
    return count;
}
