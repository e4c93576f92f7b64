"""Something other than a regular file in the place of <name>.json (docs/design.md §5.4):
a FIFO must not hang a reader, and neither a FIFO nor a directory is a credential. The
three clients (C through ctypes, Python, Node.js) each run in a child process with a
time limit, so a reader that blocks fails the test instead of hanging it."""
import errno
import os
import shutil
import subprocess
import sys

import pytest

import client_helpers as ch
import rc_harness as h

VECTOR = os.path.join(h.SOURCE_DIR, "tests", "vectors", "files", "ok-basic.json")
LIB = os.path.join(ch.CLIENT_BUILD, "libredis-creds.so")
NODE_DIR = os.path.join(h.SOURCE_DIR, "client", "node")

# Each prints "ok <version>" or "refused", for credential "cache" in argv[1]; with
# argv[2] == "replace", it first loads the good file, puts argv[3]'s kind of file in its
# place, reloads, and prints what it still holds.
C_READER = r"""
import ctypes, os, sys
lib = ctypes.CDLL(sys.argv[4])
class Cred(ctypes.Structure):
    _fields_ = [("username", ctypes.c_char_p), ("password", ctypes.c_char_p),
                ("password_len", ctypes.c_size_t), ("version", ctypes.c_char_p),
                ("expires_at", ctypes.c_int64)]
class Creds(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("current", Cred)]
h = ctypes.c_void_p()
r = lib.rc_open_ex(b"cache", sys.argv[1].encode(), 1, 0, ctypes.byref(h))
if r < 0:
    print("refused"); sys.exit(0)
if sys.argv[2] == "replace":
    exec(sys.argv[5])
    lib.rc_reload(h)
    print("error", lib.rc_last_error(h))
c = ctypes.POINTER(Creds)()
lib.rc_get(h, ctypes.byref(c))
print("ok", c.contents.current.version.decode())
"""

PY_READER = r"""
import os, sys
sys.path.insert(0, sys.argv[4])
from redis_creds import credfile
f = credfile.CredentialFile("cache", sys.argv[1])
try:
    snap = f.get()
except credfile.CredentialError:
    print("refused"); sys.exit(0)
if sys.argv[2] == "replace":
    exec(sys.argv[5])
    f.reload()
    print("error", f.last_error is not None)
print("ok", f.get().current.version)
"""

NODE_READER = r"""
const fs = require('fs');
const [dir, mode, kind] = process.argv.slice(1);
const { CredentialFile } = require('./lib/watch');
const f = new CredentialFile('cache', { runtimeDir: dir, watch: false });
try { f.get(); } catch (e) { console.log('refused'); process.exit(0); }
if (mode === 'replace') {
  const p = `${dir}/cache.json`;
  fs.unlinkSync(p);
  if (kind === 'fifo') require('child_process').execFileSync('mkfifo', [p]);
  else fs.mkdirSync(p);
  f.reload();
  console.log('error', f.lastError !== null ? 'True' : 'False');
}
console.log('ok', f.get().current.version);
"""

# Python statements run with os imported and the runtime dir in sys.argv[1]
MAKE = {
    "fifo": "p = os.path.join(sys.argv[1], 'cache.json'); os.unlink(p) "
            "if os.path.lexists(p) else None; os.mkfifo(p)",
    "directory": "p = os.path.join(sys.argv[1], 'cache.json'); os.unlink(p) "
                 "if os.path.lexists(p) else None; os.mkdir(p)",
}


def _c_env():
    """The environment for the C reader: a library built with AddressSanitizer (the ASan
    pass) loads into Python only with ASan's runtime preloaded; the interpreter's own
    allocations are not this test's leaks."""
    if not h.built_with_asan(LIB):
        return h.clean_env()
    asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                          text=True, check=True).stdout.strip()
    return h.clean_env({"LD_PRELOAD": asan, "ASAN_OPTIONS": "detect_leaks=0"})


def _run(reader, runtime_dir, mode, kind):
    if reader == "node":
        node = shutil.which("node")
        if not node:
            pytest.skip("node is not installed")
        args = [node, "-e", NODE_READER, runtime_dir, mode, kind]
        cwd = NODE_DIR
    else:
        src = C_READER if reader == "c" else PY_READER
        extra = LIB if reader == "c" else ch.PYTHON_CLIENT_DIR
        args = [sys.executable, "-c", src, runtime_dir, mode, kind, extra, MAKE[kind]]
        cwd = None
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=10, cwd=cwd,
                           env=_c_env() if reader == "c" else h.clean_env())
    except subprocess.TimeoutExpired:
        pytest.fail("the %s client hung on a %s in the place of the file" % (reader, kind))
    assert p.returncode == 0, p.stderr
    return p.stdout.split("\n")


@pytest.mark.parametrize("kind", ["fifo", "directory"])
@pytest.mark.parametrize("reader", ["c", "python", "node"])
def test_a_fifo_or_directory_is_refused_at_once(reader, kind, tmp_path):
    path = str(tmp_path / "cache.json")
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.mkdir(path)
    assert _run(reader, str(tmp_path), "open", kind)[0] == "refused"


@pytest.mark.parametrize("kind", ["fifo", "directory"])
@pytest.mark.parametrize("reader", ["c", "python", "node"])
def test_a_fifo_or_directory_replacing_the_file_keeps_the_last_good(reader, kind, tmp_path):
    shutil.copy(VECTOR, tmp_path / "cache.json")
    out = _run(reader, str(tmp_path), "replace", kind)
    assert out[0].split()[0] == "error" and out[0].split()[1] in ("True", str(-errno.EBADMSG)), out
    assert out[1] == "ok h-3f9a0c5e11d2b7a4", out
