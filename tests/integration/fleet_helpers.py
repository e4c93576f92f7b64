"""The fleet's test helpers (test_fleet*.py): many agents, each with its own runtime_dir,
state_dir (so its own host key) and control socket, sharing one `file` store and one
redis-server; what the store and every host published, from inotify and the agents'
journal sockets."""
import hashlib
import json
import os
import signal
import threading

import rc_harness as h

MID_STARTED = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b05"
MID_COMPLETED = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b06"
MID_TAKEN_OVER = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b11"
WRITTEN = h.IN_MOVED_TO | h.IN_CLOSE_WRITE
RECORD = ".cache.json.rotation"


def sha(pw):
    return hashlib.sha256(pw.encode()).hexdigest()


def problems(agent):
    """Journal entries at warning or worse (the agents log to their journal sockets), and
    anything that reached stderr instead."""
    return ([m.fields.get("MESSAGE", "") for m in agent.journal.snapshot()
             if int(m.fields.get("PRIORITY", "6")) <= 4] + agent.log().splitlines())


def mark(agent):
    return len(agent.journal.snapshot())


def wait_msg(agent, pred, since=0, timeout=5):
    """The first journal MESSAGE after `since` (a mark()) that pred accepts."""
    def found():
        for m in agent.journal.snapshot()[since:]:
            if pred(m.fields.get("MESSAGE", "")):
                return m.fields["MESSAGE"]
        return None
    return h.wait_until(found, timeout, "a journal entry")


def has_msg(agent, pred):
    return any(pred(m.fields.get("MESSAGE", "")) for m in agent.journal.snapshot())


class Fleet:
    """n agents, host i in <root>/hNN (run, state, control socket), sharing the scenario's
    store and redis-server. Records every new password in the store's entry (with its
    mtime and the time its inotify event came) and the first time each host's cache.json
    held each password (its mtime). `cred` and `sources` replace the scenario's file
    credential (e.g. a Vault one: the store's entry is then not watched here)."""

    def __init__(self, sc, n, rotation, timeout="1s", log_level="info", cred=None, sources=None,
                 endpoints=None):
        self.sc = sc
        self.n = n
        self.lock = threading.Lock()
        self.store_writes = []      # (mtime, t_event_mono, password, doc)
        self.published = {}         # (host, password) -> mtime of its cache.json
        self.confs, self.runs, self.agents = [], [], [None] * n
        self.every = [[] for _ in range(n)]   # every agent process host i ran (restarts)
        cred = cred or sc.cred(timeout=timeout, endpoints=endpoints, rotation=dict(rotation))
        self.watchers = [h.InotifyWatcher(sc.tree.store, on_event=self._on_store)]
        for i in range(n):
            d = os.path.join(sc.tree.root, "h%02d" % i)
            run, state = os.path.join(d, "run"), os.path.join(d, "state")
            os.makedirs(run, 0o750)
            os.makedirs(state, 0o700)
            conf = os.path.join(d, "agent.conf")
            with open(conf, "w") as f:
                f.write(sc.config_text([cred], sources=sources, agent={
                    "runtime_dir": run, "state_dir": state, "log_level": log_level,
                    "control_socket": os.path.join(d, "control.sock")}))
            self.confs.append(conf)
            self.runs.append(run)
            self.watchers.append(h.InotifyWatcher(run, on_event=lambda ev, i=i: self._on_run(i, ev)))
        for w in self.watchers:
            sc.watchers.append(w)

    @staticmethod
    def _read(path):
        try:
            st = os.stat(path)
            with open(path) as f:
                return json.load(f), st.st_mtime_ns / 1e9
        except (OSError, ValueError):
            return None, None

    def _on_store(self, ev):
        if ev.name != "cache.json" or not ev.mask & WRITTEN:
            return
        doc, mtime = self._read(os.path.join(self.sc.tree.store, "cache.json"))
        with self.lock:
            if doc and (not self.store_writes or self.store_writes[-1][2] != doc["password"]):
                self.store_writes.append((mtime, ev.t, doc["password"], doc))

    def _on_run(self, i, ev):
        if ev.name != "cache.json" or not ev.mask & WRITTEN:
            return
        doc, mtime = self._read(os.path.join(self.runs[i], "cache.json"))
        if doc:
            with self.lock:
                self.published.setdefault((i, doc["password"]), mtime)

    def start(self, i):
        self.agents[i] = self.sc.start_agent(conf=self.confs[i], journal=True, tag="h%02d-" % i)
        self.every[i].append(self.agents[i])
        return self.agents[i]

    def cli(self, i, *args):
        return self.sc.run_cli("-c", self.confs[i], *args)

    def rotations(self):
        with self.lock:
            return list(self.store_writes[1:])

    def all_published(self, password, hosts=None):
        with self.lock:
            return all((i, password) in self.published for i in (hosts if hosts is not None else range(self.n)))

    def journal(self, i, mid):
        """Host i's journal entries with MESSAGE_ID mid, over all its agent processes."""
        return [m for a in self.every[i] for m in a.journal.snapshot() if m.fields.get("MESSAGE_ID") == mid]

    def record(self):
        doc, _ = self._read(os.path.join(self.sc.tree.store, RECORD))
        return doc


def rotation(**kw):
    r = {"strategy": "redis-acl", "admin_username": h.ADMIN_USER}
    r.update(kw)
    return r


def start_fleet(sc, n, first_pw, nodes=None, **rot):
    """nodes: the redis-servers that are the credential's nodes (default: sc.redis)."""
    path = os.path.join(sc.tree.root, "admin-pw")
    with open(path, "w") as f:
        f.write(h.ADMIN_PASSWORD + "\n")
    os.chmod(path, 0o600)
    nodes = nodes or [sc.redis]
    for r in nodes:
        r.create_user("app", first_pw)
    sc.store_cred("app", first_pw)
    fl = Fleet(sc, n, rotation(admin_password_file=path, **rot),
               endpoints=[r.endpoint for r in nodes] if len(nodes) > 1 else None)
    with fl.lock:
        fl.store_writes.append((0, 0, first_pw, None))
    for i in range(n):
        fl.start(i)
    h.wait_until(lambda: fl.all_published(first_pw), 60, "every host to publish the first password")
    return fl


def redis_passwords(sc, server=None):
    c = (server or sc.redis).client()
    try:
        return sorted(c.acl_getuser("app")["passwords"])
    finally:
        c.close()


class FreezeOnAdd:
    """Freezes (SIGSTOP) redis-server `r` as soon as it holds a second password of app:
    the rotation's add reached it, its roll-back will find it down (freeze=False: only
    says so, in `frozen`)."""

    def __init__(self, r, freeze=True):
        self.r, self.freeze, self.frozen = r, freeze, threading.Event()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        c = self.r.client()
        try:
            while not self.stop.is_set():
                pws = c.acl_getuser("app")["passwords"]
                if len(pws) > 1:
                    if self.freeze:
                        os.kill(self.r.proc.pid, signal.SIGSTOP)
                    self.frozen.set()
                    return
                self.stop.wait(0.002)
        finally:
            c.close()


def cont(*servers):
    """SIGCONT to redis-servers a test stopped."""
    for r in servers:
        os.kill(r.proc.pid, signal.SIGCONT)
