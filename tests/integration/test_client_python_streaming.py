"""redis_creds.StreamingCredentialProvider (redis-py >= 5.3) with the real agent and a
real redis-server.

Debian 12 ships redis-py 4.3.4 and redis-py 5.3 cannot be installed here, so this is the
one place where a stand-in is used: a small test double of redis-py 5.3's documented
interface, written for this test from the facts of redis-py's source
(redis/credentials.py, redis/auth/token.py, ConnectionPool.re_auth_callback and the
listener that registers it):
- StreamingCredentialProvider is an abstract CredentialProvider; a client given one calls
  on_next(callback) and on_error(callback) (isinstance decides);
- at each token, each pool sends AUTH token.try_get("oid") token.get_value() on its idle
  connections at once, and on each in-use one when it is released;
- SimpleToken(value, expires_at_ms, received_at_ms, claims).
The connections themselves are redis-py 4.3.4's, against the real server. So this proves
our side of the contract, not redis-py 5.3 itself."""
import abc
import asyncio
import json
import os
import subprocess
import sys
import time
import types

import pytest
import redis
from redis.connection import Connection, ConnectionPool

import client_helpers as ch
import rc_harness as h
import redis_creds as rc


# ------------------------------------------------------------------ the test double

class _CredentialProvider:
    def get_credentials(self):
        raise NotImplementedError

    async def get_credentials_async(self):
        return self.get_credentials()


class _StreamingCredentialProvider(_CredentialProvider, abc.ABC):
    @abc.abstractmethod
    def on_next(self, callback):
        ...

    @abc.abstractmethod
    def on_error(self, callback):
        ...

    @abc.abstractmethod
    def is_streaming(self):
        ...


class _TokenInterface(abc.ABC):
    @abc.abstractmethod
    def get_value(self):
        ...

    @abc.abstractmethod
    def try_get(self, key):
        ...


class _SimpleToken(_TokenInterface):
    def __init__(self, value, expires_at_ms, received_at_ms, claims):
        self.value, self.expires_at, self.received_at, self.claims = \
            value, expires_at_ms, received_at_ms, claims

    def get_value(self):
        return self.value

    def try_get(self, key):
        return self.claims.get(key)

    def get_expires_at_ms(self):
        return self.expires_at

    def get_received_at_ms(self):
        return self.received_at


class EventError(Exception):
    pass


@pytest.fixture
def redis53(monkeypatch):
    """Makes `redis.credentials` and `redis.auth.token` importable with the double."""
    credentials = types.ModuleType("redis.credentials")
    credentials.CredentialProvider = _CredentialProvider
    credentials.StreamingCredentialProvider = _StreamingCredentialProvider
    auth = types.ModuleType("redis.auth")
    auth.__path__ = []
    token = types.ModuleType("redis.auth.token")
    token.TokenInterface = _TokenInterface
    token.SimpleToken = _SimpleToken
    auth.token = token
    for name, mod in (("redis.credentials", credentials), ("redis.auth", auth),
                      ("redis.auth.token", token)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(redis, "credentials", credentials, raising=False)
    monkeypatch.setattr(redis, "auth", auth, raising=False)


class ProviderConnection(Connection):
    """A connection that authenticates with credential_provider.get_credentials() at
    connect, as redis-py >= 4.4 does."""

    def __init__(self, credential_provider=None, **kw):
        super().__init__(**kw)
        self.credential_provider = credential_provider

    def on_connect(self):
        creds = self.credential_provider.get_credentials()
        self.username, self.password = creds if len(creds) == 2 else (None, creds[0])
        super().on_connect()


class ReAuthPool(ConnectionPool):
    """A pool with redis-py 5.3's re_auth_callback behaviour (see the module doc)."""

    def __init__(self, provider, **kw):
        super().__init__(connection_class=ProviderConnection, credential_provider=provider, **kw)
        self.pending = {}

    @staticmethod
    def _auth(conn, token):
        conn.send_command("AUTH", token.try_get("oid"), token.get_value())
        conn.read_response()

    def re_auth_callback(self, token):
        with self._lock:
            for conn in self._available_connections:
                self._auth(conn, token)
            for conn in self._in_use_connections:
                self.pending[conn] = token

    def release(self, connection):
        token = self.pending.pop(connection, None)
        if token is not None:
            self._auth(connection, token)
        super().release(connection)


def register(provider, pools):
    """What a redis-py 5.3 client does with its credential_provider."""
    if not isinstance(provider, _StreamingCredentialProvider):
        return False

    def on_error(err):
        raise EventError(err)
    provider.on_next(lambda token: [p.re_auth_callback(token) for p in pools])
    provider.on_error(on_error)
    return True


# ------------------------------------------------------------------ helpers

def _client_users(sc):
    """{client id: ACL user} of every connection to the server."""
    c = sc.redis.client()
    try:
        out = {}
        for line in c.execute_command("CLIENT", "LIST").decode().splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            out[int(fields["id"])] = fields["user"]
        return out
    finally:
        c.close()


def _publish(sc, user, password):
    sc.store_cred(user, password)
    return sc.wait_published(password=password, pred=lambda d: d.get("username") == user,
                             timeout=10)


def _write_file(directory, doc):
    tmp = os.path.join(directory, ".tmp-cache.json")
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.rename(tmp, os.path.join(directory, "cache.json"))


# ------------------------------------------------------------------ tests

def test_streaming_provider_re_auths_open_pooled_connections_at_each_change(sc, redis53):
    """Alternating users (app-a, app-b): after each publication the pool's connections,
    idle and in use, are authenticated as the new user without reconnecting."""
    sc.redis.create_user("app-a", "pw-a-1", "pw-a-2")
    sc.redis.create_user("app-b", "pw-b-1")
    sc.store_cred("app-a", "pw-a-1")
    sc.write_config()
    sc.start_agent().wait_ready()
    sc.wait_published(password="pw-a-1")

    provider = rc.StreamingCredentialProvider("cache", runtime_dir=sc.tree.runtime)
    sc.on_close(provider.close)
    assert isinstance(provider, rc.StreamingCredentialProvider)
    assert isinstance(provider, _StreamingCredentialProvider) and provider.is_streaming()
    pool = ReAuthPool(provider, host="127.0.0.1", port=sc.redis.port, socket_timeout=5)
    sc.on_close(pool.disconnect)
    tokens = []
    assert register(provider, [pool])
    provider.on_next(tokens.append)

    conns = [pool.get_connection("PING") for _ in range(3)]
    ids = []
    for c in conns:
        c.send_command("CLIENT", "ID")
        ids.append(c.read_response())
    held = conns.pop()          # stays checked out across the first change
    for c in conns:
        pool.release(c)
    assert all(_client_users(sc)[i] == "app-a" for i in ids)

    _publish(sc, "app-b", "pw-b-1")
    h.wait_until(lambda: [_client_users(sc).get(i) for i in ids[:2]] == ["app-b"] * 2, 10,
                 "the idle pooled connections to re-AUTH as app-b (have %r)" % _client_users(sc))
    assert _client_users(sc)[ids[2]] == "app-a", "an in-use connection re-AUTHs at release"
    # The pool's callback re-AUTHs the idle connections, then marks the one in use; the
    # test's own callback runs after it, so once it has the token the mark is made.
    h.wait_until(lambda: tokens, 5, "the change delivered to every callback")
    pool.release(held)
    assert _client_users(sc)[ids[2]] == "app-b"
    tok = tokens[-1]
    assert (tok.try_get("oid"), tok.get_value(), tok.get_expires_at_ms()) == \
        ("app-b", "pw-b-1", -1)
    assert abs(tok.get_received_at_ms() - time.time() * 1000) < 30000

    _publish(sc, "app-a", "pw-a-2")
    h.wait_until(lambda: [_client_users(sc).get(i) for i in ids] == ["app-a"] * 3, 10,
                 "every pooled connection to re-AUTH as app-a again")
    assert [t.get_value() for t in tokens] == ["pw-b-1", "pw-a-2"], "one token per change"
    assert pool._created_connections == 3, "re-AUTH in place, no new connections"
    c = pool.get_connection("PING")
    c.send_command("ACL", "WHOAMI")
    assert c.read_response() == b"app-a"
    pool.release(c)
    # new connections use the current credential
    assert provider.get_credentials() == ("app-a", "pw-a-2")


def test_streaming_token_contract_default_user_and_expiry(tmp_path, redis53):
    _write_file(str(tmp_path), {"format": 1, "name": "cache", "username": None,
                                "password": "pw-default", "version": "v1",
                                "expires_at": "2030-01-01T00:00:00Z"})
    p = rc.StreamingCredentialProvider("cache", runtime_dir=str(tmp_path), watch=False)
    tok = p.token(now=1700000000.5)
    assert isinstance(tok, _SimpleToken)
    assert tok.get_value() == "pw-default"
    assert tok.try_get("oid") == "default", "the default user still needs an oid claim"
    assert tok.get_expires_at_ms() == 1893456000000
    assert tok.get_received_at_ms() == 1700000000500
    assert p.get_credentials() == ("pw-default",)
    assert asyncio.run(p.get_credentials_async()) == ("pw-default",)


def test_streaming_provider_reports_a_broken_file_to_on_error(tmp_path, redis53):
    d = str(tmp_path)
    _write_file(d, {"format": 1, "name": "cache", "username": "u", "password": "p1",
                    "version": "v1"})
    p = rc.StreamingCredentialProvider("cache", runtime_dir=d)
    try:
        errors, tokens = [], []
        p.on_error(errors.append)
        p.on_next(tokens.append)
        p.on_next(lambda t: 1 / 0)   # a failing client does not starve the next one
        p.on_next(lambda t: tokens.append("second"))
        _write_file(d, {"format": 1, "name": "cache", "password": ""})
        h.wait_until(lambda: errors, 5, "on_error for a file without a password")
        assert isinstance(errors[0], rc.CredentialFileError)
        assert p.get_credentials() == ("u", "p1"), "the last good credential is kept"
        _write_file(d, {"format": 1, "name": "cache", "username": "u", "password": "p2",
                        "version": "v2"})
        h.wait_until(lambda: len(tokens) == 2, 5, "the next token after the repair")
        assert tokens[0].get_value() == "p2" and tokens[1] == "second"
    finally:
        p.close()


def test_streaming_provider_runs_asyncio_callbacks_on_the_client_loop(tmp_path, redis53):
    d = str(tmp_path)
    _write_file(d, {"format": 1, "name": "cache", "username": "u", "password": "p1",
                    "version": "v1"})
    p = rc.StreamingCredentialProvider("cache", runtime_dir=d)

    async def main():
        seen = []

        async def re_auth(token):   # what redis-py 5.3's asyncio client registers
            seen.append((token.get_value(), asyncio.get_running_loop()))
        p.on_next(re_auth)
        assert await p.get_credentials_async() == ("u", "p1")
        _write_file(d, {"format": 1, "name": "cache", "username": "u", "password": "p2",
                        "version": "v2"})
        for _ in range(500):
            if seen:
                break
            await asyncio.sleep(0.01)
        return seen, asyncio.get_running_loop()
    try:
        seen, loop = asyncio.run(main())
    finally:
        p.close()
    assert seen == [("p2", loop)]


def test_streaming_provider_needs_redis_py_5_3_and_says_so(tmp_path):
    # Debian's redis-py 4.3.4, no double
    with pytest.raises(rc.RedisPyTooOld) as e:
        rc.StreamingCredentialProvider("cache", runtime_dir=str(tmp_path), watch=False)
    msg = str(e.value)
    assert "redis-py >= 5.3" in msg and "found redis-py %s" % redis.__version__ in msg, msg
    assert isinstance(e.value, ImportError)


def test_streaming_module_imports_redis_only_when_a_provider_is_created():
    code = ("import sys; sys.path.insert(0, %r); import redis_creds; "
            "redis_creds.StreamingCredentialProvider; import redis_creds.streaming; "
            "print('redis' in sys.modules)" % ch.PYTHON_CLIENT_DIR)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "False", (r.stdout, r.stderr)
