"""Command-line behaviour: --check-config, --once, and the `redis-creds` CLI (docs/design.md §10)."""
import json
import os
import re
import select
import signal
import subprocess
import time

import pytest

import rc_harness as h


# ------------------------------------------------------------------ --check-config

def test_check_config_accepts_a_valid_config(sc):
    sc.write_config([sc.cred(formats=["json", "env"], mode=h.Raw("0600"))])
    r = sc.run_agent("--check-config")
    assert r.returncode == 0, r.stderr


def _bad_config(sc, case):
    """(agent, sources, credentials, extra lines, marker of the offending line, key named)."""
    agent, sources, creds, extra = {}, [sc.source()], [sc.cred()], []
    if case == "unknown-agent-key":
        agent = {"bogus_key": 1}
        return agent, sources, creds, extra, "bogus_key", "bogus_key"
    if case == "unknown-source-key":
        sources = [sc.source(bogus_source_key="x")]
        return agent, sources, creds, extra, "bogus_source_key", "bogus_source_key"
    if case == "unknown-redis-key":
        creds = [sc.cred(redis_extra={"bogus_redis_key": True})]
        return agent, sources, creds, extra, "bogus_redis_key", "bogus_redis_key"
    if case == "bad-duration":
        creds = [sc.cred(poll_interval="5x")]
        return agent, sources, creds, extra, '"5x"', "poll_interval"
    if case == "duration-without-unit":
        creds = [sc.cred(timeout="5")]
        return agent, sources, creds, extra, 'timeout = "5"', "timeout"
    if case == "name-with-slash":
        creds = [sc.cred(name="a/b", path="cache.json")]
        return agent, sources, creds, extra, '"a/b"', "name"
    if case == "name-starting-with-dot":
        creds = [sc.cred(name=".hidden", path="cache.json")]
        return agent, sources, creds, extra, '".hidden"', "name"
    if case == "integer-above-int-max":
        agent = {"workers": 4294967297}     # libconfig 1.5 would wrap this to 1
        return agent, sources, creds, extra, "4294967297", "workers"
    if case == "wrong-type":
        agent = {"log_level": 7}
        return agent, sources, creds, extra, "log_level = 7", "log_level"
    if case == "name-too-long":
        creds = [sc.cred(name="n" * 65, path="cache.json")]
        return agent, sources, creds, extra, '"' + "n" * 65 + '"', "name"
    if case == "source-name-with-slash":
        sources = [sc.source(name="lo/cal")]
        creds = [sc.cred(source="lo/cal")]
        return agent, sources, creds, extra, 'name = "lo/cal"', "name"
    if case == "unknown-source-reference":
        creds = [sc.cred(source="nowhere")]
        return agent, sources, creds, extra, '"nowhere"', "source"
    raise ValueError(case)


BAD_CASES = ["unknown-agent-key", "unknown-source-key", "unknown-redis-key", "bad-duration",
             "duration-without-unit", "name-with-slash", "name-starting-with-dot",
             "integer-above-int-max", "wrong-type", "unknown-source-reference",
             "name-too-long", "source-name-with-slash"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_check_config_rejects_bad_config_naming_file_line_and_key(sc, case):
    agent, sources, creds, extra, marker, key = _bad_config(sc, case)
    text = sc.config_text(creds, sources, agent, extra)
    lines = text.splitlines()
    hits = [i + 1 for i, l in enumerate(lines) if marker in l]
    assert len(hits) == 1, (marker, text)
    line = hits[0]
    conf = os.path.join(sc.tree.root, "bad.conf")
    with open(conf, "w") as f:
        f.write(text)
    r = sc.run_agent("--check-config", conf=conf)
    assert r.returncode == 2, "exit %s; stderr: %s" % (r.returncode, r.stderr)
    err = r.stderr
    assert re.search(re.escape("bad.conf") + r":%d\b" % line, err), \
        "stderr must name file and line (bad.conf:%d): %r" % (line, err)
    assert key in err, "stderr must name the key %r: %r" % (key, err)


def test_check_config_rejects_syntax_error_naming_file_and_line(sc):
    text = sc.config_text()
    lines = text.splitlines()
    lines.insert(3, "  broken = ;")
    conf = os.path.join(sc.tree.root, "syntax.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = sc.run_agent("--check-config", conf=conf)
    assert r.returncode == 2, r.stderr
    assert re.search(r"syntax\.conf:4\b", r.stderr), r.stderr


def test_check_config_rejects_missing_file(sc):
    r = sc.run_agent("--check-config", conf=os.path.join(sc.tree.root, "nope.conf"))
    assert r.returncode == 2, r.stderr
    assert "nope.conf" in r.stderr


# ------------------------------------------------------------------ --once

def test_once_exits_0_after_publishing_and_0_when_already_current(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    r = sc.run_agent("--once")
    assert r.returncode == 0, r.stderr
    doc = sc.read_doc()
    assert doc is not None and doc["password"] == "pw1"
    before = sc.read_bytes()
    mtime = os.stat(sc.path("cache.json")).st_mtime_ns
    r = sc.run_agent("--once")
    assert r.returncode == 0, "already current counts as current: %s" % r.stderr
    assert sc.read_bytes() == before
    assert os.stat(sc.path("cache.json")).st_mtime_ns == mtime, "--once republished an unchanged credential"


def test_once_exits_1_when_redis_refuses(sc):
    sc.redis.create_user("app", "other")
    sc.store_cred("app", "pw1")
    sc.write_config()
    t0 = time.monotonic()
    r = sc.run_agent("--once")
    assert r.returncode == 1, r.stderr
    assert time.monotonic() - t0 < 5, "--once makes one attempt, no retry window"
    assert sc.read_bytes() is None
    assert "refused" in r.stderr


def test_once_exits_1_when_redis_is_down(sc):
    sc.redis.create_user("app", "pw1")
    sc.redis.stop()
    sc.store_cred("app", "pw1")
    sc.write_config()
    t0 = time.monotonic()
    r = sc.run_agent("--once")
    assert r.returncode == 1, r.stderr
    assert time.monotonic() - t0 < 5, "--once makes one attempt, no retry window"
    assert sc.read_bytes() is None
    assert "unreachable" in r.stderr


def test_once_exits_1_when_one_of_two_credentials_fails(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1", filename="cache.json")
    sc.store_cred("app", "nope", filename="sessions.json")
    sc.write_config([sc.cred("cache"), sc.cred("sessions")])
    r = sc.run_agent("--once")
    assert r.returncode == 1, r.stderr
    assert sc.read_doc("cache")["password"] == "pw1"
    assert sc.read_bytes("sessions.json") is None


# ------------------------------------------------------------------ redis-creds CLI

def _published(sc):
    a = sc.start_published(also_accept=("pw2", "pw3", "pw4"))
    return a, a.first_doc


def test_cli_get_prints_fields_from_the_published_file(sc):
    a, doc = _published(sc)
    rd = sc.tree.runtime
    for field, want in (("username", "app"), ("password", "pw1"), ("version", doc["version"])):
        r = sc.run_cli("--runtime-dir", rd, "get", "cache", "--field", field)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == want, (field, r.stdout)
    r = sc.run_cli("--runtime-dir", rd, "get", "cache")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    # $REDIS_CREDS_RUNTIME_DIR when no --runtime-dir
    r = sc.run_cli("get", "cache", "--field", "version", env={"REDIS_CREDS_RUNTIME_DIR": rd})
    assert r.returncode == 0 and r.stdout.strip() == doc["version"], r.stderr
    # unknown credential: a runtime failure, not a crash, nothing on stdout
    r = sc.run_cli("--runtime-dir", rd, "get", "nosuch", "--field", "password")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stdout == ""
    # a bad field is a usage error
    r = sc.run_cli("--runtime-dir", rd, "get", "cache", "--field", "bogus")
    assert r.returncode == 2, (r.returncode, r.stderr)


def _has_inotify_fd(pid):
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "anon_inode:inotify":
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


def test_cli_watch_prints_a_line_per_republish(sc):
    a, doc = _published(sc)
    p = subprocess.Popen([h.CLI_BIN, "--runtime-dir", sc.tree.runtime, "watch", "cache"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=h.clean_env(),
                         preexec_fn=h._die_with_parent)
    sc.on_close(lambda: (p.poll() is None and p.kill(), p.wait()))
    try:
        h.wait_until(lambda: _has_inotify_fd(p.pid) or p.poll() is not None, 3,
                     "`redis-creds watch` to set up its inotify watch")
        assert p.poll() is None, p.stderr.read()
        buf = b""

        def lines_now(timeout):
            nonlocal buf
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                r, _, _ = select.select([p.stdout], [], [], 0.05)
                if r:
                    chunk = os.read(p.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    buf += chunk
            return buf.decode().splitlines()

        start_lines = len(lines_now(0.3))
        versions = []
        for i, pw in enumerate(("pw2", "pw3", "pw4")):
            sc.store_cred("app", pw)
            d = sc.wait_published(password=pw)
            versions.append(d["version"])
            h.wait_until(lambda: len(lines_now(0.05)) >= start_lines + i + 1, 3,
                         "a line from `watch` for republish %d (got %r)" % (i + 1, buf))
        out = lines_now(0.3)
        assert len(out) == start_lines + 3, "one line per republish: %r" % out
        p.send_signal(signal.SIGINT)
        p.wait(3)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_cli_status_exits_0_when_current_and_1_otherwise(sc):
    a, doc = _published(sc)
    r = sc.run_cli("-c", sc.tree.conf, "status")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "cache" in r.stdout and doc["version"] in r.stdout, r.stdout
    assert "pw1" not in r.stdout
    r = sc.run_cli("-c", sc.tree.conf, "status", "--json")
    assert r.returncode == 0, (r.returncode, r.stderr)
    j = json.loads(r.stdout)
    assert "cache" in json.dumps(j) and "pw1" not in r.stdout
    mark = a.log_mark()
    sc.store_cred("app", "refused-pw")
    a.wait_log("refused", since=mark)
    r = sc.run_cli("-c", sc.tree.conf, "status")
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "refused-pw" not in r.stdout + r.stderr


def test_cli_refresh_checks_the_store_now(sc):
    sc.start_published(also_accept=("pw2",), atomic=False)
    outside = os.path.join(sc.tree.root, "outside")
    os.mkdir(outside, 0o700)
    os.link(os.path.join(sc.tree.store, "cache.json"), os.path.join(outside, "cache.json"))
    h.write_store_inplace(outside, "cache.json", h.store_json("app", "pw2"))   # no inotify
    time.sleep(0.3)             # no event exists for a write inotify does not see
    assert sc.read_doc()["password"] == "pw1"
    r = sc.run_cli("-c", sc.tree.conf, "refresh", "cache")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    sc.wait_published(password="pw2", timeout=3)


def test_once_exits_0_when_already_current_even_with_redis_down(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    assert sc.run_agent("--once").returncode == 0
    before = sc.read_bytes()
    sc.redis.stop()
    r = sc.run_agent("--once")
    assert r.returncode == 0, "an adopted file whose version the store still has is current: %s" % r.stderr
    assert sc.read_bytes() == before


def test_check_config_accepts_a_64_character_name(sc):
    sc.write_config([sc.cred(name="n" * 64, path="cache.json")])
    r = sc.run_agent("--check-config")
    assert r.returncode == 0, r.stderr


def test_relative_include_resolves_against_the_config_directory(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    confdir = os.path.join(sc.tree.root, "etc")
    os.mkdir(confdir)
    full = sc.config_text()
    head, creds = full.split("credentials = (", 1)
    with open(os.path.join(confdir, "credentials.inc"), "w") as f:
        f.write("credentials = (" + creds)
    conf = os.path.join(confdir, "agent.conf")
    with open(conf, "w") as f:
        f.write(head + '@include "credentials.inc"\n')
    r = sc.run_agent("--check-config", conf=conf, cwd="/")
    assert r.returncode == 0, r.stderr
    r = sc.run_agent("--once", conf=conf, cwd="/")
    assert r.returncode == 0, r.stderr
    assert sc.read_doc()["password"] == "pw1"


@pytest.mark.parametrize("form", ["ipv6", "unix"])
def test_endpoint_forms_ipv6_literal_and_unix_socket(sc, form):
    if form == "ipv6":
        r = sc.another_redis(extra_conf=["bind 127.0.0.1 ::1"])
        endpoint = "[::1]:%d" % r.port
    else:
        sock = os.path.join(sc.tree.root, "redis.sock")
        r = sc.another_redis(extra_conf=["unixsocket %s" % sock, "unixsocketperm 700"])
        endpoint = "unix:" + sock
    r.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(endpoints=[endpoint])])
    res = sc.run_agent("--once")
    assert res.returncode == 0, res.stderr
    assert sc.read_doc()["password"] == "pw1"


def test_cli_finds_runtime_dir_in_config_and_an_unreadable_config_is_an_error(sc):
    a, doc = _published(sc)
    r = sc.run_cli("-c", sc.tree.conf, "get", "cache", "--field", "version")
    assert r.returncode == 0 and r.stdout.strip() == doc["version"], (r.returncode, r.stderr)
    # a config that exists but cannot be read: an error, not a fallback to the default
    r = sc.run_cli("-c", sc.tree.root, "get", "cache", "--field", "version",
                   env={"REDIS_CREDS_RUNTIME_DIR": ""})
    assert r.returncode != 0 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
