/* hooks: run a credential's on_change command after each publish (docs/design.md §13).
 *
 * The argv runs without a shell, with stdin on /dev/null, every signal unblocked and at
 * its default disposition (the agent ignores SIGPIPE; its hooks must not), and with
 * REDIS_CREDS_NAME, REDIS_CREDS_VERSION and REDIS_CREDS_FILE added to the environment
 * (never a secret: the agent's environment is passed on without its own REDIS_CREDS_*,
 * NOTIFY_SOCKET, WATCHDOG_* and the secrets a plugin reads from it, IDENTITY_HEADER).
 * The loop reaps it through an sd-event child source (SIGCHLD must be blocked) and logs
 * a non-zero exit. It runs in a process group of its own: a hook still running after
 * `timeout` usec is killed with everything it started that is still in that group
 * (children it left behind after exiting on time are its business). A program that
 * fails secretfile_check_trusted() (owner, mode, its directory) is not run (a warning).
 * One hook at a time per credential name: a run asked for while that credential's hook
 * still runs is kept (arguments copied) and started when it ends; a newer one replaces
 * it, so the hook always runs once more, for the newest version. Loop thread only.
 */
#pragma once
#include <systemd/sd-event.h>

/* Returns 0 once the child is started or queued behind the running one, or -errno
 * (logged). */
int hooks_run(sd_event *e, char *const *argv, uint64_t timeout, const char *name,
              const char *version, const char *file);
