"""Roll-back of a fleet rotation (docs/design.md §9.5, record phase rolling_back): the
record goes only once every node confirmed that the pending password is gone, so a node
that is down during the roll-back never keeps a password nobody publishes; a host that
takes a rolling_back record over finishes the roll-back (it never adds the password).
Real agents, two real redis-servers as the credential's nodes, the `file` store."""
import json
import os
import signal

from fleet_helpers import FreezeOnAdd, cont, mark, redis_passwords, sha, start_fleet, wait_msg


def _record(sc):
    try:
        with open(os.path.join(sc.tree.store, ".cache.json.rotation")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _rollback_with_nodes_down(sc, first_pw, n):
    """Node r2 is down (stopped) before the rotation: its add times out, so the rotation
    rolls back; node r1 got the pending password and is frozen right then, so the
    roll-back cannot remove it there. Returns (fleet, r1, r2, the old password's sha)."""
    r1, r2 = sc.redis, sc.another_redis()
    fl = start_fleet(sc, n, first_pw, nodes=[r1, r2], interval="1h", grace="2s",
                     pending_timeout="14s", splay="0s")
    sc.on_close(lambda: cont(r1, r2))
    os.kill(r2.proc.pid, signal.SIGSTOP)
    freeze = FreezeOnAdd(r1)
    m0 = mark(fl.agents[0])
    assert fl.cli(0, "rotate", "cache").returncode == 0
    assert freeze.frozen.wait(10), "the rotation never added its password on node r1"
    line = wait_msg(fl.agents[0], lambda l: "rotation of cache failed" in l, since=m0, timeout=10)
    rec = _record(sc)
    assert rec is not None, "the record was deleted although node r1 still has the pending " \
                            "password (the roll-back ignored the node's failure): " + line
    assert rec["phase"] == "rolling_back", rec["phase"]
    assert "roll-back" in line and "retried" in line, line
    return fl, r1, r2, sha(first_pw)


def test_a_node_down_during_the_roll_back_keeps_the_record_until_it_confirms(sc):
    """Defect: the roll-back ignored a node that could not remove the pending password and
    deleted the record anyway: that node kept a valid password nobody publishes. Now the
    record stays (phase rolling_back), the roll-back is retried, and the record goes only
    once every node confirmed the removal."""
    fl, r1, r2, old = _rollback_with_nodes_down(sc, "rb-pw-0", 1)
    m = mark(fl.agents[0])
    cont(r1, r2)
    wait_msg(fl.agents[0], lambda l: "rolled back" in l, since=m, timeout=30)
    assert redis_passwords(sc, r1) == [old]
    assert redis_passwords(sc, r2) == [old]
    assert _record(sc) is None
    assert fl.rotations() == []   # the entry never changed
    assert sc.redis.auth_ok("app", "rb-pw-0")


def test_a_host_that_takes_a_roll_back_over_finishes_it_and_never_adds(sc):
    """The owner dies while its roll-back waits for a node: another host takes the record
    over after its takeover time and removes the pending password from every node, instead
    of adding it (phase rolling_back), then deletes the record."""
    fl, r1, r2, old = _rollback_with_nodes_down(sc, "rb-pw-1", 2)
    fl.agents[0].send(signal.SIGKILL)
    fl.agents[0].wait_exit()
    fl.agents[0].check_exit = False
    m1 = mark(fl.agents[1])
    assert fl.cli(1, "rotate", "cache").returncode == 0   # host 1 waits for the record
    cont(r1, r2)
    line = wait_msg(fl.agents[1], lambda l: "taken over from host" in l, since=m1, timeout=40)
    assert "phase rolling_back" in line, line
    wait_msg(fl.agents[1], lambda l: "rolled back" in l, since=m1, timeout=10)
    assert redis_passwords(sc, r1) == [old]
    assert redis_passwords(sc, r2) == [old]
    assert _record(sc) is None
    assert fl.rotations() == []
