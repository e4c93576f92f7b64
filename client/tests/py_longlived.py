"""py_longlived: a long-lived redis-py client for the token-expiry test
(tests/integration/test_token_expiry.py), one kind per process, the same protocol as
rc_longlived.c:

    python3 py_longlived.py sync|async subscriber|blocking|pooled|naive

Environment: REDIS_HOST, REDIS_PORT, REDIS_CREDS_NAME, REDIS_CREDS_RUNTIME_DIR, TE_KEY,
TE_CLIENT_NAME, and PYTHONPATH reaching client/python. Payloads are sequence numbers 1..N
then "end:N"; it prints "ready", then at "end:N" (pooled: at SIGTERM) one JSON line of
counts. A connection error is counted, and the library reconnects.
- subscriber: redis_creds.Subscriber / AsyncSubscriber on redis_client()'s pool;
- blocking: blocking_command / async_blocking_command("BLPOP", key);
- pooled: INCR every 20 ms on a pool of 3 connections, 2 of them idle most of the time
  (moved to each new credential by the pool's watcher: reauth_idle);
- naive: BLPOP on a redis.Redis that AUTHs once with the token read at start.
"""
import asyncio
import json
import os
import signal
import sys
import time

import redis
import redis.asyncio

import redis_creds
from redis_creds import longlived

ENV = os.environ
KEY = ENV.get("TE_KEY", "te")
NAME = ENV.get("TE_CLIENT_NAME", "py-longlived")
CONN = dict(host=ENV.get("REDIS_HOST", "127.0.0.1"), port=int(ENV.get("REDIS_PORT", "6379")),
            client_name=NAME, socket_timeout=30, socket_connect_timeout=5)


class Counts:
    def __init__(self, lib, kind):
        self.lib, self.kind = lib, kind
        self.seen = set()
        self.received = self.duplicates = self.errors = self.ok = self.failed = 0
        self.end = None
        self.switches = 0
        self.stop = False

    def payload(self, data):
        """Counts one payload; True at end:N."""
        s = data.decode() if isinstance(data, bytes) else str(data)
        if s.startswith("end:"):
            self.end = int(s[4:])
            return True
        self.received += 1
        n = int(s)
        if n in self.seen:
            self.duplicates += 1
        self.seen.add(n)
        return False

    def report(self):
        # missing is known only once "end:N" arrived (pooled and stopped workers: None)
        end = self.end
        missing = None if end is None else end - len([n for n in self.seen if 1 <= n <= end])
        print(json.dumps({"lib": self.lib, "kind": self.kind, "received": self.received,
                          "missing": missing, "duplicates": self.duplicates,
                          "errors": self.errors, "switches": self.switches, "ok": self.ok,
                          "failed": self.failed, "end": self.end}), flush=True)


def ready():
    print("ready", flush=True)


def client():
    return redis_creds.redis_client(ENV.get("REDIS_CREDS_NAME", "cache"), max_connections=8,
                                    **CONN)


def sync_subscriber(k):
    r = client()
    sub = longlived.Subscriber(r, channels=[KEY])
    ready()
    while not k.stop:
        try:
            if sub is None:
                sub = longlived.Subscriber(r, channels=[KEY])
            m = sub.get_message(timeout=1.0)
        except redis.RedisError as e:
            print("subscriber: %s: %s" % (type(e).__name__, e), file=sys.stderr, flush=True)
            k.errors += 1
            if sub is not None:
                k.switches += sub.switches
                sub.close()
            sub = None
            time.sleep(0.1)
            continue
        if m is not None and k.payload(m["data"]):
            break
    k.switches += sub.switches if sub else 0


def sync_blocking(k, naive=False):
    if naive:
        cred = redis_creds.CredentialFile(ENV.get("REDIS_CREDS_NAME", "cache")).credential()
        r = redis.Redis(username=cred.username, password=cred.password, **CONN)
    else:
        r = client()
    ready()
    while not k.stop:
        try:
            if naive:
                reply = r.blpop(KEY, timeout=1)
            else:
                reply = longlived.blocking_command(r, "BLPOP", KEY, timeout=1)
        except redis.RedisError as e:   # naive: then its expired token, refused
            print("blocking: %s: %s" % (type(e).__name__, e), file=sys.stderr, flush=True)
            k.errors += 1
            time.sleep(0.1)
            continue
        if reply is not None and k.payload(reply[1]):
            break


def sync_pooled(k):
    r = client()
    pool = r.connection_pool
    held = [pool.get_connection("PING") for _ in range(3)]    # three connections exist
    for c in held:
        pool.release(c)
    ready()
    while not k.stop:
        try:
            r.incr(KEY)
            k.ok += 1
        except redis.RedisError as e:
            print("pooled: %s: %s" % (type(e).__name__, e), file=sys.stderr, flush=True)
            k.failed += 1
            k.errors += isinstance(e, redis.ConnectionError)
        time.sleep(0.02)


async def async_subscriber(k):
    r = redis_creds.async_redis_client(ENV.get("REDIS_CREDS_NAME", "cache"), max_connections=8,
                                       **CONN)
    sub = await longlived.AsyncSubscriber.create(r, channels=[KEY])
    ready()
    while not k.stop:
        try:
            if sub is None:
                sub = await longlived.AsyncSubscriber.create(r, channels=[KEY])
            m = await sub.get_message(timeout=1.0)
        except redis.RedisError as e:
            print("subscriber: %s: %s" % (type(e).__name__, e), file=sys.stderr, flush=True)
            k.errors += 1
            if sub is not None:
                k.switches += sub.switches
                await sub.close()
            sub = None
            await asyncio.sleep(0.1)
            continue
        if m is not None and k.payload(m["data"]):
            break
    k.switches += sub.switches if sub else 0


async def async_blocking(k):
    r = redis_creds.async_redis_client(ENV.get("REDIS_CREDS_NAME", "cache"), max_connections=8,
                                       **CONN)
    ready()
    while not k.stop:
        try:
            reply = await longlived.async_blocking_command(r, "BLPOP", KEY, timeout=1)
        except redis.RedisError as e:
            print("blocking: %s: %s" % (type(e).__name__, e), file=sys.stderr, flush=True)
            k.errors += 1
            await asyncio.sleep(0.1)
            continue
        if reply is not None and k.payload(reply[1]):
            break


async def async_pooled(k):
    r = redis_creds.async_redis_client(ENV.get("REDIS_CREDS_NAME", "cache"), max_connections=8,
                                       **CONN)
    pool = r.connection_pool
    held = [await pool.get_connection("PING") for _ in range(3)]
    for c in held:
        await pool.release(c)
    ready()
    while not k.stop:
        try:
            await r.incr(KEY)
            k.ok += 1
        except redis.RedisError as e:
            print("pooled: %s: %s" % (type(e).__name__, e), file=sys.stderr, flush=True)
            k.failed += 1
            k.errors += isinstance(e, redis.ConnectionError)
        await asyncio.sleep(0.02)


def main():
    mode, kind = sys.argv[1], sys.argv[2]
    k = Counts("python-" + mode, kind)

    def on_term(*_):
        k.stop = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if mode == "sync":
        {"subscriber": sync_subscriber, "blocking": sync_blocking, "pooled": sync_pooled,
         "naive": lambda k: sync_blocking(k, naive=True)}[kind](k)
    else:
        asyncio.run({"subscriber": async_subscriber, "blocking": async_blocking,
                     "pooled": async_pooled}[kind](k))
    k.report()
    # the watcher threads are daemons: nothing to join


if __name__ == "__main__":
    main()
