"""azure-keyvault against the fake Key Vault and IMDS: new versions are published (with
the store's prior version as the start-up `previous`), a disabled version is ignored,
the JSON form, HTTPS with a test CA, and every error the service answers with keeps the
published file intact (docs/design.md §2, §4, §5, §8)."""
import time

import rc_harness as h
from azure_helpers import PW0, PW1, PW2, PW3, az, az_tls  # noqa: F401 - fixtures


def wait_log_or_fail(agent, text, since, timeout=6):
    return agent.wait_log(text, since=since, timeout=timeout)


def test_keyvault_publishes_new_versions_and_ignores_a_disabled_one(sc, az):
    sc.redis.create_user("app", PW0, PW1, PW2)   # not PW3
    az.fake.kv_set("cache-pw", PW0, created=int(time.time()) - 100)
    v1 = az.fake.kv_set("cache-pw", PW1)
    a = az.start([az.cred(path="cache-pw", username="app")], [az.kv_source()])
    doc = sc.wait_published(password=PW1, timeout=5)
    assert doc["username"] == "app" and doc["version"] == v1
    assert doc["source"] == "kv:cache-pw" and doc["validated"] == "all"
    # No file before: the store's prior version is the start-up `previous` (it validated).
    assert doc["previous"] and doc["previous"]["password"] == PW0, doc["previous"]
    assert az.fake.count("keyvault", "/versions") >= 1

    # A new version: published within a poll, the old one as previous.
    v2 = az.fake.kv_set("cache-pw", PW2)
    doc = sc.wait_published(password=PW2, timeout=5)
    assert doc["version"] == v2 and doc["previous"]["password"] == PW1

    # A new version that is disabled: not a candidate; PW2 stays.
    mark = a.log_mark()
    before = sc.read_bytes()
    v3 = az.fake.kv_set("cache-pw", PW3, enabled=False)
    a.wait_log("SecretDisabled", since=mark, timeout=5)
    assert sc.read_bytes() == before
    row, _ = az.status_json("cache")
    assert row["state"] == "store-error" and "disabled" in row["last_error"], row
    # Enabled again, but Redis refuses it: still PW2 (validation, docs/design.md §7).
    az.fake.kv_disable("cache-pw", v3, enabled=True)
    a.wait_log("refused by Redis", since=mark, timeout=5)
    assert sc.read_bytes() == before
    # The versions list is read only at start.
    assert az.fake.count("keyvault", "/versions") == 1
    az.assert_no_secrets(az.outputs(a), az.status().stdout)


def test_keyvault_json_value_over_https_with_a_test_ca(sc, az_tls):
    az = az_tls
    sc.redis.create_user("svc", PW1)
    az.fake.kv_set("redis-json", '{"username": "svc", "password": "%s"}' % PW1, content_type="application/json")
    a = az.start([az.cred(path="redis-json")], [az.kv_source(https=True)])
    doc = sc.wait_published(password=PW1, timeout=5)
    assert doc["username"] == "svc"
    assert az.fake.count("keyvault") >= 1
    # value_format = "password" takes the JSON text as it is (and Redis refuses it).
    az.assert_no_secrets(az.outputs(a))


def test_keyvault_errors_keep_the_published_file(sc, az):
    sc.redis.create_user("app", PW1, PW2)
    az.fake.kv_set("cache-pw", PW1)
    # A short poll_interval: NOT_FOUND, AUTH and INVALID retry at poll_interval.
    a = az.start([az.cred(path="cache-pw", username="app", poll_interval="250ms")], [az.kv_source()])
    sc.wait_published(password=PW1, timeout=5)
    before = sc.read_bytes()

    cases = [
        # (fault, what the log says)
        (dict(status=403, body={"error": {"code": "Forbidden", "message": "Caller is not authorized to perform "
              "action on resource.", "innererror": {"code": "ForbiddenByRbac"}}}, count=1), "ForbiddenByRbac"),
        (dict(status=404, body={"error": {"code": "SecretNotFound", "message": "A secret with (name/id) cache-pw "
              "was not found in this key vault."}}, count=1), "404 SecretNotFound"),
        (dict(status=429, body={"error": {"code": "Throttled", "message": "Request was not processed because too "
              "many requests were received."}}, headers={"Retry-After": "1"}, count=1), "429 Throttled"),
        (dict(status=500, body={"error": {"code": "InternalServerError", "message": "oops"}}, count=1), "500"),
        (dict(status=200, body=b'{"value": "x", "id": 12', count=1), "not a JSON object"),
        # curl retries once on a fresh connection when a kept-alive one was closed: drop two.
        (dict(drop=True, count=2), "store kv (transient)"),
        (dict(status=400, body={"error": {"code": "BadParameter", "message": "bad"}}, count=1), "(fatal)"),
    ]
    for fault, text in cases:
        mark = a.log_mark()
        az.fake.inject("keyvault", **fault)
        if text == "(fatal)":
            # FATAL waits for `refresh` (or SIGHUP).
            a.wait_log(text, since=mark, timeout=5)
            r = sc.run_cli("-c", sc.tree.conf, "refresh", "cache")
            assert r.returncode == 0, r.stderr
        else:
            a.wait_log(text, since=mark, timeout=6)
        assert sc.read_bytes() == before, "the published file changed after %r" % (fault,)
        a.wait_log("recovered", since=mark, timeout=8)

    # A 401 (revoked token) makes the plugin log in again once: no error at all.
    mark = a.log_mark()
    imds = az.fake.count("imds")
    az.fake.inject("keyvault", status=401, body={"error": {"code": "Unauthorized", "message": "AKV10000: "
                   "Request is missing a Bearer or PoP token."}},
                   headers={"WWW-Authenticate": 'Bearer authorization="https://login.windows.net/t", '
                                                'resource="https://vault.azure.net"'}, count=1)
    h.wait_until(lambda: az.fake.count("imds") != imds, 5, "a new token after the 401")
    assert az.fake.count("imds") == imds + 1
    # Twice: AUTH, with what the challenge asks for.
    az.fake.inject("keyvault", status=401, body={"error": {"code": "Unauthorized", "message": "AKV10022: Invalid "
                   "audience."}}, headers={"WWW-Authenticate": 'Bearer authorization="https://login.windows.net/t", '
                                                                'resource="https://vault.azure.net"'}, count=2)
    line = a.wait_log("(auth)", since=mark, timeout=6)
    assert "wants a token for https://vault.azure.net" in line, line
    assert sc.read_bytes() == before
    # And the new version still arrives afterwards.
    az.fake.kv_set("cache-pw", PW2)
    sc.wait_published(password=PW2, timeout=8)
    az.assert_no_secrets(az.outputs(a), az.status().stdout)
