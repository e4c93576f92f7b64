/* hooks: on_change commands run by the loop, through a real sd-event loop and real
 * children. What a hook sees (its environment, stdin), how its end is logged, that a hook
 * past its timeout is killed with its process group, and that an untrusted program is
 * not run. The log goes to a datagram socket the test binds as the journal's
 * ($REDIS_CREDS_JOURNAL_SOCKET); waits are on those events, with a generous deadline. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <systemd/sd-event.h>

#include "hooks.h"
#include "log.h"

#define MS 1000ull
#define SEC (1000 * MS)

static sd_event *ev;
static char dir[200], jpath[260];
static int jsock = -1;
static char logged[1 << 16];   /* every event received so far, one after the other */
static size_t logged_len;

static int setup(void **state) {
    const char *base = getenv("REDIS_CREDS_TEST_TMP");
    sigset_t mask;
    (void)state;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);   /* sd-event's child sources need it blocked */
    sigprocmask(SIG_BLOCK, &mask, NULL);
    /* Orphans of a killed hook become our children, so the test can see them die. */
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    snprintf(dir, sizeof dir, "%s/rc-hooks-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(dir) || chmod(dir, 0700) < 0)
        return -1;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(jpath, sizeof jpath, "%s/journal", dir);
    if (strlen(jpath) >= sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path, jpath, strlen(jpath) + 1);
    jsock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (jsock < 0 || bind(jsock, (struct sockaddr *)&sa, sizeof sa) < 0)
        return -1;
    setenv("REDIS_CREDS_JOURNAL_SOCKET", jpath, 1);
    log_open("test-hooks", LOG_TARGET_JOURNAL);
    log_set_level(LOG_DEBUG);
    return sd_event_new(&ev) < 0 ? -1 : 0;
}

static int teardown(void **state) {
    char p[300];

    (void)state;
    ev = sd_event_unref(ev);
    log_open("test-hooks", LOG_TARGET_STDERR);
    close(jsock);
    for (const char *const *n = (const char *const[]){ "journal", "env", "pid", "runs", "other", NULL }; *n; n++) {
        snprintf(p, sizeof p, "%s/%s", dir, *n);
        (void)unlink(p);
    }
    snprintf(p, sizeof p, "%s/open", dir);
    (void)rmdir(p);
    return rmdir(dir);
}

static bool file_has(const char *path, const char *needle) {
    static char buf[65536];
    FILE *f = fopen(path, "re");
    size_t n;

    if (!f)
        return false;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

/* Takes the events that arrived into `logged`; true when one holds `needle`. */
static bool was_logged(const char *needle) {
    ssize_t n;

    while (logged_len < sizeof logged - 1 &&
           (n = recv(jsock, logged + logged_len, sizeof logged - 1 - logged_len, 0)) > 0) {
        /* a field in the protocol's binary form has a length with NUL bytes: one string */
        for (ssize_t i = 0; i < n; i++)
            if (logged[logged_len + (size_t)i] == '\0')
                logged[logged_len + (size_t)i] = '\n';
        logged_len += (size_t)n;
        logged[logged_len] = '\0';
    }
    return strstr(logged, needle) != NULL;
}

static size_t count_logged(const char *needle) {
    size_t n = 0;
    for (const char *p = strstr(logged, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Runs the loop until `needle` was logged `count` times in all, for 10 s at most. */
static bool run_until_count(const char *needle, size_t count) {
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        (void)was_logged(needle);
        if (count_logged(needle) >= count)
            return true;
        assert_true(sd_event_run(ev, 50 * MS) >= 0);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < 10);
    (void)was_logged(needle);
    return count_logged(needle) >= count;
}

/* Runs the loop until an event holds `needle`, for 10 s at most. */
static bool run_until_logged(const char *needle) {
    return run_until_count(needle, 1);
}

static void test_hook_sees_its_environment(void **state) {
    char script[600], env_file[260];

    (void)state;
    snprintf(env_file, sizeof env_file, "%s/env", dir);
    /* stdin must be /dev/null: reading it ends at once */
    snprintf(script, sizeof script, "{ env; cat; echo stdin-done; } > %s.tmp && mv %s.tmp %s",
             env_file, env_file, env_file);
    char *argv[] = { "/bin/sh", "-c", script, NULL };
    setenv("REDIS_CREDS_STALE", "from-the-agent", 1);
    setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
    setenv("IDENTITY_HEADER", "azure-mi-shared-secret", 1);   /* the azure plugin's secret */
    assert_int_equal(hooks_run(ev, argv, 10 * SEC, "app-env", "v7", "/run/redis-creds/app-env.json"), 0);
    assert_true(run_until_logged("on_change /bin/sh exited 0"));
    assert_true(file_has(env_file, "REDIS_CREDS_NAME=app-env\n"));
    assert_true(file_has(env_file, "REDIS_CREDS_VERSION=v7\n"));
    assert_true(file_has(env_file, "REDIS_CREDS_FILE=/run/redis-creds/app-env.json\n"));
    assert_true(file_has(env_file, "\nstdin-done\n") || file_has(env_file, "stdin-done"));
    /* the agent's own REDIS_CREDS_* and systemd's notify socket are not passed on */
    assert_false(file_has(env_file, "REDIS_CREDS_STALE"));
    assert_false(file_has(env_file, "NOTIFY_SOCKET"));
    assert_false(file_has(env_file, "azure-mi-shared-secret"));
    unsetenv("IDENTITY_HEADER");
    unsetenv("REDIS_CREDS_STALE");
    unsetenv("NOTIFY_SOCKET");
}

/* The agent ignores SIGPIPE (main.c); a hook starts with every signal at its default, or
 * `producer | head -1` in a hook script would leave its producer running. The hook sends
 * itself SIGPIPE: at the default it dies of it, ignored it would exit 0. */
static void test_hook_starts_with_default_signal_dispositions(void **state) {
    char *argv[] = { "/bin/sh", "-c", "kill -PIPE $$; exit 0", NULL };
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);

    (void)state;
    assert_int_equal(hooks_run(ev, argv, 10 * SEC, "app-sig", "v1", "/f"), 0);
    signal(SIGPIPE, old);
    assert_true(run_until_logged("on_change /bin/sh killed by signal 13"));
}

static void test_failing_hook_is_logged(void **state) {
    char *argv[] = { "/bin/sh", "-c", "exit 3", NULL };

    (void)state;
    assert_int_equal(hooks_run(ev, argv, 10 * SEC, "app-fail", "v1", "/f"), 0);
    assert_true(run_until_logged("on_change /bin/sh exited with status 3"));
}

static void test_hook_past_timeout_is_killed_with_its_group(void **state) {
    char script[400], pidfile[260], buf[32] = "";
    pid_t bg = 0;
    int status;

    (void)state;
    snprintf(pidfile, sizeof pidfile, "%s/pid", dir);
    /* a child in the hook's group that would outlive it, then the hook hangs */
    snprintf(script, sizeof script, "sleep 60 & echo $! > %s.tmp && mv %s.tmp %s; exec sleep 60",
             pidfile, pidfile, pidfile);
    char *argv[] = { "/bin/sh", "-c", script, NULL };
    assert_int_equal(hooks_run(ev, argv, 300 * MS, "app-slow", "v2", "/f"), 0);
    assert_true(run_until_logged("still running after 300ms: killing it and its process group"));
    assert_true(run_until_logged("on_change /bin/sh killed by signal 9"));
    FILE *f = fopen(pidfile, "re");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    bg = (pid_t)strtol(buf, NULL, 10);
    assert_true(bg > 0);
    /* orphaned to us (the subreaper): it must have died of SIGKILL too */
    assert_int_equal(waitpid(bg, &status, 0), bg);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static void test_untrusted_program_is_not_run(void **state) {
    char sub[260], prog[300], marker[300];
    FILE *f;

    (void)state;
    snprintf(sub, sizeof sub, "%s/open", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(chmod(sub, 0777), 0);   /* anyone could swap the program */
    snprintf(prog, sizeof prog, "%s/hook", sub);
    snprintf(marker, sizeof marker, "%s/ran", sub);
    f = fopen(prog, "we");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\ntouch %s\n", marker);
    fclose(f);
    assert_int_equal(chmod(prog, 0755), 0);
    char *argv[] = { prog, NULL };
    assert_int_equal(hooks_run(ev, argv, 10 * SEC, "app-untrusted", "v3", "/f"), -EPERM);
    assert_true(was_logged("not run: its directory"));
    assert_int_equal(access(marker, F_OK), -1);
    (void)unlink(prog);

    /* a program that is not there */
    snprintf(prog, sizeof prog, "%s/missing", dir);
    argv[0] = prog;
    assert_true(hooks_run(ev, argv, 10 * SEC, "app-missing", "v3", "/f") < 0);
}

/* A hook slower than the publishes: one process at a time per credential, and the last
 * version asked for always runs (v2 is overtaken by v3 while v1 runs). Another credential's
 * hook is not held back. */
static void test_one_hook_at_a_time_per_credential_newest_last(void **state) {
    char script[600], out[260], other[260];

    (void)state;
    snprintf(out, sizeof out, "%s/runs", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    snprintf(script, sizeof script,
             "echo start $REDIS_CREDS_VERSION >> %s; sleep 0.3; echo end $REDIS_CREDS_VERSION >> %s",
             out, out);
    char *argv[] = { "/bin/sh", "-c", script, NULL };
    (void)was_logged("");
    size_t before = count_logged("on_change /bin/sh exited 0");
    assert_int_equal(hooks_run(ev, argv, 10 * SEC, "app-slowhook", "v1", "/f"), 0);
    script[0] = '\0';   /* the queued run holds its own copy of the arguments */
    snprintf(script, sizeof script,
             "echo start $REDIS_CREDS_VERSION >> %s; sleep 0.3; echo end $REDIS_CREDS_VERSION >> %s",
             out, out);
    assert_int_equal(hooks_run(ev, argv, 10 * SEC, "app-slowhook", "v2", "/f"), 0);
    assert_int_equal(hooks_run(ev, argv, 10 * SEC, "app-slowhook", "v3", "/f"), 0);
    char quick[300];
    snprintf(quick, sizeof quick, "echo other >> %s", other);
    char *argv2[] = { "/bin/sh", "-c", quick, NULL };
    assert_int_equal(hooks_run(ev, argv2, 10 * SEC, "app-otherhook", "v1", "/f"), 0);
    /* two runs of app-slowhook and one of app-otherhook exit 0 */
    assert_true(run_until_count("on_change /bin/sh exited 0", before + 3));
    assert_true(file_has(other, "other\n"));
    assert_true(file_has(out, "start v1\nend v1\nstart v3\nend v3\n"));
    assert_false(file_has(out, "v2"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hook_sees_its_environment),
        cmocka_unit_test(test_hook_starts_with_default_signal_dispositions),
        cmocka_unit_test(test_failing_hook_is_logged),
        cmocka_unit_test(test_hook_past_timeout_is_killed_with_its_group),
        cmocka_unit_test(test_untrusted_program_is_not_run),
        cmocka_unit_test(test_one_hook_at_a_time_per_credential_newest_last),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
