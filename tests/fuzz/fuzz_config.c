/* libFuzzer: the config loader (common/config) on arbitrary text, host keys only. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct config *cfg = NULL;
    char err[512];
    if (config_load_string(text, "fuzz.conf", "/nonexistent", NULL, NULL, &cfg, err, sizeof err) == 0)
        config_free(cfg);
    free(text);
    return 0;
}
