/* endpoint: see endpoint.h. */
#include "endpoint.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define HOST_NAME_MAX_ 253
#define ZONE_MAX 15   /* IF_NAMESIZE - 1 */

static bool is_host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

/* An IPv6 literal as getaddrinfo() takes it: inet_pton() accepts the address, and an
 * optional "%zone" is an interface name or index. */
static bool is_ipv6_literal(const char *s, size_t len) {
    char addr[INET6_ADDRSTRLEN];
    struct in6_addr a;
    const char *pct = memchr(s, '%', len);
    size_t alen = pct ? (size_t)(pct - s) : len;

    if (alen == 0 || alen >= sizeof addr)
        return false;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET6, addr, &a) != 1)
        return false;
    if (pct) {
        size_t zlen = len - alen - 1;
        if (zlen == 0 || zlen > ZONE_MAX)
            return false;
        for (size_t i = 0; i < zlen; i++)
            if (!is_host_char(pct[1 + i]))
                return false;
    }
    return true;
}

bool endpoint_host_valid(const char *s, size_t len) {
    if (len == 0 || len > HOST_NAME_MAX_)
        return false;
    if (memchr(s, ':', len))
        return is_ipv6_literal(s, len);
    for (size_t i = 0; i < len; i++)
        if (!is_host_char(s[i]))
            return false;
    return true;
}

static int parse_port(const char *s, uint16_t *ret) {
    unsigned v = 0;
    size_t n = 0;
    for (; s[n]; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= 5)
            return -EINVAL;
        v = v * 10 + (unsigned)(s[n] - '0');
    }
    if (n == 0 || v < 1 || v > 65535)
        return -EINVAL;
    *ret = (uint16_t)v;
    return 0;
}

/* scheme:// in front: what to say instead of parsing it as host:port. */
static const char *url_problem(const char *s) {
    const char *sep = strstr(s, "://");
    if (!sep)
        return NULL;
    for (const char *p = s; p < sep; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '+' || *p == '-' ||
              *p == '.'))
            return NULL;
    if (strncmp(s, "rediss://", 9) == 0)
        return "is a URL: write host:port without \"rediss://\", and set tls = true";
    if (strncmp(s, "redis://", 8) == 0)
        return "is a URL: write host:port without \"redis://\"";
    return "is a URL: write host:port, [address]:port or unix:/path";
}

static const char *parse_unix(const char *path, struct endpoint *ep) {
    size_t len = strlen(path);
    if (path[0] != '/')
        return "needs an absolute socket path (unix:/run/redis/redis.sock)";
    if (len >= sizeof ep->path)
        return "has a socket path too long for a unix socket";
    ep->kind = ENDPOINT_UNIX;
    memcpy(ep->path, path, len + 1);
    return NULL;
}

static const char *parse_tcp(const char *s, struct endpoint *ep) {
    const char *host, *colon;
    size_t hlen;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close == s + 1)
            return "is not [address]:port";
        if (close[1] != ':')
            return "needs a port ([address]:port)";
        host = s + 1;
        hlen = (size_t)(close - host);
        if (!is_ipv6_literal(host, hlen))
            return "has a bad IPv6 address in brackets";
        colon = close + 1;
    } else {
        if (s[0] == '/')
            return "needs unix: in front of a socket path (unix:/run/redis/redis.sock)";
        colon = strrchr(s, ':');
        if (!colon)
            return "needs a port (host:port)";
        if (colon == s)
            return "needs a host (host:port)";
        host = s;
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen))
            return "has an IPv6 address without brackets (use [address]:port)";
        for (size_t i = 0; i < hlen; i++)
            if (!is_host_char(host[i]))
                return "has a bad host name";
        if (hlen > HOST_NAME_MAX_)
            return "has a host name longer than 253 characters";
    }
    if (parse_port(colon + 1, &ep->port) < 0)
        return "has a bad port (1..65535)";
    ep->kind = ENDPOINT_TCP;
    memcpy(ep->host, host, hlen);
    ep->host[hlen] = '\0';
    return NULL;
}

int endpoint_parse(const char *s, struct endpoint *ret, const char **ret_why) {
    struct endpoint ep = { 0 };
    const char *why = NULL;

    if (!s || s[0] == '\0')
        why = "is empty";
    for (const char *p = s; !why && *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            why = "contains a space or control character";
    if (!why)
        why = url_problem(s);
    if (!why)
        why = strncmp(s, "unix:", 5) == 0 ? parse_unix(s + 5, &ep) : parse_tcp(s, &ep);
    if (why) {
        if (ret_why)
            *ret_why = why;
        return -EINVAL;
    }
    *ret = ep;
    return 0;
}

const char *endpoint_format(const struct endpoint *ep, char *buf, size_t size) {
    if (!buf || size == 0)
        return buf;
    if (!ep)
        snprintf(buf, size, "(none)");
    else if (ep->kind == ENDPOINT_UNIX)
        snprintf(buf, size, "unix:%.*s", (int)sizeof ep->path, ep->path);
    else if (memchr(ep->host, ':', strnlen(ep->host, sizeof ep->host)))
        snprintf(buf, size, "[%.*s]:%u", (int)sizeof ep->host, ep->host, (unsigned)ep->port);
    else
        snprintf(buf, size, "%.*s:%u", (int)sizeof ep->host, ep->host, (unsigned)ep->port);
    return buf;
}
