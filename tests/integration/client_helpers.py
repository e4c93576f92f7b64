"""Helpers for the client tests (test_client_*.py): the C programs built under
<build>/client, the rotation password scheme they check, and the Python client on path.

Only the standard library, redis-py and rc_harness are used."""
import json
import os
import select
import signal
import subprocess
import sys
import time

import rc_harness as h

CLIENT_BUILD = os.path.join(h.BUILD_DIR, "client")
HAMMER = os.path.join(CLIENT_BUILD, "tests", "rc_hammer")
EXAMPLE_COUNTER = os.path.join(CLIENT_BUILD, "rc_example_hiredis_counter")
EXAMPLE_EVENT_LOOP = os.path.join(CLIENT_BUILD, "rc_example_event_loop")
PYTHON_CLIENT_DIR = os.path.join(h.SOURCE_DIR, "client", "python")

if PYTHON_CLIENT_DIR not in sys.path:
    sys.path.insert(0, PYTHON_CLIENT_DIR)


def rotation_password(n):
    """The password of rotation n, as client/tests/client_test_util.h tu_password builds
    it: long and derived from n, so a torn or mixed read is detectable."""
    s = "pw-%d-" % n
    return s + "".join(chr(ord("a") + (n + i) % 26) for i in range(len(s), 200))


def rotate(sc, n, username="app", timeout=10):
    """One ACL dual-password rotation (docs/design.md §9.1 order): add the new password next to the
    old one, publish it through the store, wait for the agent's file, remove the old."""
    sc.redis.add_password(username, rotation_password(n))
    sc.store_cred(username, rotation_password(n))
    doc = sc.wait_published(password=rotation_password(n), timeout=timeout)
    sc.redis.remove_password(username, rotation_password(n - 1))
    return doc


def start_agent_with_first_credential(sc, username="app"):
    return sc.start_published(rotation_password(1), user=username)


class Hammer:
    """client/tests/rc_hammer: workers hammering Redis until SIGTERM, then one JSON line."""

    def __init__(self, runtime_dir, port, mode="lib", workers=4, reconnect_every=20,
                 torn_check=False, name="cache"):
        args = [HAMMER, "--name", name, "--dir", runtime_dir, "--port", str(port),
                "--mode", mode, "--workers", str(workers),
                "--reconnect-every", str(reconnect_every)]
        if torn_check:
            args.append("--torn-check")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=h.clean_env())

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                line = self.proc.stdout.readline()
                if line.strip() == b"ready":
                    return
                if not line:
                    break
            if self.proc.poll() is not None:
                break
        self.proc.kill()
        out, err = self.proc.communicate()
        h.fail("rc_hammer not ready (%r); stderr:\n%s" % (line, err.decode(errors="replace")))

    def stop(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            h.fail("rc_hammer did not stop within %ss" % timeout)
        if self.proc.returncode != 0:
            h.fail("rc_hammer exited %s; stderr:\n%s" % (self.proc.returncode,
                                                         err.decode(errors="replace")))
        lines = [l for l in out.decode().splitlines() if l.startswith("{")]
        if not lines:
            h.fail("rc_hammer printed no result; stdout %r stderr %r" % (out, err))
        return json.loads(lines[-1])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def start_agent_publishing_ahead_of_redis(sc, username="app"):
    """The agent (validate = "none") has published rotation 2 while Redis still knows only
    rotation 1's password: the published `previous` is what Redis accepts."""
    a = sc.start_published(rotation_password(1), user=username,
                           credentials=[sc.cred(redis_extra={"validate": "none"})])
    sc.store_cred(username, rotation_password(2))      # Redis does not know it yet
    sc.wait_published(password=rotation_password(2))
    return a


def rotate_twice_leaving_only_the_last(sc, first, username="app"):
    """Rotations `first` and `first + 1` published, and Redis left knowing only the last
    password: a client whose cache still holds rotation first - 1 (with first - 2 as
    `previous`) has both refused and must re-read the file."""
    for n in (first, first + 1):
        sc.redis.add_password(username, rotation_password(n))
        sc.store_cred(username, rotation_password(n))
        sc.wait_published(password=rotation_password(n))
    sc.redis.remove_password(username, rotation_password(first - 1))
    sc.redis.remove_password(username, rotation_password(first))


GOOD_FILE = ('{"format": 1, "username": "app", "password": "good-pw", "version": "1", '
             '"previous": null}\n')


def start_with_a_torn_credential_file(sc):
    """User app (password good-pw) in Redis and a cache.json cut short inside the password,
    as a non-atomic writer could leave it: no good credential yet. Returns its path."""
    sc.redis.create_user("app", "good-pw")
    os.makedirs(sc.tree.runtime, mode=0o750)
    path = sc.path("cache.json")
    with open(path, "w") as f:
        f.write('{"format": 1, "username": "app", "password": "good-')
    return path


def publish_the_good_credential(sc):
    """GOOD_FILE (app / good-pw, version 1), written atomically."""
    h.write_store_atomic(sc.tree.runtime, "cache.json", GOOD_FILE)
