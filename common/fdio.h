/* fdio: writing a whole buffer to a file descriptor.
 *
 * fdio_write_all() writes all len bytes, through partial writes and EINTR, to a blocking
 * descriptor (a file, a pipe, stderr). 0, or -errno of the write that failed (-EIO for
 * a write that wrote nothing); what was written before the failure stays written. Not for
 * non-blocking sockets: -EAGAIN is returned as a failure. Reentrant; no logging.
 */
#pragma once
#include <stddef.h>

int fdio_write_all(int fd, const void *buf, size_t len);
