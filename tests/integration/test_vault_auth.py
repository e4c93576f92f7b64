"""The vault source's auth methods end to end: the real agent, a real redis-server, the fake
Vault (tests/fakes/vault_fake.py). See docs/vault.md."""
import json
import os
import time

import rc_harness as h
from vault_helpers import PW1, PW2, vault, vault_tls, write_secret_file  # noqa: F401


def _put(vs, password, path="redis/cache", username="app"):
    return vs.fake.kv2_put("secret", path, {"username": username, "password": password})


def test_token_auth_from_token_file_publishes_kv2(vault, sc):
    _put(vault, PW1)
    vault.start()
    d = sc.wait_published(password=PW1)
    assert d["version"] == "1" and d["username"] == "app"
    assert d["source"] == "vault:secret/redis/cache"
    assert d["previous"] is None


def test_token_from_credentials_directory(vault, sc):
    _put(vault, PW1)
    creds = os.path.join(sc.tree.root, "creds")
    os.mkdir(creds, 0o700)
    write_secret_file(os.path.join(creds, "vault.token"), vault.fake.root_token)
    vault.write_config(sources=[vault.source(auth={"method": "token"})])
    a = sc.start_agent(env={"CREDENTIALS_DIRECTORY": creds})
    a.wait_ready()
    sc.wait_published(password=PW1)


def test_approle_over_https_with_test_ca(vault_tls, sc):
    vs = vault_tls
    vs.read_policy()
    auth = vs.approle(token_ttl=60)
    _put(vs, PW1)
    a = vs.start(sources=[vs.source(auth=auth)])
    sc.wait_published(password=PW1)
    assert vs.fake.count("/v1/auth/approle/login") == 1
    assert vs.fake.stats()["handshakes"] == 1
    assert "logged in to Vault (approle)" in a.log()


def test_kubernetes_login_with_projected_service_account_token(vault, sc):
    vault.read_policy()
    auth = vault.kubernetes(token_ttl=60)
    _put(vault, PW1)
    a = vault.start(sources=[vault.source(auth=auth)])
    sc.wait_published(password=PW1)
    assert vault.fake.count("/v1/auth/kubernetes/login") == 1
    assert "logged in to Vault (kubernetes)" in a.log()


def test_refused_identity_is_an_auth_error_in_status(vault, sc):
    vault.read_policy()
    auth = vault.approle()
    write_secret_file(auth["secret_id_file"], "00000000-0000-0000-0000-000000000000")
    _put(vault, PW1)
    a = vault.start(sources=[vault.source(auth=auth)])
    st = a.notify.wait_status(lambda s: "store-error" in s, timeout=5)
    assert "(auth)" in st and "invalid role or secret ID" in st, st
    assert sc.read_bytes() is None


def test_token_expiry_and_max_ttl_relogin_keeps_the_published_credential(vault, sc):
    """A 2 s token capped at 4 s: the agent renews, logs in again at the cap, and again
    when Vault forgets a token, and never loses or rewrites the published file."""
    vault.read_policy()
    auth = vault.approle(token_ttl=2, token_max_ttl=4)
    _put(vault, PW1)
    a = vault.start(sources=[vault.source(auth=auth)],
                    credentials=[vault.cred(poll_interval="30s")])
    sc.wait_published(password=PW1)
    before = sc.read_bytes()
    w = sc.watch_runtime()
    h.wait_until(lambda: vault.fake.count("/v1/auth/approle/login") >= 3, 10, "two fresh logins")
    assert vault.fake.count("/v1/auth/token/renew-self") >= 1
    # Vault revokes the token under us: the next look logs in again (once) and goes on.
    logins = vault.fake.count("/v1/auth/approle/login")
    vault.fake.expire_tokens("auth/approle")
    mark = a.log_mark()
    r = sc.run_cli("-c", sc.tree.conf, "refresh", "cache")
    assert r.returncode == 0, r.stderr
    h.wait_until(lambda: vault.fake.count("/v1/auth/approle/login") > logins, 5, "a login after the revocation")
    # the refresh's fetch ends finding the published version: nothing to write
    a.wait_log(lambda l: "version %s unchanged" % json.loads(before)["version"] in l,
               since=mark, timeout=5, what="the refresh finding the published version")
    a.barrier()
    w.sync()
    assert sc.read_bytes() == before
    assert w.count("cache.json", h.IN_MOVED_TO) == 0
    assert a.notify.last_status().startswith("1/1 current"), a.notify.last_status()
    # Renewal and re-login happened ahead of expiry: the only token Vault may have refused
    # is the revoked one (none, when the scheduled re-login at the max TTL replaced it
    # before the refresh's fetch used it).
    assert "max TTL" in a.log()
    assert a.log().count("Vault refused the token") <= 1, a.log()
