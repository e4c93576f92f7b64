/* Unit tests for common/hostkey.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "hostkey.h"
#include "secret.h"

struct tdir {
    char base[512];    /* created by the test setup */
    char state[600];   /* base/state: not created, hostkey must create it */
};

static int tdir_setup(void **state) {
    struct tdir *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    const char *b = secure_getenv("REDIS_CREDS_TEST_TMP");
    if (!b || !*b)
        b = "/tmp";
    snprintf(t->base, sizeof(t->base), "%s/test_hostkey.XXXXXX", b);
    if (!mkdtemp(t->base)) {
        free(t);
        return -1;
    }
    snprintf(t->state, sizeof(t->state), "%s/state", t->base);
    *state = t;
    return 0;
}

static void rm_tree_level(const char *path) {
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[1024];
        snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
        if (unlink(p) < 0) {
            rm_tree_level(p);
            rmdir(p);
        }
    }
    closedir(d);
}

static int tdir_teardown(void **state) {
    struct tdir *t = *state;
    rm_tree_level(t->base);
    rmdir(t->base);
    free(t);
    return 0;
}

static void key_path(const struct tdir *t, char *buf, size_t size) {
    snprintf(buf, size, "%s/host.key", t->state);
}

static void test_key_created_once_with_safe_modes_and_reused(void **state) {
    struct tdir *t = *state;
    struct secret *k1 = NULL, *k2 = NULL;
    char err[512] = "";
    int r = hostkey_load_or_create(t->state, &k1, err, sizeof(err));
    if (r != 0)
        fail_msg("hostkey_load_or_create: %s", err);
    assert_non_null(k1);
    assert_int_equal(secret_len(k1), HOSTKEY_LEN);

    struct stat st;
    assert_int_equal(stat(t->state, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    char kp[700];
    key_path(t, kp, sizeof(kp));
    assert_int_equal(lstat(kp, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, HOSTKEY_LEN);

    assert_int_equal(hostkey_load_or_create(t->state, &k2, err, sizeof(err)), 0);
    assert_true(secret_equal(k1, k2));

    /* No temporary files left behind. */
    DIR *d = opendir(t->state);
    assert_non_null(d);
    struct dirent *de;
    int entries = 0;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            entries++;
    closedir(d);
    assert_int_equal(entries, 1);

    /* Same content, same version, across loads. */
    char v1[HOSTKEY_VERSION_LEN], v2[HOSTKEY_VERSION_LEN];
    assert_int_equal(hostkey_version(k1, "content", 7, v1), 0);
    assert_int_equal(hostkey_version(k2, "content", 7, v2), 0);
    assert_string_equal(v1, v2);
    secret_free(k1);
    secret_free(k2);
}

static void test_version_format_and_known_vector(void **state) {
    /* RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?") =
     * 5bdcc146bf60754e6a042426089575c7... */
    struct secret *k = secret_new_str("Jefe");
    char v[HOSTKEY_VERSION_LEN];
    memset(v, 'X', sizeof(v));
    const char *msg = "what do ya want for nothing?";
    assert_int_equal(hostkey_version(k, msg, strlen(msg), v), 0);
    assert_string_equal(v, "h-5bdcc146bf60754e");
    assert_int_equal(strlen(v), HOSTKEY_VERSION_LEN - 1);
    /* Empty content is fine. */
    assert_int_equal(hostkey_version(k, NULL, 0, v), 0);
    assert_int_equal(strncmp(v, "h-", 2), 0);
    for (size_t i = 2; i < strlen(v); i++)
        assert_non_null(strchr("0123456789abcdef", v[i]));
    assert_int_equal(hostkey_version(NULL, "x", 1, v), -EIO);
    secret_free(k);
}

static void test_different_content_or_key_gives_different_version(void **state) {
    struct tdir *t = *state;
    struct secret *k = NULL;
    char err[512];
    assert_int_equal(hostkey_load_or_create(t->state, &k, err, sizeof(err)), 0);
    char va[HOSTKEY_VERSION_LEN], vb[HOSTKEY_VERSION_LEN], vc[HOSTKEY_VERSION_LEN];
    assert_int_equal(hostkey_version(k, "password-a", 10, va), 0);
    assert_int_equal(hostkey_version(k, "password-b", 10, vb), 0);
    assert_string_not_equal(va, vb);

    /* Another host (another state_dir) has another key, so another version. */
    char other[700];
    snprintf(other, sizeof(other), "%s/other", t->base);
    struct secret *k2 = NULL;
    assert_int_equal(hostkey_load_or_create(other, &k2, err, sizeof(err)), 0);
    assert_false(secret_equal(k, k2));
    assert_int_equal(hostkey_version(k2, "password-a", 10, vc), 0);
    assert_string_not_equal(va, vc);
    secret_free(k);
    secret_free(k2);
}

static void test_version_does_not_contain_the_secret(void **state) {
    struct tdir *t = *state;
    struct secret *k = NULL;
    char err[512];
    assert_int_equal(hostkey_load_or_create(t->state, &k, err, sizeof(err)), 0);
    /* A "password" that is itself hex, the worst case for leaking by accident. */
    static const char pw[] = "0123456789abcdef0123";
    char v[HOSTKEY_VERSION_LEN];
    assert_int_equal(hostkey_version(k, pw, strlen(pw), v), 0);
    assert_null(strstr(v, "01234567"));
    /* Nor the key: its hex must not show up either. */
    char keyhex[2 * HOSTKEY_LEN + 1];
    for (size_t i = 0; i < HOSTKEY_LEN; i++)
        snprintf(keyhex + 2 * i, 3, "%02x", (unsigned char)secret_data(k)[i]);
    char first8[9];
    memcpy(first8, keyhex, 8);
    first8[8] = '\0';
    assert_null(strstr(v + 2, first8));
    secret_free(k);
}

static void test_key_readable_by_group_or_others_is_refused(void **state) {
    struct tdir *t = *state;
    struct secret *k = NULL;
    char err[512] = "";
    assert_int_equal(hostkey_load_or_create(t->state, &k, err, sizeof(err)), 0);
    k = secret_free(k);
    char kp[700];
    key_path(t, kp, sizeof(kp));

    assert_int_equal(chmod(kp, 0640), 0);
    assert_int_equal(hostkey_load_or_create(t->state, &k, err, sizeof(err)), -EPERM);
    assert_null(k);
    assert_non_null(strstr(err, "group or others"));
    assert_non_null(strstr(err, "host.key"));

    assert_int_equal(chmod(kp, 0604), 0);
    assert_int_equal(hostkey_load_or_create(t->state, &k, err, sizeof(err)), -EPERM);

    /* The refused file was left alone. */
    struct stat st;
    assert_int_equal(stat(kp, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0604);
}

static void test_key_of_wrong_size_is_refused(void **state) {
    struct tdir *t = *state;
    assert_int_equal(mkdir(t->state, 0700), 0);
    char kp[700];
    key_path(t, kp, sizeof(kp));
    int fd = open(kp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "short", 5), 5);
    close(fd);
    struct secret *k = NULL;
    char err[512] = "";
    assert_int_equal(hostkey_load_or_create(t->state, &k, err, sizeof(err)), -EINVAL);
    assert_null(k);
    assert_non_null(strstr(err, "expected 32"));

    /* Empty file too (a crash can leave one only if someone else made it). */
    assert_int_equal(truncate(kp, 0), 0);
    assert_int_equal(hostkey_load_or_create(t->state, &k, err, sizeof(err)), -EINVAL);
}

static void test_symlinked_key_is_refused(void **state) {
    struct tdir *t = *state;
    assert_int_equal(mkdir(t->state, 0700), 0);
    char target[700], kp[700];
    snprintf(target, sizeof(target), "%s/elsewhere", t->base);
    int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    unsigned char zeros[HOSTKEY_LEN] = { 0 };
    assert_int_equal(write(fd, zeros, sizeof(zeros)), (ssize_t)sizeof(zeros));
    close(fd);
    key_path(t, kp, sizeof(kp));
    assert_int_equal(symlink(target, kp), 0);
    struct secret *k = NULL;
    char err[512] = "";
    assert_int_equal(hostkey_load_or_create(t->state, &k, err, sizeof(err)), -ELOOP);
    assert_non_null(strstr(err, "symbolic link"));
}

static void test_state_dir_that_is_a_file_is_an_error(void **state) {
    struct tdir *t = *state;
    int fd = open(t->state, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    struct secret *k = NULL;
    char err[512] = "";
    assert_int_equal(hostkey_load_or_create(t->state, &k, err, sizeof(err)), -ENOTDIR);
    assert_non_null(strstr(err, t->state));
    assert_int_equal(hostkey_load_or_create("", &k, err, sizeof(err)), -EINVAL);
}

static void test_racing_creators_agree_on_one_key(void **state) {
    struct tdir *t = *state;
    enum { N = 8 };
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            struct secret *k = NULL;
            char err[512];
            if (hostkey_load_or_create(t->state, &k, err, sizeof(err)) != 0)
                _exit(1);
            /* 32 bytes < PIPE_BUF: one atomic write per child. */
            if (write(p[1], secret_data(k), HOSTKEY_LEN) != HOSTKEY_LEN)
                _exit(2);
            secret_free(k);
            _exit(0);
        }
    }
    close(p[1]);
    for (int i = 0; i < N; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    struct secret *mine = NULL;
    char err[512];
    assert_int_equal(hostkey_load_or_create(t->state, &mine, err, sizeof(err)), 0);
    for (int i = 0; i < N; i++) {
        unsigned char got[HOSTKEY_LEN];
        assert_int_equal(read(p[0], got, sizeof(got)), (ssize_t)sizeof(got));
        assert_memory_equal(got, secret_data(mine), HOSTKEY_LEN);
    }
    close(p[0]);
    secret_free(mine);
}

static int group_setup(void **state) {
    return secret_init(0) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_key_created_once_with_safe_modes_and_reused,
                                        tdir_setup, tdir_teardown),
        cmocka_unit_test(test_version_format_and_known_vector),
        cmocka_unit_test_setup_teardown(test_different_content_or_key_gives_different_version,
                                        tdir_setup, tdir_teardown),
        cmocka_unit_test_setup_teardown(test_version_does_not_contain_the_secret, tdir_setup,
                                        tdir_teardown),
        cmocka_unit_test_setup_teardown(test_key_readable_by_group_or_others_is_refused,
                                        tdir_setup, tdir_teardown),
        cmocka_unit_test_setup_teardown(test_key_of_wrong_size_is_refused, tdir_setup,
                                        tdir_teardown),
        cmocka_unit_test_setup_teardown(test_symlinked_key_is_refused, tdir_setup,
                                        tdir_teardown),
        cmocka_unit_test_setup_teardown(test_state_dir_that_is_a_file_is_an_error, tdir_setup,
                                        tdir_teardown),
        cmocka_unit_test_setup_teardown(test_racing_creators_agree_on_one_key, tdir_setup,
                                        tdir_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
