/* jwt: read the claims of a JSON Web Token without verifying it (RFC 7519, RFC 7515).
 *
 * We never trust a token for anything but scheduling and naming: Redis (or Entra ID)
 * checks the signature. What we read is `oid` (the user name Azure Redis expects), `exp`
 * (published as expires_at, and when to refresh), `iat` and `nbf`.
 *
 * jwt_decode() takes bytes and returns parsed objects: no I/O, no global state, every
 * allocation bounded by JWT_MAX_LEN, so it can be fuzzed. Only the compact JWS form is
 * accepted (three base64url segments, the first two JSON objects); a JWE (five segments)
 * or anything else is -EINVAL. The signature segment is checked for alphabet only.
 *
 * A token is a bearer secret: the decoded buffers are wiped before they are freed (and
 * jansson wipes its own blocks once secret_init() ran), and error messages never quote
 * the input. Any thread. Returns 0 or -errno: -EINVAL malformed, -E2BIG over JWT_MAX_LEN,
 * -ENOMEM.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define JWT_MAX_LEN (32 * 1024)

struct jwt {
    json_t *header;   /* the JOSE header, a JSON object */
    json_t *claims;   /* the claims set, a JSON object */
};

/* Decodes token[0..len). On success fills *ret (free with jwt_clear); on failure *ret is
 * untouched and err (when not NULL) says what is wrong without quoting the token. */
int jwt_decode(const char *token, size_t len, struct jwt *ret, char *err, size_t errlen);
/* Frees what jwt_decode() filled; a zeroed struct is accepted. */
void jwt_clear(struct jwt *j);

/* A string claim: 0 and *ret (borrowed from j), -ENOENT absent, -EINVAL not a string. */
int jwt_claim_string(const struct jwt *j, const char *name, const char **ret);
/* A NumericDate claim (integer or fractional seconds since the epoch, floored):
 * 0 and *ret, -ENOENT absent, -EINVAL not a number or outside [0, year 9999]. */
int jwt_claim_time(const struct jwt *j, const char *name, int64_t *ret);

/* base64url (RFC 4648 §5) without padding; trailing '=' padding is tolerated, any other
 * character outside the alphabet is -EINVAL, as are non-zero leftover bits. Writes at
 * most outcap bytes (-ENOBUFS when too small; len / 4 * 3 + 2 always suffices). */
int jwt_base64url_decode(const char *in, size_t len, unsigned char *out, size_t outcap,
                         size_t *ret_len);
