/* jwt: see jwt.h. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonload.h"
#include "jwt.h"

/* 9999-12-31T23:59:59Z: beyond it a date is nonsense (and near int64 overflow as usec). */
#define JWT_TIME_MAX 253402300799LL

static int b64url_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int jwt_base64url_decode(const char *in, size_t len, unsigned char *out, size_t outcap,
                         size_t *ret_len) {
    /* Up to two '=' of padding, only at the end, only where padding can be. */
    size_t pad = 0;
    while (len > 0 && in[len - 1] == '=' && pad < 2) {
        len--;
        pad++;
    }
    if (pad && (len + pad) % 4 != 0)
        return -EINVAL;
    if (len % 4 == 1)
        return -EINVAL;   /* 6 bits cannot make a byte */
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > outcap)
        return -ENOBUFS;

    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Canonical encodings leave the unused low bits zero. */
    if (bits && acc != 0)
        return -EINVAL;
    *ret_len = o;
    return 0;
}

static void set_err(char *err, size_t errlen, const char *msg) {
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

/* Decodes one base64url segment into a JSON object. */
static int decode_part(const char *seg, size_t len, const char *what, json_t **ret, char *err,
                       size_t errlen) {
    char msg[128];
    if (len == 0) {
        snprintf(msg, sizeof msg, "empty %s", what);
        set_err(err, errlen, msg);
        return -EINVAL;
    }
    size_t cap = len / 4 * 3 + 3, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int r = jwt_base64url_decode(seg, len, buf, cap, &n);
    if (r < 0) {
        snprintf(msg, sizeof msg, "%s is not base64url", what);
        set_err(err, errlen, msg);
        explicit_bzero(buf, cap);
        free(buf);
        return -EINVAL;
    }
    /* JSON_REJECT_DUPLICATES: a claim must not mean two things to two readers.
     * jsonload_buf keeps none of jansson's error text, which would quote the token. */
    json_t *j = jsonload_buf(buf, n, JSON_REJECT_DUPLICATES, NULL);
    explicit_bzero(buf, cap);
    free(buf);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        snprintf(msg, sizeof msg, "%s is not a JSON object", what);
        set_err(err, errlen, msg);
        return -EINVAL;
    }
    *ret = j;
    return 0;
}

int jwt_decode(const char *token, size_t len, struct jwt *ret, char *err, size_t errlen) {
    if (!token) {
        set_err(err, errlen, "no token");
        return -EINVAL;
    }
    if (len > JWT_MAX_LEN) {
        set_err(err, errlen, "token longer than the limit");
        return -E2BIG;
    }
    /* Exactly two dots: header.payload.signature. */
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) {
        set_err(err, errlen, "not a compact JWS (header.payload.signature)");
        return -EINVAL;
    }
    /* The signature is not checked, but it must at least be base64url text. */
    for (const char *p = d2 + 1; p < token + len; p++)
        if (b64url_value((unsigned char)*p) < 0) {
            set_err(err, errlen, "signature is not base64url");
            return -EINVAL;
        }

    json_t *header = NULL, *claims = NULL;
    int r = decode_part(token, (size_t)(d1 - token), "header", &header, err, errlen);
    if (r < 0)
        return r;
    r = decode_part(d1 + 1, (size_t)(d2 - d1 - 1), "payload", &claims, err, errlen);
    if (r < 0) {
        json_decref(header);
        return r;
    }
    /* An encrypted token (JWE) has "enc"; a nested one has cty "JWT": neither is ours. */
    if (json_object_get(header, "enc")) {
        json_decref(header);
        json_decref(claims);
        set_err(err, errlen, "encrypted tokens (JWE) are not supported");
        return -EINVAL;
    }
    ret->header = header;
    ret->claims = claims;
    return 0;
}

void jwt_clear(struct jwt *j) {
    if (!j)
        return;
    json_decref(j->header);
    json_decref(j->claims);
    j->header = j->claims = NULL;
}

int jwt_claim_string(const struct jwt *j, const char *name, const char **ret) {
    json_t *v = j && j->claims ? json_object_get(j->claims, name) : NULL;
    if (!v)
        return -ENOENT;
    if (!json_is_string(v))
        return -EINVAL;
    *ret = json_string_value(v);
    return 0;
}

int jwt_claim_time(const struct jwt *j, const char *name, int64_t *ret) {
    json_t *v = j && j->claims ? json_object_get(j->claims, name) : NULL;
    if (!v)
        return -ENOENT;
    if (json_is_integer(v)) {
        json_int_t t = json_integer_value(v);
        if (t < 0 || t > JWT_TIME_MAX)
            return -EINVAL;
        *ret = (int64_t)t;
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < 0 || d > (double)JWT_TIME_MAX)
            return -EINVAL;
        *ret = (int64_t)d;   /* d >= 0: truncation is floor */
        return 0;
    }
    return -EINVAL;
}
