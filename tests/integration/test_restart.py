"""Restarts and the runtime_dir lock (DESIGN §2, §4)."""
import json
import os
import time

import rc_harness as h


def _publish_two_versions(sc):
    sc.redis.create_user("app", "pw1", "pw2", "pw3")
    sc.store_cred("app", "pw1")
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    sc.store_cred("app", "pw2")
    doc = sc.wait_published(password="pw2")
    assert doc["previous"]["password"] == "pw1"
    assert a.stop() == 0
    return doc


def test_restarted_agent_adopts_existing_file_without_republishing(sc):
    _publish_two_versions(sc)
    before = sc.read_bytes()
    st = os.stat(sc.path("cache.json"))
    w = sc.watch_runtime()
    b = sc.start_agent()
    b.wait_ready()
    time.sleep(0.5)
    touched = w.snapshot("cache.json")
    assert not touched, "restart republished an unchanged credential: %r" % touched
    assert sc.read_bytes() == before
    st2 = os.stat(sc.path("cache.json"))
    assert (st2.st_ino, st2.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    b.notify.wait_status(lambda s: "1/1 current" in s, timeout=2, what="STATUS current")

    # `previous` is kept across restarts: the next rotation names the adopted credential
    sc.store_cred("app", "pw3")
    doc = sc.wait_published(password="pw3")
    assert doc["previous"]["password"] == "pw2"
    assert doc["previous"]["version"] == json.loads(before)["version"]


def test_restarted_agent_serves_existing_file_while_redis_is_down(sc):
    _publish_two_versions(sc)
    before = sc.read_bytes()
    sc.redis.stop()
    b = sc.start_agent()
    b.wait_ready(timeout=8)
    time.sleep(0.3)
    assert sc.read_bytes() == before, "the adopted file is served while Redis is down"
    assert b.alive()
    # a store change while Redis is still down is not published
    mark = b.log_mark()
    sc.store_cred("app", "pw3")
    b.wait_log("unreachable", since=mark, timeout=5)
    assert sc.read_bytes() == before
    sc.redis.start()
    sc.wait_published(password="pw3", timeout=12)


def test_second_agent_on_same_runtime_dir_exits_1_naming_the_first_pid(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    before = sc.read_bytes()

    conf2 = os.path.join(sc.tree.root, "second.conf")
    sc.write_config(path=conf2, agent={"control_socket": os.path.join(sc.tree.root, "c2.sock")})
    b = sc.start_agent(conf=conf2, tag="second")
    rc = b.wait_exit(timeout=5)
    b.check_exit = False
    assert rc == 1, "second agent exited %s" % rc
    assert ("runtime_dir in use by pid %d" % a.pid) in b.log(), b.log()

    once = sc.run_agent("--once")
    assert once.returncode == 1, "--once while the daemon runs: %s" % once.returncode
    assert ("runtime_dir in use by pid %d" % a.pid) in (once.stderr + once.stdout)

    assert a.alive()
    assert sc.read_bytes() == before
