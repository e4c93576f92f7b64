/* conftext: the text libconfig parses, made from a configuration file and its @includes.
 *
 * libconfig 1.5 (Debian 12) gets two things wrong for us, and this module is where we
 * work around them, before libconfig sees the text:
 *
 *  - @include: it prepends include_dir to every include path, absolute ones too.
 *    conftext_expand() splices included files in itself (a relative path against
 *    include_dir, an absolute one as is; CONFTEXT_INCLUDE_DEPTH_MAX levels), and keeps a
 *    table that conftext_map_line() uses to map a line of the expanded text back to the
 *    file and line it came from.
 *  - Integers: its scanner reads a literal with atoi(), so `3000000000` silently becomes
 *    -1294967296 and `0640` is decimal. While expanding, the text is lexed by libconfig's
 *    own token rules (same longest match), and every integer literal is kept as written,
 *    in document order: each makes exactly one integer setting, so the i-th integer
 *    setting of the parsed tree is ints[i]. config.c checks the range on those.
 *
 * The input is bounded: CONFTEXT_FILE_MAX per file, CONFTEXT_TOTAL_MAX in all. Pure but
 * for reading the files; one struct conftext per load, no sharing.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFTEXT_FILE_MAX (1024 * 1024)
#define CONFTEXT_TOTAL_MAX (4 * 1024 * 1024)
#define CONFTEXT_INCLUDE_DEPTH_MAX 10

/* An integer literal as written in the text. */
struct conftext_int {
    char text[32];       /* as written (cut), for messages */
    int64_t value;       /* what it says: decimal (even with a leading zero) or hex */
    int64_t octal_value; /* when `octal` */
    bool overflow;       /* does not fit in int64 */
    bool leading_zero;   /* decimal written with a leading zero ("0640") */
    bool octal;          /* leading_zero and every digit 0-7 */
    bool hex;
};

/* Lines [out_line, next segment) of the expanded text are lines src_line... of file. */
struct conftext_segment {
    unsigned out_line, file, src_line;
};

struct conftext {
    char **files;        /* [0] is the main file's display name, then each @include */
    size_t n_files;
    struct conftext_int *ints;
    size_t n_ints, cap_ints;
    struct conftext_segment *segs;
    size_t n_segs, cap_segs;
};

/* Expands `text` (the main file, shown as `display` in messages) into *ret_out (malloc'd,
 * NUL-terminated). With check_files, each included file must pass
 * secretfile_check_trusted(). 0, or -errno with err filled ("FILE:LINE: why"). t starts
 * zeroed; conftext_done() frees what it holds, also after a failure. */
int conftext_expand(struct conftext *t, const char *text, size_t len, const char *display,
                    const char *include_dir, bool check_files, char **ret_out, char *err,
                    size_t errlen);
/* Maps a line of the expanded text to an index into files and a line of that file. */
void conftext_map_line(const struct conftext *t, unsigned out_line, unsigned *ret_file,
                       unsigned *ret_line);
void conftext_done(struct conftext *t);

/* Reads a whole regular file of at most `max` bytes without NUL bytes; when `trusted`, the
 * file and its directory must also pass secretfile_check_trusted(). 0, or -errno with a
 * reason in why. */
int conftext_read_file(const char *path, size_t max, bool trusted, char **ret, size_t *ret_len,
                       char *why, size_t whylen);

/* A value for a message: quoted, printable ASCII as is, the rest as \xNN, cut short to
 * fit in size. Returns buf. */
const char *conftext_quote(const char *s, char *buf, size_t size);
