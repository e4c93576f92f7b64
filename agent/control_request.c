/* control_request: see control_request.h. */
#include <errno.h>
#include <string.h>

#include "config.h"
#include "control_request.h"

static const char *const verb_names[] = {
    [CONTROL_STATUS] = "status",
    [CONTROL_REFRESH] = "refresh",
    [CONTROL_ROTATE] = "rotate",
    [CONTROL_RELOAD] = "reload",
};

const char *control_verb_name(enum control_verb v) {
    return (size_t)v < sizeof verb_names / sizeof verb_names[0] ? verb_names[v] : "?";
}

bool control_allowed(enum control_verb v, uid_t peer, uid_t agent_uid) {
    return v == CONTROL_STATUS || peer == 0 || peer == agent_uid;
}

/* Does the word w[0..n) spell `s` exactly? */
static bool word_is(const char *w, size_t n, const char *s) {
    return strlen(s) == n && memcmp(w, s, n) == 0;
}

#define EXPECTED "(expected: status, reload [allow-removals], refresh NAME, rotate NAME [revoke])"

/* "status" or "reload [allow-removals]": the verbs without a credential name. */
static int parse_bare(enum control_verb v, const char *arg, size_t alen, struct control_request *ret,
                      const char **ret_err) {
    bool allow = v == CONTROL_RELOAD && word_is(arg, alen, "allow-removals");
    if (alen && !allow) {
        *ret_err = v == CONTROL_STATUS ? "status takes no argument"
                                       : "reload takes no argument but allow-removals";
        return -EINVAL;
    }
    ret->verb = v;
    ret->name[0] = '\0';
    ret->allow_removals = allow;
    return 1;
}

/* One line without its newline, NUL- and control-byte-free: "VERB" or "VERB ARG". */
static int parse_line(const char *line, size_t n, struct control_request *ret, const char **ret_err) {
    const char *sp = memchr(line, ' ', n);
    size_t vlen = sp ? (size_t)(sp - line) : n;
    const char *arg = sp ? sp + 1 : NULL;
    size_t alen = sp ? n - vlen - 1 : 0;
    while (alen && *arg == ' ') {
        arg++;
        alen--;
    }
    enum control_verb v;
    if (word_is(line, vlen, "status"))
        v = CONTROL_STATUS;
    else if (word_is(line, vlen, "refresh"))
        v = CONTROL_REFRESH;
    else if (word_is(line, vlen, "rotate"))
        v = CONTROL_ROTATE;
    else if (word_is(line, vlen, "reload"))
        v = CONTROL_RELOAD;
    else {
        *ret_err = "unknown request " EXPECTED;
        return -EINVAL;
    }
    if (v == CONTROL_STATUS || v == CONTROL_RELOAD)
        return parse_bare(v, arg, alen, ret, ret_err);
    char name[CONTROL_NAME_MAX + 1];
    /* rotate NAME revoke */
    const char *sp2 = alen ? memchr(arg, ' ', alen) : NULL;
    bool revoke = false;
    if (sp2) {
        if (v != CONTROL_ROTATE || !word_is(sp2 + 1, alen - (size_t)(sp2 + 1 - arg), "revoke")) {
            *ret_err = v == CONTROL_ROTATE ? "rotate takes NAME and, optionally, revoke"
                                           : "refresh takes one credential NAME";
            return -EINVAL;
        }
        revoke = true;
        alen = (size_t)(sp2 - arg);
    }
    if (alen == 0 || alen > CONTROL_NAME_MAX) {
        *ret_err = alen ? CONTROL_NAME_INVALID : "a credential NAME is required";
        return -EINVAL;
    }
    memcpy(name, arg, alen);
    name[alen] = '\0';
    if (!config_name_valid(name)) {
        *ret_err = CONTROL_NAME_INVALID;
        return -EINVAL;
    }
    ret->verb = v;
    memcpy(ret->name, name, alen + 1);
    ret->allow_removals = false;
    ret->revoke = revoke;
    return 1;
}

int control_request_parse(const char *buf, size_t len, bool eof, struct control_request *ret,
                          const char **ret_err) {
    /* memchr, not strchr: a NUL before the newline must not hide it (the request would
     * then wait for a newline that was already there, and never be answered). */
    size_t scan = len < CONTROL_MAX_REQUEST ? len : CONTROL_MAX_REQUEST;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl && !eof && len < CONTROL_MAX_REQUEST)
        return 0;
    if (!nl && len >= CONTROL_MAX_REQUEST) {
        *ret_err = "request too long";
        return -EMSGSIZE;
    }
    size_t n = nl ? (size_t)(nl - buf) : len;
    if (n && buf[n - 1] == '\r')
        n--;
    if (n == 0) {
        *ret_err = "empty request " EXPECTED;
        return -EBADMSG;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) {
            *ret_err = "request contains a NUL or another control byte";
            return -EBADMSG;
        }
    struct control_request req;
    int r = parse_line(buf, n, &req, ret_err);
    if (r > 0)
        *ret = req;
    return r;
}
