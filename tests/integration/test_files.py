"""The files in runtime_dir: modes, stale temporaries, symlinks, extra formats (docs/design.md §5)."""
import grp
import os
import stat
import time

import rc_harness as h


def test_published_file_is_0640_and_runtime_dir_is_created_0750(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    assert not os.path.exists(sc.tree.runtime)
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    assert h.mode_of(sc.tree.runtime) == 0o750, oct(h.mode_of(sc.tree.runtime))
    p = sc.path("cache.json")
    assert h.is_regular(p)
    assert h.mode_of(p) == 0o640, oct(h.mode_of(p))
    st = os.stat(p)
    assert st.st_gid == os.getgid(), "group \"\" means the agent's own group"


def test_credential_mode_override_applies_to_every_format(sc):
    sc.start_published(also_accept=("pw2",), credentials=[
        sc.cred(mode=h.Raw("0600"), formats=["json", "env", "password"])])
    for f in ("cache.json", "cache.env", "cache.password"):
        assert h.mode_of(sc.path(f)) == 0o600, "%s: %s" % (f, oct(h.mode_of(sc.path(f))))
    sc.store_cred("app", "pw2")              # a republish keeps the mode
    sc.wait_published(password="pw2")
    assert h.mode_of(sc.path("cache.json")) == 0o600


def test_stale_temporary_files_are_removed_at_start(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    os.mkdir(sc.tree.runtime, 0o750)
    stale = [".tmp-cache.json-1a2b3c", ".tmp-cache.env-XXXXXX", ".tmp-gone.json-0"]
    for f in stale:
        with open(os.path.join(sc.tree.runtime, f), "w") as fh:
            fh.write('{"format": 1, "name": "cache", "passw')   # a torn leftover
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    left = sorted(set(os.listdir(sc.tree.runtime)) & set(stale))
    assert not left, "stale temporary files left in runtime_dir: %r" % left


def test_symlink_planted_at_target_is_replaced_not_followed(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    os.mkdir(sc.tree.runtime, 0o750)
    victim = os.path.join(sc.tree.root, "victim.txt")
    with open(victim, "w") as f:
        f.write("precious\n")
    os.chmod(victim, 0o644)
    os.symlink(victim, sc.path("cache.json"))
    a = sc.start_agent()
    a.wait_ready()
    h.wait_until(lambda: h.is_regular(sc.path("cache.json")), 5,
                 "cache.json to become a regular file")
    assert sc.read_doc()["password"] == "pw1"
    with open(victim) as f:
        assert f.read() == "precious\n", "the agent wrote through a planted symlink"
    assert h.mode_of(victim) == 0o644
    assert a.alive()


def test_runtime_dir_that_is_a_symlink_is_refused(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    elsewhere = os.path.join(sc.tree.root, "elsewhere")
    os.mkdir(elsewhere, 0o750)
    os.symlink(elsewhere, sc.tree.runtime)
    sc.write_config()
    a = sc.start_agent()
    h.wait_until(lambda: not a.alive() or os.listdir(elsewhere), 5,
                 "the agent to exit or to write through the symlink")
    published = [f for f in os.listdir(elsewhere) if not f.startswith(".")]
    assert not published, "published through a symlinked runtime_dir: %r" % published
    rc = a.wait_exit(timeout=5)
    a.check_exit = False
    assert rc != 0, "a symlinked runtime_dir must be refused (docs/design.md §5.3)"


def test_env_and_password_formats_are_written_before_json(sc):
    sc.redis.create_user("app", "pw1", "pw2")
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(formats=["json", "env", "password"])])
    seen = []

    def consumer(ev):
        # when the JSON is renamed into place, the whole set must already be current
        if ev.name == "cache.json" and ev.mask & h.IN_MOVED_TO:
            doc = sc.read_doc()
            seen.append((doc["password"], sc.read_bytes("cache.password"),
                         sc.read_bytes("cache.env")))

    w = sc.watch_runtime(on_event=consumer)
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")

    env = sc.read_bytes("cache.env").decode()
    lines = env.splitlines()
    assert "REDIS_USERNAME='app'" in lines, env
    assert "REDIS_PASSWORD='pw1'" in lines, env
    assert sc.read_bytes("cache.password") == b"pw1", "the password alone, no newline"
    for f in ("cache.json", "cache.env", "cache.password"):
        assert h.mode_of(sc.path(f)) == 0o640, "%s: %s" % (f, oct(h.mode_of(sc.path(f))))

    sc.store_cred("app", "pw2")
    sc.wait_published(password="pw2")
    h.wait_until(lambda: len(seen) >= 2, 2, "two IN_MOVED_TO for cache.json")
    assert not w.errors, w.errors
    for pw, pwfile, envfile in seen:
        assert pwfile == pw.encode(), "cache.password not current when cache.json moved in"
        assert ("REDIS_PASSWORD='%s'" % pw) in envfile.decode().splitlines()

    order = [e.name for e in w.snapshot(mask=h.IN_MOVED_TO)
             if e.name in ("cache.json", "cache.env", "cache.password")]
    # every publish: env and password renamed into place, then json last
    assert order.count("cache.json") == 2, order
    j1 = order.index("cache.json")
    assert set(order[:j1]) == {"cache.env", "cache.password"}, order
    assert set(order[j1 + 1:-1]) == {"cache.env", "cache.password"} and order[-1] == "cache.json", order


def test_world_writable_runtime_dir_is_never_published_into(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    os.mkdir(sc.tree.runtime)
    os.chmod(sc.tree.runtime, 0o777)
    a = sc.start_agent()
    h.wait_until(lambda: not a.alive() or h.is_regular(sc.path("cache.json")), 5,
                 "the agent to refuse the directory or publish")
    if h.is_regular(sc.path("cache.json")):
        assert h.mode_of(sc.tree.runtime) & 0o002 == 0, \
            "published into a runtime_dir writable by others (docs/design.md §5.3): %s" % oct(h.mode_of(sc.tree.runtime))
    else:
        a.check_exit = False
        assert a.proc.returncode != 0


def test_env_format_refuses_a_password_with_a_quote(sc):
    bad = "pw'2"
    a = sc.start_published(also_accept=(bad,), credentials=[sc.cred(formats=["json", "env"])])
    mark = a.log_mark()
    sc.store_cred("app", bad)
    a.wait_log(lambda l: "env" in l and h.level_is_error(l), since=mark,
               what="an error about the env format")
    a.barrier()                               # that publication has ended
    env = sc.read_bytes("cache.env")
    assert env is not None and b"pw'2" not in env, env
    assert b"REDIS_PASSWORD='pw1'" in env
    assert a.alive()


def test_credential_path_cannot_escape_the_store_directory(sc):
    sc.redis.create_user("app", "pw1")
    # a valid credential one level above the store directory
    h.write_store_atomic(sc.tree.root, "escape.json", h.store_json("app", "pw1"))
    sc.write_config([sc.cred("cache", path="../escape.json")])
    r = sc.run_agent("--check-config")
    a = sc.start_agent()
    # the first attempt ends (READY=1) with an error naming the path, or the agent exits
    h.wait_until(lambda: not a.alive() or a.notify.find("READY", "1") is not None, 10,
                 "READY=1 or an exit")
    if a.alive():
        a.wait_log(lambda l: "cache" in l and h.level_is_error(l),
                   what="an error about the credential's path")
        a.barrier()
    assert sc.read_bytes("cache.json") is None, \
        "published a credential read from outside the store directory (docs/design.md §14.3)"
    if not a.alive():
        a.check_exit = False
        assert a.proc.returncode != 0
    print("--check-config: %s %s" % (r.returncode, r.stderr.strip()))


def test_group_settings_set_file_groups_and_directory_mode(sc):
    daemon_gid = grp.getgrnam("daemon").gr_gid
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1", filename="cache.json")
    sc.store_cred("app", "pw1", filename="sessions.json")
    # agent.group for everything: the directory is 0750 and that group
    sc.write_config([sc.cred("cache")], agent={"group": "daemon"})
    assert sc.run_agent("--once").returncode == 0
    st = os.stat(sc.tree.runtime)
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o750, daemon_gid), (oct(st.st_mode), st.st_gid)
    assert os.stat(sc.path("cache.json")).st_gid == daemon_gid
    # credentials with different groups: each file its group, the directory 0755
    sc.write_config([sc.cred("cache"), sc.cred("sessions", group="nogroup")],
                    agent={"group": "daemon"})
    assert sc.run_agent("--once").returncode == 0
    assert os.stat(sc.path("sessions.json")).st_gid == grp.getgrnam("nogroup").gr_gid
    assert os.stat(sc.path("cache.json")).st_gid == daemon_gid
    assert h.mode_of(sc.path("sessions.json")) == 0o640
    assert h.mode_of(sc.tree.runtime) == 0o755, oct(h.mode_of(sc.tree.runtime))


def test_oversized_store_file_is_not_published(sc, agent):
    before = sc.read_bytes()
    mark = agent.log_mark()
    sc.store_cred("app", "x" * (80 * 1024))        # a credential file is at most 64 KiB
    agent.wait_log(lambda l: "cache" in l and h.level_is_error(l), since=mark,
                   what="an error about the oversized store file")
    agent.barrier()                           # the failed attempt has ended
    assert sc.read_bytes() == before
    assert agent.alive()


def test_second_agent_does_not_clean_temporaries_it_does_not_own(sc):
    sc.start_published(publish=False)
    planted = sc.path(".tmp-cache.json-inflight")   # as if the running agent were writing
    with open(planted, "w") as f:
        f.write("{")
    conf2 = os.path.join(sc.tree.root, "second.conf")
    sc.write_config(path=conf2, agent={"control_socket": os.path.join(sc.tree.root, "c2.sock")})
    b = sc.start_agent(conf=conf2, tag="second")
    assert b.wait_exit(timeout=5) == 1
    b.check_exit = False
    assert os.path.exists(planted), "temporary files are cleaned only under the lock (docs/design.md §2.3)"
