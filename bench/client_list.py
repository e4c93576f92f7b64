#!/usr/bin/python3
"""CLIENT LIST with many connections on one node: the drain check of strategy
redis-acl-users (common/aclops.c), docs/benchmarks.md "CLIENT LIST".

Starts a redis-server with `maxclients` raised above the connection count, creates an ACL
user, and runs build/bench/client_list_bench, which opens the connections (logged in as
that user, from several 127.0.0.x source addresses: one address has only ~28,000
ephemeral ports) and times aclops_client_list() (connect, CLIENT ID, CLIENT LIST with the
default 64 MiB reply cap, parse) and the parse alone. RLIMIT_NOFILE is raised to its hard
limit for both processes.

A redis-server holds one file descriptor per connection, so where the hard limit is below
the count asked (a container without CAP_SYS_RESOURCE: 20,000 here), the real server gets
as many connections as the limit allows, and the larger counts are measured against a
stand-in node (in client_list_bench) that answers CLIENT LIST with that many lines of the
real server's own reply: the same bytes per connection, through the same network code
and parser. Each row says which ("node").

Run after a build:  /usr/bin/python3 bench/client_list.py [--connections 50000 ...]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

USER, PASSWORD = "app_a", "bench-client-list-pw"


def raise_nofile(n):
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def start_redis(workdir, maxclients, nofile):
    port = benchlib.free_port()
    proc = subprocess.Popen(
        ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", workdir,
         "--maxclients", str(maxclients), "--tcp-backlog", "511",
         # Bound to 127.0.0.1 alone; the clients come from 127.0.0.x, which protected
         # mode (the default user has no password here) would refuse.
         "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: raise_nofile(nofile))
    r = benchlib.Redis.__new__(benchlib.Redis)
    r.port, r.proc = port, proc
    for _ in range(200):
        try:
            r.cmd("PING")
            return r
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def run(counts, iterations, root):
    bench = os.path.join(benchlib.BUILD, "bench", "client_list_bench")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = hard if hard != resource.RLIM_INFINITY else max(counts) + 2000
    most = nofile - 200   # fds the server and the bench need besides the connections
    rows = []
    for want in counts:
        n = min(want, most)
        redis = start_redis(root, n + 100, nofile)
        try:
            redis.cmd("ACL", "SETUSER", USER, "on", ">" + PASSWORD, "~*", "+@all")
            env = dict(os.environ, RC_BENCH_PASSWORD=PASSWORD)
            out = subprocess.run(
                [bench, "--port", str(redis.port), "--connections", str(n), "--sources",
                 str(n // 20000 + 1), "--iterations", str(iterations), "--user", USER]
                + (["--replay-lines", str(want)] if want > n else []),
                env=env, stdout=subprocess.PIPE, check=True,
                preexec_fn=lambda: raise_nofile(nofile)).stdout
            rss = open("/proc/%d/status" % redis.proc.pid).read()
            rss_mb = round(
                int([x for x in rss.splitlines() if x.startswith("VmRSS")][0].split()[1]) / 1024)
            for line in out.decode().splitlines():
                row = json.loads(line)
                if row["node"] == "redis-server":
                    row["redis_rss_mb"] = rss_mb
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            redis.stop()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--iterations", type=int, default=10)
    args = ap.parse_args()
    root = benchlib.tempdir_on(os.environ.get("TMPDIR", "/tmp"))
    try:
        print(json.dumps({"machine": benchlib.machine(),
                          "filesystem": benchlib.filesystem_of(root)}), flush=True)
        run(args.connections, args.iterations, root)
    finally:
        benchlib.cleanup(root)


if __name__ == "__main__":
    main()
