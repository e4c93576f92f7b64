"""The control socket under abuse: malformed requests, floods, rights by peer uid, what is
at its path before the agent starts; and the agent's own core-dump settings."""
import json
import os
import resource
import socket
import stat
import subprocess
import sys
import time

import rc_harness as h

NOBODY = 65534    # nobody and nogroup on Debian: a user that is neither root nor the agent's
NOGROUP = 65534


def _running(sc, agent=None):
    sc.redis.create_user("app", "pw1", "pw2", "pw3")
    sc.store_cred("app", "pw1")
    sc.write_config(agent=agent)
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    return a


def _ask_raw(path, data, timeout=3.0):
    """Sends bytes on a fresh connection and reads until the agent closes; returns what it
    answered (b"" when it closed without a word) or None when it said nothing in time."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(data)
        got = b""
        while True:
            b = s.recv(4096)
            if not b:
                return got
            got += b
    except socket.timeout:
        return None
    finally:
        s.close()


def test_request_with_a_nul_byte_gets_an_error_answer(sc):
    _running(sc)
    for req in (b"stat\x00us\n", b"status\x00\n", b"\x00\n"):
        t0 = time.monotonic()
        ans = _ask_raw(sc.tree.control, req)
        assert ans is not None, "no answer to %r within 3s" % req
        j = json.loads(ans)
        assert j["ok"] is False and "NUL" in j["error"], j
        assert time.monotonic() - t0 < 3
    # a request without a newline, then end of input, is answered too
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(sc.tree.control)
    s.sendall(b"status")
    s.shutdown(socket.SHUT_WR)
    j = json.loads(s.recv(1 << 20))
    s.close()
    assert j["credentials"][0]["name"] == "cache", j
    # too long: an error, not a silent close
    j = json.loads(_ask_raw(sc.tree.control, b"s" * 2000 + b"\n"))
    assert j["ok"] is False and "too long" in j["error"], j
    # and the well-formed one still works
    j = json.loads(_ask_raw(sc.tree.control, b"status\n"))
    assert j["credentials"][0]["current"] is True, j


def _limit(pid, name):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith(name):
                return line[len(name):].split()[:2]
    raise AssertionError("no %r in /proc/%d/limits" % (name, pid))


def test_agent_disables_its_core_dumps(sc):
    # whatever its parent allowed (here: cores as large as the hard limit lets), the
    # running agent's core limit is 0, soft and hard
    old = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (old[1], old[1]))
    try:
        a = _running(sc)
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, old)
    assert _limit(a.pid, "Max core file size") == ["0", "0"]


def _start_expecting_exit(sc, agent=None):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config(agent=agent)
    a = sc.start_agent()
    rc = a.wait_exit(timeout=10)
    a.check_exit = False
    return a, rc


def test_a_regular_file_at_the_socket_path_is_not_unlinked(sc):
    with open(sc.tree.control, "w") as f:
        f.write("operator's notes\n")
    a, rc = _start_expecting_exit(sc)
    assert rc == 1, rc
    log = a.log()
    assert "a regular file" in log and "not a stale socket" in log, log[-2000:]
    with open(sc.tree.control) as f:
        assert f.read() == "operator's notes\n"


def test_another_users_socket_at_the_path_is_not_unlinked(sc):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sc.tree.control)
    s.close()
    os.chown(sc.tree.control, NOBODY, NOGROUP)
    a, rc = _start_expecting_exit(sc)
    assert rc == 1, rc
    assert "owner uid %d" % NOBODY in a.log(), a.log()[-2000:]
    st = os.lstat(sc.tree.control)
    assert stat.S_ISSOCK(st.st_mode) and st.st_uid == NOBODY


def test_a_stale_socket_of_ours_is_replaced_with_mode_0660(sc):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sc.tree.control)
    s.close()
    _running(sc, agent={"group": "nogroup"})
    st = os.lstat(sc.tree.control)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == NOGROUP, (oct(st.st_mode), st.st_gid)
    j = json.loads(_ask_raw(sc.tree.control, b"status\n"))
    assert j["credentials"][0]["name"] == "cache"


def test_a_socket_directory_writable_by_others_is_refused(sc):
    d = os.path.join(sc.tree.root, "ctl")
    os.mkdir(d)
    os.chmod(d, 0o777)
    a, rc = _start_expecting_exit(sc, agent={"control_socket": os.path.join(d, "c.sock")})
    assert rc == 1, rc
    assert "writable by group or others" in a.log(), a.log()[-2000:]
    assert os.listdir(d) == []


# ------------------------------------------------------------------ rights and floods

def _as_nobody(args, **kw):
    """Runs a command as nobody:nogroup with no other group (a user in the socket's group
    when that group is nogroup, neither root nor the agent's user)."""
    return subprocess.run(args, user=NOBODY, group=NOGROUP, extra_groups=[], cwd="/",
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=h.clean_env(), **kw)


def _cli_as_nobody(sc, *args):
    return _as_nobody([h.CLI_BIN, "--control-socket", sc.tree.control] + list(args), timeout=10)


def _reachable_by_others(sc):
    os.chmod(sc.tree.root, 0o711)    # others may traverse to the socket, not list the tree


def test_group_member_gets_status_but_not_refresh_or_rotate(sc):
    _reachable_by_others(sc)
    _running(sc, agent={"group": "nogroup"})
    r = _cli_as_nobody(sc, "status")
    assert r.returncode == 0 and "cache" in r.stdout, (r.returncode, r.stdout, r.stderr)
    for verb in ("refresh", "rotate"):
        r = _cli_as_nobody(sc, verb, "cache")
        assert r.returncode == 1, (verb, r.returncode, r.stdout, r.stderr)
        assert ("redis-creds %s: permission denied: %s needs root or the agent's user"
                % (verb, verb)) in r.stderr, r.stderr
    r = sc.run_cli("--control-socket", sc.tree.control, "refresh", "cache")   # root
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


def test_control_group_gives_the_socket_its_own_group(sc):
    _reachable_by_others(sc)
    _running(sc, agent={"group": "", "control_group": "nogroup"})
    st = os.lstat(sc.tree.control)
    assert st.st_gid == NOGROUP and stat.S_IMODE(st.st_mode) == 0o660
    assert os.stat(sc.tree.runtime).st_gid != NOGROUP     # consumers' group unchanged
    r = _cli_as_nobody(sc, "status")
    assert r.returncode == 0 and "cache" in r.stdout, (r.returncode, r.stdout, r.stderr)
    # unset, it follows agent.group as before
    sc2_conf = sc.write_config(agent={"group": ""}, path=os.path.join(sc.tree.root, "b.conf"))
    r = sc.run_agent("--check-config", conf=sc2_conf)
    assert r.returncode == 0, r.stderr


FLOOD = r"""
import json, select, socket, struct, sys, time
path, n = sys.argv[1], int(sys.argv[2])
socks, timeouts = [], 0
for i in range(n):
    # blocking, with a 2 s send timeout: a unix connect() waits that long for room in a
    # full backlog, then fails with EAGAIN (a socket timeout would make it fail at once)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 2, 0))
    try:
        s.connect(path)
        socks.append(s)
    except BlockingIOError:
        timeouts += 1
        s.close()
print(json.dumps({"connected": len(socks), "timeouts": timeouts}), flush=True)
p = select.poll()
byfd = {s.fileno(): s for s in socks}
for fd in byfd:
    p.register(fd, select.POLLIN)
errors, held = {}, len(byfd)
deadline = time.monotonic() + float(sys.argv[3])
while byfd and time.monotonic() < deadline:
    for fd, ev in p.poll(100):
        s = byfd.pop(fd)
        p.unregister(fd)
        held -= 1
        data = s.recv(4096)
        if data:
            e = json.loads(data).get("error", "?")
            errors[e] = errors.get(e, 0) + 1
print(json.dumps({"held": held, "errors": errors}), flush=True)
sys.stdin.readline()
"""


def _flood(cmd_prefix_kw, path, n, window):
    """Starts the flood; returns (process, first report)."""
    p = subprocess.Popen([sys.executable, "-c", FLOOD, path, str(n), str(window)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/",
                         env=h.clean_env(), **cmd_prefix_kw)
    first = json.loads(p.stdout.readline())
    return p, first


def _flood_result(p):
    res = json.loads(p.stdout.readline())
    p.stdin.close()
    p.wait(timeout=10)
    return res


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_connection_flood_from_the_group_is_capped_and_status_still_answers(sc):
    _reachable_by_others(sc)
    a = _running(sc, agent={"group": "nogroup"})
    flood, first = _flood(dict(user=NOBODY, group=NOGROUP, extra_groups=[]),
                          sc.tree.control, 300, 3.0)
    try:
        assert first["timeouts"] == 0, first
        # the operator (root) still gets an answer at once, and publishing goes on
        t0 = time.monotonic()
        r = sc.run_cli("--control-socket", sc.tree.control, "status")
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        assert time.monotonic() - t0 < 3, "status took %.2fs" % (time.monotonic() - t0)
        sc.store_cred("app", "pw2")
        sc.wait_published(password="pw2", timeout=5)
    finally:
        res = _flood_result(flood)
    assert res["held"] <= 16, res
    assert res["errors"].get("too many connections from this user; try again later", 0) >= 284 - 16, res
    assert a.find_log(lambda l: "refused" in l and "too many connections" in l), a.log()[-2000:]


def test_fd_exhaustion_neither_spins_nor_leaves_peers_waiting(sc):
    a = _running(sc)
    nfds = len(os.listdir("/proc/%d/fd" % a.pid))
    soft, hard = resource.prlimit(a.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(a.pid, resource.RLIMIT_NOFILE, (nfds + 3, hard))
    cpu0 = _cpu_seconds(a.pid)
    flood, first = _flood({}, sc.tree.control, 100, 2.0)
    res = _flood_result(flood)
    cpu = _cpu_seconds(a.pid) - cpu0
    resource.prlimit(a.pid, resource.RLIMIT_NOFILE, (soft, hard))
    # every peer was accepted and answered (none left in the backlog), the loop did not spin
    assert first["timeouts"] == 0, (first, a.log()[-2000:])
    assert res["held"] <= 4, res
    assert res["errors"].get("the agent is out of file descriptors; try again later", 0) >= 90, res
    assert cpu < 1.0, "the agent used %.2fs of CPU during the flood" % cpu
    # and once descriptors are free again, everything works
    r = sc.run_cli("--control-socket", sc.tree.control, "status")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    sc.store_cred("app", "pw3")
    sc.wait_published(password="pw3", timeout=5)


def test_agent_running_as_its_own_user_is_not_dumpable_and_that_user_may_refresh(sc):
    # the agent as nobody: its tree belongs to nobody, the control socket too
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config(agent={"group": ""})
    for d in (sc.tree.root, sc.tree.store, sc.tree.state):
        os.chown(d, NOBODY, NOGROUP)
    os.chown(os.path.join(sc.tree.store, "cache.json"), NOBODY, NOGROUP)
    os.chown(sc.tree.conf, 0, 0)
    os.chmod(sc.tree.root, 0o755)
    log = open(os.path.join(sc.tree.root, "nobody-agent.log"), "wb")
    p = subprocess.Popen([h.AGENT_BIN, "-c", sc.tree.conf, "--foreground"], user=NOBODY,
                         group=NOGROUP, extra_groups=[], stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT, env=h.clean_env(), cwd="/")
    try:
        sc.wait_published(password="pw1", timeout=10)
        h.wait_until(lambda: os.path.exists(sc.tree.control), 5, "the control socket")
        assert os.lstat(sc.tree.control).st_uid == NOBODY
        # not dumpable: the kernel gives its /proc files to root instead of its own user
        assert os.stat("/proc/%d/status" % p.pid).st_uid == 0
        assert _limit(p.pid, "Max core file size") == ["0", "0"]
        r = _cli_as_nobody(sc, "refresh", "cache")     # the agent's own user
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        r = sc.run_cli("--control-socket", sc.tree.control, "rotate", "cache")   # root
        assert "permission denied" not in r.stderr, r.stderr
    finally:
        p.terminate()
        rc = p.wait(timeout=10)
        log.close()
    assert rc == 0, open(log.name, "rb").read()[-3000:]
