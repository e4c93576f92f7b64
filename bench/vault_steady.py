#!/usr/bin/python3
"""Steady-state cost of the vault source: requests and TLS handshakes per credential per
hour, through the real agent and the fake Vault over HTTPS, with nothing changing.

Runs N KV v2 credentials on one AppRole-authenticated source for D seconds with a short
poll_interval (to see many looks quickly), counts every request the fake receives by
kind, and the TCP connections and TLS handshakes it accepts, then scales to an hour at
the measured interval and at the default poll_interval of 30 s.

Usage: bench/vault_steady.py [--creds N] [--seconds D] [--poll S] [--token-ttl T]"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vault_lib as V  # noqa: E402
from vault_lib import B  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--creds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--poll", type=float, default=1.0)
    ap.add_argument("--token-ttl", type=int, default=30)
    ap.add_argument("--dir", default="/tmp")
    a = ap.parse_args()
    root = B.tempdir_on(a.dir)
    redis = B.Redis(root)
    pki = V.make_ca(os.path.join(root, "pki"))
    fake = V.FakeVault(tls_cert=pki["cert"], tls_key=pki["key"]).start()
    agent = None
    try:
        redis.cmd("ACL", "SETUSER", "app", "on", "~*", "+@all", ">steady-pw")
        fake.policy("r", {"secret/data/*": ["read"], "secret/metadata/*": ["read"]})
        fake.approle_enable()
        rid = fake.approle_role("bench", policies=["r"], token_ttl=a.token_ttl, token_max_ttl=24 * 3600)
        sid = fake.approle_secret_id("bench")
        creds = []
        for i in range(a.creds):
            fake.kv2_put("secret", "redis/c%d" % i, {"username": "app", "password": "steady-pw"})
            creds.append({"name": "c%d" % i, "path": "secret/redis/c%d" % i, "poll": "%dms" % int(a.poll * 1000)})
        auth = {"method": "approle", "role_id_file": V.secret_file(os.path.join(root, "rid"), rid),
                "secret_id_file": V.secret_file(os.path.join(root, "sid"), sid)}
        conf = V.config(root, fake, pki["ca"], redis.port, creds, auth)
        agent = V.start_agent(conf)
        for c in creds:
            p = os.path.join(root, "run", c["name"] + ".json")
            end = time.monotonic() + 15
            while not os.path.exists(p) and time.monotonic() < end:
                time.sleep(0.01)
        time.sleep(max(1.0, a.poll))
        fake.reset_counts()
        t0 = time.monotonic()
        time.sleep(a.seconds)
        dt = time.monotonic() - t0
        st = fake.stats()
        meta = fake.count("/metadata/")
        data = fake.count("/data/")
        renew = fake.count("renew-self")
        login = fake.count("/login")
        lookup = fake.count("lookup-self")
        hour = 3600.0 / dt
        looks_per_cred = meta / a.creds
        print("%d credentials, poll_interval %.1f s, AppRole token ttl %d s, %.0f s measured" %
              (a.creds, a.poll, a.token_ttl, dt))
        print("  requests: %d metadata, %d data, %d renew-self, %d lookup-self, %d login; "
              "%d TCP connections, %d TLS handshakes" % (meta, data, renew, lookup, login, st["connections"],
                                                        st["handshakes"]))
        print("  per look of a credential: %.2f requests" % ((meta + data) / max(1, meta)))
        print("  per credential per hour at this interval: %.0f requests, %.1f TLS handshakes"
              % ((meta + data) / a.creds * hour, st["handshakes"] / a.creds * hour))
        print("  per credential per hour at poll_interval 30 s: %.0f requests"
              % (3600 / 30 * (meta + data) / max(1, meta)))
        print("  token requests per source per hour with a %d s token: %.0f measured (renewal at ~2/3 ttl: %.0f)"
              % (a.token_ttl, (renew + login + lookup) * hour, 3600 / (a.token_ttl * 0.63)))
        print("  looks per credential: %.1f in %.0f s (%.2f s apart; the host's timers coalesce up to 250 ms)"
              % (looks_per_cred, dt, dt / max(1, looks_per_cred)))
    finally:
        V.stop(agent)
        fake.stop()
        redis.stop()
        B.cleanup(root)


if __name__ == "__main__":
    main()
