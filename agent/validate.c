/* validate: see validate.h. */
#include <stdio.h>
#include <string.h>

#include "validate.h"

const char *validate_outcome_to_string(enum validate_outcome o) {
    switch (o) {
    case VALIDATE_PUBLISH: return "accepted";
    case VALIDATE_REFUSED: return "refused";
    case VALIDATE_UNREACHABLE: return "unreachable";
    case VALIDATE_MISCONFIGURED: return "misconfigured";
    case VALIDATE_ERROR: return "error";
    }
    return "?";
}

/* One node: connect, AUTH, PING. RESP_AUTH_IO covers connect failures too. */
static enum resp_auth_result check_node(const struct resp_endpoint *ep, uint64_t timeout_usec,
                                        const char *username, const struct secret *password,
                                        char *detail, size_t detail_len) {
    struct resp_conn *c = NULL;
    if (resp_connect(ep, timeout_usec, &c, detail, detail_len) < 0)
        return RESP_AUTH_IO;
    enum resp_auth_result r = resp_auth(c, username, password, detail, detail_len);
    resp_close(c);
    return r;
}

/* Appends ",name=result" (no comma first) to the node list. */
static void append_node(char *buf, size_t size, const char *name, const char *result) {
    size_t used = strlen(buf);
    if (used < size)
        snprintf(buf + used, size - used, "%s%s=%s", used ? "," : "", name, result);
}

void validate_candidate(const struct config_redis *redis,
                        const char *username, const struct secret *password,
                        const char *current_username, const struct secret *current_password,
                        struct validate_result *ret) {
    struct validate_result res = { .total = (unsigned)redis->n_endpoints };
    bool reachable[64] = { false };
    struct resp_endpoint eps[64];
    size_t n = redis->n_endpoints < 64 ? redis->n_endpoints : 64;

    /* Nodes are checked one after another for now; cluster discovery and concurrent
     * validation replace this loop (the result shape already counts nodes). */
    for (size_t i = 0; i < n; i++) {
        char detail[256] = "", name[300];
        enum resp_auth_result r;
        if (resp_endpoint_parse(redis->endpoints[i], &eps[i]) < 0) {
            snprintf(detail, sizeof detail, "bad endpoint");
            snprintf(name, sizeof name, "%s", redis->endpoints[i]);
            r = RESP_AUTH_UNEXPECTED;
        } else {
            r = check_node(&eps[i], redis->timeout_usec, username, password, detail, sizeof detail);
            resp_endpoint_format(&eps[i], name, sizeof name);
        }
        append_node(res.nodes, sizeof res.nodes, name, resp_auth_result_to_string(r));
        reachable[i] = r != RESP_AUTH_IO;
        switch (r) {
        case RESP_AUTH_ACCEPTED: res.accepted++; break;
        case RESP_AUTH_REFUSED: res.refused++; break;
        case RESP_AUTH_IO: res.unreachable++; break;
        case RESP_AUTH_NOPASS:
        case RESP_AUTH_UNEXPECTED: res.other++; break;
        }
        if (r != RESP_AUTH_ACCEPTED && !res.detail[0])
            snprintf(res.detail, sizeof res.detail, "%s: %s", name, detail);
        if (r == RESP_AUTH_NOPASS && res.outcome == VALIDATE_PUBLISH)
            res.outcome = VALIDATE_MISCONFIGURED;
    }

    if (res.outcome == VALIDATE_MISCONFIGURED) {
        /* reported as such whatever the other nodes said */
    } else if (redis->validate == VALIDATE_ANY) {
        res.outcome = res.accepted > 0 ? VALIDATE_PUBLISH
                    : res.refused > 0  ? VALIDATE_REFUSED
                    : res.other > 0    ? VALIDATE_ERROR
                                       : VALIDATE_UNREACHABLE;
    } else if (res.refused > 0) {
        res.outcome = VALIDATE_REFUSED;
    } else if (res.other > 0) {
        res.outcome = VALIDATE_ERROR;
    } else if (res.unreachable == 0) {
        res.outcome = VALIDATE_PUBLISH;
    } else if (res.accepted == 0) {
        res.outcome = VALIDATE_UNREACHABLE;
    } else {
        /* Some nodes down, the rest accept. Publish only when the current credential
         * works nowhere any more among the reachable nodes (DESIGN §8). */
        bool current_works = false;
        if (current_password) {
            for (size_t i = 0; i < n && !current_works; i++) {
                char detail[256];
                if (reachable[i] &&
                    check_node(&eps[i], redis->timeout_usec, current_username, current_password,
                               detail, sizeof detail) == RESP_AUTH_ACCEPTED)
                    current_works = true;
            }
        }
        res.outcome = current_works ? VALIDATE_UNREACHABLE : VALIDATE_PUBLISH;
    }
    *ret = res;
}
