/* conftext: see conftext.h. */
#include "conftext.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "secretfile.h"

#define QUOTE_MAX 160      /* a quoted value in a message */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need)
        n *= 2;
    void *q = reallocarray(*p, n, elem);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
static bool is_xdigit(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static int xdigit_value(char c) {
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return c - 'A' + 10;
}

const char *conftext_quote(const char *s, char *buf, size_t size) {
    size_t o = 0;
    if (size < 8) {
        if (size)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (o + 8 >= size) {
            buf[o++] = '.';
            buf[o++] = '.';
            buf[o++] = '.';
            break;
        }
        if (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
            buf[o++] = (char)*p;
        else
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", *p);
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

int conftext_read_file(const char *path, size_t max, bool trusted, char **ret, size_t *ret_len,
                     char *why, size_t whylen) {
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int r;

    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        r = -errno;
        set_err(why, whylen, "cannot open: %s", strerror(-r));
        return r;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        set_err(why, whylen, "cannot stat: %s", strerror(-r));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EINVAL;
        set_err(why, whylen, "not a regular file");
        goto fail;
    }
    if (trusted && (r = secretfile_check_trusted(path, &st, why, whylen)) < 0)
        goto fail;
    buf = malloc(max + 1);
    if (!buf) {
        r = -ENOMEM;
        set_err(why, whylen, "out of memory");
        goto fail;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, max + 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            set_err(why, whylen, "cannot read: %s", strerror(-r));
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max) {
            r = -EFBIG;
            set_err(why, whylen, "larger than %zu bytes", max);
            goto fail;
        }
    }
    if (memchr(buf, '\0', len)) {
        r = -EINVAL;
        set_err(why, whylen, "contains a NUL byte (not a text file)");
        goto fail;
    }
    buf[len] = '\0';
    close(fd);
    *ret = buf;
    *ret_len = len;
    return 0;
fail:
    free(buf);
    close(fd);
    return r;
}

/* ---- expanding @include and collecting integer literals ---------------------------- */

struct pp {
    struct conftext *st;
    char *out;
    size_t len, cap;
    unsigned out_line;         /* line of the expanded text being written, from 1 */
    size_t total;              /* bytes read from files */
    const char *include_dir;   /* NULL: relative paths as they are (against the cwd) */
    bool check_files;          /* config_load(): included files must be trusted too */
    char *err;
    size_t errlen;
};

static int pp_fail(struct pp *p, unsigned file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int pp_fail(struct pp *p, unsigned file, unsigned line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    set_err(p->err, p->errlen, "%s:%u: %s", p->st->files[file], line, msg);
    return -EINVAL;
}

static int pp_append(struct pp *p, const char *s, size_t n) {
    if (n == 0)
        return 0;
    if (p->len + n > CONFTEXT_TOTAL_MAX) {
        set_err(p->err, p->errlen, "%s: configuration larger than %d bytes with its includes",
                p->st->files[0], CONFTEXT_TOTAL_MAX);
        return -EFBIG;
    }
    if (grow((void **)&p->out, &p->cap, p->len + n + 1, 1) < 0)
        return -ENOMEM;
    memcpy(p->out + p->len, s, n);
    p->len += n;
    p->out[p->len] = '\0';
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n')
            p->out_line++;
    return 0;
}

static int pp_segment(struct pp *p, unsigned file, unsigned src_line) {
    struct conftext *st = p->st;
    if (grow((void **)&st->segs, &st->cap_segs, st->n_segs + 1, sizeof *st->segs) < 0)
        return -ENOMEM;
    st->segs[st->n_segs++] = (struct conftext_segment){ p->out_line, file, src_line };
    return 0;
}

static int add_file(struct conftext *st, const char *name, unsigned *ret) {
    char **f = reallocarray(st->files, st->n_files + 1, sizeof *st->files);
    if (!f)
        return -ENOMEM;
    st->files = f;
    if (!(f[st->n_files] = strdup(name)))
        return -ENOMEM;
    *ret = (unsigned)st->n_files++;
    return 0;
}

void conftext_map_line(const struct conftext *st, unsigned out_line, unsigned *ret_file,
                     unsigned *ret_line) {
    size_t lo = 0, hi = st->n_segs;   /* find the last segment starting at or before */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->segs[mid].out_line <= out_line)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || out_line == 0) {
        *ret_file = 0;
        *ret_line = out_line;
        return;
    }
    const struct conftext_segment *s = &st->segs[lo - 1];
    *ret_file = s->file;
    *ret_line = s->src_line + (out_line - s->out_line);
}

enum lit_kind { LIT_NONE, LIT_FLOAT, LIT_INT, LIT_INT64, LIT_HEX, LIT_HEX64 };

static size_t skip_digits(const char *s, size_t n, size_t i) {
    while (i < n && is_digit(s[i]))
        i++;
    return i;
}

/* [eE][-+]?[0-9]+ at i: the end, or 0 when there is none. */
static size_t match_exponent(const char *s, size_t n, size_t i) {
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-'))
            j++;
        size_t k = skip_digits(s, n, j);
        if (k > j)
            return k;
    }
    return 0;
}

/* The longest number token at s, by libconfig 1.5's scanner rules (lib/scanner.l):
 *   float     ([-+]?([0-9]*)?\.[0-9]*([eE][-+]?[0-9]+)?)|([-+]?([0-9]+)(\.[0-9]*)?[eE][-+]?[0-9]+)
 *   integer   [-+]?[0-9]+          integer64  [-+]?[0-9]+L(L)?
 *   hex       0[Xx][0-9A-Fa-f]+    hex64      0[Xx][0-9A-Fa-f]+L(L)?
 * Ties go to the earlier rule, as in flex (float, integer, integer64, hex, hex64). */
static enum lit_kind number_at(const char *s, size_t n, size_t *ret_len) {
    enum lit_kind kind = LIT_NONE;
    size_t best = 0;
    size_t i0 = (n > 0 && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
    size_t i = skip_digits(s, n, i0);

    if (i < n && s[i] == '.') {
        size_t j = skip_digits(s, n, i + 1);
        size_t e = match_exponent(s, n, j);
        size_t len = e ? e : j;
        if (len > best)
            best = len, kind = LIT_FLOAT;
    }
    if (i > i0) {
        size_t j = i;
        if (j < n && s[j] == '.')
            j = skip_digits(s, n, j + 1);
        size_t e = match_exponent(s, n, j);
        if (e > best)
            best = e, kind = LIT_FLOAT;
        if (i > best)
            best = i, kind = LIT_INT;
        if (i < n && s[i] == 'L') {
            j = i + 1;
            if (j < n && s[j] == 'L')
                j++;
            if (j > best)
                best = j, kind = LIT_INT64;
        }
    }
    if (n >= 3 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && is_xdigit(s[2])) {
        size_t j = 2;
        while (j < n && is_xdigit(s[j]))
            j++;
        if (j > best)
            best = j, kind = LIT_HEX;
        if (j < n && s[j] == 'L') {
            size_t k = j + 1;
            if (k < n && s[k] == 'L')
                k++;
            if (k > best)
                best = k, kind = LIT_HEX64;
        }
    }
    *ret_len = best;
    return kind;
}

static int add_int_literal(struct conftext *st, const char *s, size_t len, enum lit_kind kind) {
    struct conftext_int lit = { 0 };
    bool neg = false;
    size_t i = 0;

    snprintf(lit.text, sizeof lit.text, "%.*s", (int)len, s);
    if (kind == LIT_HEX || kind == LIT_HEX64) {
        uint64_t v = 0;
        lit.hex = true;
        for (i = 2; i < len && is_xdigit(s[i]); i++) {
            if (v > (uint64_t)INT64_MAX >> 4) {
                lit.overflow = true;
                break;
            }
            v = (v << 4) | (uint64_t)xdigit_value(s[i]);
        }
        if (v > (uint64_t)INT64_MAX)
            lit.overflow = true;
        lit.value = (int64_t)v;
    } else {
        uint64_t v = 0, o = 0;
        if (s[0] == '+' || s[0] == '-')
            neg = s[i++] == '-';
        size_t first = i;
        lit.octal = true;
        for (; i < len && is_digit(s[i]); i++) {
            unsigned d = (unsigned)(s[i] - '0');
            if (v > ((uint64_t)INT64_MAX - d) / 10)
                lit.overflow = true;
            else
                v = v * 10 + d;
            if (d > 7)
                lit.octal = false;
            else if (o <= ((uint64_t)INT64_MAX - d) / 8)
                o = o * 8 + d;
        }
        lit.leading_zero = i - first > 1 && s[first] == '0';
        lit.octal = lit.octal && lit.leading_zero;
        lit.value = neg ? -(int64_t)v : (int64_t)v;
        lit.octal_value = neg ? -(int64_t)o : (int64_t)o;
    }
    if (grow((void **)&st->ints, &st->cap_ints, st->n_ints + 1, sizeof *st->ints) < 0)
        return -ENOMEM;
    st->ints[st->n_ints++] = lit;
    return 0;
}

/* At a line start: [ \t]*@include[ \t]+" — returns the offset after the quote, or 0. */
static size_t include_at(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (n - i < 8 || memcmp(s + i, "@include", 8) != 0)
        return 0;
    i += 8;
    size_t ws = i;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i == ws || i >= n || s[i] != '"')
        return 0;
    return i + 1;
}

static int expand(struct pp *p, const char *t, size_t n, unsigned file, unsigned depth);

static int include_file(struct pp *p, const char *name, unsigned parent, unsigned line,
                        unsigned depth) {
    char q[QUOTE_MAX], why[256];
    char *path = NULL, *text = NULL;
    size_t len;
    unsigned idx;
    int r;

    if (depth >= CONFTEXT_INCLUDE_DEPTH_MAX)
        return pp_fail(p, parent, line, "@include %s: nested more than %d deep (a file that "
                       "includes itself?)", conftext_quote(name, q, sizeof q), CONFTEXT_INCLUDE_DEPTH_MAX);
    if (name[0] == '\0')
        return pp_fail(p, parent, line, "@include \"\": empty file name");
    if (name[0] != '/' && p->include_dir) {
        if (asprintf(&path, "%s/%s", p->include_dir, name) < 0)
            return -ENOMEM;
    } else if (!(path = strdup(name)))
        return -ENOMEM;

    r = conftext_read_file(path, CONFTEXT_FILE_MAX, p->check_files, &text, &len, why, sizeof why);
    if (r < 0) {
        pp_fail(p, parent, line, "@include %s: %s", conftext_quote(path, q, sizeof q), why);
        free(path);
        return r;
    }
    p->total += len;
    if (p->total > CONFTEXT_TOTAL_MAX) {
        free(path);
        free(text);
        return pp_fail(p, parent, line, "@include: configuration larger than %d bytes with "
                       "its includes", CONFTEXT_TOTAL_MAX);
    }
    r = add_file(p->st, path, &idx);
    free(path);
    if (r >= 0)
        r = expand(p, text, len, idx, depth + 1);
    free(text);
    return r;
}

/* The @include line at t[i] (q: the offset after its opening quote): reads the name,
 * splices the file in, and sets *ret_next after the closing quote. */
static int expand_include(struct pp *p, const char *t, size_t n, size_t i, size_t q,
                          unsigned file, unsigned line, unsigned depth, size_t *ret_next) {
    char *name = malloc(n - i);   /* the path is shorter than the rest of t */
    size_t k = 0, j = i + q;
    int r;
    if (!name)
        return -ENOMEM;
    for (;; j++) {
        if (j >= n || t[j] == '\n') {
            free(name);
            return pp_fail(p, file, line, "@include: missing closing '\"'");
        }
        if (t[j] == '"')
            break;
        if (t[j] == '\\') {
            if (j + 1 < n && (t[j + 1] == '\\' || t[j + 1] == '"')) {
                name[k++] = t[++j];
                continue;
            }
            free(name);
            return pp_fail(p, file, line, "@include: only \\\\ and \\\" may be escaped");
        }
        name[k++] = t[j];
    }
    name[k] = '\0';
    r = include_file(p, name, file, line, depth);
    free(name);
    if (r < 0)
        return r;
    if (p->len > 0 && p->out[p->len - 1] != '\n' && (r = pp_append(p, "\n", 1)) < 0)
        return r;
    if ((r = pp_segment(p, file, line)) < 0)
        return r;
    *ret_next = j + 1;
    return 0;
}

/* Skips the token at t[*i] (not a newline, not an @include line), counting lines, and
 * records it when it is an integer literal. */
static int expand_token(struct pp *p, const char *t, size_t n, size_t *i, unsigned file,
                        unsigned *line) {
    char c = t[*i];
    size_t len;
    unsigned start = *line;

    if (c == '#' || (c == '/' && *i + 1 < n && t[*i + 1] == '/')) {
        while (*i < n && t[*i] != '\n')
            (*i)++;
    } else if (c == '/' && *i + 1 < n && t[*i + 1] == '*') {
        for (*i += 2;; (*i)++) {
            if (*i + 1 >= n)
                return pp_fail(p, file, start, "unterminated /* comment");
            if (t[*i] == '*' && t[*i + 1] == '/')
                break;
            if (t[*i] == '\n')
                (*line)++;
        }
        *i += 2;
    } else if (c == '"') {
        for ((*i)++;; (*i)++) {
            if (*i >= n)
                return pp_fail(p, file, start, "unterminated string");
            if (t[*i] == '"')
                break;
            if (t[*i] == '\\' && *i + 1 < n && t[*i + 1] != '\0' && strchr("\\\"nrtf", t[*i + 1])) {
                (*i)++;   /* an escaped quote or backslash does not end the string */
                continue;
            }
            if (t[*i] == '\n')
                (*line)++;
        }
        (*i)++;
    } else if (c == '@') {
        /* libconfig would call it a syntax error too; we must stop here, because the
         * line split after an @include could make a second one look like a line start. */
        return pp_fail(p, file, *line, "syntax error: '@' outside an @include line");
    } else if (is_alpha(c) || c == '*') {
        /* a name: [A-Za-z*][-A-Za-z0-9_*]* (its digits are not numbers) */
        for ((*i)++; *i < n && (is_alpha(t[*i]) || is_digit(t[*i]) || t[*i] == '-' ||
                                t[*i] == '_' || t[*i] == '*');
             (*i)++)
            ;
    } else if (is_digit(c) || c == '+' || c == '-' || c == '.') {
        enum lit_kind k = number_at(t + *i, n - *i, &len);
        int r;
        if (len == 0) {
            (*i)++;
            return 0;
        }
        if (k != LIT_FLOAT && (r = add_int_literal(p->st, t + *i, len, k)) < 0)
            return r;
        *i += len;
    } else {
        (*i)++;
    }
    return 0;
}

/* Copies text `t` of `file` into p->out with its @include lines replaced by the included
 * files, and records integer literals. The remainder of an @include line goes on a line of
 * its own: newlines are whitespace to libconfig, and the segment table keeps line numbers
 * right. */
static int expand(struct pp *p, const char *t, size_t n, unsigned file, unsigned depth) {
    size_t i = 0, flushed = 0;
    unsigned line = 1;
    bool bol = true;
    int r;

    if ((r = pp_segment(p, file, 1)) < 0)
        return r;
    while (i < n) {
        size_t q;
        if (bol && (q = include_at(t + i, n - i)) > 0) {
            if ((r = pp_append(p, t + flushed, i - flushed)) < 0 ||
                (r = expand_include(p, t, n, i, q, file, line, depth, &i)) < 0)
                return r;
            flushed = i;
            bol = false;
        } else if (t[i] == '\n') {
            line++;
            bol = true;
            i++;
        } else {
            bol = false;
            if ((r = expand_token(p, t, n, &i, file, &line)) < 0)
                return r;
        }
    }
    return pp_append(p, t + flushed, n - flushed);
}

int conftext_expand(struct conftext *t, const char *text, size_t len, const char *display,
                    const char *include_dir, bool check_files, char **ret_out, char *err,
                    size_t errlen) {
    struct pp p = { .st = t, .out_line = 1, .total = len, .include_dir = include_dir,
                    .check_files = check_files, .err = err, .errlen = errlen };
    unsigned idx;
    int r = add_file(t, display, &idx);
    if (r >= 0)
        r = expand(&p, text, len, 0, 0);
    if (r >= 0 && !p.out && !(p.out = strdup("")))
        r = -ENOMEM;
    if (r < 0) {
        if (r == -ENOMEM)
            set_err(err, errlen, "%s: out of memory", display);
        free(p.out);
        return r;
    }
    *ret_out = p.out;
    return 0;
}

void conftext_done(struct conftext *t) {
    for (size_t i = 0; i < t->n_files; i++)
        free(t->files[i]);
    free(t->files);
    free(t->ints);
    free(t->segs);
    *t = (struct conftext){ 0 };
}
