"""The `redis-creds` command's errors name the problem and the way out: a control socket
(or its directory) that the user may not use, a credential file the user may not read,
and a credential name that cannot be one."""
import os

import pytest

import rc_harness as h

NOBODY = 65534
NOGROUP = 65534


def _as_nobody(sc, *args):
    import subprocess
    return subprocess.run([h.CLI_BIN] + list(args), user=NOBODY, group=NOGROUP,
                          extra_groups=[], cwd="/", stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=h.clean_env(), timeout=10)


def test_a_socket_directory_closed_to_the_user_is_named_with_the_way_in(sc):
    sc.start_published("pw1")
    os.chmod(sc.tree.root, 0o700)   # the socket's directory: nobody may not pass
    r = _as_nobody(sc, "--control-socket", sc.tree.control, "status")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "cannot reach the agent at %s: Permission denied" % sc.tree.control in r.stderr, r.stderr
    assert "%s is open only to root, its owner and the group" % sc.tree.root in r.stderr, r.stderr
    assert "usermod -aG" in r.stderr and "run the command as root" in r.stderr, r.stderr


def test_a_socket_closed_to_the_user_is_named_with_the_way_in(sc):
    sc.start_published("pw1")
    os.chmod(sc.tree.root, 0o711)   # others may pass; the socket itself is 0660
    r = _as_nobody(sc, "--control-socket", sc.tree.control, "refresh", "cache")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "%s is open only to root, its owner and the group" % sc.tree.control in r.stderr, r.stderr
    assert "refresh, rotate and reload need that" in r.stderr, r.stderr


def test_an_unreadable_credential_file_names_the_file_and_its_group(sc):
    sc.start_published("pw1")
    os.chmod(sc.tree.root, 0o711)
    os.chmod(sc.tree.runtime, 0o755)   # the directory lets nobody in, the file (0640) not
    r = _as_nobody(sc, "--runtime-dir", sc.tree.runtime, "get", "cache")
    path = sc.path("cache.json")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "redis-creds: %s: cannot open: Permission denied" % path in r.stderr, r.stderr
    assert "%s is readable only by its owner and the group" % path in r.stderr, r.stderr
    assert "is not readable by this user" not in r.stderr, "the directory is readable: " + r.stderr
    assert "pw1" not in r.stdout + r.stderr


@pytest.mark.parametrize("cmd", [["get"], ["watch"], ["refresh"], ["rotate"],
                                 ["exec", "--credential"]])
@pytest.mark.parametrize("name", ["../cache", "a/b", ".hidden", "x" * 65])
def test_an_impossible_name_is_refused_with_the_rule_and_exit_2(sc, cmd, name):
    args = cmd + [name] + (["--", "/bin/true"] if cmd[0] == "exec" else [])
    r = sc.run_cli("--runtime-dir", sc.tree.root, "--control-socket", sc.tree.control, *args)
    assert r.returncode == 2, (args, r.returncode, r.stderr)
    assert "invalid credential name (a name is 1 to 64 letters, digits" in r.stderr, r.stderr
    assert name not in r.stderr.replace(h.CLI_BIN, ""), "the name is not quoted back: " + r.stderr
