/* log: one event per call, to journald with structured fields or to stderr as one line.
 *
 * log_open() decides the sink: journald when $JOURNAL_STREAM names the device and inode
 * of our stderr (systemd connected it), else stderr ("redis-creds-agent[pid]: <level>:
 * message key=value ..."). The journal socket path defaults to
 * /run/systemd/journal/socket and can be overridden with $REDIS_CREDS_JOURNAL_SOCKET
 * (tests bind a datagram socket there). We speak the journal's native protocol ourselves
 * (it is a few lines) so the path is injectable; a journal send that fails falls back to
 * stderr for that event.
 *
 * Thread-safe: any thread may log. Callers must never pass secret bytes: fields carry
 * names, versions, node lists and error texts only. common/ code logs at debug at most.
 * As a second line of defence the message and every field go through secret_scrub()
 * (secret.h) before they go anywhere: the bytes of a live secret become "[redacted]".
 */
#pragma once
#include <stdarg.h>
#include <syslog.h>   /* LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */

/* MESSAGE_IDs, one per event kind (see deploy/redis-creds.catalog). Never change. */
#define LOG_MID_PUBLISHED          "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b01"
#define LOG_MID_VALIDATION_REFUSED "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b02"
#define LOG_MID_STORE_UNREACHABLE  "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b03"
#define LOG_MID_STORE_ERROR        "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b04"
#define LOG_MID_ROTATION_STARTED   "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b05"
#define LOG_MID_ROTATION_COMPLETED "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b06"
#define LOG_MID_ROTATION_FAILED    "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b07"
#define LOG_MID_EXPIRING           "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b08"
#define LOG_MID_REDIS_UNREACHABLE  "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b09"
#define LOG_MID_REVOKED            "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0a"
#define LOG_MID_FILE_DELETED       "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0e"
#define LOG_MID_RELOAD_REJECTED    "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0f"
#define LOG_MID_RUNTIME_DIR_LOST   "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b10"
#define LOG_MID_ROTATION_TAKEN_OVER "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b11"
#define LOG_MID_OLD_CREDENTIAL_USED "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0c"
#define LOG_MID_DRAIN_WAITING      "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0b"
#define LOG_MID_OLD_PASSWORD_RESTORED "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0d"

/* Structured context of an event; every member may be NULL. */
struct log_ctx {
    const char *message_id;
    const char *name;       /* REDIS_CREDS_NAME */
    const char *version;    /* REDIS_CREDS_VERSION */
    const char *source;     /* REDIS_CREDS_SOURCE */
    const char *nodes;      /* REDIS_CREDS_NODES */
};

enum log_target { LOG_TARGET_AUTO, LOG_TARGET_STDERR, LOG_TARGET_JOURNAL };

void log_open(const char *ident, enum log_target target);
void log_set_level(int level);               /* LOG_ERR .. LOG_DEBUG */
int log_get_level(void);
/* "debug" | "info" | "notice" | "warning" | "err" -> level, or -EINVAL. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

void log_ctx_msg(int level, const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_ctx_vmsg(int level, const struct log_ctx *ctx, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
#define log_msg(level, ...) log_ctx_msg((level), NULL, __VA_ARGS__)
#define log_debug(...) log_ctx_msg(LOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...) log_ctx_msg(LOG_INFO, NULL, __VA_ARGS__)
#define log_notice(...) log_ctx_msg(LOG_NOTICE, NULL, __VA_ARGS__)
#define log_warning(...) log_ctx_msg(LOG_WARNING, NULL, __VA_ARGS__)
#define log_error(...) log_ctx_msg(LOG_ERR, NULL, __VA_ARGS__)
