/* identity: Azure identities (managed, workload, client secret) and the token cache that
 * the three Azure source types share. See azure.h.
 *
 * Where tokens come from (docs/azure.md has the operator's view):
 * - managed, IMDS: GET {imds_url}/metadata/identity/oauth2/token?api-version=2018-02-01
 *   &resource=R[&client_id|object_id|msi_res_id], header `Metadata: true`, never through
 *   a proxy. IMDS writes every number as a string.
 * - managed, App Service / Functions / Container Apps (IDENTITY_ENDPOINT and
 *   IDENTITY_HEADER set, imds_url not configured): GET {IDENTITY_ENDPOINT}?api-version=
 *   2019-08-01&resource=R[&client_id|principal_id|mi_res_id], header X-IDENTITY-HEADER.
 * - managed, Azure Arc-enabled server (IDENTITY_ENDPOINT and IMDS_ENDPOINT set without
 *   IDENTITY_HEADER, or /opt/azcmagent/bin/himds installed; imds_url not configured):
 *   GET {IDENTITY_ENDPOINT}?api-version=2020-06-01&resource=R, header `Metadata: true`,
 *   answered 401 `WWW-Authenticate: Basic realm=<challenge file>`; the same GET again
 *   with `Authorization: Basic <file content>`. System-assigned only, loopback only.
 * - workload (Kubernetes federation) and client_secret: POST {authority}/{tenant}/oauth2/
 *   v2.0/token, form-encoded client credentials grant, with the federated token file's
 *   content as client_assertion (re-read at every request: kubelet rotates it) or the
 *   client secret (re-read too, so replacing the file rotates it).
 *
 * Retry classes follow Microsoft's guidance for these endpoints (MSAL's IMDS retry
 * table, azure-identity's IMDS policy): 404/408/410/429/5xx are transient (410 "IMDS is
 * updating" waits at least 10 s); a 400 is the configuration (IMDS "Identity not found":
 * no such identity on this machine) and is not retried until `refresh` or SIGHUP;
 * Entra's invalid_client / unauthorized_client / invalid_grant (wrong secret, expired
 * assertion) are the identity refused (AUTH), retried at poll_interval.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "azure.h"
#include "jsonload.h"
#include "jwt.h"
#include "secretfile.h"

#define IMDS_API_VERSION "2018-02-01"
#define APP_SERVICE_API_VERSION "2019-08-01"
#define ARC_API_VERSION "2020-06-01"
/* Where MSAL and azure-identity look for the Arc agent when the environment is not set,
 * and the endpoint they then use (the agent listens on loopback port 40342). */
#define ARC_HIMDS_PATH "/opt/azcmagent/bin/himds"
#define ARC_DEFAULT_ENDPOINT "http://127.0.0.1:40342/metadata/identity/oauth2/token"
#define DEFAULT_IMDS_URL "http://169.254.169.254"
#define DEFAULT_AUTHORITY "https://login.microsoftonline.com"
#define TOKEN_BODY_MAX (64 * 1024)
#define FEDERATED_TOKEN_MAX (16 * 1024)
/* A refresh that failed may still hand out the cached token when it has this long left. */
#define STALE_MIN_LEFT (60 * 1000000LL)
/* The wall clock moved against the monotonic one by more than this: re-derive deadlines. */
#define CLOCK_JUMP (2 * 1000000LL)

const struct rc_config_key az_identity_keys[] = {
    { .name = "type", .type = RC_CONF_T_STRING, .default_value = "managed" },
    { .name = "client_id", .type = RC_CONF_T_STRING },
    { .name = "object_id", .type = RC_CONF_T_STRING },
    { .name = "resource_id", .type = RC_CONF_T_STRING },
    { .name = "tenant_id", .type = RC_CONF_T_STRING },
    { .name = "authority_host", .type = RC_CONF_T_STRING },
    { .name = "imds_url", .type = RC_CONF_T_STRING },
    { .name = "federated_token_file", .type = RC_CONF_T_STRING },
    { .name = "client_secret_file", .type = RC_CONF_T_STRING },
    { .name = "arc_token_dir", .type = RC_CONF_T_STRING, .default_value = AZ_ARC_TOKEN_DIR },
    AZ_TLS_KEYS,
    { .name = NULL },
};

/* ---- identity ------------------------------------------------------------------- */

static const char *env(const char *name) {
    const char *v = secure_getenv(name);
    return v && v[0] ? v : NULL;
}

/* Ids go into URLs (tenant into the path): a conservative alphabet. */
static bool id_ok(const char *s, bool path_segment) {
    size_t n = strlen(s);
    if (n == 0 || n >= AZ_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '.' || c == '_')
            continue;
        if (!path_segment && (c == '/' || c == '(' || c == ')'))
            continue;   /* resource ids */
        return false;
    }
    return true;
}

static char *strip_slashes(char *s) {
    for (size_t n = s ? strlen(s) : 0; n > 0 && s[n - 1] == '/'; n--)
        s[n - 1] = '\0';
    return s;
}

void az_identity_clear(struct az_identity *id) {
    free(id->client_id);
    free(id->object_id);
    free(id->resource_id);
    free(id->tenant_id);
    free(id->authority_host);
    free(id->imds_url);
    free(id->identity_endpoint);
    secret_free(id->identity_header);
    free(id->arc_token_dir);
    free(id->federated_token_file);
    free(id->client_secret_file);
    az_tls_clear(&id->tls);
    free(id->key);
    free(id->describe);
    memset(id, 0, sizeof *id);
}

static int dup_or_env(const struct rc_config_node *n, const char *key, const char *envname, char **ret,
                      struct rc_error *err) {
    if (az_config_string(n, key, ret, err) < 0)
        return -1;
    if (!*ret && envname && env(envname) && !(*ret = strdup(env(envname))))
        return rc_error_oom(err);
    return 0;
}

static int identity_describe(struct az_identity *id) {
    const char *which = id->client_id ? "client_id " : id->object_id ? "object_id " :
                        id->resource_id ? "resource_id " : "";
    const char *val = id->client_id ? id->client_id : id->object_id ? id->object_id :
                      id->resource_id ? id->resource_id : "";
    int r;
    switch (id->type) {
    case AZ_ID_MANAGED:
        r = asprintf(&id->describe, "managed identity (%s%s%s%s)",
                     id->mi == AZ_MI_IMDS ? "IMDS" : id->mi == AZ_MI_ARC ? "Azure Arc" : "IDENTITY_ENDPOINT",
                     which[0] ? ", " : "", which, val);
        break;
    case AZ_ID_WORKLOAD:
        r = asprintf(&id->describe, "workload identity (client_id %s, tenant %s)", id->client_id,
                     id->tenant_id);
        break;
    default:
        r = asprintf(&id->describe, "service principal (client_id %s, tenant %s)", id->client_id,
                     id->tenant_id);
        break;
    }
    if (r < 0) {
        id->describe = NULL;
        return -ENOMEM;
    }
    /* Everything that makes two identities different, and nothing secret. */
    r = asprintf(&id->key, "%d|%d|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%d", (int)id->type,
                 (int)id->mi, id->client_id ? id->client_id : "", id->object_id ? id->object_id : "",
                 id->resource_id ? id->resource_id : "", id->tenant_id ? id->tenant_id : "",
                 id->authority_host ? id->authority_host : "", id->imds_url ? id->imds_url : "",
                 id->identity_endpoint ? id->identity_endpoint : "",
                 id->arc_token_dir ? id->arc_token_dir : "",
                 id->federated_token_file ? id->federated_token_file : "",
                 id->client_secret_file ? id->client_secret_file : "",
                 id->tls.ca_file ? id->tls.ca_file : "", id->tls.ca_path ? id->tls.ca_path : "",
                 id->tls.cert_file ? id->tls.cert_file : "", id->tls.key_file ? id->tls.key_file : "",
                 id->tls.server_name ? id->tls.server_name : "", (int)id->tls.insecure);
    if (r < 0) {
        id->key = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* The Arc agent listens on loopback; anything else announcing itself as the Arc endpoint
 * would be handed a token request that names a file we then read and send back. So
 * stricter than the plain-http rule: the host must be loopback, whatever the scheme. */
static int arc_endpoint_check(const char *url, char *err, size_t errlen) {
    if (http_url_check(url, err, errlen) < 0)
        return -EINVAL;
    const char *a = strstr(url, "://");
    a = a ? a + 3 : url;
    size_t alen = strcspn(a, "/?#");
    char host[64];
    const char *port = NULL;
    if (memchr(a, '@', alen))
        goto refuse;
    if (a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (!close)
            goto refuse;
        snprintf(host, sizeof host, "%.*s", (int)(close - a + 1), a);
        port = close + 1;
    } else {
        size_t hl = strcspn(a, ":/?#");
        if (hl >= sizeof host)
            goto refuse;
        snprintf(host, sizeof host, "%.*s", (int)hl, a);
        port = a + hl;
    }
    if (port < a + alen) {
        if (*port != ':' || port + 1 == a + alen)
            goto refuse;
        for (const char *p = port + 1; p < a + alen; p++)
            if (!isdigit((unsigned char)*p))
                goto refuse;
    }
    struct in_addr a4;
    if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
        (inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127))
        return 0;
refuse:
    snprintf(err, errlen, "%s: the Azure Arc agent listens on loopback (127.0.0.1, localhost)", url);
    return -EINVAL;
}

int az_arc_realm_path(const char *wa, const char *dir, char *ret, size_t retlen, char *why, size_t whylen) {
    char shown[160];
    az_clean_text(wa, 150, shown, sizeof shown);
    if (!wa) {
        snprintf(why, whylen, "no WWW-Authenticate header");
        return -EINVAL;
    }
    const char *p = wa + strspn(wa, " \t");
    if (strncasecmp(p, "Basic", 5) != 0 || (p[5] != ' ' && p[5] != '\t'))
        goto unusable;
    p += 5;
    p += strspn(p, " \t");
    if (strncasecmp(p, "realm=", 6) != 0)
        goto unusable;
    p += 6;
    /* RFC 7617 quotes the realm; the Arc agent does not (MSAL splits at '='). */
    size_t len;
    const char *end;
    if (*p == '"') {
        p++;
        const char *q = strchr(p, '"');
        if (!q)
            goto unusable;
        len = (size_t)(q - p);
        end = q + 1;
    } else {
        len = strcspn(p, " \t,");
        end = p + len;
    }
    if (end[strspn(end, " \t")] != '\0' || len == 0)
        goto unusable;
    size_t dl = strlen(dir);
    const char *name = p + dl + 1;
    size_t nl = len > dl + 1 ? len - dl - 1 : 0;
    bool ok = len < retlen && dl > 0 && len > dl + 1 && strncmp(p, dir, dl) == 0 && p[dl] == '/' &&
              nl > 4 && nl <= 255 && name[0] != '.' && strncmp(name + nl - 4, ".key", 4) == 0;
    for (size_t i = 0; ok && i < nl; i++) {
        unsigned char c = (unsigned char)name[i];
        ok = isalnum(c) || c == '-' || c == '_' || (c == '.' && !(i + 1 < nl && name[i + 1] == '.'));
    }
    if (!ok) {
        char realm[160];
        snprintf(realm, sizeof realm, "%.*s", (int)(len < 150 ? len : 150), p);
        az_clean_text(realm, 150, shown, sizeof shown);
        snprintf(why, whylen, "the challenge names \"%s\", not a <name>.key file directly in %s", shown, dir);
        return -EINVAL;
    }
    memcpy(ret, p, len);
    ret[len] = '\0';
    return 0;
unusable:
    snprintf(why, whylen, "WWW-Authenticate \"%s\" is not `Basic realm=<file>`", shown);
    return -EINVAL;
}

/* Reads what fd holds (closed here) into a new secret: a regular file (-EINVAL) of at
 * most max bytes (-EFBIG, also when it grew while read), trailing whitespace dropped, not
 * empty (-ENODATA); with `header`, printable ASCII only (-EBADMSG: a CR or LF would start
 * another header). Or -errno of fstat/read, -ENOMEM. The one buffer is wiped. */
static int read_secret_fd(int fd, size_t max, bool header, struct secret **ret) {
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int r = 0;
    if (fstat(fd, &st) < 0)
        r = -errno;
    else if (!S_ISREG(st.st_mode))
        r = -EINVAL;
    else if ((uint64_t)st.st_size > max)
        r = -EFBIG;
    else if (!(buf = malloc(max + 1)))
        r = -ENOMEM;
    while (r == 0) {
        ssize_t n = read(fd, buf + len, max + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = n < 0 ? -errno : 0;
            break;
        }
        len += (size_t)n;
        if (len > max)
            r = -EFBIG;
    }
    close(fd);
    while (r == 0 && len > 0 && isspace((unsigned char)buf[len - 1]))
        len--;
    for (size_t i = 0; r == 0 && header && i < len; i++)
        if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] > 0x7e)
            r = -EBADMSG;
    if (r == 0 && len == 0)
        r = -ENODATA;
    if (r == 0 && !(*ret = secret_new(buf, len)))
        r = -ENOMEM;
    az_wipe_free(buf, buf ? max + 1 : 0);
    return r;
}

int az_arc_read_key(const char *path, struct secret **ret) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -errno;
    return read_secret_fd(fd, AZ_ARC_KEY_MAX, true, ret);
}

/* A managed identity through the Azure Arc agent at `endpoint` (found by `why`). */
static int arc_parse(const struct rc_config_node *n, const char *endpoint, const char *why,
                     struct az_identity *id, struct rc_error *err) {
    char msg[512];
    id->mi = AZ_MI_ARC;
    /* Microsoft documents system-assigned identities only for Arc-enabled servers. */
    const char *which = id->client_id ? "client_id" : id->object_id ? "object_id" :
                        id->resource_id ? "resource_id" : NULL;
    if (which)
        return rc_error_set(err, RC_ERR_FATAL, "identity.%s: Azure Arc (%s) offers only the machine's "
                            "system-assigned identity; remove identity.%s", which, why, which);
    if (env("AZURE_CLIENT_ID"))
        return rc_error_set(err, RC_ERR_FATAL, "$AZURE_CLIENT_ID is set, but Azure Arc (%s) offers only the "
                            "machine's system-assigned identity; unset it for the agent", why);
    if (arc_endpoint_check(endpoint, msg, sizeof msg) < 0)
        return rc_error_set(err, RC_ERR_FATAL, "IDENTITY_ENDPOINT refused for Azure Arc: %s", msg);
    if (az_config_string(n, "arc_token_dir", &id->arc_token_dir, err) < 0)
        return -1;
    if (!id->arc_token_dir && !(id->arc_token_dir = strdup(AZ_ARC_TOKEN_DIR)))
        return rc_error_oom(err);
    strip_slashes(id->arc_token_dir);
    if (id->arc_token_dir[0] != '/')
        return rc_error_set(err, RC_ERR_FATAL, "identity.arc_token_dir: must be an absolute directory "
                            "(leave it unset: " AZ_ARC_TOKEN_DIR ")");
    if (!(id->identity_endpoint = strdup(endpoint)))
        return rc_error_oom(err);
    return 0;
}

/* A managed identity's endpoint: MSAL's detection order (App Service, Arc by environment,
 * Arc by its agent's files, IMDS), with a configured imds_url first. 0 or -1 with err. */
static int managed_endpoint_parse(const struct rc_config_node *n, struct az_identity *id,
                                  struct rc_error *err) {
    const char *ep = env("IDENTITY_ENDPOINT"), *hdr = env("IDENTITY_HEADER");
    bool imds_configured = conf_has(n, "imds_url");
    char msg[512];

    if (!imds_configured && ep && hdr) {
        id->mi = AZ_MI_APP_SERVICE;
        /* The platform announced this endpoint; on Linux App Service it is link-local. */
        if (http_url_check_flags(ep, HTTP_ALLOW_LINK_LOCAL, msg, sizeof msg) < 0)
            return rc_error_set(err, RC_ERR_FATAL, "IDENTITY_ENDPOINT refused: %s", msg);
        id->identity_endpoint = strdup(ep);
        id->identity_header = secret_new_str(hdr);
        return id->identity_endpoint && id->identity_header ? 0 : rc_error_oom(err);
    }
    if (!imds_configured && ep && env("IMDS_ENDPOINT"))
        return arc_parse(n, ep, "$IDENTITY_ENDPOINT and $IMDS_ENDPOINT", id, err);
    if (!imds_configured && access(ARC_HIMDS_PATH, F_OK) == 0)
        return arc_parse(n, ARC_DEFAULT_ENDPOINT, ARC_HIMDS_PATH, id, err);
    id->mi = AZ_MI_IMDS;
    if (az_config_string(n, "imds_url", &id->imds_url, err) < 0)
        return -1;
    if (!id->imds_url && !(id->imds_url = strdup(DEFAULT_IMDS_URL)))
        return rc_error_oom(err);
    strip_slashes(id->imds_url);
    if (http_url_check(id->imds_url, msg, sizeof msg) < 0)
        return rc_error_set(err, RC_ERR_FATAL, "identity.imds_url: %s", msg);
    return 0;
}

/* type = managed: at most one of client_id, object_id, resource_id; the endpoint. */
static int managed_parse(const struct rc_config_node *n, struct az_identity *id, struct rc_error *err) {
    if (!!id->client_id + !!id->object_id + !!id->resource_id > 1)
        return rc_error_set(err, RC_ERR_FATAL,
                            "identity: set at most one of client_id, object_id and resource_id");
    if (managed_endpoint_parse(n, id, err) < 0)
        return -1;
    /* Like azure-identity's DefaultAzureCredential: AZURE_CLIENT_ID picks a user-assigned
     * identity when the config names none (Arc has none: see arc_parse). */
    if (id->mi != AZ_MI_ARC && !id->client_id && !id->object_id && !id->resource_id &&
        env("AZURE_CLIENT_ID") && !(id->client_id = strdup(env("AZURE_CLIENT_ID"))))
        return rc_error_oom(err);
    return 0;
}

/* What an Entra client proves itself with: the federated token file (workload) or the
 * client secret's file (client_secret). 0 or -1 with err. */
static int entra_proof_parse(const struct rc_config_node *n, struct az_identity *id,
                             struct rc_error *err) {
    if (id->type == AZ_ID_WORKLOAD) {
        if (dup_or_env(n, "federated_token_file", "AZURE_FEDERATED_TOKEN_FILE",
                       &id->federated_token_file, err) < 0)
            return -1;
        if (!id->federated_token_file || id->federated_token_file[0] != '/')
            return rc_error_set(err, RC_ERR_FATAL, "identity: workload needs an absolute "
                                "federated_token_file (or $AZURE_FEDERATED_TOKEN_FILE)");
        return 0;
    }
    if (az_config_string(n, "client_secret_file", &id->client_secret_file, err) < 0)
        return -1;
    if (id->client_secret_file && id->client_secret_file[0] != '/')
        return rc_error_set(err, RC_ERR_FATAL, "identity.client_secret_file: must be an absolute path");
    if (!id->client_secret_file && !env("CREDENTIALS_DIRECTORY"))
        return rc_error_set(err, RC_ERR_FATAL, "identity: client_secret needs client_secret_file, or "
                            "$CREDENTIALS_DIRECTORY/%s (systemd LoadCredential=)",
                            AZ_CLIENT_SECRET_CREDENTIAL);
    return 0;
}

/* type = workload or client_secret: an Entra application (client_id) in a tenant, at an
 * authority, each from the config or the environment. 0 or -1 with err. */
static int entra_parse(const struct rc_config_node *n, const char *type, struct az_identity *id,
                       struct rc_error *err) {
    char msg[512];

    if (dup_or_env(n, "tenant_id", "AZURE_TENANT_ID", &id->tenant_id, err) < 0 ||
        dup_or_env(n, "authority_host", "AZURE_AUTHORITY_HOST", &id->authority_host, err) < 0)
        return -1;
    if (!id->client_id && env("AZURE_CLIENT_ID") && !(id->client_id = strdup(env("AZURE_CLIENT_ID"))))
        return rc_error_oom(err);
    if (!id->client_id)
        return rc_error_set(err, RC_ERR_FATAL, "identity: %s needs client_id (or $AZURE_CLIENT_ID)", type);
    if (!id->tenant_id)
        return rc_error_set(err, RC_ERR_FATAL, "identity: %s needs tenant_id (or $AZURE_TENANT_ID)", type);
    if (!id_ok(id->tenant_id, true))
        return rc_error_set(err, RC_ERR_FATAL, "identity.tenant_id: not a tenant id or domain");
    if (!id->authority_host && !(id->authority_host = strdup(DEFAULT_AUTHORITY)))
        return rc_error_oom(err);
    strip_slashes(id->authority_host);
    if (http_url_check(id->authority_host, msg, sizeof msg) < 0)
        return rc_error_set(err, RC_ERR_FATAL, "identity.authority_host: %s", msg);
    return entra_proof_parse(n, id, err);
}

/* The ids' syntax, whichever way they were given. 0 or -1 with err. */
static int ids_check(const struct az_identity *id, struct rc_error *err) {
    if ((id->client_id && !id_ok(id->client_id, true)) || (id->object_id && !id_ok(id->object_id, true)))
        return rc_error_set(err, RC_ERR_FATAL, "identity: client_id and object_id are ids ([A-Za-z0-9._-])");
    if (id->resource_id && (id->resource_id[0] != '/' || !id_ok(id->resource_id, false)))
        return rc_error_set(err, RC_ERR_FATAL,
                            "identity.resource_id: expected /subscriptions/.../userAssignedIdentities/NAME");
    return 0;
}

int az_identity_parse(const struct rc_config_node *source, struct az_identity *ret, struct rc_error *err) {
    const struct rc_config_node *n = conf_group(source, "identity");
    struct az_identity id = { 0 };
    const char *type = conf_string(n, "type");

    if (!type || strcmp(type, "managed") == 0)
        id.type = AZ_ID_MANAGED;
    else if (strcmp(type, "workload") == 0)
        id.type = AZ_ID_WORKLOAD;
    else if (strcmp(type, "client_secret") == 0)
        id.type = AZ_ID_CLIENT_SECRET;
    else
        return rc_error_set(err, RC_ERR_FATAL,
                            "identity.type \"%s\": must be managed, workload or client_secret", type);

    if (az_config_string(n, "client_id", &id.client_id, err) < 0 ||
        az_config_string(n, "object_id", &id.object_id, err) < 0 ||
        az_config_string(n, "resource_id", &id.resource_id, err) < 0 ||
        az_tls_parse(n, &id.tls, err) < 0 ||
        (id.type == AZ_ID_MANAGED ? managed_parse(n, &id, err) : entra_parse(n, type, &id, err)) < 0 ||
        ids_check(&id, err) < 0 ||
        (identity_describe(&id) < 0 && rc_error_oom(err) < 0)) {
        az_identity_clear(&id);
        return -1;
    }
    *ret = id;
    return 0;
}

void az_identity_warn(const struct rc_host *host, const struct az_identity *id) {
    if (id->tls.insecure)
        host->log(host->h, LOG_WARNING, NULL,
                  "identity.tls_insecure_skip_verify is on: the token endpoint's certificate is not checked");
}

static int sdup(const char *s, char **ret) {
    *ret = NULL;
    if (s && !(*ret = strdup(s)))
        return -ENOMEM;
    return 0;
}

static int identity_copy(const struct az_identity *s, struct az_identity *d) {
    memset(d, 0, sizeof *d);
    d->type = s->type;
    d->mi = s->mi;
    d->tls.insecure = s->tls.insecure;
    int r = 0;
    r |= sdup(s->client_id, &d->client_id);
    r |= sdup(s->object_id, &d->object_id);
    r |= sdup(s->resource_id, &d->resource_id);
    r |= sdup(s->tenant_id, &d->tenant_id);
    r |= sdup(s->authority_host, &d->authority_host);
    r |= sdup(s->imds_url, &d->imds_url);
    r |= sdup(s->identity_endpoint, &d->identity_endpoint);
    r |= sdup(s->arc_token_dir, &d->arc_token_dir);
    r |= sdup(s->federated_token_file, &d->federated_token_file);
    r |= sdup(s->client_secret_file, &d->client_secret_file);
    r |= sdup(s->tls.ca_file, &d->tls.ca_file);
    r |= sdup(s->tls.ca_path, &d->tls.ca_path);
    r |= sdup(s->tls.cert_file, &d->tls.cert_file);
    r |= sdup(s->tls.key_file, &d->tls.key_file);
    r |= sdup(s->tls.server_name, &d->tls.server_name);
    r |= sdup(s->key, &d->key);
    r |= sdup(s->describe, &d->describe);
    if (s->identity_header && !(d->identity_header = secret_dup(s->identity_header)))
        r = -ENOMEM;
    if (r) {
        az_identity_clear(d);
        return -ENOMEM;
    }
    return 0;
}

/* ---- token responses ---------------------------------------------------------------- */

void az_token_clear(struct az_token *t) {
    t->value = secret_free(t->value);
    t->exp = 0;
    t->oid[0] = '\0';
}

/* A JSON number, or a string of decimal digits (IMDS writes numbers as strings). */
static int json_num(json_t *v, int64_t *ret) {
    if (json_is_integer(v)) {
        *ret = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        if (!isdigit((unsigned char)s[0]))
            return -EINVAL;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (errno || *end)
            return -EINVAL;
        *ret = x;
        return 0;
    }
    return -ENOENT;
}

/* The response's access_token: present, bounded, visible ASCII (it goes into an
 * Authorization header and a Redis AUTH). */
static int token_string(json_t *root, const char **ret, size_t *ret_len, struct rc_error *err) {
    json_t *at = json_object_get(root, "access_token");
    if (!json_is_string(at) || json_string_length(at) == 0) {
        rc_error_set(err, RC_ERR_INVALID, "token response has no access_token");
        return -1;
    }
    const char *tok = json_string_value(at);
    size_t tlen = json_string_length(at);
    if (tlen > AZ_TOKEN_MAX_LEN) {
        rc_error_set(err, RC_ERR_INVALID, "access_token longer than %d bytes", AZ_TOKEN_MAX_LEN);
        return -1;
    }
    for (size_t i = 0; i < tlen; i++)
        if (tok[i] < 0x21 || tok[i] > 0x7e) {
            rc_error_set(err, RC_ERR_INVALID, "access_token holds characters a bearer token cannot");
            return -1;
        }
    *ret = tok;
    *ret_len = tlen;
    return 0;
}

/* Expiry and issue time: the token's own claims first, then expires_on / expires_in. */
static int token_times(json_t *root, const struct jwt *j, bool decoded, int64_t now,
                       int64_t *ret_exp, int64_t *ret_iat, struct rc_error *err) {
    int64_t exp = 0, iat = 0, v;
    bool have_exp = decoded && jwt_claim_time(j, "exp", &exp) == 0;
    bool have_iat = decoded && (jwt_claim_time(j, "iat", &iat) == 0 || jwt_claim_time(j, "nbf", &iat) == 0);
    if (!have_exp && json_num(json_object_get(root, "expires_on"), &v) == 0 && v > 0) {
        exp = v;
        have_exp = true;
    }
    int64_t expires_in = -1;
    if (json_num(json_object_get(root, "expires_in"), &v) == 0 && v >= 0)
        expires_in = v;
    if (!have_exp && expires_in >= 0) {
        exp = now + expires_in;
        have_exp = true;
    }
    if (!have_exp) {
        rc_error_set(err, RC_ERR_INVALID, "token response says nothing about expiry");
        return -1;
    }
    if (!have_iat && expires_in >= 0 && json_object_get(root, "expires_on")) {
        iat = exp - expires_in;   /* IMDS: expires_in counts from issuance */
        have_iat = true;
    }
    if (!have_iat || iat > now)
        iat = now;
    if (iat > exp)
        iat = exp;
    *ret_exp = exp;
    *ret_iat = iat;
    return 0;
}

int az_token_parse(const char *body, size_t len, int64_t now, struct az_token *ret, int64_t *ret_iat,
                   struct rc_error *err) {
    struct jsonload_error jerr;
    json_t *root = jsonload_buf(body, len, JSON_REJECT_DUPLICATES, &jerr);
    int r = -1;
    struct jwt j = { 0 };
    const char *tok, *oid = NULL;
    size_t tlen;
    int64_t exp, iat;
    if (!root) {   /* position and a generic reason only: jansson's text may quote the token */
        rc_error_set(err, RC_ERR_INVALID, "token response is not a JSON object: malformed at line %d column %d (%s)",
                     jerr.line, jerr.column, jerr.reason);
        goto out;
    }
    if (!json_is_object(root)) {
        rc_error_set(err, RC_ERR_INVALID, "token response is not a JSON object");
        goto out;
    }
    if (token_string(root, &tok, &tlen, err) < 0)
        goto out;
    bool decoded = jwt_decode(tok, tlen, &j, NULL, 0) == 0;
    if (decoded && jwt_claim_string(&j, "oid", &oid) < 0)
        oid = NULL;
    if (token_times(root, &j, decoded, now, &exp, &iat, err) < 0)
        goto out;

    struct az_token t = { .exp = exp };
    if (oid && strlen(oid) < sizeof t.oid) {
        az_clean_text(oid, sizeof t.oid - 1, t.oid, sizeof t.oid);
        if (strcmp(t.oid, oid) != 0)
            t.oid[0] = '\0';   /* control characters: not a usable user name */
    }
    t.value = secret_new(tok, tlen);
    if (!t.value) {
        rc_error_oom(err);
        goto out;
    }
    *ret = t;
    *ret_iat = iat;
    r = 0;
out:
    jwt_clear(&j);
    json_decref(root);
    return r;
}

/* ---- the cache ------------------------------------------------------------------- */

struct az_token_ref {
    struct az_token_ref *next;
    unsigned refs;                /* under cache_lock */
    char *key;                    /* identity key + '\n' + scope */
    pthread_mutex_t lock;         /* everything below */
    struct az_identity id;
    char *scope, *resource;
    uint64_t timeout_usec;
    struct http_client *http;
    uint64_t requests;

    struct secret *token;
    char oid[AZ_ID_MAX];
    int64_t exp, iat;             /* unix seconds */
    uint64_t exp_mono, iat_mono;  /* usec, derived from exp/iat against the wall clock */
    int64_t offset;               /* wall - monotonic (usec) when they were derived */
    unsigned same_count;          /* asks in a row that brought back the token we had */
    uint64_t next_ask;            /* mono usec: not before this while same_count > 0 */
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct az_token_ref *cache_head;

static void entry_free(struct az_token_ref *e) {
    if (!e)
        return;
    pthread_mutex_destroy(&e->lock);
    az_identity_clear(&e->id);
    free(e->key);
    free(e->scope);
    free(e->resource);
    http_client_free(e->http);
    secret_free(e->token);
    free(e);
}

int az_tokens_acquire(const struct az_identity *id, const char *scope, uint64_t timeout_usec,
                      struct az_token_ref **ret, struct rc_error *err) {
    char *key;
    if (asprintf(&key, "%s\n%s", id->key, scope) < 0)
        return rc_error_oom(err);
    pthread_mutex_lock(&cache_lock);
    for (struct az_token_ref *e = cache_head; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            e->refs++;
            pthread_mutex_unlock(&cache_lock);
            free(key);
            *ret = e;
            return 0;
        }
    struct az_token_ref *e = calloc(1, sizeof *e);
    if (!e || pthread_mutex_init(&e->lock, NULL) != 0) {
        pthread_mutex_unlock(&cache_lock);
        free(e);
        free(key);
        return rc_error_oom(err);
    }
    e->key = key;
    e->refs = 1;
    e->timeout_usec = timeout_usec;
    e->scope = strdup(scope);
    /* v1 endpoints (IMDS, App Service) want a resource: the scope without /.default. */
    size_t sl = strlen(scope), dl = strlen("/.default");
    e->resource = sl > dl && strcmp(scope + sl - dl, "/.default") == 0 ? strndup(scope, sl - dl)
                                                                       : strdup(scope);
    if (!e->scope || !e->resource || identity_copy(id, &e->id) < 0) {
        pthread_mutex_unlock(&cache_lock);
        entry_free(e);
        return rc_error_oom(err);
    }
    e->next = cache_head;
    cache_head = e;
    pthread_mutex_unlock(&cache_lock);
    *ret = e;
    return 0;
}

void az_tokens_release(struct az_token_ref *r) {
    if (!r)
        return;
    pthread_mutex_lock(&cache_lock);
    if (--r->refs == 0) {
        for (struct az_token_ref **p = &cache_head; *p; p = &(*p)->next)
            if (*p == r) {
                *p = r->next;
                break;
            }
    } else
        r = NULL;
    pthread_mutex_unlock(&cache_lock);
    entry_free(r);
}

uint64_t az_refresh_point(uint64_t iat, uint64_t exp, const struct az_refresh *p) {
    if (exp <= iat)
        return iat;
    uint64_t life = exp - iat;
    double ratio = p->ratio > 0 && p->ratio < 1 ? p->ratio : 0.7;
    uint64_t at = iat + (uint64_t)((double)life * ratio + 0.5);
    /* "By margin before expiry at the latest" — unless the whole lifetime is shorter than
     * the margin: then the ratio alone decides (else we would ask at once, forever). */
    if (p->margin_usec < life && exp - p->margin_usec < at)
        at = exp - p->margin_usec;
    return at;
}

uint64_t az_same_token_next_ask(uint64_t now, unsigned same_count, uint64_t exp, uint64_t margin) {
    unsigned shift = same_count > 0 ? same_count - 1 : 0;
    uint64_t gap = AZ_SAME_TOKEN_MIN_GAP;
    while (shift-- > 0 && gap < AZ_SAME_TOKEN_MAX_GAP)
        gap *= 2;
    if (gap > AZ_SAME_TOKEN_MAX_GAP)
        gap = AZ_SAME_TOKEN_MAX_GAP;
    uint64_t next = now + gap;
    uint64_t limit = exp > margin ? exp - margin : 0;
    /* Do not sleep past exp - margin while that is still ahead. */
    if (now < limit && next > limit)
        next = limit;
    if (next < now + AZ_SAME_TOKEN_MIN_GAP)
        next = now + AZ_SAME_TOKEN_MIN_GAP;
    return next;
}

/* Monotonic deadlines for a wall-clock time, as seen now. */
static uint64_t mono_for(int64_t unix_sec, int64_t real_now, uint64_t mono_now) {
    int64_t d = unix_sec * 1000000LL - real_now;
    if (d < 0 && (uint64_t)-d > mono_now)
        return 0;
    return (uint64_t)((int64_t)mono_now + d);
}

/* Called with e->lock held: re-derive deadlines when the wall clock jumped. */
static void entry_rebase(struct az_token_ref *e, const struct rc_host *host) {
    if (!e->token)
        return;
    int64_t real = az_now_real();
    uint64_t mono = az_now_mono();
    int64_t off = real - (int64_t)mono;
    int64_t drift = off - e->offset;
    if (drift > CLOCK_JUMP || drift < -CLOCK_JUMP) {
        e->exp_mono = mono_for(e->exp, real, mono);
        e->iat_mono = mono_for(e->iat, real, mono);
        e->offset = off;
        if (host)
            host->log(host->h, LOG_INFO, NULL,
                      "wall clock moved by %+" PRId64 " s: token deadlines re-derived (expires in %" PRId64 " s)",
                      drift / 1000000, (int64_t)((e->exp * 1000000LL - real) / 1000000));
    }
}

static int copy_out(const struct az_token_ref *e, struct az_token *ret, struct rc_error *err) {
    struct az_token t = { .exp = e->exp };
    memcpy(t.oid, e->oid, sizeof t.oid);
    t.value = secret_dup(e->token);
    if (!t.value)
        return rc_error_oom(err);
    *ret = t;
    return 0;
}

/* Reads the federated (service account) token. Not secretfile_read: the file is a
 * kubelet-projected volume, 0644 by default and reached through the ..data symlink, and
 * it is a short-lived, audience-bound assertion that Entra checks against the federated
 * credential, so neither the permission rule nor O_NOFOLLOW applies. Bounded, regular
 * file only, re-read at every request (kubelet rotates it). */
static int read_federated_token(const char *path, struct secret **ret, struct rc_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        return rc_error_set(err, e == ENOENT ? RC_ERR_NOT_FOUND : RC_ERR_AUTH,
                            "federated_token_file %s: %s", path, strerror(e));
    }
    int r = read_secret_fd(fd, FEDERATED_TOKEN_MAX, false, ret);
    if (r == -EINVAL || r == -EFBIG)
        return rc_error_set(err, RC_ERR_INVALID, "federated_token_file %s: not a regular file of at most %d bytes",
                            path, FEDERATED_TOKEN_MAX);
    if (r == -ENODATA)
        return rc_error_set(err, RC_ERR_INVALID, "federated_token_file %s: empty", path);
    if (r < 0)
        return rc_error_set(err, RC_ERR_TRANSIENT, "federated_token_file %s: read: %s", path, strerror(-r));
    return 0;
}

/* A growable, wiped-on-free text buffer for URLs and form bodies. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = malloc(cap);
        if (!np) {
            b->oom = true;
            return;
        }
        if (b->p)
            memcpy(np, b->p, b->len);
        az_wipe_free(b->p, b->cap);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s) {
    sb_add(b, s, strlen(s));
}

static void sb_enc(struct sbuf *b, const char *s, size_t n) {
    size_t el;
    char *enc = az_urlencode(s, n, &el);
    if (!enc) {
        b->oom = true;
        return;
    }
    sb_add(b, enc, el);
    az_wipe_free(enc, el);
}

static void sb_free(struct sbuf *b) {
    az_wipe_free(b->p, b->cap);
    memset(b, 0, sizeof *b);
}

/* Maps a token endpoint's refusal to a class (see the top of this file). */
static int token_http_error(const struct az_token_ref *e, const char *what, const struct http_response *r,
                            const struct secret *const *sec, size_t nsec, struct rc_error *err) {
    char code[96] = "", desc[200] = "";
    json_t *root = r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    json_t *er = json_object_get(root, "error");
    if (json_is_string(er)) {
        az_clean_scrubbed(json_string_value(er), 80, sec, nsec, code, sizeof code);
        /* Entra's descriptions run on with trace ids: the first line says it. */
        const char *d = json_string_value(json_object_get(root, "error_description"));
        char line[400] = "";
        az_clean_scrubbed(d, 180, sec, nsec, line, sizeof line);
        char *cut = strstr(line, " Trace ID:");
        if (cut)
            *cut = '\0';
        snprintf(desc, sizeof desc, "%s", line);
    } else if (json_is_object(er)) {
        az_clean_scrubbed(json_string_value(json_object_get(er, "code")), 80, sec, nsec, code, sizeof code);
        az_clean_scrubbed(json_string_value(json_object_get(er, "message")), 180, sec, nsec, desc, sizeof desc);
    } else {
        /* App Service: {"statusCode": 400, "message": "..."} */
        az_clean_scrubbed(json_string_value(json_object_get(root, "message")), 180, sec, nsec, desc,
                          sizeof desc);
    }
    json_decref(root);

    long st = r->status;
    enum rc_err_class cls;
    uint64_t retry_after = 0;
    const char *hint = "";
    bool managed = e->id.type == AZ_ID_MANAGED;
    if (st == 404 || st == 408 || st == 410 || st == 429 || st >= 500) {
        cls = RC_ERR_TRANSIENT;
        retry_after = az_retry_after(r);
        if (st == 410 && retry_after < 10000000ULL)
            retry_after = 10000000ULL;   /* "IMDS is updating": back in ~70 s, ask every 10 s */
        if (!managed && st == 404) {
            cls = RC_ERR_FATAL;
            hint = " (check authority_host and tenant_id)";
        }
    } else if (st == 400) {
        if (!managed && (strcmp(code, "invalid_client") == 0 || strcmp(code, "unauthorized_client") == 0 ||
                         strcmp(code, "invalid_grant") == 0))
            cls = RC_ERR_AUTH;
        else
            cls = RC_ERR_FATAL;
        if (managed && strcasestr(desc, "identity not found"))
            hint = "; assign the identity to this machine or fix identity.client_id / object_id / "
                   "resource_id, then run `redis-creds refresh` or reload";
    } else if (st == 401 || st == 403)
        cls = RC_ERR_AUTH;
    else
        cls = RC_ERR_INVALID;
    rc_error_set(err, cls, "%s: %s: %ld%s%s%s%s%s", e->id.describe, what, st, code[0] ? " " : "", code,
                 desc[0] ? ": " : "", desc, hint);
    err->retry_after_usec = retry_after;
    return -1;
}

/* One request to the token endpoint; a transport failure is TRANSIENT. */
static int send_token_request(struct az_token_ref *e, const struct http_request *req,
                              struct http_response *resp, struct rc_error *err) {
    char msg[512];
    e->requests++;
    int hr = http_request(e->http, req, resp, msg, sizeof msg);
    if (hr < 0) {
        /* msg names the URL: it holds no secret (App Service's is in a header). */
        char m2[640];
        snprintf(m2, sizeof m2, "%s: %s", e->id.describe, msg);
        return az_transport_error(err, hr, m2);
    }
    return 0;
}

/* The Authorization value that answers an Arc agent's 401 (see az_arc_realm_path): every
 * refusal is AUTH, the machine not letting us prove who we are. The file's content is
 * the secret: it is in *ret only, and the one transient copy is wiped. */
static int arc_authorization(const struct az_token_ref *e, const char *what, const struct http_response *r,
                             struct secret **ret, struct rc_error *err) {
    char path[512], why[400];
    if (az_arc_realm_path(http_response_header(r, "www-authenticate"), e->id.arc_token_dir, path, sizeof path,
                          why, sizeof why) < 0)
        return rc_error_set(err, RC_ERR_AUTH, "%s: %s: 401 without a usable challenge: %s", e->id.describe,
                            what, why);
    _cleanup_secret_ struct secret *key = NULL;
    int kr = az_arc_read_key(path, &key);
    if (kr == -ENOMEM)
        return rc_error_oom(err);
    if (kr < 0)
        return rc_error_set(err, RC_ERR_AUTH, "%s: challenge file %s: %s%s", e->id.describe, path,
                            kr == -ELOOP ? "a symbolic link, refused" : kr == -EFBIG ? "larger than 4096 bytes" :
                            kr == -EINVAL ? "not a regular file" : kr == -ENODATA ? "empty" :
                            kr == -EBADMSG ? "holds control characters" : strerror(-kr),
                            kr == -EACCES ? "; the agent's user must be in the himds group "
                                            "(SupplementaryGroups=himds in the unit)" : "");
    size_t n = strlen("Basic ") + secret_len(key);
    char *v = malloc(n + 1);
    if (!v)
        return rc_error_oom(err);
    memcpy(v, "Basic ", 6);
    memcpy(v + 6, secret_data(key), secret_len(key));
    v[n] = '\0';
    *ret = secret_new(v, n);
    az_wipe_free(v, n + 1);
    return *ret ? 0 : rc_error_oom(err);
}

/* Asks the identity endpoint for a token. Called with e->lock held. */
/* One token request being built: the URL, the form body (Entra), the headers, and the
 * credential the body carries. token_request_free() wipes it. */
struct token_request {
    struct sbuf url, body;
    struct http_header hdr[4];
    size_t nh;
    struct http_request req;
    struct secret *cred;       /* the federated token or the client secret */
    struct secret *arc_auth;   /* "Basic <challenge file content>" */
    const char *base;          /* the URL the HTTP client is made for */
    const char *what;          /* the request in messages */
};

static void token_request_free(struct token_request *t) {
    sb_free(&t->url);
    sb_free(&t->body);
    t->cred = secret_free(t->cred);
    t->arc_auth = secret_free(t->arc_auth);
}

/* The user-assigned identity the query names, under the endpoint's parameter names. */
static void add_selector(struct sbuf *url, const struct az_identity *id, const char *client_key,
                         const char *object_key, const char *resource_key) {
    const char *key = id->client_id ? client_key : id->object_id ? object_key :
                      id->resource_id ? resource_key : NULL;
    const char *v = id->client_id ? id->client_id : id->object_id ? id->object_id : id->resource_id;

    if (!key)
        return;
    sb_str(url, key);
    sb_enc(url, v, strlen(v));
}

/* A managed identity's GET: IMDS, or $IDENTITY_ENDPOINT (App Service, Azure Arc; Arc has
 * no selectors: arc_parse refuses them). Never through a proxy: a proxy must never see
 * (or answer for) the local endpoint. */
static void managed_request(const struct az_token_ref *e, struct token_request *t) {
    const struct az_identity *id = &e->id;
    bool arc = id->mi == AZ_MI_ARC;

    if (id->mi == AZ_MI_IMDS) {
        t->base = id->imds_url;
        t->what = "GET /metadata/identity/oauth2/token";
        sb_str(&t->url, id->imds_url);
        sb_str(&t->url, "/metadata/identity/oauth2/token?api-version=" IMDS_API_VERSION "&resource=");
        sb_enc(&t->url, e->resource, strlen(e->resource));
        add_selector(&t->url, id, "&client_id=", "&object_id=", "&msi_res_id=");
    } else {
        t->base = id->identity_endpoint;
        t->what = "GET $IDENTITY_ENDPOINT";
        sb_str(&t->url, id->identity_endpoint);
        sb_str(&t->url, strchr(id->identity_endpoint, '?') ? "&" : "?");
        sb_str(&t->url, "api-version=");
        sb_str(&t->url, arc ? ARC_API_VERSION : APP_SERVICE_API_VERSION);
        sb_str(&t->url, "&resource=");
        sb_enc(&t->url, e->resource, strlen(e->resource));
        add_selector(&t->url, id, "&client_id=", "&principal_id=", "&mi_res_id=");
    }
    if (id->mi == AZ_MI_APP_SERVICE)
        t->hdr[t->nh++] = (struct http_header){ "X-IDENTITY-HEADER", secret_data(id->identity_header), true };
    else
        t->hdr[t->nh++] = (struct http_header){ "Metadata", "true", false };
    t->req.no_proxy = true;
}

/* An Entra client credentials grant: POST {authority}/{tenant}/oauth2/v2.0/token with the
 * federated token (read again each time: kubelet rotates it) or the client secret (read
 * again too: replacing the file rotates it). 0 or -1 with err. */
static int entra_request(const struct az_token_ref *e, struct token_request *t, struct rc_error *err) {
    const struct az_identity *id = &e->id;
    char msg[512];

    t->base = id->authority_host;
    t->what = "POST /oauth2/v2.0/token";
    sb_str(&t->url, id->authority_host);
    sb_str(&t->url, "/");
    sb_str(&t->url, id->tenant_id);
    sb_str(&t->url, "/oauth2/v2.0/token");
    if (id->type == AZ_ID_WORKLOAD) {
        if (read_federated_token(id->federated_token_file, &t->cred, err) < 0)
            return -1;
    } else {
        int r = secretfile_read(id->client_secret_file, AZ_CLIENT_SECRET_CREDENTIAL, &t->cred, msg, sizeof msg);
        if (r < 0)
            return rc_error_set(err, r == -ENOENT ? RC_ERR_NOT_FOUND : r == -ENOMEM ? RC_ERR_TRANSIENT : RC_ERR_FATAL,
                                "client secret: %s", msg);
    }
    sb_str(&t->body, "grant_type=client_credentials&client_id=");
    sb_enc(&t->body, id->client_id, strlen(id->client_id));
    sb_str(&t->body, "&scope=");
    sb_enc(&t->body, e->scope, strlen(e->scope));
    if (id->type == AZ_ID_WORKLOAD)
        sb_str(&t->body, "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
                         "&client_assertion=");
    else
        sb_str(&t->body, "&client_secret=");
    sb_enc(&t->body, secret_data(t->cred), secret_len(t->cred));
    t->hdr[t->nh++] = (struct http_header){ "Content-Type", "application/x-www-form-urlencoded", false };
    t->req.method = "POST";
    return 0;
}

/* Sends the request, and once more with the answer to an Azure Arc agent's 401
 * challenge (prove we may read its token directory). 0 with *resp (any status), or -1. */
static int token_send(struct az_token_ref *e, struct token_request *t, struct http_response *resp,
                      struct rc_error *err) {
    if (send_token_request(e, &t->req, resp, err) < 0)
        return -1;
    if (e->id.type != AZ_ID_MANAGED || e->id.mi != AZ_MI_ARC || resp->status != 401)
        return 0;
    int ar = arc_authorization(e, t->what, resp, &t->arc_auth, err);
    http_response_clear(resp);
    if (ar < 0)
        return -1;
    t->hdr[t->nh++] = (struct http_header){ "Authorization", secret_data(t->arc_auth), true };
    t->req.n_headers = t->nh;
    return send_token_request(e, &t->req, resp, err);
}

/* The HTTP client for the identity's endpoint, made at the first request. 0 or -1. */
static int token_client(struct az_token_ref *e, const char *base, struct rc_error *err) {
    char msg[512];

    if (e->http)
        return 0;
    struct http_tls tls = az_tls_view(&e->id.tls);
    unsigned flags = e->id.mi == AZ_MI_APP_SERVICE ? HTTP_ALLOW_LINK_LOCAL : 0;
    if (http_client_new_flags(base, &tls, e->timeout_usec, flags, &e->http, msg, sizeof msg) < 0)
        return rc_error_set(err, RC_ERR_FATAL, "%s: %s", e->id.describe, msg);
    return 0;
}

/* One token from the identity's endpoint into *ret (and its issue time). 0 or -1. */
static int request_token(struct az_token_ref *e, struct az_token *ret, int64_t *ret_iat,
                         struct rc_error *err) {
    struct token_request t = {
        .req = { .method = "GET", .max_body = TOKEN_BODY_MAX, .timeout_usec = e->timeout_usec },
    };
    struct http_response resp = { 0 };
    int r = -1;

    if (e->id.type == AZ_ID_MANAGED)
        managed_request(e, &t);
    else if (entra_request(e, &t, err) < 0)
        goto out;
    t.hdr[t.nh++] = (struct http_header){ "Accept", "application/json", false };
    if (t.url.oom || t.body.oom) {
        rc_error_oom(err);
        goto out;
    }
    if (token_client(e, t.base, err) < 0)
        goto out;
    t.req.url = t.url.p;
    t.req.headers = t.hdr;
    t.req.n_headers = t.nh;
    t.req.body = t.body.p;
    t.req.body_len = t.body.len;
    if (token_send(e, &t, &resp, err) < 0)
        goto out;
    if (resp.status != 200) {
        /* What the request carried: an endpoint (or a proxy) may echo it. */
        const struct secret *sent[] = { t.cred, t.arc_auth, e->id.identity_header };
        token_http_error(e, t.what, &resp, sent, sizeof sent / sizeof sent[0], err);
    }
    else if (az_token_parse(resp.body, resp.body_len, az_now_real() / 1000000, ret, ret_iat, err) == 0)
        r = 0;
    else {
        char m2[600];
        snprintf(m2, sizeof m2, "%s: %s", e->id.describe, err->message);
        snprintf(err->message, sizeof err->message, "%s", m2);
    }
    http_response_clear(&resp);
out:
    token_request_free(&t);
    return r;
}

int az_token_get(struct az_token_ref *e, const struct rc_host *host, const struct az_refresh *p,
                 unsigned flags, struct az_token *ret, struct rc_error *err) {
    pthread_mutex_lock(&e->lock);
    entry_rebase(e, host);
    uint64_t now = az_now_mono();
    bool have = e->token && now < e->exp_mono;
    if (have && !(flags & AZ_TOKEN_FORCE)) {
        bool due = now >= az_refresh_point(e->iat_mono, e->exp_mono, p);
        if (!due || (e->same_count && now < e->next_ask)) {
            int r = copy_out(e, ret, err);
            pthread_mutex_unlock(&e->lock);
            return r;
        }
    }

    struct az_token nt = { 0 };
    int64_t iat = 0;
    int r = request_token(e, &nt, &iat, err);
    int64_t real = az_now_real();
    if (r == 0 && nt.exp * 1000000LL <= real) {
        rc_error_set(err, RC_ERR_TRANSIENT, "%s: the endpoint handed back a token that expired %" PRId64 " s ago",
                     e->id.describe, (int64_t)((real - nt.exp * 1000000LL) / 1000000));
        az_token_clear(&nt);
        r = -1;
    }
    if (r < 0) {
        if (have && (flags & AZ_TOKEN_STALE_OK) && now + STALE_MIN_LEFT < e->exp_mono) {
            if (host)
                host->log(host->h, LOG_DEBUG, NULL, "token refresh failed (%s); the cached token is valid for %" PRIu64 " s more",
                          err->message, (e->exp_mono - now) / 1000000);
            r = copy_out(e, ret, err);
        }
        pthread_mutex_unlock(&e->lock);
        return r;
    }

    uint64_t mono = az_now_mono();
    if (e->token && nt.exp <= e->exp) {
        /* The endpoint's own cache gave us what we have (or older): not a change. Ask
         * again at growing gaps, never in a loop. */
        e->same_count++;
        e->next_ask = az_same_token_next_ask(mono, e->same_count, e->exp_mono, p->margin_usec);
        if (host)
            host->log(host->h, LOG_DEBUG, NULL,
                      "%s handed back the token we have (expiry unchanged); asking again in %" PRIu64 " s",
                      e->id.describe, (e->next_ask - mono) / 1000000);
        az_token_clear(&nt);
    } else {
        secret_free(e->token);
        e->token = nt.value;
        nt.value = NULL;
        e->exp = nt.exp;
        e->iat = iat;
        memcpy(e->oid, nt.oid, sizeof e->oid);
        e->offset = real - (int64_t)mono;
        e->exp_mono = mono_for(e->exp, real, mono);
        e->iat_mono = mono_for(e->iat, real, mono);
        e->same_count = 0;
        e->next_ask = 0;
    }
    r = copy_out(e, ret, err);
    pthread_mutex_unlock(&e->lock);
    return r;
}

uint64_t az_token_next(struct az_token_ref *e, const struct rc_host *host, const struct az_refresh *p) {
    pthread_mutex_lock(&e->lock);
    entry_rebase(e, host);
    uint64_t now = az_now_mono(), d = 0;
    if (e->token) {
        uint64_t at = az_refresh_point(e->iat_mono, e->exp_mono, p);
        if (e->same_count && e->next_ask > at)
            at = e->next_ask;
        /* At least 100 ms: never a busy loop, and a refresh point is met within that. */
        d = at > now + 100000ULL ? at - now : 100000ULL;
    }
    pthread_mutex_unlock(&e->lock);
    return d;
}

int64_t az_token_cached_exp(struct az_token_ref *e) {
    pthread_mutex_lock(&e->lock);
    int64_t exp = e->token ? e->exp : 0;
    pthread_mutex_unlock(&e->lock);
    return exp;
}

uint64_t az_token_requests(struct az_token_ref *e) {
    pthread_mutex_lock(&e->lock);
    uint64_t n = e->requests;
    pthread_mutex_unlock(&e->lock);
    return n;
}
