"""The CLI against an agent that turns it away or does not answer: the refusal line is
what the user reads, whether the agent closed before or after the request arrived
(docs/operations.md, "The control socket": "the CLI prints it and exits 1"), and an
agent that accepts nothing more makes the CLI fail in time, not hang."""
import os
import signal
import socket
import threading
import time

import rc_harness as h

REFUSAL = b'{"ok":false,"error":"too many connections from this user; try again later"}\n'


def _status(sc, sock):
    r = sc.run_cli("--control-socket", sock, "status")
    return r.returncode, r.stderr.strip()


def test_cli_over_the_connection_cap_prints_the_refusal_and_exits_1(sc):
    sc.start_published("pw1")
    held = []
    for _ in range(16):   # CONTROL_MAX_CONNS_PER_UID: root counts against it too
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sc.tree.control)
        held.append(s)
    try:
        time.sleep(0.3)   # all accepted: the cap is reached
        outs = [_status(sc, sc.tree.control) for _ in range(20)]
    finally:
        for s in held:
            s.close()
    want = "redis-creds status: too many connections from this user; try again later"
    assert all(o == (1, want) for o in outs), outs
    assert _status(sc, sc.tree.control)[0] == 0


def _refusing_server(path, stop):
    """Answers each connection with the refusal line and closes at once, without reading:
    the client's request is either not sent yet (its send fails with EPIPE) or unread (its
    read after the line fails with ECONNRESET)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)
    srv.settimeout(0.1)

    def run():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            c.sendall(REFUSAL)
            c.close()
        srv.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_cli_reads_an_answer_sent_before_a_close_that_did_not_read_the_request(sc):
    path = os.path.join(sc.tree.root, "refusing.sock")
    stop = threading.Event()
    t = _refusing_server(path, stop)
    try:
        outs = [_status(sc, path) for _ in range(20)]
        r = sc.run_cli("--control-socket", path, "refresh", "cache")
    finally:
        stop.set()
        t.join(5)
    want = "redis-creds status: too many connections from this user; try again later"
    # never killed by SIGPIPE (-13), never "Connection reset by peer" instead of the reason
    assert all(o == (1, want) for o in outs), outs
    assert r.returncode == 1 and "too many connections" in r.stderr, (r.returncode, r.stderr)


def test_status_of_a_stopped_agent_with_a_full_queue_fails_in_time_not_hangs(sc):
    # a health check of a stuck agent: once its accept queue is full, connect() would
    # wait for room forever; status must fail within its 10 s like a read does
    a = sc.start_published("pw1")
    os.kill(a.pid, signal.SIGSTOP)
    queued = []
    try:
        while len(queued) < 1000:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(sc.tree.control)
            except BlockingIOError:
                s.close()
                break
            queued.append(s)
        assert 0 < len(queued) < 1000, len(queued)
        t0 = time.monotonic()
        r = sc.run_cli("--control-socket", sc.tree.control, "status", timeout=30)
        took = time.monotonic() - t0
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert "it accepts no connections (its queue is full); is it stuck or stopped?" in r.stderr, r.stderr
        assert took < 15, took
        r = sc.run_cli("--control-socket", sc.tree.control, "reload", "--timeout", "1s", timeout=30)
        assert r.returncode == 1 and "its queue is full" in r.stderr, (r.returncode, r.stderr)
    finally:
        for s in queued:
            s.close()
        os.kill(a.pid, signal.SIGCONT)
    assert sc.run_cli("--control-socket", sc.tree.control, "status").returncode == 0
