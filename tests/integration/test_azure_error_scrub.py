"""Azure answers that echo a secret into an error text, through the real agent: the token
endpoint refusing a client secret with an error_description that quotes it, and Key
Vault failing with an error message that quotes the secret value it served before. The
refusal is logged and shown in the status, and never the secret (whole, or any 10
characters of it in a row: an echo cut short)."""
import os

import rc_harness as h
from azure_helpers import az  # noqa: F401 - fixture
from test_vault_error_scrub import assert_absent
from vault_helpers import write_secret_file

PW = "kv-value-7d2f9e41c0ab"


def outputs(az_, a):
    st = az_.status("--json")
    return az_.outputs(a) + "\n" + st.stdout + st.stderr


def client_secret_identity(az_, secret):
    app = az_.fake.add_app("sp", secret=secret)
    sfile = write_secret_file(os.path.join(az_.dir, "client-secret"), secret + "\n")
    return az_.identity("client_secret", client_id=app.client_id, client_secret_file=sfile)


def published(sc, az_, secret):
    """An agent that published PW from Key Vault, as a service principal with `secret`."""
    identity = client_secret_identity(az_, secret)
    sc.redis.create_user("app", PW)
    az_.fake.kv_set("cache-pw", PW)
    a = az_.start([az_.cred(path="cache-pw", username="app", poll_interval="300ms")],
                  [az_.kv_source(identity=identity)])
    sc.wait_published(password=PW)
    return a


def test_token_refusal_that_echoes_the_client_secret_is_logged_without_it(sc, az):
    secret = "cs-4b1e8f0a9d3c7e25"
    identity = client_secret_identity(az, secret)
    sc.redis.create_user("app", PW)
    az.fake.kv_set("cache-pw", PW)
    az.fake.inject("aad", status=401, count=1000, body={
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided: %s. Trace ID: x" % secret})
    a = az.start([az.cred(path="cache-pw", username="app", poll_interval="300ms")],
                 [az.kv_source(identity=identity)], ready=False)
    a.wait_log(lambda l: "Invalid client secret" in l, timeout=10)
    out = outputs(az, a)
    assert_absent(out, {"client secret": secret})
    assert "Invalid client secret provided: ***" in out, "the echo arrived and was scrubbed"
    assert a.stop() == 0


def test_keyvault_error_that_echoes_the_value_is_logged_without_it(sc, az):
    secret = "cs-9c2d7a1f6e0b4d38"
    a = published(sc, az, secret)
    az.fake.inject("keyvault", status=500, count=1000, body={
        "error": {"code": "InternalServerError", "message": "could not serve value %s now" % PW}})
    a.wait_log(lambda l: "could not serve value" in l, timeout=10)
    h.wait_until(lambda: "could not serve value" in az.status("--json").stdout, 5, "the error in the status")
    out = outputs(az, a)
    assert "could not serve value *** now" in out, "the echo arrived and was scrubbed"
    assert_absent(out, {"Key Vault value": PW, "client secret": secret})
    assert a.stop() == 0


def test_keyvault_error_that_echoes_the_bearer_token_is_logged_without_it(sc, az):
    """The access token the agent presented (a JWT), quoted back in a Key Vault error."""
    secret = "cs-1e5b8c3d0f7a9264"
    a = published(sc, az, secret)
    with az.fake.lock:
        tokens = [s for s in az.fake.leaked if s.startswith("eyJ")]
    assert tokens
    az.fake.inject("keyvault", status=500, count=1000, body={
        "error": {"code": "InternalServerError", "message": "token %s could not be checked" % tokens[-1]}})
    a.wait_log(lambda l: "InternalServerError: token" in l, timeout=10)
    out = outputs(az, a)
    assert_absent(out, {"access token %d" % i: t for i, t in enumerate(tokens)})
    az.assert_no_secrets(out)
    assert a.stop() == 0


def test_management_error_that_echoes_the_access_keys_is_logged_without_them(sc, az):
    """azure-redis-keys: a listKeys failure whose message quotes the keys served before."""
    rid = az.fake.add_cache("cache2")
    keys = az.fake.keys(rid)
    az.redis_accepts_keys(keys["primaryKey"], keys["secondaryKey"])
    a = az.start([az.cred(name="keys", source="keys", path=rid, poll_interval="300ms")],
                 [az.keys_source()])
    sc.wait_published("keys", password=keys["primaryKey"], timeout=10)
    az.fake.inject("arm", status=500, count=1000, body={"error": {
        "code": "InternalServerError",
        "message": "keys %s %s are locked" % (keys["primaryKey"], keys["secondaryKey"])}})
    a.wait_log(lambda l: "InternalServerError: keys" in l, timeout=10)
    out = outputs(az, a)
    assert "keys *** *** are locked" in out, "the echo arrived and was scrubbed"
    assert_absent(out, {"primary key": keys["primaryKey"], "secondary key": keys["secondaryKey"]})
    assert a.stop() == 0


def test_slow_endless_version_list_does_not_hold_back_the_first_publish(sc, az):
    """The start-up hint's version list answered slowly (1.5 s a page, timeout 2 s), each
    page pointing at another: the first publish must not wait for 40 such pages."""
    import time
    secret = "cs-6a0f2e9b7c1d5384"
    identity = client_secret_identity(az, secret)
    sc.redis.create_user("app", PW)
    az.fake.kv_set("cache-pw", PW)
    az.fake.inject("keyvault", status=200, count=1000, delay=1.5, match="/versions", body={
        "value": [], "nextLink": az.fake.url + "/secrets/cache-pw/versions?api-version=7.4&$skiptoken=x"})
    t0 = time.monotonic()
    a = az.start([az.cred(path="cache-pw", username="app", poll_interval="300ms")],
                 [az.kv_source(identity=identity)], ready=False)
    sc.wait_published(password=PW, timeout=30)
    took = time.monotonic() - t0
    assert took < 8, "the first publish took %.1f s" % took
    a.wait_log(lambda l: "no start-up hint for previous" in l and "still listing" in l, timeout=5)
    assert a.stop() == 0
