"""Vault answers that echo a secret into an error text, through the real agent: the
token's renewal refused, a re-login refused, and a rotation's check-and-set writes
refused, each with an error that quotes what the agent sent (the token, the secret id,
the new password and the rotation record). The agent logs each refusal, and never the
secret: the echo is scrubbed wherever the text goes (log lines at any level, the status).
"""
import json
import os

import rc_harness as h
from test_rotation import rot_cred
from vault_helpers import PW1, vault  # noqa: F401 - fixture
from vault_fake import VaultError


def outputs(vs, a):
    """Everything the agent and the CLI said."""
    st = vs.sc.run_cli("-c", vs.sc.tree.conf, "status", "--json")
    return vs.outputs(a) + "\n" + st.stdout + st.stderr


def assert_absent(text, secret_values):
    """Not the secret, nor any 10 characters of it in a row (an echo cut short)."""
    assert secret_values
    for what, value in secret_values.items():
        assert len(value) >= 10, what
        for i in range(len(value) - 9):
            assert value[i:i + 10] not in text, "%s (%s...) appears in the output" % (what, value[:4])


def approle_agent(vs, token_ttl):
    vs.read_policy()
    auth = vs.approle(token_ttl=token_ttl)
    vs.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": PW1})
    a = vs.start([vs.cred(poll_interval="300ms")], [vs.source(auth=auth)])
    vs.sc.wait_published(password=PW1)
    return a


def test_refused_renewal_that_echoes_the_token_is_logged_without_it(vault, sc):
    a = approle_agent(vault, token_ttl=3)
    vault.fake.inject(r"^/v1/auth/token/renew-self$", "status", status=400,
                      errors=["renewal refused for {token}"])
    a.wait_log(lambda l: "token renewal refused" in l, timeout=10)
    out = outputs(vault, a)
    assert "renewal refused for ***" in out, "the echo arrived and was scrubbed"
    with vault.fake._lock:
        tokens = list(vault.fake.tokens)
    assert len(tokens) >= 2
    assert_absent(out, {"vault token %d" % i: t for i, t in enumerate(tokens)})
    assert a.stop() == 0


def test_refused_relogin_that_echoes_the_secret_id_is_logged_without_it(vault, sc):
    a = approle_agent(vault, token_ttl=6)
    vault.fake.inject(r"^/v1/auth/token/renew-self$", "status", status=400, errors=["no renewal"])
    vault.fake.inject(r"^/v1/auth/approle/login$", "status", status=400,
                      errors=["invalid secret id %s" % vault.secret_id])
    a.wait_log(lambda l: "cannot log in again" in l, timeout=10)
    out = outputs(vault, a)
    assert "invalid secret id ***" in out, "the echo arrived and was scrubbed"
    assert_absent(out, {"secret id": vault.secret_id, "role id": vault.role_id})
    assert a.stop() == 0


def test_refused_rotation_writes_that_echo_the_body_are_logged_without_it(vault, sc):
    """The rotation's writes (the record <path>.rotation with the pending password, then
    the entry) answered 500 with an error quoting the data sent."""
    fv = vault.fake
    sent = {}
    orig = fv._kv2_write

    def echoing(m, key, data, cas):
        pws = []
        for k, v in (data or {}).items():
            if k.endswith("password") and isinstance(v, str):
                sent["%s %s" % (key, k)] = v
                pws.append(v)
        raise VaultError(500, ["storage write failed for %s in %s" % (" ".join(pws), json.dumps(data))])

    sc.redis.create_user("app", PW1)
    fv.kv2_put("secret", "redis/cache", {"username": "app", "password": PW1})
    cred = rot_cred(sc)
    vcred = vault.cred(poll_interval="300ms", engine="kv2", rotation=cred["rotation"])
    a = vault.start([vcred])
    sc.wait_published(password=PW1)
    fv._kv2_write = echoing
    try:
        r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
        assert r.returncode in (0, 1), r.stderr
        h.wait_until(lambda: sent, 10, "a rotation write")
        a.wait_log(lambda l: "storage write failed" in l, timeout=10)
        out = outputs(vault, a) + r.stdout + r.stderr
    finally:
        fv._kv2_write = orig
    assert "storage write failed" in out
    assert_absent(out, sent)
    assert sc.read_doc()["password"] == PW1
    assert a.stop() == 0


def test_record_read_error_cut_short_on_an_echoed_token_shows_none_of_it(vault, sc):
    """The rotation record's read answered 404 with an error that quotes the token right
    where the text is cut short (200 characters): not even its first characters show."""
    fv = vault.fake
    sc.redis.create_user("app", PW1)
    fv.kv2_put("secret", "redis/cache", {"username": "app", "password": PW1})
    cred = rot_cred(sc)
    a = vault.start([vault.cred(poll_interval="300ms", engine="kv2", rotation=cred["rotation"])])
    sc.wait_published(password=PW1)
    fv.inject(r"^/v1/secret/data/redis/cache\.rotation$", "status", method="GET", status=404,
              errors=["x" * 165 + " no route for {token}"])
    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode in (0, 1), r.stderr
    a.wait_log(lambda l: "xxxxxxxxxx" in l, timeout=10)
    out = outputs(vault, a) + r.stdout + r.stderr
    with fv._lock:
        tokens = list(fv.tokens)
    assert_absent(out, {"vault token %d" % i: t for i, t in enumerate(tokens)})
    assert sc.read_doc()["password"] == PW1
    assert a.stop() == 0
