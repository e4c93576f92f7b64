/* libFuzzer target for the credential file parser of libredis-creds (parse_doc: bytes in,
 * snapshot out, no I/O). Build with -DREDIS_CREDS_FUZZ=ON and clang:
 *
 *   CC=clang cmake -S . -B build-fuzz -DREDIS_CREDS_FUZZ=ON && cmake --build build-fuzz \
 *       --target fuzz_client_credfile
 *   mkdir -p /tmp/corpus && build-fuzz/client/fuzz_client_credfile -max_total_time=60 /tmp/corpus client/fuzz/corpus
 *
 * The parser is static, so the library's source is included here. */
#include "../redis_creds.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct rc_snapshot *s = NULL;
    if (size > RC_MAX_FILE)
        return 0;
    if (parse_doc((const char *)data, size, "cache", &s) == 0) {
        /* what rc_get promises its callers */
        const struct rc_credential *c[2] = {&s->pub.current, s->pub.previous};
        for (int i = 0; i < 2 && c[i]; i++) {
            if (!c[i]->password || c[i]->password_len == 0 || !c[i]->version ||
                c[i]->password[c[i]->password_len] != 0 ||
                (c[i]->username && c[i]->username[0] == 0))
                __builtin_trap();
            (void)strlen(c[i]->version);
        }
        if (strcmp(s->pub.name, "cache") != 0)
            __builtin_trap();
        snap_free(s);
    }
    return 0;
}
