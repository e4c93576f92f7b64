"""What goes wrong with Vault, through the real agent: every injected error keeps the
published file byte-identical and shows a clear status; a hung Vault does not stop the
watchdog or SIGHUP; a standby's 307 is followed only where it may be; no token, secret
id, JWT or password appears in any output at debug level."""
import json
import signal
import time

import rc_harness as h
from vault_helpers import PW1, PW2, vault, vault_tls  # noqa: F401

# name -> (fake.inject arguments for its paths, class shown, text shown)
CASES = {
    "e403": ({"kind": "403"}, "auth", "403 permission denied (the token is valid"),
    "e403i": ({"kind": "403-invalid"}, "auth", "invalid token (after logging in again)"),
    "e404": ({"kind": "404"}, "not-found", "404"),
    "e429": ({"kind": "429", "retry_after": 20}, "transient", "429 request path"),
    "e500": ({"kind": "500"}, "transient", "500 internal error"),
    "e503": ({"kind": "503"}, "transient", "503 Vault is sealed"),
    "e412": ({"kind": "412"}, "transient", "412 required index state not present"),
    "eslow": ({"kind": "delay", "seconds": 2.5}, "transient", "imeout"),
    "etrunc": ({"kind": "truncated"}, "invalid", "malformed JSON"),
    "emalformed": ({"kind": "malformed"}, "invalid", "malformed JSON"),
    "ebig": ({"kind": "oversized", "size": 2 * 1024 * 1024}, "invalid", "larger than 1048576 bytes"),
    "eshape": ({"kind": "wrong_shape"}, "invalid", "\"data\""),
}


def test_every_injected_error_keeps_the_file_and_shows_a_clear_status(vault, sc):
    for name in CASES:
        vault.fake.kv2_put("secret", "redis/" + name, {"username": "app", "password": PW1})
    creds = [vault.cred(name, path="secret/redis/" + name, poll_interval="1s") for name in CASES]
    a = vault.start(credentials=creds, sources=[vault.source(timeout="1s")])
    for name in CASES:
        sc.wait_published(name, password=PW1)
    before = {name: sc.read_bytes(name + ".json") for name in CASES}
    w = sc.watch_runtime()
    for name, (inj, _, _) in CASES.items():
        vault.fake.inject(r"^/v1/secret/(meta)?data/redis/%s$" % name, **inj)
    # Also a new version nobody can read: it must not get through either.
    for name in CASES:
        vault.fake.kv2_put("secret", "redis/" + name, {"username": "app", "password": PW2})

    def all_failed():
        st = vault.status()
        return all(st[n]["state"] == "store-error" for n in CASES) and st
    st = h.wait_until(all_failed, 15, "every credential to show its store error", interval=0.2)
    for name, (_, cls, text) in CASES.items():
        err = st[name]["last_error"]
        assert "(%s)" % cls in err and text in err, (name, err)
        assert "keeping the published credential" in err, err
        assert st[name]["version"] == "1"
        assert sc.read_bytes(name + ".json") == before[name], name
    assert w.snapshot(mask=h.IN_MOVED_TO) == []
    r = sc.run_cli("-c", sc.tree.conf, "status")
    assert r.returncode == 1 and PW1 not in r.stdout and PW2 not in r.stdout
    # Recovery: the new version is published everywhere once Vault behaves.
    vault.fake.clear_injections()
    for name in CASES:
        sc.refresh = sc.run_cli("-c", sc.tree.conf, "refresh", name)
    for name in CASES:
        sc.wait_published(name, password=PW2, timeout=10)
    assert "recovered" in a.log()


def test_hung_vault_does_not_stop_watchdog_sighup_or_sigterm(vault, sc):
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": PW1})
    a = vault.start(sources=[vault.source(timeout="3s")], watchdog_usec=1000000)
    sc.wait_published(password=PW1)
    vault.fake.inject(r"/v1/secret/metadata/", "hang", seconds=30)
    t0 = time.monotonic()
    r = sc.run_cli("-c", sc.tree.conf, "refresh", "cache")
    assert r.returncode == 0, r.stderr
    h.wait_until(lambda: vault.fake.count("/v1/secret/metadata/", since=t0) >= 1, 3, "the hung request")
    mark = a.notify.mark()
    # the loop keeps sending while a fetch hangs (3 s source timeout): two pings in 1.5 s
    h.wait_until(lambda: len(a.notify.values("WATCHDOG", since=mark)) >= 2, 1.5,
                 "two WATCHDOG=1 pings while a fetch hangs")
    r = sc.run_cli("-c", sc.tree.conf, "status", "--json")   # and kept answering
    assert r.returncode in (0, 1) and json.loads(r.stdout)["ok"]
    mark = a.notify.mark()
    th = time.monotonic()
    a.send(signal.SIGHUP)
    a.wait_notify("RELOADING", "1", since=mark, timeout=1)
    assert time.monotonic() - th < 1.0
    a.wait_notify("READY", "1", since=mark, timeout=6)   # after the hung fetch timed out
    assert sc.read_doc()["password"] == PW1
    # SIGTERM in the middle of another hang: out within the 5 s grace, exit 0.
    t1 = time.monotonic()
    r = sc.run_cli("-c", sc.tree.conf, "refresh", "cache")
    h.wait_until(lambda: vault.fake.count("/v1/secret/metadata/", since=t1) >= 1, 3,
                 "the second hung request")
    ts = time.monotonic()
    assert a.stop() == 0
    assert time.monotonic() - ts < 6
    vault.fake.clear_injections()


def test_standby_307_is_followed_only_to_https_on_the_configured_host(vault_tls, sc):
    vs = vault_tls
    active = vs.another_fake()
    active.kv2_put("secret", "redis/cache", {"username": "app", "password": PW1})
    vs.fake.set_standby(active.url)                       # https://127.0.0.1:<other port>
    a = vs.start()
    sc.wait_published(password=PW1)
    assert vs.fake.count("/v1/secret/metadata/redis/cache") >= 1
    assert active.count("/v1/secret/metadata/redis/cache") >= 1
    # A standby that points at a host nobody configured is not followed: no token leaves.
    other = vs.another_fake()
    other.kv2_put("secret", "redis/cache", {"username": "app", "password": PW2})
    vs.fake.set_standby(other.url.replace("127.0.0.1", "localhost"))
    active.kv2_put("secret", "redis/cache", {"username": "app", "password": PW2})
    r = sc.run_cli("-c", sc.tree.conf, "refresh", "cache")
    assert r.returncode == 0
    st = a.notify.wait_status(lambda s: "store-error" in s, timeout=5)
    assert "another host" in st, st
    assert other.count(".") == 0
    assert sc.read_doc()["password"] == PW1


def test_no_secret_in_any_output_at_debug_level(vault, sc):
    fv = vault.fake
    vault.read_policy(paths=("secret/*", "kv/*", "database/*"))
    approle = vault.approle(token_ttl=2, token_max_ttl=3)
    k8s = vault.kubernetes(token_ttl=60)
    fv.kv2_put("secret", "redis/cache", {"username": "app", "password": PW1})
    fv.kv1_enable("kv")
    fv.kv1_put("kv", "redis", {"username": "app", "password": PW2})
    fv.database_enable()
    sc.redis.create_user("dbuser", "x-initial-unused")
    fv.static_role("database", "r", "dbuser", rotation_period=5,
                   on_rotate=lambda u, p: sc.redis.acl_setuser(u, "resetpass", ">" + p))
    sources = [vault.source("va", auth=approle), vault.source("vk", auth=k8s), vault.source("vt")]
    creds = [vault.cred("cache", source="va", poll_interval="1s"),
             vault.cred("kv1", source="vk", path="kv/redis", engine="kv1", poll_interval="1s"),
             vault.cred("db", source="vt", path="database/static-creds/r", engine="database")]
    a = vault.start(sources=sources, credentials=creds, journal=False)
    sc.wait_published("cache", password=PW1)
    sc.wait_published("kv1", password=PW2)
    sc.wait_published("db")
    fv.kv2_put("secret", "redis/cache", {"username": "app", "password": PW2})
    sc.wait_published("cache", password=PW2, timeout=3)
    # A server that echoes the token and a password into its errors: never repeated.
    t0 = time.monotonic()
    fv.inject("/v1/secret/metadata/", "status", times=2, status=500, errors=["echo " + PW2, "token {token}"])
    fv.expire_tokens("auth/approle")
    # both echoing errors logged, a re-login, renewals of the new token
    a.wait_log_count("echo ***", 2, timeout=10)
    h.wait_until(lambda: fv.count("/v1/auth/approle/login", since=t0) >= 1, 10, "a re-login")
    h.wait_until(lambda: fv.count("/v1/auth/token/renew-self", since=t0) >= 1, 10, "a renewal")
    outs = vault.outputs(a)
    st = sc.run_cli("-c", sc.tree.conf, "status", "--json")
    outs += st.stdout + st.stderr
    assert a.stop() == 0
    once = sc.run_agent("--once")
    outs += once.stdout + once.stderr
    assert "published" in outs and "logged in to Vault" in outs
    assert "echo ***" in outs and "token ***" in outs       # the echo arrived, scrubbed
    with fv._lock:
        tokens = list(fv.tokens)
    secrets = tokens + [vault.role_id, vault.secret_id, vault.jwt, PW1, PW2,
                        fv.static_role_info("database", "r")["password"]]
    assert len(tokens) >= 4
    for s in secrets:
        assert s not in outs, "a secret (%s...) appears in the output" % s[:4]
