"""The `redis-creds` command's own behaviours: --version, `watch` at start and on an unknown
name, and `get` by a user outside the agent's group."""
import os
import re
import select
import shutil
import subprocess
import tempfile
import time

import pytest

import rc_harness as h

NOBODY = 65534
NOGROUP = 65534
SOURCE_DIR = os.environ.get("REDIS_CREDS_SOURCE_DIR",
                            os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def _project_version():
    text = open(os.path.join(SOURCE_DIR, "CMakeLists.txt")).read()
    return re.search(r"project\(redis-creds VERSION ([0-9.]+)", text).group(1)


def _version_of(binary):
    r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, (binary, r.returncode, r.stderr)
    return r.stdout


def test_cli_and_agent_print_the_same_version():
    cli, agent = _version_of(h.CLI_BIN), _version_of(h.AGENT_BIN)
    assert cli.startswith("redis-creds ") and agent.startswith("redis-creds-agent ")
    text = cli[len("redis-creds "):]
    assert text == agent[len("redis-creds-agent "):]
    assert text.startswith(_project_version()), text
    if os.path.exists(os.path.join(SOURCE_DIR, ".git")):     # a build from a git checkout
        assert re.fullmatch(r"[0-9.]+ \(git [0-9a-zA-Z.+_-]+\)\n", text), text
    # `redis-creds -V` is the same
    r = subprocess.run([h.CLI_BIN, "-V"], capture_output=True, text=True, timeout=10)
    assert r.stdout == cli


def _configure(source, *defs):
    """Configures (no build) a tree in a scratch directory; returns the version text that
    CMake computed for --version."""
    build = tempfile.mkdtemp(prefix="rc-ver-")
    try:
        r = subprocess.run(["cmake", "-S", source, "-B", build, "-DBUILD_TESTING=OFF"] + list(defs),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        m = re.search(r"^-- redis-creds --version: (.*)$", r.stdout, re.M)
        assert m, r.stdout[-2000:]
        return m.group(1)
    finally:
        shutil.rmtree(build, ignore_errors=True)


@pytest.mark.skipif(not shutil.which("git") or not os.path.exists(os.path.join(SOURCE_DIR, ".git")),
                    reason="needs git and a git checkout to make a tarball from")
def test_version_from_a_tarball_has_no_git_describe_and_a_package_build_sets_its_own():
    tree = tempfile.mkdtemp(prefix="rc-tar-")
    try:
        archive = subprocess.run(["git", "-C", SOURCE_DIR, "archive", "HEAD"], capture_output=True,
                                 check=True, timeout=120).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True, timeout=120)
        assert _configure(tree) == _project_version()
        assert _configure(tree, "-DREDIS_CREDS_VERSION_STRING=9.8.7-1") == "9.8.7-1"
        # in a checkout, the package's version wins over git describe too
        assert _configure(SOURCE_DIR, "-DREDIS_CREDS_VERSION_STRING=9.8.7-1") == "9.8.7-1"
    finally:
        shutil.rmtree(tree, ignore_errors=True)


# --------------------------------------------------------------------------- watch

def _running(sc, names=("cache",), configured=None):
    sc.redis.create_user("app", "pw1", "pw2")
    for n in names:
        sc.store_cred("app", "pw1", filename=n + ".json")
    sc.write_config([sc.cred(n) for n in (configured or names)])
    a = sc.start_agent()
    a.wait_ready()
    for n in names:
        sc.wait_published(n, password="pw1")
    return a


def _watch(sc, name, *pre):
    return subprocess.Popen([h.CLI_BIN, "-c", sc.tree.conf] + list(pre) + ["watch", name],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=h.clean_env())


def _line(stream, timeout, what):
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no %s within %ss" % (what, timeout)
    return stream.readline()


def _stop(p):
    if p.poll() is None:
        p.terminate()
    p.wait(timeout=10)


def test_watch_prints_the_current_version_at_once_then_each_new_one(sc):
    _running(sc)
    version = sc.read_doc()["version"]
    p = _watch(sc, "cache")
    try:
        first = _line(p.stdout, 5, "line for the current version")
        assert " cache version %s validated " % version in first, first
        sc.store_cred("app", "pw2")
        doc = sc.wait_published(password="pw2")
        second = _line(p.stdout, 5, "line for the new version")
        assert " cache version %s " % doc["version"] in second, second
    finally:
        _stop(p)


def _wait_output(fd, pred, timeout, what):
    """Reads fd (unbuffered, so select() tells the truth) until pred(all text so far)."""
    got, deadline = "", time.monotonic() + timeout
    while not pred(got):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0, left))
        assert ready and left > 0, "no %s within %ss (got %r)" % (what, timeout, got)
        chunk = os.read(fd, 4096).decode()
        assert chunk, "watch closed its output waiting for %s (got %r)" % (what, got)
        got += chunk
    return got


@pytest.mark.parametrize("how", ["deleted", "moved"])
def test_watch_follows_a_runtime_directory_deleted_or_moved_and_made_again(sc, how):
    # the agent makes the directory again and republishes (docs/operations.md, "The runtime
    # directory"); watch must follow the new one, not sit on the old inode in silence
    _running(sc)
    version = sc.read_doc()["version"]
    p = _watch(sc, "cache")
    out, err = p.stdout.fileno(), p.stderr.fileno()
    try:
        _wait_output(out, lambda t: version in t, 5, "line for the current version")
        if how == "deleted":
            shutil.rmtree(sc.tree.runtime)
        else:
            os.rename(sc.tree.runtime, sc.tree.runtime + ".old")
        note = "%s was removed or moved away" % sc.tree.runtime
        _wait_output(err, lambda t: note in t, 5, "note on stderr")
        h.wait_until(lambda: os.path.exists(sc.path("cache.json")), 10, "the file republished")
        sc.store_cred("app", "pw2")
        doc = sc.wait_published(password="pw2", timeout=10)
        want = " cache version %s " % doc["version"]
        _wait_output(out, lambda t: want in t, 10, "line for the new version")
        assert p.poll() is None
    finally:
        _stop(p)


def test_watch_started_before_the_agent_made_the_runtime_directory_waits_for_it(sc):
    # boot order: watch first, the agent later; a configured name is waited for, like
    # one that is only not published yet (docs/operations.md, `watch NAME`)
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    assert not os.path.exists(sc.tree.runtime)
    p = _watch(sc, "cache")
    out, err = p.stdout.fileno(), p.stderr.fileno()
    try:
        _wait_output(err, lambda t: "cache is not published in %s yet; waiting" % sc.tree.runtime in t,
                     5, "note on stderr")
        assert p.poll() is None, p.stderr.read()
        a = sc.start_agent()
        a.wait_ready()
        doc = sc.wait_published(password="pw1")
        _wait_output(out, lambda t: " cache version %s " % doc["version"] in t, 10,
                     "line once the agent published")
    finally:
        _stop(p)


def test_watch_of_an_unknown_name_fails_at_once(sc):
    _running(sc)
    r = subprocess.run([h.CLI_BIN, "-c", sc.tree.conf, "watch", "nosuch"], capture_output=True,
                       text=True, timeout=10, env=h.clean_env())
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert ('no credential named "nosuch": not published in %s and not in %s'
            % (sc.tree.runtime, sc.tree.conf)) in r.stderr, r.stderr
    # the same with the runtime directory given: the readable config still answers
    r = subprocess.run([h.CLI_BIN, "-c", sc.tree.conf, "--runtime-dir", sc.tree.runtime, "watch",
                        "nosuch"], capture_output=True, text=True, timeout=10, env=h.clean_env())
    assert r.returncode == 1 and "no credential named" in r.stderr, (r.returncode, r.stderr)


def test_watch_of_a_configured_name_not_yet_published_waits_and_says_so(sc):
    _running(sc, names=("cache",), configured=("cache", "queue"))   # queue's store file is missing
    p = _watch(sc, "queue")
    try:
        note = _line(p.stderr, 5, "note on stderr")
        assert "queue is not published in %s yet; waiting" % sc.tree.runtime in note, note
        assert p.poll() is None
        sc.store_cred("app", "pw1", filename="queue.json")
        line = _line(p.stdout, 40, "line once queue is published")
        assert " queue version " in line, line
    finally:
        _stop(p)


# --------------------------------------------------------------------------- outside the group

def _as_nobody(args):
    return subprocess.run(args, user=NOBODY, group=NOGROUP, extra_groups=[], cwd="/",
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=h.clean_env(), timeout=10)


def test_get_outside_the_group_keeps_its_error_and_names_the_way_out(sc):
    _running(sc)
    os.chmod(sc.tree.root, 0o711)                  # others may traverse, not list
    os.chmod(sc.tree.conf, 0o640)                  # root:root: nobody cannot read it
    r = _as_nobody([h.CLI_BIN, "-c", sc.tree.conf, "get", "cache"])
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Permission denied" in r.stderr, r.stderr          # the error itself stays
    for way in ("--runtime-dir", "$REDIS_CREDS_RUNTIME_DIR", "join the group"):
        assert way in r.stderr, (way, r.stderr)
    assert r.stdout == ""

    # with the runtime directory named, the config is not read; the directory's own
    # permissions then decide, and the message names the group that opens it
    os.chmod(sc.tree.runtime, 0o750)
    r = _as_nobody([h.CLI_BIN, "-c", sc.tree.conf, "--runtime-dir", sc.tree.runtime, "get", "cache"])
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "join the group" in r.stderr, r.stderr
    assert "pw1" not in r.stdout + r.stderr
