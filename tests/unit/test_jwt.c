/* Unit tests of common/jwt: base64url, compact JWS decoding, claim getters, and a
 * deterministic mutation run (the decoder must refuse garbage without crashing). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jwt.h"

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encodes without padding into out (NUL-terminated). */
static void b64url_encode(const char *in, size_t len, char *out) {
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | (unsigned char)in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64url_alphabet[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[o++] = b64url_alphabet[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

/* header.payload.signature from two JSON texts. */
static char *make_token(const char *header, const char *payload, const char *sig) {
    char *t = malloc(strlen(header) * 2 + strlen(payload) * 2 + strlen(sig) + 8);
    b64url_encode(header, strlen(header), t);
    strcat(t, ".");
    b64url_encode(payload, strlen(payload), t + strlen(t));
    strcat(t, ".");
    strcat(t, sig);
    return t;
}

static const char *HDR = "{\"typ\":\"JWT\",\"alg\":\"RS256\",\"kid\":\"k1\"}";

static void test_base64url_rfc4648_vectors(void **st) {
    static const struct { const char *enc, *dec; } v[] = {
        { "", "" }, { "Zg", "f" }, { "Zm8", "fo" }, { "Zm9v", "foo" }, { "Zm9vYg", "foob" },
        { "Zm9vYmE", "fooba" }, { "Zm9vYmFy", "foobar" }, { "Zg==", "f" }, { "Zm8=", "fo" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        unsigned char out[16];
        size_t n = 99;
        assert_int_equal(jwt_base64url_decode(v[i].enc, strlen(v[i].enc), out, sizeof out, &n), 0);
        assert_int_equal(n, strlen(v[i].dec));
        assert_memory_equal(out, v[i].dec, n);
    }
}

static void test_base64url_uses_the_url_alphabet(void **st) {
    unsigned char out[8];
    size_t n;
    /* 0xfb 0xff 0xbf is "-_-_" in base64url and "+/+/" in standard base64. */
    assert_int_equal(jwt_base64url_decode("-_-_", 4, out, sizeof out, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(out[1], 0xff);
    assert_int_equal(out[2], 0xbf);
    assert_int_equal(jwt_base64url_decode("+/+/", 4, out, sizeof out, &n), -EINVAL);
    assert_int_equal(jwt_base64url_decode("Zm 9", 4, out, sizeof out, &n), -EINVAL);
}

static void test_base64url_refuses_impossible_lengths_and_bits(void **st) {
    unsigned char out[8];
    size_t n;
    assert_int_equal(jwt_base64url_decode("Z", 1, out, sizeof out, &n), -EINVAL);
    assert_int_equal(jwt_base64url_decode("Zm9vY", 5, out, sizeof out, &n), -EINVAL);
    /* "Zh" has non-zero leftover bits (canonical is "Zg"). */
    assert_int_equal(jwt_base64url_decode("Zh", 2, out, sizeof out, &n), -EINVAL);
    /* Padding in the wrong place or too much of it. */
    assert_int_equal(jwt_base64url_decode("Zg=", 3, out, sizeof out, &n), -EINVAL);
    assert_int_equal(jwt_base64url_decode("Z===", 4, out, sizeof out, &n), -EINVAL);
    assert_int_equal(jwt_base64url_decode("Zg==Zg==", 8, out, sizeof out, &n), -EINVAL);
}

static void test_base64url_never_writes_past_outcap(void **st) {
    unsigned char out[4] = { 0xaa, 0xaa, 0xaa, 0xaa };
    size_t n;
    assert_int_equal(jwt_base64url_decode("Zm9vYmFy", 8, out, 3, &n), -ENOBUFS);
    assert_int_equal(out[3], 0xaa);
    assert_int_equal(jwt_base64url_decode("Zm9v", 4, out, 3, &n), 0);
    assert_int_equal(n, 3);
}

static void test_decode_reads_entra_claims(void **st) {
    char *t = make_token(HDR,
                         "{\"aud\":\"https://redis.azure.com\",\"iss\":\"https://sts.windows.net/t/\","
                         "\"iat\":1700000000,\"nbf\":1700000000,\"exp\":1700086400,"
                         "\"oid\":\"6f1c2d3e-0000-4000-8000-00000000abcd\",\"tid\":\"t\"}",
                         "c2lnbmF0dXJl");
    struct jwt j = { 0 };
    char err[128] = "";
    assert_int_equal(jwt_decode(t, strlen(t), &j, err, sizeof err), 0);
    const char *oid = NULL;
    int64_t exp = 0, nbf = 0, iat = 0;
    assert_int_equal(jwt_claim_string(&j, "oid", &oid), 0);
    assert_string_equal(oid, "6f1c2d3e-0000-4000-8000-00000000abcd");
    assert_int_equal(jwt_claim_time(&j, "exp", &exp), 0);
    assert_int_equal(exp, 1700086400);
    assert_int_equal(jwt_claim_time(&j, "nbf", &nbf), 0);
    assert_int_equal(nbf, 1700000000);
    assert_int_equal(jwt_claim_time(&j, "iat", &iat), 0);
    assert_int_equal(iat, 1700000000);
    assert_string_equal(json_string_value(json_object_get(j.header, "alg")), "RS256");
    jwt_clear(&j);
    assert_null(j.claims);
    free(t);
}

static void test_decode_accepts_unsigned_and_padded_tokens(void **st) {
    /* alg "none" has an empty signature; some encoders pad segments. */
    char *t = make_token("{\"alg\":\"none\"}", "{\"exp\":5}", "");
    struct jwt j = { 0 };
    assert_int_equal(jwt_decode(t, strlen(t), &j, NULL, 0), 0);
    jwt_clear(&j);
    free(t);
    /* {"a":1} is eyJhIjoxfQ (10 chars): "==" padding makes it 12. */
    const char *padded = "eyJhbGciOiJub25lIn0.eyJhIjoxfQ==.";
    assert_int_equal(jwt_decode(padded, strlen(padded), &j, NULL, 0), 0);
    jwt_clear(&j);
}

static void test_claim_time_accepts_integers_and_fractions(void **st) {
    char *t = make_token(HDR, "{\"a\":1700000000.9,\"b\":-1,\"c\":\"1700000000\",\"d\":1e300,"
                              "\"e\":253402300800,\"f\":0}", "");
    struct jwt j = { 0 };
    int64_t v = 42;
    assert_int_equal(jwt_decode(t, strlen(t), &j, NULL, 0), 0);
    assert_int_equal(jwt_claim_time(&j, "a", &v), 0);
    assert_int_equal(v, 1700000000);
    assert_int_equal(jwt_claim_time(&j, "b", &v), -EINVAL);
    assert_int_equal(jwt_claim_time(&j, "c", &v), -EINVAL);   /* a string is not a NumericDate */
    assert_int_equal(jwt_claim_time(&j, "d", &v), -EINVAL);
    assert_int_equal(jwt_claim_time(&j, "e", &v), -EINVAL);
    assert_int_equal(jwt_claim_time(&j, "f", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(jwt_claim_time(&j, "missing", &v), -ENOENT);
    const char *s;
    assert_int_equal(jwt_claim_string(&j, "a", &s), -EINVAL);
    assert_int_equal(jwt_claim_string(&j, "missing", &s), -ENOENT);
    jwt_clear(&j);
    free(t);
}

static void expect_refused(const char *t, size_t len, int want) {
    struct jwt j = { .header = NULL, .claims = NULL };
    char err[128] = "";
    assert_int_equal(jwt_decode(t, len, &j, err, sizeof err), want);
    assert_null(j.claims);
    assert_true(err[0] != '\0');
}

static void test_decode_refuses_malformed_tokens(void **st) {
    expect_refused("", 0, -EINVAL);
    expect_refused("abc", 3, -EINVAL);
    expect_refused("eyJhIjoxfQ.eyJhIjoxfQ", 21, -EINVAL);          /* two segments */
    expect_refused("eyJhIjoxfQ.eyJhIjoxfQ.x.y.z", 27, -EINVAL);    /* JWE shape */
    expect_refused(".eyJhIjoxfQ.", 12, -EINVAL);                   /* empty header */
    expect_refused("eyJhIjoxfQ..", 12, -EINVAL);                   /* empty payload */
    expect_refused("eyJhIjoxfQ.eyJhIjoxfQ.sig+", 26, -EINVAL);     /* signature alphabet */
    char *t = make_token(HDR, "[1,2]", "");
    expect_refused(t, strlen(t), -EINVAL);                         /* payload not an object */
    free(t);
    t = make_token(HDR, "{\"exp\":1,\"exp\":2}", "");
    expect_refused(t, strlen(t), -EINVAL);                         /* duplicate claim */
    free(t);
    t = make_token(HDR, "{\"exp\":1", "");
    expect_refused(t, strlen(t), -EINVAL);
    free(t);
    t = make_token("{\"alg\":\"RSA-OAEP\",\"enc\":\"A256GCM\"}", "{\"exp\":1}", "");
    expect_refused(t, strlen(t), -EINVAL);
    free(t);
    /* A NUL inside the payload JSON is not a silent truncation. */
    char nul[] = "{\"a\":1}\0{\"b\":2}";
    char enc[64], tok[160];
    b64url_encode(nul, sizeof nul - 1, enc);
    snprintf(tok, sizeof tok, "eyJhIjoxfQ.%s.", enc);
    expect_refused(tok, strlen(tok), -EINVAL);
}

static void test_decode_refuses_oversized_tokens(void **st) {
    size_t n = JWT_MAX_LEN + 1;
    char *t = malloc(n);
    memset(t, 'A', n);
    expect_refused(t, n, -E2BIG);
    free(t);
}

static void test_errors_never_quote_the_token(void **st) {
    const char *marker = "SECRET-MARKER-7f3a";
    char payload[128];
    snprintf(payload, sizeof payload, "{\"x\":\"%s\" oops}", marker);
    char *t = make_token(HDR, payload, "");
    struct jwt j = { 0 };
    char err[256] = "";
    assert_int_equal(jwt_decode(t, strlen(t), &j, err, sizeof err), -EINVAL);
    assert_null(strstr(err, marker));
    assert_null(strstr(err, "oops"));
    free(t);
}

static void test_clear_accepts_an_empty_struct(void **st) {
    struct jwt j = { 0 };
    jwt_clear(&j);
    jwt_clear(NULL);
}

/* Deterministic mutations of a valid token: flips, truncations, insertions. Every
 * result is a clean accept or a clean refusal (ASan/UBSan watch the rest). */
static void test_mutated_tokens_never_crash(void **st) {
    char *base = make_token(HDR, "{\"oid\":\"o\",\"exp\":1700086400,\"nbf\":1,\"iat\":1,"
                                 "\"groups\":[\"a\",\"b\"],\"n\":{\"m\":[1,2.5,null,true]}}",
                            "c2lnbmF0dXJlLWJ5dGVz");
    size_t blen = strlen(base);
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    char buf[1024];
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        size_t len = blen;
        memcpy(buf, base, blen);
        unsigned edits = 1 + (unsigned)(rng % 4);
        for (unsigned e = 0; e < edits; e++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            size_t pos = (size_t)(rng >> 8) % (len ? len : 1);
            switch (rng % 4) {
            case 0: buf[pos] = (char)(rng >> 24); break;                      /* any byte */
            case 1: buf[pos] = b64url_alphabet[(rng >> 32) % 64]; break;      /* valid char */
            case 2: len = pos; break;                                          /* truncate */
            case 3:
                if (len + 1 < sizeof buf) {
                    memmove(buf + pos + 1, buf + pos, len - pos);
                    buf[pos] = (rng >> 40) & 1 ? '.' : '=';
                    len++;
                }
                break;
            }
        }
        struct jwt j = { 0 };
        int r = jwt_decode(buf, len, &j, NULL, 0);
        assert_true(r == 0 || r == -EINVAL);
        if (r == 0) {
            int64_t t;
            const char *s;
            (void)jwt_claim_time(&j, "exp", &t);
            (void)jwt_claim_string(&j, "oid", &s);
            accepted++;
            jwt_clear(&j);
        }
    }
    /* Some mutations keep the token valid (a changed signature character). */
    assert_true(accepted > 0);
    free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64url_rfc4648_vectors),
        cmocka_unit_test(test_base64url_uses_the_url_alphabet),
        cmocka_unit_test(test_base64url_refuses_impossible_lengths_and_bits),
        cmocka_unit_test(test_base64url_never_writes_past_outcap),
        cmocka_unit_test(test_decode_reads_entra_claims),
        cmocka_unit_test(test_decode_accepts_unsigned_and_padded_tokens),
        cmocka_unit_test(test_claim_time_accepts_integers_and_fractions),
        cmocka_unit_test(test_decode_refuses_malformed_tokens),
        cmocka_unit_test(test_decode_refuses_oversized_tokens),
        cmocka_unit_test(test_errors_never_quote_the_token),
        cmocka_unit_test(test_clear_accepts_an_empty_struct),
        cmocka_unit_test(test_mutated_tokens_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
