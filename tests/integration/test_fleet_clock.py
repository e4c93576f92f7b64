"""Guards of fleet rotation (docs/design.md §9.5, §9.6), the clock and the record's
contents: the real agent, a real redis-server and the `file` store.

- A `redis_creds_rotated_at` in the future (a host whose clock ran far ahead wrote it, or
  a hand edit) must not stop rotation for the whole fleet until that date: the fleet
  clock never counts from later than the moment this host saw the mark, and it says so;
  a phase record holding such a clock is brought back at start.
- An unreadable rotation record says what to do about it (delete it; or upgrade, for a
  newer format), quoting none of it.

Everything waits on events (inotify, the agents' journals), never on a bare sleep before
an assertion."""
import calendar
import json
import os
import time

from fleet_helpers import redis_passwords, sha, start_fleet, wait_msg, mark

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
