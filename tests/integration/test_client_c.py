"""libredis-creds against the real agent and a real redis-server: zero failed commands
through 100 ACL dual-password rotations, no torn reads, and the examples (issue 5)."""
import os
import subprocess

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
    assert stats["generations_seen"] == ROTATIONS, stats
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
    assert stats["reauths"] >= 2 * 10, stats


def test_helper_falls_back_to_previous_while_redis_lacks_the_new_password(sc):
    """A credential published before every server knows it (validate = "none" here):
    new connections AUTH with `previous` instead of failing."""
    sc.redis.create_user("app", ch.rotation_password(1))
    sc.store_cred("app", ch.rotation_password(1))
    sc.write_config(credentials=[sc.cred(redis_extra={"validate": "none"})])
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password=ch.rotation_password(1))
    sc.store_cred("app", ch.rotation_password(2))      # Redis does not know it yet
    sc.wait_published(password=ch.rotation_password(2))
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
    try:
        h.wait_until(lambda: p.poll() is not None or os.path.exists(sc.path("cache.json")),
                     5, "example start")
        import time
        time.sleep(0.2)   # let it set its watch (it prints the first version then)
        for n in range(2, 5):
            ch.rotate(sc, n)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    lines = out.decode().splitlines()
    assert p.returncode == 0, (lines, err)
    assert len([l for l in lines if l.startswith("version ")]) == 4, lines
    assert lines[-1].endswith("(generation 4)"), lines
