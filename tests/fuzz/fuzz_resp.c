/* libFuzzer: the RESP reader with our caps (common/resp), fed in two pieces. */
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>
#include "resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct resp_reader *r = resp_reader_new(64 * 1024, 1024);
    if (!r)
        return 0;
    size_t half = size / 2;
    redisReply *reply = NULL;
    if (resp_reader_feed(r, (const char *)data, half) == 0 &&
        resp_reader_feed(r, (const char *)data + half, size - half) == 0)
        while (resp_reader_get(r, &reply) == 1)
            freeReplyObject(reply);
    resp_reader_free(r);
    return 0;
}
