/* control: the agent's control socket, served on a real sd-event loop to real clients,
 * with the agent replaced by a scripted one (the five agent.h calls control.c makes are
 * defined here). The protocol's answers, a reload answered when the agent reports its
 * end (every waiting client, with config_error told apart), the rights of a peer that is
 * not the agent's user (a child that drops to nobody), and the socket file's life. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <systemd/sd-event.h>

#include "agent.h"
#include "control.h"

#define NOBODY 65534

/* ---- the scripted agent ---------------------------------------------------------- */

static struct {
    void (*observer)(void *ud, int result, const char *why);
    void *observer_ud;
    int reloads;
    bool last_allow_removals, revoked;
    char refreshed[64], rotated[64];
} fake;

void agent_set_reload_observer(struct agent *a, void (*fn)(void *ud, int result, const char *why),
                               void *ud) {
    (void)a;
    fake.observer = fn;
    fake.observer_ud = ud;
}

void agent_request_reload(struct agent *a, bool allow_removals) {
    (void)a;
    fake.reloads++;
    fake.last_allow_removals = allow_removals;
}

struct json_t *agent_status_json(struct agent *a) {
    (void)a;
    return json_pack("{s:b, s:[{s:s}]}", "ok", 1, "credentials", "name", "app");
}

static int named(const char *name, char *dst, size_t n, char *err, size_t errlen) {
    if (strcmp(name, "app") != 0) {
        snprintf(err, errlen, "no credential named %s", name);
        return -ENOENT;
    }
    snprintf(dst, n, "%s", name);
    return 0;
}

int agent_refresh(struct agent *a, const char *name, char *err, size_t errlen) {
    (void)a;
    return named(name, fake.refreshed, sizeof fake.refreshed, err, errlen);
}

int agent_rotate(struct agent *a, const char *name, bool revoke, char *err, size_t errlen) {
    (void)a;
    fake.revoked = revoke;
    return named(name, fake.rotated, sizeof fake.rotated, err, errlen);
}

/* ---- the loop and clients --------------------------------------------------------- */

static struct agent *const AGENT = (struct agent *)&fake;   /* never dereferenced */
static sd_event *ev;
static struct control *ctl;
static char dir[200], sock_path[260];

static int setup(void **state) {
    const char *tmp = getenv("REDIS_CREDS_TEST_TMP");
    char err[512];

    (void)state;
    memset(&fake, 0, sizeof fake);
    /* nobody must reach the socket: under /tmp unless the test directory is open to all */
    snprintf(dir, sizeof dir, "%s/rc-control-XXXXXX", tmp && strlen(tmp) < 60 ? tmp : "/tmp");
    if (!mkdtemp(dir) || chmod(dir, 0755) < 0)
        return -1;
    snprintf(sock_path, sizeof sock_path, "%s/control.sock", dir);
    if (sd_event_new(&ev) < 0)
        return -1;
    /* nobody's group may connect (root only: others cannot give a file another group) */
    if (control_open(ev, sock_path, geteuid() == 0 ? NOBODY : (gid_t)-1, AGENT, &ctl, err, sizeof err) < 0) {
        print_error("control_open: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ctl = control_close(ctl);
    ev = sd_event_unref(ev);
    return rmdir(dir);   /* fails if control_close left the socket behind */
}

static int connect_to(void) {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static int send_request(const char *line) {
    int fd = connect_to();

    assert_int_equal(write(fd, line, strlen(line)), (ssize_t)strlen(line));
    return fd;
}

/* Runs the loop until the server closes its side of fd; the answer, NUL-terminated. */
static char *answer_of(int fd, char *buf, size_t size) {
    size_t len = 0;
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ssize_t n = recv(fd, buf + len, size - 1 - len, MSG_DONTWAIT);
        if (n > 0)
            len += (size_t)n;
        else if (n == 0)
            break;
        else
            assert_true(errno == EAGAIN);
        assert_true(sd_event_run(ev, 20000) >= 0);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 10)
            fail_msg("no answer within 10 s");
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

static char *ask(const char *line, char *buf, size_t size) {
    return answer_of(send_request(line), buf, size);
}

/* True when nothing has arrived on fd after the loop ran a few times. */
static bool still_waiting(int fd) {
    char c;

    for (int i = 0; i < 5; i++)
        assert_true(sd_event_run(ev, 1000) >= 0);
    return recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK) < 0 && errno == EAGAIN;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_status_refresh_rotate(void **state) {
    char buf[1024];

    (void)state;
    assert_string_equal(ask("status\n", buf, sizeof buf), "{\"ok\":true,\"credentials\":[{\"name\":\"app\"}]}\n");
    assert_string_equal(ask("refresh app\n", buf, sizeof buf), "{\"ok\":true}\n");
    assert_string_equal(fake.refreshed, "app");
    assert_string_equal(ask("rotate app\n", buf, sizeof buf), "{\"ok\":true}\n");
    assert_string_equal(fake.rotated, "app");
    assert_false(fake.revoked);
    assert_string_equal(ask("rotate app revoke\n", buf, sizeof buf), "{\"ok\":true}\n");
    assert_true(fake.revoked);
    assert_string_equal(ask("refresh nope\n", buf, sizeof buf),
                        "{\"ok\":false,\"error\":\"no credential named nope\"}\n");
}

static void test_malformed_request_gets_an_error_line(void **state) {
    char buf[1024];
    json_t *j;

    (void)state;
    j = json_loads(ask("explode now\n", buf, sizeof buf), 0, NULL);
    assert_non_null(j);
    assert_true(json_is_false(json_object_get(j, "ok")));
    assert_true(json_is_string(json_object_get(j, "error")));
    json_decref(j);
    assert_int_equal(fake.reloads, 0);
}

static void test_reload_is_answered_at_its_end(void **state) {
    char buf[1024];
    int a, b;

    (void)state;
    assert_non_null(fake.observer);
    a = send_request("reload\n");
    b = send_request("reload allow-removals\n");
    assert_true(still_waiting(a));
    assert_true(still_waiting(b));
    assert_int_equal(fake.reloads, 2);
    assert_true(fake.last_allow_removals);
    fake.observer(fake.observer_ud, -EINVAL, "agent.conf:3: bad key");   /* both waiters */
    assert_string_equal(answer_of(a, buf, sizeof buf),
                        "{\"ok\":false,\"error\":\"agent.conf:3: bad key\",\"config_error\":true}\n");
    assert_string_equal(answer_of(b, buf, sizeof buf),
                        "{\"ok\":false,\"error\":\"agent.conf:3: bad key\",\"config_error\":true}\n");

    a = send_request("reload\n");
    assert_true(still_waiting(a));
    fake.observer(fake.observer_ud, -ENOMEM, "out of memory");   /* not the config's fault */
    assert_string_equal(answer_of(a, buf, sizeof buf),
                        "{\"ok\":false,\"error\":\"out of memory\",\"config_error\":false}\n");
    a = send_request("reload\n");
    assert_true(still_waiting(a));
    fake.observer(fake.observer_ud, 0, NULL);
    assert_string_equal(answer_of(a, buf, sizeof buf), "{\"ok\":true}\n");
}

/* In a child as nobody (in the socket's group): connects, sends line, copies the answer
 * to out_fd. No cmocka here: the exit status says what failed. */
_Noreturn static void nobody_client(const char *line, int out_fd) {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char out[1024];
    ssize_t n, got = 0;
    int fd;

    if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
        _exit(2);
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        _exit(3);
    if (write(fd, line, strlen(line)) != (ssize_t)strlen(line))
        _exit(4);
    while ((n = read(fd, out + got, sizeof out - 1 - (size_t)got)) > 0)
        got += n;
    _exit(write(out_fd, out, (size_t)got) == got ? 0 : 5);
}

/* A child as nobody asks `line` while the loop runs here; returns its answer. */
static char *ask_as_nobody(const char *line, char *buf, size_t size) {
    struct timespec t0, t;
    int p[2], status = 0;
    size_t len = 0;
    pid_t pid;

    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        nobody_client(line, p[1]);
    close(p[1]);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ssize_t n = read(p[0], buf + len, size - 1 - len);
        if (n > 0)
            len += (size_t)n;
        else if (n == 0)
            break;   /* the child is done */
        assert_true(sd_event_run(ev, 20000) >= 0);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 10) {
            kill(pid, SIGKILL);
            fail_msg("the child got no answer within 10 s");
        }
    }
    close(p[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the child failed (status %d): 2 setuid, 3 connect, 4 write, 5 pipe", status);
    buf[len] = '\0';
    return buf;
}

static void test_other_users_may_only_ask_status(void **state) {
    char buf[1024], want[200];
    struct stat st;

    (void)state;
    if (geteuid() != 0)
        skip();   /* dropping to another uid needs root */
    assert_int_equal(stat(sock_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0660);
    assert_int_equal(st.st_gid, NOBODY);
    assert_string_equal(ask_as_nobody("status\n", buf, sizeof buf),
                        "{\"ok\":true,\"credentials\":[{\"name\":\"app\"}]}\n");
    snprintf(want, sizeof want, "{\"ok\":false,\"error\":\"permission denied: refresh needs root or "
             "the agent's user (uid %u)\"}\n", (unsigned)geteuid());
    fake.refreshed[0] = '\0';
    assert_string_equal(ask_as_nobody("refresh app\n", buf, sizeof buf), want);
    assert_string_equal(fake.refreshed, "");
}

/* A peer over the cap that sent its request before the agent accepted it (what the CLI
 * does) reads the refusal line and then the end, not a reset: the agent reads the request
 * before it closes. */
static void test_refused_peer_reads_the_refusal_not_a_reset(void **state) {
    int held[CONTROL_MAX_CONNS_PER_UID];
    char buf[1024];

    (void)state;
    for (int i = 0; i < CONTROL_MAX_CONNS_PER_UID; i++)
        held[i] = connect_to();
    for (int i = 0; i < 5; i++)
        assert_true(sd_event_run(ev, 1000) >= 0);   /* all accepted: the cap is reached */
    assert_string_equal(ask("status\n", buf, sizeof buf),
                        "{\"ok\":false,\"error\":\"too many connections from this user; try again "
                        "later\"}\n");
    for (int i = 0; i < CONTROL_MAX_CONNS_PER_UID; i++)
        close(held[i]);
}

/* A client that leaves before its answer (a killed CLI): the agent's write fails with
 * EPIPE. SIGPIPE is at its default in this test program, as in any caller of control.h
 * that did not ignore it: the answer must not raise it, or we would not get past here. */
static void test_peer_gone_before_its_answer_raises_no_sigpipe(void **state) {
    char buf[1024];

    (void)state;
    assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    for (int i = 0; i < 3; i++) {
        int fd = send_request("status\n");
        shutdown(fd, SHUT_RDWR);
        close(fd);
        for (int j = 0; j < 5; j++)
            assert_true(sd_event_run(ev, 1000) >= 0);
    }
    assert_string_equal(ask("status\n", buf, sizeof buf), "{\"ok\":true,\"credentials\":[{\"name\":\"app\"}]}\n");
}

static void test_socket_file_life(void **state) {
    struct control *second = NULL;
    char err[512], other[300];
    int fd;

    (void)state;
    /* a stale socket of ours at the path is replaced; the old server is gone anyway */
    ctl = control_close(ctl);
    assert_int_equal(access(sock_path, F_OK), -1);   /* closing removed it */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    assert_int_equal(control_open(ev, sock_path, (gid_t)-1, AGENT, &ctl, err, sizeof err), 0);

    /* anything else at the path is refused, named */
    snprintf(other, sizeof other, "%s/file", dir);
    assert_int_equal(close(open(other, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)), 0);
    assert_int_equal(control_open(ev, other, (gid_t)-1, AGENT, &second, err, sizeof err), -EEXIST);
    assert_non_null(strstr(err, "something else is there"));
    assert_null(second);
    assert_int_equal(unlink(other), 0);
    assert_int_equal(control_open(ev, "relative.sock", (gid_t)-1, AGENT, &second, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "absolute path"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_status_refresh_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_request_gets_an_error_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_is_answered_at_its_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_users_may_only_ask_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_peer_reads_the_refusal_not_a_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_gone_before_its_answer_raises_no_sigpipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_file_life, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
