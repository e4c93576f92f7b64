/* runtime: see runtime.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "runtime.h"

static const struct {
    unsigned flag;
    const char *ext;
} formats_ext[] = {
    /* Order matters: the .json goes last. */
    { CRED_FORMAT_ENV, "env" },
    { CRED_FORMAT_PASSWORD, "password" },
    { CRED_FORMAT_JSON, "json" },
};

/* The opened directory must belong to root or to us and not be writable by others:
 * whoever owns it or may write it can rename and replace what we publish, squat our
 * .lock, or plant it as a hard link to a file we would then truncate (a directory made
 * in advance under a shared parent, /tmp say). Checked on the fd: what is checked is
 * what is used. 0, or -EPERM + err. */
static int check_dir(const char *dir, int dfd, char *err, size_t errlen) {
    struct stat st;
    if (fstat(dfd, &st) < 0) {
        int r = -errno;
        snprintf(err, errlen, "runtime_dir %s: %s", dir, strerror(errno));
        return r;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        snprintf(err, errlen, "runtime_dir %s: owned by uid %u, neither root nor the agent's user "
                 "(uid %u; refused); chown it to the agent's user, or remove it and let the agent "
                 "create it", dir, (unsigned)st.st_uid, (unsigned)geteuid());
        return -EPERM;
    }
    if (st.st_mode & S_IWOTH) {
        snprintf(err, errlen, "runtime_dir %s: writable by others (mode %04o; refused)",
                 dir, (unsigned)(st.st_mode & 07777));
        return -EPERM;
    }
    return 0;
}

/* Creates dir when missing, checks it, opens it, takes its lock and removes stale
 * temporary files. 0 with *ret_dfd and *ret_lfd, or -errno + err. */
static int open_locked(const char *dir, int *ret_dfd, int *ret_lfd, char *err, size_t errlen) {
    struct stat st;
    if (dir[0] != '/') {
        snprintf(err, errlen, "runtime_dir %s: must be an absolute path", dir);
        return -EINVAL;
    }
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        int r = -errno;
        snprintf(err, errlen, "runtime_dir %s: cannot create: %s", dir, strerror(errno));
        return r;
    }
    if (lstat(dir, &st) < 0) {
        int r = -errno;
        snprintf(err, errlen, "runtime_dir %s: %s", dir, strerror(errno));
        return r;
    }
    if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "runtime_dir %s: is a symlink or not a directory (refused)", dir);
        return -ENOTDIR;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        int r = -errno;
        snprintf(err, errlen, "runtime_dir %s: %s", dir, strerror(errno));
        return r;
    }
    int r = check_dir(dir, dfd, err, errlen);
    if (r < 0) {
        close(dfd);
        return r;
    }
    int lfd = openat(dfd, ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lfd < 0) {
        r = -errno;
        snprintf(err, errlen, "runtime_dir %s: cannot open .lock: %s", dir, strerror(errno));
        close(dfd);
        return r;
    }
    if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
        r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        char pid[32] = "";
        ssize_t n = pread(lfd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (r == -EBUSY)
            snprintf(err, errlen, "runtime_dir in use by pid %s (%s)", pid[0] ? pid : "?", dir);
        else
            snprintf(err, errlen, "runtime_dir %s: lock: %s", dir, strerror(-r));
        close(lfd);
        close(dfd);
        return r;
    }
    char pid[32];
    int plen = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(lfd, 0) < 0 || pwrite(lfd, pid, (size_t)plen, 0) != plen)
        log_warning("runtime_dir %s: cannot record our pid in .lock: %s", dir, strerror(errno));

    int removed = credfile_remove_temps(dfd);
    if (removed > 0)
        log_notice("runtime_dir %s: removed %d stale temporary file(s)", dir, removed);
    *ret_dfd = dfd;
    *ret_lfd = lfd;
    return 0;
}

int runtime_open(const char *dir, struct runtime **ret, char *err, size_t errlen) {
    int dfd, lfd;
    int r = open_locked(dir, &dfd, &lfd, err, errlen);
    if (r < 0)
        return r;
    struct runtime *rt = calloc(1, sizeof *rt);
    if (!rt || !(rt->dir = strdup(dir))) {
        free(rt);
        close(lfd);
        close(dfd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rt->dirfd = dfd;
    rt->lockfd = lfd;
    *ret = rt;
    return 0;
}

bool runtime_lost(const struct runtime *rt) {
    struct stat fd_st, path_st;
    if (fstat(rt->dirfd, &fd_st) < 0 || fd_st.st_nlink == 0)
        return true;
    if (lstat(rt->dir, &path_st) < 0)
        return errno == ENOENT || errno == ENOTDIR;
    /* moved away, or replaced by another directory (or anything else) */
    return path_st.st_dev != fd_st.st_dev || path_st.st_ino != fd_st.st_ino;
}

int runtime_reopen(struct runtime *rt, char *err, size_t errlen) {
    int dfd, lfd;
    int r = open_locked(rt->dir, &dfd, &lfd, err, errlen);
    if (r < 0)
        return r;
    close(rt->lockfd);
    close(rt->dirfd);
    rt->dirfd = dfd;
    rt->lockfd = lfd;
    return 0;
}

struct runtime *runtime_close(struct runtime *rt) {
    if (!rt)
        return NULL;
    close(rt->lockfd);   /* releases the flock */
    close(rt->dirfd);
    free(rt->dir);
    free(rt);
    return NULL;
}

int runtime_set_dir_mode(struct runtime *rt, gid_t gid, bool mixed_groups) {
    if (gid != (gid_t)-1 && fchown(rt->dirfd, (uid_t)-1, gid) < 0)
        return -errno;
    if (fchmod(rt->dirfd, mixed_groups ? 0755 : 0750) < 0)
        return -errno;
    return 0;
}

int runtime_resolve_group(const char *group, gid_t *ret, char *err, size_t errlen) {
    if (!group || !group[0]) {
        *ret = (gid_t)-1;
        return 0;
    }
    char buf[4096];
    struct group gr, *res = NULL;
    int r = getgrnam_r(group, &gr, buf, sizeof buf, &res);
    if (r != 0 || !res) {
        snprintf(err, errlen, "group \"%s\": %s", group, r ? strerror(r) : "no such group");
        return r ? -r : -ENOENT;
    }
    *ret = res->gr_gid;
    return 0;
}

static int format_bytes(const struct credfile *cf, unsigned flag, struct secret **ret, char *err,
                        size_t errlen) {
    int r;
    switch (flag) {
    case CRED_FORMAT_ENV: return credfile_format_env(cf, ret, err, errlen);
    case CRED_FORMAT_PASSWORD: r = credfile_format_password(cf, ret); break;
    default: r = credfile_format_json(cf, ret); break;
    }
    if (r < 0)
        snprintf(err, errlen, "cannot format %s: %s", cf->name, strerror(-r));
    return r;
}

/* True when <dirfd>/<fname> is a regular file with exactly these bytes, mode and group. */
enum file_state { FILE_MISSING, FILE_SAME, FILE_META, FILE_OTHER };

/* How the file at fname compares with data: missing (or not a regular file), the same,
 * the same bytes with another mode or group, or other bytes. */
static enum file_state file_compare(int dirfd, const char *fname, const struct secret *data, mode_t mode,
                                    gid_t gid) {
    struct stat st;
    int fd = openat(dirfd, fname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return FILE_MISSING;
    enum file_state state = FILE_OTHER;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        state = FILE_MISSING;
    else if ((size_t)st.st_size == secret_len(data)) {
        char *buf = malloc(secret_len(data) + 1);
        ssize_t n = buf ? read(fd, buf, secret_len(data) + 1) : -1;
        if (n == (ssize_t)secret_len(data) && memcmp(buf, secret_data(data), secret_len(data)) == 0)
            state = (st.st_mode & 07777) == mode && (gid == (gid_t)-1 || st.st_gid == gid) ? FILE_SAME
                                                                                           : FILE_META;
        if (buf)
            secret_wipe_free(buf, secret_len(data) + 1);
    }
    close(fd);
    return state;
}

enum write_when { WRITE_ALWAYS, WRITE_IF_DIFFERENT, WRITE_KEEP_OTHER };

/* Writes one format: always, only when the file differs, or (WRITE_KEEP_OTHER) only when
 * it is missing or differs in mode or group alone. Returns 1 when written, 0 when left as
 * it is (*kept counts a file left with other contents), or -errno + err. */
static int write_format(struct runtime *rt, const struct credfile *cf, unsigned flag, const char *ext,
                        mode_t mode, gid_t gid, enum write_when when, unsigned *kept, char *err,
                        size_t errlen) {
    struct secret *data = NULL;
    char fname[96];
    int r = format_bytes(cf, flag, &data, err, errlen);
    if (r < 0)
        return r;
    snprintf(fname, sizeof fname, "%s.%s", cf->name, ext);
    enum file_state st = when == WRITE_ALWAYS ? FILE_OTHER : file_compare(rt->dirfd, fname, data, mode, gid);
    if (st == FILE_SAME || (st == FILE_OTHER && when == WRITE_KEEP_OTHER)) {
        if (st == FILE_OTHER && kept)
            (*kept)++;
        secret_free(data);
        return 0;
    }
    r = credfile_write_atomic(rt->dirfd, fname, secret_data(data), secret_len(data), mode, gid);
    secret_free(data);
    if (r < 0)
        snprintf(err, errlen, "cannot write %s/%s: %s", rt->dir, fname, strerror(-r));
    return r == 0 ? 1 : r;
}

int runtime_publish(struct runtime *rt, const struct credfile *cf, unsigned formats,
                    mode_t mode, gid_t gid, char *err, size_t errlen) {
    for (size_t i = 0; i < sizeof formats_ext / sizeof formats_ext[0]; i++) {
        if (!(formats & formats_ext[i].flag))
            continue;
        int r = write_format(rt, cf, formats_ext[i].flag, formats_ext[i].ext, mode, gid, WRITE_ALWAYS, NULL,
                             err, errlen);
        if (r < 0)
            return r;
    }
    return 0;
}

int runtime_sync_formats(struct runtime *rt, const struct credfile *cf, unsigned formats,
                         mode_t mode, gid_t gid, unsigned *ret_kept, char *err, size_t errlen) {
    int written = 0;
    for (size_t i = 0; i < sizeof formats_ext / sizeof formats_ext[0]; i++) {
        if (!(formats & formats_ext[i].flag))
            continue;
        int r = write_format(rt, cf, formats_ext[i].flag, formats_ext[i].ext, mode, gid,
                             ret_kept ? WRITE_KEEP_OTHER : WRITE_IF_DIFFERENT, ret_kept, err, errlen);
        if (r < 0)
            return r;
        written += r;
    }
    return written;
}

int runtime_adopt(struct runtime *rt, const char *name, struct credfile *ret, char *err, size_t errlen) {
    char fname[96];
    struct credfile cf = { 0 };
    snprintf(fname, sizeof fname, "%s.json", name);
    int r = credfile_read(rt->dirfd, fname, &cf, err, errlen);
    if (r < 0)
        return r;
    if (!cf.name || strcmp(cf.name, name) != 0) {
        snprintf(err, errlen, "%s/%s: names credential \"%s\", not \"%s\"", rt->dir, fname,
                 cf.name ? cf.name : "", name);
        credfile_clear(&cf);
        return -EINVAL;
    }
    *ret = cf;
    return 0;
}

/* Splits "<name>.<ext>" for our formats; returns the format flag or 0. */
static unsigned published_format(const char *fname, char *name, size_t size) {
    const char *dot = strrchr(fname, '.');
    if (!dot || fname[0] == '.' || (size_t)(dot - fname) >= size)
        return 0;
    for (size_t i = 0; i < sizeof formats_ext / sizeof formats_ext[0]; i++)
        if (strcmp(dot + 1, formats_ext[i].ext) == 0) {
            memcpy(name, fname, (size_t)(dot - fname));
            name[dot - fname] = '\0';
            return config_name_valid(name) ? formats_ext[i].flag : 0;
        }
    return 0;
}

void runtime_prune(struct runtime *rt, char *const *names, const unsigned *formats, size_t n) {
    int fd = dup(rt->dirfd);   /* fdopendir takes the fd */
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    rewinddir(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        char name[80];
        unsigned f = published_format(de->d_name, name, sizeof name);
        if (!f || de->d_type == DT_DIR)
            continue;
        bool wanted = false;
        for (size_t i = 0; i < n; i++)
            if (strcmp(names[i], name) == 0)
                wanted = (formats[i] & f) != 0;
        if (wanted)
            continue;
        if (f == CRED_FORMAT_JSON) {
            /* Only remove what is recognisably ours. */
            struct credfile cf = { 0 };
            char e[128];
            int r = credfile_read(rt->dirfd, de->d_name, &cf, e, sizeof e);
            credfile_clear(&cf);
            if (r < 0)
                continue;
        }
        if (unlinkat(rt->dirfd, de->d_name, 0) == 0)
            log_ctx_msg(LOG_NOTICE, &(struct log_ctx){ .message_id = LOG_MID_FILE_DELETED, .name = name },
                        "removed %s/%s: no longer in the configuration", rt->dir, de->d_name);
        else
            log_warning("cannot remove %s/%s: %s", rt->dir, de->d_name, strerror(errno));
    }
    closedir(d);
}
