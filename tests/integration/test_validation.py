"""Validation against the real Redis before publication (DESIGN §2, §8)."""
import time

import rc_harness as h


def test_refused_candidate_is_not_published_until_acl_accepts_it(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    before = sc.read_bytes()
    mark = a.log_mark()

    sc.store_cred("app", "pw2")              # Redis does not know pw2 yet: WRONGPASS
    a.wait_log("refused", since=mark, timeout=5)
    a.notify.wait_status(lambda s: "refused" in s, timeout=3, what="STATUS saying refused")
    assert sc.read_bytes() == before, "a refused candidate never replaces the file (§2)"

    # Redis starts accepting it: the agent retries (backoff from 1 s) without a restart.
    t0 = time.monotonic()
    sc.redis.add_password("app", "pw2")
    doc = sc.wait_published(password="pw2", timeout=12)
    took = time.monotonic() - t0
    assert doc["previous"]["password"] == "pw1"
    assert a.alive()
    assert len(sc.agents) == 1
    a.notify.wait_status(lambda s: "refused" not in s and "1/1 current" in s, timeout=3,
                         what="STATUS back to current")
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
    sc.redis.create_user("app", "pw1", "pw2")
    sc.store_cred("app", "pw1")
    sc.write_config()
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1")
    before = sc.read_bytes()

    sc.redis.stop()
    mark = a.log_mark()
    sc.store_cred("app", "pw2")               # changed while Redis is down
    a.wait_log("unreachable", since=mark, timeout=5)
    a.notify.wait_status(lambda s: "unreachable" in s, timeout=3,
                         what="STATUS saying unreachable")
    time.sleep(0.3)
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

