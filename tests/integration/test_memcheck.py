"""valgrind memcheck over the main scenario (the release build, as shipped): the agent
starts with a `file` source and a real redis-server, publishes, reloads on SIGHUP, runs an
agent-driven rotation (strategy redis-acl), republishes a store change and stops on
SIGTERM. Asserted: exit status 0 (valgrind's --error-exitcode=1 turns any error into 1),
"ERROR SUMMARY: 0 errors" and 0 bytes definitely lost, all within a 3-minute budget.

tests/integration/valgrind.supp holds suppressions for third-party code only, each with
the reason.
"""
import os
import re
import shutil
import signal
import time

import pytest

import rc_harness as h
from test_rotation import rot_cred, rotation_record

VALGRIND = shutil.which("valgrind")
BUDGET = 180
SUPP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "valgrind.supp")


def test_agent_under_valgrind_memcheck_has_no_error_and_no_definite_leak(sc):
    if VALGRIND is None:
        pytest.fail("valgrind is not installed (scripts/lib/deps.sh installs it)")
    t0 = time.monotonic()
    vlog = os.path.join(sc.tree.root, "valgrind.log")
    wrapper = [VALGRIND, "--tool=memcheck", "--error-exitcode=1", "--leak-check=full",
               "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
               "--track-fds=no", "--num-callers=30", "--suppressions=" + SUPP,
               "--log-file=" + vlog]
    sc.redis.create_user("app", "mc-pw-1", "mc-pw-2")
    sc.store_cred("app", "mc-pw-1")
    # generous timeouts: everything runs 20-50 times slower under valgrind
    cred = rot_cred(sc, grace="1s", timeout="10s")
    cred["formats"] = ["json", "env", "password"]
    sc.write_config([cred], agent={"startup_timeout": "120s"})
    a = sc.start_agent(wrapper=wrapper)
    a.wait_ready(timeout=120)
    first = sc.wait_published(password="mc-pw-1", timeout=60)

    mark = a.notify.mark()                          # reload
    a.send(signal.SIGHUP)
    a.wait_notify("READY", "1", since=mark, timeout=60)

    sc.store_cred("app", "mc-pw-2")                 # a store change, validated, published
    second = sc.wait_published(password="mc-pw-2", timeout=60)
    assert second["version"] != first["version"]

    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache", timeout=60)    # rotation
    assert r.returncode == 0, (r.stdout, r.stderr)
    doc = sc.wait_published(pred=lambda d: d["version"] != second["version"], timeout=90)
    a.wait_log(lambda l: "rotation of cache completed" in l, timeout=90)
    assert rotation_record(sc)["phase"] == "idle"
    assert sc.redis.auth_ok("app", doc["password"])
    st = sc.run_cli("-c", sc.tree.conf, "status", "--json", timeout=60)
    assert st.returncode == 0, st.stdout + st.stderr

    rc = a.stop(timeout=90)
    took = time.monotonic() - t0
    with open(vlog, errors="replace") as f:
        report = f.read()
    summary = re.search(r"ERROR SUMMARY: (\d+) errors", report)
    definite = re.search(r"definitely lost: ([\d,]+) bytes", report)
    print("valgrind: exit %s in %.1fs; %s; definitely lost: %s bytes"
          % (rc, took, summary.group(0) if summary else "no summary",
             definite.group(1) if definite else "0 (no leak summary)"))
    assert summary, "no ERROR SUMMARY in valgrind's log:\n" + report[-3000:]
    assert summary.group(1) == "0" and rc == 0, "valgrind found errors:\n" + report[-8000:]
    assert definite is None or definite.group(1) == "0", "memory definitely lost:\n" + report[-8000:]
    assert took < BUDGET, "the memcheck scenario took %.0fs (budget %ds)" % (took, BUDGET)
