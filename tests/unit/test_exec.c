/* Unit tests for agent/exec.c: signal names and the program's environment. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "exec.h"

static void test_parse_signal_accepts_names_and_numbers(void **state) {
    assert_int_equal(exec_parse_signal("SIGHUP"), SIGHUP);
    assert_int_equal(exec_parse_signal("HUP"), SIGHUP);
    assert_int_equal(exec_parse_signal("SIGUSR2"), SIGUSR2);
    assert_int_equal(exec_parse_signal("WINCH"), SIGWINCH);
    assert_int_equal(exec_parse_signal("10"), 10);
}

static void test_parse_signal_refuses_unknown_and_out_of_range(void **state) {
    const char *bad[] = { "", "SIG", "SIGNOPE", "hup", "0", "-1", "1x", "65", "99999999999" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(exec_parse_signal(bad[i]), -EINVAL);
    assert_int_equal(exec_parse_signal(NULL), -EINVAL);
}

static size_t env_count(char **env) {
    size_t n = 0;
    while (env[n])
        n++;
    return n;
}

static const char *env_find(char **env, const char *key) {
    size_t klen = strlen(key);
    const char *found = NULL;
    for (size_t i = 0; env[i]; i++)
        if (strncmp(env[i], key, klen) == 0 && env[i][klen] == '=') {
            assert_null(found);   /* each variable once */
            found = env[i] + klen + 1;
        }
    return found;
}

static void test_build_env_replaces_our_variables_and_keeps_the_rest(void **state) {
    char *in[] = { "PATH=/bin", "REDIS_PASSWORD=stale", "REDIS_USERNAME=old", "REDIS_PASSWORDS=keep",
                   "REDIS_CREDS_FILE=/old", "NOTIFY_SOCKET=/run/notify", NULL };
    char **env = exec_build_env(in, "REDIS_", "app", "s3cret-xyz", 6, "/run/redis-creds/cache.json");
    assert_non_null(env);
    assert_int_equal(env_count(env), 6);
    assert_string_equal(env_find(env, "PATH"), "/bin");
    assert_string_equal(env_find(env, "NOTIFY_SOCKET"), "/run/notify");
    assert_string_equal(env_find(env, "REDIS_PASSWORDS"), "keep");
    assert_string_equal(env_find(env, "REDIS_USERNAME"), "app");
    assert_string_equal(env_find(env, "REDIS_PASSWORD"), "s3cret");   /* password_len bytes */
    assert_string_equal(env_find(env, "REDIS_CREDS_FILE"), "/run/redis-creds/cache.json");
    assert_null(exec_env_free(env));
}

static void test_build_env_prefix_and_default_user(void **state) {
    char *in[] = { "REDIS_PASSWORD=untouched", NULL };
    char **env = exec_build_env(in, "APP_", NULL, "pw", 2, "f.json");
    assert_non_null(env);
    assert_string_equal(env_find(env, "REDIS_PASSWORD"), "untouched");
    assert_string_equal(env_find(env, "APP_USERNAME"), "");   /* the default user */
    assert_string_equal(env_find(env, "APP_PASSWORD"), "pw");
    assert_string_equal(env_find(env, "REDIS_CREDS_FILE"), "f.json");
    assert_null(exec_env_free(env));
    env = exec_build_env(NULL, "", "u", "p", 1, "f");
    assert_non_null(env);
    assert_int_equal(env_count(env), 3);
    assert_string_equal(env_find(env, "USERNAME"), "u");
    exec_env_free(env);
    assert_null(exec_env_free(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_signal_accepts_names_and_numbers),
        cmocka_unit_test(test_parse_signal_refuses_unknown_and_out_of_range),
        cmocka_unit_test(test_build_env_replaces_our_variables_and_keeps_the_rest),
        cmocka_unit_test(test_build_env_prefix_and_default_user),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
