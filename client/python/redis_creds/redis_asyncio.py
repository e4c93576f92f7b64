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

from .credfile import CredentialError
from .redis_py import RELOAD, RotatingAuthBase, _AuthPlan, _rotating_pool, \
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


class AsyncRotatingConnection(AsyncRotatingAuthMixin, Connection):
    pass


class AsyncRotatingSSLConnection(AsyncRotatingAuthMixin, SSLConnection):
    pass


class AsyncRotatingUnixDomainSocketConnection(AsyncRotatingAuthMixin,
                                              UnixDomainSocketConnection):
    pass


class AsyncRotatingConnectionPool(ConnectionPool):
    """A redis.asyncio ConnectionPool that re-AUTHs (by reconnecting) an idle connection
    whose credential was replaced, when it hands it out. Connections in use are left alone:
    Redis keeps an authenticated connection working when its password is removed. Like
    redis.asyncio's ConnectionPool, it raises ConnectionError("Too many connections")
    beyond max_connections instead of waiting."""
    rc_connection_classes = (AsyncRotatingConnection, AsyncRotatingSSLConnection,
                             AsyncRotatingUnixDomainSocketConnection)   # async_redis_client


    def __init__(self, connection_class=AsyncRotatingConnection, **kwargs):
        super().__init__(connection_class=connection_class, **_share_credential_file(kwargs))

    async def get_connection(self, *args, **kwargs):
        conn = await super().get_connection(*args, **kwargs)
        try:
            if isinstance(conn, RotatingAuthBase) and conn.rc_stale():
                await conn.disconnect()
                await conn.connect()
        except BaseException:
            await self.release(conn)
            raise
        return conn


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
