"""Fleet rotation (docs/design.md §9.5): many agents (separate processes, each with its own
runtime_dir, state_dir and host key) on one `file` store and one redis-server, strategy
redis-acl. One rotation per interval for the whole fleet (the fleet clock), one claim per
base version (the rotation record), every host publishes each rotation, no warning; a
restarted host does not rotate early; a rotator killed right after its claim is taken over
after pending_timeout and no password is left in Redis that neither the entry nor a live
record holds; a stale rotator stops at its next step; a phase record of the previous
release is read and resumed.

Everything waits on events (inotify on the store and on each runtime_dir, the agents'
journal entries and logs), never on a sleep followed by an assertion."""
import calendar
import json
import os
import signal
import time

import redis

import rc_harness as h
from fleet_helpers import (MID_TAKEN_OVER, RECORD, Fleet, has_msg, mark, problems, redis_passwords,
                           sha, start_fleet, wait_msg)


def _claim_then(fl, sc, act, after_claim_step=False):
    """Host 0 claims (`rotate`) while Redis holds every command (CLIENT PAUSE), so it is
    caught between its claim and its first ACL SETUSER; act(agent) right after the record
    appears. Returns the record as written by the claim."""
    path = os.path.join(sc.tree.store, RECORD)
    sc.redis.client().execute_command("CLIENT", "PAUSE", "3000", "ALL")
    r = fl.cli(0, "rotate", "cache")
    assert r.returncode == 0, r.stderr
    h.wait_until(lambda: os.path.exists(path), 2, "the claim's rotation record", interval=0.001)
    if after_claim_step:
        # past the claim's write (the store's flock is free again), before the add ends
        fl.agents[0].notify.wait_status(lambda st: "[rotation: adding]" in st, timeout=2)
    act(fl.agents[0])
    rec = fl.record()
    assert rec["epoch"] == 1 and rec["phase"] == "adding" and rec["owner"] == os.uname().nodename
    return rec


def _taken_over(fl, sc, rec, first_pw):
    """Host 1 asks for a rotation, finds the live record (info, not a warning), takes it
    over after pending_timeout (epoch 2) and finishes it with the same pending password."""
    m = mark(fl.agents[1])
    assert fl.cli(1, "rotate", "cache").returncode == 0
    wait_msg(fl.agents[1], lambda l: "is rotating it" in l, since=m)
    line = wait_msg(fl.agents[1], lambda l: "taken over from host" in l, since=m, timeout=30)
    assert "epoch now 2" in line and "phase adding" in line
    # not before updated_at + pending_timeout (whole seconds)
    assert time.time() >= calendar.timegm(time.strptime(rec["updated_at"], "%Y-%m-%dT%H:%M:%SZ")) + 14
    # the entry never changed before the takeover finished adding; then once, to the
    # record's pending password
    h.wait_until(lambda: len(fl.rotations()) >= 1, 10, "the taker's entry write")
    assert [w[2] for w in fl.rotations()] == [rec["password"]]
    assert fl.rotations()[0][1] > fl.journal(1, MID_TAKEN_OVER)[0].t
    wait_msg(fl.agents[1], lambda l: "rotation of cache completed" in l, since=m, timeout=10)
    h.wait_until(lambda: fl.record() is None, 5, "the record removed")
    # no orphan password: Redis holds exactly the current one
    assert redis_passwords(sc) == [sha(rec["password"])]
    assert not sc.redis.auth_ok("app", first_pw)
    return m


def test_killed_rotator_is_taken_over_after_pending_timeout_without_an_orphan_password(sc):
    fl = start_fleet(sc, 3, "kill-pw-0", interval="1h", grace="1s", pending_timeout="14s")

    def kill(a):
        a.send(signal.SIGKILL)
        a.wait_exit()
        a.check_exit = False
    t0 = time.monotonic()
    rec = _claim_then(fl, sc, kill)
    _taken_over(fl, sc, rec, "kill-pw-0")
    assert fl.journal(1, MID_TAKEN_OVER)[0].t - t0 >= 14 - 1   # not before pending_timeout
    for i in (1, 2):
        h.wait_until(lambda i=i: fl.all_published(rec["password"], hosts=[i]), 5, "host %d publishes" % i)
    # the taker's one warning is the takeover; the observer logged none
    assert [p for p in problems(fl.agents[1]) if "taken over" not in p] == []
    assert problems(fl.agents[2]) == []
    assert has_msg(fl.agents[1], lambda l: "is rotating it" in l)   # info: the live record


def test_stale_rotator_stops_at_its_next_step(sc):
    fl = start_fleet(sc, 2, "stale-pw-0", interval="1h", grace="1s", pending_timeout="14s")
    # (stopped while it held the store's flock, it would block every host: stop it in
    # the add, which holds no lock)
    rec = _claim_then(fl, sc, lambda a: a.send(signal.SIGSTOP), after_claim_step=True)
    try:
        mark0 = mark(fl.agents[0])
        _taken_over(fl, sc, rec, "stale-pw-0")
    finally:
        fl.agents[0].send(signal.SIGCONT)
    # host 0 comes back mid-step: it re-reads the record, finds it gone, and stops quietly
    wait_msg(fl.agents[0], lambda l: "this host stops its part" in l, since=mark0, timeout=10)
    h.wait_until(lambda: fl.all_published(rec["password"], hosts=[0]), 5, "host 0 publishes")
    assert problems(fl.agents[0]) == []
    assert redis_passwords(sc) == [sha(rec["password"])]
    assert [w[2] for w in fl.rotations()] == [rec["password"]]


# A phase record written by the previous release's rotate_state_format (no `format` key)
# in phase `claimed`: that release wrote the new password into the store's entry at the
# claim and died before adding it in Redis.
FORMAT1_CLAIMED = ('{"phase":"claimed","old_version":"%s","new_version":"%s","started_at":%d,'
                   '"grace_until":0,"last_completed":0,"baseline":%d}\n')


def test_previous_release_phase_record_is_read_and_resumed(sc):
    fl = start_fleet(sc, 1, "old-pw-0", interval="1h", grace="1s")
    a = fl.agents[0]
    old_version = json.load(open(os.path.join(fl.runs[0], "cache.json")))["version"]
    # the previous release's claim: the new password in the store, not yet in Redis (this
    # agent refuses it meanwhile: that is how the old flow looked to an observer)
    m = mark(a)
    sc.store_cred("app", "old-release-new-pw")
    line = wait_msg(a, lambda l: "refused by Redis" in l, since=m)
    new_version = line.split("candidate version ")[1].split()[0]
    a.stop()
    state = os.path.join(sc.tree.root, "h00", "state", "rotation-cache.json")
    now = int(time.time())
    with open(state, "w") as f:
        f.write(FORMAT1_CLAIMED % (old_version, new_version, now - 5, now - 100))
    a = fl.start(0)
    wait_msg(a, lambda l: "resuming the rotation of cache (phase claimed)" in l, timeout=10)
    doc = h.wait_until(lambda: (lambda d: d if d and d.get("password") == "old-release-new-pw" else None)(
        Fleet._read(os.path.join(fl.runs[0], "cache.json"))[0]), 10, "the resumed rotation published")
    assert doc["previous"]["password"] == "old-pw-0"
    wait_msg(a, lambda l: "rotation of cache completed" in l, timeout=10)
    assert redis_passwords(sc) == [sha("old-release-new-pw")]
    rec = json.load(open(state))
    assert rec["format"] == 2 and rec["phase"] == "idle" and rec["last_completed"] >= now


def test_rotate_revoke_removes_the_old_password_without_grace(sc):
    """`redis-creds rotate NAME --revoke`: grace 0 for that rotation (the old password is
    removed as soon as the new one is written), and both records say so."""
    fl = start_fleet(sc, 2, "rev-pw-0", interval="1h", grace="1h")
    m = mark(fl.agents[0])
    r = fl.cli(0, "rotate", "cache", "--revoke")
    assert r.returncode == 0, r.stderr
    line = wait_msg(fl.agents[0], lambda l: "rotation of cache started" in l, since=m)
    assert "revoking the old password" in line
    wait_msg(fl.agents[0], lambda l: "rotation of cache completed" in l, since=m, timeout=10)   # not in 1h
    new = fl.rotations()[0][2]
    assert redis_passwords(sc) == [sha(new)]
    state = json.load(open(os.path.join(sc.tree.root, "h00", "state", "rotation-cache.json")))
    assert state["revoke"] is True and state["format"] == 2
    doc = Fleet._read(os.path.join(fl.runs[0], "cache.json"))[0]
    assert doc["password"] == new and doc["previous"]["password"] == "rev-pw-0"
    assert doc["previous_valid_until"] == fl.rotations()[0][3]["redis_creds_rotated_at"]
    # a revoke needs the record's flow; a bad word is a usage error
    r = fl.cli(0, "rotate", "cache", "--revok")
    assert r.returncode == 2 and "rotate takes NAME [--revoke]" in r.stderr


def test_rotators_only_listed_hosts_claim_and_the_others_need_no_admin_password(sc):
    """rotation.rotators: a host not listed observes (no admin_password_file needed: the
    one configured here does not exist), refuses `rotate`, and publishes what a listed
    host rotates to."""
    sc.redis.create_user("app", "rot-pw-0")
    sc.store_cred("app", "rot-pw-0")
    base = {"strategy": "redis-acl", "interval": "1h", "grace": "1s", "admin_username": h.ADMIN_USER}
    path = os.path.join(sc.tree.root, "admin-pw")
    with open(path, "w") as f:
        f.write(h.ADMIN_PASSWORD + "\n")
    os.chmod(path, 0o600)
    here = os.uname().nodename
    listed = Fleet(sc, 1, dict(base, admin_password_file=path, rotators=[here, "other-host"]))
    with listed.lock:
        listed.store_writes.append((0, 0, "rot-pw-0", None))
    d = os.path.join(sc.tree.root, "observer")
    os.makedirs(os.path.join(d, "run"), 0o750)
    os.makedirs(os.path.join(d, "state"), 0o700)
    conf = os.path.join(d, "agent.conf")
    with open(conf, "w") as f:
        f.write(sc.config_text([sc.cred(rotation=dict(base, admin_password_file="/nonexistent/admin-pw",
                                                      rotators=["other-host"]))],
                               agent={"runtime_dir": os.path.join(d, "run"), "state_dir": os.path.join(d, "state"),
                                      "control_socket": os.path.join(d, "control.sock")}))
    obs = sc.start_agent(conf=conf, tag="observer")
    obs.wait_ready()
    listed.start(0)
    h.wait_until(lambda: listed.all_published("rot-pw-0"), 10, "the listed host publishes")
    r = sc.run_cli("-c", conf, "rotate", "cache")
    assert r.returncode == 1 and "not among them" in r.stderr, r.stderr
    st = json.loads(sc.run_cli("-c", conf, "status", "--json").stdout)["credentials"][0]["rotation"]
    assert st["rotates_here"] is False and st["rotators"] == ["other-host"]
    text = sc.run_cli("-c", conf, "status").stdout
    assert "by the hosts of rotation.rotators (other-host)" in text
    assert listed.cli(0, "rotate", "cache").returncode == 0
    h.wait_until(lambda: len(listed.rotations()) >= 1, 10, "the listed host's rotation")
    new = listed.rotations()[0][2]

    def observer_doc():
        return Fleet._read(os.path.join(d, "run", "cache.json"))[0] or {}
    h.wait_until(lambda: observer_doc().get("password") == new, 10, "the observer publishes it")
    assert observer_doc()["previous_valid_until"]
    assert "warning" not in obs.log() and "err:" not in obs.log()


def _pause_over(sc):
    """Returns once Redis answers again (the CLIENT PAUSE of _claim_then is over)."""
    def answers():
        try:
            return sc.redis.auth_ok("app", "restart-pw-0")
        except redis.exceptions.TimeoutError:
            return False
    h.wait_until(answers, 10, "the CLIENT PAUSE over")


def test_killed_rotator_finishes_its_rotation_at_its_restart(sc):
    """The rotator killed right after its claim, restarted before pending_timeout: it finds
    its own record (same host key), goes on from phase adding with the recorded pending
    password, and no other host takes over; nothing is left in Redis but that password."""
    fl = start_fleet(sc, 2, "restart-pw-0", interval="1h", grace="1s", pending_timeout="60s")

    def kill(a):
        a.send(signal.SIGKILL)
        a.wait_exit()
        a.check_exit = False
    rec = _claim_then(fl, sc, kill)
    assert fl.rotations() == []            # the entry is untouched while the record is live
    _pause_over(sc)
    m = mark(fl.start(0))
    wait_msg(fl.agents[0], lambda l: "resuming the rotation of cache" in l, since=m, timeout=10)
    wait_msg(fl.agents[0], lambda l: "rotation of cache completed" in l, since=m, timeout=20)
    assert [w[2] for w in fl.rotations()] == [rec["password"]]   # one entry write: the pending one
    h.wait_until(lambda: fl.record() is None, 5, "the record removed")
    h.wait_until(lambda: fl.all_published(rec["password"]), 5, "every host publishes")
    assert redis_passwords(sc) == [sha(rec["password"])]
    assert fl.journal(0, MID_TAKEN_OVER) == [] and fl.journal(1, MID_TAKEN_OVER) == []
    assert problems(fl.agents[0]) == [] and problems(fl.agents[1]) == []
