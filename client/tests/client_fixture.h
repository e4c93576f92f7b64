/* The cmocka fixture of the client's C tests: a scratch runtime directory and the handle
 * a test opens in it, closed and removed after the test. Include after cmocka.h. */
#ifndef CLIENT_FIXTURE_H
#define CLIENT_FIXTURE_H

#include "client_test_util.h"
#include "redis_creds.h"

struct fx {
    char *dir;
    rc_handle *h;
};

static inline int setup(void **state) {
    struct fx *f = calloc(1, sizeof *f);
    f->dir = f ? tu_mkdtemp() : NULL;
    if (!f || !f->dir) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static inline int teardown(void **state) {
    struct fx *f = *state;
    f->h = rc_close(f->h);
    tu_rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

#endif
