#!/usr/bin/python3
"""Requests the agent makes to Azure at steady state, per credential, measured against
the fake endpoints (tests/fakes/azure_fake.py) with the real agent and redis-server.

Three credentials, one of each azure-* type, all with one managed identity (IMDS), run
for --seconds with poll_interval --poll and tokens that live --lifetime seconds. The fake
counts every request by endpoint; the run gives requests per poll (Key Vault GET,
listKeys POST) and token requests per token lifetime (IMDS, per scope), and projects
them to an hour at the defaults (poll_interval 30 s; managed identity tokens live 24 h;
azure-entra refresh_ratio 0.7; Key Vault and management tokens refresh at 70% or with
5 min left).

Usage: bench/azure_requests.py [--seconds S] [--poll D] [--lifetime S] [--dir BASE]
"""
import argparse
import collections
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fakes"))
import benchlib as B  # noqa: E402
from azure_fake import AzureFake  # noqa: E402


def duration_s(d):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for u in ("ms", "s", "m", "h"):
        if d.endswith(u):
            return float(d[: -len(u)]) * units[u]
    raise ValueError(d)


ADMIN = ("bench-admin", "bench-admin-pw-5d1f")


def resp(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)


def cmd_as_admin(port, *args):
    """One command as the admin user (the default user gets the access keys)."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(resp("AUTH", *ADMIN) + resp(*args))
        data = b""
        while data.count(b"\r\n") < 2:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    if b"-" in data[:1] or b"\r\n-" in data:
        raise RuntimeError(data.decode(errors="replace").strip())


def run(base, seconds, poll, lifetime):
    root = B.tempdir_on(base)
    redis = B.Redis(root)
    fake = AzureFake(token_lifetime=lifetime).start()

    def on_token(token, claims):
        if claims["aud"] == "https://redis.azure.com":
            cmd_as_admin(redis.port, "ACL", "SETUSER", claims["oid"], "on", ">" + token, "~*", "+@all")
    fake.on_token.append(on_token)
    fake.kv_set("cache-pw", "bench-kv-pw")
    rid = fake.add_cache("bench")
    keys = fake.keys(rid)
    redis.cmd("ACL", "SETUSER", ADMIN[0], "on", ">" + ADMIN[1], "~*", "&*", "+@all")
    redis.cmd("ACL", "SETUSER", "app", "on", ">bench-kv-pw", "~*", "+@all")
    redis.cmd("ACL", "SETUSER", "default", "on", ">" + keys["primaryKey"], ">" + keys["secondaryKey"])
    agent = None
    try:
        for d in ("run", "state"):
            os.makedirs(os.path.join(root, d), mode=0o700, exist_ok=True)
        ident = 'identity = { type = "managed"; imds_url = "%s"; };' % fake.url
        red = 'redis = { endpoints = [ "127.0.0.1:%d" ]; timeout = "2s"; };' % redis.port
        conf = os.path.join(root, "agent.conf")
        with open(conf, "w") as f:
            f.write("""
agent = { runtime_dir = "%(r)s/run"; state_dir = "%(r)s/state"; group = ""; plugin_dir = "%(p)s";
          control_socket = "%(r)s/control.sock"; log_level = "notice"; };
sources = ( { name = "kv"; type = "azure-keyvault"; vault_url = "%(u)s"; %(i)s },
            { name = "entra"; type = "azure-entra"; %(i)s },
            { name = "keys"; type = "azure-redis-keys"; management_url = "%(u)s"; %(i)s } );
credentials = ( { name = "kv"; source = "kv"; path = "cache-pw"; username = "app"; poll_interval = "%(poll)s"; %(red)s },
                { name = "entra"; source = "entra"; poll_interval = "%(poll)s"; %(red)s },
                { name = "keys"; source = "keys"; path = "%(rid)s"; poll_interval = "%(poll)s"; %(red)s } );
""" % {"r": root, "p": B.PLUGINS, "u": fake.url, "i": ident, "poll": poll, "red": red, "rid": rid})
        agent = subprocess.Popen([B.AGENT, "-c", conf, "--foreground"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        for _ in range(500):
            if all(os.path.exists(os.path.join(root, "run", n + ".json")) for n in ("kv", "entra", "keys")):
                break
            time.sleep(0.02)
        else:
            raise RuntimeError("agent did not publish all three")
        # Steady state: count from here.
        with fake.lock:
            fake.requests = []
        t0 = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        with fake.lock:
            reqs = list(fake.requests)
        c = collections.Counter()
        for r in reqs:
            if r.kind == "imds":
                c["imds " + r.query.get("resource", "?")] += 1
            else:
                c["%s %s" % (r.kind, r.method)] += 1
        return elapsed, c
    finally:
        B.teardown(agent, redis, root, fake)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--poll", default="2s")
    ap.add_argument("--lifetime", type=int, default=20)
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")
    a = ap.parse_args()
    elapsed, c = run(a.dir, a.seconds, a.poll, a.lifetime)
    polls = elapsed / duration_s(a.poll)
    lifetimes = elapsed / a.lifetime
    print("steady state for %.0f s: poll_interval %s (%.1f polls), token lifetime %d s (%.1f lifetimes)"
          % (elapsed, a.poll, polls, a.lifetime, lifetimes))
    for k in sorted(c):
        print("  %-40s %4d   %.2f per poll   %.2f per token lifetime" % (k, c[k], c[k] / polls, c[k] / lifetimes))
    # A poll starts poll_interval after the previous one ended (plus sd-event's timer
    # slack): the measured period carries that overhead over to the 30 s default.
    period = elapsed / max(c["keyvault GET"], 1)
    overhead = max(period - duration_s(a.poll), 0.0)
    per_hour_poll = 3600 / (30.0 + overhead)
    per_hour_token = 3600 / (0.7 * 86400)
    print("measured period %.2f s for poll_interval %s (%.0f ms of check and timer slack per poll)"
          % (period, a.poll, overhead * 1000))
    print("projected per hour and credential at the defaults (poll_interval 30 s, 24 h tokens):")
    print("  azure-keyvault     %.0f Key Vault GET + %.3f IMDS" % (per_hour_poll, per_hour_token))
    print("  azure-entra        0 data-plane requests + %.3f IMDS (one token per %.1f h)"
          % (per_hour_token, 0.7 * 24))
    print("  azure-redis-keys   %.0f listKeys POST + %.3f IMDS" % (per_hour_poll, per_hour_token))


if __name__ == "__main__":
    main()
