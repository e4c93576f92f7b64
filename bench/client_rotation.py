#!/usr/bin/python3
"""Failed commands and command latency during password rotations under load: a client
using libredis-creds' hiredis helper and a client that does what the seed's
RedisKeyManager does, side by side in one run, against the same redis-server and agent.

Both are client/tests/rc_hammer (C, hiredis): W worker threads INCR back to back, each
reconnecting every K commands (pool recycling, short-lived workers: the moments an AUTH
happens).
  lib   rc_redis_reauth_if_changed before each command; AUTH current -> previous -> re-read
  seed  takes primary and secondary passwords once at start; on an auth error switches to
        the other and reconnects; nobody calls update_primary_key
Each rotation is the ACL dual-password order: add the new password, publish it through
the store (the agent validates and publishes), wait for the file, remove the old one,
then pause --gap seconds.

Usage: bench/client_rotation.py [--rotations N] [--workers W] [--reconnect-every K]
                                [--gap S] [--base DIR]
Prints numbers; asserts nothing."""
import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

HAMMER = os.path.join(B.BUILD, "client", "tests", "rc_hammer")


def password(n):
    s = "pw-%d-" % n
    return s + "".join(chr(ord("a") + (n + i) % 26) for i in range(len(s), 200))


def start_hammer(run_dir, port, mode, workers, reconnect_every):
    p = subprocess.Popen([HAMMER, "--name", "cache", "--dir", run_dir, "--port", str(port),
                          "--mode", mode, "--workers", str(workers),
                          "--reconnect-every", str(reconnect_every)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.1)
        if r and p.stdout.readline().strip() == b"ready":
            return p
    p.kill()
    raise RuntimeError("rc_hammer --mode %s did not start" % mode)


def stop_hammer(p):
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    return json.loads([l for l in out.decode().splitlines() if l.startswith("{")][-1])


def published(path, pw):
    try:
        with open(path) as f:
            return json.load(f).get("password") == pw
    except (OSError, ValueError):
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rotations", type=int, default=50)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--reconnect-every", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.05)
    ap.add_argument("--base", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp")
    a = ap.parse_args()
    root = B.tempdir_on(a.base)
    redis = B.Redis(root)
    agent = hammers = None
    try:
        redis.cmd("ACL", "SETUSER", "app", "reset", "on", ">" + password(1), "~*", "+@all")
        conf = B.agent_config(root, redis.port, ["cache"])
        store = os.path.join(root, "store", "cache")
        run_dir = os.path.join(root, "run")
        target = os.path.join(run_dir, "cache.json")
        B.write_atomic(store, json.dumps({"username": "app", "password": password(1)}))
        agent = subprocess.Popen([B.AGENT, "-c", conf, "--foreground"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not published(target, password(1)):
            if time.monotonic() > deadline:
                raise RuntimeError("agent did not publish")
            time.sleep(0.01)
        hammers = {m: start_hammer(run_dir, redis.port, m, a.workers, a.reconnect_every)
                   for m in ("lib", "seed")}
        time.sleep(0.5)   # a stretch before the first rotation
        t0 = time.monotonic()
        pub = []
        for n in range(2, a.rotations + 2):
            redis.cmd("ACL", "SETUSER", "app", ">" + password(n))
            ts = time.monotonic()
            B.write_atomic(store, json.dumps({"username": "app", "password": password(n)}))
            while not published(target, password(n)):
                if time.monotonic() - ts > 20:
                    raise RuntimeError("rotation %d not published" % n)
                time.sleep(0.0005)
            pub.append(time.monotonic() - ts)
            redis.cmd("ACL", "SETUSER", "app", "<" + password(n - 1))
            time.sleep(a.gap)
        rot_time = time.monotonic() - t0
        time.sleep(0.5)
        results = {m: stop_hammer(p) for m, p in hammers.items()}
        hammers = None
        pub.sort()
        print("%d rotations in %.1f s (store write -> file: p50 %.1f ms, p99 %.1f ms); "
              "%d workers per client, reconnect every %d commands; runtime dir on %s"
              % (a.rotations, rot_time, B.percentile(pub, 50) * 1e3, B.percentile(pub, 99) * 1e3,
                 a.workers, a.reconnect_every, a.base))
        print()
        print("| client | commands ok | failed | failed % | reconnects | p50 | p99 | p99.9 | max |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for m in ("lib", "seed"):
            r = results[m]
            tot = r["commands_ok"] + r["failed"]
            print("| %s | %d | %d | %.2f %% | %d | %d us | %d us | %d us | %d us |"
                  % ("libredis-creds (hiredis helper)" if m == "lib" else "seed (fixed pair, switch on auth error)",
                     r["commands_ok"], r["failed"], 100.0 * r["failed"] / max(tot, 1),
                     r["reconnects"], r["p50_us"], r["p99_us"], r["p999_us"], r["max_us"]))
        for m in ("lib", "seed"):
            if results[m]["first_error"]:
                print("%s: first error: %s" % (m, results[m]["first_error"]))
    finally:
        for p in (hammers or {}).values():
            p.kill()
        B.teardown(agent, redis, root)


if __name__ == "__main__":
    main()
