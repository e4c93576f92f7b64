"""Fixtures for the integration suite (see rc_harness.py for the pieces).

Run: REDIS_CREDS_BUILD_DIR=<cmake build dir> /usr/bin/python3 -m pytest -q tests/integration
"""
import os
import sys

import pytest

# ctest runs us from the source tree: do not leave bytecode caches there.
sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "fakes"))

import rc_harness as h  # noqa: E402
from silent_tcp import SilentTCPServer  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--rc-skip-files", metavar="LIST", default=None,
                     help="a file naming test files (one per line) not to collect: ctest's "
                          "integration.unlisted entry runs only the files that other entries "
                          "do not (tests/CMakeLists.txt)")


def pytest_ignore_collect(collection_path, config):
    listed = config.getoption("--rc-skip-files")
    if not listed or not collection_path.name.startswith("test_"):
        return None
    if not hasattr(config, "_rc_skip_names"):
        with open(listed) as f:
            config._rc_skip_names = {line.strip() for line in f if line.strip()}
    return True if collection_path.name in config._rc_skip_names else None


def pytest_sessionstart(session):
    missing = [p for p in (h.AGENT_BIN, h.CLI_BIN, h.PLUGIN_DIR, h.REDIS_SERVER)
               if not os.path.exists(p)]
    if missing:
        raise pytest.UsageError("integration tests need %s (set REDIS_CREDS_BUILD_DIR to the "
                                "CMake build directory; build it first)" % ", ".join(missing))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def sc(request):
    """A Scenario with a running redis-server (user `app` is created by the tests that
    need it). Teardown stops every agent with SIGTERM and fails the test if one did not
    exit 0, prints the agents' logs when the test failed, and removes the tree."""
    s = h.Scenario()
    s.redis.start()
    yield s
    problems = s.close()
    rep = getattr(request.node, "rep_call", None)
    if problems or (rep is not None and rep.failed):
        s.dump_logs()
    s.tree.remove()
    if problems:
        pytest.fail("teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def agent(sc):
    """The setup most tests share: user `app` with password pw1 in Redis and in the store
    (cache.json), one credential `cache`, the agent READY and cache.json published with pw1.
    Variants (more accepted passwords, another config) call sc.start_published(...)."""
    return sc.start_published()


@pytest.fixture
def silent_server():
    srv = SilentTCPServer()
    yield srv
    srv.close()
