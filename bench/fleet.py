#!/usr/bin/python3
"""A fleet of agents rotating one shared credential (sizing: docs/fleet.md).

N agents run as separate processes, each with its own runtime_dir, state_dir (so its own
host key), control socket and journal socket, all sharing one store (a `file` directory,
or the fake Vault, KV v2 with check-and-set, in its own process) and one redis-server.
Every agent has the same credential `cache` with `rotation = { strategy = "redis-acl";
interval; grace; admin_username; admin_password_file }`, so the fleet rotates it. The run
lasts --intervals rotation intervals after every agent has published the first version.

What it watches (nothing here depends on how the agent decides to rotate, so the same run
measures today's agent and any later one):
  * each agent's journal entries (a datagram socket per agent in place of journald's, the
    agent's own JOURNAL_STREAM / REDIS_CREDS_JOURNAL_SOCKET mechanism): MESSAGE_IDs
    rotation started (…4b05), completed (…4b06), failed (…4b07), and every entry at
    PRIORITY warning or worse; plus the agents' stderr files for anything that missed the
    journal;
  * the credential's store entry (file: inotify on the store directory; Vault: the fake
    reports each KV write): when a new password lands, and what it is (a fingerprint, never
    the password);
  * every agent's cache.json (inotify on each runtime_dir): which password it publishes and
    the file's mtime, i.e. when the agent wrote it, whatever this process's own lag;
  * store requests: file: every open (read, write, lock, listing) of the store directory
    and its files by an agent's pid, and every write (close after writing), from fanotify
    (bench/fanotify_count.py; root): exact, where the IN_OPEN events that the earlier runs
    counted (still reported) are a lower bound, as inotify merges identical back-to-back
    events; Vault: the fake's request log;
  * agent RSS from /proc/PID/status.

Versions are keyed per host (each host key gives another version string for the same
password), so events are matched across hosts by the published password's fingerprint,
learnt from each host's cache.json (`version` and `previous.version`).

It reports:
  * rotations: the spacing of consecutive completed rotations (goal: >= interval and <=
    interval + splay + 1 s, splay = --splay or 10 % of interval) and the claims (rotation
    started entries, one per host that tried) per base version (goal: 1); the check-and-set
    record creations Vault refused; the claim-to-write window; the reads of the rotation
    record per rotation (the rotator's steps plus every host due before it saw the new
    version: what the splay spreads);
  * pickup: from the moment the store entry held the new password (file mtime / the fake's
    write time) to each host's cache.json holding it; p50, p99, max over hosts and the
    last host per rotation (goal: <= 100 ms file, <= poll_interval + 100 ms Vault);
  * warnings and errors logged anywhere (goal 0), with the most frequent messages, and the
    passwords left on the user in Redis at the end (goal: 1, or 2 during a grace);
  * store requests per second (fleet and per agent; split into steady looks and what each
    rotation adds; file store: the rotating host's share and each observer's) and agent
    RSS.

Many agents on one machine need fs.inotify.max_user_instances above twice their number
(file store; once with Vault): the run raises it when needed (root) and restores it.

New rotation settings (e.g. `splay`, `pending_timeout`) go in with --splay and
--rotation-extra; an agent that refuses its configuration stops the run with its message.

Usage: bench/fleet.py [--agents N] [--store file|vault] [--interval 8s] [--grace 2s]
                      [--splay S] [--intervals K] [--poll D] [--workers W]
                      [--rotation-extra TEXT] [--base DIR] [--json] [--json-out F] [--keep]
Prints numbers; asserts nothing. Run with Debian's /usr/bin/python3 after a build."""
import argparse
import collections
import hashlib
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib as B  # noqa: E402
import vault_lib as V  # noqa: E402  (secret_file)
from fanotify_count import OpenCounter  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from rc_harness import JournalListener  # noqa: E402  (parses the journal's native protocol)

MID = {
    "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b01": "published",
    "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b05": "started",
    "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b06": "completed",
    "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b07": "failed",
    "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b11": "taken_over",
}
ADMIN_USER = "rc-admin"
CRED = "cache"
VAULT_PATH = "redis/cache"
IN_OPEN, IN_CLOSE_WRITE, IN_MOVED_TO, IN_Q_OVERFLOW = 0x20, 0x8, 0x80, 0x4000


def fingerprint(username, password):
    """A short, one-way name for a password (never printed itself)."""
    return hashlib.sha256(("%s\0%s" % (username, password)).encode()).hexdigest()[:12]


def seconds(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not m:
        raise SystemExit("bad duration %r (use e.g. 500ms, 8s, 1m)" % text)
    return float(m.group(1)) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# ----------------------------------------------------------------- the fake Vault, in its own process

def serve_vault():
    """`fleet.py --serve-vault`: a fake Vault (KV v2, check-and-set required) that prints
    `PORT n`, then `WRITE <key> <version> <time.time()> <fingerprint>` for every KV write,
    and answers `stats` on stdin with one JSON line of its request counts."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "fakes"))
    from vault_fake import FakeVault

    out_lock = threading.Lock()

    def emit(line):
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    class Reporting(FakeVault):
        def _kv2_write(self, m, key, data, cas):
            try:
                v = super()._kv2_write(m, key, data, cas)
            except Exception:
                emit("LOST %s %.6f" % (key, time.time()))   # check-and-set refused
                raise
            emit("WRITE %s %d %.6f %s" % (key, v, time.time(),
                                          fingerprint(data.get("username", ""), data.get("password", ""))))
            return v

    fv = Reporting().start()
    fv.kv2_enable("secret", cas_required=True)
    emit("PORT %d %s" % (fv.port, fv.root_token))
    for line in sys.stdin:
        cmd = line.split()
        if cmd[:1] == ["put"]:
            fv.kv2_put("secret", VAULT_PATH, {"username": cmd[1], "password": cmd[2]}, cas=0)
        elif cmd[:1] == ["stats"]:
            log = fv.request_log()
            kinds = collections.Counter()
            for r in log:
                if float(r["t"]) < float(cmd[1]):
                    continue
                p = r["path"]
                kind = ("data read" if "/data/" in p and r["method"] == "GET" else
                        "data write" if "/data/" in p else
                        "metadata" if "/metadata/" in p else "other")
                kinds[kind + " " + ("rotation record" if ".rotation" in p else "")] += 1
            emit("STATS " + json.dumps({k.strip(): v for k, v in kinds.items()}))
    fv.stop()


class VaultProc:
    def __init__(self, root):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-vault"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)
        first = self.proc.stdout.readline().split()
        if first[:1] != ["PORT"]:
            raise RuntimeError("the fake Vault did not start")
        self.port, self.token = int(first[1]), first[2]
        self.url = "http://127.0.0.1:%d" % self.port
        self.stats = None
        self.fd = self.proc.stdout.fileno()
        self._buf = b""
        os.set_blocking(self.fd, False)
        self.token_file = V.secret_file(os.path.join(root, "vault-token"), self.token + "\n")

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self):
        """Returns the complete lines now readable."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        return [x.decode() for x in lines]

    def stop(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ----------------------------------------------------------------- agents

def rotation_text(a, admin_file):
    extra = a.rotation_extra
    if a.splay:
        extra += ' splay = "%s";' % a.splay
    return ('rotation = { strategy = "redis-acl"; interval = "%s"; grace = "%s"; admin_username = "%s";'
            ' admin_password_file = "%s"; %s };' % (a.interval, a.grace, ADMIN_USER, admin_file, extra))


def agent_conf(d, a, redis_port, source, admin_file):
    cred_path = "secret/" + VAULT_PATH if a.store == "vault" else CRED + ".json"
    engine = ' engine = "kv2";' if a.store == "vault" else ""
    text = "\n".join([
        'agent = { runtime_dir = "%s/run"; state_dir = "%s/state"; group = ""; plugin_dir = "%s";'
        ' control_socket = "%s/control.sock"; log_level = "%s"; workers = %d; };'
        % (d, d, B.PLUGINS, d, a.log_level, a.workers),
        "sources = ( %s );" % source,
        'credentials = ( { name = "%s"; source = "store"; path = "%s";%s poll_interval = "%s";'
        ' redis = { endpoints = [ "127.0.0.1:%d" ]; timeout = "2s"; }; %s } );'
        % (CRED, cred_path, engine, a.poll, redis_port, rotation_text(a, admin_file)),
    ])
    conf = os.path.join(d, "agent.conf")
    with open(conf, "w") as f:
        f.write(text + "\n")
    return conf


class Agent:
    def __init__(self, i, d, conf):
        self.i, self.dir = i, d
        self.run = os.path.join(d, "run")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock_path = os.path.join(d, "journal.sock")
        self.sock.bind(self.sock_path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setblocking(False)
        self.logpath = os.path.join(d, "agent.log")
        log = open(self.logpath, "wb")
        st = os.fstat(log.fileno())
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino),
               "REDIS_CREDS_JOURNAL_SOCKET": self.sock_path}
        self.proc = subprocess.Popen([B.AGENT, "-c", conf, "--foreground"], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, env=env)
        log.close()

    def rss_kib(self):
        return rss_of(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()

    def reap(self):
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


# ----------------------------------------------------------------- the run

class Fleet:
    def __init__(self, a):
        self.a = a
        self.root = B.tempdir_on(a.base)
        self.redis = B.Redis(self.root)
        self.vault = None
        self.agents = []
        self.events = []            # (t_real, agent, kind, fields)
        self.problems = []          # (t_real, agent or None, priority, message)
        self.store_writes = []      # (t_real, fingerprint) of the credential's entry
        self.other_writes = collections.Counter()   # other store entries written (records)
        self.cas_lost = []          # Vault: (t_real, key) of each check-and-set write refused
        self.opens = collections.Counter()          # file store: IN_OPEN per name
        self.published = {}         # (agent, fp) -> t_real of the first cache.json with it
        self.vmap = {}              # (agent, version) -> fp
        self.overflows = 0
        self.rss = collections.defaultdict(list)
        self.ino_fd = B._libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        self.fan = None             # file store: fanotify's exact opens and writes per agent
        self.wd = {}

    def watch(self, path, mask, what):
        wd = B._libc.inotify_add_watch(self.ino_fd, path.encode(), mask)
        if wd < 0:
            raise OSError("inotify_add_watch %s" % path)
        self.wd[wd] = what
        return wd

    # --- setup
    def setup(self):
        a = self.a
        admin_pw = os.urandom(16).hex()
        self.redis.cmd("ACL", "SETUSER", ADMIN_USER, "on", ">" + admin_pw, "~*", "&*", "+@all")
        first = os.urandom(16).hex()
        self.redis.cmd("ACL", "SETUSER", "app", "reset", "on", ">" + first, "~*", "+@all")
        admin_file = V.secret_file(os.path.join(self.root, "admin-pw"), admin_pw + "\n")
        self.first_fp = fingerprint("app", first)
        if a.store == "file":
            self.store_dir = os.path.join(self.root, "store")
            os.makedirs(self.store_dir)
            # 0600 as an operator would keep it (0644 makes every agent warn once)
            V.secret_file(os.path.join(self.store_dir, CRED + ".json"),
                          json.dumps({"username": "app", "password": first}))
            source = '{ name = "store"; type = "file"; directory = "%s"; }' % self.store_dir
            self.watch(self.store_dir, IN_OPEN | IN_CLOSE_WRITE | IN_MOVED_TO, "store")
            try:
                self.fan = OpenCounter(self.store_dir)
            except OSError as e:
                print("no exact store counts (%s): only inotify's lower bound" % e, file=sys.stderr)
        else:
            self.vault = VaultProc(self.root)
            self.vault.send("put app %s" % first)
            source = ('{ name = "store"; type = "vault"; address = "%s"; timeout = "5s";'
                      ' auth = { method = "token"; token_file = "%s"; }; }'
                      % (self.vault.url, self.vault.token_file))
        self.t_setup = t0 = time.monotonic()
        for i in range(a.agents):
            d = os.path.join(self.root, "a%03d" % i)
            os.makedirs(os.path.join(d, "run"))
            os.makedirs(os.path.join(d, "state"))
            conf = agent_conf(d, a, self.redis.port, source, admin_file)
            # Watch before the agent starts, or its first publication may go unseen.
            wd = self.watch(os.path.join(d, "run"), IN_CLOSE_WRITE | IN_MOVED_TO, None)
            ag = Agent(i, d, conf)
            self.wd[wd] = ag
            self.agents.append(ag)
        self.start_seconds = time.monotonic() - t0

    # --- event sources
    def on_published_file(self, ag):
        got = read_doc(os.path.join(ag.run, CRED + ".json"))
        if not got:
            return
        fp, mtime, doc = got
        self.vmap[(ag.i, doc.get("version"))] = fp
        prev = doc.get("previous")
        if prev:
            self.vmap[(ag.i, prev.get("version"))] = fingerprint(prev.get("username") or "",
                                                                  prev.get("password") or "")
        self.published.setdefault((ag.i, fp), mtime)

    def on_store_file(self, name):
        path = os.path.join(self.store_dir, name)
        if name != CRED + ".json":
            self.other_writes[temp_name(name)] += 1
            return
        got = read_doc(path)
        if got and (not self.store_writes or self.store_writes[-1][1] != got[0]):
            self.store_writes.append((got[1], got[0]))

    def read_inotify(self):
        while True:
            try:
                buf = os.read(self.ino_fd, 1 << 16)
            except BlockingIOError:
                return
            off = 0
            while off < len(buf):
                wd, mask, _, ln = struct.unpack_from("iIII", buf, off)
                name = buf[off + 16:off + 16 + ln].rstrip(b"\0").decode()
                off += 16 + ln
                if mask & IN_Q_OVERFLOW:
                    self.overflows += 1
                    continue
                what = self.wd.get(wd)
                if what == "store":            # the file store's directory
                    if mask & IN_OPEN:
                        self.opens[temp_name(name) or "(the directory)"] += 1
                    if mask & (IN_CLOSE_WRITE | IN_MOVED_TO):
                        self.on_store_file(name)
                elif isinstance(what, Agent) and name == CRED + ".json":
                    self.on_published_file(what)

    def read_journal(self, ag):
        while True:
            try:
                data = ag.sock.recv(1 << 16)
            except BlockingIOError:
                return
            t = time.time()
            f = JournalListener.parse(t, data).fields
            kind = MID.get(f.get("MESSAGE_ID", "")) or looked(f.get("MESSAGE", ""))
            if kind:
                self.events.append((t, ag.i, kind, f))
            if int(f.get("PRIORITY", "6")) <= 4:
                self.problems.append((t, ag.i, int(f["PRIORITY"]), f.get("MESSAGE", "")))

    def read_vault(self):
        for line in self.vault.read():
            w = line.split()
            if w[0] == "WRITE" and w[1] == VAULT_PATH:
                self.store_writes.append((float(w[3]), w[4]))
            elif w[0] == "WRITE":
                self.other_writes[w[1]] += 1
            elif w[0] == "LOST":
                self.cas_lost.append((float(w[2]), w[1]))
            elif w[0] == "STATS":
                self.vault.stats = json.loads(line[6:])

    def pump(self, until, on_tick=None):
        poller = select.epoll()
        socks = {ag.sock.fileno(): ag for ag in self.agents}
        for fd in socks:
            poller.register(fd, select.EPOLLIN)
        poller.register(self.ino_fd, select.EPOLLIN)
        if self.vault:
            poller.register(self.vault.fd, select.EPOLLIN)
        if self.fan:
            poller.register(self.fan.fd, select.EPOLLIN)
        try:
            while True:
                left = until() if callable(until) else until - time.monotonic()
                if left is None or left <= 0:
                    return
                for fd, _ in poller.poll(min(left, 0.5)):
                    if fd == self.ino_fd:
                        self.read_inotify()
                    elif self.vault and fd == self.vault.fd:
                        self.read_vault()
                    elif self.fan and fd == self.fan.fd:
                        self.fan.read()
                    else:
                        self.read_journal(socks[fd])
                if on_tick:
                    on_tick()
        finally:
            poller.close()

    def all_published(self):
        return all((ag.i, self.first_fp) in self.published for ag in self.agents)

    def run(self):
        a = self.a
        deadline = time.monotonic() + 60 + a.agents * 0.5

        def waiting():
            if self.all_published() or any(ag.proc.poll() is not None for ag in self.agents):
                return None
            return deadline - time.monotonic()
        self.pump(waiting)
        if not self.all_published():
            dead = [ag for ag in self.agents if ag.proc.poll() is not None]
            said = ""
            if dead:
                with open(dead[0].logpath, errors="replace") as f:
                    said = f.read()[-600:]
            raise RuntimeError("not every agent published the first version (%d exited%s); last "
                               "problems logged: %s" % (len(dead), ", the first said: " + said if said else "",
                                                        [p[3] for p in self.problems[-3:]]))
        self.ready_seconds = time.monotonic() - self.t_setup
        # What the agents logged while starting is stamped when read: read it all before
        # the measured run starts, or a slow read of 100 sockets puts it in the run.
        self.pump(time.monotonic() + 1)
        self.machine_before = B.machine()
        self.t_begin = time.time()
        self.t_begin_mono = time.monotonic()
        self.opens.clear()
        self.other_writes.clear()
        if self.fan:
            self.fan.reset()
        self.interval = seconds(a.interval)
        self.run_seconds = self.interval * a.intervals
        end = time.monotonic() + self.run_seconds
        next_rss = [time.monotonic() + 1]

        def tick():
            if time.monotonic() >= next_rss[0]:
                next_rss[0] = time.monotonic() + max(1.0, self.run_seconds / 10)
                for ag in self.agents:
                    v = ag.rss_kib()
                    if v:
                        self.rss[ag.i].append(v)
        self.pump(end, tick)
        self.t_end = time.time()
        self.machine_after = B.machine()
        opens = sum(self.opens.values())
        self.opens_in_run = dict(self.opens)
        self.opens_total = opens
        if self.fan:
            self.fan.read()
            self.fan_opens, self.fan_writes = self.fan.totals([ag.proc.pid for ag in self.agents])
            self.fan_per_agent = [sum(self.fan.opens.get(ag.proc.pid, {}).values()) for ag in self.agents]
            self.fan_overflows = self.fan.overflows
        if self.vault:
            self.vault.send("stats %.6f" % self.t_begin_mono)
            until = time.monotonic() + 30
            self.pump(lambda: None if self.vault.stats is not None else until - time.monotonic())
            if self.vault.stats is None:
                raise RuntimeError("the fake Vault did not report its request counts")
        self.redis_rss = rss_of(self.redis.proc.pid)
        # Let the last rotation's observers publish, without counting more requests.
        self.pump(time.monotonic() + 2 * seconds(a.grace) + 1)
        self.passwords_at_end = self.count_passwords()

    def count_passwords(self):
        """How many passwords the user has in Redis (ACL GETUSER lists their SHA-256s)."""
        reply = self.redis.cmd("ACL", "GETUSER", "app").decode()
        return len(re.findall(r"\b[0-9a-f]{64}\b", reply))

    def stop(self):
        for ag in self.agents:
            ag.stop()
        for ag in self.agents:
            ag.reap()
        if self.vault:
            self.vault.stop()
        self.redis.stop()
        os.close(self.ino_fd)
        if self.fan:
            self.fan.close()


def looked(msg):
    """The info entries of a due host that did not claim: it found another host's live
    record (and waits), or found the entry moved on (and picks it up)."""
    if re.search(r"^rotation of \S+: host .* is rotating it .*this host waits", msg):
        return "waited"
    if msg.startswith("rotation of ") and " not needed: the store holds another version" in msg:
        return "not_needed"
    return None


def rss_of(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None


def read_doc(path):
    """(fingerprint, mtime in seconds since the epoch, document) of a credential file, or
    None. The mtime is when its writer wrote it (before the rename), whatever our lag."""
    try:
        st = os.stat(path)
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return fingerprint(doc.get("username") or "", doc.get("password") or ""), st.st_mtime_ns / 1e9, doc


def by_target(counts):
    """Counts by the file a temporary file is for (`.cache.json.rotate-XXXXXX` is
    written for `cache.json`, `..cache.json.rotation.rotate-XXXXXX` for the record)."""
    out = collections.Counter()
    for name, n in counts.items():
        m = re.fullmatch(r"\.(.+)\.rotate-[A-Za-z0-9]{6}", name)
        out[m.group(1) if m else name] += n
    return out


def temp_name(name):
    """A temporary file's name without its random part."""
    return re.sub(r"-[A-Za-z0-9]{6}$", "-XXXXXX", name)


# ----------------------------------------------------------------- results

def normalize(msg):
    msg = re.sub(r"\b[0-9a-f]{16,}\b", "<v>", msg)
    msg = re.sub(r"\d+", "N", msg)
    return msg[:160]


def dist(values):
    v = sorted(values)
    if not v:
        return None
    return {"n": len(v), "min": v[0], "p50": B.percentile(v, 50), "p99": B.percentile(v, 99), "max": v[-1]}


def results(fl):
    a = fl.a
    t0, t1 = fl.t_begin, fl.t_end
    interval = fl.interval
    splay = seconds(a.splay) if a.splay else interval * 0.1
    # Rotations: new passwords in the credential's entry during the run.
    rot = [(t, fp) for t, fp in fl.store_writes if t0 <= t <= t1 and fp != fl.first_fp]
    prev_fp = {}
    last = fl.first_fp
    for t, fp in fl.store_writes:
        prev_fp[fp] = last
        last = fp

    def fp_of(ev):
        return fl.vmap.get((ev[1], ev[3].get("REDIS_CREDS_VERSION")))

    in_run = [e for e in fl.events if t0 <= e[0] <= t1]
    completed = {}
    for e in in_run:
        if e[2] == "completed":
            fp = fp_of(e) or ("?%s" % e[3].get("REDIS_CREDS_VERSION"))
            completed.setdefault(fp, e[0])
    comp_times = sorted(completed.values())
    spacing = [b - c for c, b in zip(comp_times, comp_times[1:])]
    lo, hi = interval, interval + splay + 1.0
    claims = collections.defaultdict(set)
    for e in in_run:
        if e[2] == "started":
            claims[fp_of(e) or "?"].add(e[1])
    claim_counts = [len(s) for s in claims.values()]
    # The claim's window: from the claim (…4b05, naming the base version) to the entry
    # holding the new password; due hosts that look within it find the live record.
    first_claim = {}
    for e in in_run:
        if e[2] == "started":
            first_claim.setdefault(fp_of(e), e[0])
    claim_to_write = [t - first_claim[prev_fp[fp]] for t, fp in rot if prev_fp.get(fp) in first_claim]
    # Pickup: store write -> each host's cache.json with that password.
    per_host, last_host, missed = [], [], 0
    for t, fp in rot:
        ts = [fl.published.get((ag.i, fp)) for ag in fl.agents]
        got = [x - t for x in ts if x is not None]
        missed += len(ts) - len(got)
        per_host.extend(got)
        if got and len(got) == len(ts):
            last_host.append(max(got))
    # Problems: everything at warning or worse, journal and stderr (what missed the journal).
    probs = [p for p in fl.problems if t0 <= p[0] <= t1]
    stderr_lines = []
    for ag in fl.agents:
        try:
            with open(ag.logpath, errors="replace") as f:
                for line in f:
                    if re.search(r"\]: (warning|err|crit|alert|emerg): ", line):
                        stderr_lines.append(line.split("]: ", 1)[1].strip())
        except OSError:
            pass
    top = collections.Counter(normalize(p[3]) for p in probs)
    top.update(normalize(x) for x in stderr_lines)
    dur = t1 - t0
    res = {
        "agents": a.agents, "store": a.store, "interval_s": interval, "grace_s": seconds(a.grace),
        "splay_s": splay, "splay_configured": bool(a.splay), "poll_interval_s": seconds(a.poll),
        "workers": a.workers, "base": a.base, "run_s": round(dur, 2),
        "start_all_published_s": round(fl.ready_seconds, 2),
        "rotations": len(rot), "rotations_due_at_most": int(dur // interval) + 1,
        "completed": len(comp_times),
        "spacing_s": dist(spacing), "spacing_goal_s": [lo, hi],
        "store_write_spacing_s": dist([b[0] - c[0] for c, b in zip(rot, rot[1:])]),
        "spacing_in_goal": sum(1 for s in spacing if lo <= s <= hi), "spacing_count": len(spacing),
        "claims_per_base": dist(claim_counts), "bases_claimed": len(claim_counts),
        "lost_claims": sum(1 for e in in_run if e[2] == "started") - len(rot),
        "claim_to_write_ms": scale(dist(claim_to_write), 1e3),
        "cas_refused": collections.Counter(k for t, k in fl.cas_lost if t0 <= t <= t1) if fl.vault else None,
        "due_hosts_that_waited": sum(1 for e in in_run if e[2] == "waited"),
        "due_hosts_not_needed": sum(1 for e in in_run if e[2] == "not_needed"),
        "pickup_ms_per_host": scale(dist(per_host), 1e3),
        "pickup_ms_last_host": scale(dist(last_host), 1e3),
        "pickup_goal_ms": 100 + (seconds(a.poll) * 1e3 if a.store == "vault" else 0),
        "hosts_missing_a_version": missed,
        "failed_events": sum(1 for e in in_run if e[2] == "failed"),
        "warnings": sum(1 for p in probs if p[2] == 4), "errors": sum(1 for p in probs if p[2] < 4),
        "stderr_problem_lines": len(stderr_lines),
        "top_problems": top.most_common(5),
        "inotify_overflows": fl.overflows,
        "rss_kib": dist([max(v) for v in fl.rss.values()]),
        "redis_rss_kib": fl.redis_rss,
        "passwords_on_user_at_end": fl.passwords_at_end,
        "machine_before": fl.machine_before, "machine_after": fl.machine_after,
        "filesystem": B.filesystem_of(a.base),
    }
    if a.store == "file" and fl.fan:
        opens, writes = by_target(fl.fan_opens), by_target(fl.fan_writes)
        res["store_requests"] = {
            "what": "the agents' opens in the store directory, fanotify (exact; reads = opens - writes)",
            "by_name": dict(opens), "writes_by_name": dict(writes),
            "reads_by_name": {k: opens[k] - writes.get(k, 0) for k in opens},
            "total": sum(opens.values()), "fanotify_overflows": fl.fan_overflows}
        res["store_requests_inotify"] = {"what": "IN_OPEN events in the store directory (a lower bound)",
                                         "by_name": fl.opens_in_run, "total": fl.opens_total}
        total = res["store_requests"]["total"]
    elif a.store == "file":
        res["store_requests"] = {"what": "IN_OPEN events in the store directory (a lower bound)",
                                 "by_name": fl.opens_in_run, "total": fl.opens_total}
        total = fl.opens_total
    else:
        res["store_requests"] = {"what": "requests the fake Vault logged", "by_kind": fl.vault.stats,
                                 "total": sum(fl.vault.stats.values())}
        total = res["store_requests"]["total"]
    res["store_requests_per_s"] = total / dur
    res["store_requests_per_agent_per_s"] = total / dur / a.agents
    # Split into the steady looks (one per poll_interval) and what rotations add.
    if a.store == "file" and fl.fan:
        # Every fetch (inotify's included) re-arms the poll timer: an agent polls only in
        # a gap between changes longer than poll_interval.
        marks = [t0] + [t for t, _ in rot] + [t1]
        steady = a.agents * sum(int((y - x) // seconds(a.poll)) for x, y in zip(marks, marks[1:]))
        res["steady_requests_per_agent_per_s"] = 1 / seconds(a.poll)
        res["requests_per_agent_per_rotation"] = (total - steady) / (a.agents * len(rot)) if rot else None
        res["per_agent_per_rotation_by_name"] = (
            {k: round(v / (a.agents * len(rot)), 3) for k, v in res["store_requests"]["by_name"].items()}
            if rot else None)
        res.update(rotator_and_observer(fl, in_run, len(rot), steady / a.agents))
    elif a.store == "file":
        steady = a.agents * dur / seconds(a.poll)      # one read of the file per poll
        reads = fl.opens_in_run.get(CRED + ".json", 0)
        res["steady_requests_per_agent_per_s"] = 1 / seconds(a.poll)
        res["requests_per_agent_per_rotation"] = (
            (reads - steady + fl.opens_in_run.get(".redis-creds-rotate.lock", 0)) / (a.agents * len(rot))
            if rot else None)
    else:
        looks = fl.vault.stats.get("metadata", 0)      # the credential's own metadata
        res["steady_requests_per_agent_per_s"] = looks / dur / a.agents
        res["requests_per_agent_per_rotation"] = ((total - looks) / (a.agents * len(rot)) if rot else None)
    res["other_store_writes"] = dict(fl.other_writes)
    # Reads of the rotation record: the rotator's own steps, plus every due host that
    # looked before it had seen the new version (what the splay spreads).
    if a.store == "vault":
        rec_reads = fl.vault.stats.get("data read rotation record", 0)
    elif fl.fan:
        rec_reads = res["store_requests"]["reads_by_name"].get("." + CRED + ".json.rotation", 0)
    else:
        rec_reads = None
    res["record_reads_per_rotation"] = rec_reads / len(rot) if rot and rec_reads is not None else None
    return res


def rotator_and_observer(fl, in_run, rotations, steady_each):
    """Store requests per rotation of the host that rotated and of each other host, from
    each agent's exact count: agents that claimed no rotation in the run give the
    observer's share (beyond the steady polls); the others' excess is the rotator's."""
    if not rotations:
        return {}
    claimed = collections.Counter(e[1] for e in in_run if e[2] == "started")
    obs = [(n - steady_each) / rotations for ag, n in zip(fl.agents, fl.fan_per_agent) if not claimed[ag.i]]
    if not obs:
        return {}
    per_obs = sum(obs) / len(obs)
    rot = [(n - steady_each - per_obs * (rotations - claimed[ag.i])) / claimed[ag.i]
           for ag, n in zip(fl.agents, fl.fan_per_agent) if claimed[ag.i]]
    return {"requests_per_rotation_observer": per_obs,
            "requests_per_rotation_rotator": sum(rot) / len(rot) if rot else None}


def scale(d, k):
    return {key: (v * k if key != "n" else v) for key, v in d.items()} if d else None


def fmt(d, unit=""):
    if not d:
        return "-"
    return "p50 %.4g%s, p99 %.4g%s, max %.4g%s (min %.4g, n %d)" % (
        d["p50"], unit, d["p99"], unit, d["max"], unit, d["min"], d["n"])


def report(r):
    print("%d agents, %s store, interval %gs, grace %gs, splay %gs%s, poll_interval %gs, workers %d, "
          "on %s; %.1f s measured after all published (start took %.2f s)" % (
              r["agents"], r["store"], r["interval_s"], r["grace_s"], r["splay_s"],
              "" if r["splay_configured"] else " (goal's default, not configured)",
              r["poll_interval_s"], r["workers"], r["base"], r["run_s"], r["start_all_published_s"]))
    mb, ma = r["machine_before"], r["machine_after"]
    print("%s on %s; %d cores, load average %s before, %s after; kernel %s" % (
        mb["date"], r["filesystem"], mb["cores"], "/".join(map(str, mb["loadavg"])),
        "/".join(map(str, ma["loadavg"])), mb["kernel"]))
    print()
    print("| measure | value | goal |")
    print("|---|---|---|")
    lo, hi = r["spacing_goal_s"]
    rows = [
        ("rotations (new passwords in the store)", "%d (at most %d due)" % (r["rotations"], r["rotations_due_at_most"]),
         "one per interval"),
        ("completed rotations (journal …4b06)", "%d" % r["completed"], ""),
        ("spacing of completed rotations", fmt(r["spacing_s"], " s") + "; %d of %d in goal" % (
            r["spacing_in_goal"], r["spacing_count"]), ">= %g s and <= %g s" % (lo, hi)),
        ("spacing of new passwords in the store", fmt(r["store_write_spacing_s"], " s"), ""),
        ("claims (…4b05 started) per base version", fmt(r["claims_per_base"]) + "; %d lost" % r["lost_claims"], "1"),
        ("claim (…4b05) -> the entry written", fmt(r["claim_to_write_ms"], " ms"), ""),
        ("Vault check-and-set writes refused (record, entry)", "%d, %d" % (
            r["cas_refused"].get(VAULT_PATH + ".rotation", 0), r["cas_refused"].get(VAULT_PATH, 0))
         if r["cas_refused"] is not None else "-", "0"),
        ("due hosts that logged finding a live record (once per host and epoch number: a lower "
         "bound) / the entry moved on, in the run",
         "%d / %d" % (r["due_hosts_that_waited"], r["due_hosts_not_needed"]), ""),
        ("store write -> host published, per host", fmt(r["pickup_ms_per_host"], " ms"), ""),
        ("store write -> last host published", fmt(r["pickup_ms_last_host"], " ms"),
         "<= %g ms" % r["pickup_goal_ms"]),
        ("host x rotation never published", "%d" % r["hosts_missing_a_version"], "0"),
        ("warnings / errors (journal), stderr lines", "%d / %d, %d" % (r["warnings"], r["errors"],
                                                                      r["stderr_problem_lines"]), "0"),
        ("rotation failed events (…4b07)", "%d" % r["failed_events"], "0"),
        ("passwords on the user in Redis at the end", "%d" % r["passwords_on_user_at_end"],
         "1, or 2 during grace"),
        ("store requests /s (fleet; per agent)", "%.1f; %.3f" % (r["store_requests_per_s"],
                                                               r["store_requests_per_agent_per_s"]), ""),
        ("store requests per agent: per second steady; per rotation", "%.3f; %s" % (
            r["steady_requests_per_agent_per_s"], "%.2f" % r["requests_per_agent_per_rotation"]
            if r["requests_per_agent_per_rotation"] is not None else "-"), ""),
        ("reads of the rotation record per rotation (all hosts)", "%.1f" % r["record_reads_per_rotation"]
         if r["record_reads_per_rotation"] is not None else "-", ""),
        ("agent RSS, MiB (each agent's largest sample)", fmt(scale(r["rss_kib"], 1 / 1024)), ""),
        ("redis-server RSS, MiB", "%.1f" % (r["redis_rss_kib"] / 1024), ""),
    ]
    for row in rows:
        print("| %s | %s | %s |" % row)
    print()
    print("store requests: %s: %s" % (r["store_requests"]["what"],
                                      json.dumps(r["store_requests"].get("by_name") or r["store_requests"].get("by_kind"))))
    if "writes_by_name" in r["store_requests"]:
        print("  of which writes: %s; per agent and rotation: %s" % (
            json.dumps(r["store_requests"]["writes_by_name"]), json.dumps(r["per_agent_per_rotation_by_name"])))
        print("  inotify's lower bound (earlier runs' measure): %d opens" % r["store_requests_inotify"]["total"])
    if r.get("requests_per_rotation_observer") is not None:
        print("  per rotation: each observing host %.2f requests, the rotating host %s" % (
            r["requests_per_rotation_observer"], "%.1f" % r["requests_per_rotation_rotator"]
            if r["requests_per_rotation_rotator"] is not None else "-"))
    if r["other_store_writes"]:
        print("other store entries written: %s" % json.dumps(r["other_store_writes"]))
    if r["inotify_overflows"]:
        print("inotify queue overflowed %d times: counts are low" % r["inotify_overflows"])
    if r["top_problems"]:
        print("most frequent warnings/errors (digits as N, versions as <v>):")
        for msg, n in r["top_problems"]:
            print("  %5d  %s" % (n, msg))


INOTIFY_MAX = "/proc/sys/fs/inotify/max_user_instances"


def inotify_instances():
    """inotify instances open now, all users (the helpers on this machine share root)."""
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % pid):
                if os.readlink("/proc/%s/fd/%s" % (pid, fd)) == "anon_inode:inotify":
                    n += 1
        except OSError:
            continue
    return n


def inotify_headroom(need):
    """Raises fs.inotify.max_user_instances when `need` more instances (one per agent's
    file source, one for this process) would not fit beside those open now. Returns a
    function that restores the limit (if nobody changed it since)."""
    with open(INOTIFY_MAX) as f:
        limit = int(f.read())
    used = inotify_instances()
    if used + need + 16 <= limit:
        return lambda: None
    raised = used + need + 64
    try:
        with open(INOTIFY_MAX, "w") as f:
            f.write("%d\n" % raised)
    except OSError as e:
        print("fs.inotify.max_user_instances is %d with %d in use, %d more needed, and cannot be "
              "raised (%s): agents without a watch fall back to poll_interval" % (limit, used, need, e),
              file=sys.stderr)
        return lambda: None
    print("fs.inotify.max_user_instances %d -> %d for the run (%d in use)" % (limit, raised, used),
          file=sys.stderr)

    def restore():
        with open(INOTIFY_MAX) as f:
            if int(f.read()) != raised:
                return
        with open(INOTIFY_MAX, "w") as f:
            f.write("%d\n" % limit)
        print("fs.inotify.max_user_instances back to %d" % limit, file=sys.stderr)
    return restore


def main():
    if sys.argv[1:] == ["--serve-vault"]:
        return serve_vault()
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=10)
    ap.add_argument("--store", choices=("file", "vault"), default="file")
    ap.add_argument("--interval", default="8s")
    ap.add_argument("--grace", default="2s")
    ap.add_argument("--splay", default="", help="written as rotation.splay when given (the goal "
                    "assumes 10%% of interval otherwise)")
    ap.add_argument("--intervals", type=float, default=5, help="run length, in intervals")
    ap.add_argument("--poll", default=None, help="poll_interval (default 30s file, 1s vault)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--rotation-extra", default="", help="more libconfig settings for the rotation group")
    ap.add_argument("--base", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--json-out", help="also write the raw numbers (--json's) to this file")
    ap.add_argument("--keep", action="store_true", help="keep the directory (agent logs) afterwards")
    a = ap.parse_args()
    if a.poll is None:
        a.poll = "1s" if a.store == "vault" else "30s"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    # an agent watches its runtime_dir and, with the file store, the store's directory
    restore = inotify_headroom(a.agents * (2 if a.store == "file" else 1) + 1)
    fl = Fleet(a)
    try:
        try:
            fl.setup()
            fl.run()
        finally:
            fl.stop()
        r = results(fl)
    finally:
        restore()
        if not a.keep:
            B.cleanup(fl.root)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(r, f, indent=1)
    if a.json:
        print(json.dumps(r, indent=1))
    else:
        report(r)


if __name__ == "__main__":
    main()
