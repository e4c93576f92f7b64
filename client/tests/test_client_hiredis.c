/* Tests of the hiredis helper (redis_creds_hiredis.h) against a real redis-server that the
 * test starts on a free loopback port: current, previous, the re-read after both are
 * refused, everything refused, re-AUTH on change, expiry, the default user. Skipped
 * when redis-server is missing. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "client_test_util.h"
#include "redis_creds_hiredis.h"

#define REDIS_SERVER "/usr/bin/redis-server"

static pid_t server_pid;
static int port;
static char *server_dir;

static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(s, (struct sockaddr *)&a, &n) < 0)
        return -1;
    close(s);
    return ntohs(a.sin_port);
}

static redisContext *connect_redis(void) {
    struct timeval tv = {2, 0};
    return redisConnectWithTimeout("127.0.0.1", port, tv);
}

/* Runs a command as the default user (no password: the admin of this test). */
static void admin(const char *fmt, ...) {
    redisContext *c = connect_redis();
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
}

/* Starts redis-server on a port the kernel gave; if that port was taken meanwhile (e.g.
 * as the source port of another test's connection) the server exits: try another. */
static int spawn_server(void) {
    char portbuf[16];
    port = free_port();
    snprintf(portbuf, sizeof portbuf, "%d", port);
    server_pid = fork();
    if (server_pid == 0) {
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(REDIS_SERVER, REDIS_SERVER, "--port", portbuf, "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--dir", server_dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
            server_pid = 0;
            return -1;
        }
        redisContext *c = connect_redis();
        bool up = c && !c->err;
        redisFree(c);
        if (up)
            return 0;
        tu_sleep_ms(10);
    }
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
    server_pid = 0;
    return -1;
}

static int start_server(void **state) {
    (void)state;
    if (access(REDIS_SERVER, X_OK) != 0)
        return 0; /* the tests skip */
    server_dir = tu_mkdtemp();
    for (int attempt = 0; attempt < 3; attempt++)
        if (spawn_server() == 0)
            return 0;
    return -1;
}

static int stop_server(void **state) {
    (void)state;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    if (server_dir) {
        tu_rm_rf(server_dir);
        free(server_dir);
    }
    return 0;
}

struct fx {
    char *dir;
    rc_handle *h;
    redisContext *c;
};

static int setup(void **state) {
    if (server_pid <= 0)
        return 0;
    struct fx *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp();
    *state = f;
    admin("ACL SETUSER app reset on >%s ~* &* +@all", "unused-initial");
    return 0;
}

static int teardown(void **state) {
    struct fx *f = *state;
    if (!f)
        return 0;
    redisFree(f->c);
    rc_close(f->h);
    tu_rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

#define SKIP_WITHOUT_SERVER()                                   \
    do {                                                        \
        if (server_pid <= 0) {                                  \
            print_message("redis-server not found: skipped\n"); \
            skip();                                             \
        }                                                       \
    } while (0)

/* Redis accepts exactly the passwords of these rotations for user app. */
static void redis_accepts(const unsigned *rot, int n) {
    char cmd[4096];
    int k = snprintf(cmd, sizeof cmd, "ACL SETUSER app resetpass");
    for (int i = 0; i < n; i++) {
        char pw[256];
        tu_password(pw, sizeof pw, rot[i]);
        k += snprintf(cmd + k, sizeof cmd - (size_t)k, " >%s", pw);
    }
    admin(cmd);
}

static const char *whoami(redisContext *c) {
    static char buf[64];
    redisReply *r = redisCommand(c, "ACL WHOAMI");
    snprintf(buf, sizeof buf, "%s", r && r->type == REDIS_REPLY_STRING ? r->str : "?");
    freeReplyObject(r);
    return buf;
}

static void open_at(struct fx *f, unsigned rotation, unsigned flags) {
    assert_int_equal(tu_publish_n(f->dir, "cache", rotation), 0);
    assert_int_equal(rc_open_ex("cache", f->dir, flags, 0, &f->h), 0);
    f->c = connect_redis();
    assert_int_equal(f->c->err, 0);
}

static void test_auth_with_current(void **state) {
    SKIP_WITHOUT_SERVER();
    struct fx *f = *state;
    redis_accepts((unsigned[]){2}, 1);
    open_at(f, 2, 0);
    struct rc_redis_session s = {0};
    assert_int_equal(rc_redis_auth_session(f->c, f->h, &s), 0);
    assert_string_equal(whoami(f->c), "app");
    assert_int_equal(s.used_previous, 0);
    assert_int_equal(s.generation, 1);
}

static void test_falls_back_to_previous(void **state) {
    SKIP_WITHOUT_SERVER();
    struct fx *f = *state;
    redis_accepts((unsigned[]){2}, 1); /* the server does not know rotation 3 yet */
    open_at(f, 3, 0);
    struct rc_redis_session s = {0};
    assert_int_equal(rc_redis_auth_session(f->c, f->h, &s), 0);
    assert_string_equal(whoami(f->c), "app");
    assert_int_equal(s.used_previous, 1);
    assert_int_equal(rc_redis_auth(f->c, f->h), 0);
}

/* Rotation n's file with "previous_valid_until" set to `at` (Unix seconds). */
static void publish_valid_until(const char *dir, unsigned n, time_t at) {
    char doc[2048], out[2200], stamp[32];
    tu_doc(doc, sizeof doc, "cache", n);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&at));
    const char *rest = strstr(doc, "\"name\"");
    assert_non_null(rest);
    snprintf(out, sizeof out, "%.*s\"previous_valid_until\": \"%s\",\n  %s", (int)(rest - doc),
             doc, stamp, rest);
    assert_int_equal(tu_publish(dir, "cache.json", out), 0);
}

static void test_previous_past_previous_valid_until_is_not_tried(void **state) {
    SKIP_WITHOUT_SERVER();
    struct fx *f = *state;
    redis_accepts((unsigned[]){2}, 1); /* only previous (rotation 2) would be accepted */
    open_at(f, 3, RC_OPEN_NO_THREAD);
    publish_valid_until(f->dir, 3, time(NULL) - 1);
    assert_int_equal(rc_reload(f->h), 1);
    const struct rc_creds *cr = NULL;
    assert_int_equal(rc_get(f->h, &cr), 0);
    assert_non_null(cr->previous); /* as published, but no longer to be tried */
    assert_null(rc_usable_previous(cr, (int64_t)time(NULL)));
    rc_creds_unref(cr);
    assert_int_equal(rc_redis_auth(f->c, f->h), -EKEYREJECTED);
    assert_string_equal(whoami(f->c), "default");

    publish_valid_until(f->dir, 3, time(NULL) + 3600);
    assert_int_equal(rc_reload(f->h), 1);
    struct rc_redis_session s = {0};
    assert_int_equal(rc_redis_auth_session(f->c, f->h, &s), 0);
    assert_int_equal(s.used_previous, 1);
    assert_string_equal(whoami(f->c), "app");
}

static void test_rereads_the_file_when_current_and_previous_are_refused(void **state) {
    SKIP_WITHOUT_SERVER();
    struct fx *f = *state;
    /* no library thread: the handle does not know about rotation 5 until it reads again */
    open_at(f, 2, RC_OPEN_NO_THREAD);
    assert_int_equal(tu_publish_n(f->dir, "cache", 5), 0);
    redis_accepts((unsigned[]){5}, 1);
    struct rc_redis_session s = {0};
    assert_int_equal(rc_redis_auth_session(f->c, f->h, &s), 0);
    assert_string_equal(whoami(f->c), "app");
    assert_int_equal(s.generation, 2);
    assert_int_equal(s.used_previous, 0);
}

static void test_everything_refused_is_ekeyrejected(void **state) {
    SKIP_WITHOUT_SERVER();
    struct fx *f = *state;
    redis_accepts((unsigned[]){9}, 1);
    open_at(f, 3, 0);
    assert_int_equal(rc_redis_auth(f->c, f->h), -EKEYREJECTED);
    assert_string_equal(whoami(f->c), "default"); /* still usable, as before */
    assert_string_equal(rc_strerror(-EKEYREJECTED),
                        "Redis refused the credential (current and previous)");
}

static void test_reauth_only_when_the_credential_changed(void **state) {
    SKIP_WITHOUT_SERVER();
    struct fx *f = *state;
    redis_accepts((unsigned[]){1, 2, 3}, 3);
    open_at(f, 1, 0);
    struct rc_redis_session s = {0};
    assert_int_equal(rc_redis_reauth_if_changed(f->c, f->h, &s), 1); /* first AUTH */
    assert_int_equal(rc_redis_reauth_if_changed(f->c, f->h, &s), 0);
    assert_int_equal(rc_redis_reauth_if_changed(f->c, f->h, &s), 0);
    for (unsigned n = 2; n <= 3; n++) {
        assert_int_equal(tu_publish_n(f->dir, "cache", n), 0);
        long long t0 = tu_now_ns();
        while (rc_generation(f->h) < n)
            assert_true(tu_now_ns() - t0 < 2000000000LL);
        assert_int_equal(rc_redis_reauth_if_changed(f->c, f->h, &s), 1);
        assert_int_equal(s.generation, n);
        assert_int_equal(rc_redis_reauth_if_changed(f->c, f->h, &s), 0);
    }
    /* a broken connection is reported, not hidden */
    redisContext *broken = connect_redis();
    broken->err = REDIS_ERR_IO;
    struct rc_redis_session s2 = {0};
    assert_int_equal(rc_redis_reauth_if_changed(broken, f->h, &s2), -ECONNRESET);
    redisFree(broken);
}

static void test_expired_token_with_nothing_newer_is_ekeyexpired(void **state) {
    SKIP_WITHOUT_SERVER();
    struct fx *f = *state;
    admin("ACL SETUSER app resetpass >tok-1");
    assert_int_equal(tu_publish(f->dir, "cache.json",
                                "{\"format\":1,\"username\":\"app\",\"password\":\"tok-1\","
                                "\"version\":\"1\",\"expires_at\":\"2001-01-01T00:00:00Z\"}"),
                     0);
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    f->c = connect_redis();
    struct rc_redis_session s = {0};
    assert_int_equal(rc_redis_reauth_if_changed(f->c, f->h, &s), 1);
    assert_int_equal(s.expires_at, 978307200);
    assert_int_equal(rc_redis_reauth_if_changed(f->c, f->h, &s), -EKEYEXPIRED);
}

static void test_default_user_auth_with_the_password_alone(void **state) {
    SKIP_WITHOUT_SERVER();
    struct fx *f = *state;
    assert_int_equal(tu_publish(f->dir, "cache.json",
                                "{\"format\":1,\"username\":null,\"password\":\"default-pw\","
                                "\"version\":\"1\"}"),
                     0);
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    f->c = connect_redis();
    admin("ACL SETUSER default resetpass >default-pw");
    assert_int_equal(rc_redis_auth(f->c, f->h), 0);
    redisReply *r = redisCommand(f->c, "ACL SETUSER default nopass");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
}

/* A token for user app that expires `in` seconds from now. */
static void publish_token(const char *dir, const char *pw, int in) {
    char when[32], doc[512];
    time_t t = time(NULL) + in;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(doc, sizeof doc,
             "{\"format\":1,\"username\":\"app\",\"password\":\"%s\",\"version\":\"%s\","
             "\"expires_at\":\"%s\"}",
             pw, pw, when);
    assert_int_equal(tu_publish(dir, "cache.json", doc), 0);
}

static void test_block_ms_ends_slices_before_expiry(void **state) {
    (void)state;
    struct rc_redis_session s = {0};
    assert_int_equal(rc_redis_block_ms(&s, 0), 0);          /* nothing limits it */
    assert_int_equal(rc_redis_block_ms(&s, 1500), 1500);
    s.expires_at = (int64_t)time(NULL) + 10;
    int64_t ms = rc_redis_block_ms(&s, 0);
    assert_true(ms > 10000 - RC_REDIS_BLOCK_MARGIN_MS - 1500 && ms <= 10000 - RC_REDIS_BLOCK_MARGIN_MS);
    assert_int_equal(rc_redis_block_ms(&s, 700), 700);
    s.expires_at = (int64_t)time(NULL) - 1;                 /* never 0 (forever) */
    assert_int_equal(rc_redis_block_ms(&s, 0), RC_REDIS_MIN_BLOCK_MS);
}

static void test_blocking_call_reauths_between_slices(void **state) {
    SKIP_WITHOUT_SERVER();
    struct fx *f = *state;
    admin("ACL SETUSER app resetpass >tok-a >tok-b");
    admin("DEL te:list");
    publish_token(f->dir, "tok-a", 4); /* slices of about 2 s */
    assert_int_equal(rc_open("cache", f->dir, &f->h), 0);
    f->c = connect_redis();
    struct rc_redis_session s = {0};
    const char *argv[] = {"BLPOP", "te:list"};
    size_t argvlen[] = {5, 7};
    pid_t child = fork();
    if (child == 0) { /* while the first slice blocks: a new token, then an item */
        tu_sleep_ms(1000);
        publish_token(f->dir, "tok-b", 60);
        tu_sleep_ms(3000);
        admin("RPUSH te:list item-1");
        _exit(0);
    }
    redisReply *r = NULL;
    long long t0 = tu_now_ns();
    assert_int_equal(rc_redis_blocking_argv(f->c, f->h, &s, 2, argv, argvlen, 20000, &r), 1);
    long long took_ms = (tu_now_ns() - t0) / 1000000;
    waitpid(child, NULL, 0);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_string_equal(r->element[1]->str, "item-1");
    freeReplyObject(r);
    assert_true(took_ms >= 3500);
    assert_int_equal(s.generation, 2); /* re-AUTHed with tok-b after the first slice */
    assert_string_equal(whoami(f->c), "app");
    /* nothing comes: 0 after the caller's timeout, the connection still usable */
    t0 = tu_now_ns();
    assert_int_equal(rc_redis_blocking_argv(f->c, f->h, &s, 2, argv, argvlen, 300, &r), 0);
    assert_true(tu_now_ns() - t0 >= 250000000LL);
    assert_string_equal(whoami(f->c), "app");
}

static redisContext *sub_connect(void *arg, rc_handle *h, struct rc_redis_session *s) {
    (void)arg;
    (void)h;
    (void)s;
    return connect_redis();
}

static long long connections_of_app(void) {
    redisContext *c = connect_redis();
    redisReply *r = redisCommand(c, "CLIENT LIST");
    long long n = 0;
    for (const char *p = r->str; (p = strstr(p, " user=app ")) != NULL; p++)
        n++;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

static void expect_message(struct rc_redis_subscriber *sub, const char *want) {
    redisReply *m = NULL;
    assert_int_equal(rc_redis_subscriber_next(sub, 5000, &m), 1);
    assert_string_equal(m->element[1]->str, "te:chan");
    assert_string_equal(m->element[2]->str, want);
    freeReplyObject(m);
}

static void test_subscriber_moves_to_the_new_credential_without_losing_messages(void **state) {
    SKIP_WITHOUT_SERVER();
    struct fx *f = *state;
    redis_accepts((unsigned[]){1, 2}, 2);
    open_at(f, 1, 0);
    const char *ch[] = {"te:chan"};
    struct rc_redis_subscriber *sub = NULL;
    assert_int_equal(rc_redis_subscriber_open(f->h, sub_connect, NULL, ch, 1, &sub), 0);
    assert_int_equal(connections_of_app(), 1);
    admin("PUBLISH te:chan m1");
    admin("PUBLISH te:chan m2");
    assert_int_equal(tu_publish_n(f->dir, "cache", 2), 0);
    long long t0 = tu_now_ns();
    while (rc_generation(f->h) < 2)
        assert_true(tu_now_ns() - t0 < 2000000000LL);
    /* m1 and m2 are on the old connection: handed out, then the new one's */
    expect_message(sub, "m1");
    expect_message(sub, "m2");
    assert_int_equal(rc_redis_subscriber_switches(sub), 1);
    assert_int_equal(connections_of_app(), 1); /* the old one is closed */
    admin("PUBLISH te:chan m3");
    expect_message(sub, "m3");
    redisReply *m = NULL;
    assert_int_equal(rc_redis_subscriber_next(sub, 200, &m), 0);
    rc_redis_subscriber_close(sub);
    /* every candidate refused: the switch reports it */
    redis_accepts((unsigned[]){7}, 1);
    assert_int_equal(rc_redis_subscriber_open(f->h, sub_connect, NULL, ch, 1, &sub),
                     -EKEYREJECTED);
}

static void test_invalid_arguments(void **state) {
    (void)state;
    struct rc_redis_session s = {0};
    assert_int_equal(rc_redis_auth(NULL, NULL), -EINVAL);
    assert_int_equal(rc_redis_reauth_if_changed(NULL, NULL, &s), -EINVAL);
    const char *argv[] = {"BLPOP", "k"};
    size_t argvlen[] = {5, 1};
    redisReply *r = NULL;
    assert_int_equal(rc_redis_blocking_argv(NULL, NULL, &s, 2, argv, argvlen, 0, &r), -EINVAL);
    struct rc_redis_subscriber *sub = NULL;
    assert_int_equal(rc_redis_subscriber_open(NULL, NULL, NULL, argv, 1, &sub), -EINVAL);
    assert_int_equal(rc_redis_subscriber_next(NULL, 0, &r), -EINVAL);
    assert_null(rc_redis_subscriber_close(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_auth_with_current),
        T(test_falls_back_to_previous),
        T(test_previous_past_previous_valid_until_is_not_tried),
        T(test_rereads_the_file_when_current_and_previous_are_refused),
        T(test_everything_refused_is_ekeyrejected),
        T(test_reauth_only_when_the_credential_changed),
        T(test_expired_token_with_nothing_newer_is_ekeyexpired),
        T(test_default_user_auth_with_the_password_alone),
        T(test_blocking_call_reauths_between_slices),
        T(test_subscriber_moves_to_the_new_credential_without_losing_messages),
        cmocka_unit_test(test_block_ms_ends_slices_before_expiry),
        cmocka_unit_test(test_invalid_arguments),
#undef T
    };
    return cmocka_run_group_tests_name("client_hiredis", tests, start_server, stop_server);
}
