"""Strategy redis-acl-users (issue 12 item 4): two ACL users alternate; the idle one gets
the new password and is published; the previous one is disabled only once CLIENT LIST on
every node shows no connection authenticated as it, or after max_grace (with or without
CLIENT KILL USER). The real agent, a real redis-server 7.0 and a real 3-primary cluster."""
import json
import os
import shutil
import socket
import tempfile

import rc_harness as h
from acl_helpers import admin_file, journal

MID_COMPLETED = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b06"
MID_FAILED = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b07"
MID_DRAIN = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0b"
# (cluster discovery logs in as the credential too)
RIGHTS = ("~cache:*", "+@read", "+@write", "+ping", "+cluster|shards", "+cluster|slots")


def users_cred(sc, endpoints=None, redis_extra=None, **rotation):
    r = {"strategy": "redis-acl-users", "users": ["app_a", "app_b"], "interval": "30d",
         "grace": "1s", "drain_check": "1s", "revocation_watch": "0s",
         "admin_username": h.ADMIN_USER, "admin_password_file": admin_file(sc)}
    r.update(rotation)
    return sc.cred(endpoints=endpoints, redis_extra=redis_extra, timeout="2s", rotation=r)


def set_users(setuser, b_rights=RIGHTS):
    """app_a on with its password, app_b off with (by default) the same rights."""
    setuser("app_a", "reset", "on", ">users-pw-a", *RIGHTS)
    setuser("app_b", "reset", "off", *b_rights)


def start(sc, **rotation):
    set_users(sc.redis.acl_setuser)
    sc.store_cred("app_a", "users-pw-a")
    sc.write_config([users_cred(sc, **rotation)])
    a = sc.start_agent(journal=True)
    a.wait_ready()
    a.first_doc = sc.wait_published(password="users-pw-a")
    return a


def status(sc):
    r = sc.run_cli("-c", sc.tree.conf, "status", "--json")
    return json.loads(r.stdout)["credentials"][0]


def rotate_cmd(sc):
    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode == 0, (r.stdout, r.stderr)


class Conn:
    """A raw client connection logged in as user (it stays authenticated as that user)."""

    def __init__(self, port, user, password):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=3)
        self.addr = "%s:%d" % self.s.getsockname()[:2]
        self.s.sendall(b"*3\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                       % (len(user), user.encode(), len(password), password.encode()))
        assert self.s.recv(100).startswith(b"+OK")

    def ping(self):
        self.s.sendall(b"*1\r\n$4\r\nPING\r\n")
        return self.s.recv(100)

    def close(self):
        self.s.close()


def test_rotation_switches_to_the_idle_user_and_disables_the_previous_one(sc):
    a = start(sc)
    rotate_cmd(sc)
    doc = sc.wait_published(pred=lambda d: d["username"] == "app_b", timeout=8)
    assert doc["password"] != "users-pw-a" and len(doc["password"]) == 32
    assert doc["previous"]["username"] == "app_a"
    h.wait_until(lambda: journal(a, MID_COMPLETED), 10, "the rotation completed")
    assert sc.redis.auth_ok("app_b", doc["password"])
    assert not sc.redis.auth_ok("app_a", "users-pw-a")           # off and resetpass
    assert "disabled on every node" in journal(a, MID_COMPLETED)[0]["MESSAGE"]
    assert not journal(a, MID_DRAIN)                              # nobody was connected
    # and back: app_a is the idle one now
    rotate_cmd(sc)
    doc2 = sc.wait_published(pred=lambda d: d["username"] == "app_a", timeout=8)
    h.wait_until(lambda: len(journal(a, MID_COMPLETED)) == 2, 10, "the second rotation")
    assert sc.redis.auth_ok("app_a", doc2["password"])
    assert not sc.redis.auth_ok("app_b", doc["password"])
    everything = a.log() + "".join(m.raw for m in a.journal.snapshot())
    for secret in (doc["password"], doc2["password"], "users-pw-a", h.ADMIN_PASSWORD):
        assert secret not in everything


def test_mismatched_users_are_refused_with_a_diff(sc):
    set_users(sc.redis.acl_setuser, b_rights=("~*", "+@read", "+ping"))
    sc.store_cred("app_a", "users-pw-a")
    sc.write_config([users_cred(sc)])
    a = sc.start_agent(journal=True)
    a.wait_ready()
    first = sc.wait_published(password="users-pw-a")
    rotate_cmd(sc)
    h.wait_until(lambda: journal(a, MID_FAILED), 8, "the refusal")
    msg = journal(a, MID_FAILED)[0]["MESSAGE"]
    assert "users app_a and app_b differ" in msg, msg
    assert "127.0.0.1:%d: app_b lacks +@write" % sc.redis.port in msg, msg
    assert "keys ~cache:* vs ~*" in msg, msg
    assert sc.read_doc()["version"] == first["version"]          # nothing published
    assert not sc.redis.auth_ok("app_b", "")                      # app_b untouched: still off
    st = status(sc)
    assert "differ" in st["rotation"]["last_error"]
    assert not os.path.exists(os.path.join(sc.tree.store, ".cache.json.rotation"))


def test_a_connected_client_holds_the_disable_and_status_lists_it(sc):
    a = start(sc)
    held = Conn(sc.redis.port, "app_a", "users-pw-a")
    rotate_cmd(sc)
    doc = sc.wait_published(pred=lambda d: d["username"] == "app_b", timeout=8)
    h.wait_until(lambda: journal(a, MID_DRAIN), 8, "the drain-waiting event")
    ev = journal(a, MID_DRAIN)[0]
    assert held.addr in ev["MESSAGE"], ev["MESSAGE"]
    st = status(sc)
    assert st["rotation"]["step"] in ("draining", "removing")
    h.wait_until(lambda: status(sc)["rotation"]["drain"], 5, "drain in status")
    d = status(sc)["rotation"]["drain"]
    assert d["user"] == "app_a" and d["connections"] == 1
    assert d["nodes"][0]["addrs"] == [held.addr]
    assert status(sc)["state"] == "draining" and status(sc)["current"] is True
    text = sc.run_cli("-c", sc.tree.conf, "status").stdout
    assert " draining " in text.splitlines()[1], text                # the STATE column
    assert "draining: user app_a has 1 connection(s)" in text and held.addr in text, text
    assert sc.redis.auth_ok("app_a", "users-pw-a")               # still enabled
    assert held.ping().startswith(b"+PONG")
    assert not journal(a, MID_COMPLETED)
    # the client goes: the rotation finishes within one check
    held.close()
    h.wait_until(lambda: journal(a, MID_COMPLETED), 5, "completed within one drain_check")
    assert not sc.redis.auth_ok("app_a", "users-pw-a")
    assert status(sc)["rotation"]["drain"] is None
    assert status(sc)["state"] == "current"
    assert sc.redis.auth_ok("app_b", doc["password"])


def test_max_grace_without_kill_keeps_the_user_enabled_and_says_so(sc):
    a = start(sc, max_grace="2s")
    held = Conn(sc.redis.port, "app_a", "users-pw-a")
    rotate_cmd(sc)

    def warned():
        return [m for m in a.journal.snapshot()
                if "max_grace has passed" in m.fields.get("MESSAGE", "")]
    h.wait_until(warned, 10, "the max_grace warning")
    assert warned()[0].fields["PRIORITY"] == "4"
    assert status(sc)["rotation"]["drain"]["past_max_grace"] is True
    assert held.ping().startswith(b"+PONG")
    assert sc.redis.auth_ok("app_a", "users-pw-a")
    assert not journal(a, MID_COMPLETED)
    held.close()
    h.wait_until(lambda: journal(a, MID_COMPLETED), 5, "completed once it went")


def test_max_grace_with_kill_closes_the_connections(sc):
    a = start(sc, max_grace="2s", kill_after_max_grace=True)
    held = Conn(sc.redis.port, "app_a", "users-pw-a")
    rotate_cmd(sc)
    h.wait_until(lambda: journal(a, MID_COMPLETED), 12, "completed after the kill")
    killed = [m for m in a.journal.snapshot() if "CLIENT KILL USER" in m.fields.get("MESSAGE", "")]
    assert killed and "1 connection of the previous user app_a closed" in killed[0].fields["MESSAGE"]
    held.s.settimeout(2)
    assert held.ping() == b""                                     # closed by the server
    assert not sc.redis.auth_ok("app_a", "users-pw-a")


def test_check_config_refuses_what_this_strategy_cannot_do(sc):
    set_users(sc.redis.acl_setuser)
    sc.store_cred("app_a", "users-pw-a")
    cred = users_cred(sc)
    del cred["rotation"]["admin_username"], cred["rotation"]["admin_password_file"]
    sc.write_config([cred])
    r = sc.run_agent("--check-config")
    assert r.returncode != 0 and "admin_username: required with strategy \"redis-acl-users\"" in r.stderr
    cred = users_cred(sc, users=["app_a"])
    sc.write_config([cred])
    r = sc.run_agent("--check-config")
    assert r.returncode != 0 and "must name exactly two different users" in r.stderr
    cred = users_cred(sc)
    cred["formats"] = ["json", "password"]
    sc.write_config([cred])
    r = sc.run_agent("--check-config")
    assert r.returncode != 0 and "formats = [ \"password\" ] alone" in r.stderr, r.stderr


def test_cluster_rotation_and_drain_on_every_node(sc):
    import cluster_helpers as ch
    root = tempfile.mkdtemp(prefix="rc-usr-", dir="/tmp")
    cluster = None
    try:
        cluster = ch.Cluster(root, primaries=3, replicas=0)
        for n in cluster.nodes:
            set_users(lambda *args, n=n: n.cmd("ACL", "SETUSER", *args))
        sc.store_cred("app_a", "users-pw-a")
        sc.write_config([users_cred(sc, endpoints=[cluster.nodes[0].endpoint],
                                    redis_extra={"cluster": True})])
        a = sc.start_agent(journal=True)
        a.wait_ready()
        sc.wait_published(password="users-pw-a")
        held = Conn(cluster.nodes[2].port, "app_a", "users-pw-a")
        rotate_cmd(sc)
        doc = sc.wait_published(pred=lambda d: d["username"] == "app_b", timeout=10)
        h.wait_until(lambda: journal(a, MID_DRAIN), 10, "the drain waits on node 3")
        msg = journal(a, MID_DRAIN)[0]["MESSAGE"]
        assert "%s: %s (1 connection)" % (cluster.nodes[2].endpoint, held.addr) in msg, msg
        for n in cluster.nodes:
            assert h.auth_ok(n.port, "app_b", doc["password"])
        held.close()
        h.wait_until(lambda: journal(a, MID_COMPLETED), 8, "completed")
        for n in cluster.nodes:
            assert not h.auth_ok(n.port, "app_a", "users-pw-a"), n.endpoint
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
