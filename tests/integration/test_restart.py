"""Restarts and the runtime_dir lock (docs/design.md §2, §5)."""
import json
import os
import random
import signal
import threading
import time

import pytest

import rc_harness as h


def _publish_two_versions(sc):
    a = sc.start_published(also_accept=("pw2", "pw3"))
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
    b.barrier()                               # its first attempt has ended in full
    w.sync()                                  # and every event it caused is recorded
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
    b.barrier()                               # its first attempt has ended in full
    assert sc.read_bytes() == before, "the adopted file is served while Redis is down"
    assert b.alive()
    # a store change while Redis is still down is not published
    mark = b.log_mark()
    sc.store_cred("app", "pw3")
    b.wait_log("unreachable", since=mark, timeout=5)
    assert sc.read_bytes() == before
    sc.redis.start()
    sc.wait_published(password="pw3", timeout=12)


def test_second_agent_on_same_runtime_dir_exits_1_naming_the_first_pid(sc, agent):
    before = sc.read_bytes()

    conf2 = os.path.join(sc.tree.root, "second.conf")
    sc.write_config(path=conf2, agent={"control_socket": os.path.join(sc.tree.root, "c2.sock")})
    b = sc.start_agent(conf=conf2, tag="second")
    rc = b.wait_exit(timeout=5)
    b.check_exit = False
    assert rc == 1, "second agent exited %s" % rc
    assert ("runtime_dir in use by pid %d" % agent.pid) in b.log(), b.log()

    once = sc.run_agent("--once")
    assert once.returncode == 1, "--once while the daemon runs: %s" % once.returncode
    assert ("runtime_dir in use by pid %d" % agent.pid) in (once.stderr + once.stdout)

    assert agent.alive()
    assert sc.read_bytes() == before


@pytest.mark.parametrize("existing", ["garbage", "other-name", "oversized"])
def test_existing_file_that_is_not_ours_is_not_adopted(sc, existing):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    os.mkdir(sc.tree.runtime, 0o750)
    doc = {"format": 1, "name": "cache", "username": "app", "password": "pw1",
           "version": "h-0000000000000000", "source": "local:cache.json",
           "published_at": "2026-01-01T00:00:00Z", "validated": "all", "expires_at": None,
           "previous": None}
    if existing == "garbage":
        data = b'{"format": 1, "name": "cache", "pass'
    elif existing == "other-name":
        doc["name"] = "sessions"
        data = json.dumps(doc).encode() + b"\n"
    else:
        doc["padding"] = "x" * (70 * 1024)
        data = json.dumps(doc).encode() + b"\n"
    with open(sc.path("cache.json"), "wb") as f:
        f.write(data)
    a = sc.start_agent()
    a.wait_ready()
    d = sc.wait_published(password="pw1", pred=lambda d: d.get("name") == "cache"
                          and d.get("version") != "h-0000000000000000", timeout=5)
    assert "padding" not in d
    assert d["previous"] is None, "an existing file that is not ours is no `previous`: %r" % d["previous"]


def test_sigkill_during_republishing_leaves_a_whole_file_and_the_next_start_recovers(sc):
    pa, pb = "alpha-" + "a" * 30, "beta-" + "b" * 30
    a = sc.start_published(pa, also_accept=(pb,),
                           credentials=[sc.cred(formats=["json", "env", "password"])])
    stop = threading.Event()

    def rotate():
        i = 0
        while not stop.is_set():
            sc.store_cred("app", pb if i % 2 == 0 else pa)
            i += 1
            time.sleep(0.003)
    t = threading.Thread(target=rotate, daemon=True)
    t.start()
    time.sleep(0.4 + random.random() * 0.4)
    a.send(signal.SIGKILL)
    a.wait_exit(3)
    a.check_exit = False
    stop.set()
    t.join(3)

    doc = sc.read_doc()                      # whole and parseable, old or new
    assert doc["password"] in (pa, pb) and doc["name"] == "cache"
    # the last store write wins once the agent is back
    final = json.loads(open(os.path.join(sc.tree.store, "cache.json")).read())["password"]
    b = sc.start_agent()                     # the stale .lock of a dead agent does not block
    b.wait_ready()
    d = sc.wait_published(password=final, timeout=5)
    assert not [f for f in os.listdir(sc.tree.runtime) if f.startswith(".tmp-")], \
        "temporary files of the killed agent left behind"
    assert d["previous"] is None or d["previous"]["password"] in (pa, pb)


def test_sighup_storm_leaves_the_agent_working(sc):
    a = sc.start_published(also_accept=("pw2",))
    for _ in range(30):
        a.send(signal.SIGHUP)
        time.sleep(0.005)
    a.barrier()                               # the loop still answers after the storm
    assert a.alive()
    mark = a.notify.mark()
    a.send(signal.SIGHUP)
    a.wait_notify("READY", "1", since=mark, timeout=5)
    sc.store_cred("app", "pw2")
    sc.wait_published(password="pw2")


def test_restart_repairs_format_files_a_crash_left_behind_the_json(sc):
    """A kill between renaming <name>.password/.env and <name>.json (docs/design.md §5.2: they are written
    first) leaves them one credential ahead of the JSON. The JSON's IN_MOVED_TO means the
    whole set is current, so a restarted agent that adopts the JSON must make the set
    agree with it again."""
    sc.redis.create_user("app", "pw-old", "pw-new")
    sc.store_cred("app", "pw-old")
    sc.write_config([sc.cred(formats=["json", "env", "password"])])
    assert sc.run_agent("--once").returncode == 0
    # what a kill right before the JSON's rename leaves behind
    for f, data in (("cache.password", b"pw-new"),
                    ("cache.env", b"REDIS_USERNAME='app'\nREDIS_PASSWORD='pw-new'\n")):
        tmp = sc.path(".tmp-" + f + "-crash")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o640)
        os.rename(tmp, sc.path(f))
    a = sc.start_agent()
    a.wait_ready()
    assert sc.read_doc()["password"] == "pw-old"
    h.wait_until(lambda: sc.read_bytes("cache.password") == b"pw-old", 3,
                 "cache.password to agree with the adopted cache.json again (it holds %r)"
                 % sc.read_bytes("cache.password"))
    assert "REDIS_PASSWORD='pw-old'" in sc.read_bytes("cache.env").decode().splitlines()
