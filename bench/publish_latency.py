#!/usr/bin/python3
"""File store write -> published file, through the real agent and a real redis-server.

For each change: write a new password into the store (atomically, as a real store
would), and time until the agent's rename of <runtime_dir>/bench.json is seen with
inotify (IN_MOVED_TO). Every password is accepted by Redis (the ACL user holds them all),
so each change costs one AUTH round trip on loopback plus the publish.

Usage: bench/publish_latency.py [--changes N] [--dir BASE ...]
Default: 300 changes on /dev/shm (tmpfs) and on /tmp (ext4 here)."""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def fs_type(path):
    # stat -f says "ext2/ext3" for ext4 too (one magic number); /proc/mounts names it.
    best, fstype = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, typ = line.split()[:3]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                best, fstype = mnt, typ
    return fstype


def run(base, changes):
    root = B.tempdir_on(base)
    redis = B.Redis(root)
    agent = None
    try:
        pws = ["bench-pw-%d-%s" % (i, os.urandom(6).hex()) for i in range(changes + 1)]
        # One ACL user that accepts every password of the run.
        redis.cmd("ACL", "SETUSER", "app", "on", "~*", "+@all", *(">" + p for p in pws))
        conf = B.agent_config(root, redis.port, ["bench"])
        store = os.path.join(root, "store", "bench")
        B.write_atomic(store, '{"username":"app","password":"%s"}' % pws[0])
        run_dir = os.path.join(root, "run")
        agent = subprocess.Popen([B.AGENT, "-c", conf, "--foreground"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(500):
            if os.path.exists(os.path.join(run_dir, "bench.json")):
                break
            time.sleep(0.01)
        else:
            raise RuntimeError("agent did not publish")
        ino = B.Inotify(run_dir, B.IN_MOVED_TO)
        lat = []
        for i in range(1, changes + 1):
            t0 = time.monotonic()
            B.write_atomic(store, '{"username":"app","password":"%s"}' % pws[i])
            t1 = ino.wait_for("bench.json", 5.0)
            if t1 is None:
                raise RuntimeError("change %d not published within 5 s" % i)
            lat.append((t1 - t0) * 1000.0)
        ino.close()
        lat.sort()
        return {
            "fs": fs_type(root), "base": base, "n": len(lat),
            "p50": B.percentile(lat, 50), "p90": B.percentile(lat, 90),
            "p99": B.percentile(lat, 99), "max": lat[-1],
        }
    finally:
        B.teardown(agent, redis, root)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=300)
    ap.add_argument("--dir", action="append", help="base directory (repeatable)")
    args = ap.parse_args()
    bases = args.dir or ["/dev/shm", "/tmp"]
    print("publish latency: file store write -> IN_MOVED_TO of the published file")
    print("%-10s %-8s %6s %9s %9s %9s %9s" % ("base", "fs", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"))
    for base in bases:
        r = run(base, args.changes)
        print("%-10s %-8s %6d %9.3f %9.3f %9.3f %9.3f" % (
            r["base"], r["fs"], r["n"], r["p50"], r["p90"], r["p99"], r["max"]))


if __name__ == "__main__":
    main()
