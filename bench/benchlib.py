"""Shared pieces of the benchmarks: a throwaway redis-server, an agent config, inotify.

Benchmarks print numbers; they assert nothing. Run them with Debian's /usr/bin/python3
after a build (scripts/test.sh or cmake --build build)."""
import ctypes
import ctypes.util
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(os.environ.get("REDIS_CREDS_BUILD_DIR", os.path.join(SRC, "build")))
AGENT = os.path.join(BUILD, "agent", "redis-creds-agent")
CLI = os.path.join(BUILD, "agent", "redis-creds")
PLUGINS = os.path.join(BUILD, "plugins")

IN_MOVED_TO = 0x80
IN_CLOSE_WRITE = 0x8
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                self.cmd("PING")
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def cmd(self, *args):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        req = b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
        s.sendall(req)
        data = s.recv(65536)
        s.close()
        if data.startswith(b"-"):
            raise RuntimeError(data.decode().strip())
        return data

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Inotify:
    def __init__(self, path, mask):
        self.fd = _libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0 or _libc.inotify_add_watch(self.fd, path.encode(), mask) < 0:
            raise OSError(ctypes.get_errno(), "inotify")

    def wait_for(self, name, timeout):
        """Returns the monotonic time at which an event for `name` was read, or None."""
        import select
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.fd], [], [], left)
            if not r:
                return None
            buf = os.read(self.fd, 65536)
            now = time.monotonic()
            off = 0
            while off < len(buf):
                _, _, _, ln = struct.unpack_from("iIII", buf, off)
                ev_name = buf[off + 16:off + 16 + ln].rstrip(b"\0").decode()
                off += 16 + ln
                if ev_name == name:
                    return now

    def close(self):
        os.close(self.fd)


def write_atomic(path, data):
    d, base = os.path.split(path)
    tmp = os.path.join(d, "." + base + ".tmp")
    with open(tmp, "w") as f:
        f.write(data)
    os.rename(tmp, path)


def agent_config(root, redis_port, creds, log_level="notice", poll="30s", cred_extra="", redis_extra=""):
    """Writes a config with `creds` (list of names) on one file source; returns its path.
    cred_extra: more settings for every credential (libconfig text, e.g. a rotation);
    redis_extra: more settings of its redis group (e.g. revalidate_interval = "1s";)."""
    store = os.path.join(root, "store")
    for d in ("store", "run", "state"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    lines = [
        'agent = { runtime_dir = "%s/run"; state_dir = "%s/state"; group = ""; plugin_dir = "%s";'
        ' control_socket = "%s/control.sock"; log_level = "%s"; };' % (root, root, PLUGINS, root, log_level),
        'sources = ( { name = "local"; type = "file"; directory = "%s"; } );' % store,
        "credentials = (",
        ",\n".join(
            '{ name = "%s"; source = "local"; path = "%s"; poll_interval = "%s";'
            ' redis = { endpoints = [ "127.0.0.1:%d" ]; timeout = "2s"; %s }; %s }'
            % (n, n, poll, redis_port, redis_extra, cred_extra)
            for n in creds),
        ");",
    ]
    conf = os.path.join(root, "agent.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    return conf


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def tempdir_on(base):
    return tempfile.mkdtemp(prefix="rc-bench-", dir=base)


def cleanup(path):
    shutil.rmtree(path, ignore_errors=True)


def teardown(agent, redis, root, *fakes):
    """Stops the agent (a Popen, or None), closes the fakes (store servers), stops the
    redis-server, and removes root."""
    if agent:
        agent.terminate()
        agent.wait()
    for f in fakes:
        f.close()
    redis.stop()
    cleanup(root)


def filesystem_of(path):
    """The type of the filesystem holding path ("tmpfs", "ext4", ...), from /proc/mounts."""
    path = os.path.realpath(path)
    best, fstype = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            _, mnt, typ = line.split()[:3]
            mnt = mnt.replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                best, fstype = mnt, typ
    return fstype


def machine():
    """What a benchmark's numbers depend on: cores, load averages now, kernel, date (UTC)."""
    return {"cores": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
            "kernel": os.uname().release,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
