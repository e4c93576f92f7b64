"""Faults from the reliability audit that no other suite drives (docs/reliability.md): a
"Redis" that drip-feeds its reply or floods the agent with bytes; a store file that is a
character device; a runtime_dir that is full, read-only or has a directory planted at a
published name; a Key Vault that hangs or answers with megabytes. Each time the agent must
report the fault, stay responsive and keep what it published.
"""
import json
import os
import socket
import stat
import subprocess
import threading
import time

import pytest

import rc_harness as h
from azure_helpers import PW1, PW2, az  # noqa: F401 - fixture


class MisbehavingRedis:
    """A TCP endpoint that reads what the agent sends and answers with `mode`:
    "drip" - a valid-looking reply one byte every 0.4 s (never finishing in time);
    "flood" - an endless bulk string of 'x' as fast as the socket takes it."""

    def __init__(self, mode):
        self.mode = mode
        self.sent = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.endpoint = "127.0.0.1:%d" % self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn):
        conn.settimeout(0.5)
        try:
            conn.recv(4096)
            if self.mode == "drip":
                for b in b"+OK\r\n" * 100:
                    if self._stop.wait(0.4):
                        break
                    conn.sendall(bytes([b]))
                    self.sent += 1
            else:
                conn.sendall(b"$%d\r\n" % (1 << 40))
                chunk = b"x" * 65536
                while not self._stop.is_set():
                    try:
                        self.sent += conn.send(chunk)
                    except socket.timeout:
                        continue
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self._stop.set()
        self._sock.close()
        for t in self._threads:
            t.join(2)


def memory_slack(pid):
    """1, or 4 for an agent built with AddressSanitizer (its quarantine keeps freed memory
    for a while, and its shadow memory counts in the RSS)."""
    with open("/proc/%d/maps" % pid) as f:
        return 4 if "libasan" in f.read() else 1


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_against(sc, server, timeout="1s"):
    sc.redis.create_user("app", "fault-pw-1")
    sc.store_cred("app", "fault-pw-1")
    sc.write_config([sc.cred("good", path="cache.json"), sc.cred("bad", path="cache.json", endpoints=[server.endpoint],
                                               timeout=timeout)])
    a = sc.start_agent()
    a.wait_ready(timeout=15)
    sc.wait_published("good", password="fault-pw-1")
    return a


def status_row(sc, name):
    r = sc.run_cli("-c", sc.tree.conf, "status", "--json", timeout=5)
    return next(c for c in json.loads(r.stdout)["credentials"] if c["name"] == name)


def test_redis_drip_feeding_its_reply_times_out_and_the_agent_stays_responsive(sc):
    server = MisbehavingRedis("drip")
    sc.on_close(server.close)
    a = start_against(sc, server, timeout="1s")
    t0 = time.monotonic()
    row = h.wait_until(lambda: (lambda r: r if r.get("last_error") else None)(status_row(sc, "bad")),
                       15, "an error for the drip-fed credential")
    assert "timed out" in row["last_error"] and row["state"] == "unreachable", row
    assert time.monotonic() - t0 < 10
    assert server.sent >= 1, "the endpoint was never asked"
    assert sc.read_bytes("bad.json") is None
    assert status_row(sc, "good")["state"] == "current"
    assert a.alive()


def test_redis_flooding_the_agent_is_cut_off_without_growing_its_memory(sc):
    server = MisbehavingRedis("flood")
    sc.on_close(server.close)
    a = start_against(sc, server, timeout="3s")
    base = rss_kib(a.pid)
    row = h.wait_until(lambda: (lambda r: r if r.get("last_error") else None)(status_row(sc, "bad")),
                       15, "an error for the flooded credential")
    # the retry (backoff from 1 s) is flooded again: RSS is measured after two floods
    a.wait_log_count(lambda l: "bad" in l and "exceeds the limit" in l, 2, timeout=10,
                     what="the flooded credential's error, twice")
    a.barrier()
    grown = rss_kib(a.pid) - base
    print("flood: %d bytes sent, RSS grew %d KiB; %s" % (server.sent, grown, row["last_error"]))
    assert "exceeds the limit" in row["last_error"], row
    assert grown < 32 * 1024 * memory_slack(a.pid), \
        "the agent's memory grew by %d KiB under a flood" % grown
    assert sc.read_bytes("bad.json") is None
    assert status_row(sc, "good")["state"] == "current"
    assert a.alive()


def test_store_file_that_is_a_character_device_is_refused_and_the_file_kept(sc):
    a = sc.start_published("dev-pw-1", credentials=[sc.cred(poll_interval="300ms")])
    before = a.first_doc
    base = rss_kib(a.pid)
    path = os.path.join(sc.tree.store, "cache.json")
    os.unlink(path)
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))     # /dev/zero: endless zeros
    mark = a.log_mark()
    line = a.wait_log(lambda l: "cache" in l and h.level_is_error(l), since=mark, timeout=10,
                      what="an error about the device store file")
    assert "not a regular file" in line, line
    # polled every 300 ms: wait for three more reads of the device, each refused again
    a.wait_log_count("not a regular file", 4, since=mark, timeout=10)
    a.barrier()
    assert sc.read_doc() == before
    assert a.alive() and rss_kib(a.pid) - base < 16 * 1024 * memory_slack(a.pid), \
        "reading the device grew the agent's memory"
    r = sc.run_cli("-c", sc.tree.conf, "status", timeout=5)
    assert "cache" in r.stdout


def small_tmpfs(sc, size="256k"):
    """runtime_dir as its own small tmpfs (root can mount), unmounted at teardown."""
    os.mkdir(sc.tree.runtime, 0o750)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0750" % size, "tmpfs",
                        sc.tree.runtime], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.strip())
    sc.on_close(lambda: subprocess.run(["umount", "-l", sc.tree.runtime], capture_output=True))


def published_three_formats(sc, pw1, pw2):
    """User app knows pw1 and pw2, the store holds pw1, an agent published it in all three
    formats; returns the agent and the three files' bytes."""
    a = sc.start_published(pw1, also_accept=(pw2,),
                           credentials=[sc.cred(formats=["json", "env", "password"])])
    return a, {f: sc.read_bytes(f) for f in ("cache.json", "cache.env", "cache.password")}


def publish_then_break(sc, break_it):
    a, before = published_three_formats(sc, "full-pw-1", "full-pw-2")
    break_it()
    mark = a.log_mark()
    sc.store_cred("app", "full-pw-2")
    line = a.wait_log(lambda l: "cannot write" in l, since=mark, timeout=10,
                      what="the publish error")
    assert {f: sc.read_bytes(f) for f in before} == before, "a published file changed"
    assert not [f for f in os.listdir(sc.tree.runtime) if f.startswith(".tmp-")]
    assert a.alive()
    return a, line


def test_runtime_dir_full_keeps_every_published_file_whole(sc):
    small_tmpfs(sc)

    def fill():
        fd = os.open(os.path.join(sc.tree.runtime, "filler.bin"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
    a, line = publish_then_break(sc, fill)
    assert "No space left" in line, line
    os.unlink(os.path.join(sc.tree.runtime, "filler.bin"))
    assert sc.run_cli("-c", sc.tree.conf, "refresh", "cache").returncode in (0, 1)
    sc.wait_published(password="full-pw-2", timeout=10)


def test_runtime_dir_read_only_at_start_is_a_clear_error_and_the_files_stay(sc):
    """A read-only runtime_dir cannot be remounted under a running agent (it holds .lock
    open for writing): the agent that starts on one says why and exits 1; what the last
    agent published stays as it was."""
    small_tmpfs(sc)
    a, before = published_three_formats(sc, "ro-pw-1", "ro-pw-2")
    assert a.stop() == 0
    subprocess.run(["mount", "-o", "remount,ro", sc.tree.runtime], check=True)
    sc.store_cred("app", "ro-pw-2")
    b = sc.start_agent()
    assert b.wait_exit(10) == 1
    b.check_exit = False
    assert "Read-only file system" in b.log(), b.log()
    assert {f: sc.read_bytes(f) for f in before} == before


def test_directory_planted_at_the_published_name_is_an_error_not_a_crash(sc):
    sc.redis.create_user("app", "dir-pw-1")
    sc.store_cred("app", "dir-pw-1")
    sc.write_config()
    os.mkdir(sc.tree.runtime, 0o750)
    os.mkdir(sc.path("cache.json"), 0o700)
    a = sc.start_agent()
    a.wait_ready()
    line = a.wait_log(lambda l: "cannot write" in l, timeout=10, what="the publish error")
    assert "cache.json" in line, line
    assert os.path.isdir(sc.path("cache.json")) and a.alive()
    assert not [f for f in os.listdir(sc.tree.runtime) if f.startswith(".tmp-")]
    os.rmdir(sc.path("cache.json"))
    assert sc.run_cli("-c", sc.tree.conf, "refresh", "cache").returncode in (0, 1)
    sc.wait_published(password="dir-pw-1", timeout=10)


def test_key_vault_hung_or_oversized_answer_keeps_the_published_file(sc, az):
    sc.redis.create_user("app", PW1, PW2)
    az.fake.kv_set("cache-pw", PW1)
    a = az.start([az.cred(path="cache-pw", username="app", poll_interval="300ms")],
                 [az.kv_source(timeout="1s")])
    sc.wait_published(password=PW1, timeout=5)
    before = sc.read_bytes()
    for fault, text in ((dict(delay=3.0, status=200, body={"value": PW2}), "imeout"),
                        (dict(status=200, body=b'{"value": "' + b"x" * (3 << 20) + b'"}'),
                         "larger than")):
        mark = a.log_mark()
        az.fake.inject("keyvault", count=1000, **fault)
        line = a.wait_log(lambda l, t=text: t in l and "cache" in l, since=mark, timeout=15,
                          what=repr(text))
        assert sc.read_bytes() == before, "the published file changed after %s" % line
        assert a.alive()
        az.fake.clear_faults()
        a.wait_log("recovered", since=mark, timeout=15)
