/* runtime: the runtime directory the agent publishes into (docs/design.md §2, §5).
 *
 * runtime_open() creates the directory when missing, refuses a symlink, a directory
 * writable by others or one owned by a user other than root and us (-EPERM), takes
 * flock(LOCK_EX) on <dir>/.lock (a second agent gets -EBUSY and "runtime_dir DIR in use
 * by pid N"), and removes stale temporary files under the lock. Publishing writes the
 * configured formats through the directory fd, .env and .password before .json, so the
 * .json's IN_MOVED_TO means the whole set is current.
 * Loop thread only (the loop is the only writer of published files).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "credfile.h"

struct runtime {
    char *dir;
    int dirfd;
    int lockfd;
};

int runtime_open(const char *dir, struct runtime **ret, char *err, size_t errlen);
struct runtime *runtime_close(struct runtime *rt);   /* releases the lock; NULL accepted */
/* True when the directory we hold is gone from its path: deleted (its link count is 0),
 * moved away, or replaced by something else at the path. */
bool runtime_lost(const struct runtime *rt);
/* After runtime_lost(): creates the directory again, like runtime_open() (the lock too),
 * and moves rt to it; rt stays as it was on failure (-EROFS or -EACCES where the parent
 * cannot be written, -EBUSY when another agent took the new directory), with err. The
 * caller restores the mode and group and republishes. */
int runtime_reopen(struct runtime *rt, char *err, size_t errlen);

/* Directory mode and group: 0750 + gid, or 0755 when files use different groups. */
int runtime_set_dir_mode(struct runtime *rt, gid_t gid, bool mixed_groups);

/* "" -> (gid_t)-1 (the agent's own group), else the group's gid, or -ENOENT + err. */
int runtime_resolve_group(const char *group, gid_t *ret, char *err, size_t errlen);

/* Writes every format in `formats` (CRED_FORMAT_*). 0 or -errno + err. */
int runtime_publish(struct runtime *rt, const struct credfile *cf, unsigned formats,
                    mode_t mode, gid_t gid, char *err, size_t errlen);
/* Makes every format file in `formats` match cf (contents, mode, group), rewriting only
 * the ones that differ, .json last: a mode, group or format the config changed, without
 * republishing an unchanged file. With ret_kept (after adoption at start), a file whose
 * contents differ is left as it is and counted in *ret_kept: a run killed between the
 * .env/.password and the .json left it NEWER than the adopted .json, and rewriting it
 * would take its readers back a version; the next publish brings the set in line.
 * Returns the number of files written, or -errno + err. */
int runtime_sync_formats(struct runtime *rt, const struct credfile *cf, unsigned formats,
                         mode_t mode, gid_t gid, unsigned *ret_kept, char *err, size_t errlen);
/* Reads <name>.json; fails with -ENOENT when absent, -EINVAL when unusable or its name
 * differs. */
int runtime_adopt(struct runtime *rt, const char *name, struct credfile *ret, char *err, size_t errlen);

/* Removes published files that the config no longer asks for: any <name>.<fmt> whose
 * name is not configured, or whose format is not in that credential's formats. names and
 * formats are parallel arrays. Logs a notice for each removed file ("published file
 * deleted", LOG_MID_FILE_DELETED). */
void runtime_prune(struct runtime *rt, char *const *names, const unsigned *formats, size_t n);
