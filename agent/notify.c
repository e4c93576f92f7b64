/* notify: see notify.h. */
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "notify.h"
#include "rctime.h"

void notify_ready(void) {
    sd_notify(0, "READY=1");
}

void notify_status(const char *status) {
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "STATUS=%s", status);
    if (n < 0)
        return;
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    sd_notify(0, buf);
}

void notify_reloading(void) {
    char buf[64];
    snprintf(buf, sizeof buf, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)rctime_mono_usec());
    sd_notify(0, buf);
}

void notify_stopping(void) {
    sd_notify(0, "STOPPING=1");
}

void notify_extend_timeout(uint64_t usec) {
    char buf[64];
    snprintf(buf, sizeof buf, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
    sd_notify(0, buf);
}
