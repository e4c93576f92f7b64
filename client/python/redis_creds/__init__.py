"""redis-creds: use the Redis credential that the redis-creds agent publishes.

    from redis_creds import CredentialFile
    cf = CredentialFile("cache")              # $REDIS_CREDS_RUNTIME_DIR or /run/redis-creds
    cred = cf.credential()                    # .username (None = default user), .password
    cf.credential(previous=True)              # the fallback during a rotation

redis-py (imported only when used):

    from redis_creds import redis_client      # any redis-py >= 4.3
    r = redis_client("cache", host="redis-1.internal", port=6379)

    from redis_creds import CredentialProvider    # redis-py >= 4.4
    r = redis.Redis(host=..., credential_provider=CredentialProvider("cache"))

    from redis_creds import async_redis_client    # redis.asyncio, redis-py >= 4.3
    r = async_redis_client("cache", host="redis-1.internal", port=6379)
    await r.incr("counter")

    from redis_creds import StreamingCredentialProvider   # redis-py >= 5.3: pooled
    # connections re-AUTH in place at each change
    r = redis.Redis(host=..., credential_provider=StreamingCredentialProvider("cache"))

    from redis_creds import Subscriber, blocking_command   # long-lived connections with
    sub = Subscriber(r, channels=["events"])                # expiring tokens (longlived.py)
    blocking_command(r, "BLPOP", "jobs", timeout=0)

Standard library only; redis-py is needed only for the redis-py integration."""
from .credfile import (DEFAULT_RUNTIME_DIR, Credential, CredentialError, CredentialFile,
                       CredentialFileError, CredentialUnavailable, Snapshot,
                       default_runtime_dir, parse)
from .watcher import Watcher

__version__ = "0.1.0"

_REDIS_NAMES = ("CredentialProvider", "RotatingConnection", "RotatingSSLConnection",
                "RotatingUnixDomainSocketConnection", "RotatingConnectionPool",
                "RotatingAuthMixin", "redis_client", "is_refusal")
_LONGLIVED_NAMES = ("Subscriber", "AsyncSubscriber", "blocking_command",
                    "async_blocking_command", "block_seconds", "BLOCK_MARGIN")
_ASYNC_NAMES = ("AsyncRotatingConnection", "AsyncRotatingSSLConnection",
                "AsyncRotatingUnixDomainSocketConnection", "AsyncRotatingConnectionPool",
                "AsyncRotatingAuthMixin", "async_redis_client")
_STREAMING_NAMES = ("StreamingCredentialProvider", "RedisPyTooOld")

__all__ = ["DEFAULT_RUNTIME_DIR", "Credential", "CredentialError", "CredentialFile",
           "CredentialFileError", "CredentialUnavailable", "Snapshot", "Watcher",
           "default_runtime_dir", "parse"] + list(_REDIS_NAMES) + list(_ASYNC_NAMES) + \
    list(_STREAMING_NAMES) + list(_LONGLIVED_NAMES)


def __getattr__(name):
    if name in _REDIS_NAMES:
        from . import redis_py
        return getattr(redis_py, name)
    if name in _LONGLIVED_NAMES:
        from . import longlived
        return getattr(longlived, name)
    if name in _ASYNC_NAMES:
        from . import redis_asyncio
        return getattr(redis_asyncio, name)
    if name in _STREAMING_NAMES:   # imports redis-py only when a provider is created
        from . import streaming
        return getattr(streaming, name)
    raise AttributeError("module 'redis_creds' has no attribute %r" % name)
