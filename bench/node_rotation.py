#!/usr/bin/python3
"""Node.js clients (client/node) through password rotations under load: failed commands,
and the time from the rename of the published file to the re-AUTH of open connections.

For each client (node-redis and ioredis, each major in client/node's package-lock.json),
bench/node_rotation_load.mjs runs L long-lived connections and C connections that
reconnect every K commands, all INCRing back to back through the redis-creds package.
Each rotation is the ACL dual-password order: add the new password, publish the file the
way the agent does (temporary file, fsync, rename, fsync of the directory: done here so
the rename's instant is known), wait until every long-lived connection has re-AUTHed,
remove the old password, pause --gap seconds. The time is taken just before rename(2)
and when each connection's AUTH was answered (node-redis: the reply of a PING queued
right behind the AUTH), both on CLOCK_MONOTONIC; "change" is when the package saw the new
file, and "loop delay" how late node's event loop ran its timers (what the machine's load
and the clients' own synchronous work add to everything).

Usage: bench/node_rotation.py [--rotations N] [--long L] [--churn C] [--reconnect-every K]
                              [--gap S] [--base DIR] [--client NAME ...]
Needs `npm ci` in client/node first. Prints numbers; asserts nothing."""
import argparse
import json
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

LOAD = os.path.join(B.SRC, "bench", "node_rotation_load.mjs")
CLIENTS = {"node-redis6": ("node-redis", "redis"), "node-redis5": ("node-redis", "redis5"),
           "ioredis6": ("ioredis", "ioredis"), "ioredis5": ("ioredis", "ioredis5")}


def password(n):
    return "node-bench-%d-%s" % (n, "x" * 40)


def publish(run_dir, n):
    """Writes cache.json as the agent does; returns the monotonic time before rename."""
    doc = {"format": 1, "name": "cache", "username": "app", "password": password(n),
           "version": "v%d" % n, "source": "bench", "published_at": "2026-01-01T00:00:00Z",
           "validated": "all", "expires_at": None,
           "previous": None if n == 1 else {"username": "app", "password": password(n - 1),
                                             "version": "v%d" % (n - 1), "expires_at": None}}
    tmp = os.path.join(run_dir, ".cache.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    os.write(fd, (json.dumps(doc, indent=2) + "\n").encode())
    os.fsync(fd)
    os.close(fd)
    t0 = time.monotonic()
    os.rename(tmp, os.path.join(run_dir, "cache.json"))
    dfd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    os.fsync(dfd)
    os.close(dfd)
    return t0


class Load:
    def __init__(self, kind, module, port, run_dir, args):
        self.p = subprocess.Popen(
            ["node", LOAD, kind, module, str(port), run_dir, str(args.long), str(args.churn),
             str(args.reconnect_every)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buf = b""

    def lines(self, timeout):
        """Yields JSON events until timeout (seconds) passes."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if line.startswith(b"{"):
                    yield json.loads(line)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    return
                self.buf += chunk

    def wait(self, ev, timeout):
        for e in self.lines(timeout):
            if e["ev"] == ev:
                return e
        raise RuntimeError("no %s from the node load" % ev)

    def stop(self):
        self.p.stdin.write(b"stop\n")
        self.p.stdin.flush()
        done = self.wait("done", 60)
        self.p.wait(10)
        return done


def run(name, args):
    kind, module = CLIENTS[name]
    root = B.tempdir_on(args.base)
    run_dir = os.path.join(root, "run")
    os.makedirs(run_dir)
    redis = B.Redis(root)
    try:
        redis.cmd("ACL", "SETUSER", "app", "on", ">" + password(1), "~*", "&*", "+@all")
        publish(run_dir, 1)
        load = Load(kind, module, redis.port, run_dir, args)
        load.wait("ready", 60)
        lat, missing, seen_change = [], 0, []
        start = time.monotonic()
        for n in range(2, args.rotations + 2):
            redis.cmd("ACL", "SETUSER", "app", ">" + password(n))
            t0 = publish(run_dir, n)
            seen = set()
            for e in load.lines(5):
                if e["ev"] == "change" and e["version"] == "v%d" % n:
                    seen_change.append((e["t"] - t0) * 1000)
                if e["ev"] == "reauth" and e["version"] == "v%d" % n and e["conn"] not in seen:
                    seen.add(e["conn"])
                    lat.append((e["t"] - t0) * 1000)
                    if len(seen) == args.long:
                        break
            missing += args.long - len(seen)
            redis.cmd("ACL", "SETUSER", "app", "<" + password(n - 1))
            time.sleep(args.gap)
        elapsed = time.monotonic() - start
        done = load.stop()
    finally:
        redis.stop()
        B.cleanup(root)
    lat.sort()
    seen_change.sort()
    return {"client": name, "rotations": args.rotations, "seconds": round(elapsed, 1),
            "ok": done["ok"], "failed": done["failed"], "reconnects": done["reconnects"],
            "reauth_failed": done["reauth_failed"], "reauths": len(lat),
            "reauths_missing": missing,
            "p50_ms": round(B.percentile(lat, 50), 3), "p99_ms": round(B.percentile(lat, 99), 3),
            "max_ms": round(lat[-1], 3) if lat else None,
            "change_p50_ms": round(B.percentile(seen_change, 50), 3),
            "change_p99_ms": round(B.percentile(seen_change, 99), 3), "loop_delay_p50_ms": done["loop_delay_p50_ms"],
            "loop_delay_p99_ms": done["loop_delay_p99_ms"],
            "loop_delay_max_ms": done["loop_delay_max_ms"], "errors": done["errors"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rotations", type=int, default=100)
    ap.add_argument("--long", type=int, default=4, help="long-lived connections")
    ap.add_argument("--churn", type=int, default=2, help="connections that reconnect")
    ap.add_argument("--reconnect-every", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.05)
    ap.add_argument("--base", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp")
    ap.add_argument("--client", action="append", choices=sorted(CLIENTS))
    args = ap.parse_args()
    for name in args.client or ["node-redis6", "node-redis5", "ioredis6", "ioredis5"]:
        print(json.dumps(run(name, args)), flush=True)


if __name__ == "__main__":
    main()
