"""SIGHUP reloads the configuration (docs/design.md §5.3 removal, §11.2)."""
import os
import signal

import rc_harness as h


def test_sighup_with_broken_config_keeps_running_on_old_config(sc):
    a = sc.start_published(also_accept=("pw2",))
    good = open(sc.tree.conf).read()

    with open(sc.tree.conf, "w") as f:
        f.write(good + "\nthis is = not libconfig {{\n")
    mark = a.log_mark()
    nmark = a.notify.mark()
    a.send(signal.SIGHUP)
    line = a.wait_log(lambda l: os.path.basename(sc.tree.conf) in l and h.level_is_error(l),
                      since=mark, timeout=5, what="an error naming the config file")
    a.barrier()                               # the SIGHUP has been handled in full
    assert a.alive(), "a broken config on SIGHUP must not stop the agent"
    assert a.notify.find("STOPPING", since=nmark) is None
    # the old config is still in force: a store change is still validated and published
    sc.store_cred("app", "pw2")
    sc.wait_published(password="pw2", timeout=5)
    assert a.alive()
    print(line)


def test_sighup_removing_a_credential_removes_its_file_and_adding_one_publishes_it(sc):
    sc.redis.create_user("app", "pw1")
    for f in ("cache.json", "sessions.json", "queue.json"):
        sc.store_cred("app", "pw1", filename=f)
    sc.write_config([sc.cred("cache"), sc.cred("sessions")])
    a = sc.start_agent()
    a.wait_ready()
    cache = sc.wait_published("cache", password="pw1")
    sc.wait_published("sessions", password="pw1")

    sc.write_config([sc.cred("cache"), sc.cred("queue")])
    mark = a.log_mark()
    nmark = a.notify.mark()
    a.send(signal.SIGHUP)
    i = a.wait_notify("RELOADING", "1", since=nmark, timeout=3)
    a.wait_notify("READY", "1", since=i, timeout=5)
    sc.wait_published("queue", password="pw1", timeout=5)
    h.wait_until(lambda: sc.read_bytes("sessions.json") is None, 3, "sessions.json removed")
    assert a.find_log(lambda l: "sessions" in l, since=mark), "removal noticed in the log (docs/design.md §5.3)"
    doc = sc.read_doc("cache")
    assert doc["version"] == cache["version"]
    a.notify.wait_status(lambda s: "2/2 current" in s and "queue" in s and "sessions" not in s,
                         timeout=3, what="STATUS with cache and queue")


def test_sighup_removing_formats_removes_their_files(sc):
    a = sc.start_published(credentials=[sc.cred(formats=["json", "env", "password"])])
    assert sc.read_bytes("cache.env") is not None and sc.read_bytes("cache.password") is not None

    sc.write_config([sc.cred(formats=["json"])])
    nmark = a.notify.mark()
    a.send(signal.SIGHUP)
    a.wait_notify("READY", "1", since=nmark, timeout=5)
    h.wait_until(lambda: sc.read_bytes("cache.env") is None and sc.read_bytes("cache.password") is None,
                 3, "cache.env and cache.password removed")
    assert sc.read_doc()["password"] == "pw1"


def test_credential_removed_from_config_at_start_has_its_file_removed(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1", filename="cache.json")
    sc.store_cred("app", "pw1", filename="sessions.json")
    sc.write_config([sc.cred("cache"), sc.cred("sessions")])
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published("sessions", password="pw1")
    assert a.stop() == 0

    sc.write_config([sc.cred("cache")])
    b = sc.start_agent()
    b.wait_ready()
    h.wait_until(lambda: sc.read_bytes("sessions.json") is None, 3,
                 "sessions.json removed at start")
    assert sc.read_doc("cache")["password"] == "pw1"


def test_sighup_applies_changed_settings_of_a_kept_credential(sc):
    r2 = sc.another_redis()
    sc.redis.create_user("app", "pw1")
    r2.create_user("app", "pw2")
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred()])
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    mark = a.log_mark()
    sc.store_cred("app", "pw2")                     # the old endpoint refuses it
    a.wait_log("refused", since=mark)
    # Redis moved: the credential now points at r2, with another mode
    sc.write_config([sc.cred(endpoints=[r2.endpoint], mode=h.Raw("0600"))])
    nmark = a.notify.mark()
    a.send(signal.SIGHUP)
    a.wait_notify("READY", "1", since=nmark, timeout=5)
    doc = sc.wait_published(password="pw2", timeout=5)
    assert doc["previous"]["password"] == "pw1"
    assert h.mode_of(sc.path("cache.json")) == 0o600
