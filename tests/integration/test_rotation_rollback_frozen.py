"""A rotation owner paused inside its roll-back (docs/design.md §9.5, §9.5.1): it has
re-read the record (still its own) and would now remove the pending password; meanwhile
another host takes the record over, adds that password and writes it into the entry.
The owner must not remove it afterwards: every host would publish a password Redis
refuses (Redis has no fencing).

The pause comes at a fixed point without a debugger: the test holds the `file` store's
flock (`.redis-creds-rotate.lock`), which every record write takes; the owner's
roll-back is caught at its first record write (its open lock file shows in
/proc/PID/fd), and at that moment nothing may have left Redis yet. The test then plays
the taker (epoch + 1, the password added on every node and written into the entry) and
lets go: the owner's check-and-set fails and it stops. Real agent, two real
redis-servers (one stopped, so that the add fails and the rotation rolls back)."""
import fcntl
import json
import os
import signal

import rc_harness as h
from fleet_helpers import FreezeOnAdd, cont, mark, redis_passwords, start_fleet, wait_msg

LOCK = ".redis-creds-rotate.lock"


def _opens_lock(pid, lock):
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == lock:
                return True
        except OSError:
            pass
    return False


def test_an_owner_paused_in_its_roll_back_never_removes_what_a_taker_published(sc):
    """Defect: the roll-back re-read the record, then removed the pending password, and
    only then wrote the store; an owner paused in between and taken over removed the
    password the taker had written into the entry. Now its first act after the re-read
    is writing phase rolling_back with a check-and-set at its epoch: nothing leaves Redis
    before it, and after a takeover it fails and the owner stops."""
    r1, r2 = sc.redis, sc.another_redis()
    fl = start_fleet(sc, 1, "paused-pw-0", nodes=[r1, r2], interval="1h", grace="2s",
                     pending_timeout="14s", splay="0s")
    sc.on_close(lambda: cont(r1, r2))
    store, pid = sc.tree.store, fl.agents[0].proc.pid
    rec_path, lock = os.path.join(store, ".cache.json.rotation"), os.path.join(store, LOCK)
    os.kill(r2.proc.pid, signal.SIGSTOP)   # r2's add times out: the rotation rolls back
    added = FreezeOnAdd(r1, freeze=False)
    m0 = mark(fl.agents[0])
    assert fl.cli(0, "rotate", "cache").returncode == 0
    assert added.frozen.wait(10), "the rotation never added its password on node r1"
    with open(lock, "a+") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)   # the owner's next record write waits here
        h.wait_until(lambda: _opens_lock(pid, lock), 10, "the roll-back's first record write",
                     interval=0.002)
        with open(rec_path) as f:
            rec = json.load(f)
        assert len(redis_passwords(sc, r1)) == 2, \
            "the roll-back removed the pending password before its first record write: an " \
            "owner paused there and taken over would remove what the taker published"
        # the taker: epoch + 1, the same password on every node, into the entry
        cont(r2)
        rec.update(epoch=rec["epoch"] + 1, owner="host-z", owner_id="h-zzzzzzzzzzzzzzzz")
        with open(rec_path + ".tmp", "w") as f:
            json.dump(rec, f)
        os.chmod(rec_path + ".tmp", 0o600)
        os.rename(rec_path + ".tmp", rec_path)
        for r in (r1, r2):
            r.add_password("app", rec["password"])
        sc.store_cred("app", rec["password"])
    line = wait_msg(fl.agents[0], lambda l: "stops its part" in l or "rolled back" in l, since=m0,
                    timeout=20)
    assert "stops its part" in line, line
    assert r1.auth_ok("app", rec["password"]) and r2.auth_ok("app", rec["password"])
    with open(rec_path) as f:
        assert json.load(f)["owner"] == "host-z"
