/* endpoint: the one parser of a Redis endpoint as the configuration writes it.
 *
 *   host:port          a DNS name or IPv4 address ([A-Za-z0-9._-], at most 253 bytes)
 *   [v6addr]:port      an IPv6 literal, optionally with a %zone
 *   unix:/abs/path     a unix socket (an absolute path that fits in sun_path)
 *
 * Ports are 1..65535, written in decimal. A URL (redis://, rediss://, any scheme://) is
 * not an endpoint: the reason names the host:port to write instead, and that TLS is the
 * credential's `tls = true`. endpoint_parse() is pure (no DNS, no I/O); any thread.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum endpoint_kind { ENDPOINT_TCP, ENDPOINT_UNIX };

struct endpoint {
    enum endpoint_kind kind;
    char host[256];          /* TCP: name or address literal (no brackets) */
    uint16_t port;
    char path[108];          /* UNIX */
};

/* Returns 0 and *ret, or -EINVAL with *ret untouched and, when ret_why is not NULL, a
 * static phrase that completes "endpoint \"X\" ..." (e.g. "needs a port (host:port)"). */
int endpoint_parse(const char *s, struct endpoint *ret, const char **ret_why);
/* A host as a node may advertise it (CLUSTER SHARDS / SLOTS): a name or IPv4 address of
 * the grammar's characters, or an IPv6 literal without brackets. s[0..len). */
bool endpoint_host_valid(const char *s, size_t len);
/* "host:port", "[::1]:port" or "unix:/path" into buf; returns buf. */
const char *endpoint_format(const struct endpoint *ep, char *buf, size_t size);
