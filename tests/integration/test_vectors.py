"""The shared test vectors of the published file (tests/vectors) through all three client
parsers: Python's (client/python, here), C's (client/tests/test_client_vectors, built) and
Node.js' (client/node/test/vectors.test.js, when node >= 20 is there).

Every parser must agree with every vector: there are no expected failures. (The agent's
own reader, common/credfile.c, runs them in tests/unit/test_credfile_vectors.c.)"""
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

def _params():
    for v in VECTORS:
        yield pytest.param(v, id="%s-%s" % (v["result"], v["id"]))


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
    if "previous_valid_until" in vector:
        pvu = snap.previous_valid_until
        assert (None if pvu is None else math.floor(pvu)) == vector["previous_valid_until"]


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
    assert not [l for l in lines if l.startswith("skip ")], "the C client skips none"


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
