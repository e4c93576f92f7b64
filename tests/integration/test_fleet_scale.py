"""Fleet rotation at scale (docs/design.md §9.5, §9.6): ten agents (separate processes,
each its own runtime_dir, state_dir and host key) on one `file` store and one
redis-server, interval 4 s, over several intervals: consecutive rotations spaced >=
interval and <= interval + splay + 1 s (+ the claim-to-write latency), one claim per base
version, every host publishes each rotation, no warning or error anywhere, and a host
restarted mid-interval does not rotate early. Timing, not memory: not rerun under ASan
(label `once`); the record's paths run under ASan in test_fleet.py."""
import json
import os
import time

import rc_harness as h
from fleet_helpers import MID_STARTED, MID_TAKEN_OVER, problems, redis_passwords, sha, start_fleet


def test_fleet_rotates_once_per_interval_and_every_host_publishes_each_rotation(sc):
    interval, splay, n_rot = 4.0, 1.0, 5   # grace 1s
    fl = start_fleet(sc, 10, "fleet-pw-0", interval="4s", grace="1s", splay="1s")
    deadline = lambda k: 60 + k * (interval + splay + 2)   # noqa: E731

    h.wait_until(lambda: len(fl.rotations()) >= 2, deadline(3), "two rotations")
    # A host restarted in the middle of an interval must not rotate early: it counts from
    # the fleet clock (its phase record, then the store's rotated_at), not from its start.
    last = fl.rotations()[-1][1]
    h.wait_until(lambda: time.monotonic() >= last + interval / 2, interval, "the middle of the interval")
    fl.agents[3].stop()
    fl.start(3).wait_ready()

    h.wait_until(lambda: len(fl.rotations()) >= n_rot, deadline(n_rot), "%d rotations" % n_rot)
    rots = fl.rotations()[:n_rot]
    for _, _, pw, _ in rots:
        h.wait_until(lambda pw=pw: fl.all_published(pw), 10, "every host to publish each rotation")

    # spacing of consecutive rotations (the store's entry written): >= interval and <=
    # interval + splay + 1 s (the clock's whole seconds), plus the claim-to-write latency
    # of a loaded machine (under 1 s)
    spacing = [b[0] - a[0] for a, b in zip(rots, rots[1:])]
    assert all(s >= interval for s in spacing), spacing
    assert all(s <= interval + splay + 1 + 1.0 for s in spacing), spacing
    # one claim per base version: exactly one `started` between consecutive writes
    started = sorted(m.t for i in range(fl.n) for m in fl.journal(i, MID_STARTED))
    for a, b in zip([0.0] + [r[1] for r in rots], [r[1] for r in rots]):
        assert len([t for t in started if a < t <= b]) == 1, (a, b, started)
    # every host publishes each rotation; how long after the store write
    pickup = [fl.published[(i, pw)] - mtime for mtime, _, pw, _ in rots for i in range(fl.n)]
    assert max(pickup) < 2.0, sorted(pickup)[-5:]
    # each rotation's mark, and previous_valid_until = rotated_at + grace on every host
    for _, _, pw, doc in rots:
        assert doc["redis_creds_rotated_by"] == os.uname().nodename
    # no warning or error anywhere
    for i in range(fl.n):
        for a in fl.every[i]:
            assert problems(a) == [], (i, problems(a)[:3])
        assert fl.journal(i, MID_TAKEN_OVER) == []
    # Redis holds only what the entry or a live record holds
    for a in fl.agents:
        a.stop()
    rec = fl.record()
    held = {sha(json.load(open(os.path.join(sc.tree.store, "cache.json")))["password"])}
    if rec:
        held |= {sha(rec["password"]), sha(rec["old_password"])}
    assert set(redis_passwords(sc)) <= held
    print("fleet: spacing %s s; pickup p50 %.1f ms, max %.1f ms; claims %d for %d rotations"
          % ([round(s, 2) for s in spacing], sorted(pickup)[len(pickup) // 2] * 1e3, max(pickup) * 1e3,
             len([t for t in started if t <= rots[-1][1]]), len(rots)))
