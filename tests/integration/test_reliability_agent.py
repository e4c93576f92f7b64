"""Faults the agent itself must survive without losing what it publishes (issue 10):
configs that would delete everything, a runtime_dir deleted under the agent, unsafe
config and hook files, hooks that leave children behind, reloads and Vault AppRole."""
import os
import signal
import time

import rc_harness as h
from vault_helpers import PW1, PW2, vault  # noqa: F401

MID_FILE_DELETED = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0e"
MID_RELOAD_REJECTED = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0f"
MID_RUNTIME_DIR_LOST = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b10"


def journal_entries(a, mid, since=0):
    return [m for m in a.journal.snapshot()[since:] if m.fields.get("MESSAGE_ID") == mid]


def wait_journal(a, mid, since=0, timeout=5, what=None):
    def check():
        if not a.alive():
            h.fail("agent exited %s while waiting for %s; log:\n%s"
                   % (a.proc.returncode, what or mid, a.log()[-3000:]))
        return journal_entries(a, mid, since)
    return h.wait_until(check, timeout, what or "journal MESSAGE_ID %s" % mid)


def reload_and_wait(a):
    nmark = a.notify.mark()
    a.send(signal.SIGHUP)
    i = a.wait_notify("RELOADING", "1", since=nmark, timeout=5)
    a.wait_notify("READY", "1", since=i, timeout=10)


# ---------------------------------------------------------------- D2: empty and shrinking configs

def test_config_without_credentials_is_refused_at_start_and_by_check_config(sc):
    with open(sc.tree.conf, "w") as f:
        f.write("")                      # a truncated file
    r = sc.run_agent("--check-config")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "no credentials are configured" in r.stderr and "allow_no_credentials" in r.stderr
    sc.write_config(credentials=[])
    r = sc.run_agent()
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "no credentials are configured" in r.stderr
    sc.write_config(credentials=[], agent={"allow_no_credentials": True})
    r = sc.run_agent("--check-config")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


def test_reload_to_an_empty_config_is_rejected_and_keeps_every_file(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    a = sc.start_agent(journal=True)
    a.wait_ready()
    sc.wait_published(password="pw1")
    for text in ("", sc.config_text(credentials=[])):
        with open(sc.tree.conf, "w") as f:
            f.write(text)
        jmark = len(a.journal.snapshot())
        reload_and_wait(a)
        e = wait_journal(a, MID_RELOAD_REJECTED, since=jmark, what="reload rejected")
        assert "no credentials are configured" in e[0].fields["MESSAGE"]
        assert sc.read_doc()["password"] == "pw1", "the published file must stay"
        assert not journal_entries(a, MID_FILE_DELETED, since=jmark)
    # taken out of service on purpose: the files go, each deletion is an event
    sc.write_config(credentials=[], agent={"allow_no_credentials": True})
    jmark = len(a.journal.snapshot())
    reload_and_wait(a)
    h.wait_until(lambda: sc.read_bytes("cache.json") is None, 5, "cache.json deleted")
    e = wait_journal(a, MID_FILE_DELETED, since=jmark, what="published file deleted")
    assert e[0].fields.get("REDIS_CREDS_NAME") == "cache"


def test_reload_removing_most_credentials_is_refused_unless_allow_removals(sc):
    names = ["c1", "c2", "c3"]
    sc.redis.create_user("app", "pw1")
    for n in names:
        sc.store_cred("app", "pw1", filename=n + ".json")
    sc.write_config([sc.cred(n) for n in names])
    a = sc.start_agent(journal=True)
    a.wait_ready()
    for n in names:
        sc.wait_published(n, password="pw1")

    sc.write_config([sc.cred("c1")])          # 2 of 3 would go: refused
    jmark = len(a.journal.snapshot())
    reload_and_wait(a)
    e = wait_journal(a, MID_RELOAD_REJECTED, since=jmark, what="reload rejected")
    assert "would delete 2 of the 3 published credentials" in e[0].fields["MESSAGE"]
    assert "allow_removals" in e[0].fields["MESSAGE"]
    assert all(sc.read_bytes(n + ".json") is not None for n in names)

    sc.write_config([sc.cred("c1"), sc.cred("c2")])   # 1 of 3: fine
    jmark = len(a.journal.snapshot())
    reload_and_wait(a)
    h.wait_until(lambda: sc.read_bytes("c3.json") is None, 5, "c3.json deleted")
    assert [m.fields.get("REDIS_CREDS_NAME") for m in journal_entries(a, MID_FILE_DELETED, jmark)] \
        == ["c3"]
    assert not journal_entries(a, MID_RELOAD_REJECTED, since=jmark)

    sc.write_config([sc.cred("c9")], agent={"allow_removals": True})   # 2 of 2, allowed
    sc.store_cred("app", "pw1", filename="c9.json")
    jmark = len(a.journal.snapshot())
    reload_and_wait(a)
    h.wait_until(lambda: sc.read_bytes("c1.json") is None and sc.read_bytes("c2.json") is None,
                 5, "c1.json and c2.json deleted")
    sc.wait_published("c9", password="pw1")
    assert sorted(m.fields.get("REDIS_CREDS_NAME")
                  for m in journal_entries(a, MID_FILE_DELETED, jmark)) == ["c1", "c2"]


# ---------------------------------------------------------------- D9: admin_password_file at load

def test_admin_password_file_permissions_are_checked_at_load_check_config_and_reload(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    pw = os.path.join(sc.tree.root, "admin-pw")
    with open(pw, "w") as f:
        f.write(h.ADMIN_PASSWORD + "\n")
    os.chmod(pw, 0o644)
    sc.write_config([sc.cred(rotation={"strategy": "redis-acl", "grace": "1s",
                                       "admin_username": h.ADMIN_USER,
                                       "admin_password_file": pw})])
    for args in (("--check-config",), ()):
        r = sc.run_agent(*args)
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
        assert "rotation.admin_password_file" in r.stderr and "mode 0644" in r.stderr, r.stderr
        assert h.ADMIN_PASSWORD not in r.stdout + r.stderr

    os.chmod(pw, 0o600)
    a = sc.start_agent(journal=True)
    a.wait_ready()
    sc.wait_published(password="pw1")
    os.chmod(pw, 0o640)
    jmark = len(a.journal.snapshot())
    reload_and_wait(a)
    e = wait_journal(a, MID_RELOAD_REJECTED, since=jmark, what="reload rejected")
    assert "admin_password_file" in e[0].fields["MESSAGE"] and "mode 0640" in e[0].fields["MESSAGE"]
    assert a.alive() and sc.read_doc()["password"] == "pw1"


# ---------------------------------------------------------------- D8: StrictModes for config and hooks

def test_agent_refuses_a_config_file_others_can_write(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    os.chmod(sc.tree.conf, 0o664)
    for args in (("--check-config",), ()):
        r = sc.run_agent(*args)
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
        assert "agent.conf: writable by group or others (mode 0664)" in r.stderr, r.stderr
    os.chmod(sc.tree.conf, 0o644)
    os.chmod(sc.tree.root, 0o777)
    try:
        r = sc.run_agent("--check-config")
    finally:
        os.chmod(sc.tree.root, 0o700)
    assert r.returncode == 2 and "its directory %s is writable" % sc.tree.root in r.stderr, r.stderr
    r = sc.run_agent("--check-config")
    assert r.returncode == 0, r.stderr


def test_hook_made_writable_by_others_after_load_is_not_run(sc):
    out = os.path.join(sc.tree.root, "hook.out")
    hook = os.path.join(sc.tree.root, "hook.sh")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\necho \"$REDIS_CREDS_VERSION\" >> %s\n" % out)
    os.chmod(hook, 0o755)
    sc.redis.create_user("app", "pw1", "pw2")
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(on_change=[hook])])
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    h.wait_until(lambda: os.path.exists(out), 5, "the hook to run for pw1")
    os.chmod(hook, 0o775)
    mark = a.log_mark()
    sc.store_cred("app", "pw2")
    sc.wait_published(password="pw2")
    a.wait_log(lambda l: "on_change %s: not run: writable by group or others" % hook in l,
               since=mark, what="the hook refused")
    with open(out) as f:
        assert len(f.read().split()) == 1, "the writable hook must not have run"


def test_file_source_secret_readable_by_others_is_warned_about_once(sc):
    sc.redis.create_user("app", "pw1", "pw2")
    sc.store_cred("app", "pw1")
    os.chmod(os.path.join(sc.tree.store, "cache.json"), 0o644)
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    sc.store_cred("app", "pw2", atomic=False)       # same file, still 0644
    sc.wait_published(password="pw2")
    mark = a.log_mark()
    r = sc.run_cli("-c", sc.tree.conf, "refresh", "cache")
    assert r.returncode == 0, r.stderr
    a.wait_log(lambda l: "unchanged" in l, since=mark, what="a third look at the file")
    said = [l for l in a.log_lines() if "cache.json is readable by others (mode 0644)" in l]
    assert len(said) == 1, said
    assert "warning" in said[0]


# ---------------------------------------------------------------- hooks and metrics

def pid_gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_hook_timeout_kills_its_process_group_with_the_children_it_forked(sc):
    pidfile = os.path.join(sc.tree.root, "sleeper.pid")
    hook = os.path.join(sc.tree.root, "hook.sh")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\nsleep 300 &\necho $! > %s.tmp\nmv %s.tmp %s\nsleep 300\n"
                % (pidfile, pidfile, pidfile))
    os.chmod(hook, 0o755)
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(on_change=[hook], on_change_timeout="1s")])
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    h.wait_until(lambda: os.path.exists(pidfile), 5, "the hook to fork its sleeper")
    sleeper = int(open(pidfile).read())
    assert not pid_gone(sleeper)
    a.wait_log(lambda l: "still running after 1s: killing it and its process group" in l,
               timeout=10, what="the hook's timeout")
    try:
        h.wait_until(lambda: pid_gone(sleeper), 5, "the hook's child to be killed with it")
    finally:
        if not pid_gone(sleeper):
            os.kill(sleeper, signal.SIGKILL)


def test_metrics_write_failure_is_a_rate_limited_warning(sc):
    mdir = os.path.join(sc.tree.root, "metrics")
    metrics = os.path.join(mdir, "rc.prom")
    sc.redis.create_user("app", "pw1", "pw2", "pw3")
    sc.store_cred("app", "pw1")
    sc.write_config(agent={"metrics_file": metrics})
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    a.wait_log(lambda l: "metrics_file %s: cannot write" % metrics in l and "warning" in l,
               what="a warning about the metrics file")
    for pw in ("pw2", "pw3"):        # each publish rewrites the file, and fails again
        sc.store_cred("app", pw)
        sc.wait_published(password=pw)
    warned = [l for l in a.log_lines() if "metrics_file" in l and "warning" in l]
    assert len(warned) == 1, warned
    os.mkdir(mdir)
    sc.store_cred("app", "pw1")
    sc.wait_published(password="pw1")
    h.wait_until(lambda: os.path.exists(metrics), 5, "the metrics file written again")
    a.wait_log("metrics_file %s: written again" % metrics)


# ---------------------------------------------------------------- D1: runtime_dir deleted

def test_deleted_or_moved_runtime_dir_is_recreated_locked_and_republished(sc):
    import shutil
    sc.redis.create_user("app", "pw1", "pw2", "pw3")
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(formats=["json", "env"])])
    a = sc.start_agent(journal=True)
    a.wait_ready()
    sc.wait_published(password="pw1")
    mode = os.stat(sc.tree.runtime).st_mode & 0o7777

    jmark = len(a.journal.snapshot())
    shutil.rmtree(sc.tree.runtime)
    e = wait_journal(a, MID_RUNTIME_DIR_LOST, since=jmark, what="runtime_dir lost")
    assert "created it again" in e[0].fields["MESSAGE"], e[0].fields
    doc = sc.wait_published(password="pw1")
    assert sc.read_bytes("cache.env") is not None
    assert os.stat(sc.tree.runtime).st_mode & 0o7777 == mode
    with open(os.path.join(sc.tree.runtime, ".lock")) as f:
        assert f.read().strip() == str(a.pid)
    # the lock is ours again: a second agent cannot take the directory
    r = sc.run_agent("--once")
    assert r.returncode == 1 and "in use by pid %d" % a.pid in r.stdout + r.stderr, r
    # and publishing goes on into the new directory
    sc.store_cred("app", "pw2")
    assert sc.wait_published(password="pw2")["version"] != doc["version"]

    jmark = len(a.journal.snapshot())
    os.rename(sc.tree.runtime, sc.tree.runtime + ".old")
    wait_journal(a, MID_RUNTIME_DIR_LOST, since=jmark, what="runtime_dir moved away")
    sc.wait_published(password="pw2")
    sc.store_cred("app", "pw3")
    sc.wait_published(password="pw3")
    assert a.alive()


def test_runtime_dir_that_cannot_be_recreated_makes_the_agent_exit_1(sc):
    """As under the shipped unit: only RuntimeDirectory= is writable. Here: the agent runs
    as nobody, and the runtime_dir's parent belongs to root."""
    import shutil
    import subprocess
    nobody = 65534
    os.chmod(sc.tree.root, 0o755)
    parent = os.path.join(sc.tree.root, "rt")
    os.mkdir(parent, 0o755)
    runtime = os.path.join(parent, "run")
    ctl = os.path.join(sc.tree.root, "ctl")
    for d in (runtime, ctl):
        os.mkdir(d, 0o750)
        os.chown(d, nobody, nobody)
    for d in (sc.tree.state, sc.tree.store):
        os.chown(d, nobody, nobody)
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    os.chown(os.path.join(sc.tree.store, "cache.json"), nobody, nobody)
    sc.write_config(agent={"runtime_dir": runtime, "control_socket": os.path.join(ctl, "c.sock")})
    os.chmod(sc.tree.conf, 0o644)
    logpath = os.path.join(sc.tree.root, "nobody.log")
    with open(logpath, "wb") as log:
        p = subprocess.Popen(["setpriv", "--reuid=%d" % nobody, "--regid=%d" % nobody,
                              "--clear-groups", h.AGENT_BIN, "-c", sc.tree.conf, "--foreground"],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             env=h.clean_env())
    try:
        def published():
            if p.poll() is not None:
                h.fail("agent exited %s: %s" % (p.returncode, open(logpath).read()[-3000:]))
            return os.path.exists(os.path.join(runtime, "cache.json"))
        h.wait_until(published, 10, "cache.json published by the agent running as nobody")
        shutil.rmtree(runtime)
        rc = p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = open(logpath).read()
    assert rc == 1, (rc, text[-3000:])
    assert "runtime_dir %s was deleted or moved away, and cannot be created again" % runtime in text
    assert "Permission denied" in text and "RuntimeDirectory=" in text, text[-3000:]


# ---------------------------------------------------------------- D10: SIGHUP keeps unchanged sources

def test_sighup_keeps_an_unchanged_approle_source_so_a_removed_secret_id_still_logs_in(vault, sc):
    vault.read_policy()
    auth = vault.approle(token_ttl=2, token_max_ttl=2)
    auth["remove_secret_id_file_after_reading"] = True
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": PW1})
    a = vault.start(sources=[vault.source(auth=auth)])
    sc.wait_published(password=PW1)
    assert not os.path.exists(auth["secret_id_file"]), "removed after reading"

    logins = vault.fake.count("/v1/auth/approle/login")
    reload_and_wait(a)
    # The token lives 2 s at most: the next login needs the secret id kept in memory.
    h.wait_until(lambda: vault.fake.count("/v1/auth/approle/login") > logins, 10,
                 "a login after the token's TTL")
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": PW2})
    r = sc.run_cli("-c", sc.tree.conf, "refresh", "cache")
    assert r.returncode == 0, r.stderr
    sc.wait_published(password=PW2, timeout=10)
    assert "secret_id_file" not in a.notify.last_status(), a.notify.last_status()

    # a source whose block changed is opened again (and, its secret id gone, says so)
    vault.write_config(sources=[vault.source(auth=auth, timeout="3s")])
    reload_and_wait(a)
    a.notify.wait_status(lambda s: "store-error" in s and "secret_id_file" in s, timeout=10,
                         what="the reopened source missing its secret id")


def test_sighup_does_not_wait_for_a_hung_store_request(vault, sc):
    """Reload as a generation swap: the new generation is in force at once; a check of
    the old one still out (a store request that hangs) is dropped when it ends, and the
    kept source's queue lets the new generation's check run only after it."""
    vault.read_policy()
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": PW1})
    a = vault.start(sources=[vault.source(timeout="20s")])
    sc.wait_published(password=PW1)
    kv = "/v1/secret/(meta)?data/redis/cache"
    vault.fake.inject(kv, "hang", times=1, seconds=30)
    reads = vault.fake.count(kv)
    mark = a.log_mark()
    assert sc.run_cli("-c", sc.tree.conf, "refresh", "cache").returncode == 0
    h.wait_until(lambda: vault.fake.count(kv) > reads, 5, "the refresh's read to reach the store (and hang)")
    reload_and_wait(a)   # within 10 s, while the read hangs for 20 s
    a.wait_log(lambda l: "reloaded" in l, since=mark, timeout=1)
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": PW2})
    vault.fake.release()
    assert sc.run_cli("-c", sc.tree.conf, "refresh", "cache").returncode == 0
    sc.wait_published(password=PW2, timeout=10)
