/* notify: everything the agent tells systemd through sd_notify (docs/design.md §11.1).
 *
 * READY=1 once (and again after each reload), STATUS= a one-line summary, RELOADING=1
 * with MONOTONIC_USEC=, STOPPING=1, EXTEND_TIMEOUT_USEC= while start-up waits. WATCHDOG=1
 * is not here: sd-event sends it from the loop itself (sd_event_set_watchdog), so a stuck
 * loop stops sending it. Without $NOTIFY_SOCKET every call is a no-op. Loop thread only.
 */
#pragma once
#include <stdint.h>

void notify_ready(void);
void notify_status(const char *status);   /* one line; newlines are replaced */
void notify_reloading(void);
void notify_stopping(void);
void notify_extend_timeout(uint64_t usec);
