/* secretfile: see secretfile.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "secretfile.h"

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
    char *buf = malloc(SECRETFILE_MAX + 1);
    size_t len = 0;
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, SECRETFILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            secret_wipe_free(buf, SECRETFILE_MAX + 1);
            snprintf(err, errlen, "%s: read: %s", path, strerror(e));
            return -e;
        }
        if (r == 0)
            break;
        len += (size_t)r;
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
