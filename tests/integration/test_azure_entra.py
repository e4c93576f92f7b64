"""azure-entra with the real agent and a real redis-server whose ACL user (named by the
token's oid) gets each token the fake issues as a password, like Azure Managed Redis
accepts Entra tokens: the token is published with the oid as username and its exp as
expires_at, refreshed at the configured point, a token IMDS hands back unchanged is no
change and is not asked for again in a loop, and a failing refresh keeps the published
token while the status says how long it has left (docs/design.md §4, issue 6)."""
import calendar
import json
import time

import pytest

from azure_helpers import AzureScenario, az_short  # noqa: F401 - fixture
import rc_harness as h


def rfc3339_to_unix(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def claims_of(az, token):
    with az.fake.lock:
        return dict(az.fake.issued[token])


def test_entra_token_published_refreshed_and_kept_when_refresh_fails(sc, az_short):
    az = az_short                                        # tokens live 8 s
    az.follow_entra_tokens()
    # Refresh at half the lifetime (the 3 min margin is longer than the token: the ratio
    # decides). poll_interval only bounds the wait after a publish.
    a = az.start([az.cred(name="entra", source="entra", poll_interval="500ms")],
                 [az.entra_source(refresh_ratio=0.5)])
    d1 = sc.wait_published("entra", timeout=5)
    c1 = claims_of(az, d1["password"])
    assert d1["username"] == az.fake.system_identity.object_id == c1["oid"]
    assert d1["version"] == str(c1["exp"])
    assert rfc3339_to_unix(d1["expires_at"]) == c1["exp"]
    assert d1["source"] == "entra"
    assert sc.redis.auth_ok(d1["username"], d1["password"])

    # The next token at iat + 4 s (iat is whole seconds: 3 to 5 s later).
    d2 = sc.wait_published("entra", timeout=10, pred=lambda d: d["password"] != d1["password"])
    t2 = time.time()
    c2 = claims_of(az, d2["password"])
    assert 3 <= c2["iat"] - c1["iat"] <= 6, (c1, c2)
    assert 3.0 <= t2 - c1["iat"] <= 7.0
    assert rfc3339_to_unix(d2["expires_at"]) == c2["exp"]
    assert d2["previous"]["password"] == d1["password"]
    assert sc.redis.auth_ok(d2["username"], d2["password"])
    assert az.fake.count("imds") == 2

    # IMDS fails from now on: at the next refresh point the agent reports it, keeps the
    # token, and says how long it lasts.
    mark = a.log_mark()
    before = sc.read_bytes("entra.json")
    az.fake.inject("imds", status=500, body={"error": "unknown", "error_description": "Failed to retrieve token "
                   "from the Active directory"}, count=1000)
    line = a.wait_log("the current token expires in", since=mark, timeout=10)
    assert "500" in line and "(transient)" in line, line
    assert sc.read_bytes("entra.json") == before
    row, out = az.status_json("entra")
    assert row["state"] == "store-error" and "expires in" in row["last_error"], row
    assert 0 < row["expires_in_seconds"] <= 8, row
    assert az.status().returncode == 1
    # IMDS is back: a new token is published.
    az.fake.clear_faults()
    d3 = sc.wait_published("entra", timeout=8, pred=lambda d: d["password"] not in (d1["password"], d2["password"]))
    assert sc.redis.auth_ok(d3["username"], d3["password"])
    az.assert_no_secrets(az.outputs(a), out.stdout, az.status().stdout)


def test_entra_unchanged_token_is_no_change_and_no_loop(sc):
    az = AzureScenario(sc, lifetime=20)
    az.follow_entra_tokens()
    az.fake.imds_reuse_fraction = 0.0        # IMDS serves its cached token until it expires
    w = sc.watch_runtime()
    a = az.start([az.cred(name="entra", source="entra", poll_interval="250ms")],
                 [az.entra_source(refresh_ratio=0.1)])
    d1 = sc.wait_published("entra", timeout=5)
    # At 10% (2 s) the agent asks; IMDS answers with the same token: no change.
    a.wait_log("handed back the token we have", timeout=8)
    asked = az.fake.count("imds")
    assert asked == 2
    mark = a.log_mark()                      # 10 polls: none of them may ask IMDS again
    a.wait_log_count("version %s unchanged" % d1["version"], 10, since=mark, timeout=8)
    a.barrier()
    w.sync()
    assert az.fake.count("imds") == asked, "asked IMDS again within the 30 s gap"
    assert sc.read_doc("entra") == d1
    assert w.count("entra.json", 0x80) == 1, "republished an unchanged token"
    az.assert_no_secrets(az.outputs(a))


def test_entra_schedules_its_own_refresh_without_polling(sc):
    az = AzureScenario(sc, lifetime=6)
    az.follow_entra_tokens()
    a = az.start([az.cred(name="entra", source="entra", poll_interval="10m")],
                 [az.entra_source(refresh_ratio=0.5)])
    d1 = sc.wait_published("entra", timeout=5)
    sc.wait_published("entra", timeout=5, pred=lambda d: d["password"] != d1["password"])
    az.assert_no_secrets(az.outputs(a))


EXPIRING_MID = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b08"


def test_a_token_nothing_replaces_is_warned_about_before_and_reported_when_it_expires(sc, az_short):
    """docs/design.md §12.1 'credential expiring': a warning in the last fifth of the token's life
    (8 s tokens: 1.6 s before), an error once it has expired; once each, with the fixed
    MESSAGE_ID, the credential's name and version."""
    az = az_short
    az.follow_entra_tokens()
    a = az.start([az.cred(name="entra", source="entra", poll_interval="500ms")],
                 [az.entra_source(refresh_ratio=0.5)], journal=True)
    d1 = sc.wait_published("entra", timeout=5)
    exp = rfc3339_to_unix(d1["expires_at"])
    az.fake.inject("imds", status=500, body={"error": "unknown", "error_description": "down"},
                   count=1000)

    def entries(priority):
        return [m for m in a.journal.snapshot()
                if m.fields.get("MESSAGE_ID") == EXPIRING_MID
                and m.fields.get("PRIORITY") == priority]
    h.wait_until(lambda: entries("4"), 12, "the expiring warning")
    warn = entries("4")[0]
    t_warn = time.time()
    assert warn.fields["REDIS_CREDS_NAME"] == "entra"
    assert warn.fields["REDIS_CREDS_VERSION"] == d1["version"]
    assert "expires in" in warn.fields["MESSAGE"] and "500" in warn.fields["MESSAGE"], warn.fields
    # due 1.6 s before the expiry (exp is whole seconds)
    assert exp - 3.0 <= t_warn <= exp - 0.2, (exp, t_warn)
    h.wait_until(lambda: entries("3"), 6, "the expired error")
    t_err = time.time()
    err = entries("3")[0]
    assert "has expired" in err.fields["MESSAGE"], err.fields
    assert exp <= t_err <= exp + 3.0, (exp, t_err)
    asked = az.fake.count("imds")            # the next attempt has come and gone
    h.wait_until(lambda: az.fake.count("imds") > asked, 6, "another attempt at IMDS")
    a.barrier()
    a.journal.settle()
    assert len(entries("4")) == 1 and len(entries("3")) == 1, "said once each"
    assert json.loads(sc.read_bytes("entra.json"))["version"] == d1["version"]
    az.assert_no_secrets(az.outputs(a), *[m.raw for m in a.journal.snapshot()])
