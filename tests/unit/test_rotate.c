/* Unit tests of agent/rotate.c: the phase record, passwords, the resume decision, and the
 * ACL commands on every node at once against real redis-servers started here
 * (redis_server.h; skipped without /usr/bin/redis-server). The agent-driven rotation as a
 * whole runs in tests/integration/test_rotation*.py. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "redis_server.h"
#include "rctime.h"
#include "resp.h"
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
                               .baseline = 1680000000, .format = ROTATE_STATE_FORMAT,
                               .record = true, .revoke = true, .fleet_rotated_at = 1699999000,
                               .watch_until = 1700000900, .watch_revoke = true,
                               .restore_until = 1700000950, .restores = 2 }, out;
    char buf[ROTATE_STATE_MAX];
    snprintf(in.restored, sizeof in.restored, "%s",
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    snprintf(in.old_version, sizeof in.old_version, "h-0123456789abcdef");
    snprintf(in.new_version, sizeof in.new_version, "7");
    int n = rotate_state_format(&in, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(buf[n - 1], '\n');
    assert_int_equal(rotate_state_parse(buf, (size_t)n, &out), 0);
    assert_memory_equal(&in, &out, sizeof in);
    /* too small a buffer is an error, not a cut record */
    assert_int_equal(rotate_state_format(&in, buf, 20), -ENOBUFS);
    /* no revocation watch: no watch_until key (the previous release never saw one) */
    in.watch_until = in.restore_until = in.restores = 0;
    in.watch_revoke = false;
    in.restored[0] = '\0';
    n = rotate_state_format(&in, buf, sizeof buf);
    assert_null(strstr(buf, "watch_until"));
    assert_int_equal(rotate_state_parse(buf, (size_t)n, &out), 0);
    assert_int_equal(out.watch_until, 0);
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
        "{\"format\":3,\"phase\":\"idle\"}",                      /* a later format */
        "{\"phase\":\"idle\",\"restored\":\"not-a-hash\"}",
        "{\"format\":\"2\",\"phase\":\"idle\"}",
        "{\"format\":2,\"phase\":\"idle\",\"record\":1}",
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
    struct rotate_state in = { .phase = ROTATE_CLAIMED, .started_at = 5, .format = ROTATE_STATE_FORMAT }, out;
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

static void test_next_due_counts_from_the_fleet_clock_else_last_rotation_else_baseline(void **st) {
    struct rotate_state s = { .baseline = 1000 };
    assert_int_equal(rotate_next_due(&s, 30 * 1000000ULL, 0), 1030);
    s.last_completed = 2000;
    assert_int_equal(rotate_next_due(&s, 30 * 1000000ULL, 0), 2030);
    s.fleet_rotated_at = 1900;   /* another host's rotation is the fleet's clock */
    assert_int_equal(rotate_next_due(&s, 30 * 1000000ULL, 4), 1934);
}

/* A store's rotated_at ahead of this host's clock (a writer whose clock ran ahead, a hand
 * edit) moves the fleet clock to now at most, once: else every host waits until that date,
 * and the next real rotation's mark looks older than the clock. */
static void test_clock_never_counts_from_the_future(void **st) {
    struct rotate_state s = { .baseline = 1000 };
    assert_int_equal(rotate_clock_see(&s, 1500, 2000), 0);   /* the past: taken as it is */
    assert_int_equal(s.fleet_rotated_at, 1500);
    assert_int_equal(rotate_clock_see(&s, 1500, 2100), -1);  /* seen again: no news */
    assert_int_equal(rotate_clock_see(&s, 1400, 2100), -1);  /* older: no news */
    assert_int_equal(rotate_clock_see(&s, 0, 2100), -1);     /* no mark */
    /* 2099 seen at 2200: the clock says 2200, and the mark is remembered */
    assert_int_equal(rotate_clock_see(&s, 4070908800, 2200), 4070908800 - 2200);
    assert_int_equal(s.fleet_rotated_at, 2200);
    assert_int_equal(s.fleet_mark, 4070908800);
    assert_int_equal(rotate_next_due(&s, 30 * 1000000ULL, 0), 2230);
    /* read again later, it does not push the schedule on */
    assert_int_equal(rotate_clock_see(&s, 4070908800, 2300), -1);
    assert_int_equal(s.fleet_rotated_at, 2200);
    /* the next real rotation (a mark before 2099, after the clock) moves it */
    assert_int_equal(rotate_clock_see(&s, 2250, 2300), 0);
    assert_int_equal(s.fleet_rotated_at, 2250);
    /* the remembered mark survives the phase record */
    char buf[ROTATE_STATE_MAX];
    struct rotate_state out;
    assert_int_equal(rotate_clock_see(&s, 4070908800, 2400), 4070908800 - 2400);
    int n = rotate_state_format(&s, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(rotate_state_parse(buf, (size_t)n, &out), 0);
    assert_int_equal(rotate_clock_see(&out, 4070908800, 2500), -1);
    assert_int_equal(out.fleet_rotated_at, 2400);
}

static void test_clock_sane_brings_times_from_the_future_back(void **st) {
    struct rotate_state s = { .baseline = 900, .last_completed = 950, .fleet_rotated_at = 990 };
    assert_false(rotate_clock_sane(&s, 1000));
    assert_int_equal(s.fleet_rotated_at, 990);
    s = (struct rotate_state){ .baseline = 5000, .last_completed = 6000, .fleet_rotated_at = 7000 };
    assert_true(rotate_clock_sane(&s, 1000));
    assert_int_equal(s.fleet_rotated_at, 1000);
    assert_int_equal(s.last_completed, 1000);
    assert_int_equal(s.baseline, 1000);
    assert_int_equal(s.fleet_mark, 7000);   /* that mark, seen again, is no news */
    assert_int_equal(rotate_clock_see(&s, 7000, 1100), -1);
    assert_int_equal(rotate_next_due(&s, 30 * 1000000ULL, 0), 1030);
}

static void test_splay_draw_stays_in_range_and_varies(void **st) {
    bool seen_low = false, seen_high = false;
    assert_int_equal(rotate_splay_draw(0), 0);
    assert_int_equal(rotate_splay_draw(999), 0);   /* under a millisecond */
    for (int i = 0; i < 400; i++) {
        uint64_t d = rotate_splay_draw(3000);
        assert_true(d <= 3000 && d % 1000 == 0);
        seen_low |= d == 0;
        seen_high |= d == 3000;
    }
    assert_true(seen_low && seen_high);
}

/* Records written by the previous release (rotate_state_format before `format` existed),
 * kept verbatim: they are read, as format 1, with their phases and clocks. */
static const char *const format1_vectors[] = {
    "{\"phase\":\"claimed\",\"old_version\":\"h-00112233445566aa\",\"new_version\":\"h-77889900aabbccdd\","
    "\"started_at\":1796190000,\"grace_until\":0,\"last_completed\":1796100000,\"baseline\":1796000000}\n",
    "{\"phase\":\"idle\",\"old_version\":\"\",\"new_version\":\"\",\"started_at\":0,\"grace_until\":0,"
    "\"last_completed\":1796100000,\"baseline\":1796000000}\n",
    "{\"phase\":\"published\",\"old_version\":\"h-00112233445566aa\",\"new_version\":\"h-77889900aabbccdd\","
    "\"started_at\":1796190000,\"grace_until\":1796190600,\"last_completed\":1796100000,\"baseline\":1796000000}\n",
};

static void test_format1_records_of_the_previous_release_are_read(void **st) {
    static const enum rotate_phase phases[] = { ROTATE_CLAIMED, ROTATE_IDLE, ROTATE_PUBLISHED };
    for (size_t i = 0; i < 3; i++) {
        struct rotate_state out;
        assert_int_equal(rotate_state_parse(format1_vectors[i], strlen(format1_vectors[i]), &out), 0);
        assert_int_equal(out.format, 1);
        assert_int_equal(out.phase, phases[i]);
        assert_false(out.record);
        assert_int_equal(out.fleet_rotated_at, 0);
        assert_int_equal(out.last_completed, 1796100000);
        /* its clock is the host's last completed rotation */
        assert_int_equal(rotate_next_due(&out, 100 * 1000000ULL, 0), 1796100100);
        char buf[ROTATE_STATE_MAX];
        assert_true(rotate_state_format(&out, buf, sizeof buf) > 0);   /* written back as 2 */
        assert_non_null(strstr(buf, "\"format\":2"));
    }
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

/* ------------------------------------------------------------------------------------
 * ACL commands against real servers
 */

#define MS 1000ull
#define ADMIN_PW "rotate-admin-pw"

/* Two nodes, requirepass ADMIN_PW (the default user) */
static struct redis_fixture fx = {
    .prefix = "rc-test-rotate", .n = 2,
    .spec = { { .requirepass = ADMIN_PW }, { .requirepass = ADMIN_PW } },
};
static struct server *const srv = fx.srv;

REDIS_FIXTURE_GROUP(fx)

/* Does `user` log in with `pw` on the server at port? */
static enum resp_auth_result try_login(uint16_t port, const char *user, const char *pw) {
    struct endpoint ep = { .kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = port };
    struct secret *s = secret_new(pw, strlen(pw));
    struct resp_conn *c = NULL;
    char err[256];
    enum resp_auth_result r;

    assert_non_null(s);
    assert_int_equal(resp_connect(&ep, 2000 * MS, &c, err, sizeof err), 0);
    r = resp_auth(c, user, s, err, sizeof err);
    resp_close(c);
    secret_free(s);
    return r;
}

static void endpoints_of(char eps[][32], char **list, const uint16_t *ports, size_t n) {
    for (size_t i = 0; i < n; i++) {
        snprintf(eps[i], 32, "127.0.0.1:%u", (unsigned)ports[i]);
        list[i] = eps[i];
    }
}

static int acl(const uint16_t *ports, size_t n, uint64_t timeout, enum rotate_acl_op op,
               const char *pw, const char *login_pw, struct rotate_acl_result *res) {
    char eps[4][32], *list[4];
    struct config_redis redis = { .endpoints = list, .n_endpoints = n, .timeout_usec = timeout };
    struct config_rotation ro = { .acl_save = false };
    struct secret *p = secret_new(pw, strlen(pw)), *lp = secret_new(login_pw, strlen(login_pw));
    int r;

    endpoints_of(eps, list, ports, n);
    r = rotate_acl_apply(&redis, &ro, "app", op, p, NULL, lp, res);
    secret_free(p);
    secret_free(lp);
    return r;
}

static void test_acl_add_and_remove_on_every_node(void **st) {
    struct rotate_acl_result res;
    uint16_t ports[2];
    char want[128];

    (void)st;
    NEED_REDIS(&fx);
    ports[0] = srv[0].port;
    ports[1] = srv[1].port;
    assert_int_equal(acl(ports, 2, 2000 * MS, ROTATE_ACL_ADD, "rot-new-1", ADMIN_PW, &res), 0);
    assert_int_equal(res.total, 2);
    assert_int_equal(res.done, 2);
    snprintf(want, sizeof want, "127.0.0.1:%u=ok,127.0.0.1:%u=ok", ports[0], ports[1]);
    assert_string_equal(res.nodes, want);
    assert_string_equal(res.detail, "");
    /* a new user is created disabled ("off"): turn it on to log in with it */
    for (size_t i = 0; i < 2; i++) {
        struct endpoint ep = { .kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = ports[i] };
        const char *on[] = { "ACL", "SETUSER", "app", "on", "+@all" };
        struct secret *a = secret_new(ADMIN_PW, strlen(ADMIN_PW));
        struct resp_conn *c = NULL;
        redisReply *r = NULL;
        char err[256];
        assert_int_equal(resp_connect(&ep, 2000 * MS, &c, err, sizeof err), 0);
        assert_int_equal(resp_auth(c, NULL, a, err, sizeof err), RESP_AUTH_ACCEPTED);
        assert_int_equal(resp_command(c, 5, on, NULL, false, &r), 0);
        freeReplyObject(r);
        resp_close(c);
        secret_free(a);
        assert_int_equal(try_login(ports[i], "app", "rot-new-1"), RESP_AUTH_ACCEPTED);
    }
    assert_int_equal(acl(ports, 2, 2000 * MS, ROTATE_ACL_REMOVE, "rot-new-1", ADMIN_PW, &res), 0);
    assert_int_equal(res.done, 2);
    assert_int_equal(try_login(ports[0], "app", "rot-new-1"), RESP_AUTH_REFUSED);
    assert_int_equal(try_login(ports[1], "app", "rot-new-1"), RESP_AUTH_REFUSED);
    /* removing it again (a removal that finished just before a crash) is done already */
    assert_int_equal(acl(ports, 2, 2000 * MS, ROTATE_ACL_REMOVE, "rot-new-1", ADMIN_PW, &res), 0);
    assert_int_equal(res.done, 2);
}

static void test_acl_refused_login_is_named_per_node(void **st) {
    struct rotate_acl_result res;
    uint16_t ports[1];
    char want[160];

    (void)st;
    NEED_REDIS(&fx);
    ports[0] = srv[1].port;
    assert_int_equal(acl(ports, 1, 2000 * MS, ROTATE_ACL_ADD, "rot-new-2", "not-the-admin-pw",
                         &res), -EACCES);
    assert_int_equal(res.done, 0);
    snprintf(want, sizeof want, "127.0.0.1:%u: login as default: AUTH refused: WRONGPASS",
             ports[0]);
    assert_string_equal(res.detail, want);
    assert_null(strstr(res.detail, "rot-new-2"));
    assert_null(strstr(res.nodes, "=ok"));
}

/* Nodes that accept the connection and never answer: every node waits out its own
 * timeout at the same time, so three of them cost one timeout, not three. */
static void test_acl_nodes_are_asked_at_once(void **st) {
    struct rotate_acl_result res;
    uint16_t ports[3];
    int lfd[3];

    (void)st;
    for (size_t i = 0; i < 3; i++) {
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        lfd[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(lfd[i] >= 0);
        assert_int_equal(bind(lfd[i], (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(listen(lfd[i], 4), 0);
        assert_int_equal(getsockname(lfd[i], (struct sockaddr *)&sa, &len), 0);
        ports[i] = ntohs(sa.sin_port);
    }
    uint64_t t0 = rctime_mono_usec();
    assert_true(acl(ports, 3, 400 * MS, ROTATE_ACL_ADD, "rot-new-3", ADMIN_PW, &res) < 0);
    uint64_t took = rctime_mono_usec() - t0;
    for (size_t i = 0; i < 3; i++)
        close(lfd[i]);
    assert_int_equal(res.total, 3);
    assert_int_equal(res.done, 0);
    assert_non_null(strstr(res.detail, "login as default: AUTH: read: timed out after 400 ms"));
    /* one after another would take 1200 ms */
    assert_true(took >= 400 * MS);
    assert_true(took < 1000 * MS);
}

int main(void) {
    secret_init(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_phase_names),
        cmocka_unit_test(test_record_round_trips),
        cmocka_unit_test(test_record_parse_refuses_what_it_does_not_understand),
        cmocka_unit_test(test_record_file_is_0600_and_loads_back),
        cmocka_unit_test(test_next_due_counts_from_the_fleet_clock_else_last_rotation_else_baseline),
        cmocka_unit_test(test_clock_never_counts_from_the_future),
        cmocka_unit_test(test_clock_sane_brings_times_from_the_future_back),
        cmocka_unit_test(test_splay_draw_stays_in_range_and_varies),
        cmocka_unit_test(test_format1_records_of_the_previous_release_are_read),
        cmocka_unit_test(test_passwords_have_the_length_and_alphabet_and_differ),
        cmocka_unit_test(test_resume_decision),
        cmocka_unit_test(test_acl_add_and_remove_on_every_node),
        cmocka_unit_test(test_acl_refused_login_is_named_per_node),
        cmocka_unit_test(test_acl_nodes_are_asked_at_once),
    };
    return cmocka_run_group_tests(tests, redis_setup, redis_teardown);
}
