/* secretfile: read a bootstrap secret (a Vault token, an AppRole secret id, a client
 * secret) from a file, never from argv (DESIGN §3).
 *
 * The path is the configured one, or, when none is configured, $CREDENTIALS_DIRECTORY/
 * <name> (systemd's LoadCredential=). A file readable or writable by group or others is
 * refused with a message that says so, as is anything but a regular file, a symlink, or
 * a file over SECRETFILE_MAX. One trailing newline is dropped. Reentrant; no logging.
 */
#pragma once
#include <stddef.h>
#include "secret.h"

#define SECRETFILE_MAX (64 * 1024)

/* path may be NULL or "": then $CREDENTIALS_DIRECTORY/<name> is used. 0 and *ret, or
 * -errno with err naming the file and the problem (never its content). */
int secretfile_read(const char *path, const char *name, struct secret **ret, char *err, size_t errlen);
