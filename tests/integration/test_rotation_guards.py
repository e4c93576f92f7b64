"""Guards of fleet rotation (docs/design.md §9.5), the rotator's own host: the real agent,
a real redis-server and the `file` store.

- The rotator never removes the old password from Redis while its own host still
  publishes it (its publish of the new version failed): it waits until the new version
  is published here, as the flow without a record does.
- `rotate --revoke` while a rotation waits to retry is refused with why, not answered ok
  with the revoke dropped.

Also test_fleet_clock.py and test_fleet_takeover.py. Everything waits
on events (inotify, the agents' journals), never on a bare sleep before an assertion."""
import json
import os
import shutil

import rc_harness as h
from fleet_helpers import mark, problems, redis_passwords, sha, start_fleet, wait_msg


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
    # the grace is over and the removal's turn comes (a retry): it holds back
    wait_msg(a, lambda l: "stays on the nodes while this host still publishes it" in l, since=m, timeout=15)
    doc = json.load(open(os.path.join(run, "cache.json")))
    assert doc["password"] == "pub-pw-0"
    assert sc.redis.auth_ok("app", "pub-pw-0"), "the password this host publishes was removed"
    # the runtime directory heals: the new version is published, then the old one goes
    shutil.rmtree(os.path.join(run, "cache.env"))
    m2 = mark(a)
    wait_msg(a, lambda l: "rotation of cache completed" in l, since=m2, timeout=30)
    doc = json.load(open(os.path.join(run, "cache.json")))
    assert doc["password"] != "pub-pw-0"
    assert redis_passwords(sc) == [sha(doc["password"])]
    assert not any("pub-pw-0" in p for p in problems(a))


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
