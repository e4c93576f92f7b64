"""Publishing: the credential file's contents, rotation through the store, store formats
(docs/design.md §2, §4.4 `file` source, §5)."""
import calendar
import json
import os
import time

import rc_harness as h


def test_first_credential_is_published_with_every_contract_field(sc):
    sc.start_published(publish=False)
    raw = sc.read_bytes("cache.json")
    assert raw is not None, "cache.json not published before READY=1 (docs/design.md §11.1)"
    assert raw.endswith(b"\n"), "the file ends with a newline (docs/design.md §5)"
    doc = json.loads(raw.decode("utf-8"))
    assert doc["format"] == 1
    assert doc["name"] == "cache"
    assert doc["username"] == "app"
    assert doc["password"] == "pw1"
    assert h.VERSION_RE.match(doc["version"]), doc["version"]
    assert doc["source"] == "local:cache.json"
    assert h.RFC3339_UTC_RE.match(doc["published_at"]), doc["published_at"]
    assert doc["validated"] == "all"
    assert doc["expires_at"] is None
    assert doc["previous"] is None
    # published_at is now-ish
    ts = time.strptime(doc["published_at"][:19], "%Y-%m-%dT%H:%M:%S")
    assert abs(calendar.timegm(ts) - time.time()) < 60


def test_new_password_in_store_is_published_quickly_with_previous_after_acl_first_rotation(sc):
    a = sc.start_published()
    first = a.first_doc

    # ACL first: Redis accepts both, then the store moves to the new password.
    sc.redis.add_password("app", "pw2")
    t0 = time.monotonic()
    sc.store_cred("app", "pw2")
    doc = sc.wait_published(password="pw2", timeout=5)
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0, "publish took %.3fs after the store changed (inotify source)" % elapsed
    assert doc["version"] != first["version"]
    assert h.VERSION_RE.match(doc["version"])
    assert doc["previous"] == {"username": "app", "password": "pw1",
                               "version": first["version"], "expires_at": None}
    assert a.find_log(lambda l: "published" in l) is not None
    # then the old password is dropped from the ACL: nothing changes for the agent
    sc.redis.remove_password("app", "pw1")
    assert sc.read_doc()["password"] == "pw2"
    assert a.alive()


def test_store_written_in_place_is_published(sc):
    """A writer that opens, truncates and writes the store file (IN_CLOSE_WRITE)."""
    sc.start_published(also_accept=("pw2",), atomic=False)
    t0 = time.monotonic()
    sc.store_cred("app", "pw2", atomic=False)
    doc = sc.wait_published(password="pw2", timeout=5)
    assert time.monotonic() - t0 < 2.0
    assert doc["previous"]["password"] == "pw1"


def test_bare_password_store_file_publishes_null_username(sc):
    sc.redis.set_default_password("bare-pw-1")
    sc.store("cache.json", "bare-pw-1")
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready()
    doc = sc.wait_published(password="bare-pw-1")
    assert doc["username"] is None, "a bare password is the default user: username null (docs/design.md §5.1)"
    assert h.VERSION_RE.match(doc["version"])
    # the published credential really works as the default user
    assert sc.redis.auth_ok(None, doc["password"])


def test_empty_store_file_at_start_is_not_published_and_error_logged(sc):
    sc.redis.create_user("app", "pw1")
    sc.store("cache.json", "")
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready()
    a.wait_log(lambda l: "cache" in l and h.level_is_error(l), what="an error about cache")
    assert sc.read_bytes("cache.json") is None
    assert a.alive()


def test_empty_store_file_keeps_published_credential_and_logs_error(sc, agent):
    before = sc.read_bytes()
    mark = agent.log_mark()
    sc.store("cache.json", "", atomic=False)
    agent.wait_log(lambda l: "cache" in l and h.level_is_error(l), since=mark,
                   what="an error about the empty store file")
    agent.barrier()                           # the failed attempt has ended
    assert sc.read_bytes() == before, "a failing store never damages the published file (docs/design.md §2.3)"
    assert agent.alive()
    # and the next good value still goes through
    sc.redis.add_password("app", "pw2")
    sc.store_cred("app", "pw2")
    sc.wait_published(password="pw2")


def _hardlinked_store(sc, filename="cache.json"):
    """A second name for the store file outside the watched directory: writes through it
    raise no inotify event in the store directory."""
    outside = os.path.join(sc.tree.root, "outside")
    os.mkdir(outside, 0o700)
    os.link(os.path.join(sc.tree.store, filename), os.path.join(outside, filename))
    return outside


def test_poll_interval_catches_a_change_inotify_did_not_see(sc):
    sc.start_published(also_accept=("pw2",), credentials=[sc.cred(poll_interval="1s")],
                       atomic=False)
    outside = _hardlinked_store(sc)
    h.write_store_inplace(outside, "cache.json", h.store_json("app", "pw2"))
    sc.wait_published(password="pw2", timeout=4)


def test_on_change_hook_runs_after_each_publish_and_sees_the_new_file(sc):
    sc.redis.create_user("app", "pw1", "pw2")
    sc.store_cred("app", "pw1")
    hook = os.path.join(sc.tree.root, "hook.py")
    out = os.path.join(sc.tree.root, "hook.out")
    with open(hook, "w") as f:
        f.write("import json, sys\n"
                "d = json.load(open(sys.argv[1] + '/cache.json'))\n"
                "open(sys.argv[2], 'a').write(d['version'] + ' ' + json.dumps(sys.argv[3:]) + '\\n')\n")
    os.chmod(hook, 0o755)
    sc.write_config([sc.cred(on_change=["/usr/bin/python3", hook, sc.tree.runtime, out,
                                        "two words", "$HOME"])])
    a = sc.start_agent()
    a.wait_ready()
    v1 = sc.wait_published(password="pw1")["version"]

    def lines():
        try:
            return open(out).read().splitlines()
        except FileNotFoundError:
            return []
    h.wait_until(lambda: len(lines()) >= 1, 5, "the on_change hook to run")
    assert lines()[0] == v1 + ' ["two words", "$HOME"]', "argv passed as is, no shell: %r" % lines()
    sc.store_cred("app", "pw2")
    v2 = sc.wait_published(password="pw2")["version"]
    h.wait_until(lambda: len(lines()) >= 2, 5, "the on_change hook to run again")
    assert lines()[1].split()[0] == v2
    a.barrier()                               # no further publication is under way
    h.wait_until(lambda: not a.children(), 5, "the hooks to exit")
    assert len(lines()) == 2, lines()


def test_version_is_keyed_by_a_0600_host_key_in_state_dir(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    assert os.listdir(sc.tree.state) == []
    r = sc.run_agent("--once")
    assert r.returncode == 0, r.stderr
    v1 = sc.read_doc()["version"]
    keys = [f for f in os.listdir(sc.tree.state) if h.is_regular(os.path.join(sc.tree.state, f))]
    assert keys, "no host key created in state_dir"
    for f in keys:
        assert h.mode_of(os.path.join(sc.tree.state, f)) == 0o600, f

    # another host (another state_dir, another runtime_dir): same secret, another version
    other_state = os.path.join(sc.tree.root, "state2")
    os.mkdir(other_state, 0o700)
    other_run = os.path.join(sc.tree.root, "run2")
    conf2 = sc.write_config(path=os.path.join(sc.tree.root, "other.conf"),
                            agent={"state_dir": other_state, "runtime_dir": other_run})
    r = sc.run_agent("--once", conf=conf2)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(other_run, "cache.json")) as f:
        v2 = json.load(f)["version"]
    assert h.VERSION_RE.match(v2)
    assert v1 != v2, "version must be keyed by the host key, not a plain hash of the secret"


def test_store_file_created_after_start_is_published_at_once(sc):
    sc.redis.create_user("app", "pw1")
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready(timeout=8)
    assert sc.read_bytes() is None
    assert a.alive()
    t0 = time.monotonic()
    sc.store_cred("app", "pw1")
    sc.wait_published(password="pw1", timeout=5)
    assert time.monotonic() - t0 < 2.0


def test_store_file_that_is_a_fifo_does_not_hang_the_agent(sc):
    sc.redis.create_user("app", "pw1")
    os.mkfifo(os.path.join(sc.tree.store, "cache.json"), 0o600)
    sc.write_config(agent={"startup_timeout": "2s"})
    a = sc.start_agent(watchdog_usec=1000000)
    a.wait_ready(timeout=5)
    t0 = time.monotonic()
    h.wait_until(lambda: len([t for t, v in a.notify.values("WATCHDOG") if t >= t0]) >= 2, 1.5,
                 "WATCHDOG=1 pings (the loop stalled on a FIFO in the store)")
    # a writer replaces the FIFO with a regular file: picked up
    sc.store_cred("app", "pw1")
    sc.wait_published(password="pw1", timeout=5)
