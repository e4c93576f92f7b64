"""Guards of fleet rotation (docs/design.md §9.5.2): a rotator that dies during grace
(record phase removing) is finished by the other hosts after its takeover time, unasked,
also across a reload: every host that saw the entry change looks at the record once then.
The real agents, a real redis-server and the `file` store; everything waits on events."""
import json
import os
import signal

import rc_harness as h
from fleet_helpers import mark, redis_passwords, sha, start_fleet, wait_msg


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
