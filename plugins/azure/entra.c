/* The `azure-entra` source: a Microsoft Entra ID token as the Redis password (docs/design.md §4.4).
 *
 * Azure Managed Redis and Azure Cache for Redis accept `AUTH <object id> <token>` for a
 * token with scope https://redis.azure.com/.default. The candidate's username is the
 * token's `oid` claim (or identity.object_id when configured), the password the token,
 * expires_at its `exp`, and the version `exp` as a decimal: a token with an unchanged
 * exp is no change.
 *
 * Refresh: at refresh_ratio of the token's lifetime (iat..exp; default 0.7, like
 * redis-py-entraid) and by refresh_margin before exp at the latest (default 3 min, as
 * Microsoft advises); next_check() tells the agent when, so no poll is needed in
 * between (a fetch before that point returns the cached token without any request).
 * IMDS caches tokens and may hand back the same one when asked early: that is no change,
 * and the cache asks again at growing gaps of at least 30 s (azure.h), never in a loop.
 * exp is wall-clock time; the cache keeps a monotonic deadline derived when the token
 * arrived and re-derives it when the wall clock jumps.
 *
 * When refreshing fails the published token stays (the agent keeps it) and the error
 * says how long it has left, so `redis-creds status` shows it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "azure.h"

#define ENTRA_DEFAULT_SCOPE "https://redis.azure.com/.default"

struct entra_source {
    const struct rc_host *host;
    struct az_token_ref *tok;
    struct az_refresh policy;
    char *object_id;        /* identity.object_id: the user name when set */
};

const struct rc_config_key az_entra_source_keys[] = {
    { .name = "scope", .type = RC_CONF_T_STRING, .default_value = ENTRA_DEFAULT_SCOPE },
    { .name = "refresh_ratio", .type = RC_CONF_T_FLOAT, .default_value = "0.7" },
    { .name = "refresh_margin", .type = RC_CONF_T_DURATION, .default_value = "3m" },
    { .name = "timeout", .type = RC_CONF_T_DURATION, .default_value = AZ_DEFAULT_TIMEOUT },
    { .name = "identity", .type = RC_CONF_T_GROUP, .group_keys = az_identity_keys },
    { .name = NULL },
};

const struct rc_config_key az_entra_credential_keys[] = {
    { .name = NULL },
};

void az_entra_close(void *state) {
    struct entra_source *s = state;
    if (!s)
        return;
    az_tokens_release(s->tok);
    free(s->object_id);
    free(s);
}

int az_entra_open(const struct rc_host *host, const struct rc_config_node *source,
                  const struct rc_credential *credentials, size_t n_credentials,
                  void **ret_state, struct rc_error *err) {
    struct entra_source *s = calloc(1, sizeof *s);
    struct az_identity id = { 0 };
    if (!s)
        return rc_error_oom(err);
    s->host = host;
    s->policy.ratio = conf_float(source, "refresh_ratio");
    s->policy.margin_usec = conf_duration(source, "refresh_margin");
    const char *scope = conf_string(source, "scope");
    if (!(s->policy.ratio > 0.0 && s->policy.ratio < 1.0)) {
        rc_error_set(err, RC_ERR_FATAL, "refresh_ratio must be between 0 and 1 (exclusive)");
        goto fail;
    }
    if (!scope || !scope[0]) {
        rc_error_set(err, RC_ERR_FATAL, "scope must not be empty");
        goto fail;
    }
    if (az_identity_parse(source, &id, err) < 0)
        goto fail;
    if (id.object_id && !(s->object_id = strdup(id.object_id))) {
        rc_error_oom(err);
        goto fail;
    }
    if (az_tokens_acquire(&id, scope, conf_duration(source, "timeout"), &s->tok, err) < 0)
        goto fail;
    az_identity_warn(host, &id);
    az_identity_clear(&id);
    *ret_state = s;
    return 0;
fail:
    az_identity_clear(&id);
    az_entra_close(s);
    return -1;
}

/* "12m 5s" */
static void fmt_left(int64_t sec, char *out, size_t outlen) {
    if (sec >= 3600)
        snprintf(out, outlen, "%" PRId64 "h %" PRId64 "m", sec / 3600, sec % 3600 / 60);
    else if (sec >= 60)
        snprintf(out, outlen, "%" PRId64 "m %" PRId64 "s", sec / 60, sec % 60);
    else
        snprintf(out, outlen, "%" PRId64 "s", sec);
}

int az_entra_fetch(void *state, const struct rc_credential *cred,
                   struct rc_candidate ret[RC_MAX_CANDIDATES], struct rc_error *err) {
    struct entra_source *s = state;
    struct az_token t = { 0 };
    if (az_token_get(s->tok, s->host, &s->policy, 0, &t, err) < 0) {
        /* Say how long the token we have (and the agent publishes) still lasts. */
        int64_t exp = az_token_cached_exp(s->tok), now = az_now_real() / 1000000;
        size_t l = strlen(err->message);
        char left[64];
        if (exp > now) {
            fmt_left(exp - now, left, sizeof left);
            snprintf(err->message + l, sizeof err->message - l, "; the current token expires in %s", left);
        } else if (exp > 0) {
            fmt_left(now - exp, left, sizeof left);
            snprintf(err->message + l, sizeof err->message - l, "; the last token expired %s ago", left);
        }
        return -1;
    }
    const char *user = s->object_id ? s->object_id : t.oid[0] ? t.oid : NULL;
    if (!user) {
        az_token_clear(&t);
        return rc_error_set(err, RC_ERR_INVALID,
                            "the token has no oid claim: set identity.object_id to the identity's object id");
    }
    struct rc_candidate c = { .expires_at = t.exp, .rotated_at = INT64_MIN, .role = RC_CAND_CURRENT };
    snprintf(c.version, sizeof c.version, "%" PRId64, t.exp);
    c.username = strdup(user);
    c.password = t.value;
    t.value = NULL;
    az_token_clear(&t);
    if (!c.username) {
        secret_free(c.password);
        return rc_error_oom(err);
    }
    ret[0] = c;
    return 1;
}

uint64_t az_entra_next_check(void *state, const struct rc_credential *cred) {
    struct entra_source *s = state;
    return az_token_next(s->tok, s->host, &s->policy);
}
