/* Following a credential from an application's own event loop (no library thread):
 * poll rc_fd() with everything else, call rc_process() when it is readable, and once a
 * second (while the runtime directory cannot be watched, that is when the file is read).
 *
 *   cc event_loop.c $(pkg-config --cflags --libs redis-creds) -o event_loop
 *   ./event_loop cache [RUNTIME_DIR [CHANGES]]
 *
 * Prints the version (never the password) at start and at each change; exits after
 * CHANGES changes (default: runs until interrupted).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#include <redis_creds.h>

static void on_change(rc_handle *h, const struct rc_creds *c, int err, void *arg) {
    long *changes = arg;
    if (err < 0) {
        /* the last good credential stays in force; say why the new file was not taken */
        fprintf(stderr, "%s: %s (keeping version %s)\n", rc_path(h), rc_strerror(err),
                c ? c->current.version : "none");
        return;
    }
    printf("version %s (generation %llu)\n", c->current.version,
           (unsigned long long)c->generation);
    fflush(stdout);
    (*changes)++;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s NAME [RUNTIME_DIR [CHANGES]]\n", argv[0]);
        return 2;
    }
    long want = argc > 3 ? strtol(argv[3], NULL, 10) : 0, changes = 0;
    rc_handle *h = NULL;
    int r = rc_open_ex(argv[1], argc > 2 ? argv[2] : NULL,
                       RC_OPEN_NO_THREAD | RC_OPEN_ALLOW_MISSING, 0, &h);
    if (r < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], rc_strerror(r));
        return 1;
    }
    const struct rc_creds *c = NULL;
    if (rc_get(h, &c) == 0)
        printf("version %s (generation %llu)\n", c->current.version,
               (unsigned long long)c->generation);
    else
        printf("not published yet\n");
    fflush(stdout);
    c = rc_creds_unref(c);
    rc_on_change(h, on_change, &changes);

    while (want == 0 || changes < want) {
        struct pollfd p = {.fd = rc_fd(h), .events = POLLIN};
        /* ... plus the application's own fds ... */
        int n = poll(&p, 1, 1000);
        if (n < 0 && errno != EINTR)
            break;
        if (n == 0 || (p.revents & POLLIN))
            rc_process(h); /* on a tick: one read() of the fd when nothing is pending */
    }
    rc_close(h);
    return 0;
}
