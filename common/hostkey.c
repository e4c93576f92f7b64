/* hostkey: 32 random bytes in <state_dir>/host.key, and keyed versions made with them.
 *
 * Creation never clobbers: the key is written to a temporary file that is then hard
 * linked to "host.key" (link() fails with EEXIST when another process got there first,
 * and we read the winner's key instead). Filesystems without hard links get
 * renameat2(RENAME_NOREPLACE), which has the same no-clobber semantics.
 * A key file that group or others can access, that belongs to another user, or that
 * does not hold exactly 32 bytes is refused rather than "fixed": it means someone else
 * touched it, and the operator should look.
 */
#include "hostkey.h"

#include "fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define HOSTKEY_FILE "host.key"
#define HOSTKEY_TMP_PREFIX ".host.key.tmp-"

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* 0 with *ret set, -ENOENT when there is no key yet, other -errno with err set. */
static int read_key(int dfd, const char *dir, struct secret **ret, char *err, size_t errlen) {
    int fd = openat(dfd, HOSTKEY_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return -ENOENT;
        if (e == ELOOP)
            set_err(err, errlen, "%s/" HOSTKEY_FILE ": is a symbolic link; refusing it", dir);
        else
            set_err(err, errlen, "%s/" HOSTKEY_FILE ": cannot open: %s", dir, strerror(e));
        return -e;
    }
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        set_err(err, errlen, "%s/" HOSTKEY_FILE ": cannot stat: %s", dir, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        r = -EINVAL;
        set_err(err, errlen, "%s/" HOSTKEY_FILE ": not a regular file", dir);
    } else if (st.st_mode & 077) {
        r = -EPERM;
        set_err(err, errlen, "%s/" HOSTKEY_FILE ": mode %04o lets group or others access "
                "the host key; refusing it (chmod 0600 if it is still secret, else delete it "
                "and restart)", dir, (unsigned)(st.st_mode & 07777));
    } else if (st.st_uid != geteuid()) {
        r = -EPERM;
        set_err(err, errlen, "%s/" HOSTKEY_FILE ": owned by uid %u, not by us (uid %u); "
                "refusing it", dir, (unsigned)st.st_uid, (unsigned)geteuid());
    } else if (st.st_size != HOSTKEY_LEN) {
        r = -EINVAL;
        set_err(err, errlen, "%s/" HOSTKEY_FILE ": has %lld bytes, expected %d", dir,
                (long long)st.st_size, HOSTKEY_LEN);
    }
    if (r < 0) {
        close(fd);
        return r;
    }

    unsigned char buf[HOSTKEY_LEN + 1];
    size_t len = 0;
    while (len < sizeof(buf)) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            set_err(err, errlen, "%s/" HOSTKEY_FILE ": read failed: %s", dir, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (r == 0 && len != HOSTKEY_LEN) {
        r = -EINVAL;
        set_err(err, errlen, "%s/" HOSTKEY_FILE ": has %zu bytes, expected %d", dir, len,
                HOSTKEY_LEN);
    }
    if (r == 0) {
        struct secret *s = secret_new(buf, HOSTKEY_LEN);
        if (!s) {
            r = -ENOMEM;
            set_err(err, errlen, "out of memory");
        } else {
            *ret = s;
        }
    }
    explicit_bzero(buf, sizeof(buf));
    return r;
}

/* 0 when our key is in place, -EEXIST when another creator won, other -errno + err. */
static int create_key(int dfd, const char *dir, char *err, size_t errlen) {
    unsigned char key[HOSTKEY_LEN], rnd[4];
    char tmp[64];
    int fd = -1;

    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            set_err(err, errlen, "cannot get random bytes from OpenSSL");
            return -EIO;
        }
        snprintf(tmp, sizeof(tmp), HOSTKEY_TMP_PREFIX "%02x%02x%02x%02x", rnd[0], rnd[1],
                 rnd[2], rnd[3]);
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) {
            int e = errno;
            set_err(err, errlen, "%s: cannot create the host key: %s", dir, strerror(e));
            return -e;
        }
    }
    if (fd < 0) {
        set_err(err, errlen, "%s: cannot create a temporary file for the host key", dir);
        return -EEXIST;
    }

    int r = 0;
    if (RAND_bytes(key, sizeof(key)) != 1) {
        r = -EIO;
        set_err(err, errlen, "cannot get random bytes from OpenSSL");
    }
    if (r == 0 && fchmod(fd, 0600) < 0) {
        r = -errno;
        set_err(err, errlen, "%s/%s: chmod failed: %s", dir, tmp, strerror(errno));
    }
    if (r == 0 && (r = fdio_write_all(fd, key, sizeof(key))) < 0)
        set_err(err, errlen, "%s/%s: write failed: %s", dir, tmp, strerror(-r));
    explicit_bzero(key, sizeof(key));
    if (r == 0 && fsync(fd) < 0) {
        r = -errno;
        set_err(err, errlen, "%s/%s: fsync failed: %s", dir, tmp, strerror(errno));
    }
    if (close(fd) < 0 && r == 0) {
        r = -errno;
        set_err(err, errlen, "%s/%s: close failed: %s", dir, tmp, strerror(errno));
    }
    if (r == 0 && linkat(dfd, tmp, dfd, HOSTKEY_FILE, 0) < 0) {
        int e = errno;
        if (e == EPERM || e == EOPNOTSUPP || e == ENOSYS) {
            /* No hard links here; rename without replacing has the same semantics. */
            if (renameat2(dfd, tmp, dfd, HOSTKEY_FILE, RENAME_NOREPLACE) < 0)
                e = errno;
            else
                e = 0;
        }
        if (e == EEXIST)
            r = -EEXIST;   /* lost the race: the caller reads the winner's key */
        else if (e != 0) {
            r = -e;
            set_err(err, errlen, "%s/" HOSTKEY_FILE ": cannot create: %s", dir, strerror(e));
        }
    }
    (void)unlinkat(dfd, tmp, 0);   /* after link(): the key stays under its real name */
    if (r == 0 && fsync(dfd) < 0) {
        r = -errno;
        set_err(err, errlen, "%s: fsync failed: %s", dir, strerror(errno));
    }
    return r;
}

int hostkey_load_or_create(const char *state_dir, struct secret **ret, char *err,
                           size_t errlen) {
    if (!state_dir || !*state_dir) {
        set_err(err, errlen, "state_dir is empty");
        return -EINVAL;
    }
    if (mkdir(state_dir, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        set_err(err, errlen, "%s: cannot create state_dir: %s", state_dir, strerror(e));
        return -e;
    }
    int dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        int e = errno;
        set_err(err, errlen, "%s: cannot open state_dir: %s", state_dir, strerror(e));
        return -e;
    }
    int r = -ENOENT;
    /* A lost creation race is followed by a read of the winner's key; a few rounds cover
     * a key deleted between the two (which only an operator would do). */
    for (int round = 0; round < 4; round++) {
        struct secret *key = NULL;
        r = read_key(dfd, state_dir, &key, err, errlen);
        if (r == 0) {
            *ret = key;
            break;
        }
        if (r != -ENOENT)
            break;
        r = create_key(dfd, state_dir, err, errlen);
        if (r < 0 && r != -EEXIST)
            break;
        r = -ENOENT;
    }
    if (r == -ENOENT)
        set_err(err, errlen, "%s/" HOSTKEY_FILE ": vanished while being created", state_dir);
    close(dfd);
    return r;
}

int hostkey_version(const struct secret *key, const void *data, size_t len,
                    char out[HOSTKEY_VERSION_LEN]) {
    static const unsigned char empty[1];
    if (!key || secret_len(key) == 0 || secret_len(key) > INT32_MAX || (!data && len > 0))
        return -EIO;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!HMAC(EVP_sha256(), secret_data(key), (int)secret_len(key),
              data ? data : empty, len, md, &mdlen) || mdlen < 8) {
        explicit_bzero(md, sizeof(md));
        return -EIO;
    }
    static const char hex[] = "0123456789abcdef";
    out[0] = 'h';
    out[1] = '-';
    for (int i = 0; i < 8; i++) {
        out[2 + 2 * i] = hex[md[i] >> 4];
        out[3 + 2 * i] = hex[md[i] & 0xf];
    }
    out[HOSTKEY_VERSION_LEN - 1] = '\0';
    explicit_bzero(md, sizeof(md));
    return 0;
}
