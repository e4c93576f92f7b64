/* enumstr: see enumstr.h. */
#include "enumstr.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int enumstr_from(const struct enumstr *table, const char *s, int *ret) {
    if (!table || !s)
        return -EINVAL;
    for (const struct enumstr *e = table; e->name; e++)
        if (strcmp(e->name, s) == 0) {
            *ret = e->value;
            return 0;
        }
    return -EINVAL;
}

const char *enumstr_to(const struct enumstr *table, int value) {
    for (const struct enumstr *e = table; e && e->name; e++)
        if (e->value == value)
            return e->name;
    return NULL;
}

const char *enumstr_list(const struct enumstr *table, bool quoted, char *buf, size_t size) {
    size_t n = 0, o = 0;
    if (!buf || size == 0)
        return buf;
    buf[0] = '\0';
    while (table && table[n].name)
        n++;
    for (size_t i = 0; i < n && o < size; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        const char *q = quoted ? "\"" : "";
        int w = snprintf(buf + o, size - o, "%s%s%s%s", sep, q, table[i].name, q);
        if (w < 0)
            break;
        o += (size_t)w;
    }
    return buf;
}
