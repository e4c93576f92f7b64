/* control: the agent's control socket, for `redis-creds status|refresh|rotate`.
 *
 * A stream Unix socket at agent.control_socket (its directory is created 0755 when
 * missing; the socket is 0660 with agent.group, so operators in that group can ask).
 * Protocol: the client sends one line ("status", "refresh NAME", "rotate NAME"); the agent
 * answers one line of JSON and closes. Answers never hold a secret. Connections that
 * send nothing within CONTROL_IDLE_USEC are dropped. Everything runs on the loop thread;
 * no request blocks it.
 */
#pragma once
#include <stddef.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#define CONTROL_IDLE_USEC (5ULL * 1000000ULL)
#define CONTROL_MAX_REQUEST 1024

struct agent;
struct control;

/* Binds the socket (replacing a stale one: we hold the runtime lock). 0 and *ret, or -errno. */
int control_open(sd_event *e, const char *path, gid_t gid, struct agent *a, struct control **ret,
                 char *err, size_t errlen);
/* Closes every connection and removes the socket file. NULL accepted. */
struct control *control_close(struct control *c);
