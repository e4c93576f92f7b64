/* aclwatch: see aclwatch.h. */
#include "aclwatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secretfile.h"
#include "validate.h"

void aclwatch_target_close(struct aclwatch_target *t) {
    if (!t)
        return;
    t->v = validate_nodes_free(t->v);
    free(t->nodes);
    free(t->problems);
    t->admin_pw = secret_free(t->admin_pw);
    memset(t, 0, sizeof *t);
}

int aclwatch_target_open(const struct config_credential *cc, const char *login_user,
                         const struct secret *login_password, struct aclwatch_target *ret,
                         char *err, size_t errlen) {
    const struct config_rotation *ro = &cc->rotation;
    struct rnet_opts o;
    size_t n;
    int r;

    memset(ret, 0, sizeof *ret);
    if (ro->admin_username) {
        r = secretfile_read(ro->admin_password_file, "redis-admin", &ret->admin_pw, err, errlen);
        if (r < 0)
            return r;
        login_user = ro->admin_username;
        login_password = ret->admin_pw;
    }
    r = validate_nodes_list(&cc->redis, true, login_user, login_password, NULL, NULL, &ret->v,
                            err, errlen);
    if (r < 0) {
        aclwatch_target_close(ret);
        return r;
    }
    n = validate_nodes_count(ret->v);
    ret->nodes = calloc(n ? n : 1, sizeof *ret->nodes);
    ret->problems = calloc(n ? n : 1, sizeof *ret->problems);
    if (!ret->nodes || !ret->problems) {
        aclwatch_target_close(ret);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    validate_nodes_rnet(ret->v, ret->nodes, &o);
    for (size_t i = 0; i < n; i++)
        ret->problems[i] = validate_nodes_problem(ret->v, i);
    ret->t = (struct aclops_target){ .nodes = ret->nodes, .n = n, .problems = ret->problems,
                                     .tls = o.tls, .timeout_usec = o.timeout_usec,
                                     .login_user = login_user, .login_password = login_password };
    return 0;
}

void aclwatch_clear(struct aclwatch *w) {
    if (w)
        aclops_result_clear(&w->prev);
}

/* One node's new failures into what; their count. */
static long long node_failures(const struct aclops_node *prev, const struct aclops_node *now,
                               const char *const *users, size_t nusers, char *what, size_t size) {
    struct aclops_failure f[16];
    size_t n = aclops_log_diff(prev, now, users, nusers, f, sizeof f / sizeof f[0]);
    long long total = 0;

    for (size_t k = 0; k < n; k++) {
        aclops_text_append(what, size, "%s%s%s %s x%lld (%s)", what[0] && k == 0 ? "; " : "",
               k == 0 ? now->name : ", ", k == 0 ? ":" : "", f[k].addr, f[k].count, f[k].username);
        total += f[k].count;
    }
    return total;
}

int aclwatch_read(struct aclwatch *w, const struct aclops_target *t, const char *const *users,
                  size_t nusers, char *what, size_t size, char *problem, size_t psize) {
    struct aclops_result now;
    long long total = 0;
    int r = aclops_acl_log(t, &now);

    what[0] = problem[0] = '\0';
    if (r < 0 && now.n == 0) {
        snprintf(problem, psize, "ACL LOG: %s", strerror(-r));
        return r;
    }
    for (size_t i = 0; i < now.n; i++) {
        const struct aclops_node *n = &now.nodes[i];
        if (n->r < 0)
            aclops_text_append(problem, psize, "%s%s: %s", problem[0] ? "; " : "", n->name, n->why);
        else
            total += node_failures(aclops_result_find(&w->prev, n->name), n, users, nusers,
                                   what, size);
    }
    aclops_result_clear(&w->prev);
    w->prev = now;
    if (now.ok == 0)
        return r < 0 ? r : -EIO;
    return total > 0x7fffffff ? 0x7fffffff : (int)total;
}
