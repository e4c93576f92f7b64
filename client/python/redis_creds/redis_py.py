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
"""
import redis
from redis.connection import Connection, ConnectionPool, SSLConnection, \
    UnixDomainSocketConnection
from redis.exceptions import AuthenticationError, ResponseError

from .credfile import CredentialFile

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
    `previous` one instead (or the current when there is none)."""

    def __init__(self, name=None, runtime_dir=None, credential_file=None, use_previous=False):
        if credential_file is None:
            if name is None:
                raise ValueError("name or credential_file is required")
            credential_file = CredentialFile(name, runtime_dir)
        self.credential_file = credential_file
        self.use_previous = use_previous

    def get_credentials(self):
        snap = self.credential_file.get()
        cred = snap.previous if self.use_previous and snap.previous else snap.current
        return cred.auth_args()

    async def get_credentials_async(self):   # redis-py >= 5.1's asyncio clients
        return self.get_credentials()


class RotatingAuthMixin:
    """AUTH from a CredentialFile at every connect, with the fallback to `previous`.

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

    def _rc_try(self, cred):
        self.username, self.password = cred.username, cred.password
        self.credential_provider = None   # redis-py >= 4.4: use username/password above
        try:
            super().on_connect()
            return None
        except (AuthenticationError, ResponseError) as e:
            if not is_refusal(e):
                raise
            return e
        finally:
            # the secret lives in the CredentialFile's snapshot, not on every connection
            self.password = None

    def on_connect(self):
        snap = self.rc_file.get()
        refused = None
        for attempt in range(2):
            for cred, is_prev in ((snap.current, False), (snap.previous, True)):
                if cred is None:
                    continue
                refused = self._rc_try(cred)
                if refused is None:
                    self.rc_generation = snap.generation
                    self.rc_used_previous = is_prev
                    return
            # both refused: a newer credential may have been published a moment ago (by
            # the time we read it, a watcher may already have loaded it: compare with the
            # snapshot tried, not with what reload() found)
            if attempt == 1:
                break
            self.rc_file.reload()
            fresh = self.rc_file.get()
            if fresh.generation == snap.generation:
                break
            snap = fresh
        raise AuthenticationError("redis-creds %s: Redis refused the current and the previous "
                                  "credential (%s)" % (self.rc_file.name,
                                                       str(refused).split(" ", 1)[0]))

    def rc_stale(self):
        """True when a newer credential was published since this connection authenticated."""
        if not self.rc_generation:
            return False
        self.rc_file.get()   # no I/O while a Watcher runs; else one stat()
        return self.rc_file.generation != self.rc_generation


class RotatingConnection(RotatingAuthMixin, Connection):
    pass


class RotatingSSLConnection(RotatingAuthMixin, SSLConnection):
    pass


class RotatingUnixDomainSocketConnection(RotatingAuthMixin, UnixDomainSocketConnection):
    pass


class RotatingConnectionPool(ConnectionPool):
    """A ConnectionPool that re-AUTHs (by reconnecting) an idle connection whose credential
    was replaced, when it hands it out. Connections in use are left alone: Redis keeps
    an authenticated connection working when its password is removed."""

    def __init__(self, connection_class=RotatingConnection, **kwargs):
        # one CredentialFile (one cache, one watcher) for all the pool's connections
        if kwargs.get("credential_file") is None and "credential_name" in kwargs:
            kwargs["credential_file"] = CredentialFile(kwargs.pop("credential_name"),
                                                       kwargs.pop("runtime_dir", None))
        super().__init__(connection_class=connection_class, **kwargs)

    def get_connection(self, command_name, *keys, **options):
        conn = super().get_connection(command_name, *keys, **options)
        try:
            if isinstance(conn, RotatingAuthMixin) and conn.rc_stale():
                conn.disconnect()
                conn.connect()
        except BaseException:
            self.release(conn)
            raise
        return conn


def redis_client(name, runtime_dir=None, watch=True, on_change=None, ssl=False,
                 unix_socket_path=None, credential_file=None, **kwargs):
    """A redis.Redis whose connections authenticate from the published credential `name`,
    fall back to `previous` on a refusal, and re-AUTH when it changes. kwargs go to the
    connection (host, port, db, socket_timeout, ...). watch=True starts a Watcher (inotify)
    so that reading the credential costs no I/O; on_change(snapshot, error) is its callback.
    The pool is at .connection_pool, the watcher at .connection_pool.rc_watcher."""
    cf = credential_file or CredentialFile(name, runtime_dir)
    cf.get()   # fail early (CredentialUnavailable) when there is no credential at all
    if unix_socket_path:
        cls = RotatingUnixDomainSocketConnection
        kwargs["path"] = unix_socket_path
    else:
        cls = RotatingSSLConnection if ssl else RotatingConnection
    pool = RotatingConnectionPool(connection_class=cls, credential_file=cf, **kwargs)
    pool.rc_watcher = cf.watch(callback=on_change) if watch else None
    return redis.Redis(connection_pool=pool)
