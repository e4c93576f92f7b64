#!/usr/bin/python3
"""Agent-driven rotations (strategy redis-acl, `redis-creds rotate`) under client load:
how long each takes and whether any client command fails.

The agent has one credential on a file source with `rotation = { strategy = "redis-acl";
grace = --grace; }`, logging in as the credential itself. client/tests/rc_hammer --mode lib
(libredis-creds' hiredis helper: W workers INCR back to back, each reconnecting every K
commands) runs throughout. Each round asks `redis-creds rotate cache` and times
  request -> published   the new password in cache.json (claimed in the store, added on
                         the node, validated, published with the old one as previous)
  request -> completed   the old password removed from Redis (grace included)
from the `status --json` rotation fields and the file. Then pauses --gap seconds.

Usage: bench/agent_rotation.py [--rotations N] [--workers W] [--reconnect-every K]
                               [--grace S] [--gap S] [--base DIR]
Prints numbers; asserts nothing."""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from client_rotation import start_hammer, stop_hammer  # noqa: E402


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def rotation_status(conf):
    r = subprocess.run([B.CLI, "-c", conf, "status", "--json"], capture_output=True, text=True,
                       timeout=10)
    doc = json.loads(r.stdout)
    return next(c for c in doc["credentials"] if c["name"] == "cache")["rotation"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rotations", type=int, default=20)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--reconnect-every", type=int, default=20)
    ap.add_argument("--grace", default="1s")
    ap.add_argument("--gap", type=float, default=0.2)
    ap.add_argument("--base", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp")
    a = ap.parse_args()
    root = B.tempdir_on(a.base)
    redis = B.Redis(root)
    agent = hammer = None
    try:
        first = os.urandom(24).hex()
        redis.cmd("ACL", "SETUSER", "app", "reset", "on", ">" + first, "~*", "+@all")
        conf = B.agent_config(root, redis.port, ["cache"], cred_extra=(
            'rotation = { strategy = "redis-acl"; interval = "30d"; grace = "%s"; };' % a.grace))
        store = os.path.join(root, "store", "cache")
        target = os.path.join(root, "run", "cache.json")
        B.write_atomic(store, json.dumps({"username": "app", "password": first}))
        agent = subprocess.Popen([B.AGENT, "-c", conf, "--foreground"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while (read_json(target) or {}).get("password") != first:
            if time.monotonic() > deadline:
                raise RuntimeError("agent did not publish")
            time.sleep(0.01)
        hammer = start_hammer(os.path.join(root, "run"), redis.port, "lib", a.workers,
                              a.reconnect_every)
        time.sleep(0.5)
        to_pub, to_done = [], []
        t_all = time.monotonic()
        for n in range(a.rotations):
            before = read_json(target)["version"]
            last = rotation_status(conf).get("last_rotation")
            t0 = time.monotonic()
            r = subprocess.run([B.CLI, "-c", conf, "rotate", "cache"], capture_output=True,
                               text=True, timeout=10)
            if r.returncode != 0:
                raise RuntimeError("rotate %d: %s" % (n, r.stdout + r.stderr))
            published = None
            while True:
                if time.monotonic() - t0 > 60:
                    raise RuntimeError("rotation %d did not complete" % n)
                if published is None and (read_json(target) or {}).get("version") != before:
                    published = time.monotonic()
                st = rotation_status(conf)
                if published and st["phase"] == "idle" and st.get("last_rotation") != last:
                    break
                time.sleep(0.002 if published is None else 0.02)
            to_pub.append(published - t0)
            to_done.append(time.monotonic() - t0)
            time.sleep(a.gap)
        total = time.monotonic() - t_all
        time.sleep(0.5)
        res = stop_hammer(hammer)
        hammer = None
        to_pub.sort()
        to_done.sort()
        print("%d agent-driven rotations in %.1f s, grace %s; %d workers reconnecting every %d "
              "commands; runtime dir on %s" % (a.rotations, total, a.grace, a.workers,
                                              a.reconnect_every, a.base))
        print()
        print("| ms | min | p50 | p90 | max |")
        print("|---|---:|---:|---:|---:|")
        for label, v in (("rotate -> published", to_pub), ("rotate -> old password removed", to_done)):
            print("| %s | %.1f | %.1f | %.1f | %.1f |" % (
                label, v[0] * 1e3, B.percentile(v, 50) * 1e3, B.percentile(v, 90) * 1e3,
                v[-1] * 1e3))
        tot = res["commands_ok"] + res["failed"]
        print()
        print("client (libredis-creds hiredis helper): %d commands ok, %d failed (%.2f %%), "
              "%d reconnects, p99 %d us, max %d us" % (
                  res["commands_ok"], res["failed"], 100.0 * res["failed"] / max(tot, 1),
                  res["reconnects"], res["p99_us"], res["max_us"]))
        if res["first_error"]:
            print("first error: %s" % res["first_error"])
    finally:
        if hammer:
            hammer.kill()
        B.teardown(agent, redis, root)


if __name__ == "__main__":
    main()
