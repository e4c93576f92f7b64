#!/usr/bin/python3
"""What continuous re-validation costs a Redis node (docs/fleet.md).

Re-validation is, per credential and per node, one new connection, AUTH and PING every
`redis.revalidate_interval`: 10,000 hosts x 10 credentials every 5 min is ~333 connections
and AUTHs per second on each node, TLS handshakes included where the node uses TLS.

This starts one redis-server (7.0, Debian's) listening on a plain port and a TLS port
(EC P-256 certificates made with openssl, as the TLS tests do; no client certificates,
no session resumption, so every connection is a full handshake, as a fresh agent
connection is). For each rate, load-generator processes open connections at that rate in
total (paced, not back to back), each: connect, [TLS handshake], AUTH app <password>,
PING, close. Meanwhile a separate "normal client" process keeps one connection and sends
GET every 2 ms. Per step it reports
  * achieved connections/s and failures (the generators share the machine's 2 cores with
    redis-server; the rate they reach is printed, not assumed),
  * redis-server CPU (utime + stime from /proc/PID/stat) in % of one core, and per
    1,000 AUTHs/s (the step's CPU minus the idle step's, scaled),
  * the normal client's GET latency p50 / p99 / max, and the generators' connect-to-PONG
    latency p50 / p99.

Usage: bench/revalidate_load.py [--rates 0,100,333,1000,2000] [--step S] [--procs P]
                                [--modes plain,tls] [--json] [--base DIR]
Prints numbers; asserts nothing."""
import argparse
import json
import multiprocessing as mp
import os
import socket
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib as B  # noqa: E402
import vault_lib as V  # noqa: E402  (make_ca: EC P-256 CA and server certificate)

USER, PASSWORD = "app", "revalidate-bench-pw-7c1e"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def resp(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


AUTH_PING = resp(b"AUTH", USER.encode(), PASSWORD.encode()) + resp(b"PING")


def one_connection(port, ctx):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        if ctx:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(AUTH_PING)
        data = b""
        while data.count(b"\r\n") < 2:
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        if data != b"+OK\r\n+PONG\r\n":
            raise RuntimeError("unexpected reply %r" % data[:60])
    finally:
        s.close()


def generator(port, ca, rate, seconds, out):
    """Opens `rate` connections per second for `seconds`, paced; puts (ok, failed, lat)."""
    ctx = None
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
    ok = failed = 0
    lat = []
    t0 = time.monotonic()
    n = 0
    while True:
        due = t0 + n / rate
        now = time.monotonic()
        if due - t0 >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        n += 1
        t = time.monotonic()
        try:
            one_connection(port, ctx)
            ok += 1
            lat.append(time.monotonic() - t)
        except (OSError, RuntimeError, ssl.SSLError):
            failed += 1
    out.put((ok, failed, lat))


def prober(port, seconds, out):
    """One long-lived connection, GET every 2 ms; puts the latencies."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(AUTH_PING)
    s.recv(256)
    req = resp(b"GET", b"revalidate:key")
    lat = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        s.sendall(req)
        data = b""
        while not data.endswith(b"\r\n"):
            data += s.recv(256)
        lat.append(time.monotonic() - t)
        time.sleep(0.002)
    s.close()
    out.put(lat)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime, stime


def start_redis(root, pki):
    port, tls_port = B.free_port(), B.free_port()
    conf = os.path.join(root, "redis.conf")
    with open(conf, "w") as f:
        f.write("\n".join([
            "port %d" % port, "tls-port %d" % tls_port, "bind 127.0.0.1", 'save ""',
            "appendonly no", "dir %s" % root, "tls-cert-file %s" % pki["cert"],
            "tls-key-file %s" % pki["key"], "tls-ca-cert-file %s" % pki["ca"],
            "tls-auth-clients no", "maxclients 10000",
            "user %s on >%s ~* &* +@all" % (USER, PASSWORD),
            "user default off"]) + "\n")
    proc = subprocess.Popen(["/usr/bin/redis-server", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            one_connection(port, None)
            return proc, port, tls_port
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)


def step(pid, plain_port, port, ca, rate, seconds, procs):
    """One rate for `seconds`; the normal client always uses the plain port (its own cost
    is the same whatever the generators use)."""
    q = mp.Queue()
    pq = mp.Queue()
    probe = mp.Process(target=prober, args=(plain_port, seconds, pq))
    gens = [mp.Process(target=generator, args=(port, ca, rate / procs, seconds, q))
            for _ in range(procs if rate else 0)]
    c0, t0 = cpu_seconds(pid), time.monotonic()
    probe.start()
    for g in gens:
        g.start()
    res = [q.get() for _ in gens]
    lat = pq.get()
    for p in gens + [probe]:
        p.join()
    c1, t1 = cpu_seconds(pid), time.monotonic()
    ok = sum(r[0] for r in res)
    failed = sum(r[1] for r in res)
    conn_lat = sorted(x for r in res for x in r[2])
    lat.sort()
    return {"target_per_s": rate, "achieved_per_s": ok / (t1 - t0), "failed": failed,
            "redis_cpu_pct": 100.0 * (c1 - c0) / (t1 - t0),
            "get_ms": {"p50": B.percentile(lat, 50) * 1e3, "p99": B.percentile(lat, 99) * 1e3,
                       "max": lat[-1] * 1e3, "n": len(lat)},
            "conn_ms": ({"p50": B.percentile(conn_lat, 50) * 1e3, "p99": B.percentile(conn_lat, 99) * 1e3}
                        if conn_lat else None)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="0,100,333,1000,2000")
    ap.add_argument("--step", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--modes", default="plain,tls")
    ap.add_argument("--base", default="/tmp")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rates = [float(x) for x in a.rates.split(",")]
    root = B.tempdir_on(a.base)
    pki = V.make_ca(os.path.join(root, "pki"))
    proc, port, tls_port = start_redis(root, pki)
    results = {"machine_before": B.machine(), "step_s": a.step, "procs": a.procs, "modes": {}}
    try:
        for mode in a.modes.split(","):
            rows = []
            for rate in rates:
                r = step(proc.pid, port, tls_port if mode == "tls" else port,
                         pki["ca"] if mode == "tls" else None, rate, a.step, a.procs)
                rows.append(r)
                if not a.json:
                    print_row(mode, r, rows[0])
                    sys.stdout.flush()
            results["modes"][mode] = rows
    finally:
        proc.terminate()
        proc.wait()
        B.cleanup(root)
    results["machine_after"] = B.machine()
    for rows in results["modes"].values():
        idle = rows[0]["redis_cpu_pct"] if rows and rows[0]["target_per_s"] == 0 else 0.0
        for r in rows:
            r["cpu_pct_per_1000_per_s"] = ((r["redis_cpu_pct"] - idle) / r["achieved_per_s"] * 1000
                                           if r["achieved_per_s"] > 0 else None)
    if a.json:
        print(json.dumps(results, indent=1))
    else:
        mb, ma = results["machine_before"], results["machine_after"]
        print("%s; %d cores, load average %s before, %s after; %d generator processes, %g s per step"
              % (mb["date"], mb["cores"], "/".join(map(str, mb["loadavg"])),
                 "/".join(map(str, ma["loadavg"])), a.procs, a.step))
        print()
        print("| mode | target conn+AUTH/s | achieved | failed | redis-server CPU % of a core |"
              " CPU % per 1,000 AUTH/s | GET p50 / p99 / max ms | conn->PONG p50 / p99 ms |")
        print("|---|---:|---:|---:|---:|---:|---|---|")
        for mode, rows in results["modes"].items():
            for r in rows:
                per = r["cpu_pct_per_1000_per_s"]
                cl = r["conn_ms"]
                print("| %s | %d | %.0f | %d | %.1f | %s | %.2f / %.2f / %.1f | %s |" % (
                    mode, r["target_per_s"], r["achieved_per_s"], r["failed"], r["redis_cpu_pct"],
                    "%.1f" % per if per is not None else "-", r["get_ms"]["p50"], r["get_ms"]["p99"],
                    r["get_ms"]["max"], "%.2f / %.2f" % (cl["p50"], cl["p99"]) if cl else "-"))


def print_row(mode, r, first):
    print("# %s %d/s: achieved %.0f/s, %d failed, redis-server %.1f%% CPU, GET p99 %.2f ms"
          % (mode, r["target_per_s"], r["achieved_per_s"], r["failed"], r["redis_cpu_pct"],
             r["get_ms"]["p99"]), file=sys.stderr)


if __name__ == "__main__":
    main()
