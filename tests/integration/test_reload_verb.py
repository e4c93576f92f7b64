"""`redis-creds reload`: asks the agent over its control socket and waits for the outcome
(exit 0 in force, 2 rejected as a configuration error, 1 anything else), as the unit's
ExecReload= uses it."""
import json
import os
import subprocess

import rc_harness as h

NOBODY = 65534    # nobody:nogroup, neither root nor the agent's user
NOGROUP = 65534


def _running(sc, names=("cache",), agent=None):
    sc.redis.create_user("app", "pw1", "pw2")
    for n in names:
        sc.store_cred("app", "pw1", filename=n + ".json")
    sc.write_config([sc.cred(n) for n in names], agent=agent)
    a = sc.start_agent()
    a.wait_ready()
    for n in names:
        sc.wait_published(n, password="pw1")
    return a


def _reload(sc, *args, timeout=30):
    return sc.run_cli("--control-socket", sc.tree.control, "reload", *args, timeout=timeout)


def _status_names(sc):
    r = sc.run_cli("--control-socket", sc.tree.control, "status", "--json")
    return sorted(c["name"] for c in json.loads(r.stdout)["credentials"])


def test_good_config_exits_0_with_the_new_config_in_force(sc):
    _running(sc)
    sc.store_cred("app", "pw1", filename="queue.json")
    sc.write_config([sc.cred("cache"), sc.cred("queue")])
    r = _reload(sc)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    # in force when the command returns: the agent already runs both credentials
    assert _status_names(sc) == ["cache", "queue"]
    sc.wait_published("queue", password="pw1")


def test_bad_config_exits_2_and_the_old_config_keeps_serving(sc):
    a = _running(sc)
    good = open(sc.tree.conf).read()
    with open(sc.tree.conf, "w") as f:
        f.write(good + "\nthis is = not libconfig {{\n")
    r = _reload(sc)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "rejected, the running configuration stays in force" in r.stderr, r.stderr
    assert os.path.basename(sc.tree.conf) in r.stderr, r.stderr
    assert a.alive()
    sc.store_cred("app", "pw2")                     # the old config still publishes
    sc.wait_published(password="pw2", timeout=5)


def test_a_config_without_credentials_exits_2(sc):
    _running(sc)
    sc.write_config([])
    r = _reload(sc)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "allow_no_credentials" in r.stderr, r.stderr
    assert sc.read_bytes("cache.json") is not None


def test_shrinking_reload_exits_2_unless_allow_removals(sc):
    names = ("c1", "c2", "c3")
    _running(sc, names)
    sc.write_config([sc.cred("c1")])                # 2 of 3 would go
    r = _reload(sc)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "would delete 2 of the 3 published credentials" in r.stderr, r.stderr
    assert all(sc.read_bytes(n + ".json") is not None for n in names)

    r = _reload(sc, "--allow-removals")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert _status_names(sc) == ["c1"]
    h.wait_until(lambda: sc.read_bytes("c2.json") is None and sc.read_bytes("c3.json") is None,
                 5, "c2.json and c3.json deleted")
    # the flag is for that one reload: the next shrink is guarded again
    sc.store_cred("app", "pw1", filename="c4.json")
    sc.write_config([sc.cred("c1"), sc.cred("c4")])
    assert _reload(sc).returncode == 0
    sc.wait_published("c4", password="pw1")
    sc.write_config([sc.cred("c9")])
    r = _reload(sc)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)


def test_pid_must_be_the_agent_behind_the_socket(sc):
    a = _running(sc)
    wrong = os.getpid()
    r = _reload(sc, "--pid", str(wrong))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert ("the agent at this socket is pid %d, not pid %d" % (a.proc.pid, wrong)) in r.stderr, \
        r.stderr
    assert not a.find_log(lambda l: "reloading" in l), "no reload was asked"
    r = _reload(sc, "--pid", str(a.proc.pid))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    a.wait_log(lambda l: "reloaded" in l, what="the reload")


def test_a_member_of_the_socket_group_is_denied_with_exit_1(sc):
    os.chmod(sc.tree.root, 0o711)                   # nobody may reach the socket
    a = _running(sc, agent={"group": "nogroup"})
    r = subprocess.run([h.CLI_BIN, "--control-socket", sc.tree.control, "reload"], user=NOBODY,
                       group=NOGROUP, extra_groups=[], cwd="/", stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, env=h.clean_env(), timeout=30)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "permission denied: reload needs root or the agent's user" in r.stderr, r.stderr
    assert not a.find_log(lambda l: "reloading" in l)


def test_no_agent_exits_1(sc):
    r = _reload(sc)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "cannot reach the agent at %s" % sc.tree.control in r.stderr, r.stderr
    assert "is the agent running?" in r.stderr


def test_bad_arguments_are_usage_errors(sc):
    for args in (["--pid"], ["--pid", "12x"], ["--timeout", "soon"], ["cache"]):
        r = _reload(sc, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)



def test_the_cli_gives_up_at_its_timeout_and_checks_pid_before_asking(sc):
    """A listener that accepts and never answers stands for an agent whose reload has not
    ended (one that waits for a rotation step): exit 1 at --timeout. Its pid is ours, so
    --pid is checked against it before anything is sent."""
    import socket
    import time
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sc.tree.control)
    srv.listen(4)
    sc.on_close(srv.close)
    t0 = time.monotonic()
    r = _reload(sc, "--timeout", "1s")
    took = time.monotonic() - t0
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "no outcome (timeout 1s)" in r.stderr, r.stderr
    assert 0.9 <= took < 8, took
    conn, _ = srv.accept()
    conn.settimeout(1)
    assert conn.recv(64) == b"reload\n"          # what it asked
    conn.close()
    r = _reload(sc, "--pid", str(os.getpid() + 1), "--timeout", "1s")
    assert r.returncode == 1 and "is pid %d, not pid %d" % (os.getpid(), os.getpid() + 1) in r.stderr, \
        (r.returncode, r.stderr)
    conn, _ = srv.accept()
    conn.settimeout(1)
    assert conn.recv(64) == b""                   # nothing sent to the wrong process
    conn.close()
