#!/usr/bin/python3
"""Dropped connections over N token lifetimes, per library and kind: the real agent
publishing Entra tokens from the fake (8 s tokens, signed, refreshed at half their life),
tests/fakes/token_proxy.py in front of redis-server closing every connection whose token
expired without a newer AUTH, and each library's subscriber, blocking reader and pooled
connections (client/tests/rc_longlived, client/tests/py_longlived.py,
client/node/tools/te-worker.mjs for node-redis and ioredis, when node >= 20 is there) all
at once, with
20 messages a second to each. --naive adds clients that AUTH once and never again.

Usage: bench/token_expiry.py [--lifetimes N] [--naive]
Prints numbers; asserts nothing. The machinery is tests/integration/test_token_expiry.py's."""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("REDIS_CREDS_SOURCE_DIR", os.path.dirname(HERE))

import rc_harness as h  # noqa: E402
import test_token_expiry as te  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lifetimes", type=int, default=10)
    ap.add_argument("--naive", action="store_true", help="add clients that never re-AUTH")
    args = ap.parse_args()
    libs = te.libraries()
    if args.naive:
        libs["naive-python"] = ([te.PY, te.PY_WORKER, "sync"], ("naive",))
        if os.path.exists(te.C_WORKER):
            libs["naive-c"] = ([te.C_WORKER], ("naive",))
        for label, spec in te.naive_node_libraries().items():
            libs["naive-" + label] = spec
    sc = h.Scenario()
    sc.redis.start()
    try:
        duration = args.lifetimes * te.LIFETIME + 5
        results, events, proxy, agent = te.run_window(sc, duration, libs=libs)
        drops = te.expired_by_name(events)
        print("%d s of traffic, %d-s tokens (%d lifetimes)" % (duration, te.LIFETIME,
                                                                args.lifetimes))
        te.print_table(results, events)
        per_lib = {}
        for name, r in results.items():
            lib = name.rsplit("-", 1)[0]
            per_lib[lib] = per_lib.get(lib, 0) + drops.get(name, 0)
        print("dropped connections per library:",
              ", ".join("%s %d" % kv for kv in sorted(per_lib.items())))
        s = [e for e in events if e["event"] == "summary"]
        if s:
            print("proxy: %(connections)d connections, %(auth)d AUTH, %(reauth)d re-AUTH, "
                  "%(refused)d refused, %(expired)d closed at expiry" % s[-1])
    finally:
        sc.close()
        sc.tree.remove()


if __name__ == "__main__":
    main()
