/* jsonload: see jsonload.h. */
#include <string.h>

#include "jsonload.h"

/* Covers the frames json_loadb() and its error formatting use (the parser recurses once
 * per nesting level; store answers nest a few levels). Only run after a failure. */
#define JSONLOAD_STACK_WIPE 32768

/* Overwrites the stack below the caller's frame, where the parser's frames were. */
static __attribute__((noinline)) void wipe_stack_below(void) {
    unsigned char area[JSONLOAD_STACK_WIPE];
    explicit_bzero(area, sizeof area);
    __asm__ volatile("" : : "r"(area) : "memory");
}

const char *jsonload_reason(enum json_error_code code) {
    switch (code) {
    case json_error_out_of_memory: return "out of memory";
    case json_error_stack_overflow: return "nested too deeply";
    case json_error_invalid_utf8: return "invalid UTF-8";
    case json_error_premature_end_of_input: return "unexpected end of input";
    case json_error_end_of_input_expected: return "data after the JSON value";
    case json_error_invalid_syntax: return "invalid syntax";
    case json_error_null_character: return "\\u0000 in a string";
    case json_error_null_byte_in_key: return "\\u0000 in a key";
    case json_error_duplicate_key: return "duplicate key";
    case json_error_numeric_overflow: return "number out of range";
    default: return "invalid JSON";
    }
}

json_t *jsonload_buf(const void *data, size_t len, size_t flags, struct jsonload_error *ret_err) {
    json_error_t jerr;
    json_t *root = json_loadb(data ? data : "", data ? len : 0, flags, &jerr);
    if (!root) {
        if (ret_err)
            *ret_err = (struct jsonload_error){
                .line = jerr.line, .column = jerr.column, .position = (size_t)jerr.position,
                .code = json_error_code(&jerr), .reason = jsonload_reason(json_error_code(&jerr)),
            };
        wipe_stack_below();
    }
    explicit_bzero(&jerr, sizeof jerr);
    return root;
}
