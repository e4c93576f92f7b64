"""valgrind memcheck over the main scenarios (the release build, as shipped). The `file`
source with a real redis-server: start, publish, reload on SIGHUP, a store change, an
agent-driven rotation (strategy redis-acl), `status --json`, SIGTERM. Then the Vault
source (AppRole login, KV v2, a new version, a truncated answer) and the Azure Key Vault
source (client-secret identity, a malformed answer), which run the HTTP, TLS-library and
JSON paths. Asserted each time: exit status 0 (valgrind's --error-exitcode=1 turns any
error into 1), "ERROR SUMMARY: 0 errors" and 0 bytes definitely lost, within a 3-minute
budget.

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
from azure_helpers import az, write_file  # noqa: F401 - fixture
from test_rotation import rot_cred, rotation_record
from vault_helpers import vault  # noqa: F401 - fixture

VALGRIND = shutil.which("valgrind")
BUDGET = 180
SUPP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "valgrind.supp")


def memcheck(sc):
    """The wrapper for Agent(wrapper=...) and the path of valgrind's report."""
    if VALGRIND is None:
        pytest.fail("valgrind is not installed (scripts/lib/deps.sh installs it)")
    if h.built_with_asan():
        pytest.skip("valgrind cannot run an AddressSanitizer build (label `once`: "
                    "scripts/test.sh runs this on the release build only)")
    vlog = os.path.join(sc.tree.root, "valgrind-%d.log" % len(sc.agents))
    return [VALGRIND, "--tool=memcheck", "--error-exitcode=1", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
            "--num-callers=30", "--suppressions=" + SUPP, "--log-file=" + vlog], vlog


def assert_clean(a, vlog, t0):
    """SIGTERM; then exit 0, no error and no definite leak in valgrind's report."""
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


def reload(a):
    mark = a.notify.mark()
    a.send(signal.SIGHUP)
    a.wait_notify("READY", "1", since=mark, timeout=60)


def test_agent_under_valgrind_memcheck_has_no_error_and_no_definite_leak(sc):
    t0 = time.monotonic()
    wrapper, vlog = memcheck(sc)
    sc.redis.create_user("app", "mc-pw-1", "mc-pw-2")
    sc.store_cred("app", "mc-pw-1")
    # generous timeouts: everything runs 20-50 times slower under valgrind
    cred = rot_cred(sc, grace="1s", timeout="10s")
    cred["formats"] = ["json", "env", "password"]
    sc.write_config([cred], agent={"startup_timeout": "120s"})
    a = sc.start_agent(wrapper=wrapper)
    a.wait_ready(timeout=120)
    first = sc.wait_published(password="mc-pw-1", timeout=60)
    reload(a)

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
    assert_clean(a, vlog, t0)


def test_vault_source_under_valgrind_memcheck(vault, sc):
    t0 = time.monotonic()
    wrapper, vlog = memcheck(sc)
    sc.redis.create_user("app", "mc-vault-1", "mc-vault-2")
    vault.read_policy()
    auth = vault.approle(token_ttl=60)
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": "mc-vault-1"})
    vault.write_config([vault.cred(poll_interval="1s")], [vault.source(auth=auth, timeout="10s")],
                       agent={"startup_timeout": "120s"})
    a = sc.start_agent(wrapper=wrapper)
    a.wait_ready(timeout=120)
    sc.wait_published(password="mc-vault-1", timeout=60)
    mark = a.log_mark()
    vault.fake.inject(r"^/v1/secret/data/redis/cache$", "truncated")
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": "mc-vault-2"})
    a.wait_log("malformed JSON", since=mark, timeout=60)
    vault.fake.clear_injections()
    sc.wait_published(password="mc-vault-2", timeout=60)
    reload(a)
    assert_clean(a, vlog, t0)


def test_azure_keyvault_source_under_valgrind_memcheck(sc, az):
    t0 = time.monotonic()
    wrapper, vlog = memcheck(sc)
    sc.redis.create_user("app", "mc-kv-1", "mc-kv-2")
    app = az.fake.add_app("sp", secret="mc-client-secret-1")
    sfile = write_file(os.path.join(az.dir, "client-secret"), "mc-client-secret-1\n")
    az.fake.kv_set("cache-pw", "mc-kv-1")
    identity = az.identity("client_secret", client_id=app.client_id, client_secret_file=sfile)
    a = az.start([az.cred(path="cache-pw", username="app", poll_interval="1s")],
                 [az.kv_source(identity=identity, timeout="10s")],
                 agent={"startup_timeout": "120s"}, ready=False, wrapper=wrapper)
    a.wait_ready(timeout=120)
    sc.wait_published(password="mc-kv-1", timeout=60)
    mark = a.log_mark()
    az.fake.inject("keyvault", status=200, body=b'{"value": "mc-kv-2", "id": ', count=3)
    az.fake.kv_set("cache-pw", "mc-kv-2")
    a.wait_log("not a JSON object", since=mark, timeout=60)
    sc.wait_published(password="mc-kv-2", timeout=60)
    reload(a)
    assert_clean(a, vlog, t0)
