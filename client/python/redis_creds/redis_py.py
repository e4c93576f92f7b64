"""redis-py integration, for both generations:

- redis-py >= 4.4 has `credential_provider=`: CredentialProvider.get_credentials() returns
  (username, password), or (password,) for the default user, read from the published file
  at every connect.
- redis-py 4.3 (Debian 12's python3-redis) has no credential provider: RotatingConnection
  (pass it as ConnectionPool(connection_class=...)) reads the current credential at every
  connect and, when Redis refuses it, retries once with `previous` (and once more with a
  freshly re-read file). It works with redis-py >= 4.4 too, and is what adds the fallback.
- RotatingConnectionPool re-AUTHs (reconnects) an idle pooled connection, when it is
  handed out, if the credential changed since it authenticated; redis_client() builds a
  redis.Redis with both and a Watcher.

The asyncio equivalents (redis.asyncio) are in redis_asyncio.py; the credential choice and
fallback that both use is _AuthPlan here.
"""
import contextlib

import redis
from redis.connection import Connection, ConnectionPool, SSLConnection, \
    UnixDomainSocketConnection
from redis.exceptions import AuthenticationError, ResponseError
from redis.utils import str_if_bytes

from .credfile import CredentialError, CredentialFile

try:  # redis-py >= 4.4
    from redis.credentials import CredentialProvider as _ProviderBase
except ImportError:  # redis-py 4.3: duck typing is all redis-py ever did with it
    _ProviderBase = object

_REFUSALS = ("WRONGPASS", "invalid password", "invalid username-password pair",
             "ERR invalid password", "Invalid Username or Password")


def is_refusal(exc):
    """True when exc is Redis refusing a credential (WRONGPASS and friends; redis-py 4.3
    raises ResponseError for WRONGPASS, 5.x AuthenticationError), not another error."""
    if not isinstance(exc, (AuthenticationError, ResponseError)):
        return False
    msg = str(exc)
    if "no password is set" in msg or "without any password configured" in msg:
        return False   # a server without passwords: a misconfiguration, not a refusal
    return isinstance(exc, AuthenticationError) or msg.startswith(_REFUSALS)


class CredentialProvider(_ProviderBase):
    """For redis-py >= 4.4: redis.Redis(..., credential_provider=CredentialProvider("cache")).

    get_credentials() is called by redis-py at every connect and returns the current
    credential's (username, password) or (password,); use_previous=True returns the
    `previous` one instead (or the current when there is none, or it expired or is past
    the file's previous_valid_until)."""

    def __init__(self, name=None, runtime_dir=None, credential_file=None, use_previous=False):
        if credential_file is None:
            if name is None:
                raise ValueError("name or credential_file is required")
            credential_file = CredentialFile(name, runtime_dir)
        self.credential_file = credential_file
        self.use_previous = use_previous

    def get_credentials(self):
        snap = self.credential_file.get()
        prev = snap.usable_previous() if self.use_previous else None
        cred = prev or snap.current
        return cred.auth_args()

    async def get_credentials_async(self):   # redis-py >= 5.1's asyncio clients
        return self.get_credentials()


RELOAD = object()   # an _AuthPlan step: re-read the credential file now


class _AuthPlan:
    """The credential choice and fallback at connect, shared by the sync and the asyncio
    connections (RotatingAuthMixin, AsyncRotatingAuthMixin), which only do the I/O:

        plan = _AuthPlan(conn)
        for step in plan:
            if step is RELOAD:
                conn.rc_file.reload()          # asyncio: in an executor
            else:
                with plan.attempt(step):       # sets username/password, clears them after
                    base_class.on_connect(conn)    # asyncio: awaited

    Order: the current credential, then `previous`; when both are refused, the file is
    re-read once and, if a newer credential was published meanwhile, its pair is tried.
    The iteration ends once one is accepted, after setting conn.rc_generation and
    conn.rc_used_previous. An error of an attempt that is not a refusal (is_refusal) is
    raised as it is; when Redis refused every candidate, AuthenticationError (naming the
    credential, never the password)."""

    def __init__(self, conn):
        self.conn = conn
        self.answer = None   # what Redis answered the last attempt: None, or the error

    @contextlib.contextmanager
    def attempt(self, cred):
        conn = self.conn
        conn.username, conn.password = cred.username, cred.password
        conn.credential_provider = None   # redis-py >= 4.4: use username/password above
        try:
            yield
        except (AuthenticationError, ResponseError) as e:
            self.answer = e     # __iter__ tells a refusal from another error
        finally:
            conn.password = None  # the secret lives in the CredentialFile's snapshot only

    def __iter__(self):
        cf = self.conn.rc_file
        snap = cf.get()
        for round_ in range(2):
            for cred, is_prev in ((snap.current, False), (snap.usable_previous(), True)):
                if cred is None:
                    continue
                self.answer = None
                yield cred
                if self.answer is None:
                    self.conn.rc_generation = snap.generation
                    self.conn.rc_used_previous = is_prev
                    self.conn.rc_expires_at = cred.expires_at
                    return
                if not is_refusal(self.answer):
                    raise self.answer
            if round_ == 1:
                break
            # both refused: a newer credential may have been published a moment ago (by
            # the time we read it, a watcher may already have loaded it: compare with the
            # snapshot tried, not with what reload() found)
            yield RELOAD
            fresh = cf.get()
            if fresh.generation == snap.generation:
                break
            snap = fresh
        raise AuthenticationError("redis-creds %s: Redis refused the current and the "
                                  "previous credential (%s)" %
                                  (cf.name, str(self.answer).split(" ", 1)[0]))


def _share_credential_file(kwargs):
    """A pool's keyword arguments: one CredentialFile (one cache, one watcher) for all the
    pool's connections, made here from credential_name= (and runtime_dir=) if given."""
    if kwargs.get("credential_file") is None and "credential_name" in kwargs:
        kwargs["credential_file"] = CredentialFile(kwargs.pop("credential_name"),
                                                   kwargs.pop("runtime_dir", None))
    return kwargs


class RotatingAuthBase:
    """What the sync and the asyncio rotating connections share: the CredentialFile, the
    credential they authenticated with, and the staleness check.

    Extra keyword arguments (ConnectionPool passes them on): credential_file=, or
    credential_name= and runtime_dir=. username= and password= are ignored."""

    def __init__(self, *args, credential_file=None, credential_name=None, runtime_dir=None,
                 **kwargs):
        if credential_file is None:
            if credential_name is None:
                raise ValueError("credential_file or credential_name is required")
            credential_file = CredentialFile(credential_name, runtime_dir)
        kwargs.pop("username", None)
        kwargs.pop("password", None)
        kwargs.pop("credential_provider", None)
        super().__init__(*args, **kwargs)
        self.rc_file = credential_file
        self.rc_generation = 0       # of the snapshot this connection authenticated with
        self.rc_used_previous = False
        self.rc_expires_at = None    # of the credential it authenticated with (Unix time)

    def rc_stale(self):
        """True when this connection is open and a newer credential was published since it
        authenticated."""
        if not self.rc_generation or not self.rc_connected():
            return False
        self.rc_file.get()   # no I/O while a Watcher runs; else one stat()
        return self.rc_file.generation != self.rc_generation


class RotatingAuthMixin(RotatingAuthBase):
    """AUTH from a CredentialFile at every connect, with the fallback to `previous`
    (_AuthPlan), for redis.connection.Connection and its subclasses. rc_reauth() sends
    AUTH again on the open connection (same plan), for a connection no command is using."""

    def rc_connected(self):
        return self._sock is not None

    def rc_reauth(self):
        plan = _AuthPlan(self)
        for step in plan:
            if step is RELOAD:
                self.rc_file.reload()
                continue
            with plan.attempt(step):
                self.send_command("AUTH", *step.auth_args(), check_health=False)
                if str_if_bytes(self.read_response()) != "OK":
                    raise ResponseError("AUTH was not answered OK")

    def on_connect(self):
        plan = _AuthPlan(self)
        try:
            for step in plan:
                if step is RELOAD:
                    self.rc_file.reload()
                    continue
                with plan.attempt(step):
                    super().on_connect()
        except CredentialError:   # connect() disconnects only on a RedisError: never leave
            self.disconnect()     # an unauthenticated connection to the pool
            raise


class RotatingConnection(RotatingAuthMixin, Connection):
    pass


class RotatingSSLConnection(RotatingAuthMixin, SSLConnection):
    pass


class RotatingUnixDomainSocketConnection(RotatingAuthMixin, UnixDomainSocketConnection):
    pass


def _reauth_or_reconnect(conn):
    """Re-AUTHs a stale connection in place; when that fails, reconnects it (a new AUTH)."""
    try:
        conn.rc_reauth()
    except CredentialError:
        raise
    except Exception:  # noqa: BLE001 - any failure of the in-place AUTH: start afresh
        conn.disconnect()
        conn.connect()


def _next_stale(idle, tried):
    """The first connection of idle that is stale and not in tried (which it joins)."""
    for conn in idle:
        if id(conn) not in tried and isinstance(conn, RotatingAuthBase) and conn.rc_stale():
            tried.add(id(conn))
            return conn
    return None


class RotatingConnectionPool(ConnectionPool):
    """A ConnectionPool whose connections move to each new credential in place: when a
    change is published, idle connections are re-AUTHed at once (reauth_idle(), which the
    pool's Watcher calls, see redis_client()); a connection in use is re-AUTHed when it
    is handed back, or when it is handed out if that comes first. Long-blocking commands
    and subscribers need longlived.py (Redis answers an AUTH only after the blocked
    command, and refuses it on a RESP2 subscribed connection)."""
    rc_connection_classes = (RotatingConnection, RotatingSSLConnection,
                             RotatingUnixDomainSocketConnection)   # for redis_client()

    def __init__(self, connection_class=RotatingConnection, **kwargs):
        super().__init__(connection_class=connection_class, **_share_credential_file(kwargs))

    def get_connection(self, command_name, *keys, **options):
        conn = super().get_connection(command_name, *keys, **options)
        try:
            if isinstance(conn, RotatingAuthBase) and conn.rc_stale():
                _reauth_or_reconnect(conn)
        except BaseException:
            self.release(conn)
            raise
        return conn

    def release(self, connection):
        try:
            if isinstance(connection, RotatingAuthBase) and connection.rc_stale():
                _reauth_or_reconnect(connection)
        except Exception:  # noqa: BLE001 - handed back broken: the next user reconnects
            connection.disconnect()
        super().release(connection)

    def reauth_idle(self):
        """Re-AUTHs every idle connection whose credential was replaced, one at a time:
        each is taken out of the pool meanwhile (so no command uses it), and the others
        stay available. Returns how many were re-AUTHed."""
        done, tried = 0, set()
        while True:
            with self._lock:
                conn = _next_stale(self._available_connections, tried)
                if conn is None:
                    return done
                self._available_connections.remove(conn)
            try:
                conn.rc_reauth()
                done += 1
            except Exception:  # noqa: BLE001 - reconnects when next handed out
                conn.disconnect()
            finally:
                with self._lock:
                    self._available_connections.append(conn)

    def rc_on_change(self, snapshot, error):
        """The Watcher's callback (redis_client() installs it)."""
        if error is None:
            self.reauth_idle()


def redis_client(name, runtime_dir=None, watch=True, on_change=None, ssl=False,
                 unix_socket_path=None, credential_file=None, **kwargs):
    """A redis.Redis whose connections authenticate from the published credential `name`,
    fall back to `previous` on a refusal, and re-AUTH when it changes. kwargs go to the
    connection (host, port, db, socket_timeout, ...). watch=True starts a Watcher (inotify)
    so that reading the credential costs no I/O; on_change(snapshot, error) is its callback.
    The pool is at .connection_pool, the watcher at .connection_pool.rc_watcher."""
    pool = _rotating_pool(RotatingConnectionPool, name, runtime_dir, watch, on_change, ssl,
                          unix_socket_path, credential_file, kwargs)
    return redis.Redis(connection_pool=pool)


def _rotating_pool(pool_class, name, runtime_dir, watch, on_change, ssl, unix_socket_path,
                   credential_file, kwargs):
    """The pool of redis_client() and async_redis_client(), with the connection class
    that pool_class.rc_connection_classes (plain, ssl, unix socket) has for the options."""
    cf = credential_file or CredentialFile(name, runtime_dir)
    cf.get()   # fail early (CredentialUnavailable) when there is no credential at all
    plain, tls, unix = pool_class.rc_connection_classes
    if unix_socket_path:
        cls = unix
        kwargs["path"] = unix_socket_path
    else:
        cls = tls if ssl else plain
    pool = pool_class(connection_class=cls, credential_file=cf, **kwargs)

    def changed(snapshot, error):
        pool.rc_on_change(snapshot, error)
        if on_change is not None:
            on_change(snapshot, error)
    pool.rc_watcher = cf.watch(callback=changed) if watch else None
    return pool
