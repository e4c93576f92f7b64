"""What the agent tells systemd over NOTIFY_SOCKET (docs/design.md §11)."""
import signal
import time

import rc_harness as h

WATCHDOG_USEC = 1000000
STARTUP_KEYS = {"STATUS", "EXTEND_TIMEOUT_USEC", "WATCHDOG", "MAINPID"}


def watchdog_times(agent, t_from=None, t_to=None):
    return [t for t, v in agent.notify.values("WATCHDOG")
            if v == "1" and (t_from is None or t >= t_from) and (t_to is None or t <= t_to)]


def max_gap(times):
    return max((b - a for a, b in zip(times, times[1:])), default=float("inf"))


def test_ready_comes_before_anything_else_meaningful_and_status_names_version(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config()
    a = sc.start_agent()
    i = a.wait_ready()
    assert sc.read_bytes() is not None, "READY=1 only after the first attempt ended (published)"
    msgs = a.notify.snapshot()
    for m in msgs[:i]:
        assert set(m.fields) <= STARTUP_KEYS, "before READY=1 came %r" % m.raw
    doc = sc.read_doc()
    status = a.notify.wait_status(
        lambda s: "1/1 current" in s and ("cache " + doc["version"]) in s, timeout=2,
        what="STATUS '1/1 current; cache %s'" % doc["version"])
    assert "\n" not in status
    a.barrier()                               # everything sent at start-up is in
    readies = [m for m in a.notify.snapshot() if m.fields.get("READY") == "1"]
    assert len(readies) == 1, "READY=1 sent %d times at start-up" % len(readies)
    assert a.notify.find("RELOADING") is None and a.notify.find("STOPPING") is None


def test_ready_waits_for_every_credential_first_attempt(sc):
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1", filename="cache.json")
    sc.store_cred("app", "not-accepted", filename="sessions.json")
    sc.write_config([sc.cred("cache"), sc.cred("sessions")])
    a = sc.start_agent()
    a.wait_ready(timeout=8)
    assert sc.read_bytes("cache.json") is not None, "READY=1 before cache's first attempt ended"
    assert sc.read_bytes("sessions.json") is None
    a.notify.wait_status(lambda s: "1/2 current" in s and "refused" in s, timeout=2,
                         what="STATUS '1/2 current ... refused'")


def test_watchdog_pings_within_period_stop_while_sigstopped_and_resume(sc):
    a = sc.start_published(publish=False, watchdog_usec=WATCHDOG_USEC)
    period = WATCHDOG_USEC / 1e6
    t0 = time.monotonic()
    h.wait_until(lambda: len(watchdog_times(a, t0)) >= 3, 3 * period,
                 "three WATCHDOG=1 pings with WATCHDOG_USEC=1s")
    before = watchdog_times(a, t0)
    gaps = [t0] + before + [time.monotonic()]
    assert max_gap(gaps) < period, "watchdog gap %.3fs >= WATCHDOG_USEC" % max_gap(gaps)

    a.send(signal.SIGSTOP)
    t_stop = time.monotonic()
    try:
        h.wait_until(lambda: h.proc_state(a.pid) == "T", 2, "the agent to be stopped")
        time.sleep(1.5)                       # the stimulus: stopped for longer than the period
    finally:
        t_cont = time.monotonic()
        a.send(signal.SIGCONT)
    stopped = watchdog_times(a, t_stop + 0.15, t_cont)
    assert not stopped, "WATCHDOG=1 received while the agent was stopped: %r" % stopped

    h.wait_until(lambda: watchdog_times(a, t_cont), period,
                 "a WATCHDOG=1 within %.1fs after SIGCONT" % period)
    h.wait_until(lambda: len(watchdog_times(a, t_cont)) >= 3, 3 * period,
                 "three WATCHDOG=1 pings after SIGCONT")
    after = watchdog_times(a, t_cont)
    assert max_gap(after + [time.monotonic()]) < period
    assert a.alive()


def test_watchdog_keeps_flowing_while_validation_hangs(sc, silent_server):
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(endpoints=[silent_server.endpoint], timeout="3s")])
    a = sc.start_agent(watchdog_usec=WATCHDOG_USEC)
    h.wait_until(lambda: silent_server.accepted > 0, 3, "the agent connecting to the silent endpoint")
    t_hang = time.monotonic()
    h.wait_until(lambda: len(watchdog_times(a, t_hang)) >= 3, 2.5,     # inside the 3 s timeout
                 "three WATCHDOG=1 pings while validation hangs")
    t_end = time.monotonic()
    assert a.notify.find("READY") is None, "the validation was meant to be still hanging"
    pings = watchdog_times(a, t_hang, t_end)
    assert len(pings) >= 3, "WATCHDOG=1 while validation hangs: %r" % pings
    assert max_gap([t_hang] + pings + [t_end]) < WATCHDOG_USEC / 1e6, \
        "watchdog stalled while a validation hung: pings at %r" % [round(p - t_hang, 3) for p in pings]
    assert sc.read_bytes() is None
    # the hang ends as a failure, not a publish
    a.wait_ready(timeout=5)
    assert sc.read_bytes() is None
    a.notify.wait_status(lambda s: "current" in s and "0/1" in s, timeout=3,
                         what="STATUS '0/1 current ...'")


def test_extend_timeout_sent_while_first_attempt_hangs(sc, silent_server):
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(endpoints=[silent_server.endpoint], timeout="3s")])
    a = sc.start_agent()
    i = a.wait_ready(timeout=8)
    ready_t = a.notify.snapshot()[i].t
    assert ready_t - a.t_start > 2.0, "READY=1 before the first attempt ended (3 s timeout)"
    assert ready_t - a.t_start < 5.0, "the redis timeout (3 s) was not honoured"
    ext = [(t, v) for t, v in a.notify.values("EXTEND_TIMEOUT_USEC") if t <= ready_t]
    assert ext, "no EXTEND_TIMEOUT_USEC= while start-up waited (docs/design.md §11.1)"
    assert all(int(v) > 0 for _, v in ext)


def test_ready_after_startup_timeout_when_first_attempt_hangs(sc, silent_server):
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(endpoints=[silent_server.endpoint], timeout="8s")],
                    agent={"startup_timeout": "1s"})
    a = sc.start_agent()
    i = a.wait_ready(timeout=5)
    took = a.notify.snapshot()[i].t - a.t_start
    assert took < 2.5, "READY=1 came %.2fs after start with startup_timeout=1s" % took


def test_sighup_sends_reloading_with_monotonic_usec_then_ready(sc):
    a = sc.start_published(publish=False)
    mark = a.notify.mark()
    t_before = time.monotonic()
    a.send(signal.SIGHUP)
    i = a.wait_notify("RELOADING", "1", since=mark, timeout=3)
    t_after = time.monotonic()
    m = a.notify.snapshot()[i]
    assert "MONOTONIC_USEC" in m.fields, "RELOADING=1 must carry MONOTONIC_USEC= in the same message: %r" % m.raw
    usec = int(m.fields["MONOTONIC_USEC"])
    assert t_before * 1e6 - 1000 <= usec <= t_after * 1e6 + 1000, \
        "MONOTONIC_USEC=%d not CLOCK_MONOTONIC at reload (%d..%d)" % (usec, t_before * 1e6, t_after * 1e6)
    for prior in a.notify.snapshot()[mark:i]:
        assert prior.fields.get("READY") != "1"
    a.wait_notify("READY", "1", since=i + 1 if "READY" not in m.fields else i, timeout=5)
    assert a.alive()


def test_sigterm_sends_stopping_and_exits_zero(sc):
    a = sc.start_published(publish=False)
    mark = a.notify.mark()
    t0 = time.monotonic()
    a.send(signal.SIGTERM)
    rc = a.wait_exit(timeout=6)
    took = time.monotonic() - t0
    a.notify.settle()                         # what it sent before exiting is recorded
    assert a.notify.find("STOPPING", "1", since=mark) is not None, "no STOPPING=1 on SIGTERM"
    assert rc == 0
    assert took < 5.0
    assert sc.read_bytes() is not None, "stopping keeps the published file (consumers keep it)"


def test_sigterm_during_hung_validation_exits_zero_within_5s(sc, silent_server):
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(endpoints=[silent_server.endpoint], timeout="30s")],
                    agent={"startup_timeout": "1s"})
    a = sc.start_agent()
    h.wait_until(lambda: silent_server.accepted > 0, 3, "the agent connecting to the silent endpoint")
    t0 = time.monotonic()
    a.send(signal.SIGTERM)
    rc = a.wait_exit(timeout=8)
    took = time.monotonic() - t0
    assert rc == 0
    assert took < 6.0, "SIGTERM took %.2fs with a hung validation (docs/design.md §3.4: within 5 s)" % took
    assert a.notify.find("STOPPING", "1") is not None
