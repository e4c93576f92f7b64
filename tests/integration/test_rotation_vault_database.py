"""Agent-driven rotation, strategy vault-database (docs/design.md §9): the rotator host asks the
fake Vault to rotate a database static role (POST rotate-role, which changes the password
in Redis first, RESETPASS-style, like Vault's Redis plugin), waits for static-creds to
report the new last_vault_rotation, validates and publishes it with the old one as
`previous` (already dead: no grace). Other hosts never rotate; they publish what the
rotator did."""
import json
import os
import socket

import rc_harness as h
from vault_helpers import vault  # noqa: F401

HOST = socket.gethostname()


def _resetpass(sc):
    return lambda user, pw: sc.redis.acl_setuser(user, "resetpass", ">" + pw)


def start_db(vault, sc, rotator=HOST, poll_interval="30s", journal=False, **rotation):
    """A static role `app` (rotated by Vault every hour only: the tests rotate), an agent
    with strategy vault-database. Returns the agent and the first published document."""
    fv = vault.fake
    fv.database_enable()
    sc.redis.create_user("app", "unused-initial")
    fv.static_role("database", "app", "app", rotation_period=3600, on_rotate=_resetpass(sc))
    ro = {"strategy": "vault-database", "interval": "30d", "rotator": rotator}
    ro.update(rotation)
    cred = vault.cred(path="database/static-creds/app", engine="database", poll_interval=poll_interval,
                      rotation=ro)
    a = vault.start(credentials=[cred], journal=journal)
    first = sc.wait_published(password=fv.static_role_info("database", "app")["password"])
    return a, first


def rotate_roles(fv):
    return fv.count(r"/v1/database/rotate-role/app$", method="POST")


def cred_status(sc):
    r = sc.run_cli("-c", sc.tree.conf, "status", "--json")
    return json.loads(r.stdout)["credentials"][0]


def test_vault_database_rotate_command_publishes_the_new_static_creds(vault, sc):
    fv = vault.fake
    a, first = start_db(vault, sc, journal=True)
    old_pw = first["password"]
    assert first["version"] == fv.static_role_info("database", "app")["last_vault_rotation"]
    assert rotate_roles(fv) == 0

    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode == 0, (r.stdout, r.stderr)
    doc = sc.wait_published(pred=lambda d: d["version"] != first["version"], timeout=8)

    def mids():
        return [m.fields.get("MESSAGE_ID") for m in a.journal.snapshot()]
    h.wait_until(lambda: "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b06" in mids(), 5, "ROTATION_COMPLETED")
    info = fv.static_role_info("database", "app")
    assert rotate_roles(fv) == 1                       # exactly one rotate-role
    assert doc["version"] == info["last_vault_rotation"] and doc["password"] == info["password"]
    assert doc["username"] == "app"
    assert sc.redis.auth_ok("app", doc["password"])
    # Vault's plugin rotated with RESETPASS: `previous` is the old credential, already dead
    assert doc["previous"]["version"] == first["version"] and doc["previous"]["password"] == old_pw
    assert not sc.redis.auth_ok("app", old_pw)

    with open(os.path.join(sc.tree.state, "rotation-cache.json")) as f:
        rec = json.load(f)
    assert rec["phase"] == "idle" and rec["last_completed"] > 0
    st = cred_status(sc)["rotation"]
    assert st["strategy"] == "vault-database" and st["rotator"] == HOST and st["rotates_here"]
    assert st["phase"] == "idle" and st["last_rotation"] and not st["last_error"]
    assert "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b07" not in mids()   # no ROTATION_FAILED
    everything = a.log() + "".join(m.raw for m in a.journal.snapshot())
    for secret in (old_pw, doc["password"]):
        assert secret not in everything, "a password appears in the agent's log"


def test_vault_database_non_rotator_host_does_not_rotate_but_publishes(vault, sc):
    fv = vault.fake
    a, first = start_db(vault, sc, rotator="not-" + HOST, poll_interval="1s", interval="1s")
    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode != 0
    assert "is rotated by host not-%s" % HOST in r.stdout + r.stderr, (r.stdout, r.stderr)
    st = cred_status(sc)["rotation"]
    assert st["rotates_here"] is False and st["rotator"] == "not-" + HOST
    text = sc.run_cli("-c", sc.tree.conf, "status").stdout
    assert "rotation: vault-database by host not-%s, not this one" % HOST in text, text
    # the rotator (here: Vault on its behalf) rotates; this host picks it up at its poll
    fv.rotate_role("database", "app")
    info = fv.static_role_info("database", "app")
    doc = sc.wait_published(pred=lambda d: d["version"] == info["last_vault_rotation"], timeout=6)
    assert doc["password"] == info["password"] and sc.redis.auth_ok("app", doc["password"])
    assert rotate_roles(fv) == 0            # interval = 1s passed twice over: still never
    assert "rotation of cache started" not in a.log()


def test_vault_database_failing_rotate_role_keeps_the_old_credential(vault, sc):
    fv = vault.fake
    a, first = start_db(vault, sc)
    fv.inject(r"/v1/database/rotate-role/app$", "500", method="POST")
    mark = a.log_mark()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    line = a.wait_log(lambda l: "rotation of cache failed" in l, since=mark, timeout=6)
    assert "rotate-role" in line and "500" in line, line
    assert sc.read_doc()["version"] == first["version"]
    assert sc.redis.auth_ok("app", first["password"])
    st = cred_status(sc)
    assert st["current"] and st["rotation"]["step"] == "retry-wait"
    assert "500" in st["rotation"]["last_error"] and st["rotation"]["phase"] == "idle"

    # the store recovers; a new request rotates at once (not after the backoff)
    fv.clear_injections()
    mark = a.log_mark()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    doc = sc.wait_published(pred=lambda d: d["version"] != first["version"], timeout=8)
    a.wait_log(lambda l: "rotation of cache completed" in l, since=mark, timeout=5)
    assert doc["password"] == fv.static_role_info("database", "app")["password"]
    assert sc.redis.auth_ok("app", doc["password"])


def test_vault_database_rotation_that_vault_already_made_is_not_repeated(vault, sc):
    """The check before rotate-role: Vault rotated on its own since the agent's last look
    (poll 30 s): the agent does not ask again, it publishes Vault's version."""
    fv = vault.fake
    a, first = start_db(vault, sc)
    fv.rotate_role("database", "app")
    mark = a.log_mark()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    line = a.wait_log(lambda l: "rotation of cache not needed" in l, since=mark, timeout=6)
    assert "not at the published" in line, line
    info = fv.static_role_info("database", "app")
    sc.wait_published(pred=lambda d: d["version"] == info["last_vault_rotation"], timeout=6)
    assert rotate_roles(fv) == 0


def test_vault_database_needs_a_rotator_and_a_vault_database_source(vault, sc):
    ro = {"strategy": "vault-database"}
    vault.write_config([vault.cred(path="database/static-creds/app", engine="database", rotation=ro)])
    r = sc.run_agent("--check-config")
    assert r.returncode == 2 and "credentials[0].rotation.rotator: required" in r.stderr, r.stderr

    ro["rotator"] = HOST
    sc.write_config([sc.cred(rotation=ro)])     # a file source
    r = sc.run_agent("--check-config")
    assert r.returncode == 2 and ('strategy "vault-database" needs a source type with a store that makes the '
                                  'password and sets it in Redis itself (rotate_self)') in r.stderr, r.stderr

    # engine kv2 cannot be asked to rotate: the source says so at start
    vault.fake.kv2_enable("secret")
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": "x-pw-1"})
    vault.write_config([vault.cred(rotation=ro)])
    a = sc.start_agent()
    a.wait_log(lambda l: "strategy vault-database needs engine" in l, timeout=10)
    a.check_exit = False
