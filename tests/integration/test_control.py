"""The control socket under abuse: malformed requests, floods, rights by peer uid, what is
at its path before the agent starts; and the agent's own core-dump settings."""
import json
import os
import resource
import socket
import time

import rc_harness as h


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
