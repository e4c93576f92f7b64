/* fuzz_util: what the store-answer fuzz targets share. */
#pragma once
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "credfile.h"

/* Aborts (a finding) unless a parsed credential is one the published files can carry:
 * a non-empty password and a user name without NUL bytes or invalid UTF-8 (D6). */
static inline void fuzz_check_value(const struct secret *password, const char *username) {
    if (!password || secret_len(password) == 0 ||
        credfile_value_problem(secret_data(password), secret_len(password), NULL) ||
        (username && credfile_value_problem(username, strlen(username), NULL)))
        abort();
}

/* Runs bodies() on the input as bytes, then strings() on it as a C string. */
static inline int fuzz_run(const uint8_t *data, size_t size, void (*bodies)(const char *, size_t),
                           void (*strings)(const char *)) {
    static int init;
    if (!init)
        init = secret_init(0) || 1;
    bodies((const char *)data, size);
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    strings(s);
    free(s);
    return 0;
}
