"""Validation against the real Redis before publication (docs/design.md §2, §7)."""
import time

import rc_harness as h


def test_refused_candidate_is_not_published_until_acl_accepts_it(sc, agent):
    before = sc.read_bytes()
    mark = agent.log_mark()

    sc.store_cred("app", "pw2")              # Redis does not know pw2 yet: WRONGPASS
    agent.wait_log("refused", since=mark, timeout=5)
    agent.notify.wait_status(lambda s: "refused" in s, timeout=3, what="STATUS saying refused")
    assert sc.read_bytes() == before, "a refused candidate never replaces the file (docs/design.md §2.3)"

    # Redis starts accepting it: the agent retries (backoff from 1 s) without a restart.
    t0 = time.monotonic()
    sc.redis.add_password("app", "pw2")
    doc = sc.wait_published(password="pw2", timeout=12)
    took = time.monotonic() - t0
    assert doc["previous"]["password"] == "pw1"
    assert agent.alive()
    assert len(sc.agents) == 1
    agent.notify.wait_status(lambda s: "refused" not in s and "1/1 current" in s,
                             timeout=3, what="STATUS back to current")
    print("refused -> accepted published after %.2fs" % took)


def test_refused_at_start_publishes_nothing_and_still_reports_ready(sc):
    sc.redis.create_user("app", "other")
    sc.store_cred("app", "pw1")
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready(timeout=8)
    assert sc.read_bytes() is None
    a.notify.wait_status(lambda s: "refused" in s, timeout=2, what="STATUS saying refused")
    a.wait_log("refused")


def test_redis_down_keeps_file_reports_unreachable_then_publishes_store_change_on_recovery(sc):
    a = sc.start_published(also_accept=("pw2",))
    before = sc.read_bytes()

    sc.redis.stop()
    mark = a.log_mark()
    sc.store_cred("app", "pw2")               # changed while Redis is down
    a.wait_log("unreachable", since=mark, timeout=5)
    a.notify.wait_status(lambda s: "unreachable" in s, timeout=3,
                         what="STATUS saying unreachable")
    a.barrier()                               # the unreachable attempt has ended
    assert sc.read_bytes() == before, "nothing is published while Redis is down"

    sc.redis.start()                          # same port, ACL replayed (pw1, pw2)
    doc = sc.wait_published(password="pw2", timeout=12)
    assert doc["previous"]["password"] == "pw1"
    a.notify.wait_status(lambda s: "1/1 current" in s, timeout=3, what="STATUS current")
    assert a.alive()


def test_redis_down_at_start_publishes_nothing_and_still_reports_ready(sc):
    sc.redis.create_user("app", "pw1")
    sc.redis.stop()
    sc.store_cred("app", "pw1")
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready(timeout=8)
    assert sc.read_bytes() is None
    a.notify.wait_status(lambda s: "unreachable" in s, timeout=2,
                         what="STATUS saying unreachable")
    a.wait_log("unreachable")
    sc.redis.start()
    sc.wait_published(password="pw1", timeout=12)



def test_refused_candidate_is_retried_with_backoff_not_in_a_tight_loop(sc, agent):
    mark = agent.log_mark()
    sc.store_cred("app", "pw2")
    agent.wait_log("refused", since=mark)
    c = sc.redis.client()
    c.acl_log_reset()
    t0 = time.monotonic()
    mark = agent.log_mark()
    # each retry logs its refusal again (at debug level once repeated): wait for two of them
    agent.wait_log_count("refused", 2, since=mark, timeout=10)
    took = time.monotonic() - t0
    agent.barrier()
    attempts = sum(int(e.get("count", 1)) for e in c.acl_log()
                   if e.get("reason") == "auth" and e.get("username") == "app")
    c.close()
    # backoff from 1 s with equal jitter (0.5-1 s, then 1-2 s ...): two retries take at
    # least 1.5 s and AUTH twice, a tight loop would take milliseconds and AUTH hundreds
    assert took >= 1.4, "two retries of a refused candidate within %.2fs" % took
    assert 2 <= attempts <= 3, "%d AUTH attempts in two retries (%.2fs)" % (attempts, took)


def test_newer_store_version_replaces_a_refused_candidate_at_once(sc):
    a = sc.start_published(also_accept=("pw3",))
    mark = a.log_mark()
    sc.store_cred("app", "pw2")                   # refused
    a.wait_log("refused", since=mark)
    t0 = time.monotonic()
    sc.store_cred("app", "pw3")                   # newer, accepted
    doc = sc.wait_published(password="pw3", timeout=5)
    assert time.monotonic() - t0 < 2.0, "a newer version must not wait for the refused one's backoff"
    assert doc["previous"]["password"] == "pw1"


def test_noperm_on_ping_after_auth_still_counts_as_accepted(sc):
    # a user that may AUTH but run nothing: PING answers -NOPERM (docs/design.md §7)
    sc.redis.acl_setuser("app", "reset", "on", ">pw1", "-@all")
    sc.store_cred("app", "pw1")
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready()
    doc = sc.wait_published(password="pw1", timeout=3)
    assert doc["validated"] == "all"


def test_server_without_any_password_is_a_misconfiguration_not_published(sc):
    # default user is `nopass`: AUTH <pw> -> "called without any password configured"
    sc.store("cache.json", "bare-pw-1")
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready(timeout=8)
    status = a.notify.wait_status(lambda s: "0/1" in s, timeout=3, what="STATUS '0/1 current'")
    assert sc.read_bytes() is None
    assert "refused" not in status, "no password configured is its own status, not 'refused' (docs/design.md §7): %r" % status


def test_validate_none_publishes_without_contacting_redis(sc):
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(endpoints=[h.closed_port_endpoint()],
                             redis_extra={"validate": "none"})])
    a = sc.start_agent()
    a.wait_ready()
    doc = sc.wait_published(password="pw1", timeout=3)
    assert doc["validated"] == "none"


def test_validate_any_publishes_when_one_reachable_node_accepts(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(endpoints=[h.closed_port_endpoint(), sc.redis.endpoint],
                             redis_extra={"validate": "any"})])
    a = sc.start_agent()
    a.wait_ready()
    doc = sc.wait_published(password="pw1", timeout=3)
    assert doc["validated"] == "any"


def test_validate_any_does_not_publish_when_a_node_refuses_and_none_accepts(sc):
    r2 = sc.another_redis()
    sc.redis.create_user("app", "other")
    r2.create_user("app", "other")
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(endpoints=[sc.redis.endpoint, r2.endpoint],
                             redis_extra={"validate": "any"})])
    a = sc.start_agent()
    a.wait_ready()
    a.notify.wait_status(lambda s: "refused" in s, timeout=3, what="STATUS refused")
    assert sc.read_bytes() is None


def test_all_does_not_publish_when_one_node_of_two_refuses(sc):
    r1, r2 = sc.redis, sc.another_redis()
    r1.create_user("app", "pw1")
    r2.create_user("app", "other")
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(endpoints=[r1.endpoint, r2.endpoint])])
    a = sc.start_agent()
    a.wait_ready()
    a.notify.wait_status(lambda s: "refused" in s, timeout=3, what="STATUS refused")
    assert sc.read_bytes() is None
    r2.add_password("app", "pw1")
    doc = sc.wait_published(password="pw1", timeout=12)
    assert doc["validated"] == "all"


def test_unreachable_node_blocks_publication_only_while_current_still_works(sc):
    r1, r2 = sc.redis, sc.another_redis()
    for r in (r1, r2):
        r.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(endpoints=[r1.endpoint, r2.endpoint])])
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")

    # r2 goes away; r1 accepts the new candidate but pw1 still works on r1: blocked
    r2.stop()
    r1.add_password("app", "pw2")
    mark = a.log_mark()
    sc.store_cred("app", "pw2")
    a.wait_log("unreachable", since=mark, timeout=5)
    a.barrier()                               # that attempt has ended
    assert sc.read_doc()["password"] == "pw1", \
        "published while a node was down and the current credential still worked (docs/design.md §7)"

    # the store's rotation is finished on r1 (old password gone): the current credential
    # works nowhere any more, so what every reachable node accepts is published
    r1.remove_password("app", "pw1")
    doc = sc.wait_published(password="pw2", timeout=12)
    assert doc["previous"]["password"] == "pw1"
