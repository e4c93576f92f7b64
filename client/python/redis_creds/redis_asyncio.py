"""redis-py integration for asyncio (redis.asyncio, redis-py >= 4.3: Debian 12's 4.3.4):
the equivalents of redis_py.py's RotatingConnection, RotatingConnectionPool and
redis_client(), with the same semantics.

- AsyncRotatingConnection (and the SSL and unix socket variants) authenticate every new
  connection with the current published credential and, when Redis refuses it, with
  `previous`, then once more after re-reading the file (redis_py._AuthPlan, shared with
  the sync classes).
- AsyncRotatingConnectionPool reconnects (re-AUTHs) an idle pooled connection, when it
  hands it out, if the credential changed since it authenticated.
- async_redis_client() builds a redis.asyncio.Redis with both and a Watcher.

Event loop and file I/O: with a Watcher running (async_redis_client's default), looking
up the credential at connect does no I/O at all. Without one, _AuthPlan's
CredentialFile.get() runs on the loop, synchronously, exactly as the sync classes do per
connect: one stat() of the file, and a read of it (a few hundred bytes on a local tmpfs)
only when it changed since the last read, i.e. once per published change for all the
connections sharing the CredentialFile, never once per connection. The one forced read
(the re-read after Redis refused both credentials) runs in the loop's default executor.
The Watcher's on_change callback runs in its thread: use loop.call_soon_threadsafe() to
reach the loop.
"""
import asyncio

import redis.asyncio
from redis.asyncio.connection import Connection, ConnectionPool, SSLConnection, \
    UnixDomainSocketConnection

from redis.exceptions import ResponseError
from redis.utils import str_if_bytes

from .credfile import CredentialError
from .redis_py import RELOAD, RotatingAuthBase, _AuthPlan, _next_stale, _rotating_pool, \
    _share_credential_file


class AsyncRotatingAuthMixin(RotatingAuthBase):
    """AUTH from a CredentialFile at every connect, with the fallback to `previous`, for
    redis.asyncio.connection.Connection and its subclasses. Keyword arguments as for
    RotatingAuthMixin: credential_file=, or credential_name= and runtime_dir=."""

    async def on_connect(self):
        plan = _AuthPlan(self)
        try:
            for step in plan:
                if step is RELOAD:   # not on the loop: the only forced read of the file
                    await asyncio.get_running_loop().run_in_executor(None, self.rc_file.reload)
                    continue
                with plan.attempt(step):
                    await super().on_connect()
        except (CredentialError, asyncio.CancelledError):
            # connect() disconnects only on a RedisError: never leave an unauthenticated
            # connection to the pool
            await self.disconnect()
            raise


    def rc_connected(self):
        return bool(self.is_connected)

    async def rc_reauth(self):
        """AUTH again on the open connection (the plan of on_connect), for a connection no
        command is using."""
        plan = _AuthPlan(self)
        for step in plan:
            if step is RELOAD:
                await asyncio.get_running_loop().run_in_executor(None, self.rc_file.reload)
                continue
            with plan.attempt(step):
                await self.send_command("AUTH", *step.auth_args(), check_health=False)
                if str_if_bytes(await self.read_response()) != "OK":
                    raise ResponseError("AUTH was not answered OK")


async def _reauth_or_reconnect(conn):
    """Re-AUTHs a stale connection in place; when that fails, reconnects it."""
    try:
        await conn.rc_reauth()
    except (CredentialError, asyncio.CancelledError):
        raise
    except Exception:  # noqa: BLE001 - any failure of the in-place AUTH: start afresh
        await conn.disconnect()
        await conn.connect()


class AsyncRotatingConnection(AsyncRotatingAuthMixin, Connection):
    pass


class AsyncRotatingSSLConnection(AsyncRotatingAuthMixin, SSLConnection):
    pass


class AsyncRotatingUnixDomainSocketConnection(AsyncRotatingAuthMixin,
                                              UnixDomainSocketConnection):
    pass


class AsyncRotatingConnectionPool(ConnectionPool):
    """A redis.asyncio ConnectionPool whose connections move to each new credential in
    place: at a published change, idle connections are re-AUTHed at once (reauth_idle(),
    scheduled on the pool's loop by the Watcher's callback, see async_redis_client()); a
    connection in use is re-AUTHed when it is handed back, or when handed out if that
    comes first. Like redis.asyncio's ConnectionPool, it raises ConnectionError("Too many
    connections") beyond max_connections instead of waiting."""
    rc_connection_classes = (AsyncRotatingConnection, AsyncRotatingSSLConnection,
                             AsyncRotatingUnixDomainSocketConnection)   # async_redis_client


    def __init__(self, connection_class=AsyncRotatingConnection, **kwargs):
        super().__init__(connection_class=connection_class, **_share_credential_file(kwargs))

    rc_loop = None   # the loop the pool is used on (seen at get_connection)

    async def get_connection(self, *args, **kwargs):
        self.rc_loop = asyncio.get_running_loop()
        conn = await super().get_connection(*args, **kwargs)
        try:
            if isinstance(conn, RotatingAuthBase) and conn.rc_stale():
                await _reauth_or_reconnect(conn)
        except BaseException:
            await self.release(conn)
            raise
        return conn

    async def release(self, connection):
        try:
            if isinstance(connection, RotatingAuthBase) and connection.rc_stale():
                await _reauth_or_reconnect(connection)
        except Exception:  # noqa: BLE001 - handed back broken: the next user reconnects
            await connection.disconnect()
        await super().release(connection)

    async def reauth_idle(self):
        """Re-AUTHs every idle connection whose credential was replaced, one at a time,
        each taken out of the pool meanwhile. Returns how many were re-AUTHed."""
        done, tried = 0, set()
        while True:
            async with self._lock:
                conn = _next_stale(self._available_connections, tried)
                if conn is None:
                    return done
                self._available_connections.remove(conn)
            try:
                await conn.rc_reauth()
                done += 1
            except Exception:  # noqa: BLE001 - reconnects when next handed out
                await conn.disconnect()
            finally:
                async with self._lock:
                    self._available_connections.append(conn)

    def rc_on_change(self, snapshot, error):
        """The Watcher's callback (async_redis_client() installs it): runs in the
        watcher's thread and schedules reauth_idle() on the pool's loop."""
        loop = self.rc_loop
        if error is None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._rc_start_reauth)

    def _rc_start_reauth(self):
        # the loop keeps only a weak reference to a task: hold it until it is done
        tasks = self.__dict__.setdefault("_rc_tasks", set())
        task = asyncio.get_running_loop().create_task(self.reauth_idle())
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def async_redis_client(name, runtime_dir=None, watch=True, on_change=None, ssl=False,
                       unix_socket_path=None, credential_file=None, **kwargs):
    """A redis.asyncio.Redis whose connections authenticate from the published credential
    `name`, fall back to `previous` on a refusal, and re-AUTH when it changes. kwargs go to
    the pool and the connection (host, port, db, socket_timeout, max_connections, ...).
    watch=True starts a Watcher (inotify) so that reading the credential costs no I/O;
    on_change(snapshot, error) is its callback, called in the watcher's thread.

    Not a coroutine, like redis.asyncio.Redis(): it reads the file once, now, to fail
    early (CredentialUnavailable) when there is no credential at all. `await r.close()`
    disconnects the pool; the watcher, at r.connection_pool.rc_watcher, is stopped with
    its stop()."""
    pool = _rotating_pool(AsyncRotatingConnectionPool, name, runtime_dir, watch, on_change,
                          ssl, unix_socket_path, credential_file, kwargs)
    r = redis.asyncio.Redis(connection_pool=pool)
    r.auto_close_connection_pool = True   # the client owns this pool: close() closes it
    return r
