/* secretfile: bootstrap secrets read from files (or $CREDENTIALS_DIRECTORY) with the
 * checks that refuse a file others could read or swap, and the ownership checks of files
 * the agent obeys (secretfile_check_trusted). Files are made in a fresh directory; the
 * owner checks chown them, so those tests need root and skip otherwise. No error text may
 * quote a file's content. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "secret.h"
#include "secretfile.h"

#define CONTENT "s3cr3t-Content"

static char dir[200];

static int setup(void **state) {
    const char *base = getenv("REDIS_CREDS_TEST_TMP");

    (void)state;
    snprintf(dir, sizeof dir, "%s/rc-secretfile-XXXXXX", base ? base : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int teardown(void **state) {
    (void)state;
    return nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* dir/name with data and mode; returns the path (static buffer). */
static const char *put(const char *name, const char *data, size_t len, mode_t mode) {
    static char p[300];
    int fd;

    snprintf(p, sizeof p, "%s/%s", dir, name);
    (void)unlink(p);
    fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(p, mode), 0);
    return p;
}

static int read_it(const char *path, const char *name, struct secret **s, char *err, size_t n) {
    *s = NULL;
    err[0] = '\0';
    int r = secretfile_read(path, name, s, err, n);
    assert_null(strstr(err, CONTENT));
    return r;
}

static void test_one_trailing_newline_is_dropped(void **state) {
    struct secret *s;
    char err[256];

    (void)state;
    assert_int_equal(read_it(put("a", CONTENT "\n", sizeof CONTENT, 0600), NULL, &s, err, sizeof err), 0);
    assert_string_equal(secret_data(s), CONTENT);
    secret_free(s);
    assert_int_equal(read_it(put("b", CONTENT "\r\n", sizeof CONTENT + 1, 0400), NULL, &s, err, sizeof err), 0);
    assert_string_equal(secret_data(s), CONTENT);
    secret_free(s);
    assert_int_equal(read_it(put("c", CONTENT "\n\n", sizeof CONTENT + 1, 0600), NULL, &s, err, sizeof err), 0);
    assert_int_equal(secret_len(s), sizeof CONTENT);   /* only one newline goes */
    secret_free(s);
}

static void test_refusals_say_why(void **state) {
    struct secret *s;
    char err[512], link[300];
    const char *p;

    (void)state;
    p = put("open", CONTENT, strlen(CONTENT), 0640);
    assert_int_equal(read_it(p, NULL, &s, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "mode 0640"));
    assert_null(s);
    assert_int_equal(secretfile_check(p, err, sizeof err), -EPERM);

    p = put("target", CONTENT, strlen(CONTENT), 0600);
    snprintf(link, sizeof link, "%s/link", dir);
    assert_int_equal(symlink(p, link), 0);
    assert_int_equal(read_it(link, NULL, &s, err, sizeof err), -ELOOP);
    assert_non_null(strstr(err, "symlink"));

    assert_int_equal(read_it(dir, NULL, &s, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "not a regular file"));

    assert_int_equal(read_it(put("empty", "\n", 1, 0600), NULL, &s, err, sizeof err), -ENODATA);
    assert_non_null(strstr(err, "empty"));

    char *big = malloc(SECRETFILE_MAX + 1);
    assert_non_null(big);
    memset(big, 'x', SECRETFILE_MAX + 1);
    p = put("big", big, SECRETFILE_MAX + 1, 0600);
    free(big);
    assert_int_equal(read_it(p, NULL, &s, err, sizeof err), -EFBIG);
    assert_int_equal(secretfile_check(p, err, sizeof err), -EFBIG);
    assert_int_equal(secretfile_check(put("ok", "x", 1, 0600), err, sizeof err), 0);
}

static void test_credentials_directory_fallback(void **state) {
    struct secret *s;
    char err[256];

    (void)state;
    put("vault-token", CONTENT, strlen(CONTENT), 0600);
    assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);
    assert_int_equal(read_it(NULL, "vault-token", &s, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "$CREDENTIALS_DIRECTORY is not set"));
    assert_int_equal(setenv("CREDENTIALS_DIRECTORY", dir, 1), 0);
    assert_int_equal(read_it("", "vault-token", &s, err, sizeof err), 0);
    assert_string_equal(secret_data(s), CONTENT);
    secret_free(s);
    /* a name is a file in the directory, never a path out of it */
    assert_int_equal(read_it(NULL, "../vault-token", &s, err, sizeof err), -ENOENT);
    assert_int_equal(read_it(NULL, "missing", &s, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "/missing"));
    unsetenv("CREDENTIALS_DIRECTORY");
}

static void test_trusted_file_and_directory(void **state) {
    char err[512], sub[300], prog[320];
    struct stat fake;

    (void)state;
    if (geteuid() != 0)
        skip();   /* chown to root and to another uid needs root */
    snprintf(sub, sizeof sub, "%s/bin", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(prog, sizeof prog, "%s/hook", sub);
    assert_int_equal(close(open(prog, O_WRONLY | O_CREAT | O_CLOEXEC, 0755)), 0);
    assert_int_equal(secretfile_check_trusted(prog, NULL, err, sizeof err), 0);

    assert_int_equal(chmod(prog, 0775), 0);
    assert_int_equal(secretfile_check_trusted(prog, NULL, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "writable by group or others"));
    assert_int_equal(chmod(prog, 0755), 0);

    assert_int_equal(chown(prog, 12345, 0), 0);
    assert_int_equal(secretfile_check_trusted(prog, NULL, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "owned by uid 12345"));
    assert_int_equal(chown(prog, 0, 0), 0);

    /* the stat the caller passes is what is judged (the fd it read) */
    assert_int_equal(stat(prog, &fake), 0);
    fake.st_mode |= S_IWOTH;
    assert_int_equal(secretfile_check_trusted(prog, &fake, err, sizeof err), -EPERM);

    /* the directory: not writable by others, unless root's and sticky (/tmp) */
    assert_int_equal(chmod(sub, 0777), 0);
    assert_int_equal(secretfile_check_trusted(prog, NULL, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "its directory"));
    assert_int_equal(chmod(sub, 01777), 0);
    assert_int_equal(secretfile_check_trusted(prog, NULL, err, sizeof err), 0);
    assert_int_equal(chown(sub, 12345, 0), 0);   /* sticky but not root's */
    assert_int_equal(secretfile_check_trusted(prog, NULL, err, sizeof err), -EPERM);
    assert_int_equal(chown(sub, 0, 0), 0);
    assert_int_equal(chmod(sub, 0755), 0);

    snprintf(prog, sizeof prog, "%s/none", sub);
    assert_int_equal(secretfile_check_trusted(prog, NULL, err, sizeof err), -ENOENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_trailing_newline_is_dropped),
        cmocka_unit_test(test_refusals_say_why),
        cmocka_unit_test(test_credentials_directory_fallback),
        cmocka_unit_test(test_trusted_file_and_directory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
