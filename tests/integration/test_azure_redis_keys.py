"""azure-redis-keys: both access keys from the fake management API's listKeys, validated
against a real redis-server whose default user accepts the keys the way an Azure cache
does. A regenerated primary (driven like an operator would: POST regenerateKey, 202 +
Azure-AsyncOperation, poll until Succeeded) makes the agent publish the secondary within
one poll, and the primary again once Redis accepts the new one; `prefer`; errors keep
the published file (docs/design.md §4, §5 previous, §8)."""
import json
import time
import urllib.request

import rc_harness as h
from azure_helpers import az  # noqa: F401 - fixture


def arm(az, method, url, body=None):
    token, _ = az.fake.issue(az.fake.system_identity, "https://management.azure.com/")
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), method=method,
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, dict(r.headers), r.read()


def regenerate(az, rid, key_type):
    """regenerateKey the way the Azure SDKs' pollers do it (final state via
    azure-async-operation), then listKeys."""
    status, headers, _ = arm(az, "POST", "%s%s/regenerateKey?api-version=2025-04-01" % (az.fake.url, rid),
                             {"keyType": key_type})
    assert status == 202, status
    op = headers["Azure-AsyncOperation"]
    assert op.startswith(az.fake.url + "/subscriptions/") and "/operationsStatus/" in op

    def succeeded():
        _, _, body = arm(az, "GET", op)
        st = json.loads(body)["status"]
        assert st in ("InProgress", "Succeeded"), st
        return st == "Succeeded"
    h.wait_until(succeeded, 5, "the key regeneration to succeed", interval=0.1)
    _, _, body = arm(az, "POST", "%s%s/listKeys?api-version=2025-04-01" % (az.fake.url, rid))
    return json.loads(body)


def test_regenerated_primary_fails_over_to_secondary_and_back(sc, az):
    rid = az.fake.add_cache("cache1")
    k1 = az.fake.keys(rid)
    p1, s1 = k1["primaryKey"], k1["secondaryKey"]
    az.redis_accepts_keys(p1, s1)
    a = az.start([az.cred(name="keys", source="keys", path=rid, poll_interval="500ms")], [az.keys_source()])
    d = sc.wait_published("keys", password=p1, timeout=5)
    assert d["username"] is None and d["version"].startswith("primary-h-")
    assert d["previous"]["password"] == s1 and d["previous"]["version"].startswith("secondary-h-")
    assert d["source"] == "keys:" + rid

    # The primary is regenerated; the cache does not take the new one yet (or a client
    # would still hold the old one): the old primary is gone.
    k2 = regenerate(az, rid, "Primary")
    p2 = k2["primaryKey"]
    assert p2 != p1 and k2["secondaryKey"] == s1
    t = time.time()
    az.redis_accepts_keys(s1)
    d = sc.wait_published("keys", password=s1, timeout=3)
    assert time.time() - t < 2.5, "not within one poll"
    assert d["version"].startswith("secondary-h-")

    # The new primary works now: preferred again, the secondary as previous.
    az.redis_accepts_keys(p2, s1)
    d = sc.wait_published("keys", password=p2, timeout=3)
    assert d["previous"]["password"] == s1
    az.assert_no_secrets(az.outputs(a), az.status().stdout)


def test_regenerated_secondary_becomes_previous_while_primary_stays(sc, az):
    rid = az.fake.add_cache("cache2")
    k1 = az.fake.keys(rid)
    p1, s1 = k1["primaryKey"], k1["secondaryKey"]
    az.redis_accepts_keys(p1, s1)
    a = az.start([az.cred(name="keys", source="keys", path=rid, poll_interval="500ms")], [az.keys_source()])
    d = sc.wait_published("keys", password=p1, timeout=5)
    assert d["previous"]["password"] == s1

    # The key not in use is regenerated (Microsoft's guidance): the primary stays current,
    # and `previous` must follow the new secondary once Redis accepts it, not keep a dead key.
    k2 = regenerate(az, rid, "Secondary")
    s2 = k2["secondaryKey"]
    assert s2 != s1 and k2["primaryKey"] == p1
    az.redis_accepts_keys(p1, s2)
    d = sc.wait_published("keys", timeout=3, pred=lambda d: (d.get("previous") or {}).get("password") == s2)
    assert d["password"] == p1 and d["version"].startswith("primary-h-")
    az.assert_no_secrets(az.outputs(a), az.status().stdout)


def test_prefer_secondary_on_a_classic_cache(sc, az):
    rid = az.fake.add_cache("classic", enterprise=False)
    k = az.fake.keys(rid)
    az.redis_accepts_keys(k["primaryKey"], k["secondaryKey"])
    a = az.start([az.cred(name="keys", source="keys", path=rid, prefer="secondary")], [az.keys_source()])
    d = sc.wait_published("keys", password=k["secondaryKey"], timeout=5)
    assert d["previous"]["password"] == k["primaryKey"]
    r = [x for x in az.fake.requests if x.kind == "arm"][0]
    assert r.method == "POST" and r.path == rid + "/listKeys" and r.query["api-version"] == "2024-11-01"
    az.assert_no_secrets(az.outputs(a))


def test_management_errors_keep_the_published_file(sc, az):
    rid = az.fake.add_cache("cache2")
    k = az.fake.keys(rid)
    az.redis_accepts_keys(k["primaryKey"], k["secondaryKey"])
    a = az.start([az.cred(name="keys", source="keys", path=rid, poll_interval="250ms")], [az.keys_source()])
    sc.wait_published("keys", password=k["primaryKey"], timeout=5)
    before = sc.read_bytes("keys.json")
    az.fake.mgmt_allowed = {"someone-else"}
    mark = a.log_mark()
    line = a.wait_log("403 AuthorizationFailed", since=mark, timeout=5)
    assert "(auth)" in line and "does not have authorization" in line, line
    az.fake.mgmt_allowed = None
    for fault, text in ((dict(status=404, body={"error": {"code": "ResourceNotFound", "message": "gone"}}),
                         "404 ResourceNotFound"),
                        (dict(status=429, body={"error": {"code": "TooManyRequests", "message": "slow down"}},
                              headers={"Retry-After": "1"}), "429"),
                        (dict(status=503, body=b"<html>Service Unavailable</html>"), "503"),
                        (dict(status=200, body={"primaryKey": "only-one-key-e9a1"}), "lacks primaryKey")):
        mark = a.log_mark()
        az.fake.inject("arm", **fault)
        a.wait_log(text, since=mark, timeout=6)
        assert sc.read_bytes("keys.json") == before
        a.wait_log("recovered", since=mark, timeout=6)
    az.fake.leaked.add("only-one-key-e9a1")
    az.assert_no_secrets(az.outputs(a))
