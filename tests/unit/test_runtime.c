/* runtime: the directory the agent publishes into, in a fresh directory per test. Its
 * refusals at open (relative, a symlink, writable by others, another user's), the lock a second agent
 * runs into, stale temporary files, publishing and adopting, rewriting only what differs,
 * pruning what the config no longer names (and only files that are ours), and the
 * directory deleted or moved under a running agent. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "credfile.h"
#include "log.h"
#include "runtime.h"
#include "secret.h"

static char base[200], dir[260];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int setup(void **state) {
    const char *tmp = getenv("REDIS_CREDS_TEST_TMP");

    (void)state;
    snprintf(base, sizeof base, "%s/rc-runtime-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(base))
        return -1;
    snprintf(dir, sizeof dir, "%s/run", base);   /* made by runtime_open */
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return nftw(base, remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

static struct runtime *open_ok(void) {
    struct runtime *rt = NULL;
    char err[512];

    if (runtime_open(dir, &rt, err, sizeof err) < 0)
        fail_msg("%s", err);
    return rt;
}

static void put(const char *name, const char *text, mode_t mode) {
    char p[400];
    int fd;

    snprintf(p, sizeof p, "%s/%s", dir, name);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static bool exists(const char *name) {
    char p[400];

    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static mode_t mode_of(const char *name) {
    char p[400];
    struct stat st;

    snprintf(p, sizeof p, "%s/%s", dir, name);
    assert_int_equal(stat(p, &st), 0);
    return st.st_mode & 07777;
}

/* A credential "name" with password pw at version v. */
static void make_cred(struct credfile *cf, const char *name, const char *pw, const char *v) {
    *cf = (struct credfile){
        .name = strdup(name), .source = strdup("file:/x"), .published_at = 1790000000,
        .validated = strdup("all"),
        .cur = { .password = secret_new_str(pw), .version = strdup(v), .expires_at = RC_NO_EXPIRY },
    };
    assert_non_null(cf->cur.password);
}

static void test_open_refuses_and_locks(void **state) {
    struct runtime *rt, *second = NULL;
    char err[512], want[64], link[300];

    (void)state;
    assert_int_equal(runtime_open("relative/run", &second, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "absolute"));

    rt = open_ok();
    assert_int_equal(mode_of("."), 0750);   /* created by us */
    assert_int_equal(runtime_open(dir, &second, err, sizeof err), -EBUSY);
    snprintf(want, sizeof want, "in use by pid %ld", (long)getpid());
    assert_non_null(strstr(err, want));
    assert_null(second);
    runtime_close(rt);
    rt = open_ok();   /* closing released the lock */
    runtime_close(rt);

    snprintf(link, sizeof link, "%s/link", base);
    assert_int_equal(symlink(dir, link), 0);
    assert_int_equal(runtime_open(link, &second, err, sizeof err), -ENOTDIR);
    assert_non_null(strstr(err, "symlink"));
    assert_int_equal(chmod(dir, 0777), 0);
    assert_int_equal(runtime_open(dir, &second, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "writable by others"));
    assert_int_equal(chmod(dir, 0750), 0);
}

/* A directory someone else made in advance (under /tmp, say) stays theirs whatever mode
 * we give it: they could replace what we publish, or plant .lock as a hard link to a file
 * of ours that the lock's pid record would truncate. Refused, the owner named. */
static void test_open_refuses_a_directory_owned_by_another_user(void **state) {
    struct runtime *rt = NULL;
    char err[512], lock[300];

    (void)state;
    if (geteuid() != 0)
        skip();   /* giving a directory away needs root */
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(chown(dir, 65534, 65534), 0);
    assert_int_equal(runtime_open(dir, &rt, err, sizeof err), -EPERM);
    assert_null(rt);
    assert_non_null(strstr(err, "owned by uid 65534, neither root nor the agent's user"));
    snprintf(lock, sizeof lock, "%s/.lock", dir);
    assert_int_equal(access(lock, F_OK), -1);   /* nothing made in it */
    assert_int_equal(chown(dir, 0, 0), 0);
    rt = open_ok();
    runtime_close(rt);
}

static void test_open_removes_stale_temporary_files(void **state) {
    struct runtime *rt;

    (void)state;
    rt = open_ok();
    runtime_close(rt);
    put(CREDFILE_TMP_PREFIX "app.json-abc123", "{", 0600);
    put("keep.txt", "x", 0600);
    rt = open_ok();
    assert_false(exists(CREDFILE_TMP_PREFIX "app.json-abc123"));
    assert_true(exists("keep.txt"));
    runtime_close(rt);
}

static void test_publish_adopt_and_sync(void **state) {
    unsigned all = CRED_FORMAT_JSON | CRED_FORMAT_ENV | CRED_FORMAT_PASSWORD, kept = 0;
    struct credfile cf, back = { 0 };
    struct runtime *rt = open_ok();
    char err[512], from[400], to[400];

    (void)state;
    make_cred(&cf, "app", "pw-one", "v1");
    assert_int_equal(runtime_publish(rt, &cf, all, 0640, (gid_t)-1, err, sizeof err), 0);
    assert_int_equal(mode_of("app.json"), 0640);
    assert_int_equal(mode_of("app.env"), 0640);
    assert_int_equal(mode_of("app.password"), 0640);

    assert_int_equal(runtime_adopt(rt, "app", &back, err, sizeof err), 0);
    assert_string_equal(back.cur.version, "v1");
    assert_string_equal(secret_data(back.cur.password), "pw-one");
    credfile_clear(&back);
    assert_int_equal(runtime_adopt(rt, "missing", &back, err, sizeof err), -ENOENT);
    snprintf(from, sizeof from, "%s/app.json", dir);
    snprintf(to, sizeof to, "%s/other.json", dir);
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(runtime_adopt(rt, "other", &back, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "names credential \"app\", not \"other\""));

    /* sync: writes the missing .json back, nothing else; then a mode the config changed */
    assert_int_equal(runtime_sync_formats(rt, &cf, all, 0640, (gid_t)-1, NULL, err, sizeof err), 1);
    assert_int_equal(runtime_sync_formats(rt, &cf, all, 0640, (gid_t)-1, NULL, err, sizeof err), 0);
    assert_int_equal(runtime_sync_formats(rt, &cf, all, 0600, (gid_t)-1, NULL, err, sizeof err), 3);
    assert_int_equal(mode_of("app.env"), 0600);

    /* at adoption, a file NEWER than the .json (other contents) is kept and counted */
    put("app.password", "pw-two", 0600);
    assert_int_equal(runtime_sync_formats(rt, &cf, all, 0600, (gid_t)-1, &kept, err, sizeof err), 0);
    assert_int_equal(kept, 1);
    assert_int_equal(runtime_adopt(rt, "app", &back, err, sizeof err), 0);
    credfile_clear(&back);
    /* without ret_kept it is brought in line */
    assert_int_equal(runtime_sync_formats(rt, &cf, all, 0600, (gid_t)-1, NULL, err, sizeof err), 1);
    credfile_clear(&cf);
    runtime_close(rt);
}

static void test_prune_removes_only_what_is_ours_and_unwanted(void **state) {
    struct runtime *rt = open_ok();
    struct credfile app, old;
    char *names[] = { "app" };
    unsigned formats[] = { CRED_FORMAT_JSON };
    char err[512];

    (void)state;
    make_cred(&app, "app", "pw-app", "v1");
    make_cred(&old, "old", "pw-old", "v1");
    assert_int_equal(runtime_publish(rt, &app, CRED_FORMAT_JSON | CRED_FORMAT_ENV, 0640, (gid_t)-1,
                                     err, sizeof err), 0);
    assert_int_equal(runtime_publish(rt, &old, CRED_FORMAT_JSON, 0640, (gid_t)-1, err, sizeof err), 0);
    put("notours.json", "{\"someone\": \"else\"}", 0644);
    put("notes.txt", "hello", 0644);
    runtime_prune(rt, names, formats, 1);
    assert_true(exists("app.json"));
    assert_false(exists("app.env"));      /* the format is no longer configured */
    assert_false(exists("old.json"));     /* the credential is no longer configured */
    assert_true(exists("notours.json"));  /* not a credential file: not ours to remove */
    assert_true(exists("notes.txt"));
    credfile_clear(&app);
    credfile_clear(&old);
    runtime_close(rt);
}

static void test_lost_and_reopened(void **state) {
    struct runtime *rt = open_ok(), *second = NULL;
    char err[512], moved[300];

    (void)state;
    assert_false(runtime_lost(rt));
    snprintf(moved, sizeof moved, "%s/moved", base);
    assert_int_equal(rename(dir, moved), 0);
    assert_true(runtime_lost(rt));
    assert_int_equal(runtime_reopen(rt, err, sizeof err), 0);
    assert_false(runtime_lost(rt));
    assert_true(exists(".lock"));
    assert_int_equal(runtime_open(dir, &second, err, sizeof err), -EBUSY);   /* locked again */
    runtime_close(rt);
}

static void test_dir_mode_and_groups(void **state) {
    struct runtime *rt = open_ok();
    char err[256];
    gid_t g = 1;

    (void)state;
    assert_int_equal(runtime_set_dir_mode(rt, (gid_t)-1, true), 0);
    assert_int_equal(mode_of("."), 0755);
    assert_int_equal(runtime_set_dir_mode(rt, (gid_t)-1, false), 0);
    assert_int_equal(mode_of("."), 0750);
    runtime_close(rt);

    assert_int_equal(runtime_resolve_group("", &g, err, sizeof err), 0);
    assert_int_equal(g, (gid_t)-1);
    assert_int_equal(runtime_resolve_group("root", &g, err, sizeof err), 0);
    assert_int_equal(g, 0);
    assert_int_equal(runtime_resolve_group("rc-no-such-group", &g, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "rc-no-such-group"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_refuses_and_locks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_a_directory_owned_by_another_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_removes_stale_temporary_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_adopt_and_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_removes_only_what_is_ours_and_unwanted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_and_reopened, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_mode_and_groups, setup, teardown),
    };
    log_open("test-runtime", LOG_TARGET_STDERR);
    log_set_level(LOG_WARNING);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
