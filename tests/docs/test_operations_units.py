"""The unit files that docs/operations.md gives (wiring a consumer service) are valid for
systemd (`systemd-analyze verify`, offline), and what it says about the shipped unit's
reload and start condition is what deploy/redis-creds-agent.service has."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "docs" / "operations.md"
UNIT = ROOT / "deploy" / "redis-creds-agent.service"
BLOCK = re.compile(r"```ini\n# /etc/systemd/system/(app-redis-creds\.(?:path|service))\n(.*?)```", re.S)


def test_consumer_units_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    units = {m.group(1): m.group(2) for m in BLOCK.finditer(OPS.read_text())}
    assert {"app-redis-creds.path", "app-redis-creds.service"} <= set(units), sorted(units)
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    r = subprocess.run(["systemd-analyze", "verify"] + [str(tmp_path / n) for n in sorted(units)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    path = units["app-redis-creds.path"]
    assert "PathChanged=/run/redis-creds/" in path and "Unit=app-redis-creds.service" in path


def test_shipped_unit_reloads_through_the_cli_and_waits_for_a_config():
    unit, ops = UNIT.read_text(), OPS.read_text()
    reload = re.search(r"^ExecReload=(.*)$", unit, re.M).group(1)
    assert reload == ("/usr/bin/redis-creds --control-socket /run/redis-creds-agent/control.sock "
                      "reload --pid $MAINPID")
    assert " ".join(reload.split()) in " ".join(ops.split())
    assert re.search(r"^ConditionPathExists=/etc/redis-creds/agent.conf$", unit, re.M)
    # /etc/redis-creds is admin-owned configuration, not "read-only to the agent"
    for text in (ops, unit):
        assert not re.search(r"/etc/redis-creds`?,? (?:stays )?(?:root-owned and )?read-only", text)
