"""The package installs offline into a Debian venv with the in-tree stdlib backend:
python3 -m venv --system-site-packages v && v/bin/pip install --no-build-isolation DIR"""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def _venv_available():
    return subprocess.run([PYTHON, "-c", "import ensurepip, venv"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _venv_available(), reason="python3-venv is not installed")
def test_pip_installs_offline_without_build_isolation_and_editable():
    tmp = tempfile.mkdtemp(prefix="rc-venv-")
    try:
        src = os.path.join(tmp, "src")   # a copy: the build leaves nothing in the tree
        shutil.copytree(HERE, src, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        v = os.path.join(tmp, "v")
        subprocess.run([PYTHON, "-m", "venv", "--system-site-packages", v], check=True,
                       capture_output=True, timeout=120)
        env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                   PIP_NO_CACHE_DIR="1")
        for k in list(env):
            if k.startswith(("PYTHON", "VIRTUAL_ENV")):
                del env[k]
        r = subprocess.run([os.path.join(v, "bin", "pip"), "install", "--no-build-isolation",
                            src], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        code = ("import redis_creds, os; print(redis_creds.__version__); "
                "print(os.path.dirname(redis_creds.__file__))")
        out = subprocess.run([os.path.join(v, "bin", "python"), "-c", code], check=True,
                             capture_output=True, text=True, cwd=tmp, env=env).stdout.split()
        assert out[0] == "0.1.0"
        assert out[1].startswith(v), out   # from the venv, not from the source tree
        r = subprocess.run([os.path.join(v, "bin", "pip"), "show", "-f", "redis-creds"],
                           capture_output=True, text=True, env=env)
        assert "redis_creds/redis_py.py" in r.stdout, r.stdout
        # editable (PEP 660) too
        r = subprocess.run([os.path.join(v, "bin", "pip"), "install", "--no-build-isolation",
                            "-e", src], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        out = subprocess.run([os.path.join(v, "bin", "python"), "-c", code], check=True,
                             capture_output=True, text=True, cwd=tmp, env=env).stdout.split()
        assert out[1] == os.path.join(src, "redis_creds"), out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
