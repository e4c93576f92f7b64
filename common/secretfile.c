/* secretfile: see secretfile.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "secretfile.h"

/* Opens path as a secret file: a regular file (not a symlink) that group and others
 * cannot access, at most SECRETFILE_MAX bytes. 0 and *ret_fd, or -errno with err. */
static int open_checked(const char *path, int *ret_fd, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, e == ELOOP ? "is a symlink (refused)" : strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "%s: not a regular file", path);
        return -EINVAL;
    }
    if (st.st_mode & 077) {
        close(fd);
        snprintf(err, errlen, "%s: accessible by group or others (mode %04o); make it 0600 or 0400",
                 path, (unsigned)(st.st_mode & 07777));
        return -EPERM;
    }
    if (st.st_size > SECRETFILE_MAX) {
        close(fd);
        snprintf(err, errlen, "%s: larger than %d bytes", path, SECRETFILE_MAX);
        return -EFBIG;
    }
    *ret_fd = fd;
    return 0;
}

int secretfile_check(const char *path, char *err, size_t errlen) {
    int fd;
    int r = open_checked(path, &fd, err, errlen);
    if (r == 0)
        close(fd);
    return r;
}

/* Owned by root or us; not writable by group or others unless `sticky_ok` and it is a
 * root-owned directory with the sticky bit. 0, or -EPERM with the reason in err. */
static int owner_mode_problem(const struct stat *st, bool sticky_ok, char *err, size_t errlen) {
    if (st->st_uid != 0 && st->st_uid != geteuid()) {
        snprintf(err, errlen, "owned by uid %u, not by root or the agent's user (uid %u); "
                 "refused: chown it to root", (unsigned)st->st_uid, (unsigned)geteuid());
        return -EPERM;
    }
    bool sticky = sticky_ok && st->st_uid == 0 && (st->st_mode & S_ISVTX);
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !sticky) {
        snprintf(err, errlen, "writable by group or others (mode %04o); refused: chmod go-w it",
                 (unsigned)(st->st_mode & 07777));
        return -EPERM;
    }
    return 0;
}

int secretfile_check_trusted(const char *path, const struct stat *st, char *err, size_t errlen) {
    struct stat own, dir;
    char why[256];
    if (!st) {
        if (stat(path, &own) < 0) {
            int e = errno;
            snprintf(err, errlen, "%s", strerror(e));
            return -e;
        }
        st = &own;
    }
    int r = owner_mode_problem(st, false, err, errlen);
    if (r < 0)
        return r;
    const char *slash = strrchr(path, '/');
    char parent[PATH_MAX];
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == path)
        snprintf(parent, sizeof parent, "/");
    else if ((size_t)(slash - path) < sizeof parent)
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path);
    else {
        snprintf(err, errlen, "path too long");
        return -ENAMETOOLONG;
    }
    if (stat(parent, &dir) < 0) {
        int e = errno;
        snprintf(err, errlen, "its directory %s: %s", parent, strerror(e));
        return -e;
    }
    if ((r = owner_mode_problem(&dir, true, why, sizeof why)) < 0)
        snprintf(err, errlen, "its directory %s is %s", parent, why);
    return r;
}

int secretfile_read(const char *path, const char *name, struct secret **ret, char *err, size_t errlen) {
    char buf_path[PATH_MAX];
    if (!path || !path[0]) {
        const char *dir = secure_getenv("CREDENTIALS_DIRECTORY");
        if (!dir || !dir[0] || !name || !name[0] || strchr(name, '/')) {
            snprintf(err, errlen, "no file configured for %s and $CREDENTIALS_DIRECTORY is not set",
                     name ? name : "the secret");
            return -ENOENT;
        }
        int n = snprintf(buf_path, sizeof buf_path, "%s/%s", dir, name);
        if (n < 0 || (size_t)n >= sizeof buf_path) {
            snprintf(err, errlen, "$CREDENTIALS_DIRECTORY/%s: path too long", name);
            return -ENAMETOOLONG;
        }
        path = buf_path;
    }
    int fd;
    int r = open_checked(path, &fd, err, errlen);
    if (r < 0)
        return r;
    char *buf = malloc(SECRETFILE_MAX + 1);
    size_t len = 0;
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, SECRETFILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            secret_wipe_free(buf, SECRETFILE_MAX + 1);
            snprintf(err, errlen, "%s: read: %s", path, strerror(e));
            return -e;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > SECRETFILE_MAX) {
            close(fd);
            secret_wipe_free(buf, SECRETFILE_MAX + 1);
            snprintf(err, errlen, "%s: larger than %d bytes", path, SECRETFILE_MAX);
            return -EFBIG;
        }
    }
    close(fd);
    if (len && buf[len - 1] == '\n')
        len--;
    if (len && buf[len - 1] == '\r')
        len--;
    if (len == 0) {
        secret_wipe_free(buf, SECRETFILE_MAX + 1);
        snprintf(err, errlen, "%s: empty", path);
        return -ENODATA;
    }
    *ret = secret_new(buf, len);
    secret_wipe_free(buf, SECRETFILE_MAX + 1);
    if (!*ret) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}
