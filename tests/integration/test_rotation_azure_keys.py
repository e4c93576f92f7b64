"""Agent-driven rotation, strategy azure-keys (docs/design.md §9), against the fake management API
and a real redis-server whose default user accepts exactly the cache's two keys (as an
Azure cache does: a regenerated key stops working at once). The rotator host regenerates
the key that is not published, switches the published file to it (the old key as
`previous`), waits `grace`, regenerates the old key; then the source's preferred key is
current again. Managed Redis answers regenerateKey with 202 + Azure-AsyncOperation (polled);
a classic cache with 200."""
import json
import os
import signal
import socket
import threading

import pytest

import rc_harness as h
from azure_helpers import az  # noqa: F401 - fixture
from test_rotation import Client

HOST = socket.gethostname()


def setup_cache(az, enterprise=True, follow=None):
    """A cache whose keys Redis follows; returns (rid, regenerations), the latter a list
    of "primary"/"secondary" in the order the fake regenerated them. follow: a
    threading.Event; while it is clear, Redis keeps the keys it had (a cache that has not
    taken a new key yet)."""
    rid = az.fake.add_cache("rot", enterprise=enterprise)
    k = az.fake.keys(rid)
    az.redis_accepts_keys(k["primaryKey"], k["secondaryKey"])
    seen = {"primary": k["primaryKey"], "secondary": k["secondaryKey"]}
    regenerations = []

    def on_keys(r, keys):
        # Like the cache: the new key works and the regenerated one is gone, at once.
        if follow is None or follow.is_set():
            az.redis_accepts_keys(keys["primaryKey"], keys["secondaryKey"])
        for which in ("primary", "secondary"):
            if keys[which + "Key"] != seen[which]:
                regenerations.append(which)
                seen[which] = keys[which + "Key"]
    az.fake.on_keys.append(on_keys)
    return rid, regenerations


def start_rotating(az, sc, rid, rotator=HOST, grace="2s", **rotation):
    ro = {"strategy": "azure-keys", "interval": "30d", "grace": grace, "rotator": rotator}
    ro.update(rotation)
    a = az.start([az.cred(source="keys", path=rid, poll_interval="500ms", rotation=ro)], [az.keys_source()])
    first = sc.wait_published(password=az.fake.keys(rid)["primaryKey"], timeout=5)
    return a, first


def regenerate_calls(az):
    return az.fake.count(kind="arm", path_contains="/regenerateKey")


def cred_status(sc):
    r = sc.run_cli("-c", sc.tree.conf, "status", "--json")
    return json.loads(r.stdout)["credentials"][0]


def record(sc):
    with open(os.path.join(sc.tree.state, "rotation-cache.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("enterprise", [True, False], ids=["managed-redis-lro", "classic-sync"])
def test_azure_keys_rotate_regenerates_both_keys_in_order_without_a_failed_client_command(sc, az, enterprise):
    rid, regens = setup_cache(az, enterprise)
    a, first = start_rotating(az, sc, rid)
    p1, s1 = first["password"], first["previous"]["password"]
    client = Client(sc)
    client.start()

    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode == 0, (r.stdout, r.stderr)
    # switched: the regenerated secondary is current, the old primary previous
    doc = sc.wait_published(pred=lambda d: d["version"].startswith("secondary-"), timeout=8)
    s2 = az.fake.keys(rid)["secondaryKey"]
    assert regens == ["secondary"] and s2 != s1
    assert doc["password"] == s2 and doc["previous"]["password"] == p1
    assert doc["previous"]["version"] == first["version"]
    st = cred_status(sc)["rotation"]
    assert st["strategy"] == "azure-keys" and st["step"] == "grace" and st["phase"] == "published"
    assert sc.redis.auth_ok("default", p1)                    # grace: the old key still works
    text = sc.run_cli("-c", sc.tree.conf, "status").stdout
    assert "old password removed" not in text, text          # keys are regenerated, not removed
    assert "(grace)" not in text or "old key regenerated at" in text, text

    a.wait_log(lambda l: "rotation of cache completed" in l, timeout=10)
    p2 = az.fake.keys(rid)["primaryKey"]
    assert regens == ["secondary", "primary"] and p2 != p1
    assert regenerate_calls(az) == 2
    assert not sc.redis.auth_ok("default", p1) and not sc.redis.auth_ok("default", s1)
    # the preferred key is current again; both new keys published
    doc = sc.wait_published(password=p2, timeout=5)
    assert doc["previous"]["password"] == s2
    h.wait_until(lambda: client.ok > 50, 5, "client commands")
    client.stop.set()
    client.join(5)
    assert client.failed == 0 and client.ok > 50, (client.ok, client.failed, client.errors[:3])
    assert record(sc)["phase"] == "idle"
    assert cred_status(sc)["rotation"]["last_rotation"]
    az.assert_no_secrets(az.outputs(a), az.status().stdout)


def test_azure_keys_non_rotator_host_does_not_rotate_but_publishes(sc, az):
    rid, regens = setup_cache(az)
    a, first = start_rotating(az, sc, rid, rotator="not-" + HOST, interval="1s")
    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode != 0 and "is rotated by host not-%s" % HOST in r.stdout + r.stderr, (r.stdout, r.stderr)
    # the rotator host regenerates the secondary: this host publishes it as previous
    az.fake.regenerate(rid, "secondary")
    s2 = az.fake.keys(rid)["secondaryKey"]
    doc = sc.wait_published(pred=lambda d: d["previous"] and d["previous"]["password"] == s2, timeout=5)
    assert doc["password"] == first["password"]
    assert regenerate_calls(az) == 0                # interval 1 s passed: still never here
    assert cred_status(sc)["rotation"]["rotates_here"] is False
    az.assert_no_secrets(az.outputs(a))


def test_azure_keys_failing_regenerate_keeps_the_published_key_and_reports(sc, az):
    rid, regens = setup_cache(az, enterprise=False)
    a, first = start_rotating(az, sc, rid)
    az.fake.inject("arm", status=500, body={"error": {"code": "InternalServerError",
                                                      "message": "Something went wrong."}},
                   match="/regenerateKey", count=1)
    mark = a.log_mark()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    line = a.wait_log(lambda l: "rotation of cache failed" in l, since=mark, timeout=6)
    assert "regenerateKey" in line and "500" in line, line
    assert regens == []
    doc = sc.read_doc()
    assert doc["version"] == first["version"] and sc.redis.auth_ok("default", doc["password"])
    st = cred_status(sc)
    assert st["current"] and st["rotation"]["step"] == "retry-wait" and "500" in st["rotation"]["last_error"]
    # asked again, it rotates (the fault was for one call)
    mark = a.log_mark()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    a.wait_log(lambda l: "rotation of cache completed" in l, since=mark, timeout=10)
    assert regens == ["secondary", "primary"]


def test_azure_keys_crash_during_grace_is_finished_at_restart(sc, az):
    rid, regens = setup_cache(az, enterprise=False)
    a, first = start_rotating(az, sc, rid, grace="3s")
    p1 = first["password"]
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    doc = sc.wait_published(pred=lambda d: d["version"].startswith("secondary-"), timeout=8)
    h.wait_until(lambda: record(sc)["phase"] == "published", 3, "phase published")
    a.send(signal.SIGKILL)
    a.wait_exit()
    a.check_exit = False
    assert regens == ["secondary"]

    client = Client(sc)
    client.start()
    b = sc.start_agent(env={k: "" for k in ("AZURE_CLIENT_ID", "IDENTITY_ENDPOINT", "IMDS_ENDPOINT")})
    b.wait_ready(timeout=15)
    # the restarted agent keeps the switched key published until it regenerates the old one
    assert sc.read_doc()["password"] == doc["password"]
    b.wait_log(lambda l: "rotation of cache completed" in l, timeout=10)
    assert regens == ["secondary", "primary"]
    assert not sc.redis.auth_ok("default", p1)
    p2 = az.fake.keys(rid)["primaryKey"]
    sc.wait_published(password=p2, timeout=5)
    client.stop.set()
    client.join(5)
    assert client.failed == 0 and client.ok > 20, (client.ok, client.failed, client.errors[:3])
    assert record(sc)["phase"] == "idle"


def test_azure_keys_and_redis_acl_each_need_their_source_type(sc, az):
    rid = az.fake.add_cache("cfg")
    sc.write_config([sc.cred(rotation={"strategy": "azure-keys", "rotator": HOST})])   # a file source
    r = sc.run_agent("--check-config")
    assert r.returncode == 2, r.stderr
    assert ('strategy "azure-keys" needs a source type with two keys, of which the store regenerates the '
            'one not published (rotate_self); source "local" is of type "file"') in r.stderr, r.stderr
    # the keys source cannot take a password the agent made
    sc.write_config([az.cred(source="keys", path=rid, rotation={"strategy": "redis-acl"})], [az.keys_source()])
    r = sc.run_agent("--check-config")
    assert r.returncode == 2, r.stderr
    assert ('strategy "redis-acl" needs a source type with a check-and-set write of a password the agent '
            'made (rotate_write); source "keys" is of type "azure-redis-keys"') in r.stderr, r.stderr


def test_azure_keys_new_key_refused_then_crash_is_finished_at_restart(sc, az):
    """The regenerated key is not accepted by Redis yet: the rotation fails after the
    claim (nothing to roll back, the published key still works) and the record stays
    `claimed`; the agent dies; at the next start it reads the new key back and finishes."""
    follow = threading.Event()
    rid, regens = setup_cache(az, enterprise=False, follow=follow)
    a, first = start_rotating(az, sc, rid, grace="1s")
    mark = a.log_mark()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    line = a.wait_log(lambda l: "rotation of cache failed" in l, since=mark, timeout=6)
    assert "does not validate" in line, line
    assert regens == ["secondary"] and record(sc)["phase"] == "claimed"
    assert sc.read_doc()["version"] == first["version"]
    assert sc.redis.auth_ok("default", first["password"])
    a.send(signal.SIGKILL)
    a.wait_exit()
    a.check_exit = False

    follow.set()
    k = az.fake.keys(rid)
    az.redis_accepts_keys(k["primaryKey"], k["secondaryKey"])   # the cache has caught up
    b = sc.start_agent(env={k: "" for k in ("AZURE_CLIENT_ID", "IDENTITY_ENDPOINT", "IMDS_ENDPOINT")})
    b.wait_ready(timeout=15)
    doc = sc.wait_published(pred=lambda d: d["version"].startswith("secondary-"), timeout=8)
    assert doc["password"] == k["secondaryKey"] and doc["previous"]["password"] == first["password"]
    b.wait_log(lambda l: "rotation of cache completed" in l, timeout=10)
    assert regens == ["secondary", "primary"]
    sc.wait_published(password=az.fake.keys(rid)["primaryKey"], timeout=5)
    assert record(sc)["phase"] == "idle"
