"""libredis-creds against the real agent and a real redis-server: zero failed commands
through 100 ACL dual-password rotations, no torn reads, and the examples (issue 5)."""
import os
import subprocess
import threading

import pytest

import client_helpers as ch
import rc_harness as h

pytestmark = pytest.mark.skipif(not os.path.exists(ch.HAMMER),
                                reason="client programs not built (hiredis missing?)")

ROTATIONS = 100


def test_hiredis_helper_sees_zero_failed_commands_through_100_rotations(sc):
    """4 workers INCR back to back, each reconnecting every 20 commands (so AUTH happens
    all through the rotations), while the agent publishes 100 rotations: add the new
    password, publish, remove the old one. A reader thread checks every snapshot."""
    a = ch.start_agent_with_first_credential(sc)
    hammer = ch.Hammer(sc.tree.runtime, sc.redis.port, workers=4, reconnect_every=20,
                       torn_check=True)
    try:
        hammer.wait_ready()
        for n in range(2, ROTATIONS + 2):
            ch.rotate(sc, n)
        stats = hammer.stop()
    finally:
        hammer.kill()
    print("hammer:", stats)
    assert stats["failed"] == 0, "failed commands during rotations: %r" % stats
    # each publication is normally one generation; a library thread starved for longer
    # than a rotation may take two at once, so only the end point is exact
    assert stats["final_rotation"] == ROTATIONS + 1, stats
    assert 0 < stats["generations_seen"] <= ROTATIONS, stats
    assert stats["commands_ok"] > ROTATIONS * 4, stats
    assert stats["reconnects"] > ROTATIONS, "not enough AUTHs to mean anything: %r" % stats
    assert stats["torn_bad"] == 0, stats["torn_first"]
    assert stats["torn_reads"] > 1000, stats
    # the old password is really gone: the server refuses it now
    assert not sc.redis.auth_ok("app", ch.rotation_password(ROTATIONS))
    assert sc.redis.auth_ok("app", ch.rotation_password(ROTATIONS + 1))
    assert a.alive()


def test_connection_authenticated_with_a_removed_password_is_reauthenticated(sc):
    """Long-lived connections (no reconnects): rc_redis_reauth_if_changed re-AUTHs each
    connection once per published change, and commands never fail."""
    ch.start_agent_with_first_credential(sc)
    hammer = ch.Hammer(sc.tree.runtime, sc.redis.port, workers=2, reconnect_every=0)
    try:
        hammer.wait_ready()
        for n in range(2, 12):
            ch.rotate(sc, n)
        stats = hammer.stop()
    finally:
        hammer.kill()
    print("hammer:", stats)
    assert stats["failed"] == 0, stats
    assert stats["reconnects"] == 2, stats
    assert stats["final_rotation"] == 11, stats
    # the first AUTH of each connection, then at least one re-AUTH each after changes
    assert stats["reauths"] >= 2 * 2, stats


def test_helper_falls_back_to_previous_while_redis_lacks_the_new_password(sc):
    """A credential published before every server knows it (validate = "none" here):
    new connections AUTH with `previous` instead of failing."""
    ch.start_agent_publishing_ahead_of_redis(sc)
    hammer = ch.Hammer(sc.tree.runtime, sc.redis.port, workers=2, reconnect_every=5)
    try:
        hammer.wait_ready()
        stats = hammer.stop()
    finally:
        hammer.kill()
    print("hammer:", stats)
    assert stats["failed"] == 0, stats
    assert stats["fallbacks"] > 0, stats


def test_hiredis_example_keeps_counting_across_rotations(sc):
    ch.start_agent_with_first_credential(sc)
    p = subprocess.Popen([ch.EXAMPLE_COUNTER, "cache", "127.0.0.1", str(sc.redis.port),
                          "200", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=h.clean_env({"REDIS_CREDS_RUNTIME_DIR": sc.tree.runtime}))
    try:
        for n in range(2, 7):
            ch.rotate(sc, n)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    text = out.decode()
    assert p.returncode == 0, "example failed: %s\n%s" % (text[-2000:], err.decode())
    assert "failures 0" in text
    assert text.count("authenticated with version") >= 1
    for n in range(1, 7):
        assert ch.rotation_password(n) not in text + err.decode(), "a secret was printed"


def test_event_loop_example_follows_changes_without_a_thread(sc):
    ch.start_agent_with_first_credential(sc)
    p = subprocess.Popen([ch.EXAMPLE_EVENT_LOOP, "cache", sc.tree.runtime, "3"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=h.clean_env())
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(
        l.decode().rstrip("\n") for l in iter(p.stdout.readline, b"")), daemon=True)
    reader.start()
    try:
        h.wait_until(lambda: any(l.startswith("version ") for l in lines), 10,
                     "the example's first line")
        for n in range(2, 5):
            ch.rotate(sc, n)
            # one change at a time, so that each is its own generation
            h.wait_until(lambda: any(l.endswith("(generation %d)" % n) for l in lines), 10,
                         "the example to print generation %d (got %r)" % (n, lines))
        p.wait(timeout=20)
        reader.join(5)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, (lines, p.stderr.read())
    assert len([l for l in lines if l.startswith("version ")]) == 4, lines
