/* jsonload: see jsonload.h. */
#include <string.h>

#include "jsonload.h"

/* How much stack a failed parse may have used: jansson recurses once per nesting level
 * (two frames, about 70 bytes a level on amd64), a level takes at least one byte of
 * input, and it stops at JSON_PARSER_MAX_DEPTH (2048) levels. The error is formatted at
 * the deepest point, in buffers of a few hundred bytes under vsnprintf's frames. */
#define JSONLOAD_WIPE_BASE (16 * 1024)
#define JSONLOAD_WIPE_PER_LEVEL 128
#define JSONLOAD_MAX_DEPTH 2048

/* Overwrites `n` bytes of the stack below the caller's frame, where the parser's frames
 * were (n is bounded by the callers: at most 272 KiB). */
static __attribute__((noinline)) void wipe_stack_below(size_t n) {
    unsigned char area[n];
    explicit_bzero(area, n);
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
        size_t levels = (size_t)jerr.position < JSONLOAD_MAX_DEPTH ? (size_t)jerr.position : JSONLOAD_MAX_DEPTH;
        wipe_stack_below(JSONLOAD_WIPE_BASE + (levels + 1) * JSONLOAD_WIPE_PER_LEVEL);
    }
    explicit_bzero(&jerr, sizeof jerr);
    return root;
}
