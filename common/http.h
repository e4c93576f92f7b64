/* http: HTTPS requests to secret stores, over libcurl, with the project's safety rules.
 *
 * One struct http_client per source instance: one curl handle reused across requests,
 * so steady polling keeps its connection (and its TLS session) alive. A client is used
 * by one thread at a time (the host never runs a source's fetch concurrently).
 *
 * Rules (docs/design.md §14.4): a base URL must be https, or plain http only when its literal
 * host is a loopback address (127.0.0.0/8, ::1, localhost) or the IMDS address
 * 169.254.169.254. Redirects are never followed (the caller sees 3xx and decides), only
 * http and https are spoken, every request has a total timeout, and a response body over
 * max_body is an error (-EMSGSIZE) detected in the write callback, so a chunked body
 * cannot grow past it. Bodies are wiped when freed (they hold tokens and passwords);
 * header values marked secret are wiped from curl's lists. Nothing here logs.
 * libcurl is initialised on first use (http_client_new calls http_global_init, once per
 * copy of this module): libcurl >= 7.84 built thread-safe (Debian 12's 7.88 is) allows
 * that from any thread; on an older one, call http_global_init() before threads start.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_DEFAULT_MAX_BODY (1024 * 1024)
#define HTTP_MAX_HEADERS 64

struct http_tls {
    const char *ca_file, *ca_path, *cert_file, *key_file;
    const char *server_name;       /* certificate name to verify instead of the URL's host */
    bool insecure_skip_verify;
};

struct http_header {
    const char *name;
    const char *value;
    bool secret;                   /* wiped from curl's copy after the request */
};

struct http_request {
    const char *method;            /* "GET", "POST", "PUT", ... */
    const char *url;               /* absolute, or a path joined to the base URL */
    const struct http_header *headers;
    size_t n_headers;
    const void *body;              /* not copied; may be secret */
    size_t body_len;
    size_t max_body;               /* 0 = HTTP_DEFAULT_MAX_BODY */
    uint64_t timeout_usec;         /* 0 = the client's timeout */
    bool no_proxy;                 /* IMDS: never through a proxy */
};

struct http_response {
    long status;
    char *body;                    /* NUL-terminated; wiped by http_response_clear */
    size_t body_len;
    size_t n_headers;
    char *header_names[HTTP_MAX_HEADERS];    /* lower-cased */
    char *header_values[HTTP_MAX_HEADERS];
};

struct http_client;

/* curl_global_init, once. 0 or -EIO. */
int http_global_init(void);

/* Checks base_url against the rules above. 0 and *ret, or -EINVAL/-ENOMEM with err. */
int http_client_new(const char *base_url, const struct http_tls *tls, uint64_t timeout_usec,
                    struct http_client **ret, char *err, size_t errlen);

/* Also allow plain http to a link-local address (169.254.0.0/16). Only for an endpoint
 * the platform itself announced on the host (App Service's $IDENTITY_ENDPOINT on Linux
 * is http://169.254.x.x:8081/...), never for a URL from a config file or a server. */
#define HTTP_ALLOW_LINK_LOCAL (1u << 0)
int http_client_new_flags(const char *base_url, const struct http_tls *tls, uint64_t timeout_usec,
                          unsigned flags, struct http_client **ret, char *err, size_t errlen);
struct http_client *http_client_free(struct http_client *c);
const char *http_client_base_url(const struct http_client *c);
/* TCP connections opened so far (keep-alive accounting for tests and metrics). */
long http_client_connections(const struct http_client *c);

/* Performs one request. Returns 0 with *ret for any HTTP response (check ret->status),
 * or -errno for a transport failure: -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH,
 * -EMSGSIZE (body over max_body), -EPROTO (TLS or protocol), -EINVAL (URL refused). err
 * says what happened (never a header value or body). */
int http_request(struct http_client *c, const struct http_request *req, struct http_response *ret,
                 char *err, size_t errlen);
void http_response_clear(struct http_response *r);
/* Case-insensitive; NULL when absent. */
const char *http_response_header(const struct http_response *r, const char *name);

/* Plain-http policy of docs/design.md §14.4 for one URL: 0, or -EINVAL with err. */
int http_url_check(const char *url, char *err, size_t errlen);
int http_url_check_flags(const char *url, unsigned flags, char *err, size_t errlen);
/* True when a and b have the same scheme, host and port (for nextLink and LRO URLs). */
bool http_same_origin(const char *a, const char *b);
/* Retry-After: delta-seconds or an HTTP-date. 0 and *ret_usec, or -EINVAL. */
int http_retry_after_parse(const char *value, uint64_t *ret_usec);
