"""Exact counts of what given processes open and write in one directory, with fanotify.

inotify merges identical back-to-back events, so N agents opening the same file at once
count as fewer. fanotify (root only) reports the opening process's pid with each event and
merges only events of the same process on the same file that are still unread, so counting
FAN_OPEN and FAN_CLOSE_WRITE per pid gives every open (a read or a write of a file, or a
lock or listing of the directory) and every write, per process.

    c = OpenCounter("/store/dir")          # raises OSError without CAP_SYS_ADMIN
    poller.register(c.fd, EPOLLIN); ... c.read() on each wake-up
    c.opens[pid][name], c.writes[pid][name]; c.reset(); c.close()

`name` is the file's name when the event is read (a temporary file already renamed shows
its final name, so split reads and writes with writes, not with names)."""
import collections
import ctypes
import ctypes.util
import os
import struct

FAN_CLOEXEC, FAN_NONBLOCK, FAN_UNLIMITED_QUEUE = 0x1, 0x2, 0x10
FAN_MARK_ADD = 0x1
FAN_CLOSE_WRITE, FAN_OPEN, FAN_Q_OVERFLOW = 0x8, 0x20, 0x4000
FAN_EVENT_ON_CHILD, FAN_ONDIR = 0x08000000, 0x40000000
META = struct.Struct("IBBHQii")   # event_len, vers, reserved, metadata_len, mask, fd, pid

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]


class OpenCounter:
    def __init__(self, directory):
        self.dir = os.path.realpath(directory)
        fd = _libc.fanotify_init(FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE, os.O_RDONLY | os.O_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, "fanotify_init: %s" % os.strerror(e))
        mask = FAN_OPEN | FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD | FAN_ONDIR
        if _libc.fanotify_mark(fd, FAN_MARK_ADD, mask, -100, self.dir.encode()) < 0:
            e = ctypes.get_errno()
            os.close(fd)
            raise OSError(e, "fanotify_mark %s: %s" % (self.dir, os.strerror(e)))
        self.fd = fd
        self.opens = collections.defaultdict(collections.Counter)
        self.writes = collections.defaultdict(collections.Counter)
        self.overflows = 0

    def _name(self, fd):
        try:
            path = os.readlink("/proc/self/fd/%d" % fd)
        except OSError:
            return "?"
        if path == self.dir:
            return "(the directory)"
        return os.path.basename(path.replace(" (deleted)", ""))

    def read(self):
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            off = 0
            while off + META.size <= len(buf):
                ln, _, _, _, mask, fd, pid = META.unpack_from(buf, off)
                off += ln
                if mask & FAN_Q_OVERFLOW:
                    self.overflows += 1
                if fd < 0:
                    continue
                try:
                    name = self._name(fd)
                finally:
                    os.close(fd)
                if mask & FAN_OPEN:
                    self.opens[pid][name] += 1
                if mask & FAN_CLOSE_WRITE:
                    self.writes[pid][name] += 1

    def reset(self):
        self.read()
        self.opens.clear()
        self.writes.clear()

    def totals(self, pids):
        """(opens by name, writes by name) summed over pids."""
        o, w = collections.Counter(), collections.Counter()
        for p in pids:
            o.update(self.opens.get(p, {}))
            w.update(self.writes.get(p, {}))
        return o, w

    def close(self):
        os.close(self.fd)
