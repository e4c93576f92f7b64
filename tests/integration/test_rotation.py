"""Agent-driven rotation, strategy redis-acl (docs/design.md §9): claim with a check-and-set write
to the file store, add the new password on every node, validate, publish with the old one
as `previous`, wait `grace`, remove the old password; crash recovery; two agents."""
import calendar
import json
import os
import signal
import threading
import time

import redis

import rc_harness as h
from vault_helpers import PW1, PW2, vault  # noqa: F401

ROTATED_MID = {
    "started": "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b05",
    "completed": "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b06",
    "failed": "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b07",
}


def admin_file(sc, password=h.ADMIN_PASSWORD):
    path = os.path.join(sc.tree.root, "admin-pw")
    with open(path, "w") as f:
        f.write(password + "\n")
    os.chmod(path, 0o600)
    return path


def rot_cred(sc, admin=True, endpoints=None, redis_extra=None, timeout="1s", **rotation):
    r = {"strategy": "redis-acl", "interval": "30d", "grace": "1s"}
    if admin:
        r["admin_username"] = h.ADMIN_USER
        r["admin_password_file"] = admin_file(sc)
    r.update(rotation)
    return sc.cred(endpoints=endpoints, redis_extra=redis_extra, timeout=timeout, rotation=r)


def rotate_now(sc, agent, first, timeout=5):
    """`redis-creds rotate cache`, then the new version published and the rotation
    completed (the old password removed after grace); returns the published document."""
    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode == 0, (r.stdout, r.stderr)
    doc = sc.wait_published(pred=lambda d: d["version"] != first["version"], timeout=timeout)
    agent.wait_log(lambda l: "rotation of cache completed" in l, timeout=timeout + 3)
    return doc


def start_rotating(sc, password, admin=True, **rotation):
    """User app with `password` in Redis and the store, an agent rotating it; returns the
    agent and the first published document."""
    a = sc.start_published(password, credentials=[rot_cred(sc, admin=admin, **rotation)])
    return a, a.first_doc


def kill_during_grace(sc, password):
    """An agent rotating `password`, killed (SIGKILL) while the rotation is in grace:
    the new version published, the record at `published`. Returns the published doc."""
    a, first = start_rotating(sc, password, grace="3s")
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    doc = sc.wait_published(pred=lambda d: d["version"] != first["version"], timeout=5)
    h.wait_until(lambda: rotation_record(sc)["phase"] == "published", 3, "phase published")
    a.send(signal.SIGKILL)
    a.wait_exit()
    a.check_exit = False
    assert rotation_record(sc)["phase"] == "published"
    return doc


def store_doc(sc, filename="cache.json"):
    with open(os.path.join(sc.tree.store, filename)) as f:
        return json.load(f)


def rotation_record(sc, state=None, name="cache"):
    with open(os.path.join(state or sc.tree.state, "rotation-%s.json" % name)) as f:
        return json.load(f)


def status(sc, conf=None):
    r = sc.run_cli("-c", conf or sc.tree.conf, "status", "--json")
    return json.loads(r.stdout)


def cred_status(sc, conf=None):
    return status(sc, conf)["credentials"][0]


def assert_no_secret_in_log(agent, *secrets):
    log = agent.log()
    for s in secrets:
        assert s not in log, "a password appears in the agent's log"


class Client(threading.Thread):
    """A consumer: fresh connection per command, AUTH with the published password (then
    `previous` when refused, as docs/design.md §5.4 tells clients), INCR. Counts failed commands."""

    def __init__(self, sc):
        super().__init__(daemon=True)
        self.sc, self.ok, self.failed, self.errors = sc, 0, 0, []
        self.stop = threading.Event()

    def one(self):
        d = self.sc.read_doc()
        for cred in (d, d.get("previous")):
            if not cred:
                continue
            c = redis.Redis(host="127.0.0.1", port=self.sc.redis.port, username=cred["username"],
                            password=cred["password"], socket_timeout=2)
            try:
                c.incr("rot:counter")
                return True
            except redis.exceptions.AuthenticationError:
                continue
            except redis.exceptions.ResponseError as e:
                if "WRONGPASS" not in str(e):
                    raise
                continue
            finally:
                c.close()
        return False

    def run(self):
        while not self.stop.is_set():
            try:
                if self.one():
                    self.ok += 1
                else:
                    self.failed += 1
            except Exception as e:  # noqa: BLE001 -- any failure is a failed command
                self.failed += 1
                self.errors.append(repr(e))
            time.sleep(0.005)


def test_rotate_command_rotates_end_to_end_without_a_failed_client_command(sc):
    a = sc.start_published("old-pw-1", credentials=[rot_cred(sc, grace="2s")], journal=True)
    first = a.first_doc
    client = Client(sc)
    client.start()
    h.wait_until(lambda: client.ok >= 5, 5, "the client's first commands")

    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode == 0, (r.stdout, r.stderr)
    doc = sc.wait_published(pred=lambda d: d["version"] != first["version"], timeout=5)
    new_pw = doc["password"]
    assert doc["username"] == "app" and new_pw != "old-pw-1" and len(new_pw) == 32
    assert doc["previous"]["password"] == "old-pw-1"
    assert doc["previous"]["version"] == first["version"]
    stored = store_doc(sc)                                            # written, with its mark
    assert {k: stored[k] for k in ("username", "password")} == {"username": "app", "password": new_pw}
    assert stored["redis_creds_rotated_by"] == os.uname().nodename
    assert abs(calendar.timegm(time.strptime(stored["redis_creds_rotated_at"], "%Y-%m-%dT%H:%M:%SZ"))
               - time.time()) < 30
    # observers stop trying `previous` when the grace ends (rotated_at + grace)
    def unix(t):
        return calendar.timegm(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ"))
    assert unix(doc["previous_valid_until"]) == unix(stored["redis_creds_rotated_at"]) + 2
    assert sc.redis.auth_ok("app", new_pw)
    assert sc.redis.auth_ok("app", "old-pw-1")                        # grace: both work
    assert cred_status(sc)["rotation"]["step"] == "grace"

    def journal(kind):
        return [m.fields for m in a.journal.snapshot()
                if m.fields.get("MESSAGE_ID") == ROTATED_MID[kind]]
    h.wait_until(lambda: journal("completed"), 6, "the rotation-completed journal entry")
    assert not sc.redis.auth_ok("app", "old-pw-1")
    assert sc.redis.auth_ok("app", new_pw)
    n = client.ok                             # it keeps working once the old one is gone
    h.wait_until(lambda: client.ok >= n + 5 or client.failed, 5, "client commands after the rotation")
    client.stop.set()
    client.join(5)
    assert client.failed == 0 and client.ok > 20, (client.ok, client.failed, client.errors[:3])

    rec = rotation_record(sc)
    assert rec["phase"] == "idle" and rec["last_completed"] > 0
    assert new_pw not in json.dumps(rec) and "old-pw-1" not in json.dumps(rec)
    st = cred_status(sc)
    assert st["rotation"]["phase"] == "idle" and st["rotation"]["last_rotation"]
    assert st["rotation"]["next_rotation"]
    assert st["version"] == doc["version"]
    # the journal events: started (old version) and completed (new version), by name
    started, completed = journal("started"), journal("completed")
    assert started[0]["REDIS_CREDS_NAME"] == "cache"
    assert started[0]["REDIS_CREDS_VERSION"] == first["version"]
    assert completed[0]["REDIS_CREDS_NAME"] == "cache"
    assert completed[0]["REDIS_CREDS_VERSION"] == doc["version"]
    assert not journal("failed")
    everything = a.log() + "".join(m.raw for m in a.journal.snapshot())
    for secret in (new_pw, "old-pw-1", h.ADMIN_PASSWORD):
        assert secret not in everything, "a password appears in the agent's log"


def test_scheduled_rotation_by_interval_as_the_credential_itself(sc):
    # no admin: the credential itself runs ACL SETUSER (app has +@all here)
    a, first = start_rotating(sc, "sched-pw-0", admin=False, interval="2s", grace="500ms")
    doc = sc.wait_published(pred=lambda d: d["version"] != first["version"], timeout=6)
    a.wait_log(lambda l: "rotation of cache completed" in l, timeout=4)
    assert not sc.redis.auth_ok("app", "sched-pw-0")
    assert sc.redis.auth_ok("app", doc["password"])
    assert_no_secret_in_log(a, doc["password"], "sched-pw-0")


def test_rotate_without_rotation_configured_says_so(sc):
    sc.start_published(publish=False)
    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode != 0
    assert "rotation is not configured" in r.stdout + r.stderr


def start_weak_admin(sc, password, **rotation):
    """An agent rotating `password` as an admin identity that may log in but not run ACL
    SETUSER (so every rotation fails); returns the agent and the first published doc."""
    sc.redis.acl_setuser("weak", "reset", "on", ">weak-admin-pw", "~*", "+@all", "-acl")
    sc.redis.create_user("app", password)
    sc.store_cred("app", password)
    path = os.path.join(sc.tree.root, "weak-pw")
    with open(path, "w") as f:
        f.write("weak-admin-pw")
    os.chmod(path, 0o600)
    sc.write_config([sc.cred(rotation=dict({"strategy": "redis-acl", "grace": "1s", "admin_username": "weak",
                                            "admin_password_file": path}, **rotation))])
    a = sc.start_agent()
    a.wait_ready()
    return a, sc.wait_published(password=password)


def test_failure_keeps_the_old_credential_and_rolls_back(sc):
    a, first = start_weak_admin(sc, "keep-pw-1")
    store_before = store_doc(sc)
    mark = a.log_mark()
    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode == 0, (r.stdout, r.stderr)
    line = a.wait_log(lambda l: "rotation of cache failed" in l, since=mark, timeout=5)
    assert "NOPERM" in line and "rolled back" in line, line
    # the old credential is published, works, and the store holds it again
    assert sc.read_doc()["version"] == first["version"]
    assert sc.read_doc()["password"] == "keep-pw-1"
    assert store_doc(sc) == store_before
    assert sc.redis.auth_ok("app", "keep-pw-1")
    st = cred_status(sc)
    assert st["current"] and "NOPERM" in st["rotation"]["last_error"]
    assert st["rotation"]["step"] == "retry-wait" and st["rotation"]["phase"] == "idle"
    assert rotation_record(sc)["phase"] == "idle"
    text = sc.run_cli("-c", sc.tree.conf, "status")
    assert text.returncode == 0, text.stdout   # a working credential is still current
    assert "rotation: phase idle (retry-wait)" in text.stdout and "NOPERM" in text.stdout
    # a second request while it waits to retry starts it again (and fails the same way)
    mark = a.log_mark()
    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode == 0, (r.stdout, r.stderr)
    a.wait_log(lambda l: "rotation of cache failed" in l, since=mark, timeout=5)
    assert sc.read_doc()["password"] == "keep-pw-1"
    assert_no_secret_in_log(a, "keep-pw-1", "weak-admin-pw")


def test_redis_down_fails_before_anything_changes_in_redis(sc):
    a, first = start_rotating(sc, "down-pw-1")
    sc.redis.stop()
    mark = a.log_mark()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    a.wait_log(lambda l: "rotation of cache failed" in l, since=mark, timeout=8)
    assert sc.read_doc()["version"] == first["version"]
    assert store_doc(sc)["password"] == "down-pw-1"
    sc.redis.start()
    assert sc.redis.auth_ok("app", "down-pw-1")


def test_two_agents_on_one_store_exactly_one_rotates(sc):
    sc.redis.create_user("app", "shared-pw-1")
    sc.store_cred("app", "shared-pw-1")
    rc = rot_cred(sc, grace="1s")
    sc.write_config([rc])
    # the second agent: its own runtime, state and control socket; same store and Redis
    t2 = os.path.join(sc.tree.root, "b")
    os.mkdir(t2)
    conf2 = os.path.join(t2, "agent.conf")
    with open(conf2, "w") as f:
        f.write(sc.config_text([rc], agent={
            "runtime_dir": os.path.join(t2, "run"), "state_dir": os.path.join(t2, "state"),
            "control_socket": os.path.join(t2, "control.sock")}))
    a = sc.start_agent()
    b = sc.start_agent(conf=conf2)
    a.wait_ready()
    b.wait_ready()
    sc.wait_published(password="shared-pw-1")
    ra, rb = [None], [None]
    ta = threading.Thread(target=lambda: ra.__setitem__(0, sc.run_cli("-c", sc.tree.conf, "rotate", "cache")))
    tb = threading.Thread(target=lambda: rb.__setitem__(0, sc.run_cli("-c", conf2, "rotate", "cache")))
    ta.start()
    tb.start()
    ta.join()
    tb.join()
    assert ra[0].returncode == 0 and rb[0].returncode == 0, (ra[0].stderr, rb[0].stderr)

    def published_b():
        try:
            with open(os.path.join(t2, "run", "cache.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    winner = h.wait_until(lambda: (a.find_log(lambda l: "rotation of cache completed" in l) and a)
                          or (b.find_log(lambda l: "rotation of cache completed" in l) and b),
                          8, "one agent to complete the rotation")
    loser = b if winner is a else a
    new_pw = store_doc(sc)["password"]
    assert new_pw != "shared-pw-1"
    # the loser found the winner's rotation record (it waits), or the entry already moved on
    assert loser.find_log(lambda l: "rotation of cache not needed" in l or "is rotating it" in l)
    assert not loser.find_log(lambda l: "rotation of cache completed" in l)
    assert not loser.find_log(lambda l: "rotation of cache started" in l)   # one claim
    sc.wait_published(password=new_pw, timeout=5)
    h.wait_until(lambda: (published_b() or {}).get("password") == new_pw, 8,
                 "the second agent to publish the new password")
    assert not sc.redis.auth_ok("app", "shared-pw-1")
    assert sc.redis.auth_ok("app", new_pw)
    assert_no_secret_in_log(a, new_pw)
    assert_no_secret_in_log(b, new_pw)


def test_crash_during_grace_is_finished_at_restart(sc):
    doc = kill_during_grace(sc, "crash-pw-1")
    assert sc.redis.auth_ok("app", "crash-pw-1")      # the old password is still there
    b = sc.start_agent()
    b.wait_ready()
    b.wait_log(lambda l: "rotation of cache completed" in l, timeout=8)
    assert not sc.redis.auth_ok("app", "crash-pw-1")
    assert sc.redis.auth_ok("app", doc["password"])
    assert sc.read_doc()["version"] == doc["version"]
    assert rotation_record(sc)["phase"] == "idle"
    assert b.find_log(lambda l: "resuming the rotation of cache" in l)


def test_crash_after_claim_is_finished_at_restart(sc):
    """A record in phase `claimed` (the store has the new password, Redis does not): the
    restarted agent reads the new password back from the store and finishes."""
    a, first = start_rotating(sc, "claim-pw-1", grace="500ms")
    a.stop()
    # what a crash right after the claim leaves behind
    sc.store_cred("app", "claimed-new-pw-2")
    probe = sc.start_agent(args=("--once",), notify=False)
    probe.wait_exit(10)   # --once refuses the unvalidated store version: find its version
    probe.check_exit = False
    newv = [l for l in probe.log().splitlines() if "candidate version" in l]
    assert newv, probe.log()
    new_version = newv[-1].split("candidate version ")[1].split()[0]
    rec = rotation_record(sc)
    rec.update(phase="claimed", old_version=first["version"], new_version=new_version,
               started_at=int(time.time()))
    with open(os.path.join(sc.tree.state, "rotation-cache.json"), "w") as f:
        json.dump(rec, f)
    b = sc.start_agent()
    b.wait_ready()
    doc = sc.wait_published(password="claimed-new-pw-2", timeout=6)
    assert doc["previous"]["password"] == "claim-pw-1"
    b.wait_log(lambda l: "rotation of cache completed" in l, timeout=6)
    assert not sc.redis.auth_ok("app", "claim-pw-1")
    assert sc.redis.auth_ok("app", "claimed-new-pw-2")


def test_rotation_with_a_source_that_cannot_rotate_is_a_config_error(sc):
    sc.write_config([sc.cred(source="v", rotation={"strategy": "redis-acl"})],
                    sources=[sc.source(), {"name": "v", "type": "azure-keyvault",
                                           "vault_url": "https://x.vault.azure.net"}])
    r = sc.run_agent("--check-config")
    assert r.returncode == 2
    assert 'credentials[0].rotation: source "v" is of type "azure-keyvault"' in r.stderr, r.stderr


def test_cluster_rotation_changes_every_node(sc):
    """ACLs are per node in an OSS cluster: the new password is added on, and the old one
    removed from, every primary and replica that discovery finds from one seed."""
    import shutil
    import tempfile
    import cluster_helpers as ch

    root = tempfile.mkdtemp(prefix="rc-clr-", dir="/tmp")
    cluster = None
    try:
        cluster = ch.Cluster(root, primaries=3, replicas=1)
        cluster.set_user("app", "cl-pw-1")
        sc.store_cred("app", "cl-pw-1")
        sc.write_config([rot_cred(sc, endpoints=[cluster.nodes[0].endpoint], timeout="2s",
                                  redis_extra={"cluster": True})])
        a = sc.start_agent()
        a.wait_ready()
        doc = rotate_now(sc, a, sc.wait_published(password="cl-pw-1"), timeout=8)

        for n in cluster.nodes:
            assert h.auth_ok(n.port, "app", doc["password"]), "new password missing on %s" % n.endpoint
            assert not h.auth_ok(n.port, "app", "cl-pw-1"), "old password still works on %s" % n.endpoint
        assert_no_secret_in_log(a, doc["password"], "cl-pw-1")
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_reload_during_grace_keeps_the_removal_scheduled(sc):
    a, first = start_rotating(sc, "reload-pw-1", grace="2s")
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    doc = sc.wait_published(pred=lambda d: d["version"] != first["version"], timeout=5)
    mark = a.log_mark()
    a.send(signal.SIGHUP)
    a.wait_log(lambda l: "reloaded" in l, since=mark, timeout=5)
    assert sc.redis.auth_ok("app", "reload-pw-1")     # still in grace
    a.wait_log(lambda l: "rotation of cache completed" in l, since=mark, timeout=6)
    assert not sc.redis.auth_ok("app", "reload-pw-1")
    assert sc.redis.auth_ok("app", doc["password"])


def test_reload_carries_a_failed_rotation_and_its_history(sc):
    """A reload moves each credential's history to the new generation by name: a rotation
    waiting to retry keeps waiting (same retry time, same error), not started afresh."""
    a, _ = start_weak_admin(sc, "carry-pw-1", interval="30d")
    mark = a.log_mark()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    a.wait_log(lambda l: "rotation of cache failed" in l, since=mark, timeout=5)
    before = cred_status(sc)["rotation"]
    assert before["step"] == "retry-wait" and before["retry_at"]
    mark = a.log_mark()
    a.send(signal.SIGHUP)
    a.wait_log(lambda l: "reloaded" in l, since=mark, timeout=5)
    after = cred_status(sc)
    rot = after["rotation"]
    assert rot["step"] == "retry-wait", rot
    # the same retry time (to the second: status rounds it)
    unix = lambda t: calendar.timegm(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ"))  # noqa: E731
    assert abs(unix(rot["retry_at"]) - unix(before["retry_at"])) <= 1, (before, rot)
    assert "NOPERM" in rot["last_error"], rot
    assert after["current"] and after["errors_total"] >= 1, after


def test_vault_kv2_rotation_claims_with_check_and_set(vault, sc):
    """The Vault KV v2 source claims with `options.cas` = the published version (the mount
    requires cas, so a write without it would fail); a store that moved on since the
    agent's last look makes the claim lose, and the agent publishes the store's version."""
    vault.fake.kv2_enable("secret", cas_required=True)
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": PW1}, cas=0)
    rotation = {"strategy": "redis-acl", "grace": "1s", "admin_username": h.ADMIN_USER,
                "admin_password_file": admin_file(sc)}
    a = vault.start(credentials=[vault.cred(rotation=rotation)])
    first = sc.wait_published(password=PW1)
    assert first["version"] == "1"
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    doc = sc.wait_published(pred=lambda d: d["version"] == "2", timeout=5)
    assert doc["previous"]["password"] == PW1 and doc["previous"]["version"] == "1"
    assert vault.fake.kv2_current_version("secret", "redis/cache") == 2
    a.wait_log(lambda l: "rotation of cache completed" in l, timeout=5)
    assert not sc.redis.auth_ok("app", PW1)
    assert sc.redis.auth_ok("app", doc["password"])

    # someone else writes version 3 (cas 2) before the agent looks again (poll 30s)
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": PW2}, cas=2)
    mark = a.log_mark()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    # the claim compares the store with what is published before it writes anything
    line = a.wait_log(lambda l: "rotation of cache not needed" in l, since=mark, timeout=5)
    assert "the store holds another version" in line
    sc.wait_published(password=PW2, timeout=5)
    assert vault.fake.kv2_current_version("secret", "redis/cache") == 3
    assert_no_secret_in_log(a, doc["password"], PW1, PW2)


def test_store_change_during_grace_removes_only_the_rotations_old_password(sc):
    """If someone else publishes through the store during grace, the rotation still removes
    exactly the password it replaced (the rotation record holds it), never the new ones."""
    a, first = start_rotating(sc, "moved-pw-1", grace="2s")
    sc.redis.add_password("app", "moved-pw-3")
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    doc = sc.wait_published(pred=lambda d: d["version"] != first["version"], timeout=5)
    sc.store_cred("app", "moved-pw-3")
    d3 = sc.wait_published(password="moved-pw-3", timeout=5)
    assert d3["previous"]["password"] == doc["password"]
    assert "previous_valid_until" not in d3 or d3["previous_valid_until"] is None   # a hand write
    a.wait_log(lambda l: "rotation of cache completed" in l, timeout=6)
    h.wait_until(lambda: rotation_record(sc)["phase"] == "idle", 3, "phase idle")
    assert not sc.redis.auth_ok("app", "moved-pw-1")
    for pw in (doc["password"], "moved-pw-3"):
        assert sc.redis.auth_ok("app", pw)


def _aclfile_redis(sc, app_password):
    """A redis-server that keeps its users in an aclfile (no `user` lines in its config)."""
    import hashlib
    import subprocess
    d = os.path.join(sc.tree.root, "redis-aclfile")
    os.mkdir(d)
    port = h.free_port()
    acl = os.path.join(d, "users.acl")
    with open(acl, "w") as f:
        f.write("user %s on >%s ~* &* +@all\n" % (h.ADMIN_USER, h.ADMIN_PASSWORD))
        f.write("user default on nopass ~* &* +@all\n")
        f.write("user app on >%s ~* &* +@all\n" % app_password)
    with open(os.path.join(d, "redis.conf"), "w") as f:
        f.write("port %d\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir %s\naclfile %s\n"
                % (port, d, acl))
    p = subprocess.Popen([h.REDIS_SERVER, os.path.join(d, "redis.conf")], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=h.clean_env())

    def stop():
        p.terminate()
        p.wait(5)
    sc.on_close(stop)
    def up():
        try:
            return h.auth_ok(port, h.ADMIN_USER, h.ADMIN_PASSWORD)
        except redis.exceptions.ConnectionError:
            return False
    h.wait_until(up, 5, "aclfile redis-server")
    digest = lambda pw: hashlib.sha256(pw.encode()).hexdigest()  # noqa: E731
    return port, acl, digest


def test_acl_save_writes_the_aclfile(sc):
    port, acl, digest = _aclfile_redis(sc, "file-pw-1")
    sc.store_cred("app", "file-pw-1")
    sc.write_config([rot_cred(sc, endpoints=["127.0.0.1:%d" % port], acl_save=True)])
    a = sc.start_agent()
    a.wait_ready()
    doc = rotate_now(sc, a, sc.wait_published(password="file-pw-1"))
    with open(acl) as f:
        saved = f.read()
    # what a restart of the server would load: the new password only
    assert "#" + digest(doc["password"]) in saved
    assert digest("file-pw-1") not in saved


def test_acl_save_without_an_aclfile_fails_and_rolls_back(sc):
    a, first = start_rotating(sc, "nofile-pw-1", acl_save=True)
    mark = a.log_mark()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    line = a.wait_log(lambda l: "rotation of cache failed" in l, since=mark, timeout=5)
    assert "ACL SAVE" in line and "rolled back" in line, line
    assert sc.read_doc()["password"] == "nofile-pw-1"
    assert store_doc(sc)["password"] == "nofile-pw-1"
    # the new password was taken back off the node: only the old one works
    c = sc.redis.client()
    try:
        rules = c.execute_command("ACL", "GETUSER", "app")
    finally:
        c.close()
    rules = dict(zip(rules[::2], rules[1::2]))
    assert len(rules[b"passwords"]) == 1


def test_crash_after_the_removal_but_before_its_record_completes_at_restart(sc):
    """The old password is gone from Redis but the record still says `published`: Redis
    refuses to remove it again; the agent checks that it no longer logs in and completes."""
    doc = kill_during_grace(sc, "gone-pw-1")
    sc.redis.remove_password("app", "gone-pw-1")
    b = sc.start_agent()
    b.wait_ready()
    b.wait_log(lambda l: "rotation of cache completed" in l, timeout=6)
    assert not b.find_log(lambda l: "rotation of cache failed" in l)
    assert rotation_record(sc)["phase"] == "idle"
    assert sc.redis.auth_ok("app", doc["password"])


def _metric(path, metric, name="cache"):
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith('%s{name="%s"} ' % (metric, name)):
            return float(line.split()[-1])
    return None


def test_rotation_shows_in_the_status_line_and_the_metrics_file(sc):
    """STATUS= names a rotation under way (here its grace period); the metrics file has
    it in progress, then the completion time; a failed step counts in failures_total."""
    mpath = os.path.join(sc.tree.root, "redis_creds.prom")
    a = sc.start_published("met-pw-1", credentials=[rot_cred(sc, grace="2s")],
                           config={"agent": {"metrics_file": mpath}})
    first = a.first_doc
    h.wait_until(lambda: _metric(mpath, "redis_creds_rotation_last_timestamp_seconds") == 0, 3,
                 "rotation metrics, never rotated")
    assert _metric(mpath, "redis_creds_rotation_in_progress") == 0
    t0 = time.time()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    a.notify.wait_status(lambda s: "[rotation: grace]" in s, timeout=5, what="STATUS in grace")
    assert _metric(mpath, "redis_creds_rotation_in_progress") == 1
    text = sc.run_cli("-c", sc.tree.conf, "status").stdout
    assert "(grace)" not in text or "old password removed at 20" in text, text
    a.wait_log(lambda l: "rotation of cache completed" in l, timeout=8)
    a.notify.wait_status(lambda s: "[rotation" not in s, timeout=3, what="STATUS after")
    h.wait_until(lambda: _metric(mpath, "redis_creds_rotation_in_progress") == 0, 3, "done")
    assert _metric(mpath, "redis_creds_rotation_last_timestamp_seconds") >= int(t0)
    assert _metric(mpath, "redis_creds_rotation_failures_total") == 0
    # a failing step: Redis goes away, the claim's ACL step fails and is counted
    assert sc.read_doc()["version"] != first["version"]
    sc.redis.stop()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    h.wait_until(lambda: (_metric(mpath, "redis_creds_rotation_failures_total") or 0) >= 1, 8,
                 "a counted failure")
    a.notify.wait_status(lambda s: "[rotation: retry-wait]" in s, timeout=3,
                         what="STATUS retry-wait")
    text = sc.run_cli("-c", sc.tree.conf, "status").stdout
    assert "(retry-wait)" in text and ", retry at 20" in text, text
