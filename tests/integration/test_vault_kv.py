"""KV v2 and KV v1 through the real agent against the fake Vault: pickup timing, the
metadata-only check and its cost, `previous` and the start-up hint (docs/design.md §5.1)."""
import time

import rc_harness as h
from vault_helpers import PW1, PW2, PW3, vault, vault_tls  # noqa: F401


def _put(vs, password, path="redis/cache", mount="secret", username="app"):
    return vs.fake.kv2_put(mount, path, {"username": username, "password": password})


def test_kv2_write_is_published_within_poll_interval(vault, sc):
    _put(vault, PW1)
    vault.start(credentials=[vault.cred(poll_interval="1s")])
    sc.wait_published(password=PW1)
    seen = {}
    w = sc.watch_runtime(on_event=lambda ev: ev.name == "cache.json" and ev.mask & h.IN_MOVED_TO
                         and seen.setdefault(len(seen), ev.t))
    delays = []
    for i, pw in enumerate([PW2, PW1, PW2]):
        n = len(seen)
        t0 = time.monotonic()
        _put(vault, pw)
        h.wait_until(lambda: len(seen) > n, 3, "publication %d" % i)
        delays.append(seen[n] - t0)
        assert sc.read_doc()["password"] == pw
    w.close()
    assert max(delays) <= 1.0 + 0.5, delays


def test_metadata_only_check_costs_one_request_per_interval_on_one_connection(vault_tls, sc):
    vs = vault_tls
    _put(vs, PW1)
    vs.start(credentials=[vs.cred(poll_interval="500ms")])
    sc.wait_published(password=PW1)
    meta_path = "/v1/secret/metadata/redis/cache"
    t0 = time.monotonic()               # counted from a check after the first fetch ended
    h.wait_until(lambda: vs.fake.count(meta_path, since=t0), 3, "the next metadata check")
    vs.fake.reset_counts()
    t0 = time.monotonic()
    h.wait_until(lambda: vs.fake.count(meta_path) >= 4, 5, "four more metadata checks")
    took = time.monotonic() - t0
    meta = vs.fake.count(meta_path)
    # one check per 500 ms: four take three intervals and more, not a burst
    assert took >= 1.4 and meta <= 5, (took, meta)
    assert vs.fake.count("/v1/secret/data/") == 0
    assert vs.fake.count(".") == meta
    st = vs.fake.stats()
    assert st["connections"] == 0 and st["handshakes"] == 0, st   # the one connection stays up


def test_start_up_hint_becomes_previous_only_if_it_validates(vault, sc):
    _put(vault, PW1)
    _put(vault, PW2)
    vault.fake.kv2_put("secret", "redis/other", {"username": "app", "password": PW3})
    vault.fake.kv2_put("secret", "redis/other", {"username": "app", "password": PW1})
    vault.start(credentials=[vault.cred(), vault.cred("other", path="secret/redis/other")])
    d = sc.wait_published(password=PW2)
    assert d["version"] == "2"
    assert d["previous"] == {"username": "app", "password": PW1, "version": "1", "expires_at": None}
    o = sc.wait_published("other", password=PW1)
    assert o["previous"] is None            # PW3 does not work on Redis: not offered


def test_previous_is_the_last_published_credential_not_the_stores_prior_version(vault, sc):
    _put(vault, PW1)
    a = vault.start()
    sc.wait_published(password=PW1)
    assert a.stop() == 0
    _put(vault, PW3)                         # v2: never published (and not valid anyway)
    _put(vault, PW2)                         # v3
    vault.start()
    d = sc.wait_published(password=PW2)
    assert d["version"] == "3"
    assert d["previous"]["password"] == PW1 and d["previous"]["version"] == "1"


def test_policy_without_metadata_falls_back_to_data_reads(vault, sc):
    _put(vault, PW1)
    vault.fake.policy("data-only", {"secret/data/redis/*": ["read"]})
    tok = vault.fake.token_create(["data-only"])
    src = vault.source(auth={"method": "token", "token_file": vault.token_file(tok, "data-only")})
    a = vault.start(sources=[src], credentials=[vault.cred(poll_interval="500ms")])
    sc.wait_published(password=PW1)
    _put(vault, PW2)
    sc.wait_published(password=PW2, timeout=3)
    log = a.log()
    assert log.count("at every check") == 1, log
    assert "grant read on metadata/" in log


def test_kv1_and_a_multi_segment_kv2_mount(vault, sc):
    vault.fake.kv1_enable("kv")
    vault.fake.kv1_put("kv", "redis/cache", {"user": "app", "pass": PW1})
    vault.fake.kv2_enable("team/kv")
    _put(vault, PW2, path="redis/sessions", mount="team/kv")
    creds = [vault.cred("v1", path="kv/redis/cache", engine="kv1", username_field="user", password_field="pass",
                        poll_interval="500ms"),
             vault.cred("v2", path="team/kv/redis/sessions", mount="team/kv")]
    vault.start(credentials=creds)
    d1 = sc.wait_published("v1", password=PW1)
    assert h.VERSION_RE.match(d1["version"]), d1["version"]
    d2 = sc.wait_published("v2", password=PW2)
    assert d2["version"] == "1"
    vault.fake.kv1_put("kv", "redis/cache", {"user": "app", "pass": PW2})
    d1b = sc.wait_published("v1", password=PW2, timeout=3)
    assert d1b["version"] != d1["version"] and h.VERSION_RE.match(d1b["version"])


def test_missing_field_is_a_clear_not_found_in_status(vault, sc):
    vault.fake.kv2_put("secret", "redis/cache", {"user": "app", "secret": PW1})
    a = vault.start()
    st = a.notify.wait_status(lambda s: "store-error" in s, timeout=5)
    assert "(not-found)" in st and '"password"' in st, st
    assert PW1 not in st
