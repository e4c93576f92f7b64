/* Unit tests of agent/rotate.c: the phase record, passwords, the resume decision. (The ACL
 * commands run against a real redis-server in tests/integration/test_rotation.py.) */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "rotate.h"

static void test_phase_names(void **st) {
    assert_string_equal(rotate_phase_to_string(ROTATE_IDLE), "idle");
    assert_string_equal(rotate_phase_to_string(ROTATE_CLAIMED), "claimed");
    assert_string_equal(rotate_phase_to_string(ROTATE_ADDED), "added");
    assert_string_equal(rotate_phase_to_string(ROTATE_PUBLISHED), "published");
    assert_string_equal(rotate_phase_to_string((enum rotate_phase)42), "?");
}

static void test_record_round_trips(void **st) {
    struct rotate_state in = { .phase = ROTATE_PUBLISHED, .started_at = 1700000000,
                               .grace_until = 1700000600, .last_completed = 1690000000,
                               .baseline = 1680000000 }, out;
    char buf[ROTATE_STATE_MAX];
    snprintf(in.old_version, sizeof in.old_version, "h-0123456789abcdef");
    snprintf(in.new_version, sizeof in.new_version, "7");
    int n = rotate_state_format(&in, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(buf[n - 1], '\n');
    assert_int_equal(rotate_state_parse(buf, (size_t)n, &out), 0);
    assert_memory_equal(&in, &out, sizeof in);
    /* too small a buffer is an error, not a cut record */
    assert_int_equal(rotate_state_format(&in, buf, 20), -ENOBUFS);
}

static void test_record_parse_refuses_what_it_does_not_understand(void **st) {
    struct rotate_state out;
    static const char *bad[] = {
        "", "[]", "{}", "{\"phase\":\"dancing\"}", "{\"phase\":3}",
        "{\"phase\":\"claimed\"}",                                   /* no versions */
        "{\"phase\":\"claimed\",\"old_version\":\"1\",\"new_version\":\"\"}",
        "{\"phase\":\"idle\",\"last_completed\":-5}",
        "{\"phase\":\"idle\",\"last_completed\":\"yesterday\"}",
        "{\"phase\":\"idle\",\"phase\":\"idle\"}",                   /* duplicate */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(rotate_state_parse(bad[i], strlen(bad[i]), &out), -EINVAL);
    const char *ok = "{\"phase\":\"idle\",\"future_key\":1}";
    assert_int_equal(rotate_state_parse(ok, strlen(ok), &out), 0);
    assert_int_equal(out.phase, ROTATE_IDLE);
    assert_int_equal(out.last_completed, 0);
}

static void test_record_file_is_0600_and_loads_back(void **st) {
    const char *tmp = getenv("REDIS_CREDS_TEST_TMP");
    char dir[256], path[400], err[512], cmd[600];
    struct rotate_state in = { .phase = ROTATE_CLAIMED, .started_at = 5 }, out;
    struct stat sb;
    snprintf(dir, sizeof dir, "%s/rotate-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(in.old_version, sizeof in.old_version, "a");
    snprintf(in.new_version, sizeof in.new_version, "b");

    assert_int_equal(rotate_state_load(dir, "cache", &out, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "rotation-cache.json"));
    assert_int_equal(rotate_state_save(dir, "cache", &in, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/rotation-cache.json", dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    assert_int_equal(rotate_state_load(dir, "cache", &out, err, sizeof err), 0);
    assert_memory_equal(&in, &out, sizeof in);

    /* a damaged record is reported by name, not taken for a phase */
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"phase\":", 9), 9);
    close(fd);
    assert_int_equal(rotate_state_load(dir, "cache", &out, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "rotation-cache.json"));

    assert_int_equal(rotate_state_save("/nonexistent-dir", "cache", &in, err, sizeof err), -ENOENT);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_next_due_counts_from_last_rotation_else_baseline(void **st) {
    struct rotate_state s = { .baseline = 1000 };
    assert_int_equal(rotate_next_due(&s, 30 * 1000000ULL), 1030);
    s.last_completed = 2000;
    assert_int_equal(rotate_next_due(&s, 30 * 1000000ULL), 2030);
}

static void test_passwords_have_the_length_and_alphabet_and_differ(void **st) {
    const char *alpha = "0123456789abcdef";
    struct secret *a = NULL, *b = NULL;
    unsigned counts[16] = { 0 };
    assert_int_equal(rotate_generate_password(alpha, 64, &a), 0);
    assert_int_equal(rotate_generate_password(alpha, 64, &b), 0);
    assert_int_equal(secret_len(a), 64);
    assert_int_equal(strlen(secret_data(a)), 64);
    for (size_t i = 0; i < 64; i++)
        assert_non_null(strchr(alpha, secret_data(a)[i]));
    assert_false(secret_equal(a, b));
    secret_free(a);
    secret_free(b);
    /* every character of the alphabet turns up: 16 * 400 draws */
    for (int k = 0; k < 100; k++) {
        assert_int_equal(rotate_generate_password(alpha, 64, &a), 0);
        for (size_t i = 0; i < 64; i++)
            counts[strchr(alpha, secret_data(a)[i]) - alpha]++;
        a = secret_free(a);
    }
    for (int i = 0; i < 16; i++)
        assert_true(counts[i] > 250 && counts[i] < 550);   /* 400 expected */
    assert_int_equal(rotate_generate_password("x", 10, &a), -EINVAL);
    assert_int_equal(rotate_generate_password(alpha, 0, &a), -EINVAL);
}

static void test_resume_decision(void **st) {
    struct rotate_state s = { .phase = ROTATE_IDLE };
    snprintf(s.old_version, sizeof s.old_version, "old");
    snprintf(s.new_version, sizeof s.new_version, "new");
    assert_int_equal(rotate_resume_decide(&s, "old", NULL), ROTATE_RESUME_NONE);
    for (int ph = ROTATE_CLAIMED; ph <= ROTATE_ADDED; ph++) {
        s.phase = (enum rotate_phase)ph;
        /* not published yet: add the store's new password, then publish */
        assert_int_equal(rotate_resume_decide(&s, "old", NULL), ROTATE_RESUME_ADD);
        assert_int_equal(rotate_resume_decide(&s, "old", "older"), ROTATE_RESUME_ADD);
        /* published before the record said so: only the removal is left */
        assert_int_equal(rotate_resume_decide(&s, "new", "old"), ROTATE_RESUME_REMOVE);
        /* something else is published: nothing to finish */
        assert_int_equal(rotate_resume_decide(&s, "other", "old"), ROTATE_RESUME_ABANDON);
        assert_int_equal(rotate_resume_decide(&s, NULL, NULL), ROTATE_RESUME_ABANDON);
    }
    s.phase = ROTATE_PUBLISHED;
    assert_int_equal(rotate_resume_decide(&s, "new", "old"), ROTATE_RESUME_REMOVE);
    /* the old password is no longer `previous`: it cannot be named to Redis any more */
    assert_int_equal(rotate_resume_decide(&s, "new", NULL), ROTATE_RESUME_ABANDON);
    assert_int_equal(rotate_resume_decide(&s, "newer", "new"), ROTATE_RESUME_ABANDON);
}

int main(void) {
    secret_init(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_phase_names),
        cmocka_unit_test(test_record_round_trips),
        cmocka_unit_test(test_record_parse_refuses_what_it_does_not_understand),
        cmocka_unit_test(test_record_file_is_0600_and_loads_back),
        cmocka_unit_test(test_next_due_counts_from_last_rotation_else_baseline),
        cmocka_unit_test(test_passwords_have_the_length_and_alphabet_and_differ),
        cmocka_unit_test(test_resume_decision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
