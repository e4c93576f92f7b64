"""Long-lived connections through token expiry, like Azure Managed Redis with Entra ID
(issue 13): the real agent publishes Entra tokens from the fake (8 s tokens, signed RS256,
a new one at every request, refreshed at half their life); tests/fakes/token_proxy.py in
front of redis-server checks each token and closes a connection whose token expired
without a newer AUTH. Subscribers, blocking readers and pooled connections of every
library run at once for 10 token lifetimes: 0 connections dropped by the proxy, 0
messages lost (sequence numbers; duplicates counted and reported), 0 failed commands. A
naive client that never re-AUTHs is dropped by the same device.

The tests are slow (about 100 s and 40 s): their names carry `slow` (deselect with
-k "not slow").

Workers. Each library's long-lived client is a separate process started with
`argv... <kind>` (kind: subscriber, blocking, pooled, naive) and this environment:
REDIS_HOST, REDIS_PORT (the proxy), REDIS_CREDS_NAME, REDIS_CREDS_RUNTIME_DIR, TE_KEY
(its channel, list or counter key), TE_CLIENT_NAME (to send as CLIENT SETNAME or HELLO
SETNAME, which names the connection in the proxy's events). It prints "ready" once
subscribed or connected. Payloads are sequence numbers 1..N, then "end:N"; at "end:N"
(pooled: at SIGTERM) it prints one JSON line {"lib", "kind", "received", "missing",
"duplicates", "errors" (connection errors it saw), "switches", "ok", "failed"} and exits
0. client/tests/rc_longlived.c, client/tests/py_longlived.py and
client/node/tools/te-worker.mjs (node-redis and ioredis; also "reauths", its adapters'
re-AUTHs) are three; libraries() below says how to start each, and another library plugs
in by adding an entry there. The Node.js workers need node >= 20 (and `npm ci` in
client/node, done here): without it they are left out, with a line saying so.
"""
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import rc_harness as h
import test_client_node
from azure_helpers import AzureScenario
from azure_fake import RsaKey  # noqa: E402 - azure_helpers put tests/fakes on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY = os.path.join(HERE, "..", "fakes", "token_proxy.py")
C_WORKER = os.path.join(h.BUILD_DIR, "client", "tests", "rc_longlived")
PY_WORKER = os.path.join(h.SOURCE_DIR, "client", "tests", "py_longlived.py")
PY = "/usr/bin/python3"
NODE_DIR = os.path.join(h.SOURCE_DIR, "client", "node")
NODE_WORKER = os.path.join(NODE_DIR, "tools", "te-worker.mjs")
# label -> (module, RESP, kinds): on RESP3 the subscriber re-AUTHs in place; on RESP2
# (node-redis' and ioredis' default) it makes before it breaks
NODE_LIBS = {
    "node-redis-resp3": ("redis", "3", ("subscriber", "blocking", "pooled")),
    "node-redis": ("redis", "2", ("subscriber",)),
    "ioredis": ("ioredis", "2", ("subscriber", "blocking", "pooled")),
    "ioredis-resp3": ("ioredis", "3", ("subscriber",)),
}
BACKEND_USER, BACKEND_PASSWORD = "proxy-backend", "proxy-backend-pw-4c1e9a"
LIFETIME = 8
CHANNEL = "te:chan"


_node_state = {}


def node_ready():
    """node (>= 20) after `npm ci` in client/node, once per process; else None, having
    printed why the Node.js workers are skipped."""
    if "node" not in _node_state:
        node, why = test_client_node.node_or_why()
        if node:
            why = test_client_node.npm_ci()
        _node_state["node"] = None if why else node
        if why:
            print("Node.js workers skipped: %s" % why)
    return _node_state["node"]


def node_libraries(kinds=None):
    node = node_ready()
    if not node:
        return {}
    return {label: ([node, NODE_WORKER, module, resp], kinds or lib_kinds)
            for label, (module, resp, lib_kinds) in NODE_LIBS.items()}


def naive_node_libraries():
    """node-redis and ioredis clients given the token of the moment, never re-AUTHed."""
    node = node_ready()
    if not node:
        return {}
    return {"node-redis": ([node, NODE_WORKER, "redis", "2"], ("naive",)),
            "ioredis": ([node, NODE_WORKER, "ioredis", "2"], ("naive",))}


def libraries():
    """label -> (argv prefix, kinds). A library whose program is missing is left out."""
    libs = node_libraries()
    if os.path.exists(C_WORKER):
        libs["c"] = ([C_WORKER], ("subscriber", "blocking", "pooled"))
    libs["python-sync"] = ([PY, PY_WORKER, "sync"], ("subscriber", "blocking", "pooled"))
    libs["python-async"] = ([PY, PY_WORKER, "async"], ("subscriber", "blocking", "pooled"))
    return libs


class TokenProxy:
    def __init__(self, sc, fake):
        self.dir = os.path.join(sc.tree.root, "proxy")
        os.mkdir(self.dir, 0o700)
        pwfile = os.path.join(self.dir, "backend.pw")
        with open(pwfile, "w") as f:
            f.write(BACKEND_PASSWORD)
        sc.redis.create_user(BACKEND_USER, BACKEND_PASSWORD)
        self.port_file = os.path.join(self.dir, "port")
        self.events_path = os.path.join(self.dir, "events.jsonl")
        self.out = open(self.events_path, "w")
        self.proc = subprocess.Popen(
            [PY, PROXY, "--port-file", self.port_file, "--backend", sc.redis.endpoint,
             "--backend-user", BACKEND_USER, "--backend-password-file", pwfile,
             "--jwks-url", "%s/%s/discovery/v2.0/keys" % (fake.url, fake.tenant)],
            stdout=self.out, stderr=subprocess.STDOUT, env=h.clean_env())
        sc.on_close(self.close)
        h.wait_until(lambda: os.path.exists(self.port_file), 10, "the proxy's port")
        with open(self.port_file) as f:
            self.port = int(f.read())

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.port

    def events(self):
        with open(self.events_path) as f:
            return [json.loads(line) for line in f if line.startswith("{")]

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def start_world(sc, lifetime=LIFETIME):
    """The fake Entra (signed tokens, a new one per request), the proxy, and the agent
    publishing `entra` (validated through the proxy). Returns (az, proxy, agent)."""
    az = AzureScenario(sc, lifetime=lifetime)
    az.fake.signing_key = RsaKey()        # RS256 tokens the proxy can verify
    az.fake.imds_reuse_fraction = None    # a new token at every request
    proxy = TokenProxy(sc, az.fake)
    cred = az.cred(name="entra", source="entra", poll_interval="500ms")
    cred["redis"]["endpoints"] = [proxy.endpoint]
    # The check of each new token goes through the (Python) proxy, which a loaded machine
    # slows down: a 1 s validation timeout let a token expire unreplaced under load.
    cred["redis"]["timeout"] = "3s"
    # a generous timeout: on a loaded machine the fake (Python) may answer slowly
    agent = az.start([cred], [az.entra_source(refresh_ratio=0.5, timeout="5s")])
    sc.wait_published("entra", timeout=10)
    return az, proxy, agent


class Worker:
    def __init__(self, sc, proxy, label, argv, kind, key):
        self.label, self.kind, self.key = label, kind, key
        self.name = "%s-%s" % (label, kind)
        env = h.clean_env({
            "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(proxy.port),
            "REDIS_CREDS_NAME": "entra", "REDIS_CREDS_RUNTIME_DIR": sc.tree.runtime,
            "TE_KEY": key, "TE_CLIENT_NAME": self.name,
            "PYTHONPATH": os.path.join(h.SOURCE_DIR, "client", "python")})
        self.err_path = os.path.join(sc.tree.root, self.name + ".stderr")
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(argv + [kind], stdout=subprocess.PIPE, stderr=self.err,
                                     env=env, text=True)
        self.lines = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        sc.on_close(self.kill)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.strip() == "ready":
                self.ready.set()

    def result(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            err = self.stderr()
            self.kill()
            raise AssertionError("%s did not finish: %s" % (self.name, err))
        self.reader.join(5)
        for line in self.lines:
            if line.startswith("{"):
                return json.loads(line)
        raise AssertionError("%s reported nothing (exit %s): %s"
                             % (self.name, self.proc.returncode, self.stderr()))

    def stderr(self):
        """The first and the last lines the worker wrote to stderr."""
        self.err.flush()
        with open(self.err_path) as f:
            text = f.read()
        return text if len(text) <= 3000 else text[:1000] + "\n...\n" + text[-2000:]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


class Producer(threading.Thread):
    """Every `interval` s: PUBLISH the next sequence number on CHANNEL and RPUSH it to each
    list, straight to redis-server; at the end, "end:N" to all."""

    def __init__(self, sc, lists, duration, interval=0.05):
        super().__init__(daemon=True)
        self.r = sc.redis.client()
        self.lists, self.duration, self.interval = lists, duration, interval
        self.n = 0
        self.error = None

    def run(self):
        try:
            end = time.monotonic() + self.duration
            while time.monotonic() < end:
                self.n += 1
                p = self.r.pipeline(transaction=False)
                p.publish(CHANNEL, self.n)
                for key in self.lists:
                    p.rpush(key, self.n)
                p.execute()
                time.sleep(self.interval)
            p = self.r.pipeline(transaction=False)
            p.publish(CHANNEL, "end:%d" % self.n)
            for key in self.lists:
                p.rpush(key, "end:%d" % self.n)
            p.execute()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


def run_window(sc, duration, libs=None, kinds=None):
    """Runs every library's workers for `duration` s of traffic through the proxy.
    Returns (results: name -> report, proxy events, proxy, agent)."""
    az, proxy, agent = start_world(sc)
    libs = libs or libraries()
    workers = []
    for label, (argv, lib_kinds) in libs.items():
        for kind in lib_kinds:
            if kinds and kind not in kinds:
                continue
            key = CHANNEL if kind == "subscriber" else "te:%s:%s" % (label, kind)
            workers.append(Worker(sc, proxy, label, argv, kind, key))
    for w in workers:
        if not w.ready.wait(30):
            raise AssertionError("%s not ready: %s" % (w.name, w.stderr()))
    prod = Producer(sc, [w.key for w in workers if w.kind in ("blocking", "naive")], duration)
    prod.start()
    prod.join(duration + 60)
    assert prod.error is None, prod.error
    results = {}
    for w in workers:
        if w.kind in ("pooled", "naive"):
            w.proc.send_signal(signal.SIGTERM)
    for w in workers:
        results[w.name] = dict(w.result(30), stderr=w.stderr())
    proxy.close()
    az.assert_no_secrets(az.outputs(agent))
    return results, proxy.events(), proxy, agent


def expired_by_name(events):
    out = {}
    for e in events:
        if e["event"] == "expired":
            out[e.get("name")] = out.get(e.get("name"), 0) + 1
    return out


def reauths_by_name(events):
    out = {}
    for e in events:
        if e["event"] == "reauth":
            out[e.get("name")] = out.get(e.get("name"), 0) + 1
    return out


def table(results, events):
    """Rows of the per-worker numbers (missing is "-" where no end marker arrived;
    reauths: the re-AUTHs in place the proxy saw on the worker's connections)."""
    drops = expired_by_name(events)
    reauths = reauths_by_name(events)
    rows = [("library-kind", "dropped", "errors", "received", "missing", "dups",
             "switches", "reauths", "ok", "failed")]
    for name, r in sorted(results.items()):
        rows.append((name, drops.get(name, 0), r["errors"], r["received"],
                     "-" if r["missing"] is None else r["missing"], r["duplicates"],
                     r["switches"], reauths.get(name, 0), r["ok"], r["failed"]))
    return ["%-28s %7s %6s %8s %7s %5s %8s %7s %6s %6s" % row for row in rows]


def print_table(results, events):
    print("\n".join(table(results, events)))
    s = [e for e in events if e["event"] == "summary"]
    print("proxy:", s[-1] if s else "no summary")


# --------------------------------------------------------------------------------------
# The device itself (fast): what it accepts, what it refuses, when it closes.

def test_proxy_checks_tokens_and_closes_connections_whose_token_expired(sc):
    import redis
    from azure_fake import make_jwt
    az = AzureScenario(sc, lifetime=3)
    az.fake.signing_key = RsaKey()
    proxy = TokenProxy(sc, az.fake)
    ident = az.fake.system_identity
    oid = ident.object_id

    def conn():
        return redis.Redis(port=proxy.port, socket_timeout=5, single_connection_client=True)

    tok, claims = az.fake.issue(ident, "https://redis.azure.com")
    forged = make_jwt(dict(claims, exp=claims["exp"] + 3600))     # random signature
    other_aud, _ = az.fake.issue(ident, "https://vault.azure.net")
    c = conn()
    with pytest.raises(redis.exceptions.AuthenticationError, match="Authentication required"):
        c.ping()       # NOAUTH
    for user, token in ((oid, forged), ("someone-else", tok), (oid, other_aud)):
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGPASS"):
            c.execute_command("AUTH", user, token)
    assert c.execute_command("AUTH", oid, tok) is True
    assert c.ping() is True
    c2 = conn()
    hello = c2.execute_command("HELLO", "2", "AUTH", oid, tok, "SETNAME", "hello-client")
    assert b"proto" in hello
    # c re-AUTHs with a newer token before exp; c2 does not: c2 is closed, c stays
    time.sleep(max(0.0, claims["exp"] - time.time() - 1.5))
    tok2, claims2 = az.fake.issue(ident, "https://redis.azure.com")
    assert c.execute_command("AUTH", oid, tok2) is True
    time.sleep(max(0.0, claims["exp"] - time.time() + 0.5))
    assert c.ping() is True
    with pytest.raises(redis.exceptions.ConnectionError):
        c2.ping()
    time.sleep(max(0.0, claims2["exp"] - time.time() + 0.5))
    with pytest.raises(redis.exceptions.ConnectionError):
        c.ping()
    proxy.close()
    expired = [e for e in proxy.events() if e["event"] == "expired"]
    assert len(expired) == 2 and "hello-client" in [e["name"] for e in expired], expired


# --------------------------------------------------------------------------------------
# The Python helpers, one at a time, against redis-server directly (fast): the credential
# moves from user te1 to user te2, so CLIENT LIST shows which one a connection uses.

def publish(sc, user, expires_in=3600):
    exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + expires_in))
    doc = {"format": 1, "name": "te", "username": user, "password": user + "-pw",
           "version": user, "expires_at": exp}
    path = sc.path("te.json")
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.rename(path + ".tmp", path)


def users_by_id(sc):
    """CLIENT ID -> user, for the connections of te1 and te2."""
    out = {}
    for c in sc.redis.client().client_list():
        if c["user"] in ("te1", "te2"):
            out[c["id"]] = c["user"]
    return out


@pytest.fixture
def two_users(sc):
    os.makedirs(sc.tree.runtime, exist_ok=True)
    sc.redis.create_user("te1", "te1-pw")
    sc.redis.create_user("te2", "te2-pw")
    publish(sc, "te1")
    sys.path.insert(0, os.path.join(h.SOURCE_DIR, "client", "python"))
    import redis_creds
    return redis_creds


def wait_generation(cf, gen):
    h.wait_until(lambda: cf.generation >= gen, 5, "generation %d" % gen)


def test_python_pool_reauths_idle_connections_in_place(sc, two_users):
    rc = two_users
    r = rc.redis_client("te", runtime_dir=sc.tree.runtime, port=sc.redis.port)
    pool = r.connection_pool
    held = [pool.get_connection("PING") for _ in range(3)]
    for c in held:
        pool.release(c)
    before = users_by_id(sc)
    assert sorted(before.values()) == ["te1"] * 3
    publish(sc, "te2")
    # the watcher re-AUTHs the idle connections: same connections (ids), now user te2
    h.wait_until(lambda: users_by_id(sc) == {i: "te2" for i in before}, 5,
                 "the idle connections re-AUTHed in place")
    assert r.incr("te:n") == 1
    pool.rc_watcher.stop()


def test_python_async_pool_reauths_idle_connections_in_place(sc, two_users):
    rc = two_users

    async def main():
        r = rc.async_redis_client("te", runtime_dir=sc.tree.runtime, port=sc.redis.port)
        pool = r.connection_pool
        held = [await pool.get_connection("PING") for _ in range(3)]
        for c in held:
            await pool.release(c)
        before = users_by_id(sc)
        assert sorted(before.values()) == ["te1"] * 3
        publish(sc, "te2")
        end = time.monotonic() + 5
        while users_by_id(sc) != {i: "te2" for i in before}:
            assert time.monotonic() < end, users_by_id(sc)
            await asyncio.sleep(0.05)
        assert await r.incr("te:n") == 1
        await r.close()
        pool.rc_watcher.stop()
    asyncio.run(main())


def test_python_subscriber_makes_before_it_breaks(sc, two_users):
    rc = two_users
    from redis_creds import longlived
    r = rc.redis_client("te", runtime_dir=sc.tree.runtime, port=sc.redis.port)
    sub = longlived.Subscriber(r, channels=["te:c"])
    admin = sc.redis.client()
    admin.publish("te:c", "1")
    admin.publish("te:c", "2")
    publish(sc, "te2")
    wait_generation(r.connection_pool.connection_kwargs["credential_file"], 2)
    got = [sub.get_message(timeout=5)["data"] for _ in range(2)]
    assert sub.switches == 1
    assert list(users_by_id(sc).values()) == ["te2"], "the old subscriber is closed"
    admin.publish("te:c", "3")
    got.append(sub.get_message(timeout=5)["data"])
    assert got == [b"1", b"2", b"3"]
    assert sub.get_message(timeout=0.2) is None
    sub.close()


def test_python_async_subscriber_makes_before_it_breaks(sc, two_users):
    rc = two_users
    from redis_creds import longlived

    async def main():
        r = rc.async_redis_client("te", runtime_dir=sc.tree.runtime, port=sc.redis.port)
        sub = await longlived.AsyncSubscriber.create(r, channels=["te:c"])
        admin = sc.redis.client()
        admin.publish("te:c", "1")
        publish(sc, "te2")
        wait_generation(r.connection_pool.connection_kwargs["credential_file"], 2)
        got = [(await sub.get_message(timeout=5))["data"]]
        assert sub.switches == 1
        assert list(users_by_id(sc).values()) == ["te2"]
        admin.publish("te:c", "2")
        got.append((await sub.get_message(timeout=5))["data"])
        assert got == [b"1", b"2"]
        await sub.close()
        await r.close()
    asyncio.run(main())


def users_by_name(sc, name):
    """CLIENT ID -> user, for the connections named `name`."""
    return {c["id"]: c["user"] for c in sc.redis.client().client_list() if c["name"] == name}


@pytest.mark.parametrize("module,resp", [("redis", "2"), ("ioredis", "2"), ("redis", "3"),
                                         ("ioredis", "3")],
                         ids=["node-redis-resp2", "ioredis-resp2", "node-redis-resp3",
                              "ioredis-resp3"])
def test_node_subscriber_switches_or_reauths_in_place(sc, two_users, module, resp):
    """RESP2: a new connection as te2 subscribes, then the te1 one is closed; messages 1..3
    all arrive. RESP3: the same connection (id) moves to te2."""
    node = node_ready()
    if not node:
        pytest.skip("Node.js worker skipped: node >= 20 or npm ci missing")
    name = "node-sub-%s-%s" % (module, resp)
    env = h.clean_env({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(sc.redis.port),
                       "REDIS_CREDS_NAME": "te", "REDIS_CREDS_RUNTIME_DIR": sc.tree.runtime,
                       "TE_KEY": "te:c", "TE_CLIENT_NAME": name})
    p = subprocess.Popen([node, NODE_WORKER, module, resp, "subscriber"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        before = users_by_name(sc, name)
        assert list(before.values()) == ["te1"], before
        admin = sc.redis.client()
        admin.publish("te:c", "1")
        admin.publish("te:c", "2")
        publish(sc, "te2")
        if resp == "3":
            want = {i: "te2" for i in before}
        else:
            want = None
        h.wait_until(lambda: (users_by_name(sc, name) == want if want else
                              list(users_by_name(sc, name).values()) == ["te2"]), 10,
                     "the subscriber on te2 (%s)" % ("in place" if want else "switched"))
        admin.publish("te:c", "3")
        admin.publish("te:c", "end:3")
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    r = json.loads(out.strip().splitlines()[-1])
    assert (r["missing"], r["errors"]) == (0, 0), (r, err)
    assert r["switches"] == (0 if resp == "3" else 1), r
    assert r["received"] == 3 + r["duplicates"], r


def test_python_blocking_command_returns_before_expiry_and_reauths(sc, two_users):
    """A token that expires in 4 s: BLPOP blocks in slices of about 2 s; a change
    published during the first slice is AUTHed on the same connection before the next."""
    rc = two_users
    from redis_creds import longlived
    publish(sc, "te1", expires_in=4)
    r = rc.redis_client("te", runtime_dir=sc.tree.runtime, port=sc.redis.port)
    cf = r.connection_pool.connection_kwargs["credential_file"]
    wait_generation(cf, 1)
    admin = sc.redis.client()
    timer = threading.Timer(1.0, publish, (sc, "te2"))
    timer.start()
    threading.Timer(3.5, admin.rpush, ("te:l", "x")).start()
    t0 = time.monotonic()
    assert longlived.blocking_command(r, "BLPOP", "te:l", timeout=20) == (b"te:l", b"x")
    assert 3.0 < time.monotonic() - t0 < 10
    assert list(users_by_id(sc).values()) == ["te2"], "re-AUTHed in place, one connection"
    assert longlived.blocking_command(r, "BLPOP", "te:l", timeout=0.3) is None
    assert longlived.block_seconds(time.time() + 10, 0) == pytest.approx(8.0, abs=0.5)
    assert longlived.block_seconds(time.time() - 1, 0) == longlived.MIN_BLOCK
    assert longlived.block_seconds(None, 0) == 0
    assert longlived.block_seconds(None, 5, socket_timeout=3) == 2.0


def test_slow_subscribers_blocking_readers_and_pools_survive_10_token_lifetimes(sc):
    duration = 10 * LIFETIME + 5
    t0 = time.time()
    results, events, proxy, agent = run_window(sc, duration)
    print_table(results, events)
    assert time.time() - t0 >= 10 * LIFETIME
    # the tokens really changed all along: the agent published one about every 4 s, and
    # the connections re-AUTHed (pools) or switched (subscribers) many times
    reauths = [e for e in events if e["event"] == "reauth"]
    auths = [e for e in events if e["event"] == "auth"]
    assert len(reauths) >= 10, "pools did not re-AUTH in place: %d" % len(reauths)
    assert len(auths) >= 10 * 3, len(auths)
    drops = expired_by_name(events)
    assert drops == {}, "connections dropped at token expiry: %r" % drops
    for name, r in results.items():
        assert r["errors"] == 0, (name, r, r["stderr"])
        if r["kind"] in ("subscriber", "blocking"):
            assert r["end"] and r["end"] > 10 * LIFETIME * 10, (name, r)
            assert r["missing"] == 0, (name, r)
        if r["kind"] == "subscriber" and not r["lib"].endswith("resp3"):
            assert r["switches"] >= 10, (name, r)   # make-before-break at each token
        if r["kind"] == "subscriber" and r["lib"].endswith("resp3"):
            # in place: the proxy saw the subscribed connection re-AUTH at each token
            assert r["switches"] == 0 and r["reauths"] >= 10, (name, r)
            assert reauths_by_name(events).get(name, 0) >= 10, (name, reauths_by_name(events))
        if r["kind"] == "pooled":
            assert r["failed"] == 0 and r["ok"] > 1000, (name, r)


def test_slow_a_client_that_never_reauthenticates_is_dropped(sc):
    """The same device with clients that AUTH once: each is dropped at its token's expiry
    (and, with the old token, cannot come back) — what the test above would see without
    the libraries' long-lived support."""
    libs = {"python-sync": ([PY, PY_WORKER, "sync"], ("naive",))}
    if os.path.exists(C_WORKER):
        libs["c"] = ([C_WORKER], ("naive",))
    libs.update(naive_node_libraries())
    results, events, proxy, agent = run_window(sc, 2 * LIFETIME + 4, libs=libs)
    print_table(results, events)
    drops = expired_by_name(events)
    for name, r in results.items():
        assert drops.get(name, 0) >= 1, (name, drops)
        assert r["errors"] >= 1, (name, r)


if __name__ == "__main__":
    sys.exit("run with pytest")
