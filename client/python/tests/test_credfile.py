"""Unit tests of the pure-Python client (no Redis): parsing, caching by inode/mtime, the
last good credential kept, previous, the watcher (inotify and polling), the provider's
contract. Run: /usr/bin/python3 -m pytest -q client/python/tests"""
import json
import os
import shutil
import tempfile
import threading
import time

import pytest

import redis_creds as rc


def doc(password="pw1", version="v1", username="app", previous=None, **extra):
    d = {"format": 1, "name": "cache", "username": username, "password": password,
         "version": version, "source": "local:cache.json",
         "published_at": "2026-11-22T10:00:00Z", "validated": "all", "expires_at": None,
         "previous": previous}
    d.update(extra)
    return json.dumps(d, indent=2) + "\n"


def publish(directory, text, name="cache"):
    tmp = os.path.join(directory, ".%s.tmp-%s" % (name, os.urandom(4).hex()))
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(directory, name + ".json"))


@pytest.fixture
def rundir():
    d = tempfile.mkdtemp(prefix="rc-py-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def wait_for(pred, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.002)
    return False


def test_every_field_is_read_and_the_password_is_never_in_a_repr(rundir):
    prev = {"username": "app", "password": "old-secret", "version": "v0",
            "expires_at": "2026-11-22T11:00:00Z"}
    publish(rundir, doc(password="new-secret", previous=prev,
                        expires_at="2026-11-22T12:00:00.5+01:00", unknown_key={"x": 1}))
    cf = rc.CredentialFile("cache", rundir)
    snap = cf.get()
    assert snap.current.username == "app" and snap.current.password == "new-secret"
    assert snap.current.version == "v1"
    assert snap.current.expires_at == 1795345200.5
    assert snap.previous.password == "old-secret" and snap.previous.version == "v0"
    assert snap.previous.expires_at == 1795345200
    assert snap.generation == 1
    assert cf.credential().auth_args() == ("app", "new-secret")
    assert cf.credential(previous=True).password == "old-secret"
    for text in (repr(snap), repr(snap.current), repr(snap.previous), repr(cf)):
        assert "secret" not in text


def test_default_user_gives_a_one_element_auth_tuple(rundir):
    publish(rundir, doc(username=None))
    assert rc.CredentialFile("cache", rundir).credential().auth_args() == ("pw1",)


def test_runtime_dir_comes_from_the_environment(rundir, monkeypatch):
    monkeypatch.setenv("REDIS_CREDS_RUNTIME_DIR", rundir)
    assert rc.CredentialFile("cache").path == os.path.join(rundir, "cache.json")
    monkeypatch.delenv("REDIS_CREDS_RUNTIME_DIR")
    assert rc.CredentialFile("cache").path == "/run/redis-creds/cache.json"


def test_bad_names_are_refused():
    for bad in ("", ".hidden", "a/b", "x" * 65, "../etc"):
        with pytest.raises(ValueError):
            rc.CredentialFile(bad, "/tmp")


def test_an_unchanged_file_is_not_read_again(rundir):
    publish(rundir, doc())
    cf = rc.CredentialFile("cache", rundir)
    for _ in range(100):
        cf.get()
    assert cf.reads == 1
    publish(rundir, doc(password="pw2", version="v2"))
    assert cf.get().current.password == "pw2"
    assert cf.reads == 2 and cf.generation == 2
    # the same content republished (new inode): read, but not a new generation
    publish(rundir, doc(password="pw2", version="v2"))
    assert cf.get().generation == 2 and cf.reads == 3


def test_never_good_raises_a_clear_exception(rundir):
    cf = rc.CredentialFile("cache", rundir)
    with pytest.raises(rc.CredentialUnavailable) as e:
        cf.get()
    assert "cache.json" in str(e.value)
    publish(rundir, '{"format": 1, "password": "half-writ')
    with pytest.raises(rc.CredentialUnavailable) as e:
        cf.get()
    assert "malformed JSON" in str(e.value) and "half-writ" not in str(e.value)
    publish(rundir, doc(version=None))
    with pytest.raises(rc.CredentialUnavailable, match="version is missing"):
        cf.get()
    publish(rundir, json.dumps({"format": 2, "password": "p", "version": "1"}))
    with pytest.raises(rc.CredentialUnavailable, match="unknown format 2"):
        cf.get()
    publish(rundir, doc(name="other"))
    with pytest.raises(rc.CredentialUnavailable, match="for credential 'other'"):
        cf.get()
    publish(rundir, doc() + " " * (64 * 1024))
    with pytest.raises(rc.CredentialUnavailable, match="64 KiB"):
        cf.get()


def test_malformed_or_missing_file_keeps_the_last_good_credential(rundir):
    publish(rundir, doc())
    cf = rc.CredentialFile("cache", rundir)
    assert cf.get().current.password == "pw1"
    publish(rundir, "{ not json")
    assert cf.get().current.password == "pw1"
    assert isinstance(cf.last_error, rc.CredentialFileError)
    reads = cf.reads
    cf.get()
    assert cf.reads == reads, "the same bad file is not re-read"
    os.unlink(os.path.join(rundir, "cache.json"))
    assert cf.get().current.password == "pw1"
    assert isinstance(cf.last_error, FileNotFoundError)
    publish(rundir, doc(password="pw2", version="v2"))
    assert cf.get().current.password == "pw2" and cf.last_error is None


def test_previous_when_there_is_none_is_an_error(rundir):
    publish(rundir, doc())
    with pytest.raises(rc.CredentialError, match="no previous"):
        rc.CredentialFile("cache", rundir).credential(previous=True)


@pytest.mark.parametrize("method", ["inotify", "poll"])
def test_watcher_calls_back_on_each_change_and_error(rundir, method):
    publish(rundir, doc())
    cf = rc.CredentialFile("cache", rundir)
    cf.get()
    events = []
    lock = threading.Lock()

    def cb(snap, err):
        with lock:
            events.append((snap.current.version if snap else None, err))
    with cf.watch(callback=cb, method=method, interval=0.05) as w:
        assert w.method == method
        publish(rundir, doc(password="pw2", version="v2"))
        assert wait_for(lambda: any(v == "v2" and e is None for v, e in events))
        if method == "inotify":
            # get() answers from memory while the directory is watched
            reads = cf.reads
            for _ in range(50):
                cf.get()
            assert cf.reads == reads
        publish(rundir, "garbage")
        assert wait_for(lambda: any(e is not None for v, e in events))
        assert cf.get().current.version == "v2"
        publish(rundir, doc(password="pw3", version="v3"))
        assert wait_for(lambda: cf.get().current.version == "v3" and
                        events[-1] == ("v3", None))


def test_inotify_watcher_follows_a_recreated_directory(rundir):
    run = os.path.join(rundir, "run")
    os.mkdir(run)
    publish(run, doc())
    cf = rc.CredentialFile("cache", run)
    cf.get()
    seen = []
    with cf.watch(callback=lambda s, e: seen.append(s.current.version if s and not e else e),
                  method="inotify", interval=0.05):
        for n in (2, 3):
            shutil.rmtree(run)
            assert wait_for(lambda: cf._watched is False)
            assert cf.get().current.version == "v%d" % (n - 1)   # kept
            os.mkdir(run)
            publish(run, doc(password="pw%d" % n, version="v%d" % n))
            assert wait_for(lambda: cf.get().current.version == "v%d" % n), seen
        assert wait_for(lambda: cf._watched is True)


def test_credential_provider_contract_for_redis_py_4_4():
    """redis-py >= 4.4 calls get_credentials() at each connect and sends AUTH with the
    tuple it returns: (username, password), or (password,) for the default user."""
    pytest.importorskip("redis")
    d = tempfile.mkdtemp(prefix="rc-py-")
    try:
        publish(d, doc(password="pw2", version="v2",
                       previous={"username": "app", "password": "pw1", "version": "v1"}))
        p = rc.CredentialProvider("cache", runtime_dir=d)
        assert p.get_credentials() == ("app", "pw2")
        assert rc.CredentialProvider("cache", d, use_previous=True).get_credentials() == \
            ("app", "pw1")
        publish(d, doc(username=None, password="pw3", version="v3"))
        assert p.get_credentials() == ("pw3",)
        import redis
        base = getattr(getattr(redis, "credentials", None), "CredentialProvider", None)
        if base is not None:   # only on redis-py >= 4.4
            assert isinstance(p, base)
        import asyncio
        assert asyncio.run(p.get_credentials_async()) == ("pw3",)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_is_refusal_knows_both_redis_py_generations():
    redis = pytest.importorskip("redis")
    from redis.exceptions import AuthenticationError, ResponseError
    assert rc.is_refusal(ResponseError("WRONGPASS invalid username-password pair or user is disabled."))
    assert rc.is_refusal(AuthenticationError("invalid username-password pair or user is disabled."))
    assert rc.is_refusal(AuthenticationError("invalid password"))
    assert not rc.is_refusal(ResponseError("NOPERM this user has no permissions"))
    assert not rc.is_refusal(AuthenticationError("Client sent AUTH, but no password is set"))
    assert not rc.is_refusal(redis.ConnectionError("Connection refused"))


def test_a_watcher_not_started_does_not_freeze_get_and_start_catches_up(rundir):
    publish(rundir, doc())
    cf = rc.CredentialFile("cache", rundir)
    cf.get()
    w = rc.Watcher(cf, method="inotify")
    publish(rundir, doc(password="pw2", version="v2"))
    assert cf.get().current.version == "v2"      # not started: get() still stats
    publish(rundir, doc(password="pw3", version="v3"))
    w.start()
    try:
        assert cf.get().current.version == "v3"  # start() looked at the file once
        assert cf._watched
    finally:
        w.stop()
    assert not cf._watched
