"""The Python client's asyncio integration (redis_creds.redis_asyncio, used by path) with
redis.asyncio against a real redis-server and the real agent: zero failed commands
through rotations on connections that are dropped and re-AUTHed all the time, the
fallback to previous (and to a re-read of the file), a malformed file. Tested with
Debian 12's redis-py 4.3.4 (redis.asyncio)."""
import asyncio
import os

import pytest
import redis
import redis.asyncio

import client_helpers as ch
import rc_harness as h
import redis_creds as rc

ROTATIONS = 30


async def until(pred, timeout, what):
    """wait_until for the event loop: polls pred() without blocking the loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() >= deadline:
            h.fail("timed out after %.1fs waiting for %s" % (timeout, what))
        await asyncio.sleep(0.005)


def test_asyncio_client_sees_zero_failed_commands_through_rotations(sc):
    """Tasks INCR through two kinds of clients while the agent rotates 30 times: three
    share a pool of max_connections=3 whose idle connections a fourth task drops every
    few milliseconds (each is reconnected, so AUTHed again, when next handed out); two
    build a new async_redis_client (a new pool) every 10 commands. After each rotation
    the rotating thread waits until new connections have authenticated, so that every
    rotation is crossed by fresh AUTHs whatever the machine's speed."""
    ch.start_agent_with_first_credential(sc)
    shared = rc.CredentialFile("cache", sc.tree.runtime)
    auths = []      # (generation, used previous) of each connection that authenticated

    class CountingConnection(rc.AsyncRotatingConnection):
        async def on_connect(self):
            await super().on_connect()
            auths.append((self.rc_generation, self.rc_used_previous))

    async def main():
        loop = asyncio.get_running_loop()
        changes = []
        steady = rc.async_redis_client(
            "cache", credential_file=shared, host="127.0.0.1", port=sc.redis.port,
            socket_timeout=5, max_connections=3,
            on_change=lambda s, e: loop.call_soon_threadsafe(changes.append, (s, e)))
        steady.connection_pool.connection_class = CountingConnection
        stats = {"ok": 0, "failed": 0, "errors": [], "reconnects": 0, "drops": 0}
        stop = asyncio.Event()

        async def incr(r, key):
            try:
                await r.incr(key)
                stats["ok"] += 1
            except redis.RedisError as e:
                stats["failed"] += 1
                stats["errors"].append(repr(e))

        async def pooled():
            while not stop.is_set():
                await incr(steady, "aio:steady")

        async def dropper():
            while not stop.is_set():
                await steady.connection_pool.disconnect(inuse_connections=False)
                stats["drops"] += 1
                await asyncio.sleep(0.002)

        async def churn():
            while not stop.is_set():
                r = rc.async_redis_client("cache", credential_file=shared, watch=False,
                                          host="127.0.0.1", port=sc.redis.port,
                                          socket_timeout=5, max_connections=2)
                r.connection_pool.connection_class = CountingConnection
                for _ in range(10):
                    await incr(r, "aio:churn")
                await r.close()
                stats["reconnects"] += 1

        def rotate_all():   # in a thread: the agent's rotations block, the loop runs on
            for n in range(2, ROTATIONS + 2):
                ch.rotate(sc, n)
                seen = len(auths)
                h.wait_until(lambda: len(auths) >= seen + 4, 10,
                             "new connections after rotation %d" % n, interval=0.001)

        tasks = [asyncio.ensure_future(f()) for f in (pooled, pooled, pooled, dropper,
                                                       churn, churn)]
        try:
            await until(lambda: len(auths) >= 4, 10, "the first connections")
            await loop.run_in_executor(None, rotate_all)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        for t in tasks:
            t.result()      # a task that died of anything but a counted RedisError
        print("python asyncio client:", {k: v for k, v in stats.items() if k != "errors"},
              "auths:", len(auths), "with previous:", sum(1 for a in auths if a[1]))
        assert stats["failed"] == 0, stats["errors"][:5]
        assert len(auths) >= 4 * (ROTATIONS + 1)
        # every connection read the credential through the one cached CredentialFile: the
        # file was parsed about once per published change, not once per connection
        print("file reads:", shared.reads)
        assert shared.reads <= 2 * (ROTATIONS + 1) + 5 < len(auths), shared.reads
        final = ch.rotation_password(ROTATIONS + 1)
        await until(lambda: changes and changes[-1][1] is None and
                    changes[-1][0].current.password == final, 5,
                    "the change callback for the last rotation")
        assert len(changes) <= ROTATIONS   # one per change (two may arrive as one)
        # the pool's idle connections were re-AUTHed with the newest credential
        conn = await steady.connection_pool.get_connection("PING")
        try:
            assert conn.rc_generation == shared.generation
            assert shared.get().current.password == final
            assert conn.password is None         # the secret is not kept on connections
        finally:
            await steady.connection_pool.release(conn)
        assert int(await steady.get("aio:steady")) + int(await steady.get("aio:churn")) \
            == stats["ok"]
        await steady.close()
        steady.connection_pool.rc_watcher.stop()

    asyncio.run(main())


def test_asyncio_connection_falls_back_to_previous_then_to_a_reread(sc):
    """The agent publishes (validate = "none") a password Redis does not know yet: a new
    connection AUTHs with `previous`; once Redis knows it, with the current one; with a
    stale cache, after re-reading the file; and with nothing accepted, a clear error."""
    ch.start_agent_publishing_ahead_of_redis(sc)

    async def used_previous(pool):
        conn = await pool.get_connection("PING")
        try:
            return conn.rc_used_previous
        finally:
            await pool.release(conn)

    async def main():
        pool = rc.AsyncRotatingConnectionPool(credential_name="cache",
                                              runtime_dir=sc.tree.runtime,
                                              host="127.0.0.1", port=sc.redis.port)
        r = redis.asyncio.Redis(connection_pool=pool)
        assert await r.incr("fallback") == 1
        assert await used_previous(pool) is True
        # the server learns the new password and forgets the old one
        sc.redis.add_password("app", ch.rotation_password(2))
        sc.redis.remove_password("app", ch.rotation_password(1))
        await pool.disconnect()
        assert await r.incr("fallback") == 2
        assert await used_previous(pool) is False
        # a cache that has not caught up yet (a watcher behind a busy loop): current and
        # previous both refused, then the file is re-read (in a thread) and the new one tried
        cf = pool.connection_kwargs["credential_file"]
        cf.get()
        cf._watched = True               # serve the cached snapshot, as a watcher would
        ch.rotate_twice_leaving_only_the_last(sc, 3)
        assert cf.get().current.password == ch.rotation_password(2)   # stale on purpose
        reads = cf.reads
        await pool.disconnect()
        assert await r.incr("fallback") == 3
        assert cf.reads == reads + 1
        assert cf.get().current.password == ch.rotation_password(4)
        assert await used_previous(pool) is False
        cf._watched = False
        # neither current nor previous works: a clear AuthenticationError, no secret in it,
        # and the refused connection is not left open in the pool
        sc.redis.acl_setuser("app", "resetpass", ">something-else")
        await pool.disconnect()
        with pytest.raises(redis.AuthenticationError) as e:
            await r.incr("fallback")
        assert "refused the current and the previous" in str(e.value)
        assert "pw-" not in str(e.value) and "pw-" not in repr(e.value)
        assert not any(c.is_connected for c in pool._available_connections)
        await r.close(close_connection_pool=True)

    asyncio.run(main())


def test_asyncio_malformed_file_is_a_clear_error_and_keeps_last_good(sc):
    path = ch.start_with_a_torn_credential_file(sc)
    # async_redis_client reads the file when called: no credential at all fails early
    with pytest.raises(rc.CredentialFileError) as e:
        rc.async_redis_client("cache", runtime_dir=sc.tree.runtime, port=sc.redis.port)
    assert isinstance(e.value, rc.CredentialUnavailable)
    assert "malformed JSON" in str(e.value) and "good-" not in str(e.value)
    assert e.value.path == path

    async def main():
        # a pool made by hand finds out at connect; the socket it opened is closed, so
        # that no unauthenticated connection is handed out once the file is good
        pool = rc.AsyncRotatingConnectionPool(credential_name="cache",
                                              runtime_dir=sc.tree.runtime,
                                              host="127.0.0.1", port=sc.redis.port)
        bare = redis.asyncio.Redis(connection_pool=pool)
        with pytest.raises(rc.CredentialUnavailable) as e:
            await bare.incr("m")
        assert "malformed JSON" in str(e.value) and "good-" not in str(e.value)
        assert not any(c.is_connected for c in pool._available_connections)
        ch.publish_the_good_credential(sc)
        assert await bare.incr("m") == 1
        await bare.close(close_connection_pool=True)
        # a good file, then a torn one: the last good credential is kept
        r = rc.async_redis_client("cache", runtime_dir=sc.tree.runtime, host="127.0.0.1",
                                  port=sc.redis.port)
        assert await r.incr("m") == 2
        h.write_store_atomic(sc.tree.runtime, "cache.json", "{ torn")
        cf = r.connection_pool.connection_kwargs["credential_file"]
        await until(lambda: cf.last_error is not None, 5, "the watcher to see the bad file")
        assert isinstance(cf.last_error, rc.CredentialFileError)
        await r.connection_pool.disconnect()
        assert await r.incr("m") == 3        # a new connection, with the last good one
        assert cf.get().current.version == "1"
        await r.close()
        r.connection_pool.rc_watcher.stop()

    asyncio.run(main())


def test_async_redis_client_connection_classes():
    """async_redis_client picks the SSL and unix socket variants, and they build (these
    are redis.asyncio's own classes with the same mixin; no TLS or unix socket server is
    run here)."""
    d = os.path.join(h.SOURCE_DIR, "tests", "integration")   # any dir; nothing is read
    cf = rc.CredentialFile("cache", d)
    cf._snap = rc.Snapshot("cache", rc.Credential("app", "x", "1"), None, 1)
    cf._watched = True   # serve that snapshot without reading the (missing) file
    for kwargs, cls in (({"ssl": True, "ssl_cert_reqs": "none"}, rc.AsyncRotatingSSLConnection),
                        ({"unix_socket_path": "/nonexistent.sock"},
                         rc.AsyncRotatingUnixDomainSocketConnection),
                        ({}, rc.AsyncRotatingConnection)):
        r = rc.async_redis_client("cache", credential_file=cf, watch=False, **kwargs)
        pool = r.connection_pool
        assert pool.connection_class is cls
        conn = pool.make_connection()
        assert isinstance(conn, cls) and conn.rc_file is cf and conn.password is None
