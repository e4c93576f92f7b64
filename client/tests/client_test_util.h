/* Helpers shared by the client's C tests: a scratch runtime directory and an atomic
 * publisher that writes what the agent writes (temporary file + rename, docs/design.md §5.2). */
#ifndef CLIENT_TEST_UTIL_H
#define CLIENT_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static inline char *tu_mkdtemp(void) {
    char *d = strdup("/tmp/rc-client-XXXXXX");
    return d && mkdtemp(d) ? d : NULL;
}

static inline void tu_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static inline long long tu_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Writes text to dir/file atomically (hidden temporary file, rename). 0 or -errno. */
static inline int tu_publish_raw(const char *dir, const char *file, const char *text, size_t len) {
    char tmp[512], dst[512];
    static unsigned seq;
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp-%d-%u", dir, file, (int)getpid(), seq++);
    snprintf(dst, sizeof dst, "%s/%s", dir, file);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0) {
            int e = -errno;
            close(fd);
            unlink(tmp);
            return e;
        }
        off += (size_t)n;
    }
    close(fd);
    return rename(tmp, dst) < 0 ? -errno : 0;
}

static inline int tu_publish(const char *dir, const char *file, const char *text) {
    return tu_publish_raw(dir, file, text, strlen(text));
}

/* The password of rotation n: long, and derived from n, so a torn or mixed read is
 * detectable (tu_check_password). */
static inline void tu_password(char *buf, size_t size, unsigned n) {
    int k = snprintf(buf, size, "pw-%u-", n);
    for (size_t i = (size_t)k; i + 1 < size && i < 200; i++)
        buf[i] = (char)('a' + (n + i) % 26);
    buf[size - 1 < 200 ? size - 1 : 200] = 0;
}

/* A credential file for rotation n (previous = rotation n-1). */
static inline void tu_doc(char *buf, size_t size, const char *name, unsigned n) {
    char pw[256], prev[256];
    tu_password(pw, sizeof pw, n);
    tu_password(prev, sizeof prev, n - 1);
    if (n > 1)
        snprintf(buf, size,
                 "{\n  \"format\": 1,\n  \"name\": \"%s\",\n  \"username\": \"app\",\n"
                 "  \"password\": \"%s\",\n  \"version\": \"v-%u\",\n"
                 "  \"source\": \"local:x\",\n  \"published_at\": \"2026-11-22T10:00:00Z\",\n"
                 "  \"validated\": \"all\",\n  \"expires_at\": null,\n"
                 "  \"previous\": { \"username\": \"app\", \"password\": \"%s\", "
                 "\"version\": \"v-%u\", \"expires_at\": null }\n}\n",
                 name, pw, n, prev, n - 1);
    else
        snprintf(buf, size,
                 "{\"format\": 1, \"name\": \"%s\", \"username\": \"app\", \"password\": \"%s\","
                 " \"version\": \"v-%u\", \"expires_at\": null, \"previous\": null}\n",
                 name, pw, n);
}

static inline int tu_publish_n(const char *dir, const char *name, unsigned n) {
    char doc[2048], file[128];
    tu_doc(doc, sizeof doc, name, n);
    snprintf(file, sizeof file, "%s.json", name);
    return tu_publish(dir, file, doc);
}

/* 0 when s is exactly the password of rotation n. */
static inline int tu_check_password(const char *s, unsigned n) {
    char want[256];
    tu_password(want, sizeof want, n);
    return strcmp(s, want);
}

static inline int tu_rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path) < 0 ? 0 : 0; /* best effort: a scratch directory under /tmp */
}

static inline void tu_rm_rf(const char *dir) {
    nftw(dir, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
