/* jsonload: jansson's json_loadb() without keeping its error text.
 *
 * jansson writes a message into json_error_t.text that quotes the bytes around the error
 * ("invalid token near 'hunter2'"), and formats it in buffers on its own stack. When the
 * input is a store's answer or a credential file, those bytes may be part of a password.
 * jsonload_buf() keeps only where it failed and a generic reason, wipes the json_error_t,
 * and overwrites the stack the parser used before it returns, so no copy of the quoted
 * input stays behind (heap blocks are wiped by the allocator secret_init() installs).
 *
 * Any thread; no state. The reason is a static string.
 */
#pragma once
#include <stddef.h>

#include <jansson.h>

struct jsonload_error {
    int line;              /* 1-based, as jansson counts; -1 when unknown */
    int column;
    size_t position;       /* bytes read before the error */
    const char *reason;    /* generic: "invalid syntax", "invalid UTF-8", ... never input */
    enum json_error_code code;
};

/* json_loadb(data, len, flags). NULL data is read as empty. On failure returns NULL and,
 * when ret_err is not NULL, fills it. */
json_t *jsonload_buf(const void *data, size_t len, size_t flags, struct jsonload_error *ret_err);

/* The generic reason for a jansson error code. */
const char *jsonload_reason(enum json_error_code code);
