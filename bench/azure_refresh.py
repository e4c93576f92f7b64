#!/usr/bin/python3
"""Entra token refresh -> published file, through the real agent, a real redis-server and
the fake Azure endpoints (tests/fakes/azure_fake.py).

The fake IMDS issues tokens that live --lifetime seconds; the agent (azure-entra,
refresh_ratio --ratio) asks for a new one at ratio x lifetime. Each token the fake
issues becomes a password of the Redis ACL user named by its oid before it is handed
out (as Azure Managed Redis accepts Entra tokens). For each refresh we take:

  issue -> published   from the fake handing out the token to the agent's rename of
                       entra.json seen with inotify (IN_MOVED_TO): the IMDS answer, JWT
                       decoding, AUTH on Redis, the atomic write with fsync.
  lateness             from the refresh point (iat + ratio x lifetime) to the issue:
                       how precisely the refresh is scheduled.

Usage: bench/azure_refresh.py [--refreshes N] [--lifetime S] [--ratio R] [--poll D] [--dir BASE]
"""
import argparse
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fakes"))
import benchlib as B  # noqa: E402
from azure_fake import AzureFake  # noqa: E402


def config(root, fake, redis_port, ratio, poll, log_level="notice"):
    for d in ("run", "state"):
        os.makedirs(os.path.join(root, d), mode=0o700, exist_ok=True)
    text = """
agent = { runtime_dir = "%(r)s/run"; state_dir = "%(r)s/state"; group = ""; plugin_dir = "%(p)s";
          control_socket = "%(r)s/control.sock"; log_level = "%(l)s"; };
sources = ( { name = "entra"; type = "azure-entra"; refresh_ratio = %(ratio)s;
              identity = { type = "managed"; imds_url = "%(u)s"; }; } );
credentials = ( { name = "entra"; source = "entra"; poll_interval = "%(poll)s";
                  redis = { endpoints = [ "127.0.0.1:%(port)d" ]; timeout = "2s"; }; } );
""" % {"r": root, "p": B.PLUGINS, "l": log_level, "u": fake.url, "ratio": repr(ratio), "poll": poll,
       "port": redis_port}
    path = os.path.join(root, "agent.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def run(base, refreshes, lifetime, ratio, poll):
    root = B.tempdir_on(base)
    redis = B.Redis(root)
    fake = AzureFake(token_lifetime=lifetime).start()
    issued = []                       # (monotonic time, claims)
    lock = threading.Lock()

    def on_token(token, claims):
        redis.cmd("ACL", "SETUSER", claims["oid"], "on", ">" + token, "~*", "+@all")
        with lock:
            issued.append((time.monotonic(), time.time(), claims))
    fake.on_token.append(on_token)
    agent = None
    try:
        conf = config(root, fake, redis.port, ratio, poll)
        run_dir = os.path.join(root, "run")
        ino = B.Inotify(run_dir, B.IN_MOVED_TO)
        agent = subprocess.Popen([B.AGENT, "-c", conf, "--foreground"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        lat, late = [], []
        t_first = ino.wait_for("entra.json", 10.0)
        if t_first is None:
            raise RuntimeError("agent did not publish")
        for i in range(refreshes):
            t_pub = ino.wait_for("entra.json", lifetime * 2.0)
            if t_pub is None:
                raise RuntimeError("refresh %d not published" % (i + 1))
            with lock:
                t_issue, wall_issue, c = issued[-1]
                prev = issued[-2][2]
            lat.append((t_pub - t_issue) * 1000.0)
            # The refresh point of the previous token, in wall-clock seconds.
            rp = prev["iat"] + ratio * (prev["exp"] - prev["iat"])
            late.append((wall_issue - rp) * 1000.0)
        ino.close()
        requests = fake.count("imds")
        lat.sort()
        late.sort()
        return {"n": len(lat), "lat": lat, "late": late, "imds": requests}
    finally:
        B.teardown(agent, redis, root, fake)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refreshes", type=int, default=20)
    ap.add_argument("--lifetime", type=int, default=4)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--poll", default="1s", help="poll_interval (the agent schedules a poll after a publish)")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")
    a = ap.parse_args()
    r = run(a.dir, a.refreshes, a.lifetime, a.ratio, a.poll)
    P = B.percentile
    print("entra refresh, %d refreshes, token lifetime %d s, refresh_ratio %.2f, poll_interval %s, on %s"
          % (r["n"], a.lifetime, a.ratio, a.poll, a.dir))
    print("  issue -> published   p50 %.2f ms  p90 %.2f ms  max %.2f ms"
          % (P(r["lat"], 50), P(r["lat"], 90), r["lat"][-1]))
    print("  lateness             p50 %.0f ms  p90 %.0f ms  max %.0f ms  (issue after the refresh point;"
          " iat is whole seconds)" % (P(r["late"], 50), P(r["late"], 90), r["late"][-1]))
    print("  IMDS requests        %d for %d tokens" % (r["imds"], r["n"] + 1))


if __name__ == "__main__":
    main()
