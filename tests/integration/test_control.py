"""The control socket under abuse: malformed requests, floods, rights by peer uid, what is
at its path before the agent starts; and the agent's own core-dump settings."""
import json
import os
import resource
import socket
import stat
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
