/* libFuzzer: the control protocol's request parser (agent/control_request.c), as the agent
 * calls it: on every prefix that ends a read, then at end of input. Checks what the
 * contract promises: a parsed request names a valid credential when it needs one, and an
 * error always comes with a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "control_request.h"

static void check(const char *buf, size_t len, bool eof) {
    struct control_request req;
    const char *why = NULL;
    int r = control_request_parse(buf, len, eof, &req, &why);
    if (r < 0 && !why)
        abort();
    /* refresh and rotate name a credential; status and reload take none */
    bool named = req.verb == CONTROL_REFRESH || req.verb == CONTROL_ROTATE;
    if (r > 0 && named && !config_name_valid(req.name))
        abort();
    if (r > 0 && !named && req.name[0])
        abort();
    if (r == 0 && (eof || len >= CONTROL_MAX_REQUEST))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* An exact-sized copy, so reading one byte past `size` is caught. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    check(buf, size / 2, false);
    check(buf, size, false);
    check(buf, size, true);
    free(buf);
    return 0;
}
