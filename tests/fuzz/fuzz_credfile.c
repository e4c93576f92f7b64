/* libFuzzer: the credential file parser (common/credfile) must take any bytes. */
#include <stddef.h>
#include <stdint.h>
#include "credfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init)
        init = secret_init(0) || 1;
    struct credfile cf = { 0 };
    char err[256];
    if (credfile_parse((const char *)data, size, &cf, err, sizeof err) == 0) {
        struct secret *out = NULL;
        /* What parses must format again. */
        if (credfile_format_json(&cf, &out) == 0)
            secret_free(out);
        credfile_clear(&cf);
    }
    return 0;
}
