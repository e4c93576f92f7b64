"""kill -9 torture (docs/design.md §5, docs/file-format.md "Atomicity"): the agent killed at random
instants, over and over, while a writer changes the credential in the `file` store all the
time and two reader processes parse cache.json, cache.env and cache.password without a
pause. The runtime_dir is on tmpfs (/dev/shm), where a rename is the only thing that makes
a file visible.

Asserted: every read of every file parses fully and is consistent in itself (no torn,
empty, missing or rolled-back read); the temporary files a killed agent left are gone once
the next agent is ready; at the end the latest credential the store holds (Redis accepts
it) is in all three files. The .env and .password are written before the .json, so
different files may briefly hold different versions: no cross-file equality is asserted.

Run as a script (`test_torture.py --reader DIR STOPFILE`) it is one of the readers.
"""
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

KILLS = 200
USER = "app"
KEEP_PASSWORDS = 64          # the writer removes older passwords from Redis
FILES = ("cache.json", "cache.env", "cache.password")
VERSION_RE = re.compile(r"^h-[0-9a-f]{16}$")
ENV_RE = re.compile(r"\AREDIS_USERNAME='([^'\n]*)'\nREDIS_PASSWORD='([^'\n]*)'\n\Z")


def password(seq):
    """A password that carries its sequence number and a check of it, so a reader can tell
    a whole password from a torn or mixed one without knowing what was written."""
    return "T%08d-%s" % (seq, hashlib.sha256(b"rc-torture-%d" % seq).hexdigest()[:40])


def seq_of(pw):
    """The sequence number of a whole password; raises ValueError for anything else."""
    m = re.fullmatch(r"T(\d{8})-([0-9a-f]{40})", pw or "")
    if not m or password(int(m.group(1))) != pw:
        raise ValueError("not a whole password: %r" % (pw or "")[:60])
    return int(m.group(1))


def check_json(data):
    d = json.loads(data)
    if d.get("name") != "cache" or d.get("username") != USER:
        raise ValueError("unexpected name/username")
    if not VERSION_RE.match(d.get("version", "")):
        raise ValueError("bad version")
    seq = seq_of(d.get("password"))
    prev = d.get("previous")
    if prev is not None:
        if prev.get("username") != USER or seq_of(prev.get("password")) >= seq:
            raise ValueError("previous is not an older whole credential")
    return seq


def check_env(data):
    m = ENV_RE.match(data.decode())
    if not m or m.group(1) != USER:
        raise ValueError("not two whole lines")
    return seq_of(m.group(2))


def check_password(data):
    return seq_of(data.decode())


CHECKS = {"cache.json": check_json, "cache.env": check_env, "cache.password": check_password}


def reader_main(directory, stopfile):
    """Reads the three files in a loop until stopfile exists; prints a JSON report."""
    st = {f: {"reads": 0, "bad": [], "missing": 0, "rollback": [], "last": -1, "changes": 0}
          for f in FILES}
    n = 0
    while True:
        n += 1
        if n % 64 == 0 and os.path.exists(stopfile):
            break
        for f in FILES:
            s = st[f]
            try:
                with open(os.path.join(directory, f), "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                s["missing"] += 1
                continue
            try:
                seq = CHECKS[f](data)
            except (ValueError, UnicodeDecodeError, AttributeError, TypeError) as e:
                if len(s["bad"]) < 5:
                    s["bad"].append("%s: %r" % (e, data[:120]))
                else:
                    s["bad"].append("")
                continue
            s["reads"] += 1
            if seq < s["last"]:
                s["rollback"].append((s["last"], seq))
            elif seq > s["last"]:
                s["changes"] += 1
            s["last"] = seq
    for s in st.values():
        s["bad_count"] = len(s["bad"])
        s["bad"] = [b for b in s["bad"] if b][:5]
        s["rollback_count"] = len(s["rollback"])
        s["rollback"] = s["rollback"][:5]
    print(json.dumps(st))


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--reader":
    reader_main(sys.argv[2], sys.argv[3])
    sys.exit(0)

import pytest  # noqa: E402

import rc_harness as h  # noqa: E402


class Writer(threading.Thread):
    """Adds password(seq) to Redis, then writes it to the store (atomic rename), every
    few milliseconds; removes passwords older than KEEP_PASSWORDS from Redis."""

    def __init__(self, sc, seq):
        super().__init__(daemon=True)
        self.sc, self.seq = sc, seq
        self.stop = threading.Event()
        self.error = None

    def run(self):
        c = self.sc.redis.client()
        try:
            while not self.stop.is_set():
                self.seq += 1
                args = ["ACL", "SETUSER", USER, ">" + password(self.seq)]
                if self.seq > KEEP_PASSWORDS:
                    args.append("<" + password(self.seq - KEEP_PASSWORDS))
                c.execute_command(*args)
                self.sc.store_cred(USER, password(self.seq))
                time.sleep(random.uniform(0.005, 0.03))
        except Exception as e:  # noqa: BLE001 -- reported by the test
            self.error = repr(e)
        finally:
            c.close()


def temp_files(directory):
    return {f for f in os.listdir(directory) if f.startswith(".tmp-")}


def tmpfs_dir():
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    with open("/proc/mounts") as f:
        if not any(line.split()[1] == "/dev/shm" and line.split()[2] == "tmpfs" for line in f):
            pytest.skip("/dev/shm is not a tmpfs")
    return tempfile.mkdtemp(prefix="rcit-torture-", dir="/dev/shm")


def test_kill_9_at_random_instants_never_tears_a_file_or_leaves_a_temporary(sc):
    shm = tmpfs_dir()
    sc.on_close(lambda: shutil.rmtree(shm, ignore_errors=True))
    runtime = os.path.join(shm, "run")
    sc.redis.create_user(USER, password(1))
    sc.store_cred(USER, password(1))
    sc.write_config([sc.cred(formats=["json", "env", "password"], timeout="2s")],
                    agent={"runtime_dir": runtime, "log_level": "info"})
    sc.tree.runtime = runtime          # sc.read_doc / wait_published read from here
    first = sc.start_agent()
    first.wait_ready(timeout=20)
    sc.wait_published(password=password(1), timeout=10)
    h.wait_until(lambda: all(os.path.exists(os.path.join(runtime, f)) for f in FILES), 10,
                 "the .env and .password beside the .json")

    stopfile = os.path.join(sc.tree.root, "readers.stop")
    readers = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--reader", runtime,
                                 stopfile], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                preexec_fn=h._die_with_parent) for _ in range(2)]
    writer = Writer(sc, 1)
    writer.start()
    rng = random.Random(os.environ.get("REDIS_CREDS_TORTURE_SEED") or os.urandom(8))
    agent, kills, ready_checks, stale_seen, natural_left, left = first, 0, 0, [], 0, set()
    t0 = time.monotonic()
    try:
        while kills < KILLS:
            if not agent.alive():
                h.fail("agent exited %s by itself; log:\n%s" % (agent.proc.returncode, agent.log()[-3000:]))
            time.sleep(rng.uniform(0.0, 0.35))
            if left and agent.notify.find("READY", "1") is not None:
                # this agent got to READY before its kill: what the last one left is gone
                ready_checks += 1
                still = left & temp_files(runtime)
                if still:
                    stale_seen.append((kills, sorted(still)))
            agent.send(signal.SIGKILL)
            agent.proc.wait(10)
            agent.check_exit = False
            agent.close()
            sc.agents.remove(agent)        # teardown's log dump: the last agent only
            kills += 1
            left = temp_files(runtime)
            natural_left += bool(left)
            if kills % 10 == 0:
                # what a kill between open and rename leaves (rare on tmpfs: the window is
                # a few microseconds), planted so every 10th restart must clean one up
                h.write_store_inplace(runtime, ".tmp-cache.json-%08x" % kills, b'{"torn')
                left = temp_files(runtime)
            agent = sc.start_agent()
            if kills % 10 == 0:
                # the next agent removes what the killed one left, before it is ready
                agent.wait_ready(timeout=30)
    finally:
        writer.stop.set()
        writer.join(5)
        took = time.monotonic() - t0

    last = writer.seq
    assert writer.error is None, "the store writer failed: %s" % writer.error
    # the latest credential in place: the last agent (left running) publishes it everywhere
    agent.wait_ready(timeout=30)
    sc.wait_published(password=password(last), timeout=20)
    h.wait_until(lambda: all(_read_seq(runtime, f) == last for f in FILES), 20,
                 "all three files at the writer's last password (seq %d)" % last)
    with open(stopfile, "w"):
        pass
    reports = []
    for r in readers:
        out, _ = r.communicate(timeout=30)
        assert r.returncode == 0, "a reader failed"
        reports.append(json.loads(out))
    assert not temp_files(runtime), "temporary files left: %r" % sorted(temp_files(runtime))
    assert agent.stop() == 0

    total = sum(s["reads"] for rep in reports for s in rep.values())
    print("%d kills in %.1fs (%d restarts checked for temporaries, %d left by a kill), "
          "writer at seq %d, %d reads: %s"
          % (kills, took, ready_checks, natural_left, last, total,
             [{f: (s["reads"], s["changes"]) for f, s in rep.items()} for rep in reports]))
    assert not stale_seen, "stale temporary files still there once the next agent was ready: %r" \
        % stale_seen[:5]
    for i, rep in enumerate(reports):
        for f, s in rep.items():
            assert s["bad_count"] == 0, "reader %d: %d torn or invalid reads of %s: %r" \
                % (i, s["bad_count"], f, s["bad"])
            assert s["missing"] == 0, "reader %d: %s missing %d times" % (i, f, s["missing"])
            assert s["rollback_count"] == 0, "reader %d: %s went back to an older version: %r" \
                % (i, f, s["rollback"])
            assert s["reads"] > 1000 and s["changes"] > 50, \
                "reader %d saw too little of %s to mean anything: %r" % (i, f, s)


def _read_seq(runtime, f):
    try:
        with open(os.path.join(runtime, f), "rb") as fh:
            return CHECKS[f](fh.read())
    except (OSError, ValueError):
        return None
