"""Helpers for the integration suite: a real redis-server, the agent under test, a
NOTIFY_SOCKET listener, an inotify consumer, config rendering and store writes.

Everything here follows docs/design.md (the contract); nothing reads the agent's internals.
Only the standard library and redis-py are used.
"""
import ctypes
import ctypes.util
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time

import redis

# --------------------------------------------------------------------------- locations

SOURCE_DIR = os.environ.get("REDIS_CREDS_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("REDIS_CREDS_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
AGENT_BIN = os.path.join(BUILD_DIR, "agent", "redis-creds-agent")
CLI_BIN = os.path.join(BUILD_DIR, "agent", "redis-creds")
PLUGIN_DIR = os.path.join(BUILD_DIR, "plugins")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

ADMIN_USER = "rc-admin"
ADMIN_PASSWORD = "rc-admin-pw-1b7d0c"

VERSION_RE = re.compile(r"^h-[0-9a-f]{16}$")
RFC3339_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def fail(msg):
    raise AssertionError(msg)


def wait_until(pred, timeout, what, interval=0.01):
    """Polls pred() until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            fail("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def built_with_asan(path=None):
    """Whether the binary or library at path (the agent by default) links AddressSanitizer's
    runtime: the ASan pass of scripts/test.sh."""
    with open(path or AGENT_BIN, "rb") as f:
        return b"libasan.so" in f.read()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORTS_GIVEN = set()
_PORT_RANDOM = random.Random(os.getpid() ^ int(time.time() * 1000))


def free_port():
    """A loopback port that is free now and stays free until a server binds it.

    The port is chosen below the kernel's ephemeral range: a port the kernel hands out
    itself (bind to 0) can meanwhile become the source port of any outgoing connection,
    e.g. between two cluster nodes, and the server that was meant to get it then fails
    with "Address already in use". No port is handed out twice in one test process, so
    a server restarted on its port keeps it."""
    high = min(_ephemeral_low(), 65536) - 1
    low = 20000 if high > 21000 else 1024
    for _ in range(1000):
        port = _PORT_RANDOM.randint(low, high)
        if port in _PORTS_GIVEN:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _PORTS_GIVEN.add(port)
        return port
    fail("no free loopback port between %d and %d" % (low, high))


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM if the test process dies (no orphans when a run
    is killed, e.g. by ctest's timeout)."""
    _libc.prctl(1, signal.SIGTERM, 0, 0, 0)   # PR_SET_PDEATHSIG


def closed_port_endpoint():
    """A loopback endpoint nobody listens on (connection refused)."""
    return "127.0.0.1:%d" % free_port()


def clean_env(extra=None):
    """The environment for a child: ours without anything systemd or the agent reads."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NOTIFY_", "WATCHDOG_", "LISTEN_", "JOURNAL_", "INVOCATION_",
                                "REDIS_CREDS_", "CREDENTIALS_DIRECTORY"))}
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------- redis

class RedisServer:
    """A real redis-server on a free loopback port. ACL changes made through this object
    are recorded and replayed after a restart on the same port."""

    def __init__(self, workdir, extra_conf=()):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = free_port()
        self.conf = os.path.join(workdir, "redis.conf")
        self.logfile = os.path.join(workdir, "redis.log")
        self.proc = None
        self._acl = []
        with open(self.conf, "w") as f:
            f.write("port %d\n" % self.port)
            f.write("bind 127.0.0.1\n")
            f.write('save ""\n')
            f.write("appendonly no\n")
            f.write("daemonize no\n")
            f.write("dir %s\n" % workdir)
            f.write("logfile %s\n" % self.logfile)
            f.write("user %s on >%s ~* &* +@all\n" % (ADMIN_USER, ADMIN_PASSWORD))
            f.write("user default on nopass ~* &* +@all\n")
            for line in extra_conf:
                f.write(line + "\n")

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.port

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, username=ADMIN_USER,
                           password=ADMIN_PASSWORD, socket_timeout=2, socket_connect_timeout=2)

    def start(self, timeout=5):
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen([REDIS_SERVER, self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=clean_env(), preexec_fn=_die_with_parent)

        def up():
            if self.proc.poll() is not None:
                with open(self.logfile, errors="replace") as f:
                    fail("redis-server exited %s: %s" % (self.proc.returncode, f.read()[-2000:]))
            try:
                c = self.client()
                ok = c.ping()
                c.close()
                return ok
            except redis.exceptions.RedisError:
                return False
        wait_until(up, timeout, "redis-server on port %d" % self.port, interval=0.01)
        c = self.client()
        for args in self._acl:
            c.execute_command("ACL", "SETUSER", *args)
        c.close()

    def stop(self, timeout=5):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def acl_setuser(self, user, *rules):
        self._acl.append((user,) + tuple(rules))
        c = self.client()
        try:
            c.execute_command("ACL", "SETUSER", user, *rules)
        finally:
            c.close()

    def create_user(self, user, *passwords):
        self.acl_setuser(user, "reset", "on", *[">" + p for p in passwords],
                         "~*", "&*", "+@all")

    def add_password(self, user, password):
        self.acl_setuser(user, ">" + password)

    def remove_password(self, user, password):
        self.acl_setuser(user, "<" + password)

    def set_default_password(self, password):
        self.acl_setuser("default", "resetpass", ">" + password)

    def auth_ok(self, username, password):
        return auth_ok(self.port, username, password)


def auth_ok(port, username, password):
    """Whether a fresh connection to 127.0.0.1:port logs in with username + password."""
    c = redis.Redis(host="127.0.0.1", port=port, username=username, password=password,
                    socket_timeout=2)
    try:
        return c.ping()
    except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError):
        return False
    finally:
        c.close()


# --------------------------------------------------------------------------- sd_notify

class NotifyMessage:
    __slots__ = ("t", "raw", "fields")

    def __init__(self, t, raw):
        self.t = t
        self.raw = raw
        self.fields = {}
        for line in raw.split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                self.fields[k] = v

    def __repr__(self):
        return "<%.3f %r>" % (self.t, self.raw)


class NotifyListener:
    """Binds a datagram socket like systemd's NOTIFY_SOCKET and records every message with
    its arrival time (time.monotonic(), i.e. CLOCK_MONOTONIC)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.messages = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            with self._lock:         # held from recv to append: see settle()
                try:
                    data = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
                except OSError:
                    continue
                self.messages.append(self.parse(time.monotonic(), data))

    def settle(self, timeout=5):
        """Returns once every datagram already sent to the socket is in self.messages (the
        socket's queue is empty and no message is half-recorded)."""
        def empty():
            with self._lock:
                return not select.select([self.sock], [], [], 0)[0]
        wait_until(empty, timeout, "%s drained" % self.path)

    @staticmethod
    def parse(t, data):
        return NotifyMessage(t, data.decode("utf-8", "replace"))

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def snapshot(self):
        with self._lock:
            return list(self.messages)

    def mark(self):
        with self._lock:
            return len(self.messages)

    def find(self, key, value=None, since=0):
        """Index of the first message at or after `since` carrying key (=value)."""
        for i, m in enumerate(self.snapshot()[since:], start=since):
            if key in m.fields and (value is None or m.fields[key] == value):
                return i
        return None

    def wait(self, key, value=None, since=0, timeout=5, abort=None):
        """Waits for a message at or after index `since` carrying key (=value); its index.
        abort() may return a reason to stop waiting early (the agent exited)."""
        box = []

        def check():
            j = self.find(key, value, since)
            if j is not None:
                box.append(j)
                return True
            reason = abort() if abort else None
            if reason:
                j = self.find(key, value, since)     # sent just before the exit
                if j is not None:
                    box.append(j)
                    return True
                fail("while waiting for notify %s: %s" % (key, reason))
            return False
        try:
            wait_until(check, timeout, "notify")
        except AssertionError as e:
            if str(e).startswith("while waiting"):
                raise
            fail("timed out after %ss waiting for notify %s%s; got since mark: %r"
                 % (timeout, key, "" if value is None else "=" + value,
                    [m.raw for m in self.snapshot()[since:] if "WATCHDOG" not in m.fields][-20:]))
        return box[0]

    def values(self, key, since=0):
        return [(m.t, m.fields[key]) for m in self.snapshot()[since:] if key in m.fields]

    def last_status(self):
        v = self.values("STATUS")
        return v[-1][1] if v else None

    def wait_status(self, pred, timeout=5, what="STATUS"):
        def ok():
            s = self.last_status()
            return s is not None and pred(s)
        try:
            wait_until(ok, timeout, what)
        except AssertionError:
            fail("timed out waiting for %s; STATUS history: %r"
                 % (what, [v for _, v in self.values("STATUS")][-10:]))
        return self.last_status()


class JournalListener(NotifyListener):
    """Binds a datagram socket in place of journald's native socket and parses entries
    (KEY=VALUE lines, or KEY, a little-endian 64-bit length, the bytes, for values with a
    newline). .fields of each message is a dict; .raw the whole datagram as text."""

    @staticmethod
    def parse(t, data):
        m = NotifyMessage(t, "")
        m.raw = data.decode("utf-8", "replace")
        fields = {}
        i = 0
        while i < len(data):
            nl = data.find(b"\n", i)
            if nl < 0:
                break
            line = data[i:nl]
            if b"=" in line:
                k, v = line.split(b"=", 1)
                fields[k.decode()] = v.decode("utf-8", "replace")
                i = nl + 1
            else:
                (ln,) = struct.unpack_from("<Q", data, nl + 1)
                fields[line.decode()] = data[nl + 9: nl + 9 + ln].decode("utf-8", "replace")
                i = nl + 9 + ln + 1
        m.fields = fields
        return m


# --------------------------------------------------------------------------- inotify

IN_ACCESS = 0x1
IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_OPEN = 0x20
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")

_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


class InotifyEvent:
    __slots__ = ("t", "mask", "name")

    def __init__(self, t, mask, name):
        self.t, self.mask, self.name = t, mask, name

    def __repr__(self):
        names = [n for n, b in (("MODIFY", IN_MODIFY), ("ATTRIB", IN_ATTRIB),
                                ("CLOSE_WRITE", IN_CLOSE_WRITE), ("MOVED_FROM", IN_MOVED_FROM),
                                ("MOVED_TO", IN_MOVED_TO), ("CREATE", IN_CREATE),
                                ("DELETE", IN_DELETE), ("Q_OVERFLOW", IN_Q_OVERFLOW))
                 if self.mask & b]
        return "<%s %s>" % ("|".join(names) or hex(self.mask), self.name)


class InotifyWatcher:
    """A consumer watching a directory with inotify, as docs/design.md §5.4 tells consumers to.
    on_event(ev) runs on the watcher's thread right when the event is read."""

    DEFAULT_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO
                    | IN_CREATE | IN_DELETE)

    def __init__(self, path, mask=DEFAULT_MASK, on_event=None):
        self.fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            e = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(e, "inotify_add_watch %s" % path)
        self.path = path
        self._syncs = 0
        self._synced = set()
        self.on_event = on_event
        self.events = []
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inotify", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if not r:
                continue
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            t = time.monotonic()
            off = 0
            while off < len(buf):
                _wd, mask, _cookie, ln = _EVENT.unpack_from(buf, off)
                name = buf[off + 16: off + 16 + ln].split(b"\0", 1)[0].decode("utf-8", "replace")
                off += 16 + ln
                if name.startswith(self.SYNC_PREFIX):
                    self._synced.add(name)
                    continue
                ev = InotifyEvent(t, mask, name)
                with self._lock:
                    self.events.append(ev)
                if self.on_event:
                    try:
                        self.on_event(ev)
                    except Exception as e:  # recorded, asserted by the test
                        self.errors.append("%r: %r" % (ev, e))

    def snapshot(self, name=None, mask=None):
        with self._lock:
            evs = list(self.events)
        return [e for e in evs if (name is None or e.name == name) and (mask is None or e.mask & mask)]

    def count(self, name, mask):
        return len(self.snapshot(name, mask))

    SYNC_PREFIX = ".rcit-sync-"

    def sync(self, timeout=5):
        """Returns once every event that happened in the directory before this call is in
        self.events: it creates a marker file there and waits for its own event (inotify
        keeps the order of one watch's events; the mask must hold IN_CREATE). Markers are
        not recorded."""
        self._syncs += 1
        name = "%s%d" % (self.SYNC_PREFIX, self._syncs)
        os.close(os.open(os.path.join(self.path, name),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        try:
            wait_until(lambda: name in self._synced, timeout, "inotify event of %s" % name)
        finally:
            os.unlink(os.path.join(self.path, name))

    def close(self):
        if self.fd < 0:
            return
        self._stop.set()
        self._thread.join(2)
        os.close(self.fd)
        self.fd = -1


# --------------------------------------------------------------------------- config

class Raw(str):
    """A libconfig value written as is (an octal mode, or deliberately broken text)."""


def _value(v):
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(_value(x) for x in v) + " ]"
    raise TypeError(v)


def _emit_group_body(d, indent, out):
    pad = "  " * indent
    for k, v in d.items():
        if isinstance(v, dict):
            out.append("%s%s = {" % (pad, k))
            _emit_group_body(v, indent + 1, out)
            out.append("%s};" % pad)
        else:
            out.append("%s%s = %s;" % (pad, k, _value(v)))


def _emit_list(key, items, out):
    out.append("%s = (" % key)
    for i, item in enumerate(items):
        out.append("  {")
        _emit_group_body(item, 2, out)
        out.append("  }" + ("," if i + 1 < len(items) else ""))
    out.append(");")


def render_config(agent, sources, credentials, extra_lines=()):
    out = ["# written by tests/integration", "agent = {"]
    _emit_group_body(agent, 1, out)
    out.append("};")
    _emit_list("sources", sources, out)
    _emit_list("credentials", credentials, out)
    out.extend(extra_lines)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- store

def store_json(username, password):
    return json.dumps({"username": username, "password": password})


def write_store_atomic(directory, filename, content):
    """What a careful secret store does: write a hidden temp file, rename into place."""
    tmp = os.path.join(directory, ".%s.tmp-%s" % (filename, os.urandom(4).hex()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, content.encode() if isinstance(content, str) else content)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(directory, filename))


def write_store_inplace(directory, filename, content):
    """A plain open/truncate/write/close: the watcher sees IN_CLOSE_WRITE."""
    fd = os.open(os.path.join(directory, filename),
                 os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, content.encode() if isinstance(content, str) else content)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- agent

class Agent:
    def __init__(self, tree, conf, args=(), watchdog_usec=None, notify=True, env=None,
                 tag="agent", journal=False, wrapper=()):
        """wrapper: a command the agent runs under (e.g. valgrind and its options)."""
        self.tree = tree
        self.conf = conf
        self.check_exit = True
        self.first_doc = None     # set by Scenario.start_published
        n = len([x for x in os.listdir(tree.root) if x.startswith(tag)])
        self.logpath = os.path.join(tree.root, "%s%d.log" % (tag, n))
        self.notify = NotifyListener(os.path.join(tree.root, "%s%d.notify" % (tag, n))) if notify else None
        e = {}
        if self.notify:
            e["NOTIFY_SOCKET"] = self.notify.path
        if watchdog_usec:
            e["WATCHDOG_USEC"] = str(watchdog_usec)
        if env:
            e.update(env)
        self._logf = open(self.logpath, "wb")
        self.journal = None
        if journal:
            # systemd's way of saying "stderr is the journal": JOURNAL_STREAM=DEV:INO of
            # stderr; the journal socket itself is injectable (docs/design.md §12).
            self.journal = JournalListener(os.path.join(tree.root, "%s%d.journal" % (tag, n)))
            st = os.fstat(self._logf.fileno())
            e["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
            e["REDIS_CREDS_JOURNAL_SOCKET"] = self.journal.path
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(list(wrapper) + [AGENT_BIN, "-c", conf, "--foreground"] + list(args),
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=clean_env(e),
                                     preexec_fn=_die_with_parent)
        self.pid = self.proc.pid

    # logs
    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_mark(self):
        return len(self.log())

    def log_lines(self, since=0):
        return self.log()[since:].splitlines()

    def find_log(self, pred, since=0):
        for line in self.log_lines(since):
            if pred(line):
                return line
        return None

    def wait_log(self, pred, since=0, timeout=5, what=None):
        if isinstance(pred, str):
            s = pred
            pred = lambda line: s in line  # noqa: E731
            what = what or repr(s)

        def check():
            line = self.find_log(pred, since)
            if line is None and self.proc.poll() is not None:
                fail("agent exited %s while waiting for log %s; log:\n%s"
                     % (self.proc.returncode, what, self.log()[-4000:]))
            return line
        try:
            return wait_until(check, timeout, "log %s" % what)
        except AssertionError as e:
            if "agent exited" in str(e):
                raise
            fail("timed out after %ss waiting for log %s; log since mark:\n%s"
                 % (timeout, what, "\n".join(self.log_lines(since)[-40:])))

    def wait_log_count(self, pred, n, since=0, timeout=5, what=None):
        """Waits until n log lines since `since` match pred (a substring or a function);
        returns them. For "it happened again", e.g. the retry of a refused attempt."""
        if isinstance(pred, str):
            s = pred
            pred = lambda line: s in line  # noqa: E731
            what = what or repr(s)

        def check():
            lines = [l for l in self.log_lines(since) if pred(l)]
            if len(lines) < n and self.proc.poll() is not None:
                fail("agent exited %s while waiting for %d lines %s; log:\n%s"
                     % (self.proc.returncode, n, what, self.log()[-4000:]))
            return lines if len(lines) >= n else None
        return wait_until(check, timeout, "%d log lines %s" % (n, what))

    def barrier(self, control_socket=None, timeout=5):
        """The positive event to wait for before asserting that nothing else happened: a
        `status` request answered over the control socket (the tree's, unless the config
        names another). The agent's event loop answers it only between two events, so
        whatever the agent did before (logged, published, refused, sent to the notify
        socket) is complete, and those notify messages are in self.notify, when this
        returns. Returns the status document."""
        path = control_socket or self.tree.control
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.settimeout(timeout)
        try:
            s.connect(path)
            s.sendall(b"status\n")
            buf = b""
            while True:
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
        except OSError as e:
            fail("no status from the agent at %s: %s" % (path, e))
        finally:
            s.close()
        try:
            doc = json.loads(buf)
        except ValueError:
            fail("malformed status from the agent at %s: %r" % (path, buf[:200]))
        if self.notify:
            self.notify.settle()
        return doc

    def children(self):
        """The pids of the agent's running child processes (hooks, helpers)."""
        return children_of(self.pid)

    # notify
    def _exited(self):
        if self.proc.poll() is not None:
            if self.notify:
                self.notify.settle()          # what it sent before exiting is recorded
            return "agent exited with status %s; log:\n%s" % (self.proc.returncode, self.log()[-4000:])
        return None

    def wait_notify(self, key, value=None, since=0, timeout=5):
        """Like notify.wait, but fails at once if the agent exits."""
        return self.notify.wait(key, value, since=since, timeout=timeout, abort=self._exited)

    def wait_ready(self, timeout=10, since=0):
        assert self.notify
        try:
            return self.notify.wait("READY", "1", since=since, timeout=timeout, abort=self._exited)
        except AssertionError as e:
            if str(e).startswith("while waiting"):
                raise
            fail("no READY=1 within %ss (agent %s); log:\n%s"
                 % (timeout, "running" if self.alive() else "exited %s" % self.proc.returncode,
                    self.log()[-4000:]))

    # process
    def alive(self):
        return self.proc.poll() is None

    def send(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, timeout=7):
        """SIGTERM, wait; returns the exit status (kills and fails after timeout)."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.close()
                fail("agent did not exit within %ss of SIGTERM" % timeout)
        self.close()
        return self.proc.returncode

    def wait_exit(self, timeout=5):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            fail("agent still running after %ss; log:\n%s" % (timeout, self.log()[-3000:]))

    def close(self):
        if not self._logf.closed:
            self._logf.close()
        if self.notify:
            self.notify.close()
        if self.journal:
            self.journal.close()


# --------------------------------------------------------------------------- a test's world

class Tree:
    """A per-test directory tree. Kept short (under /tmp) because AF_UNIX paths are limited
    to 108 bytes."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="rcit-", dir="/tmp")
        self.store = os.path.join(self.root, "store")
        self.runtime = os.path.join(self.root, "run")
        self.state = os.path.join(self.root, "state")
        self.control = os.path.join(self.root, "control.sock")
        self.conf = os.path.join(self.root, "agent.conf")
        os.mkdir(self.store, 0o700)
        os.mkdir(self.state, 0o700)

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)


class Scenario:
    """One test's world: a tree, a redis-server, the agents started, and watchers."""

    def __init__(self):
        self.tree = Tree()
        self.redis = RedisServer(os.path.join(self.tree.root, "redis"))
        self.agents = []
        self.watchers = []
        self._closers = []

    # --- config
    def agent_settings(self, **overrides):
        a = {
            "runtime_dir": self.tree.runtime,
            "state_dir": self.tree.state,
            "group": "",
            "plugin_dir": PLUGIN_DIR,
            "control_socket": self.tree.control,
            "log_level": "debug",
            "startup_timeout": "10s",
        }
        a.update(overrides)
        return a

    def source(self, name="local", directory=None, **extra):
        s = {"name": name, "type": "file", "directory": directory or self.tree.store}
        s.update(extra)
        return s

    def cred(self, name="cache", path=None, endpoints=None, timeout="1s", redis_extra=None,
             **extra):
        r = {"endpoints": endpoints or [self.redis.endpoint], "timeout": timeout}
        if redis_extra:
            r.update(redis_extra)
        c = {"name": name, "source": "local", "path": path or name + ".json",
             "poll_interval": "30s", "redis": r}
        c.update(extra)
        return c

    def config_text(self, credentials=None, sources=None, agent=None, extra_lines=()):
        return render_config(self.agent_settings(**(agent or {})),
                             sources or [self.source()],
                             credentials if credentials is not None else [self.cred()],
                             extra_lines)

    def write_config(self, credentials=None, sources=None, agent=None, path=None,
                     extra_lines=()):
        path = path or self.tree.conf
        text = self.config_text(credentials, sources, agent, extra_lines)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)
        return path

    # --- store
    def store(self, filename, content, atomic=True):
        (write_store_atomic if atomic else write_store_inplace)(self.tree.store, filename, content)

    def store_cred(self, username, password, filename="cache.json", atomic=True):
        self.store(filename, store_json(username, password), atomic)

    # --- published files
    def path(self, filename):
        return os.path.join(self.tree.runtime, filename)

    def read_bytes(self, filename="cache.json"):
        try:
            with open(self.path(filename), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def read_doc(self, name="cache"):
        b = self.read_bytes(name + ".json")
        return None if b is None else json.loads(b)

    def wait_published(self, name="cache", password=None, timeout=5, pred=None):
        def check():
            try:
                d = self.read_doc(name)
            except ValueError:
                return None
            if d is None:
                return None
            if password is not None and d.get("password") != password:
                return None
            if pred is not None and not pred(d):
                return None
            return d
        try:
            return wait_until(check, timeout, "%s.json with the expected password" % name,
                              interval=0.002)
        except AssertionError:
            logs = "\n".join("--- %s\n%s" % (a.logpath, a.log()[-3000:]) for a in self.agents)
            fail("%s.json not published with the expected credential within %ss; now: %r\n%s"
                 % (name, timeout, self.read_bytes(name + ".json"), logs))

    # --- the setup most tests share
    def start_published(self, password="pw1", *, user="app", also_accept=(), credentials=None,
                        config=None, atomic=True, publish=True, **agent_kw):
        """Redis user `user` accepts `password` and `also_accept`, the store holds (user,
        password) in cache.json, the config lists `credentials` (default: one credential
        `cache`; `config` holds more write_config arguments), the agent is started and READY,
        and (unless publish=False) cache.json is published with `password`. Returns the
        Agent; a.first_doc is that first published document."""
        self.redis.create_user(user, password, *also_accept)
        self.store_cred(user, password, atomic=atomic)
        self.write_config(credentials, **(config or {}))
        a = self.start_agent(**agent_kw)
        a.wait_ready()
        if publish:
            a.first_doc = self.wait_published(password=password)
        return a

    # --- processes
    def start_agent(self, conf=None, **kw):
        a = Agent(self.tree, conf or self.tree.conf, **kw)
        self.agents.append(a)
        return a

    def watch_runtime(self, on_event=None):
        os.makedirs(self.tree.runtime, mode=0o750, exist_ok=True)
        w = InotifyWatcher(self.tree.runtime, on_event=on_event)
        self.watchers.append(w)
        return w

    def on_close(self, fn):
        self._closers.append(fn)

    def another_redis(self, extra_conf=()):
        """A second redis-server (e.g. another node), stopped at teardown."""
        r = RedisServer(os.path.join(self.tree.root, "redis%d" % (len(self._closers) + 2)),
                        extra_conf)
        r.start()
        self.on_close(r.stop)
        return r

    def run_agent(self, *args, conf=None, timeout=20, cwd=None):
        """Runs the agent to completion (--once, --check-config); returns CompletedProcess."""
        return subprocess.run([AGENT_BIN, "-c", conf or self.tree.conf] + list(args),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=clean_env(), cwd=cwd)

    def run_cli(self, *args, timeout=10, env=None):
        return subprocess.run([CLI_BIN] + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout,
                              env=clean_env(env))

    def close(self):
        """Stops everything; returns a list of problems (an agent that did not exit 0)."""
        problems = []
        for fn in reversed(self._closers):
            try:
                fn()
            except Exception as e:
                problems.append("closer: %r" % e)
        for w in self.watchers:
            w.close()
        for a in self.agents:
            was_running = a.alive()
            try:
                rc = a.stop()
            except AssertionError as e:
                problems.append("%s: %s" % (a.logpath, e))
                continue
            if a.check_exit and rc != 0:
                problems.append("agent pid %d %s with status %s (docs/design.md §3.4: SIGTERM -> exit 0)"
                                % (a.pid, "stopped" if was_running else "had exited", rc))
        self.redis.stop()
        return problems

    def dump_logs(self):
        for a in self.agents:
            print("===== %s (pid %d)" % (a.logpath, a.pid))
            print(a.log()[-6000:])
            if a.notify is not None:
                print("----- notify:", [m.raw for m in a.notify.snapshot()
                                         if "WATCHDOG" not in m.fields][-30:])


def children_of(pid):
    """The pids of process pid's children (of every thread), zombies included."""
    pids = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except FileNotFoundError:
        return pids
    for t in tasks:       # a child belongs to the thread that forked it
        try:
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                pids += [int(x) for x in f.read().split()]
        except FileNotFoundError:
            continue
    return pids


def asleep_on_a_watch(pid):
    """Whether process pid sleeps in its event loop with an inotify watch or a timer armed
    (an inotify or timerfd descriptor, state S): `exec --wait` waiting for the runtime
    directory (polled by a timer until it exists) or for the file (inotify)."""
    armed = False
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            armed = armed or target in ("anon_inode:inotify", "anon_inode:[timerfd]")
    except FileNotFoundError:
        return False
    return armed and proc_state(pid) == "S"


def proc_state(pid):
    """The state letter of process pid (R, S, T stopped, Z ...), or None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def is_regular(path):
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def level_is_error(line):
    """An agent log line at warning level or above (stderr format
    'redis-creds-agent[pid]: <level>: message')."""
    return re.search(r"\b(warning|warn|err|error|crit|alert|emerg)\b", line, re.I) is not None
