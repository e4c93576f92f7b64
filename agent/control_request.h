/* control_request: the control protocol's request parser and rights check.
 *
 * Pure: bytes and uids in, a result out, no I/O and no allocation, callable from any
 * thread. Kept apart from the socket code (control.h) so that the unit tests and
 * tests/fuzz/fuzz_control.c link it without sd-event or the agent. Errors are static
 * messages that never quote the input.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CONTROL_MAX_REQUEST 1024
#define CONTROL_NAME_MAX 64           /* a credential name (config_name_valid) */
/* What a bad name is told, by the agent and the CLI alike: the rule, never the name. */
#define CONTROL_NAME_INVALID                                                                  \
    "invalid credential name (a name is 1 to 64 letters, digits, '_', '.' or '-', not "       \
    "starting with '.'; it is the file name <name>.json in the runtime directory)"

enum control_verb {
    CONTROL_STATUS,
    CONTROL_REFRESH,
    CONTROL_ROTATE,
    CONTROL_RELOAD,
};

struct control_request {
    enum control_verb verb;
    char name[CONTROL_NAME_MAX + 1];   /* refresh and rotate: a valid credential name */
    bool allow_removals;               /* reload: "reload allow-removals" */
    bool revoke;                       /* rotate: "rotate NAME revoke" */
};

/* Parses the first request line in buf[0..len). `eof`: the peer will send nothing more,
 * so the bytes so far are the whole request even without a newline.
 * Returns 0 when more bytes are needed, 1 with *ret filled, or a negative errno with
 * *ret_err set to a static message that never quotes the input: -EMSGSIZE (no newline
 * within CONTROL_MAX_REQUEST bytes), -EBADMSG (a NUL or another control byte, or empty),
 * -EINVAL (unknown verb, missing, extra or invalid argument). */
int control_request_parse(const char *buf, size_t len, bool eof, struct control_request *ret,
                          const char **ret_err);
/* The verb's word ("status", "refresh", "rotate", "reload"). */
const char *control_verb_name(enum control_verb v);
/* True when a peer with uid `peer` may run `v` on an agent running as `agent_uid`:
 * status for anyone, the rest (refresh, rotate, reload) for root and agent_uid. */
bool control_allowed(enum control_verb v, uid_t peer, uid_t agent_uid);
