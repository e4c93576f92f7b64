"""The Python client (client/python, used by path) with redis-py against a real
redis-server and the real agent: zero failed commands through rotations, the fallback
to previous, a malformed file. Tested with Debian 12's redis-py 4.3.4; the >= 4.4
credential provider is tested through its contract (the AUTH redis-py 4.4 sends)."""
import json
import os
import threading
import time

import pytest
import redis

import client_helpers as ch
import rc_harness as h
import redis_creds as rc

ROTATIONS = 30


def test_redis_py_client_sees_zero_failed_commands_through_rotations(sc):
    """Threads INCR through redis_client(); one of them reconnects every 10 commands (a
    new pool each time, so AUTH happens all through the rotations), one keeps one pool."""
    ch.start_agent_with_first_credential(sc)
    changes = []
    shared = rc.CredentialFile("cache", sc.tree.runtime)
    long_lived = rc.redis_client("cache", credential_file=shared, port=sc.redis.port,
                                 host="127.0.0.1", socket_timeout=5,
                                 on_change=lambda s, e: changes.append((s, e)))
    stop = threading.Event()
    stats = {"ok": 0, "failed": 0, "errors": [], "reconnects": 0}
    lock = threading.Lock()

    def churn():
        while not stop.is_set():
            r = rc.redis_client("cache", credential_file=shared, watch=False,
                                host="127.0.0.1", port=sc.redis.port, socket_timeout=5)
            for _ in range(10):
                try:
                    r.incr("py:churn")
                    with lock:
                        stats["ok"] += 1
                except redis.RedisError as e:
                    with lock:
                        stats["failed"] += 1
                        stats["errors"].append(repr(e))
            r.connection_pool.disconnect()
            with lock:
                stats["reconnects"] += 1

    def steady():
        while not stop.is_set():
            try:
                long_lived.incr("py:steady")
                with lock:
                    stats["ok"] += 1
            except redis.RedisError as e:
                with lock:
                    stats["failed"] += 1
                    stats["errors"].append(repr(e))

    threads = [threading.Thread(target=churn), threading.Thread(target=churn),
               threading.Thread(target=steady)]
    for t in threads:
        t.start()
    try:
        h.wait_until(lambda: stats["reconnects"] >= 2 and stats["ok"] >= 30, 10,
                     "the clients at work before the first rotation")
        for n in range(2, ROTATIONS + 2):
            ch.rotate(sc, n)
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        long_lived.connection_pool.rc_watcher.stop()
    print("python client:", {k: v for k, v in stats.items() if k != "errors"})
    assert stats["failed"] == 0, stats["errors"][:5]
    assert stats["reconnects"] > ROTATIONS, stats
    final = ch.rotation_password(ROTATIONS + 1)
    assert h.wait_until(lambda: changes and changes[-1][1] is None and
                        changes[-1][0].current.password == final, 5,
                        "the change callback for the last rotation")
    assert len(changes) <= ROTATIONS   # one per change (two may arrive as one)
    # the long-lived pool's idle connection was re-AUTHed with the newest credential
    conn = long_lived.connection_pool.get_connection("PING")
    try:
        assert conn.rc_generation == shared.generation
        assert shared.get().current.password == final
    finally:
        long_lived.connection_pool.release(conn)


def _pool_that_used_previous(sc, key):
    """A RotatingConnectionPool on `cache` whose first command (INCR key) went through a
    connection that AUTHed with `previous`; (pool, client)."""
    pool = rc.RotatingConnectionPool(credential_name="cache", runtime_dir=sc.tree.runtime,
                                     host="127.0.0.1", port=sc.redis.port)
    r = redis.Redis(connection_pool=pool)
    assert r.incr(key) == 1
    conn = pool.get_connection("PING")
    assert conn.rc_used_previous is True
    pool.release(conn)
    return pool, r


def test_rotating_connection_falls_back_to_previous_then_to_a_reread(sc):
    """The agent publishes (validate = "none") a password Redis does not know yet: a new
    connection AUTHs with `previous`; once Redis knows it, with the current one."""
    ch.start_agent_publishing_ahead_of_redis(sc)
    pool, r = _pool_that_used_previous(sc, "fallback")
    # the server learns the new password and forgets the old one
    sc.redis.add_password("app", ch.rotation_password(2))
    sc.redis.remove_password("app", ch.rotation_password(1))
    pool.disconnect()
    assert r.incr("fallback") == 2
    conn = pool.get_connection("PING")
    assert conn.rc_used_previous is False
    pool.release(conn)
    # a cache that has not caught up yet (a watcher behind a busy GIL): current and previous
    # both refused, then the file is re-read and the new credential tried
    cf = pool.connection_kwargs["credential_file"]
    cf.get()
    cf._watched = True               # serve the cached snapshot, as a watcher would
    ch.rotate_twice_leaving_only_the_last(sc, 3)
    assert cf.get().current.password == ch.rotation_password(2)   # stale on purpose
    pool.disconnect()
    assert r.incr("fallback") == 3
    assert cf.get().current.password == ch.rotation_password(4)
    cf._watched = False
    # neither current nor previous works: a clear AuthenticationError, no secret in it
    sc.redis.acl_setuser("app", "resetpass", ">something-else")
    pool.disconnect()
    with pytest.raises(redis.AuthenticationError) as e:
        r.incr("fallback")
    assert "refused the current and the previous" in str(e.value)
    assert "pw-" not in str(e.value)


def test_a_previous_past_previous_valid_until_is_not_tried(sc):
    """docs/file-format.md: once the file's previous_valid_until has passed (the agent
    removed `previous` from Redis), the fallback no longer sends it; before, it does. The
    file is published by hand: the agent does not write the key yet."""
    sc.redis.acl_setuser("app", "on", "resetpass", ">old-pw", "~*", "+@all")
    path = os.path.join(sc.tree.runtime, "cache.json")

    def publish(valid_until):
        doc = {"format": 1, "name": "cache", "username": "app", "password": "new-pw",
               "version": "v2", "previous_valid_until": time.strftime(
                   "%Y-%m-%dT%H:%M:%SZ", time.gmtime(valid_until)),
               "previous": {"username": "app", "password": "old-pw", "version": "v1"}}
        with open(path + ".tmp", "w") as f:
            json.dump(doc, f)
        os.rename(path + ".tmp", path)
    os.makedirs(sc.tree.runtime, exist_ok=True)
    publish(time.time() + 3600)
    pool, r = _pool_that_used_previous(sc, "pvu")
    publish(time.time() - 1)
    pool.disconnect()
    with pytest.raises(redis.AuthenticationError):
        r.incr("pvu")
    assert pool.connection_kwargs["credential_file"].get().previous is not None


def test_malformed_file_keeps_last_good_and_is_clear_when_never_good(sc):
    ch.start_with_a_torn_credential_file(sc)
    with pytest.raises(rc.CredentialUnavailable) as e:
        rc.redis_client("cache", runtime_dir=sc.tree.runtime, port=sc.redis.port)
    assert "malformed JSON" in str(e.value) and "good-" not in str(e.value)
    ch.publish_the_good_credential(sc)
    r = rc.redis_client("cache", runtime_dir=sc.tree.runtime, port=sc.redis.port)
    assert r.incr("m") == 1
    h.write_store_atomic(sc.tree.runtime, "cache.json", "{ torn")
    cf = r.connection_pool.connection_kwargs["credential_file"]
    assert h.wait_until(lambda: cf.last_error is not None, 5, "the watcher to see the bad file")
    r.connection_pool.disconnect()
    assert r.incr("m") == 2              # a new connection, with the last good credential
    assert cf.get().current.version == "1"
    r.connection_pool.rc_watcher.stop()


def test_credential_provider_contract_is_what_redis_py_4_4_sends(sc):
    """redis-py >= 4.4's Connection.on_connect does: AUTH *provider.get_credentials().
    Debian 12 ships 4.3.4, so the same AUTH is sent here by hand on a raw connection."""
    ch.start_agent_with_first_credential(sc)
    ch.rotate(sc, 2)
    provider = rc.CredentialProvider("cache", runtime_dir=sc.tree.runtime)
    for args in (provider.get_credentials(),):
        c = redis.Connection(host="127.0.0.1", port=sc.redis.port)
        c.connect()
        c.send_command("AUTH", *args)
        assert c.read_response() in (b"OK", "OK")
        c.send_command("ACL", "WHOAMI")
        assert c.read_response() in (b"app", "app")
        c.disconnect()
    assert args == ("app", ch.rotation_password(2))
    old = rc.CredentialProvider("cache", runtime_dir=sc.tree.runtime, use_previous=True)
    assert old.get_credentials() == ("app", ch.rotation_password(1))
    if hasattr(redis, "credentials"):     # redis-py >= 4.4: the real thing
        r = redis.Redis(host="127.0.0.1", port=sc.redis.port, credential_provider=provider)
        assert r.ping()


def test_pool_made_by_hand_on_a_malformed_file_leaves_no_unauthenticated_connection(sc):
    """RotatingConnectionPool made by hand (no early check) on a file that was never good:
    the first command raises CredentialUnavailable and the socket it opened is closed, so
    the pool does not hand out an unauthenticated connection once the file is good."""
    ch.start_with_a_torn_credential_file(sc)
    pool = rc.RotatingConnectionPool(credential_name="cache", runtime_dir=sc.tree.runtime,
                                     host="127.0.0.1", port=sc.redis.port)
    r = redis.Redis(connection_pool=pool)
    with pytest.raises(rc.CredentialUnavailable) as e:
        r.incr("m")
    assert "malformed JSON" in str(e.value) and "good-" not in str(e.value)
    assert not any(c._sock for c in pool._available_connections)
    ch.publish_the_good_credential(sc)
    assert r.incr("m") == 1
    pool.disconnect()
