/* http: see http.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "http.h"

struct http_client {
    CURL *curl;
    char *base_url;
    char *base_host;          /* as curl spells it ("[::1]" for IPv6) */
    char *server_name;        /* NULL: verify the URL's own host */
    long port;
    struct curl_slist *connect_to;
    uint64_t timeout_usec;
    long connections;
    unsigned flags;           /* HTTP_ALLOW_* */
    char errbuf[CURL_ERROR_SIZE];
};

/* Receive state of one transfer. */
struct recv {
    struct http_response *resp;
    size_t max_body;
    size_t cap;
    bool over_cap;
    bool oom;
};

static void wipe_free(void *p, size_t n) {
    if (p) {
        explicit_bzero(p, n);
        free(p);
    }
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_result;

static void global_init_once(void) {
    global_result = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

int http_global_init(void) {
    pthread_once(&global_once, global_init_once);
    return global_result;
}

/* Parses url into scheme, host and port (default port filled in). */
static int url_parts(const char *url, char **scheme, char **host, long *port) {
    CURLU *u = curl_url();
    char *p = NULL;
    int r = -EINVAL;
    *scheme = *host = NULL;
    if (!u)
        return -ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    char *end;
    errno = 0;
    *port = strtol(p, &end, 10);
    if (errno || *end || *port <= 0 || *port > 65535)
        goto out;
    for (char *s = *scheme; *s; s++)
        *s = (char)tolower((unsigned char)*s);
    for (char *s = *host; *s; s++)
        *s = (char)tolower((unsigned char)*s);
    r = 0;
out:
    curl_free(p);
    if (r < 0) {
        curl_free(*scheme);
        curl_free(*host);
        *scheme = *host = NULL;
    }
    curl_url_cleanup(u);
    return r;
}

static bool host_allows_plain_http(const char *host, unsigned flags) {
    struct in_addr a4;
    if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        uint32_t h = ntohl(a4.s_addr);
        if ((h >> 24) == 127 || h == 0xA9FEA9FEu)   /* 127/8, 169.254.169.254 */
            return true;
        return (flags & HTTP_ALLOW_LINK_LOCAL) && (h >> 16) == 0xA9FEu;   /* 169.254/16 */
    }
    return false;
}

int http_url_check(const char *url, char *err, size_t errlen) {
    return http_url_check_flags(url, 0, err, errlen);
}

int http_url_check_flags(const char *url, unsigned flags, char *err, size_t errlen) {
    char *scheme, *host;
    long port;
    if (url_parts(url, &scheme, &host, &port) < 0) {
        snprintf(err, errlen, "\"%s\" is not a valid URL", url);
        return -EINVAL;
    }
    int r = 0;
    if (strcmp(scheme, "https") == 0)
        ;
    else if (strcmp(scheme, "http") == 0) {
        if (!host_allows_plain_http(host, flags)) {
            snprintf(err, errlen, "%s: plain http is allowed only to a loopback address or the IMDS "
                     "address%s; use https", url,
                     flags & HTTP_ALLOW_LINK_LOCAL ? " (or, for the platform's identity endpoint, link-local)" : "");
            r = -EINVAL;
        }
    } else {
        snprintf(err, errlen, "%s: scheme must be https", url);
        r = -EINVAL;
    }
    curl_free(scheme);
    curl_free(host);
    return r;
}

bool http_same_origin(const char *a, const char *b) {
    char *sa, *ha, *sb, *hb;
    long pa, pb;
    if (url_parts(a, &sa, &ha, &pa) < 0)
        return false;
    if (url_parts(b, &sb, &hb, &pb) < 0) {
        curl_free(sa);
        curl_free(ha);
        return false;
    }
    bool same = strcmp(sa, sb) == 0 && strcmp(ha, hb) == 0 && pa == pb;
    curl_free(sa);
    curl_free(ha);
    curl_free(sb);
    curl_free(hb);
    return same;
}

int http_retry_after_parse(const char *value, uint64_t *ret_usec) {
    if (!value)
        return -EINVAL;
    while (*value == ' ' || *value == '\t')
        value++;
    if (isdigit((unsigned char)*value)) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(value, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (errno || *end || s > 86400ULL * 365)
            return -EINVAL;
        *ret_usec = s * 1000000ULL;
        return 0;
    }
    time_t t = curl_getdate(value, NULL);
    if (t == (time_t)-1)
        return -EINVAL;
    time_t now = time(NULL);
    *ret_usec = t > now ? (uint64_t)(t - now) * 1000000ULL : 0;
    return 0;
}

int http_client_new(const char *base_url, const struct http_tls *tls, uint64_t timeout_usec,
                    struct http_client **ret, char *err, size_t errlen) {
    return http_client_new_flags(base_url, tls, timeout_usec, 0, ret, err, errlen);
}

int http_client_new_flags(const char *base_url, const struct http_tls *tls, uint64_t timeout_usec,
                          unsigned flags, struct http_client **ret, char *err, size_t errlen) {
    int r = http_url_check_flags(base_url, flags, err, errlen);
    if (r < 0)
        return r;
    if (http_global_init() < 0) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return -EIO;
    }
    struct http_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    char *scheme = NULL, *host = NULL;
    c->timeout_usec = timeout_usec ? timeout_usec : 10000000ULL;
    c->flags = flags;
    c->curl = curl_easy_init();
    c->base_url = strdup(base_url);
    if (!c->curl || !c->base_url || url_parts(base_url, &scheme, &host, &c->port) < 0) {
        snprintf(err, errlen, "cannot set up an HTTP client for %s", base_url);
        curl_free(scheme);
        curl_free(host);
        http_client_free(c);
        return -ENOMEM;
    }
    c->base_host = strdup(host);
    curl_free(scheme);
    curl_free(host);
    if (!c->base_host) {
        http_client_free(c);
        return -ENOMEM;
    }

    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);             /* threads: no SIGALRM */
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);       /* never follow the server */
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
    if (tls) {
        if (tls->ca_file && tls->ca_file[0])
            curl_easy_setopt(h, CURLOPT_CAINFO, tls->ca_file);
        if (tls->ca_path && tls->ca_path[0])
            curl_easy_setopt(h, CURLOPT_CAPATH, tls->ca_path);
        if (tls->cert_file && tls->cert_file[0])
            curl_easy_setopt(h, CURLOPT_SSLCERT, tls->cert_file);
        if (tls->key_file && tls->key_file[0])
            curl_easy_setopt(h, CURLOPT_SSLKEY, tls->key_file);
        if (tls->insecure_skip_verify) {
            curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        if (tls->server_name && tls->server_name[0] && strcasecmp(tls->server_name, c->base_host) != 0) {
            /* Ask for https://server_name/... (so SNI and the certificate check use it)
             * but connect to the configured host. */
            char map[600];
            c->server_name = strdup(tls->server_name);
            snprintf(map, sizeof map, "%s:%ld:%s:%ld", tls->server_name, c->port, c->base_host, c->port);
            c->connect_to = curl_slist_append(NULL, map);
            if (!c->server_name || !c->connect_to) {
                http_client_free(c);
                return -ENOMEM;
            }
            curl_easy_setopt(h, CURLOPT_CONNECT_TO, c->connect_to);
        }
    }
    *ret = c;
    return 0;
}

struct http_client *http_client_free(struct http_client *c) {
    if (!c)
        return NULL;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->connect_to);
    free(c->base_url);
    free(c->base_host);
    free(c->server_name);
    free(c);
    return NULL;
}

const char *http_client_base_url(const struct http_client *c) {
    return c->base_url;
}

long http_client_connections(const struct http_client *c) {
    return c->connections;
}

void http_response_clear(struct http_response *r) {
    if (!r)
        return;
    wipe_free(r->body, r->body_len);
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->header_names[i]);
        if (r->header_values[i])
            wipe_free(r->header_values[i], strlen(r->header_values[i]));
    }
    memset(r, 0, sizeof *r);
}

const char *http_response_header(const struct http_response *r, const char *name) {
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->header_names[i], name) == 0)
            return r->header_values[i];
    return NULL;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
    struct recv *rv = userdata;
    struct http_response *resp = rv->resp;
    size_t n = size * nmemb;
    if (n > rv->max_body - resp->body_len) {
        rv->over_cap = true;
        return 0;   /* curl aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (resp->body_len + n + 1 > rv->cap) {
        size_t cap = rv->cap ? rv->cap : 4096;
        while (cap < resp->body_len + n + 1)
            cap *= 2;
        if (cap > rv->max_body + 1)
            cap = rv->max_body + 1;
        /* Not realloc: the old block may hold a secret and must be wiped. */
        char *nb = malloc(cap);
        if (!nb) {
            rv->oom = true;
            return 0;
        }
        if (resp->body) {
            memcpy(nb, resp->body, resp->body_len);
            wipe_free(resp->body, rv->cap);
        }
        resp->body = nb;
        rv->cap = cap;
    }
    memcpy(resp->body + resp->body_len, data, n);
    resp->body_len += n;
    resp->body[resp->body_len] = '\0';
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata) {
    struct recv *rv = userdata;
    struct http_response *resp = rv->resp;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new response (after 100 Continue): forget the interim one's headers. */
        for (size_t i = 0; i < resp->n_headers; i++) {
            free(resp->header_names[i]);
            if (resp->header_values[i])
                wipe_free(resp->header_values[i], strlen(resp->header_values[i]));
        }
        resp->n_headers = 0;
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon || resp->n_headers >= HTTP_MAX_HEADERS)
        return n;
    size_t nlen = (size_t)(colon - data);
    const char *v = colon + 1, *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    char *name = strndup(data, nlen), *value = strndup(v, (size_t)(end - v));
    if (!name || !value) {
        free(name);
        free(value);
        return n;
    }
    for (char *s = name; *s; s++)
        *s = (char)tolower((unsigned char)*s);
    resp->header_names[resp->n_headers] = name;
    resp->header_values[resp->n_headers++] = value;
    return n;
}

/* The URL to ask for: the base joined with a relative path, and the host replaced by
 * server_name when one is configured. Returns a malloc'd string or NULL. */
static char *request_url(const struct http_client *c, const char *url) {
    char *full;
    if (strncasecmp(url, "https://", 8) == 0 || strncasecmp(url, "http://", 7) == 0)
        full = strdup(url);
    else {
        size_t bl = strlen(c->base_url);
        bool bslash = bl && c->base_url[bl - 1] == '/';
        while (bslash && *url == '/')
            url++;
        if (asprintf(&full, "%s%s%s", c->base_url, bslash || *url == '/' ? "" : "/", url) < 0)
            full = NULL;
    }
    if (!full || !c->server_name)
        return full;
    CURLU *u = curl_url();
    char *host = NULL, *out = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, full, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && strcasecmp(host, c->base_host) == 0 &&
        curl_url_set(u, CURLUPART_HOST, c->server_name, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK) {
        free(full);
        full = strdup(out);
    }
    curl_free(host);
    curl_free(out);
    curl_url_cleanup(u);
    return full;
}

static int map_curl_error(CURLcode cc, const struct recv *rv) {
    if (rv->over_cap)
        return -EMSGSIZE;
    if (rv->oom)
        return -ENOMEM;
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return -EHOSTUNREACH;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT: return -EINVAL;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
        return -EPROTO;
    case CURLE_OUT_OF_MEMORY: return -ENOMEM;
    default: return -EIO;
    }
}

/* The request's header lines, with "Expect:" first (no 100-continue round trip), or NULL
 * when out of memory. Each line may hold a token: the temporary copy is wiped, and so must
 * the list's (wipe_headers()). */
static struct curl_slist *request_headers(const struct http_request *req) {
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");

    for (size_t i = 0; hdrs && i < req->n_headers; i++) {
        char *line;
        if (asprintf(&line, "%s: %s", req->headers[i].name, req->headers[i].value) < 0) {
            curl_slist_free_all(hdrs);
            return NULL;
        }
        struct curl_slist *n = curl_slist_append(hdrs, line);
        wipe_free(line, strlen(line));
        if (!n)
            curl_slist_free_all(hdrs);
        hdrs = n;
    }
    return hdrs;
}

/* Wipes and frees the header lines (curl kept its own copies of ours: tokens). */
static void wipe_headers(struct curl_slist *hdrs) {
    for (struct curl_slist *s = hdrs; s; s = s->next)
        explicit_bzero(s->data, strlen(s->data));
    curl_slist_free_all(hdrs);
}

/* Sets the handle up for one request: method, body, headers, timeouts, proxy, and the
 * callbacks that fill rv. */
static void request_setopts(CURL *h, const struct http_client *c, const struct http_request *req,
                            const char *url, struct curl_slist *hdrs, struct recv *rv) {
    const char *method = req->method ? req->method : "GET";
    uint64_t timeout = req->timeout_usec ? req->timeout_usec : c->timeout_usec;

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);   /* resets any earlier POST */
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
    if (req->body || strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout / 1000));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout / 1000));
    curl_easy_setopt(h, CURLOPT_NOPROXY, req->no_proxy ? "*" : NULL);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, rv);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, rv);
}

/* Runs the request set up on c's handle; counts the connections it opened, and unhooks
 * the header lines and body from the handle afterwards. */
static CURLcode perform(struct http_client *c, struct curl_slist *hdrs) {
    CURL *h = c->curl;
    long nconn = 0;

    c->errbuf[0] = '\0';
    CURLcode cc = curl_easy_perform(h);
    if (curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK)
        c->connections += nconn;
    wipe_headers(hdrs);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    return cc;
}

/* A failed transfer as -errno (map_curl_error), with err naming the request. */
static int transfer_error(const struct http_client *c, const struct http_request *req, CURLcode cc,
                          const struct recv *rv, char *err, size_t errlen) {
    const char *method = req->method ? req->method : "GET";
    int r = map_curl_error(cc, rv);

    if (r == -EMSGSIZE)
        snprintf(err, errlen, "%s %s: response body larger than %zu bytes", method, req->url, rv->max_body);
    else
        snprintf(err, errlen, "%s %s: %s%s%s", method, req->url, curl_easy_strerror(cc),
                 c->errbuf[0] ? ": " : "", c->errbuf);
    return r;
}

int http_request(struct http_client *c, const struct http_request *req, struct http_response *ret,
                 char *err, size_t errlen) {
    struct http_response resp = { 0 };
    struct recv rv = { .resp = &resp, .max_body = req->max_body ? req->max_body : HTTP_DEFAULT_MAX_BODY };
    struct curl_slist *hdrs;
    int r;

    char *url = request_url(c, req->url);
    if (!url) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* Absolute URLs the caller picked (a standby redirect, a nextLink) obey the same rule. */
    if ((r = http_url_check_flags(url, c->flags, err, errlen)) < 0) {
        free(url);
        return r;
    }
    if (!(hdrs = request_headers(req))) {
        free(url);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    request_setopts(c->curl, c, req, url, hdrs, &rv);
    CURLcode cc = perform(c, hdrs);
    free(url);
    if (cc != CURLE_OK) {
        http_response_clear(&resp);
        return transfer_error(c, req, cc, &rv, err, errlen);
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp.status);
    if (!resp.body && !(resp.body = calloc(1, 1))) {
        http_response_clear(&resp);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    *ret = resp;
    return 0;
}
