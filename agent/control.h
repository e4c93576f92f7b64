/* control: the agent's control socket, for `redis-creds status|refresh|rotate`.
 *
 * A stream Unix socket at agent.control_socket (its directory is created 0755 when
 * missing; the socket is 0660 with agent.group, so operators in that group can ask).
 * Protocol: the client sends one line ("status", "refresh NAME", "rotate NAME"); the agent
 * answers one line of JSON and closes; a malformed request gets an error line. Answers
 * never hold a secret. Connections that have not been answered within CONTROL_IDLE_USEC
 * are dropped. Everything runs on the loop thread; no request blocks it.
 *
 * The request parser (control_request_parse) is pure: bytes in, a request out, no I/O;
 * the unit tests and tests/fuzz/fuzz_control.c drive it.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#define CONTROL_IDLE_USEC (5ULL * 1000000ULL)
#define CONTROL_MAX_REQUEST 1024
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

struct agent;
struct control;

/* Binds the socket (replacing a stale one: we hold the runtime lock). 0 and *ret, or -errno. */
int control_open(sd_event *e, const char *path, gid_t gid, struct agent *a, struct control **ret,
                 char *err, size_t errlen);
/* Closes every connection and removes the socket file. NULL accepted. */
struct control *control_close(struct control *c);
