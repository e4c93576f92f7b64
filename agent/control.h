/* control: the agent's control socket, for `redis-creds status|refresh|rotate`.
 *
 * A stream Unix socket at agent.control_socket. Its directory is created 0755 when
 * missing and must not be writable by group or others (the path is handled by name). The
 * socket is 0660 with agent.control_group (default: agent.group), so the people in that
 * group can connect. Protocol: the client sends one line ("status", "refresh NAME",
 * "rotate NAME"); the agent answers one line of JSON and closes; a malformed request gets
 * an error line. Answers never hold a secret. Connections that have not been answered
 * within CONTROL_IDLE_USEC are dropped.
 *
 * Rights come from SO_PEERCRED: `status` for anyone who can connect; `refresh` and
 * `rotate` only for root and the agent's own user. Connections are capped (per peer uid,
 * and in total for unprivileged peers, bounded by a quarter of RLIMIT_NOFILE) and the
 * excess gets a one-line error; at EMFILE a reserve fd lets the agent accept and answer
 * instead of spinning. Everything runs on the loop thread; no request blocks it.
 *
 * The request parser (control_request_parse) and the rights check (control_allowed) are
 * pure: bytes and uids in, a result out, no I/O; the unit tests and
 * tests/fuzz/fuzz_control.c drive them.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#define CONTROL_IDLE_USEC (5ULL * 1000000ULL)
#define CONTROL_MAX_REQUEST 1024
#define CONTROL_MAX_CONNS 64          /* unprivileged peers, all together */
#define CONTROL_MAX_CONNS_PER_UID 16  /* any one peer uid, root included */
#define CONTROL_NAME_MAX 64           /* a credential name (config_name_valid) */

enum control_verb {
    CONTROL_STATUS,
    CONTROL_REFRESH,
    CONTROL_ROTATE,
};

struct control_request {
    enum control_verb verb;
    char name[CONTROL_NAME_MAX + 1];   /* refresh and rotate: a valid credential name */
};

/* Parses the first request line in buf[0..len). `eof`: the peer will send nothing more,
 * so the bytes so far are the whole request even without a newline.
 * Returns 0 when more bytes are needed, 1 with *ret filled, or a negative errno with
 * *ret_err set to a static message that never quotes the input: -EMSGSIZE (no newline
 * within CONTROL_MAX_REQUEST bytes), -EBADMSG (a NUL or another control byte, or empty),
 * -EINVAL (unknown verb, missing, extra or invalid argument). */
int control_request_parse(const char *buf, size_t len, bool eof, struct control_request *ret,
                          const char **ret_err);
/* The verb's word ("status", "refresh", "rotate"). */
const char *control_verb_name(enum control_verb v);
/* True when a peer with uid `peer` may run `v` on an agent running as `agent_uid`:
 * status for anyone, the rest for root and agent_uid. */
bool control_allowed(enum control_verb v, uid_t peer, uid_t agent_uid);

struct agent;
struct control;

/* Binds the socket (replacing a stale socket owned by our uid: we hold the runtime lock;
 * anything else at the path is an error). gid (gid_t)-1: keep our own group.
 * 0 and *ret, or -errno with a message in err. */
int control_open(sd_event *e, const char *path, gid_t gid, struct agent *a, struct control **ret,
                 char *err, size_t errlen);
/* Closes every connection and removes the socket file (when it is still ours). NULL accepted. */
struct control *control_close(struct control *c);
