"""Long-lived connections with expiring credentials (Entra tokens on Azure Managed Redis,
which closes a connection whose token expired unless it sent AUTH with a newer one):
subscribers and blocking commands, for redis-py (sync) and redis.asyncio, with the
rotating pools of redis_py.py and redis_asyncio.py (which re-AUTH pooled connections in
place at each change).

- Subscriber / AsyncSubscriber: redis-py 4.x speaks RESP2 only, and Redis refuses AUTH on
  a RESP2 connection in subscribed mode. So at each change of credential they make before
  they break: subscribe on a new connection (authenticated with the new credential), wait
  for its confirmations, then UNSUBSCRIBE the old connection and deliver what it still
  receives until its unsubscribe is confirmed, then close it. Nothing published is lost;
  messages published between the two confirmations arrive twice (`.duplicates_possible`
  counts the switches; number your messages if duplicates matter).
- blocking_command / async_blocking_command: an AUTH sent behind a blocked command waits
  for it, so each call blocks at most until `margin` seconds before the connection's
  credential expires (and less than the connection's socket_timeout), and is repeated,
  on a connection the pool re-AUTHs when the credential changed, until the caller's
  timeout. The command's timeout must be its last argument (BLPOP, BRPOP, BLMOVE,
  BRPOPLPUSH, BZPOPMIN, BZPOPMAX).
"""
import collections
import time

from redis.exceptions import ConnectionError as RedisConnectionError

BLOCK_MARGIN = 2.0      # seconds before expires_at by which a blocking call returns
MIN_BLOCK = 0.1         # never ask Redis for less (0 would mean "forever")
_SUB = ("subscribe", "psubscribe")
_UNSUB = ("unsubscribe", "punsubscribe")
_DATA = ("message", "pmessage")


def block_seconds(expires_at, want, margin=BLOCK_MARGIN, socket_timeout=None, now=None):
    """How long one blocking call may block: at most `want` (None or 0: no limit of the
    caller's), until `margin` s before expires_at (None: no expiry), and 1 s less than the
    socket timeout; never less than MIN_BLOCK."""
    caps = []
    if want:
        caps.append(want)
    if expires_at is not None:
        caps.append(expires_at - margin - (time.time() if now is None else now))
    if socket_timeout:
        caps.append(socket_timeout - 1.0)
    if not caps:
        return 0      # nothing expires and the caller wants to wait forever
    return max(MIN_BLOCK, min(caps))


def _fmt(seconds):
    return "%.3f" % seconds


def blocking_command(client, *args, timeout=0, margin=BLOCK_MARGIN):
    """client.execute_command(*args, timeout) for a redis.Redis on a RotatingConnectionPool,
    in slices that end before the credential expires. Returns the command's reply, or None
    when `timeout` seconds (0: forever) passed without one, like BLPOP does."""
    pool = client.connection_pool
    end = time.monotonic() + timeout if timeout else None
    while True:
        left = None if end is None else end - time.monotonic()
        if left is not None and left <= 0:
            return None
        conn = pool.get_connection(args[0])     # re-AUTHed here if the credential changed
        try:
            cap = block_seconds(getattr(conn, "rc_expires_at", None), left, margin,
                                conn.socket_timeout)
            conn.send_command(*args, _fmt(cap))
            reply = client.parse_response(conn, args[0])
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        if reply is not None:
            return reply


async def async_blocking_command(client, *args, timeout=0, margin=BLOCK_MARGIN):
    """blocking_command for a redis.asyncio.Redis on an AsyncRotatingConnectionPool."""
    pool = client.connection_pool
    end = time.monotonic() + timeout if timeout else None
    while True:
        left = None if end is None else end - time.monotonic()
        if left is not None and left <= 0:
            return None
        conn = await pool.get_connection(args[0])
        try:
            cap = block_seconds(getattr(conn, "rc_expires_at", None), left, margin,
                                conn.socket_timeout)
            await conn.send_command(*args, _fmt(cap))
            reply = await client.parse_response(conn, args[0])
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        if reply is not None:
            return reply


class _SubscriberBase:
    def __init__(self, client, channels, patterns, confirm_timeout):
        if not channels and not patterns:
            raise ValueError("a Subscriber needs channels or patterns")
        self.client = client
        self.channels = list(channels)
        self.patterns = list(patterns)
        self.confirm_timeout = confirm_timeout
        self.switches = 0                 # make-before-break switches so far
        self._pending = collections.deque()
        self._ps = None

    @property
    def duplicates_possible(self):
        return self.switches > 0

    def _stale(self):
        conn = self._ps.connection if self._ps is not None else None
        return conn is not None and hasattr(conn, "rc_stale") and conn.rc_stale()

    def _confirmations(self, kinds, want, sink):
        return _Confirmations(kinds, want, sink, self.confirm_timeout)


class _Confirmations:
    """Waits for `want` confirmations of kinds (_SUB, or _UNSUB: the one saying nothing is
    left subscribed), fed the messages get_message() returns (None when it timed out);
    data messages on the way go to sink. feed() is True once they all arrived; it raises
    ConnectionError when they take longer than timeout."""

    def __init__(self, kinds, want, sink, timeout):
        self.kinds, self.want, self.sink = kinds, want, sink
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    def feed(self, m):
        if m is None:
            if time.monotonic() > self.deadline:
                raise RedisConnectionError("redis-creds subscriber: no %s confirmation "
                                           "within %.0f s" % (self.kinds[0], self.timeout))
        elif m["type"] in self.kinds and (self.kinds is _SUB or m["data"] == 0):
            self.want -= 1
        elif m["type"] in _DATA:
            self.sink.append(m)
        return self.want <= 0


class Subscriber(_SubscriberBase):
    """A pub/sub subscription that survives credential changes (make-before-break).

        sub = Subscriber(redis_client("cache", host=...), channels=["events"])
        while True:
            m = sub.get_message(timeout=1.0)   # {"type": "message", "channel", "data"} or None

    The client must use a RotatingConnectionPool (redis_client() does). get_message()
    returns data messages only (subscribe confirmations are handled here), and checks
    for a new credential before it waits (no I/O while a Watcher runs): call it at least
    every few seconds, well within a token's lifetime."""

    def __init__(self, client, channels=(), patterns=(), confirm_timeout=10.0):
        super().__init__(client, channels, patterns, confirm_timeout)
        self._ps, early = self._subscribe_new()
        self._pending.extend(early)

    def _subscribe_new(self):
        ps = self.client.pubsub(ignore_subscribe_messages=False)
        try:
            if self.channels:
                ps.subscribe(*self.channels)
            if self.patterns:
                ps.psubscribe(*self.patterns)
            wait = self._confirmations(_SUB, len(self.channels) + len(self.patterns), [])
            while not wait.feed(ps.get_message(timeout=0.5)):
                pass
        except BaseException:
            ps.reset()
            raise
        return ps, wait.sink

    def _switch(self):
        new, early = self._subscribe_new()
        old, self._ps = self._ps, new
        try:
            if self.channels:
                old.unsubscribe()
            if self.patterns:
                old.punsubscribe()
            wait = self._confirmations(_UNSUB, 1, self._pending)
            while not wait.feed(old.get_message(timeout=0.5)):
                pass
        finally:
            old.reset()
        self._pending.extend(early)
        self.switches += 1

    def get_message(self, timeout=1.0):
        """The next message, or None after `timeout` seconds without one."""
        end = time.monotonic() + timeout
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._stale():
                self._switch()
                continue
            left = end - time.monotonic()
            m = self._ps.get_message(timeout=max(0.0, min(left, 0.5)))
            if m is not None and m["type"] in _DATA:
                return m
            if left <= 0:
                return None

    def close(self):
        if self._ps is not None:
            self._ps.reset()
            self._ps = None


class AsyncSubscriber(_SubscriberBase):
    """Subscriber for redis.asyncio on an AsyncRotatingConnectionPool:

        sub = await AsyncSubscriber.create(async_redis_client("cache", ...), channels=["ev"])
        m = await sub.get_message(timeout=1.0)
    """

    @classmethod
    async def create(cls, client, channels=(), patterns=(), confirm_timeout=10.0):
        self = cls(client, channels, patterns, confirm_timeout)
        self._ps, early = await self._subscribe_new()
        self._pending.extend(early)
        return self

    async def _subscribe_new(self):
        ps = self.client.pubsub(ignore_subscribe_messages=False)
        try:
            if self.channels:
                await ps.subscribe(*self.channels)
            if self.patterns:
                await ps.psubscribe(*self.patterns)
            wait = self._confirmations(_SUB, len(self.channels) + len(self.patterns), [])
            while not wait.feed(await ps.get_message(timeout=0.5)):
                pass
        except BaseException:
            await ps.reset()
            raise
        return ps, wait.sink

    async def _switch(self):
        new, early = await self._subscribe_new()
        old, self._ps = self._ps, new
        try:
            if self.channels:
                await old.unsubscribe()
            if self.patterns:
                await old.punsubscribe()
            wait = self._confirmations(_UNSUB, 1, self._pending)
            while not wait.feed(await old.get_message(timeout=0.5)):
                pass
        finally:
            await old.reset()
        self._pending.extend(early)
        self.switches += 1

    async def get_message(self, timeout=1.0):
        end = time.monotonic() + timeout
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._stale():
                await self._switch()
                continue
            left = end - time.monotonic()
            m = await self._ps.get_message(timeout=max(0.0, min(left, 0.5)))
            if m is not None and m["type"] in _DATA:
                return m
            if left <= 0:
                return None

    async def close(self):
        if self._ps is not None:
            await self._ps.reset()
            self._ps = None


__all__ = ["BLOCK_MARGIN", "Subscriber", "AsyncSubscriber", "blocking_command",
           "async_blocking_command", "block_seconds"]
