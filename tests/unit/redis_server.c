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
    struct endpoint ep = {.kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = s->port};
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

/* The command line of a server (strings in s->args). Returns argc. */
static int server_argv(struct server *s, const char *dir, const struct server_opts *o,
                       const char *argv[40]) {
    int argc = 0;

    snprintf(s->args.port, sizeof s->args.port, "%u", (unsigned)s->port);
    argv[argc++] = REDIS_SERVER;
    argv[argc++] = "--port";
    argv[argc++] = s->args.port;
    argv[argc++] = "--bind";
    argv[argc++] = "127.0.0.1";
    if (o->ipv6)
        argv[argc++] = "::1";
    argv[argc++] = "--save";
    argv[argc++] = "";
    argv[argc++] = "--appendonly";
    argv[argc++] = "no";
    argv[argc++] = "--daemonize";
    argv[argc++] = "no";
    argv[argc++] = "--dir";
    argv[argc++] = dir;
    if (o->unixsock) {
        argv[argc++] = "--unixsocket";
        argv[argc++] = o->unixsock;
        argv[argc++] = "--unixsocketperm";
        argv[argc++] = "700";
    }
    if (o->requirepass) {
        argv[argc++] = "--requirepass";
        argv[argc++] = o->requirepass;
    }
    if (o->certdir) {
        snprintf(s->args.tls_port, sizeof s->args.tls_port, "%u", (unsigned)s->tls_port);
        snprintf(s->args.cert, sizeof s->args.cert, "%s/server.crt", o->certdir);
        snprintf(s->args.key, sizeof s->args.key, "%s/server.key", o->certdir);
        snprintf(s->args.ca, sizeof s->args.ca, "%s/ca.crt", o->certdir);
        const char *tls[] = { "--tls-port", s->args.tls_port, "--tls-cert-file", s->args.cert,
                              "--tls-key-file", s->args.key, "--tls-ca-cert-file", s->args.ca,
                              "--tls-auth-clients", "no" };
        for (size_t k = 0; k < sizeof tls / sizeof tls[0]; k++)
            argv[argc++] = tls[k];
    }
    argv[argc] = NULL;
    return argc;
}

/* Runs argv[0] as a child that dies with us, output to /dev/null unless RESP_TEST_VERBOSE,
 * in directory cwd (NULL: ours). */
static pid_t spawn(const char *const *argv, const char *cwd) {
    pid_t parent = getpid();
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || (cwd && chdir(cwd) != 0))
            _exit(1);
        if (!getenv("RESP_TEST_VERBOSE") && devnull >= 0) {
            (void)dup2(devnull, STDIN_FILENO);
            (void)dup2(devnull, STDOUT_FILENO);
            (void)dup2(devnull, STDERR_FILENO);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

int start_server_with(struct server *s, const char *dir, const struct server_opts *o) {
    for (int attempt = 0; attempt < 3; attempt++) {
        const char *argv[40];

        s->port = free_port();
        s->tls_port = o->certdir ? free_port() : 0;
        (void)server_argv(s, dir, o, argv);
        s->pid = spawn(argv, NULL);
        for (int i = 0; i < 500; i++) {   /* up to ~10 s */
            if (server_answers(s))
                return 0;
            if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
                s->pid = 0;   /* died, e.g. the port was taken meanwhile: try another */
                break;
            }
            usleep(20000);
        }
        stop_server(s);
    }
    return -1;
}

int start_server(struct server *s, const char *dir, bool ipv6, const char *unixsock,
                 const char *requirepass) {
    struct server_opts o = { .ipv6 = ipv6, .unixsock = unixsock, .requirepass = requirepass };
    return start_server_with(s, dir, &o);
}

static int run_openssl(const char *dir, const char *const *args) {
    const char *argv[24] = { "/usr/bin/openssl" };
    int status = 0;
    size_t n = 1;

    for (; args[n - 1] && n < 23; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    pid_t pid = spawn(argv, dir);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    return 0;
}

int make_certs(const char *dir) {
    static const char *const ca[] = { "req", "-x509", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days",
        "2", "-subj", "/CN=rc-test-ca", NULL };
    static const char *const csr[] = { "req", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=rc-test", NULL };
    static const char *const sign[] = { "x509", "-req", "-in", "server.csr", "-CA", "ca.crt",
        "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2",
        "-extfile", "ext", NULL };
    char ext[256];
    FILE *f;

    if (access("/usr/bin/openssl", X_OK) != 0)
        return -1;
    snprintf(ext, sizeof ext, "%s/ext", dir);
    if (!(f = fopen(ext, "we")))
        return -1;
    fputs("subjectAltName=IP:127.0.0.1,DNS:localhost\n", f);
    fclose(f);
    return run_openssl(dir, ca) < 0 || run_openssl(dir, csr) < 0 || run_openssl(dir, sign) < 0
               ? -1 : 0;
}

void remove_certs(const char *dir) {
    static const char *const names[] = { "ca.key", "ca.crt", "ca.srl", "server.key",
                                         "server.csr", "server.crt", "ext" };
    char p[256];

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        (void)unlink(p);
    }
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

/* ---- Fixture ---- */

static struct redis_fixture *registered[4];   /* stopped from atexit() too */

static void stop_registered(void) {
    for (size_t i = 0; i < sizeof registered / sizeof registered[0]; i++)
        if (registered[i])
            redis_fixture_stop(registered[i]);
}

static void register_fixture(struct redis_fixture *f) {
    static bool hooked;
    size_t i;

    if (!hooked)
        hooked = atexit(stop_registered) == 0;
    for (i = 0; i < sizeof registered / sizeof registered[0]; i++)
        if (registered[i] == f || !registered[i])
            break;
    assert_true(i < sizeof registered / sizeof registered[0]);
    registered[i] = f;
}

bool redis_fixture_wants_tls(const struct redis_fixture *f) {
    for (size_t i = 0; i < f->n; i++)
        if (f->spec[i].tls)
            return true;
    return false;
}

static int fixture_server_start(struct redis_fixture *f, size_t i) {
    const struct redis_fixture_server *sp = &f->spec[i];
    struct server *s = &f->srv[i];
    struct server_opts o = { .ipv6 = sp->ipv6 && f->ipv6, .requirepass = sp->requirepass,
                             .certdir = sp->tls ? f->dir : NULL };

    if (sp->unixsock) {
        if (snprintf(s->sock, sizeof s->sock, "%s/redis-%zu.sock", f->dir, i) >=
            (int)sizeof s->sock)
            return -1;
        o.unixsock = s->sock;
    }
    return start_server_with(s, f->dir, &o);
}

int redis_fixture_start(struct redis_fixture *f) {
    bool tls = redis_fixture_wants_tls(f);

    assert_true(f->n <= REDIS_FIXTURE_MAX);
    register_fixture(f);
    signal(SIGPIPE, SIG_IGN);   /* belt and braces: the code under test uses MSG_NOSIGNAL */
    f->up = false;
    if (access(REDIS_SERVER, X_OK) != 0 || (tls && access("/usr/bin/openssl", X_OK) != 0))
        return 0;   /* the tests skip */
    if (server_tmpdir(f->dir, sizeof f->dir, f->prefix) < 0)
        return -1;
    if (tls && make_certs(f->dir) < 0)
        return -1;
    snprintf(f->ca, sizeof f->ca, "%s/ca.crt", f->dir);
    for (size_t i = 0; i < f->n; i++)
        f->ipv6 = f->ipv6 || (f->spec[i].ipv6 && can_bind_ipv6_loopback());
    for (size_t i = 0; i < f->n; i++)
        if (fixture_server_start(f, i) < 0)
            return -1;
    f->up = true;
    return 0;
}

void redis_fixture_stop(struct redis_fixture *f) {
    for (size_t i = 0; i < f->n; i++) {
        stop_server(&f->srv[i]);
        if (f->srv[i].sock[0])
            (void)unlink(f->srv[i].sock);
        f->srv[i].sock[0] = '\0';
    }
    if (f->dir[0]) {
        if (redis_fixture_wants_tls(f))
            remove_certs(f->dir);
        (void)rmdir(f->dir);
    }
    f->dir[0] = '\0';
    f->up = false;
}
