/* redis_server: see redis_server.h. */
#include "redis_server.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "resp.h"

void stop_server(struct server *s) {
    if (s->pid <= 0)
        return;
    (void)kill(s->pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        usleep(10000);
    }
    (void)kill(s->pid, SIGKILL);
    (void)waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

uint16_t free_port(void) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

bool can_bind_ipv6_loopback(void) {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    if (fd < 0)
        return false;
    ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static bool server_answers(const struct server *s) {
    struct resp_endpoint ep = {.kind = RESP_EP_TCP, .host = "127.0.0.1", .port = s->port};
    static const char *ping[] = {"PING"};
    struct resp_conn *c = NULL;
    redisReply *r = NULL;
    char err[256];
    bool ok = false;

    if (resp_connect(&ep, 200000, &c, err, sizeof(err)) < 0)
        return false;
    /* With requirepass, PING answers -NOAUTH: that is an answer too. */
    if (resp_command(c, 1, ping, NULL, false, &r) == 0) {
        ok = r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR;
        freeReplyObject(r);
    }
    resp_close(c);
    return ok;
}

int start_server(struct server *s, const char *dir, bool ipv6, const char *unixsock,
                 const char *requirepass) {
    for (int attempt = 0; attempt < 3; attempt++) {
        char port[8];
        const char *argv[32];
        int argc = 0;
        pid_t pid;

        s->port = free_port();
        snprintf(port, sizeof(port), "%u", (unsigned)s->port);
        argv[argc++] = REDIS_SERVER;
        argv[argc++] = "--port";
        argv[argc++] = port;
        argv[argc++] = "--bind";
        argv[argc++] = "127.0.0.1";
        if (ipv6)
            argv[argc++] = "::1";
        argv[argc++] = "--save";
        argv[argc++] = "";
        argv[argc++] = "--appendonly";
        argv[argc++] = "no";
        argv[argc++] = "--daemonize";
        argv[argc++] = "no";
        argv[argc++] = "--dir";
        argv[argc++] = dir;
        if (unixsock) {
            argv[argc++] = "--unixsocket";
            argv[argc++] = unixsock;
            argv[argc++] = "--unixsocketperm";
            argv[argc++] = "700";
        }
        if (requirepass) {
            argv[argc++] = "--requirepass";
            argv[argc++] = requirepass;
        }
        argv[argc] = NULL;

        pid_t parent = getpid();
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
            (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            if (!getenv("RESP_TEST_VERBOSE") && devnull >= 0) {
                (void)dup2(devnull, STDIN_FILENO);
                (void)dup2(devnull, STDOUT_FILENO);
                (void)dup2(devnull, STDERR_FILENO);
            }
            execv(REDIS_SERVER, (char *const *)argv);
            _exit(127);
        }
        s->pid = pid;
        for (int i = 0; i < 500; i++) {   /* up to ~10 s */
            if (server_answers(s))
                return 0;
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                s->pid = 0;   /* died, e.g. the port was taken meanwhile: try another */
                break;
            }
            usleep(20000);
        }
        stop_server(s);
    }
    return -1;
}

int server_tmpdir(char *buf, size_t size, const char *prefix) {
    const char *base = getenv("REDIS_CREDS_TEST_TMP");

    /* sun_path is 108 bytes: fall back to /tmp when the build dir is deep. */
    if (!base || strlen(base) > 60)
        base = "/tmp";
    snprintf(buf, size, "%s/%s-XXXXXX", base, prefix);
    if (mkdtemp(buf))
        return 0;
    snprintf(buf, size, "/tmp/%s-XXXXXX", prefix);
    if (mkdtemp(buf))
        return 0;
    buf[0] = '\0';
    return -1;
}
