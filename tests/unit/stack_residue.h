/* stack_residue.h: does a byte string stay in the dead stack below the caller?
 *
 * Call a function that may leave `needle` behind in its (or its callees') frames, then
 * stack_residue_has(needle) from the same caller: its frame covers the same addresses,
 * and it copies what is there before it looks. Used to check that parsers wipe what
 * jansson formats on the stack (D3). Under AddressSanitizer frames move to redzoned
 * slots, so the check is skipped there (stack_residue_supported() is false). */
#pragma once
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#ifndef STACK_RESIDUE_SCAN
#define STACK_RESIDUE_SCAN (64 * 1024)
#endif

#if defined(__SANITIZE_ADDRESS__)
#define STACK_RESIDUE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STACK_RESIDUE_ASAN 1
#endif
#endif

static inline bool stack_residue_supported(void) {
#ifdef STACK_RESIDUE_ASAN
    return false;
#else
    return true;
#endif
}

static __attribute__((noinline)) bool stack_residue_has(const char *needle) {
    unsigned char area[STACK_RESIDUE_SCAN];
    unsigned char *p = area;
    /* The compiler must take area as written by someone: it is read as found. */
    __asm__ volatile("" : "+r"(p) : : "memory");
    unsigned char *copy = malloc(sizeof area);
    if (!copy)
        abort();
    memcpy(copy, p, sizeof area);
    bool found = memmem(copy, sizeof area, needle, strlen(needle)) != NULL;
    explicit_bzero(copy, sizeof area);
    free(copy);
    return found;
}

/* A parser's error `err` (an rc_error) is INVALID, names a line, does not quote `frag`,
 * and `frag` is not left on the stack below the caller. For cmocka tests. */
#define assert_no_residue(frag, err)                                       \
    do {                                                                   \
        assert_int_equal((err)->cls, RC_ERR_INVALID);                      \
        assert_null(strstr((err)->message, (frag)));                       \
        assert_non_null(strstr((err)->message, "line 1"));                 \
        if (stack_residue_supported())                                     \
            assert_false(stack_residue_has(frag));                         \
    } while (0)
