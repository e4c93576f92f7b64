"""Continuous re-validation (redis.revalidate_interval; agent/reval.h, docs/design.md §7):
the agent checks the published credential on the nodes even when the store did not
change. A password changed behind its back is the state `revoked` and an error event
(MESSAGE_ID ...4b0a); an unreachable node, or one refusing node under validate = "any",
is not; a candidate that works (the other access key of azure-redis-keys, or the
published previous) is published with no previous, on_change runs, and the store's
refused version does not make the credential flap. Real redis-server, the Azure fake;
events are waited for in the journal stream, never slept for."""
import json
import os
import signal

import pytest

import rc_harness as h
from azure_helpers import az  # noqa: F401 - fixture

MID_REVOKED = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0a"
MID_PUBLISHED = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b01"
MID_REFUSED = "5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b02"
INTERVAL = "2s"


# ---------------------------------------------------------------- helpers

@pytest.fixture(autouse=True)
def journal_on_failure(sc):
    """The agents log to the journal stream here: print it when a test fails."""
    yield
    for a in sc.agents:
        if a.journal is not None:
            print("===== journal of pid %d" % a.pid)
            print("\n".join("%s %s" % (m.fields.get("PRIORITY", "?"), text(m))
                            for m in a.journal.snapshot()[-80:]))


def text(m):
    return m.fields.get("MESSAGE", "")


def entries(a, pred, since=0):
    return [m for m in a.journal.snapshot()[since:] if pred(m)]


def wait_entries(a, pred, n=1, since=0, timeout=10, what="a journal entry"):
    def check():
        if not a.alive():
            h.fail("agent exited %s while waiting for %s" % (a.proc.returncode, what))
        got = entries(a, pred, since)
        return got if len(got) >= n else None
    try:
        return h.wait_until(check, timeout, what)
    except AssertionError:
        h.fail("timed out after %ss waiting for %s; journal since mark:\n%s"
               % (timeout, what, "\n".join(text(m) for m in a.journal.snapshot()[since:][-30:])))


def mid(m_id):
    return lambda m: m.fields.get("MESSAGE_ID") == m_id


def revalidated(verdict):
    """The debug line of each re-validation of cache's published version."""
    return lambda m: "re-validation of cache version" in text(m) and ": %s (" % verdict in text(m)


def status_row(sc, name="cache"):
    r = sc.run_cli("-c", sc.tree.conf, "status", "--json")
    for row in json.loads(r.stdout)["credentials"]:
        if row["name"] == name:
            return row, r.returncode
    raise AssertionError("no status row for %s: %s" % (name, r.stdout))


def hook(sc):
    """An on_change program that appends the published version to a file; returns
    (argv, a function giving the versions it saw)."""
    path = os.path.join(sc.tree.root, "hook.py")
    out = os.path.join(sc.tree.root, "hook.out")
    with open(path, "w") as f:
        f.write("import os, sys\n"     # the version it was started for, not the file's now
                "open(sys.argv[2], 'a').write(os.environ['REDIS_CREDS_VERSION'] + '\\n')\n")
    os.chmod(path, 0o755)

    def seen():
        try:
            return open(out).read().split()
        except FileNotFoundError:
            return []
    return lambda name: ["/usr/bin/python3", path, os.path.join(sc.tree.runtime, name + ".json"), out], seen


def cred(sc, endpoints=None, validate=None, **extra):
    r = {"revalidate_interval": INTERVAL}
    if validate:
        r["validate"] = validate
    extra.setdefault("poll_interval", "500ms")
    return sc.cred(endpoints=endpoints, redis_extra=r, **extra)


def acl_auth_failures(redis_server, user="app"):
    """Failed AUTHs Redis counted for user (ACL LOG's entries' counts)."""
    c = redis_server.client()
    try:
        log = c.execute_command("ACL", "LOG", "128")
    finally:
        c.close()
    total = 0
    for e in log:
        d = dict(zip(e[::2], e[1::2])) if isinstance(e, list) else e
        d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
        reason = d.get("reason")
        reason = reason.decode() if isinstance(reason, bytes) else reason
        username = d.get("username")
        username = username.decode() if isinstance(username, bytes) else username
        if reason == "auth" and username == user:
            total += int(d.get("count", 1))
    return total


# ---------------------------------------------------------------- revoked

def test_password_changed_behind_the_agents_back_is_revoked_within_one_interval(sc):
    a = sc.start_published("pw1", credentials=[cred(sc)], journal=True)
    v1 = a.first_doc["version"]
    before = sc.read_bytes("cache.json")
    wait_entries(a, revalidated("accepted"), what="a re-validation that Redis accepts")
    row, rc = status_row(sc)
    assert row["state"] == "current" and row["revalidation"]["interval_seconds"] == 2, row
    assert row["revalidation"]["last"] is not None and row["revalidation"]["next"] is not None

    mark = a.journal.mark()
    sc.redis.acl_setuser("app", "resetpass", ">other")    # behind the agent's back
    ev = wait_entries(a, mid(MID_REVOKED), since=mark, timeout=2 * 2.2 + 3,
                      what="the revoked event within one revalidate_interval")[0]
    assert ev.fields["PRIORITY"] == "3", ev.fields             # an error
    assert ev.fields["REDIS_CREDS_NAME"] == "cache" and ev.fields["REDIS_CREDS_VERSION"] == v1
    assert "refused" in ev.fields["REDIS_CREDS_NODES"], ev.fields
    assert "Redis refused the published version %s at re-validation" % v1 in text(ev)

    def revoked():
        row, rc = status_row(sc)
        return (row, rc) if row["state"] == "revoked" else None
    row, rc = h.wait_until(revoked, 5, "status to say revoked")
    assert rc == 1 and row["current"] is False and row["version"] == v1
    assert row["revalidation"]["refused_version"] == v1
    assert "re-validation" in row["last_error"]
    r = sc.run_cli("-c", sc.tree.conf, "status")
    assert r.returncode == 1 and " revoked " in r.stdout, r.stdout
    a.notify.wait_status(lambda s: "revoked" in s, timeout=5)

    # No flap, and no new refused candidate: the store still offers v1, polled every
    # 500 ms; it is neither validated again nor republished over two more intervals.
    m2 = a.journal.mark()
    wait_entries(a, revalidated("refused"), n=2, since=m2, timeout=10, what="two more re-validations")
    assert not entries(a, mid(MID_REFUSED), since=mark), "the refused version was judged again"
    assert not entries(a, mid(MID_PUBLISHED), since=mark)
    assert sc.read_bytes("cache.json") == before
    assert len(entries(a, mid(MID_REVOKED), since=mark)) == 1, "said once, not every interval"
    # ... and the state does not flap back to current at the polls in between.
    assert status_row(sc)[0]["state"] == "revoked"
    statuses = [v for _, v in a.notify.values("STATUS")]
    first = next(i for i, v in enumerate(statuses) if "revoked" in v)
    assert all("revoked" in v for v in statuses[first:]), statuses[first:]

    # Redis takes the password back: current again at the next re-validation.
    m3 = a.journal.mark()
    sc.redis.add_password("app", "pw1")
    wait_entries(a, lambda m: "Redis accepts the published version %s again" % v1 in text(m), since=m3)
    row, rc = status_row(sc)
    assert row["state"] == "current" and rc == 0 and row["revalidation"]["refused_version"] is None
    assert sc.read_bytes("cache.json") == before


def test_reload_keeps_the_refused_version_latched(sc):
    a = sc.start_published("pw1", credentials=[cred(sc)], journal=True)
    mark = a.journal.mark()
    sc.redis.acl_setuser("app", "resetpass", ">other")
    wait_entries(a, mid(MID_REVOKED), since=mark, timeout=8, what="the revoked event")
    nmark = a.notify.mark()
    a.send(signal.SIGHUP)
    i = a.wait_notify("RELOADING", "1", since=nmark, timeout=5)
    a.wait_notify("READY", "1", since=i, timeout=10)
    m2 = a.journal.mark()
    # The reload's check finds the store's (refused) version: still revoked, not current,
    # and the re-validation goes on in the new generation without a second event.
    wait_entries(a, revalidated("refused"), since=m2, timeout=8, what="a re-validation after the reload")
    row, rc = status_row(sc)
    assert row["state"] == "revoked" and rc == 1, row
    assert not entries(a, mid(MID_REVOKED), since=m2) and not entries(a, mid(MID_REFUSED), since=mark)


def test_unreachable_node_is_not_a_refusal(sc):
    down = h.closed_port_endpoint()
    a = sc.start_published("pw1", credentials=[cred(sc, endpoints=[sc.redis.endpoint, down])],
                           journal=True)
    mark = a.journal.mark()
    wait_entries(a, revalidated("inconclusive"), n=2, since=mark, timeout=10,
                 what="two re-validations with a node down")
    assert not entries(a, mid(MID_REVOKED), since=mark)
    row, _ = status_row(sc)
    assert row["state"] == "current", row
    # A refusal by the reachable node counts under "all", whatever the other one does.
    sc.redis.remove_password("app", "pw1")
    wait_entries(a, mid(MID_REVOKED), since=mark, timeout=8, what="the revoked event")


def test_validate_any_needs_every_node_to_refuse(sc):
    r2 = sc.another_redis()
    r2.create_user("app", "pw1")
    a = sc.start_published("pw1", credentials=[cred(sc, endpoints=[sc.redis.endpoint, r2.endpoint],
                                                     validate="any")], journal=True)
    mark = a.journal.mark()
    r2.remove_password("app", "pw1")                     # one node of two refuses
    wait_entries(a, lambda m: revalidated("accepted")(m) and "=refused" in text(m),
                 n=2, since=mark, timeout=10, what="two re-validations seeing the refusing node")
    assert not entries(a, mid(MID_REVOKED), since=mark)
    assert status_row(sc)[0]["state"] == "current"
    sc.redis.remove_password("app", "pw1")               # now every node refuses
    wait_entries(a, mid(MID_REVOKED), since=mark, timeout=8, what="the revoked event")
    assert status_row(sc)[0]["state"] == "revoked"


# ---------------------------------------------------------------- replacements

def test_previous_is_published_when_it_validates(sc):
    argv, seen = hook(sc)
    a = sc.start_published("pw1", credentials=[cred(sc, on_change=argv("cache"))], journal=True)
    sc.redis.add_password("app", "pw2")
    sc.store_cred("app", "pw2")
    d2 = sc.wait_published(password="pw2")
    v1, v2 = d2["previous"]["version"], d2["version"]
    assert d2["previous"]["password"] == "pw1"
    h.wait_until(lambda: v2 in seen(), 5, "on_change for v2")   # (hooks may end out of order)

    mark = a.journal.mark()
    sc.redis.remove_password("app", "pw2")               # the store's version dies
    d = sc.wait_published(password="pw1", timeout=15)
    assert d["version"] == v1 and d.get("previous") is None, d   # never the refused one
    wait_entries(a, mid(MID_REVOKED), since=mark, what="the revoked event")
    note = wait_entries(a, lambda m: "in place of version %s" % v2 in text(m), since=mark)[0]
    assert note.fields["PRIORITY"] == "5" and "the previous version" in text(note), note.fields
    h.wait_until(lambda: seen().count(v1) == 2, 5, "on_change for the previous version")
    row, rc = status_row(sc)
    assert row["state"] == "revoked" and rc == 1 and row["version"] == v1, row   # the store's is refused
    assert "publishing the previous version" in row["last_error"]

    # No flap: the store offers v2 at every poll; it is not validated nor published again.
    published = sc.read_bytes("cache.json")
    failures = acl_auth_failures(sc.redis)
    m2 = a.journal.mark()
    wait_entries(a, revalidated("accepted"), n=2, since=m2, timeout=10, what="two re-validations of v1")
    assert sc.read_bytes("cache.json") == published
    assert not entries(a, mid(MID_PUBLISHED), since=m2) and not entries(a, mid(MID_REFUSED), since=mark)
    assert acl_auth_failures(sc.redis) == failures, "the refused version was tried again"
    assert sorted(seen()) == sorted([v1, v2, v1]), seen()   # once for the replacement

    # A later change of the store is judged as usual.
    sc.redis.add_password("app", "pw3")
    sc.store_cred("app", "pw3")
    d3 = sc.wait_published(password="pw3", timeout=5)
    assert d3["previous"]["version"] == v1
    h.wait_until(lambda: status_row(sc)[0]["state"] == "current", 5, "current again")


def test_azure_primary_refused_while_listkeys_reports_it(sc, az):
    rid = az.fake.add_cache("cache1")
    k = az.fake.keys(rid)
    p1, s1 = k["primaryKey"], k["secondaryKey"]
    az.redis_accepts_keys(p1, s1)
    argv, seen = hook(sc)
    c = az.cred(name="keys", source="keys", path=rid, poll_interval="500ms", on_change=argv("keys"))
    c["redis"]["revalidate_interval"] = INTERVAL
    a = az.start([c], [az.keys_source()], journal=True)
    d = sc.wait_published("keys", password=p1, timeout=5)
    assert d["previous"]["password"] == s1
    pv, sv = d["version"], d["previous"]["version"]

    # The primary is invalidated in Redis; listKeys still reports it (the regeneration
    # has not reached the management API). Polls see nothing new: only re-validation can.
    mark = a.journal.mark()
    az.redis_accepts_keys(s1)
    d = sc.wait_published("keys", password=s1, timeout=2.2 + 5)
    assert d["version"] == sv and d.get("previous") is None, d
    ev = wait_entries(a, mid(MID_REVOKED), since=mark, what="the revoked event")[0]
    assert ev.fields["REDIS_CREDS_VERSION"] == pv
    wait_entries(a, lambda m: "the store's other key %s in place of version %s" % (sv, pv) in text(m),
                 since=mark, what="the notice")
    h.wait_until(lambda: sv in seen(), 5, "on_change for the secondary")
    row, rc = status_row(sc, "keys")
    assert row["state"] == "current" and rc == 0, row   # a key the store offers is published

    # No flap: listKeys keeps offering the primary at every poll.
    published = sc.read_bytes("keys.json")
    m2 = a.journal.mark()
    wait_entries(a, revalidated_keys("accepted"), n=2, since=m2, timeout=10, what="two re-validations")
    assert sc.read_bytes("keys.json") == published
    assert not entries(a, mid(MID_PUBLISHED), since=m2) and not entries(a, mid(MID_REFUSED), since=mark)
    assert seen().count(sv) == 1
    az.assert_no_secrets("\n".join(m.raw for m in a.journal.snapshot()), az.status().stdout)


def revalidated_keys(verdict):
    return lambda m: "re-validation of keys version" in text(m) and ": %s (" % verdict in text(m)


def test_off_with_zero_interval(sc):
    a = sc.start_published("pw1", credentials=[sc.cred(redis_extra={"revalidate_interval": "0s"},
                                                        poll_interval="500ms")], journal=True)
    row, _ = status_row(sc)
    assert row["revalidation"] is None
    mark = a.journal.mark()
    sc.redis.acl_setuser("app", "resetpass", ">other")
    # Polls go on (the store's version is what is published): nothing re-validates it.
    wait_entries(a, lambda m: "unchanged" in text(m), n=6, since=mark, timeout=10, what="polls")
    assert not entries(a, revalidated("refused"), since=mark)
    assert not entries(a, mid(MID_REVOKED), since=mark)
