/* control: the agent's control socket, for `redis-creds status|refresh|rotate|reload`.
 *
 * A stream Unix socket at agent.control_socket. Its directory is created 0755 when
 * missing and must not be writable by group or others (the path is handled by name). The
 * socket is 0660 with agent.control_group (default: agent.group), so the people in that
 * group can connect. Protocol: the client sends one line ("status", "refresh NAME",
 * "rotate NAME", "reload [allow-removals]"); the agent answers one line of JSON and
 * closes; a malformed request gets an error line. Answers never hold a secret.
 * Connections that have not been answered within CONTROL_IDLE_USEC are dropped; a reload
 * is answered when it has ended ({"ok":true}, or {"ok":false,"error":...,"config_error":
 * BOOL}), within CONTROL_RELOAD_USEC.
 *
 * Rights come from SO_PEERCRED: `status` for anyone who can connect; `refresh`,
 * `rotate` and `reload` only for root and the agent's own user. Connections are capped
 * (per peer uid, and in total for unprivileged peers, bounded by a quarter of
 * RLIMIT_NOFILE) and the excess gets a one-line error; at EMFILE a reserve fd lets the
 * agent accept and answer instead of spinning. A peer that leaves before its answer costs
 * an EPIPE, never a SIGPIPE (the caller need not ignore it). Everything runs on the loop
 * thread; no request blocks it.
 *
 * The request parser and the rights check are control_request.h's.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "control_request.h"

#define CONTROL_IDLE_USEC (5ULL * 1000000ULL)
/* A `reload` connection waits for the reload's end: a rotation step in flight finishes
 * first, bounded by its source's and Redis timeouts. The CLI gives up sooner by its own
 * --timeout. */
#define CONTROL_RELOAD_USEC (600ULL * 1000000ULL)
#define CONTROL_MAX_CONNS 64          /* unprivileged peers, all together */
#define CONTROL_MAX_CONNS_PER_UID 16  /* any one peer uid, root included */

struct agent;
struct control;

/* Binds the socket (replacing a stale socket owned by our uid: we hold the runtime lock;
 * anything else at the path is an error). gid (gid_t)-1: keep our own group.
 * 0 and *ret, or -errno with a message in err. */
int control_open(sd_event *e, const char *path, gid_t gid, struct agent *a, struct control **ret,
                 char *err, size_t errlen);
/* Closes every connection and removes the socket file (when it is still ours). NULL accepted. */
struct control *control_close(struct control *c);
