"""`redis-creds exec`: a program that reads its password once, supervised through the
published file (issue 13 item 4). The real CLI runs a probe program while the real agent
publishes from the file store and validates against a real redis-server."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import rc_harness as h

# The probe: records its start (pid, environment) and every signal it gets, one JSON line
# each, in the log named by argv[1]. SIGTERM kills it (status 128+15 to its parent) unless
# --ignore-term; --exit N exits N at once; --notify sends READY=1 to $NOTIFY_SOCKET.
PROBE = r'''
import json, os, signal, socket, sys, time
log = open(sys.argv[1], "a", buffering=1)
args = sys.argv[2:]
sigs = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
        signal.SIGUSR2}
signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
def rec(**kw):
    kw.update(pid=os.getpid(), t=time.monotonic())
    log.write(json.dumps(kw) + "\n")
env = {k: v for k, v in os.environ.items() if k.startswith(("REDIS_", "APP_", "NOTIFY_"))}
rec(event="start", env=env, argv=sys.argv)
if "--exit" in args:
    sys.exit(int(args[args.index("--exit") + 1]))
if "--notify" in args:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"READY=1\nSTATUS=probe up", os.environ["NOTIFY_SOCKET"])
while True:
    info = signal.sigwaitinfo(sigs)
    rec(event="signal", sig=info.si_signo)
    if info.si_signo == signal.SIGTERM and "--ignore-term" not in args:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.kill(os.getpid(), signal.SIGTERM)
'''


class Exec:
    """A running `redis-creds exec` over the probe."""

    def __init__(self, sc, *opts, probe_args=(), env=None, runtime_dir=None):
        self.sc = sc
        root = sc.tree.root
        self.log = os.path.join(root, "probe-%d.log" % len(os.listdir(root)))
        probe = os.path.join(root, "probe.py")
        if not os.path.exists(probe):
            with open(probe, "w") as f:
                f.write(PROBE)
        self.errpath = self.log + ".stderr"
        self.err = open(self.errpath, "w")
        argv = [h.CLI_BIN, "--runtime-dir", runtime_dir or sc.tree.runtime, "exec",
                "--credential", "cache"] + list(opts) + ["--", "/usr/bin/python3", probe,
                                                          self.log] + list(probe_args)
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.err,
                                  stderr=self.err, env=h.clean_env(env),
                                  preexec_fn=h._die_with_parent)
        sc.on_close(self.close)

    def records(self, event=None):
        try:
            with open(self.log) as f:
                recs = [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []
        return [r for r in recs if event is None or r["event"] == event]

    def stderr(self):
        with open(self.errpath) as f:
            return f.read()

    def wait_records(self, event, n, timeout=10, sig=None):
        def ok():
            recs = [r for r in self.records(event) if sig is None or r.get("sig") == sig]
            if len(recs) >= n:
                return recs
            if self.p.poll() is not None:
                h.fail("exec exited %s while waiting for %d %s records: %s"
                       % (self.p.returncode, n, event, self.stderr()))
            return None
        return h.wait_until(ok, timeout, "%d %s record(s) (have %r; stderr %r)"
                            % (n, event, self.records(), self.stderr()))

    def wait_exit(self, timeout=10):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            h.fail("exec still running after %ss: %s" % (timeout, self.stderr()))

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        for r in self.records("start"):   # a probe left behind by a killed exec
            try:
                os.kill(r["pid"], signal.SIGKILL)
            except OSError:
                pass
        self.err.close()


def _published(sc, *passwords):
    a = sc.start_published(passwords[0], also_accept=passwords[1:])
    return a, a.first_doc


def _rotate(sc, password):
    sc.store_cred("app", password)
    return sc.wait_published(password=password, timeout=10)


def _cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read()


def test_exec_puts_the_credential_in_the_environment_never_in_argv(sc):
    _published(sc, "pw-env-1")
    x = Exec(sc)
    start = x.wait_records("start", 1)[0]
    assert start["env"]["REDIS_USERNAME"] == "app"
    assert start["env"]["REDIS_PASSWORD"] == "pw-env-1"
    assert start["env"]["REDIS_CREDS_FILE"] == sc.path("cache.json")
    for pid in (x.p.pid, start["pid"]):
        assert b"pw-env-1" not in _cmdline(pid), pid
    with open("/proc/%d/environ" % x.p.pid, "rb") as f:
        assert b"pw-env-1" not in f.read(), "exec's own environment holds the password"
    # the program can log in with what it was given
    assert sc.redis.auth_ok(start["env"]["REDIS_USERNAME"], start["env"]["REDIS_PASSWORD"])


def test_exec_env_prefix_names_the_variables(sc):
    _published(sc, "pw-pfx-1")
    x = Exec(sc, "--env-prefix", "APP_", env={"REDIS_PASSWORD": "stale"})
    env = x.wait_records("start", 1)[0]["env"]
    assert env["APP_USERNAME"] == "app" and env["APP_PASSWORD"] == "pw-pfx-1"
    assert env["REDIS_PASSWORD"] == "stale", "only the prefixed variables are set"
    assert env["REDIS_CREDS_FILE"] == sc.path("cache.json")


def test_exec_restarts_the_program_at_each_new_version(sc):
    _published(sc, "pw-r-1", "pw-r-2", "pw-r-3")
    x = Exec(sc, "--splay", "0")
    first = x.wait_records("start", 1)[0]
    for i, pw in enumerate(("pw-r-2", "pw-r-3")):
        _rotate(sc, pw)
        starts = x.wait_records("start", i + 2)
        assert starts[-1]["env"]["REDIS_PASSWORD"] == pw
        assert starts[-1]["pid"] != starts[-2]["pid"]
        old_pid = starts[-2]["pid"]
        terms = [r for r in x.records("signal") if r["pid"] == old_pid]
        assert [r["sig"] for r in terms] == [signal.SIGTERM], terms
        assert terms[0]["t"] <= starts[-1]["t"], "the new program started before the old stopped"
        h.wait_until(lambda: not os.path.exists("/proc/%d" % old_pid) or
                     open("/proc/%d/stat" % old_pid).read().split()[2] == "Z", 5,
                     "the old program to be gone")
    assert x.p.poll() is None and first["pid"] != x.records("start")[-1]["pid"]
    assert "restarted" in x.stderr()


def test_exec_sends_sigkill_after_stop_timeout_and_never_restarts_twice_at_once(sc):
    _published(sc, "pw-k-1", "pw-k-2", "pw-k-3", "pw-k-4")
    x = Exec(sc, "--splay", "0", "--stop-timeout", "3s", probe_args=["--ignore-term"])
    x.wait_records("start", 1)
    _rotate(sc, "pw-k-2")
    term = x.wait_records("signal", 1, sig=signal.SIGTERM)[0]
    # a second version while the first restart waits for the stop timeout: no second
    # SIGTERM, no second restart; the program started next gets the newest credential
    _rotate(sc, "pw-k-3")
    starts = x.wait_records("start", 2)
    assert starts[1]["env"]["REDIS_PASSWORD"] == "pw-k-3", starts[1]
    # the ignored SIGTERM left it running for the stop timeout, then SIGKILL ended it
    assert starts[1]["t"] - term["t"] >= 2.9, (term, starts[1])
    assert "SIGKILL" in x.stderr()
    _rotate(sc, "pw-k-4")
    starts = x.wait_records("start", 3, timeout=15)
    assert [r["env"]["REDIS_PASSWORD"] for r in starts] == ["pw-k-1", "pw-k-3", "pw-k-4"]
    terms = x.records("signal")
    assert [(r["pid"], r["sig"]) for r in terms] == \
        [(starts[0]["pid"], signal.SIGTERM), (starts[1]["pid"], signal.SIGTERM)], terms


def test_exec_signal_mode_signals_the_same_program(sc):
    _published(sc, "pw-s-1", "pw-s-2", "pw-s-3")
    x = Exec(sc, "--signal", "SIGHUP", "--splay", "0")
    start = x.wait_records("start", 1)[0]
    for i, pw in enumerate(("pw-s-2", "pw-s-3")):
        _rotate(sc, pw)
        hups = x.wait_records("signal", i + 1, sig=signal.SIGHUP)
        assert all(r["pid"] == start["pid"] for r in hups)
        # what a signalled program re-reads: REDIS_CREDS_FILE has the new password
        with open(start["env"]["REDIS_CREDS_FILE"]) as f:
            assert json.load(f)["password"] == pw
    assert len(x.records("start")) == 1
    assert [r["sig"] for r in x.records("signal")] == [signal.SIGHUP, signal.SIGHUP]


def test_exec_splay_delays_the_action_within_its_bound(sc):
    _published(sc, "pw-y-1", "pw-y-2", "pw-y-3", "pw-y-4", "pw-y-5")
    renames = sc.watch_runtime()
    x = Exec(sc, "--signal", "USR1", "--splay", "2s")
    x.wait_records("start", 1)
    delays = []
    for i, pw in enumerate(("pw-y-2", "pw-y-3", "pw-y-4", "pw-y-5")):
        _rotate(sc, pw)
        got = x.wait_records("signal", i + 1, sig=signal.SIGUSR1, timeout=15)[-1]
        moved = [e.t for e in renames.snapshot("cache.json", h.IN_MOVED_TO)]
        delays.append(got["t"] - moved[-1])
    assert all(0 <= d <= 2 + 0.5 for d in delays), delays
    # four uniform draws in [0, 2 s] all below 200 ms: odds of 1 in 10,000 (without the
    # splay they are below 1 ms, and a loaded machine rarely adds 200 ms to all four)
    assert max(delays) > 0.2, "the splay delayed nothing: %r" % delays


def test_exec_waits_for_the_file_then_exits_1(sc):
    os.makedirs(sc.tree.runtime, exist_ok=True)
    t0 = time.monotonic()
    x = Exec(sc, "--wait", "800ms")
    assert x.wait_exit() == 1
    assert time.monotonic() - t0 >= 0.8
    err = x.stderr()
    assert "cache.json: not published" in err and "--wait" in err, err
    assert x.records() == [], "the program must not start without a credential"


def test_exec_starts_the_program_once_the_file_appears(sc):
    # no runtime directory yet: the agent creates it later
    x = Exec(sc, "--wait", "30s")
    h.wait_until(lambda: x.p.poll() is not None or h.asleep_on_a_watch(x.p.pid), 5,
                 "exec to wait for the runtime directory")
    assert x.records() == [] and x.p.poll() is None, x.stderr()
    assert not h.children_of(x.p.pid), "the program must not start without a credential"
    _published(sc, "pw-late-1")
    start = x.wait_records("start", 1, timeout=15)[0]
    assert start["env"]["REDIS_PASSWORD"] == "pw-late-1"


def test_exec_forwards_signals_and_exits_with_128_plus_n(sc):
    _published(sc, "pw-f-1")
    x = Exec(sc)
    start = x.wait_records("start", 1)[0]
    sent = [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT, signal.SIGINT]
    for i, sig in enumerate(sent):
        x.p.send_signal(sig)
        x.wait_records("signal", i + 1)
    x.p.send_signal(signal.SIGTERM)
    assert x.wait_exit() == 128 + signal.SIGTERM
    got = [r["sig"] for r in x.records("signal")]
    assert got == sent + [signal.SIGTERM], got
    assert all(r["pid"] == start["pid"] for r in x.records("signal"))
    assert len(x.records("start")) == 1, "a forwarded signal must not restart the program"


def test_exec_exits_with_the_program_status(sc):
    _published(sc, "pw-x-1")
    assert Exec(sc, probe_args=["--exit", "3"]).wait_exit() == 3
    x = Exec(sc)
    start = x.wait_records("start", 1)[0]
    os.kill(start["pid"], signal.SIGKILL)
    assert x.wait_exit() == 128 + signal.SIGKILL


def test_exec_passes_notify_socket_through(sc):
    _published(sc, "pw-n-1")
    path = os.path.join(sc.tree.root, "notify.sock")
    listener = h.NotifyListener(path)
    sc.on_close(listener.close)
    x = Exec(sc, env={"NOTIFY_SOCKET": path}, probe_args=["--notify"])
    start = x.wait_records("start", 1)[0]
    assert start["env"]["NOTIFY_SOCKET"] == path
    listener.wait("READY", "1", timeout=10)


@pytest.mark.parametrize("args,why", [
    (["--restart", "--signal", "HUP", "--", "true"], "exclude each other"),
    (["--signal", "NOSUCH", "--", "true"], "unknown signal"),
    (["--splay", "5x", "--", "true"], "bad duration"),
    # UINT64_MAX: the splay's draw divided by splay + 1 = 0 (SIGFPE at the first rotation)
    (["--splay", "18446744073709551615us", "--", "true"], "too long (at most 3650d)"),
    (["--wait", "3651d", "--", "true"], "too long (at most 3650d)"),
    (["--stop-timeout", "99999999999d", "--", "true"], "bad duration"),
    (["--env-prefix", "A-B", "--", "true"], "--env-prefix"),
    ([], "program to run is missing"),
])
def test_exec_usage_errors_exit_2(sc, args, why):
    r = sc.run_cli("--runtime-dir", sc.tree.runtime, "exec", "--credential", "cache", *args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert why in r.stderr, r.stderr


def test_exec_is_in_the_cli_help(sc):
    r = sc.run_cli("--help")
    assert r.returncode == 0 and "exec --credential NAME" in r.stdout, r.stdout


@pytest.mark.parametrize("how", ["deleted", "moved"])
def test_exec_follows_a_runtime_directory_deleted_or_moved_and_made_again(sc, how):
    # the agent makes the directory again and republishes (docs/operations.md, "The runtime
    # directory"); exec must watch the new one, or it never sees another version
    _published(sc, "pw-d-1", "pw-d-2")
    x = Exec(sc, "--splay", "0")
    x.wait_records("start", 1)
    if how == "deleted":
        shutil.rmtree(sc.tree.runtime)
    else:
        os.rename(sc.tree.runtime, sc.tree.runtime + ".old")
    h.wait_until(lambda: os.path.exists(sc.path("cache.json")), 10, "the file republished")
    _rotate(sc, "pw-d-2")
    starts = x.wait_records("start", 2, timeout=10)
    assert starts[-1]["env"]["REDIS_PASSWORD"] == "pw-d-2"
    assert "was removed or moved away" in x.stderr(), x.stderr()


def _exec_as_nobody(sc, *opts):
    return subprocess.run([h.CLI_BIN, "--runtime-dir", sc.tree.runtime, "exec", "--credential",
                           "cache"] + list(opts) + ["--", "/bin/true"],
                          user=65534, group=65534, extra_groups=[], cwd="/",
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=h.clean_env(), timeout=20)


def test_exec_names_the_group_to_join_when_it_may_not_read(sc):
    _published(sc, "pw-perm-1")
    os.chmod(sc.tree.root, 0o711)
    # the directory closed to the user: said at once, with the way in
    os.chmod(sc.tree.runtime, 0o750)
    r = _exec_as_nobody(sc, "--wait", "30s")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "cannot watch %s: Permission denied" % sc.tree.runtime in r.stderr, r.stderr
    assert "%s is not readable by this user; join the group" % sc.tree.runtime in r.stderr, r.stderr
    assert "SupplementaryGroups=" in r.stderr, r.stderr
    # the directory open, the file not: after --wait, the file and the way in, not "is the
    # agent running?"
    os.chmod(sc.tree.runtime, 0o755)
    r = _exec_as_nobody(sc, "--wait", "500ms")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "%s is not readable by this user; join the group" % sc.path("cache.json") in r.stderr, r.stderr
    assert "is the agent running" not in r.stderr, r.stderr
    assert "pw-perm-1" not in r.stderr
