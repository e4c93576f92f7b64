"""The revocation watch (docs/design.md §9, issue 12 item 5): after a rotation removed the
old password, the rotator reads ACL LOG on every node and reports a client that still
tries the old credential, naming its address and count per node. The real agent and a
real redis-server 7.0 (and a 3-primary cluster)."""
import json
import os
import shutil
import tempfile

import socket

import rc_harness as h
from acl_helpers import admin_file, journal

MID_USED = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0c"
MID_COMPLETED = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b06"


def watch_cred(sc, endpoints=None, redis_extra=None, **rotation):
    r = {"strategy": "redis-acl", "interval": "30d", "grace": "1s",
         "admin_username": h.ADMIN_USER, "admin_password_file": admin_file(sc),
         "revocation_check": "1s", "revocation_watch": "60s"}
    r.update(rotation)
    return sc.cred(endpoints=endpoints, redis_extra=redis_extra, timeout="2s", rotation=r)


def rotate(sc, agent, first, timeout=8):
    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode == 0, (r.stdout, r.stderr)
    doc = sc.wait_published(pred=lambda d: d["version"] != first["version"], timeout=timeout)
    h.wait_until(lambda: journal(agent, MID_COMPLETED), timeout + 4, "the rotation completed")
    return doc


def status(sc):
    r = sc.run_cli("-c", sc.tree.conf, "status", "--json")
    return json.loads(r.stdout)["credentials"][0]


def stale_client(port):
    """A connection of an application that kept the old password. Returns it and its
    address as the server sees it (addr=)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    host, p = s.getsockname()[:2]
    return s, "%s:%d" % (host, p)


def fail_auth(s, password, n):
    """n AUTHs as app with password, each refused."""
    for _ in range(n):
        s.sendall(b"*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$%d\r\n%s\r\n"
                  % (len(password), password.encode()))
        reply = s.recv(4096)
        assert reply.startswith(b"-WRONGPASS"), reply


def test_old_password_tried_after_removal_is_an_error_event_with_its_address(sc):
    a = sc.start_published("watch-old-pw", credentials=[watch_cred(sc)], journal=True)
    first = a.first_doc
    before, _ = stale_client(sc.redis.port)
    fail_auth(before, "not-any-password", 2)   # failures of another kind, before: not reported
    doc = rotate(sc, a, first)
    assert status(sc)["rotation"]["step"] in ("watching", "reading-acl-log")
    rec = json.load(open(os.path.join(sc.tree.state, "rotation-cache.json")))
    assert rec["watch_until"] > 0

    c, addr = stale_client(sc.redis.port)
    fail_auth(c, "watch-old-pw", 3)
    h.wait_until(lambda: journal(a, MID_USED), 8, "the old-credential-used event")
    ev = journal(a, MID_USED)[0]
    assert ev["PRIORITY"] == "3"                       # an error
    assert ev["REDIS_CREDS_NAME"] == "cache"
    msg = ev["MESSAGE"]
    assert "127.0.0.1:%d: %s x3 (app)" % (sc.redis.port, addr) in msg, msg
    assert "3 failed AUTHs" in msg
    # one report per failure: the next reads find nothing new
    n = len(journal(a, MID_USED))
    h.wait_until(lambda: "reading" not in status(sc)["rotation"]["step"], 5, "a read done")
    fail_auth(c, "watch-old-pw", 1)
    h.wait_until(lambda: len(journal(a, MID_USED)) > n, 8, "the second report")
    assert "x1 (app)" in journal(a, MID_USED)[-1]["MESSAGE"]
    st = status(sc)
    assert "tried after its removal" in (st["rotation"]["last_error"] or "")
    everything = a.log() + "".join(m.raw for m in a.journal.snapshot())
    for secret in (doc["password"], "watch-old-pw", h.ADMIN_PASSWORD):
        assert secret not in everything


def test_watch_ends_and_the_schedule_resumes(sc):
    a = sc.start_published("watch-end-pw", credentials=[watch_cred(sc, revocation_watch="3s")],
                           journal=True)
    rotate(sc, a, a.first_doc)
    h.wait_until(lambda: status(sc)["rotation"]["step"] == "idle", 10, "the watch ended")
    st = status(sc)
    assert st["rotation"]["next_rotation"]
    rec = json.load(open(os.path.join(sc.tree.state, "rotation-cache.json")))
    assert not rec.get("watch_until")
    assert not journal(a, MID_USED)


def test_watch_off_with_zero(sc):
    a = sc.start_published("watch-off-pw", credentials=[watch_cred(sc, revocation_watch="0s")],
                           journal=True)
    rotate(sc, a, a.first_doc)
    assert status(sc)["rotation"]["step"] == "idle"


def test_login_without_acl_log_says_so_once_and_the_rotation_is_fine(sc):
    # the admin may rotate but not read ACL LOG
    sc.redis.acl_setuser(h.ADMIN_USER, "-acl|log")
    a = sc.start_published("watch-noperm-pw", credentials=[watch_cred(sc)], journal=True)
    rotate(sc, a, a.first_doc)

    def said():
        return [m.fields["MESSAGE"] for m in a.journal.snapshot()
                if "cannot read ACL LOG everywhere" in m.fields.get("MESSAGE", "")]
    h.wait_until(said, 6, "the warning")
    assert "no acl|log permission" in said()[0]

    # several more reads, counted by the server (refused ACL LOG calls), not slept for
    seen = acl_log_refusals(sc)
    h.wait_until(lambda: acl_log_refusals(sc) >= seen + 3, 10, "three more ACL LOG reads")
    assert len(said()) == 1, said()   # said once, not at every read


def acl_log_refusals(sc):
    """How many ACL LOG calls the server refused (INFO commandstats' rejected_calls)."""
    c = sc.redis.client()
    try:
        stats = c.info("commandstats").get("cmdstat_acl|log", {})
    finally:
        c.close()
    return int(stats.get("rejected_calls", 0))


def test_cluster_watch_names_the_node(sc):
    import cluster_helpers as ch
    root = tempfile.mkdtemp(prefix="rc-rvw-", dir="/tmp")
    cluster = None
    try:
        cluster = ch.Cluster(root, primaries=3, replicas=0)
        cluster.set_user("app", "cl-watch-pw")
        sc.store_cred("app", "cl-watch-pw")
        sc.write_config([watch_cred(sc, endpoints=[cluster.nodes[0].endpoint],
                                    redis_extra={"cluster": True})])
        a = sc.start_agent(journal=True)
        a.wait_ready()
        first = sc.wait_published(password="cl-watch-pw")
        rotate(sc, a, first, timeout=10)
        node = cluster.nodes[2]
        c, addr = stale_client(node.port)
        fail_auth(c, "cl-watch-pw", 2)
        h.wait_until(lambda: journal(a, MID_USED), 10, "the event")
        msg = journal(a, MID_USED)[0]["MESSAGE"]
        assert "%s: %s x2 (app)" % (node.endpoint, addr) in msg, msg
        for other in cluster.nodes[:2]:
            assert other.endpoint + ":" not in msg
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


MID_RESTORED = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0d"


def auth_once(port, password):
    s, _ = stale_client(port)
    try:
        s.sendall(b"*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$%d\r\n%s\r\n" % (len(password), password.encode()))
        return s.recv(100)
    finally:
        s.close()


def test_restore_puts_the_old_password_back_then_removes_it_again(sc):
    a = sc.start_published("restore-old-pw", credentials=[watch_cred(
        sc, grace="3s", revocation_restore=True, restore_limit=1)], journal=True)
    rotate(sc, a, a.first_doc)
    c, addr = stale_client(sc.redis.port)
    fail_auth(c, "restore-old-pw", 2)
    h.wait_until(lambda: journal(a, MID_RESTORED), 8, "the restore")
    ev = journal(a, MID_RESTORED)[0]
    assert ev["PRIORITY"] == "4" and "restore 1 of 1" in ev["MESSAGE"], ev["MESSAGE"]
    # that client logs in with it again
    assert auth_once(sc.redis.port, "restore-old-pw").startswith(b"+OK")
    rec = json.load(open(os.path.join(sc.tree.state, "rotation-cache.json")))
    assert len(rec["restored"]) == 64 and rec["restores"] == 1
    assert "restore-old-pw" not in json.dumps(rec)
    # after another grace it goes again, and the record forgets it
    h.wait_until(lambda: not json.load(open(os.path.join(sc.tree.state, "rotation-cache.json")))
                 .get("restored"), 10, "the restored password removed")
    assert not sc.redis.auth_ok("app", "restore-old-pw")
    # the limit is reached: later failures are reported, never restored again
    n = len(journal(a, MID_USED))
    fail_auth(c, "restore-old-pw", 1)
    h.wait_until(lambda: len(journal(a, MID_USED)) > n, 8, "reported again")
    h.wait_until(lambda: any("restore_limit is reached" in m.fields.get("MESSAGE", "")
                             for m in a.journal.snapshot()), 5, "said why")
    assert len(journal(a, MID_RESTORED)) == 1
    assert not sc.redis.auth_ok("app", "restore-old-pw")


def test_rotate_revoke_is_never_restored(sc):
    a = sc.start_published("revoke-old-pw", credentials=[watch_cred(
        sc, revocation_restore=True)], journal=True)
    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache", "--revoke")
    assert r.returncode == 0, (r.stdout, r.stderr)
    h.wait_until(lambda: journal(a, MID_COMPLETED), 10, "the rotation completed")
    c, _ = stale_client(sc.redis.port)
    fail_auth(c, "revoke-old-pw", 2)
    h.wait_until(lambda: journal(a, MID_USED), 8, "reported")
    h.wait_until(lambda: any("`rotate --revoke`" in m.fields.get("MESSAGE", "")
                             for m in a.journal.snapshot()), 5, "said why")
    assert not journal(a, MID_RESTORED)
    assert not sc.redis.auth_ok("app", "revoke-old-pw")


def test_a_restored_password_is_removed_at_the_next_start(sc):
    import signal
    a = sc.start_published("restart-old-pw", credentials=[watch_cred(
        sc, grace="3s", revocation_restore=True)], journal=True)
    rotate(sc, a, a.first_doc)
    c, _ = stale_client(sc.redis.port)
    fail_auth(c, "restart-old-pw", 1)
    h.wait_until(lambda: journal(a, MID_RESTORED), 8, "the restore")
    a.send(signal.SIGKILL)                    # within its 3 s: the password is still back
    a.wait_exit()
    a.check_exit = False
    assert sc.redis.auth_ok("app", "restart-old-pw")
    rec = json.load(open(os.path.join(sc.tree.state, "rotation-cache.json")))
    assert rec["restored"]
    b = sc.start_agent(journal=True)
    b.wait_ready()
    h.wait_until(lambda: not sc.redis.auth_ok("app", "restart-old-pw"), 8,
                 "the restored password removed at start")
    assert not any("refused" in m.fields.get("MESSAGE", "") for m in b.journal.snapshot())
    h.wait_until(lambda: not json.load(open(os.path.join(sc.tree.state, "rotation-cache.json")))
                 .get("restored"), 5, "forgotten")
