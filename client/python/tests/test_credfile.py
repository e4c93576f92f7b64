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
    # previous is kept as published; as a fallback it is offered only until it expires
    assert snap.usable_previous(now=1795345199).password == "old-secret"
    assert snap.usable_previous(now=1795345200) is None
    if time.time() >= 1795345200:
        with pytest.raises(rc.CredentialError, match="no previous credential still valid"):
            cf.credential(previous=True)
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
    for bad in ("", ".hidden", "a/b", "x" * 65, "../etc", "cache\n"):
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


@pytest.mark.parametrize("method", ["inotify", "poll"])
def test_stop_during_a_long_callback_leaves_the_thread_its_fds(rundir, method):
    """stop() used to close the fds under a thread still in a callback longer than its
    timeout: the thread then died with a traceback (or, the fd number reused, read from
    somebody else's fd). Now the thread finishes the callback and closes them itself."""
    publish(rundir, doc())
    cf = rc.CredentialFile("cache", rundir)
    cf.get()
    entered, release, done = threading.Event(), threading.Event(), threading.Event()

    def slow(snap, err):
        entered.set()
        release.wait(10)
        done.set()
    w = cf.watch(callback=slow, method=method, interval=0.05)
    publish(rundir, doc(password="pw2", version="v2"))
    assert entered.wait(5)
    fds = [fd for fd in (w._fd, w._stop_r, w._stop_w) if fd >= 0]
    thread = w._thread
    errors = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        w.stop(timeout=0.1)                       # the callback still runs
        for fd in fds:
            os.fstat(fd)                          # still open: the thread needs them
        release.set()
        thread.join(5)
        assert not thread.is_alive() and done.is_set()
        assert errors == []
        for fd in fds:                            # closed by the thread at its end
            with pytest.raises(OSError):
                os.fstat(fd)
        w.stop()                                  # again: nothing left to do
    finally:
        threading.excepthook = old_hook
        release.set()


@pytest.mark.parametrize("method", ["none", "inotify", "poll"])
def test_a_time_out_of_range_keeps_the_last_good_credential(rundir, method):
    """Month 13 used to make calendar.timegm raise ValueError out of get() (and out of the
    watcher's thread) instead of a CredentialFileError: the last good credential was lost
    to the caller. Every malformed time is a CredentialFileError now."""
    publish(rundir, doc())
    cf = rc.CredentialFile("cache", rundir)
    assert cf.get().current.password == "pw1"
    events = []
    w = cf.watch(callback=lambda s, e: events.append((s, e)), method=method,
                 interval=0.05) if method != "none" else None
    try:
        for n, bad in enumerate(("2026-13-01T10:00:00Z", "2026-00-01T10:00:00Z",
                                 "2026-11-22T10:00:00Z\n", "\u0662026-11-22T10:00:00Z",
                                 "2026-11-22T10:00:00+24:00")):
            reads = cf.reads
            publish(rundir, doc(password="pw-bad%d" % n, version="bad%d" % n, expires_at=bad))
            if w is None:
                assert cf.get().current.password == "pw1"
            else:
                assert wait_for(lambda: cf.reads > reads)
                assert wait_for(lambda: events and events[-1][1] is not None)
                snap, err = events[-1]
                assert snap.current.password == "pw1"
                assert "pw-bad" not in str(err)
            assert isinstance(cf.last_error, rc.CredentialFileError), cf.last_error
            assert cf.get().current.password == "pw1"
            assert "pw-bad" not in str(cf.last_error)
        publish(rundir, doc(password="pw2", version="v2", expires_at="0000-01-01T00:00:00Z"))
        if w is not None:
            assert wait_for(lambda: events and events[-1][1] is None)
        assert cf.get().current.password == "pw2" and cf.last_error is None
        assert cf.get().current.expires_at == -62167219200    # year 0, as C's timegm
    finally:
        if w is not None:
            w.stop()


def test_a_long_fraction_is_not_rounded_up_to_the_next_second(rundir):
    publish(rundir, doc(expires_at="2026-11-22T10:00:00." + "9" * 40 + "Z"))
    t = rc.CredentialFile("cache", rundir).get().current.expires_at
    assert 1795341600 < t < 1795341601   # the C client and the agent say 1795341600


def test_what_json_and_the_format_refuse_is_a_credential_file_error(rundir):
    cf = rc.CredentialFile("cache", rundir)
    base = doc(password="pw-x")
    for text in ('{"format": 1, "format": 1}', base[:-2] + ', "x": "\\udc00"}',
                 base[:-2] + ', "x": -Infinity}', base[:-2] + ', "x": 1e400}',
                 base[:-2] + ', "x": -9223372036854775809}', base[:-2] + ', "a\\u0000": 1}',
                 base[:-2] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}",
                 base.replace('"format": 1', '"format": false')):
        publish(rundir, text)
        with pytest.raises(rc.CredentialUnavailable) as e:
            cf.get()
        assert "pw-x" not in str(e.value)
    # the limits themselves are accepted
    publish(rundir, base[:-2] + ', "x": [-9223372036854775808, 9223372036854775807, 1e-400]}')
    assert cf.get().current.password == "pw-x"


def test_previous_valid_until_limits_the_fallback(rundir):
    prev = {"username": "app", "password": "old", "version": "v0"}
    publish(rundir, doc(previous=prev))
    cf = rc.CredentialFile("cache", rundir)
    snap = cf.get()
    assert snap.previous_valid_until is None and snap.usable_previous().password == "old"
    future, past = time.time() + 3600, time.time() - 1
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(future))
    publish(rundir, doc(previous=prev, previous_valid_until=stamp))
    snap = cf.get()
    assert snap.generation == 2, "a new previous_valid_until alone is a change"
    assert snap.previous_valid_until == int(future)
    assert snap.usable_previous().password == "old"
    assert cf.credential(previous=True).password == "old"
    assert snap.usable_previous(now=int(future)) is None
    publish(rundir, doc(previous=prev, previous_valid_until=time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(past))))
    snap = cf.get()
    assert snap.previous.password == "old", "previous stays as published"
    assert snap.usable_previous() is None
    with pytest.raises(rc.CredentialError, match="no previous credential still valid"):
        cf.credential(previous=True)
    publish(rundir, doc(previous=prev, previous_valid_until="later"))
    assert cf.get().previous_valid_until < time.time()    # the bad file is not taken
    assert isinstance(cf.last_error, rc.CredentialFileError)
