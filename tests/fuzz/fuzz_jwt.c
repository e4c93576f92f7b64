/* libFuzzer: JWT claim decoding (common/jwt) must take any token bytes. */
#include <stddef.h>
#include <stdint.h>
#include "jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct jwt j;
    char err[256];
    if (jwt_decode((const char *)data, size, &j, err, sizeof err) == 0) {
        const char *oid;
        int64_t exp;
        (void)jwt_claim_string(&j, "oid", &oid);
        (void)jwt_claim_time(&j, "exp", &exp);
        jwt_clear(&j);
    }
    return 0;
}
