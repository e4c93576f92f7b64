"""redis-py >= 5.3: a StreamingCredentialProvider fed by the published file, so that the
client's pooled connections re-AUTH at each change instead of only new connections.

    from redis_creds import StreamingCredentialProvider
    r = redis.Redis(host="redis-1.internal", credential_provider=StreamingCredentialProvider("cache"))

How redis-py 5.3 uses it (its documented interface, redis/credentials.py and
redis/auth/token.py): a client given a streaming provider registers a callback with
on_next() (and one with on_error()); at each change the callback gets a token, and each
pool of the client sends AUTH <token.try_get("oid")> <token.get_value()> on its idle
connections at once, and on in-use ones when they are released. So every token carries
the username as its "oid" claim, "default" for the default user:

    SimpleToken(password, expires_at_ms or -1, now_ms, {"oid": username or "default"})

get_credentials() (and get_credentials_async()) return the current (username, password),
or (password,) for the default user, for new connections. The asyncio client registers
coroutine functions: their coroutines are run on the event loop that last called
get_credentials_async() (the client's loop), from the watcher thread.

redis-py is imported only when a provider is created; with a redis-py older than 5.3 that
raises RedisPyTooOld, which names the version found. Verified against the documented
interface (a test double written from redis-py's source), not against redis-py 5.3
itself, which Debian 12 does not ship.
"""
import asyncio
import inspect
import logging
import sys
import threading
import time
import types

from .credfile import CredentialError, CredentialFile

_log = logging.getLogger("redis_creds")
_bound = {}
_bound_lock = threading.Lock()


class RedisPyTooOld(CredentialError, ImportError):
    """redis-py lacks redis.credentials.StreamingCredentialProvider or redis.auth.token."""


def _redis_streaming_api():
    """(StreamingCredentialProvider, SimpleToken) from redis-py, imported now."""
    try:
        from redis.auth.token import SimpleToken
        from redis.credentials import StreamingCredentialProvider as base
    except ImportError as e:
        found = getattr(sys.modules.get("redis"), "__version__", None)
        raise RedisPyTooOld(
            "redis_creds.StreamingCredentialProvider needs redis-py >= 5.3 (for "
            "redis.credentials.StreamingCredentialProvider and redis.auth.token); %s. With an "
            "older redis-py use redis_creds.redis_client() (any version) or "
            "redis_creds.CredentialProvider (>= 4.4)"
            % ("found redis-py " + found if found else "redis-py is not installed")) from e
    return base, SimpleToken


def _bind(cls):
    """cls as a subclass of redis-py's StreamingCredentialProvider (made once per class), so
    that redis-py's isinstance() check recognises it; redis-py is imported here."""
    base, simple_token = _redis_streaming_api()
    if issubclass(cls, base):
        return cls
    with _bound_lock:
        key = (cls, base)
        if key not in _bound:
            bound = types.new_class(cls.__name__, (cls, base))
            bound.__module__ = cls.__module__
            bound.__qualname__ = cls.__qualname__
            bound._simple_token = staticmethod(simple_token)
            _bound[key] = bound
        return _bound[key]


class StreamingCredentialProvider:
    """Follows the published credential `name` and streams each new one to redis-py.

    watch=False starts no watcher thread (call notify() yourself after a change, e.g. from
    your own Watcher); close() stops the watcher."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(_bind(cls))

    def __init__(self, name=None, runtime_dir=None, credential_file=None, watch=True,
                 method="auto"):
        if credential_file is None:
            if name is None:
                raise ValueError("name or credential_file is required")
            credential_file = CredentialFile(name, runtime_dir)
        self.credential_file = credential_file
        self._lock = threading.Lock()
        self._next_callbacks = []
        self._error_callbacks = []
        self._loop = None
        self._last = None
        self._watcher = credential_file.watch(self._on_change, method=method) if watch else None

    # --- redis-py's interface
    def get_credentials(self):
        cred = self.credential_file.credential()
        with self._lock:
            if self._last is None:
                self._last = cred
        return cred.auth_args()

    async def get_credentials_async(self):
        self._loop = asyncio.get_running_loop()
        return self.get_credentials()

    def on_next(self, callback):
        with self._lock:
            self._next_callbacks.append(callback)

    def on_error(self, callback):
        with self._lock:
            self._error_callbacks.append(callback)

    def is_streaming(self):
        return True

    # --- ours
    def token(self, cred=None, now=None):
        """The token redis-py gets for cred (default: the current credential)."""
        cred = cred or self.credential_file.credential()
        expires_ms = int(cred.expires_at * 1000) if cred.expires_at is not None else -1
        now_ms = int((now if now is not None else time.time()) * 1000)
        return self._simple_token(cred.password, expires_ms, now_ms,
                                  {"oid": cred.username or "default"})

    def notify(self):
        """Reads the file and streams the credential if it changed since the last one."""
        self.credential_file.reload()
        self._on_change(self.credential_file.get(), None)

    def close(self):
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def _on_change(self, snap, err):
        if err is not None:
            self._call(self._error_callbacks, err)
            return
        cred = snap.credential()
        with self._lock:
            if cred == self._last:
                return   # `previous` changed, or a rewrite: nothing new to AUTH with
            self._last = cred
        self._call(self._next_callbacks, self.token(cred))

    def _call(self, callbacks, arg):
        with self._lock:
            callbacks = list(callbacks)
        for cb in callbacks:
            try:
                result = cb(arg)
                if inspect.isawaitable(result):
                    self._run_on_loop(result)
            except Exception:   # one client's failure must not starve the others
                _log.exception("redis_creds: %s: credential callback %r failed",
                               self.credential_file.name, cb)

    def _run_on_loop(self, coro):
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            _log.warning("redis_creds: %s: an asyncio client's re-AUTH could not run: no "
                         "event loop has asked for credentials yet", self.credential_file.name)
            return
        fut = asyncio.run_coroutine_threadsafe(coro, loop)
        fut.add_done_callback(self._log_failure)

    def _log_failure(self, fut):
        if not fut.cancelled() and fut.exception() is not None:
            _log.error("redis_creds: %s: asyncio re-AUTH failed: %r", self.credential_file.name,
                       fut.exception())

    def __repr__(self):
        return "StreamingCredentialProvider(%r)" % self.credential_file.path
