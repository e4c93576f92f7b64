/* secretfile: read a bootstrap secret (a Vault token, an AppRole secret id, a client
 * secret) from a file, never from argv (docs/design.md §4.3); and check the files the agent trusts
 * without reading them as secrets (its configuration, its on_change programs).
 *
 * The path is the configured one, or, when none is configured, $CREDENTIALS_DIRECTORY/
 * <name> (systemd's LoadCredential=). A file readable or writable by group or others is
 * refused with a message that says so, as is anything but a regular file, a symlink, or
 * a file over SECRETFILE_MAX. One trailing newline is dropped. Reentrant; no logging.
 */
#pragma once
#include <stddef.h>
#include <sys/stat.h>
#include "secret.h"

#define SECRETFILE_MAX (64 * 1024)

/* path may be NULL or "": then $CREDENTIALS_DIRECTORY/<name> is used. 0 and *ret, or
 * -errno with err naming the file and the problem (never its content). */
int secretfile_read(const char *path, const char *name, struct secret **ret, char *err, size_t errlen);
/* The checks secretfile_read() makes (a regular file, not a symlink, not accessible by
 * group or others, not too large), without reading it: for a secret that is needed only
 * later, so that a bad one is reported at load. 0, or -errno with err naming the file. */
int secretfile_check(const char *path, char *err, size_t errlen);
/* Like OpenSSH's StrictModes, for a file whose content the agent obeys: the file and its
 * parent directory must be owned by root or the agent's user (the effective uid) and not
 * writable by group or others; a root-owned directory with the sticky bit (/tmp) may be
 * writable by all. st is the file's stat when the caller has it (the fstat of the fd it
 * read, so the check is of what was read), else NULL (stat(path)). 0, or -errno with err
 * saying what is wrong and how to fix it; err does not repeat path (the caller names it),
 * except when the problem is the directory. */
int secretfile_check_trusted(const char *path, const struct stat *st, char *err, size_t errlen);
