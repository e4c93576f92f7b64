"""--check-config finds what can be known before start, with file, line, key and the fix;
the agent refuses the same at start with exit 2 (issue 14 items 3 and 6).

Errors (exit 2): relative paths, a file source's path with '/', a missing or unreadable
ca_file / key_file / directory, a group that does not exist; with --as-user USER the files
and groups are checked for that user. Warnings (exit 0): a group the user is not in
according to the group database, paths the shipped unit's sandbox hides.
"""
import os
import pwd
import re
import subprocess

import pytest

import rc_harness as h

NO_GROUP = "rc-check-no-such-group"


def line_of(conf, marker):
    with open(conf) as f:
        for i, line in enumerate(f, 1):
            if marker in line:
                return i
    raise AssertionError("%s not in %s" % (marker, conf))


def check(sc, *args):
    return sc.run_agent("--check-config", *args)


def errors(r):
    return [l for l in r.stderr.splitlines() if l.startswith("redis-creds-agent: error: ")]


def warnings(r):
    return [l for l in r.stderr.splitlines() if l.startswith("redis-creds-agent: warning: ")]


def start_fails(sc, text):
    """Starts the agent on the written config: it must exit 2 and log `text`."""
    a = sc.start_agent()
    a.check_exit = False
    rc = a.wait_exit(timeout=10)
    assert rc == 2, (rc, a.log()[-2000:])
    assert text in a.log(), a.log()[-2000:]
    return a.log()


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to check for another user")


@pytest.fixture
def nobody(sc):
    """The tree made readable by `nobody` (mkdtemp and the harness make it 0700)."""
    os.chmod(sc.tree.root, 0o755)
    os.chmod(sc.tree.store, 0o755)
    return pwd.getpwnam("nobody")


# ------------------------------------------------------------------ what the text decides

def test_relative_directory_and_path_with_slash_are_errors_with_file_line_and_key(sc):
    conf = sc.write_config(sources=[sc.source(directory="store")])
    r = check(sc)
    assert r.returncode == 2, r
    want = '%s:%d: sources[0].directory: "store" must be an absolute path' % (
        conf, line_of(conf, 'directory = "store"'))
    assert want in r.stderr, r.stderr
    start_fails(sc, want)

    conf = sc.write_config([sc.cred(path="../cache.json")])
    r = check(sc)
    assert r.returncode == 2, r
    assert ('%s:%d: credentials[0].path: "../cache.json" must be a file name in the directory'
            % (conf, line_of(conf, '"../cache.json"'))) in r.stderr, r.stderr


def test_relative_tls_files_are_errors(sc):
    for key in ("ca_file", "ca_path", "cert_file", "key_file"):
        conf = sc.write_config([sc.cred(redis_extra={"tls": True, key: "certs/x.pem"})])
        r = check(sc)
        assert r.returncode == 2, r
        assert ('%s:%d: credentials[0].redis.%s: "certs/x.pem" must be an absolute path'
                % (conf, line_of(conf, key), key)) in r.stderr, r.stderr


def test_a_redis_url_is_not_called_an_ipv6_address(sc):
    sc.write_config([sc.cred(endpoints=["redis://127.0.0.1:6379"])])
    r = check(sc)
    assert r.returncode == 2, r
    assert 'endpoint "redis://127.0.0.1:6379" is a URL: write host:port without "redis://"' \
        in r.stderr, r.stderr
    assert "IPv6" not in r.stderr


# ------------------------------------------------------------------ what the machine decides

def test_a_missing_ca_file_is_reported_at_check_time_and_refused_at_start(sc):
    missing = os.path.join(sc.tree.root, "no-such-ca.pem")
    conf = sc.write_config([sc.cred(redis_extra={"tls": True, "ca_file": missing})])
    r = check(sc)
    assert r.returncode == 2, r
    want = '%s:%d: credentials[0].redis.ca_file: "%s" does not exist' % (
        conf, line_of(conf, "ca_file"), missing)
    assert any(want in l for l in errors(r)), r.stderr
    log = start_fails(sc, want)
    assert "unreachable" not in log


def test_a_group_that_does_not_exist_exits_2_at_check_and_at_start(sc):
    """Before: exit 1 at start, so systemd restarted the agent forever."""
    for agent, creds, key in (({"group": NO_GROUP}, None, "agent.group"),
                              ({"control_group": NO_GROUP}, None, "agent.control_group"),
                              ({}, [sc.cred(group=NO_GROUP)], "credentials[0].group")):
        conf = sc.write_config(creds, agent=agent)
        r = check(sc)
        assert r.returncode == 2, r
        want = '%s:%d: %s: group "%s" does not exist; create it (groupadd %s)' % (
            conf, line_of(conf, NO_GROUP), key, NO_GROUP, NO_GROUP)
        assert any(want in l for l in errors(r)), r.stderr
        start_fails(sc, want)


def test_paths_the_sandbox_hides_are_warnings(sc):
    conf = sc.write_config()
    r = check(sc)
    assert r.returncode == 0, r
    assert "configuration OK" in r.stdout
    w = warnings(r)
    want = '%s:%d: agent.runtime_dir: "%s" is under /tmp, which the shipped unit\'s sandbox hides' \
        % (conf, line_of(conf, "runtime_dir"), sc.tree.runtime)
    assert any(want in l for l in w), r.stderr
    assert any("sources[0].directory" in l for l in w), r.stderr


@needs_root
def test_as_user_checks_that_the_agents_user_can_read_the_files(sc, nobody):
    ca = os.path.join(sc.tree.root, "ca.pem")
    pw = os.path.join(sc.tree.root, "admin.pw")
    for path in (ca, pw):
        with open(path, "w") as f:
            f.write("x\n")
        os.chmod(path, 0o600)
    os.chmod(sc.tree.store, 0o700)
    conf = sc.write_config([sc.cred(redis_extra={"tls": True, "ca_file": ca},
                                    rotation={"strategy": "redis-acl", "admin_username": "admin",
                                              "admin_password_file": pw})])
    # root (the current user) reads everything
    assert check(sc).returncode == 0
    r = check(sc, "--as-user", "nobody")
    assert r.returncode == 2, r
    e = errors(r)
    for key, path, marker in (("sources[0].directory", sc.tree.store, "directory"),
                              ("credentials[0].redis.ca_file", ca, "ca_file"),
                              ("credentials[0].rotation.admin_password_file", pw,
                               "admin_password_file")):
        want = '%s:%d: %s: "%s" nobody cannot read it (owner root:' % (
            conf, line_of(conf, marker), key, path)
        assert any(want in l for l in e), (want, r.stderr)
    # what nobody may read: fine
    os.chmod(sc.tree.store, 0o755)
    os.chmod(ca, 0o644)
    os.chown(pw, nobody.pw_uid, -1)
    r = check(sc, "--as-user", "nobody")
    assert r.returncode == 0, r.stderr


@needs_root
def test_a_group_the_user_is_not_in_is_a_warning_naming_both_fixes(sc, nobody):
    conf = sc.write_config([sc.cred(group="root")])
    r = check(sc, "--as-user", "nobody")
    assert r.returncode == 0, r
    want = ('%s:%d: credentials[0].group: nobody is not in group "root" according to the group '
            'database; add it (usermod -aG root nobody), or make sure the unit gives it '
            '(SupplementaryGroups=root)' % (conf, line_of(conf, 'group = "root"')))
    assert any(want in l for l in warnings(r)), r.stderr


@needs_root
def test_at_start_a_group_the_agent_is_not_in_is_an_error(sc, nobody):
    """The agent checks its real groups (getgroups()) at start."""
    sc.write_config([sc.cred(group="root")])
    os.chmod(sc.tree.conf, 0o644)
    r = subprocess.run([h.AGENT_BIN, "-c", sc.tree.conf, "--foreground"], user="nobody",
                       group="nogroup", extra_groups=[], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=20, env=h.clean_env())
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert re.search(r'agent\.conf:\d+: credentials\[0\]\.group: the agent \(nobody\) is not in '
                     r'group "root", so it cannot give files to it; add it to the group', r.stderr), \
        r.stderr
    assert "SupplementaryGroups=root" in r.stderr


def test_as_user_needs_check_config_and_a_user_that_exists(sc):
    sc.write_config()
    r = sc.run_agent("--as-user", "nobody")
    assert r.returncode == 2 and "--as-user goes with --check-config" in r.stderr, r
    r = check(sc, "--as-user", "rc-no-such-user")
    assert r.returncode == 2 and 'user "rc-no-such-user": no such user' in r.stderr, r


def test_a_reload_naming_a_missing_ca_file_is_rejected(sc):
    """The machine checks run at a reload too (a missing CA file would otherwise be taken,
    and every later check of the credential would fail as "unreachable"): the running
    configuration stays."""
    sc.redis.create_user("app", "pw1", "pw2")
    sc.store_cred("app", "pw1")
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    mark = a.log_mark()
    missing = os.path.join(sc.tree.root, "no-such-ca.pem")
    sc.write_config([sc.cred(redis_extra={"tls": True, "ca_file": missing})])
    a.send(h.signal.SIGHUP)
    a.wait_log(lambda l: "reload rejected" in l and "does not exist" in l, since=mark,
               timeout=5, what="the reload rejected, naming the CA file")
    sc.store_cred("app", "pw2")   # the old configuration (no TLS) still serves
    sc.wait_published(password="pw2", timeout=5)
    assert a.alive()
