"""A thread that follows a CredentialFile: inotify on the directory through ctypes (docs/design.md
§5.4: watch the directory for IN_MOVED_TO, not the file), or polling with the inode/mtime
cache where inotify is not available. Calls back on each change, e.g. to re-AUTH pooled
connections."""
import ctypes
import ctypes.util
import errno
import os
import select
import struct
import threading

from .credfile import CredentialUnavailable

IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x1000000
_DIR_MASK = (IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF |
             IN_MOVE_SELF | IN_ONLYDIR)
_PARENT_MASK = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR
_EVENT = struct.Struct("iIII")

_libc = None


def _inotify_libc():
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            lib.inotify_init1.argtypes = [ctypes.c_int]
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            lib.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
            _libc = lib
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


class Watcher:
    """Follows cred_file in a daemon thread.

    callback(snapshot, error): after each change (error None, snapshot the new one) and
    after each new failure to load (error the exception, snapshot the one kept or None).
    method: "inotify", "poll" or "auto" (inotify when available). interval: the polling
    period, and with inotify how often a lost directory is looked for again."""

    def __init__(self, cred_file, callback=None, method="auto", interval=1.0):
        if method not in ("auto", "inotify", "poll"):
            raise ValueError("method is auto, inotify or poll")
        self.file = cred_file
        self.callback = callback
        self.interval = interval
        self.method = method
        self._fd = -1
        self._wd_dir = -1
        self._wd_parent = -1
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._thread = None
        # stop() and a thread still in a callback: whoever comes last closes the fds
        self._close_lock = threading.Lock()
        self._thread_done = self._thread_closes = False
        self._last_gen = cred_file.generation
        self._last_err = None
        libc = _inotify_libc() if method != "poll" else None
        if libc is not None:
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0:
                self._fd = fd
        if method == "inotify" and self._fd < 0:
            raise OSError(errno.ENOSYS, "inotify is not available")
        self.method = "inotify" if self._fd >= 0 else "poll"
        if self._fd >= 0:
            self._add_watches()

    # --- inotify
    def _add_watches(self):
        libc = _inotify_libc()
        d = os.path.normpath(self.file.runtime_dir)
        if self._wd_parent < 0:
            self._wd_parent = libc.inotify_add_watch(
                self._fd, os.fsencode(os.path.dirname(d) or "."), _PARENT_MASK)
        if self._wd_dir < 0:
            self._wd_dir = libc.inotify_add_watch(self._fd, os.fsencode(d), _DIR_MASK)
        # get() may skip its stat only while the directory is watched by a running thread
        self.file._watched = self._wd_dir >= 0 and self._thread is not None

    def _rewatch(self):
        """After a queue overflow: the events lost may include the directory's removal,
        leaving a dead watch. A watch added again on the path is the same one for the same
        directory, and a new one for a new directory."""
        libc = _inotify_libc()
        d = os.path.normpath(self.file.runtime_dir)
        for attr, path, mask in (("_wd_parent", os.path.dirname(d) or ".", _PARENT_MASK),
                                 ("_wd_dir", d, _DIR_MASK)):
            old = getattr(self, attr)
            if old >= 0:
                new = libc.inotify_add_watch(self._fd, os.fsencode(path), mask)
                if new != old:
                    libc.inotify_rm_watch(self._fd, old)   # EINVAL if already removed
                setattr(self, attr, new)

    def _drain(self):
        """Reads pending events; True when one concerned our file or its directory."""
        relevant = overflow = False
        fname = self.file.name + ".json"
        dbase = os.path.basename(os.path.normpath(self.file.runtime_dir))
        while True:
            try:
                buf = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            off = 0
            while off + _EVENT.size <= len(buf):
                wd, mask, _cookie, ln = _EVENT.unpack_from(buf, off)
                name = buf[off + _EVENT.size: off + _EVENT.size + ln].rstrip(b"\0").decode(
                    "utf-8", "replace")
                off += _EVENT.size + ln
                if mask & IN_Q_OVERFLOW:
                    relevant = overflow = True
                elif wd == self._wd_dir and wd >= 0:
                    if mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT):
                        if not mask & IN_IGNORED:
                            _inotify_libc().inotify_rm_watch(self._fd, wd)
                        self._wd_dir = -1
                        self.file._watched = False
                        relevant = True
                    elif name == fname:
                        relevant = True
                elif wd == self._wd_parent and wd >= 0:
                    if mask & (IN_IGNORED | IN_UNMOUNT):
                        self._wd_parent = -1
                    elif name == dbase:
                        relevant = True
        if overflow:
            self._rewatch()
        if self._wd_dir < 0 or self._wd_parent < 0:
            before = self._wd_dir
            self._add_watches()
            relevant = relevant or (before < 0 and self._wd_dir >= 0)
        return relevant

    # --- thread
    def start(self):
        if self._thread is None:
            self._thread_done = self._thread_closes = False
            self._thread = threading.Thread(target=self._run_then_close,
                                            name="redis-creds-watch", daemon=True)
            # The watch is in place since __init__; look at the file once now, so that a
            # change made before the watch existed is not missed.
            try:
                self.file._refresh(force=False)
            except Exception:
                pass
            self._last_gen = self.file.generation
            self.file._watched = self._fd >= 0 and self._wd_dir >= 0
            self._thread.start()
        return self

    def stop(self, timeout=5):
        """Stops the thread, waiting up to timeout seconds for a callback that runs. A
        callback that runs longer is not cut short: the thread then ends after it, and
        closes the watcher's fds itself."""
        self.file._watched = False
        thread, self._thread = self._thread, None
        if thread is not None:
            os.write(self._stop_w, b"x")
            thread.join(timeout)
        with self._close_lock:
            if self._thread_closes or (thread is not None and not self._thread_done):
                self._thread_closes = True   # the thread, still in a callback, closes them
                return
        self._close_fds()

    def _run_then_close(self):
        try:
            self._run()
        finally:
            with self._close_lock:
                self._thread_done = True
                if self._thread_closes:
                    self._close_fds()

    def _close_fds(self):
        for fd in (self._fd, self._stop_r, self._stop_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._stop_r = self._stop_w = -1

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _check(self, force):
        try:
            if force:
                self.file.reload()
                snap = self.file._snap
            else:
                snap = self.file._refresh(force=False)
        except CredentialUnavailable as e:
            snap = None
            self.file.last_error = e
        err = self.file.last_error
        gen = self.file.generation
        if gen != self._last_gen:
            self._last_gen = gen
            self._last_err = None
            self._notify(snap, None)
        elif err is not None and str(err) != str(self._last_err):
            self._last_err = err
            self._notify(snap, err)
        elif err is None:
            self._last_err = None

    def _notify(self, snap, err):
        if self.callback is not None:
            try:
                self.callback(snap, err)
            except Exception:  # a callback's bug must not stop the watcher
                import traceback
                traceback.print_exc()

    def _wait(self, fds, timeout):
        """The fds of fds readable within timeout seconds (None: no limit). poll, not
        select: select refuses an fd above 1023, which a busy application's inotify fd
        is, and the thread would die with the cache left trusted."""
        p = select.poll()
        for fd in fds:
            p.register(fd, select.POLLIN)
        return [fd for fd, _ in p.poll(None if timeout is None else timeout * 1000)]

    def _run(self):
        while True:
            if self._fd >= 0:
                lost = self._wd_dir < 0 and self._wd_parent < 0
                timeout = self.interval if lost or self._wd_dir < 0 else None
                r = self._wait([self._fd, self._stop_r], timeout)
                if self._stop_r in r:
                    return
                relevant = self._drain() if self._fd in r else False
                if not r:   # a timeout tick while the directory is missing
                    self._add_watches()
                    relevant = True
                if relevant:
                    self._check(force=True)
            else:
                r = self._wait([self._stop_r], self.interval)
                if r:
                    return
                self._check(force=False)
