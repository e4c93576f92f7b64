/* enumstr: one table type for the words a config key takes and the numbers they stand for.
 *
 * A table is an array of { name, value } ending with { NULL, 0 }. enumstr_from() looks a
 * word up (exact, case-sensitive), enumstr_to() the other way, enumstr_list() writes the
 * words for a message ("debug, info or err", or quoted: "\"a\", \"b\" or \"c\"").
 * Pure functions on constant tables: any thread may call them.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct enumstr {
    const char *name;
    int value;
};

/* 0 and *ret, or -EINVAL when s is not in the table (or NULL). */
int enumstr_from(const struct enumstr *table, const char *s, int *ret);
/* The first name for value, or NULL. */
const char *enumstr_to(const struct enumstr *table, int value);
/* "a, b or c" into buf (cut short if it does not fit); returns buf. */
const char *enumstr_list(const struct enumstr *table, bool quoted, char *buf, size_t size);
