/* hostkey: the host key behind keyed versions (docs/design.md §5.1).
 *
 * A store without versions of its own gets version "h-" + 16 hex digits of
 * HMAC-SHA256(host key, content), so a version never reveals anything about the secret.
 * The key is 32 random bytes in <state_dir>/host.key, mode 0600, created at first start
 * (atomically: a racing second creator reads the winner's key). Reentrant.
 */
#pragma once
#include <stddef.h>
#include "secret.h"

#define HOSTKEY_LEN 32
#define HOSTKEY_VERSION_LEN 19   /* "h-" + 16 hex + NUL */

/* Loads or creates the key; creates state_dir (0700) when missing. 0 or -errno + err. */
int hostkey_load_or_create(const char *state_dir, struct secret **ret, char *err, size_t errlen);
/* Writes "h-" + 16 hex of HMAC-SHA256(key, data) into out. Returns 0 or -EIO. */
int hostkey_version(const struct secret *key, const void *data, size_t len,
                    char out[HOSTKEY_VERSION_LEN]);
