/* confcheck: see confcheck.h. */
#include "confcheck.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_MSG_MAX 160       /* a path quoted in a message */
#define KEY_PATH_MAX 256
#define DEPTH_MAX 8
#define NSS_BUF 16384

/* Hidden from the agent by the shipped unit: ProtectHome=yes, PrivateTmp=yes. */
static const char *const sandboxed[] = { "/home", "/root", "/run/user", "/tmp", "/var/tmp" };

struct walk {
    const struct confcheck_user *u;
    confcheck_report report;
    void *userdata;
    const char *main_file;
    unsigned errors;
};

static void finding(struct walk *w, enum confcheck_level level, const struct config_node *n,
                    const char *key, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void finding(struct walk *w, enum confcheck_level level, const struct config_node *n,
                    const char *key, const char *path, const char *fmt, ...) {
    char text[768], msg[1100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    const char *file = config_node_file(n, key);
    int line = config_node_line(n, key);
    if (line == 0)
        line = config_node_line(n, NULL);
    snprintf(msg, sizeof msg, "%s:%d: %s: %s", file ? file : w->main_file, line, path, text);
    if (level == CONFCHECK_ERROR)
        w->errors++;
    w->report(w->userdata, level, msg);
}

static bool in_group(const struct confcheck_user *u, gid_t gid) {
    if (u->gid == gid)
        return true;
    for (size_t i = 0; i < u->n_groups; i++)
        if (u->groups[i] == gid)
            return true;
    return false;
}

/* May u do `want` (bits of 7: r=4, w=2, x=1) to a file of this owner, group and mode? */
static bool allows(const struct confcheck_user *u, const struct stat *st, unsigned want) {
    unsigned bits;
    if (u->uid == 0)
        return true;
    if (st->st_uid == u->uid)
        bits = (st->st_mode >> 6) & 7;
    else if (in_group(u, st->st_gid))
        bits = (st->st_mode >> 3) & 7;
    else
        bits = st->st_mode & 7;
    return (bits & want) == want;
}

static void owner_text(const struct stat *st, char *buf, size_t size) {
    char pb[NSS_BUF];
    struct passwd pw, *pr = NULL;
    struct group gr, *gres = NULL;
    char user[64], group[64];
    if (getpwuid_r(st->st_uid, &pw, pb, sizeof pb, &pr) == 0 && pr)
        snprintf(user, sizeof user, "%s", pr->pw_name);
    else
        snprintf(user, sizeof user, "%u", (unsigned)st->st_uid);
    if (getgrgid_r(st->st_gid, &gr, pb, sizeof pb, &gres) == 0 && gres)
        snprintf(group, sizeof group, "%s", gres->gr_name);
    else
        snprintf(group, sizeof group, "%u", (unsigned)st->st_gid);
    snprintf(buf, size, "owner %s:%s, mode %04o", user, group, (unsigned)(st->st_mode & 07777));
}

/* NULL when u can read `path` (a directory when dir), else what is wrong and the fix. */
static const char *path_problem(const struct confcheck_user *u, const char *path, bool dir,
                                char *why, size_t size) {
    char prefix[PATH_MAX], own[160];
    struct stat st;
    if (stat(path, &st) < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            snprintf(why, size, "does not exist; correct the path, or create the %s",
                     dir ? "directory" : "file");
        else
            snprintf(why, size, "cannot be checked: %s", strerror(errno));
        return why;
    }
    if (dir != !!S_ISDIR(st.st_mode) || (!dir && !S_ISREG(st.st_mode))) {
        snprintf(why, size, "is not a %s", dir ? "directory" : "regular file");
        return why;
    }
    /* Every directory above must let u search it. */
    size_t len = strnlen(path, sizeof prefix);
    for (size_t i = 1; i < len && len < sizeof prefix; i++) {
        struct stat ds;
        if (path[i] != '/')
            continue;
        memcpy(prefix, path, i);
        prefix[i] = '\0';
        if (stat(prefix, &ds) == 0 && !allows(u, &ds, 1)) {
            owner_text(&ds, own, sizeof own);
            snprintf(why, size, "%s cannot reach it: it may not search %s (%s)", u->name, prefix,
                     own);
            return why;
        }
    }
    if (!allows(u, &st, dir ? 5 : 4)) {
        owner_text(&st, own, sizeof own);
        snprintf(why, size, "%s cannot read it (%s); make %s its owner, or let a group %s is "
                 "in read it", u->name, own, u->name, u->name);
        return why;
    }
    return NULL;
}

static void check_group_key(struct walk *w, const struct config_node *n, const char *key,
                            const char *path, const char *name) {
    char buf[NSS_BUF];
    struct group gr, *res = NULL;
    int r = getgrnam_r(name, &gr, buf, sizeof buf, &res);
    if (r != 0 || !res) {
        finding(w, CONFCHECK_ERROR, n, key, path, "group \"%s\" does not exist%s%s; create it "
                "(groupadd %s) or name an existing group", name, r ? ": " : "",
                r ? strerror(r) : "", name);
        return;
    }
    if (w->u->uid == 0 || in_group(w->u, res->gr_gid))
        return;
    if (w->u->process)
        finding(w, CONFCHECK_ERROR, n, key, path, "the agent (%s) is not in group \"%s\", so it "
                "cannot give files to it; add it to the group (usermod -aG %s %s) and restart, "
                "or give it with SupplementaryGroups=%s in the unit", w->u->name, name, name,
                w->u->name, name);
    else
        finding(w, CONFCHECK_WARNING, n, key, path, "%s is not in group \"%s\" according to the "
                "group database; add it (usermod -aG %s %s), or make sure the unit gives it "
                "(SupplementaryGroups=%s)", w->u->name, name, name, w->u->name, name);
}

/* A rotation group whose `rotators` does not list this host: the host never rotates, so
 * its admin_password_file need not be here (one configuration serves the whole fleet). */
static bool rotates_elsewhere(const struct config_node *n, const struct config_key *k) {
    char host[256] = "";
    if (strcmp(k->name, "admin_password_file") != 0 || !config_node_has(n, "rotators") ||
        gethostname(host, sizeof host - 1) < 0)
        return false;
    for (size_t i = 0; i < config_node_list_len(n, "rotators"); i++) {
        const char *h = config_node_list_get(n, "rotators", i);
        if (h && strcmp(h, host) == 0)
            return false;
    }
    return true;
}

static void check_value(struct walk *w, const struct config_node *n, const struct config_key *k,
                        const char *path) {
    char why[600];
    const char *v = config_node_string(n, k->name);
    if (!v || !*v)
        return;
    if (k->checks & CONFIG_CHECK_GROUP)
        check_group_key(w, n, k->name, path, v);
    if (v[0] != '/')
        return;   /* config_load() refused what had to be absolute */
    for (size_t i = 0; config_node_has(n, k->name) && i < sizeof sandboxed / sizeof *sandboxed; i++) {
        size_t len = strlen(sandboxed[i]);
        if (strncmp(v, sandboxed[i], len) == 0 && (v[len] == '/' || v[len] == '\0'))
            finding(w, CONFCHECK_WARNING, n, k->name, path, "\"%.*s\" is under %s, which the "
                    "shipped unit's sandbox hides from the agent (ProtectHome=, PrivateTmp=); "
                    "move it, or allow it in a drop-in (ReadOnlyPaths=, ReadWritePaths=)",
                    PATH_MSG_MAX, v, sandboxed[i]);
    }
    if (k->checks & (CONFIG_CHECK_FILE | CONFIG_CHECK_DIR) && !rotates_elsewhere(n, k) &&
        path_problem(w->u, v, k->checks & CONFIG_CHECK_DIR, why, sizeof why))
        finding(w, CONFCHECK_ERROR, n, k->name, path, "\"%.*s\" %s", PATH_MSG_MAX, v, why);
}

static void walk_node(struct walk *w, const struct config_node *n, const char *path,
                      const struct config_key *keys, unsigned depth) {
    char sub[KEY_PATH_MAX];
    for (const struct config_key *k = keys; k && k->name && depth <= DEPTH_MAX; k++) {
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k->name);
        if (k->type == CONFIG_T_GROUP) {
            struct config_node g;
            if (!config_node_has(n, k->name))
                continue;
            config_node_group(n, k->name, &g);
            walk_node(w, &g, sub, k->group_keys, depth + 1);
        } else if (k->type == CONFIG_T_STRING) {
            check_value(w, n, k, sub);
        }
    }
}

unsigned confcheck_run(const struct config *c, const struct confcheck_user *u,
                       confcheck_report report, void *userdata) {
    struct walk w = { .u = u, .report = report, .userdata = userdata, .main_file = c->file };
    char path[64];
    walk_node(&w, &c->agent_node, "agent", config_host_keys("agent"), 0);
    for (size_t i = 0; i < c->n_sources; i++) {
        snprintf(path, sizeof path, "sources[%zu]", i);
        walk_node(&w, &c->sources[i].node, path, c->sources[i].node.keys, 0);
    }
    for (size_t i = 0; i < c->n_credentials; i++) {
        const struct config_node *pn = &c->credentials[i].node;
        struct config_node hn = { .setting = pn->setting, .keys = config_host_keys("credentials"),
                                  .file = pn->file };
        snprintf(path, sizeof path, "credentials[%zu]", i);
        walk_node(&w, &hn, path, hn.keys, 0);
        walk_node(&w, pn, path, pn->keys, 0);
    }
    return w.errors;
}

int confcheck_user_lookup(const char *name, struct confcheck_user *ret, char *err, size_t errlen) {
    char buf[NSS_BUF];
    struct passwd pw, *res = NULL;
    int r = name ? getpwnam_r(name, &pw, buf, sizeof buf, &res)
                 : getpwuid_r(geteuid(), &pw, buf, sizeof buf, &res);
    if (r != 0 || !res) {
        if (name)
            snprintf(err, errlen, "user \"%s\": %s", name, r ? strerror(r) : "no such user");
        else
            snprintf(err, errlen, "uid %u: %s", (unsigned)geteuid(), r ? strerror(r) : "no such user");
        return r ? -r : -ENOENT;
    }
    struct confcheck_user u = { .uid = res->pw_uid, .gid = res->pw_gid };
    snprintf(u.name, sizeof u.name, "%s", res->pw_name);
    int n = CONFCHECK_GROUPS_MAX;
    if (getgrouplist(res->pw_name, res->pw_gid, u.groups, &n) < 0)
        n = CONFCHECK_GROUPS_MAX;   /* more than we keep: the first ones */
    u.n_groups = (size_t)n;
    *ret = u;
    return 0;
}

int confcheck_user_self(struct confcheck_user *ret, char *err, size_t errlen) {
    char buf[NSS_BUF];
    struct passwd pw, *res = NULL;
    struct confcheck_user u = { .uid = geteuid(), .gid = getegid(), .process = true };
    int n = getgroups(CONFCHECK_GROUPS_MAX, u.groups);
    if (n < 0) {
        int r = -errno;
        snprintf(err, errlen, "getgroups: %s", strerror(-r));
        return r;
    }
    u.n_groups = (size_t)n;
    if (getpwuid_r(u.uid, &pw, buf, sizeof buf, &res) == 0 && res)
        snprintf(u.name, sizeof u.name, "%s", res->pw_name);
    else
        snprintf(u.name, sizeof u.name, "uid %u", (unsigned)u.uid);
    *ret = u;
    return 0;
}

struct first_error {
    char *err;
    size_t errlen;
    bool set;
};

static void keep_first_error(void *userdata, enum confcheck_level level, const char *msg) {
    struct first_error *f = userdata;
    if (level == CONFCHECK_ERROR && !f->set) {
        snprintf(f->err, f->errlen, "%s", msg);
        f->set = true;
    }
}

int confcheck_self(const struct config *c, char *err, size_t errlen) {
    struct confcheck_user u;
    struct first_error f = { .err = err, .errlen = errlen };
    int r = confcheck_user_self(&u, err, errlen);
    if (r < 0)
        return r;
    return confcheck_run(c, &u, keep_first_error, &f) ? -EINVAL : 0;
}
