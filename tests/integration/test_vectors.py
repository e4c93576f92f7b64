"""The shared test vectors of the published file (tests/vectors) through all three client
parsers: Python's (client/python, here), C's (client/tests/test_client_vectors, built) and
Node.js' (client/node/test/vectors.test.js, when node >= 20 is there).

The C client is the reference (it is as strict as the agent's own reader); where the
Python parser disagrees with the documented format, the vector is an expected failure
(strict: it turns into an error once the parser is fixed) with the reason, and
tests/vectors/README.md lists it."""
import json
import math
import os
import shutil
import subprocess

import pytest

import client_helpers as ch  # noqa: F401  (puts client/python on sys.path)
import rc_harness as h
from redis_creds import credfile

VECTORS_DIR = os.path.join(h.SOURCE_DIR, "tests", "vectors")
VECTORS = json.load(open(os.path.join(VECTORS_DIR, "vectors.json")))["vectors"]
C_PROGRAM = os.path.join(h.BUILD_DIR, "client", "tests", "test_client_vectors")
NODE_DIR = os.path.join(h.SOURCE_DIR, "client", "node")

# Fields the Python client does not read yet (the fleet-rotation work adds them).
PYTHON_UNIMPLEMENTED = {"previous_valid_until"}

# Where the Python parser accepts (or crashes on) what the documented format and the C
# client refuse.
PYTHON_DISAGREES = {
    "format-real": "json.loads gives 1.0 == 1: the format is not checked to be an integer",
    "format-true": "True == 1 in Python: format true is taken as format 1",
    "username-nul": "a \\u0000 in username is not refused",
    "version-nul": "a \\u0000 in version is not refused",
    "expires-month-13": "calendar.timegm raises ValueError, which escapes get() "
                        "(not a CredentialFileError: the last good credential is not kept)",
    "expires-day-32": "no range check on the day (timegm rolls it over)",
    "expires-hour-24": "no range check on the hour",
    "expires-offset-24": "no range check on the zone offset",
    "duplicate-key": "json.loads keeps the last of duplicate keys",
    "duplicate-key-nested": "json.loads keeps the last of duplicate keys",
    "lone-surrogate": "json.loads accepts a lone surrogate escape",
    "nan": "json.loads accepts NaN, which is not JSON",
    "int-overflow": "json.loads accepts integers of any size",
}


def _params():
    for v in VECTORS:
        marks = []
        if PYTHON_UNIMPLEMENTED & set(v.get("requires", ())):
            marks.append(pytest.mark.skip(reason="the Python client does not read %s yet"
                                          % ", ".join(v["requires"])))
        elif v["id"] in PYTHON_DISAGREES:
            marks.append(pytest.mark.xfail(strict=True, reason=PYTHON_DISAGREES[v["id"]]))
        yield pytest.param(v, id="%s-%s" % (v["result"], v["id"]), marks=marks)


def _plain(c):
    if c is None:
        return None
    return {"username": c.username, "password": c.password, "version": c.version,
            "expires_at": None if c.expires_at is None else math.floor(c.expires_at)}


@pytest.mark.parametrize("vector", _params())
def test_python_parser(vector, tmp_path):
    shutil.copy(os.path.join(VECTORS_DIR, vector["file"]),
                tmp_path / (vector["name"] + ".json"))
    cf = credfile.CredentialFile(vector["name"], str(tmp_path))
    if vector["result"] == "reject":
        with pytest.raises(credfile.CredentialFileError) as ei:
            cf.get()
        assert "s3cr3t" not in str(ei.value)
        return
    snap = cf.get()
    assert _plain(snap.current) == vector["current"]
    assert _plain(snap.previous) == vector["previous"]


def test_c_parser():
    """client/tests/test_client_vectors over the same vectors (also ctest
    unit.test_client_vectors); every vector it does not skip must pass."""
    if not os.path.exists(C_PROGRAM):
        pytest.fail("%s is not built (cmake --build %s)" % (C_PROGRAM, h.BUILD_DIR))
    p = subprocess.run([C_PROGRAM, VECTORS_DIR], capture_output=True, text=True, timeout=60)
    lines = p.stdout.splitlines()
    print(p.stdout)
    assert p.returncode == 0, [l for l in lines if l.startswith("FAIL")]
    done = [l for l in lines if l.startswith(("ok ", "skip "))]
    assert len(done) == len(VECTORS)
    skipped = [l.split()[2] for l in lines if l.startswith("skip ")]
    assert all("previous_valid_until" in v.get("requires", ()) for v in VECTORS
               if v["id"] in skipped)


def _node_ok():
    node = shutil.which("node")
    if not node:
        return None, "node is not installed"
    out = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    major = int(out.strip().lstrip("v").split(".")[0] or 0)
    if major < 20:
        return None, "node %s is older than 20, which the package needs" % out.strip()
    return node, None


def test_node_parser():
    node, why = _node_ok()
    if not node:
        pytest.skip("Node.js tests skipped: %s" % why)
    p = subprocess.run([node, "--test", "test/vectors.test.js"], cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, REDIS_CREDS_VECTORS=VECTORS_DIR))
    summary = [l for l in p.stdout.splitlines() if l.startswith(("# pass", "# fail"))]
    print("\n".join(summary))
    assert p.returncode == 0, p.stdout[-3000:]
    assert "# pass %d" % (len(VECTORS) + 1) in summary
