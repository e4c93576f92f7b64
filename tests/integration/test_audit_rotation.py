"""Audit of fleet rotation (docs/design.md §9.5, §9.6): attacks on the rotation record flow
and the fleet clock, each with the real agent, a real redis-server and the `file` store.

- A `redis_creds_rotated_at` in the future (a host whose clock ran far ahead wrote it, or
  a hand edit) must not stop rotation for the whole fleet until that date: the fleet
  clock never counts from later than the moment this host saw the mark, and it says so.
- A rotator that dies during grace (record phase removing) is finished by the other
  hosts after its takeover time, unasked, also across a reload: every host that saw the
  entry change looks at the record once then.
- An unreadable rotation record says what to do about it (delete it; or upgrade, for a
  newer format), quoting none of it.
- The rotator never removes the old password from Redis while its own host still
  publishes it (its publish of the new version failed): it waits until the new version
  is published here, as the flow without a record does.

Everything waits on events (inotify, the agents' journals), never on a bare sleep before
an assertion."""
import calendar
import json
import os
import shutil
import signal
import time

import rc_harness as h
from fleet_helpers import problems, redis_passwords, sha, start_fleet, wait_msg, mark

FAR_FUTURE = "2099-01-01T00:00:00Z"


def _status(fl, i=0):
    r = fl.cli(i, "status", "--json")
    return json.loads(r.stdout)["credentials"][0]


def _write_entry(sc, password, rotated_at):
    doc = {"username": "app", "password": password, "redis_creds_rotated_at": rotated_at,
           "redis_creds_rotated_by": "a-host-whose-clock-runs-ahead"}
    sc.store("cache.json", json.dumps(doc) + "\n")


def _epoch(ts):
    return calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))


def test_a_rotated_at_in_the_future_does_not_stop_the_fleet_clock(sc):
    fl = start_fleet(sc, 1, "skew-pw-0", interval="3s", grace="1s", splay="0s")
    a = fl.agents[0]
    m = mark(a)
    # the same credential, marked as rotated in 2099: a version change for nobody, a
    # clock change for every host that reads it
    _write_entry(sc, "skew-pw-0", FAR_FUTURE)
    # the schedule counts from when this host saw the mark: the rotation happens within
    # the interval (and the status never promised 2099)
    wait_msg(a, lambda l: "rotation of cache completed" in l, since=m, timeout=15)
    assert redis_passwords(sc) != [sha("skew-pw-0")]
    line = wait_msg(a, lambda l: "ahead of this host's clock" in l, since=m, timeout=1)
    assert FAR_FUTURE in line and "skew-pw-0" not in line
    nxt = _status(fl)["rotation"]["next_rotation"]
    assert nxt is None or _epoch(nxt) < time.time() + 60, nxt


def test_a_phase_record_with_a_fleet_clock_in_the_future_is_not_trusted_at_start(sc):
    fl = start_fleet(sc, 1, "skew-pw-1", interval="3s", grace="1s", splay="0s")
    a = fl.agents[0]
    a.stop()
    state = os.path.join(sc.tree.root, "h00", "state", "rotation-cache.json")
    with open(state) as f:
        st = json.load(f)
    st["fleet_rotated_at"] = _epoch(FAR_FUTURE)
    with open(state, "w") as f:
        json.dump(st, f)
    a = fl.start(0)
    wait_msg(a, lambda l: "holds times in the future" in l, timeout=5)
    wait_msg(a, lambda l: "rotation of cache completed" in l, timeout=20)
    with open(state) as f:
        assert json.load(f)["fleet_rotated_at"] <= time.time()


def _block_publish(fl):
    """Restarts host 0 with formats json + env, then makes its cache.env irreplaceable (a
    directory in its place): every publish fails before cache.json is written. Returns
    the agent."""
    a = fl.agents[0]
    run = fl.runs[0]
    # restart with formats json + env, then block the .env file's replacement
    a.stop()
    with open(fl.confs[0]) as f:
        text = f.read()
    assert 'formats' not in text
    text = text.replace('path = "cache.json";', 'path = "cache.json";\n    formats = [ "json", "env" ];', 1)
    assert 'formats' in text
    with open(fl.confs[0], "w") as f:
        f.write(text)
    a = fl.start(0)
    h.wait_until(lambda: os.path.exists(os.path.join(run, "cache.env")), 10, "cache.env published")
    os.unlink(os.path.join(run, "cache.env"))
    os.makedirs(os.path.join(run, "cache.env", "blocker"))
    return a


def test_the_old_password_stays_while_this_host_still_publishes_it(sc):
    """The rotator's publish of the new version fails (cache.env cannot be replaced):
    cache.json keeps the old password, so Redis must keep it too, however long the
    grace is past; once the publish works, the rotation finishes."""
    fl = start_fleet(sc, 1, "pub-pw-0", interval="1h", grace="1s", pending_timeout="30s")
    a = _block_publish(fl)
    run = fl.runs[0]
    m = mark(a)
    r = fl.cli(0, "rotate", "cache")
    assert r.returncode == 0, r.stderr
    wait_msg(a, lambda l: "cannot publish" in l, since=m, timeout=10)
    # well past the grace and a retry or two: the published file still holds the old
    # password, and so must Redis
    wait_msg(a, lambda l: "rotation of cache failed" in l and "publish" in l, since=m, timeout=10)
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        doc = json.load(open(os.path.join(run, "cache.json")))
        assert doc["password"] == "pub-pw-0"
        assert sc.redis.auth_ok("app", "pub-pw-0"), "the password this host publishes was removed"
        time.sleep(0.2)
    # the runtime directory heals: the new version is published, then the old one goes
    shutil.rmtree(os.path.join(run, "cache.env"))
    m2 = mark(a)
    wait_msg(a, lambda l: "rotation of cache completed" in l, since=m2, timeout=30)
    doc = json.load(open(os.path.join(run, "cache.json")))
    assert doc["password"] != "pub-pw-0"
    assert redis_passwords(sc) == [sha(doc["password"])]
    assert not any("pub-pw-0" in p for p in problems(a))


def _rotator_dies_in_grace(sc, first_pw, after=None):
    """Host 0 of two rotates and is killed once the record is in phase removing (the
    entry written); host 1 publishes the new password, then after() runs. Host 1 must
    take the record over after its takeover time, unasked, and remove the old password."""
    fl = start_fleet(sc, 2, first_pw, interval="1h", grace="3s", pending_timeout="14s", splay="0s")
    path = os.path.join(sc.tree.store, ".cache.json.rotation")
    m1 = mark(fl.agents[1])
    assert fl.cli(0, "rotate", "cache").returncode == 0

    def removing():
        try:
            with open(path) as f:
                return json.load(f)["phase"] == "removing"
        except (OSError, ValueError):
            return False
    h.wait_until(removing, 10, "record phase removing", interval=0.002)
    fl.agents[0].send(signal.SIGKILL)
    fl.agents[0].wait_exit()
    fl.agents[0].check_exit = False
    new = fl.rotations()[0][2]
    h.wait_until(lambda: fl.all_published(new, hosts=[1]), 5, "host 1 publishes the new password")
    assert sc.redis.auth_ok("app", first_pw)   # grace: both work
    if after:
        after(fl)
    line = wait_msg(fl.agents[1], lambda l: "taken over from host" in l, since=m1, timeout=40)
    assert "phase removing" in line
    wait_msg(fl.agents[1], lambda l: "rotation of cache completed" in l, since=m1, timeout=10)
    assert redis_passwords(sc) == [sha(new)]
    h.wait_until(lambda: not os.path.exists(path), 5, "the record removed")


def test_a_rotator_killed_during_grace_is_finished_by_another_host_unasked(sc):
    """The other hosts saw the entry change, so they know a rotation is under way: the
    one whose look comes first takes the record over after wait_until + pending_timeout
    and removes the old password, without anybody asking (not an interval later)."""
    _rotator_dies_in_grace(sc, "grace-pw-0")


def test_a_reload_does_not_forget_a_rotation_that_may_need_finishing(sc):
    """As above, with host 1 reloaded after it saw the entry change: the new generation
    still finishes the dead rotator's rotation."""
    def reload(fl):
        r = fl.cli(1, "reload")
        assert r.returncode == 0, r.stderr
    _rotator_dies_in_grace(sc, "reload-pw-0", after=reload)


def test_an_unreadable_rotation_record_says_what_to_do(sc):
    """A record of wrong JSON types blocks every host's rotation: the error says so and
    what to do (delete it), quoting none of it; one of a newer format says to upgrade
    (deleting a newer agent's live record would be wrong). Once it is gone, the retry
    rotates."""
    fl = start_fleet(sc, 1, "badrec-pw-0", interval="1h", grace="1s")
    a = fl.agents[0]
    path = os.path.join(sc.tree.store, ".cache.json.rotation")
    with open(path, "w") as f:
        f.write('{"format": 2, "epoch": 1, "secret-ish": "zzz-input-zzz"}')
    m = mark(a)
    assert fl.cli(0, "rotate", "cache").returncode == 0
    line = wait_msg(a, lambda l: "rotation of cache failed" in l, since=m, timeout=10)
    assert "upgrade" in line and "delete" not in line, line
    with open(path, "w") as f:
        f.write('{"format": 1, "epoch": "zzz-input-zzz", "owner": "x"}')
    m = mark(a)
    line = wait_msg(a, lambda l: "rotation of cache failed" in l, since=m, timeout=15)
    assert '"epoch"' in line and "delete it from the store" in line and "zzz-input-zzz" not in line, line
    os.unlink(path)
    wait_msg(a, lambda l: "rotation of cache completed" in l, since=m, timeout=20)
    assert redis_passwords(sc) != [sha("badrec-pw-0")]


def test_rotate_revoke_during_an_unfinished_rotation_is_refused_not_dropped(sc):
    """`rotate --revoke` while a rotation waits to retry a step: that rotation is what
    goes on, with its grace, so the command must say so (not answer ok and drop the
    revoke: an operator revoking a leaked password would believe it gone)."""
    fl = start_fleet(sc, 1, "revoke-pw-0", interval="1h", grace="1h", pending_timeout="30s")
    a = _block_publish(fl)
    m = mark(a)
    assert fl.cli(0, "rotate", "cache").returncode == 0
    wait_msg(a, lambda l: "rotation of cache failed" in l and "publish" in l, since=m, timeout=10)
    r = fl.cli(0, "rotate", "cache", "--revoke")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "under way" in r.stderr and "--revoke cannot cut its grace" in r.stderr, r.stderr
    assert sc.redis.auth_ok("app", "revoke-pw-0")
