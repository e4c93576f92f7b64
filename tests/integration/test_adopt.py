"""Adoption at start after a run was killed mid-publish: the .env and .password are
written before the .json, so a kill between them leaves them a version NEWER than the
.json. The next start must not take their readers back to the .json's version (the kill -9
torture test saw `.env` go from 1333 back to 1332): those files stay until the check
publishes the store's version."""
import os

import rc_harness as h


def read(sc, name):
    with open(sc.path(name), "rb") as f:
        return f.read()


def test_a_newer_env_and_password_left_by_a_killed_publish_are_not_taken_back(sc):
    sc.redis.create_user("app", "pw-a", "pw-b")
    sc.store_cred("app", "pw-a")
    sc.write_config([sc.cred(formats=["json", "env", "password"])])
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw-a")
    json_a = read(sc, "cache.json")
    sc.store_cred("app", "pw-b")
    sc.wait_published(password="pw-b")
    a.stop()
    # What a kill between the .password and the .json of version B leaves behind.
    with open(sc.path("cache.json.tmp"), "wb") as f:
        f.write(json_a)
    os.chmod(sc.path("cache.json.tmp"), 0o640)
    os.rename(sc.path("cache.json.tmp"), sc.path("cache.json"))
    env_b, pw_b = read(sc, "cache.env"), read(sc, "cache.password")
    assert b"pw-b" in env_b and pw_b.strip() == b"pw-b"

    seen = []   # every .env and .password a reader could see from now on

    def on_event(ev):
        if ev.name in ("cache.env", "cache.password") and ev.mask & h.IN_MOVED_TO:
            seen.append((ev.name, read(sc, ev.name)))
    w = sc.watch_runtime(on_event=on_event)
    b = sc.start_agent()
    b.wait_ready()
    sc.wait_published(password="pw-b")
    w.close()
    for name, data in seen:
        assert b"pw-a" not in data, "%s went back to the older version" % name
    assert read(sc, "cache.env") == env_b
    assert "left 2 file(s) of cache" in b.log()
