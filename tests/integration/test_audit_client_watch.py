"""Watch failure modes of the clients' followers (docs/design.md §5.4): a follower whose
watch cannot work must not leave the application on a stale credential."""
import os
import shutil
import subprocess
import sys

import client_helpers as ch
import rc_harness as h

VECTOR = os.path.join(h.SOURCE_DIR, "tests", "vectors", "files", "ok-basic.json")

# Opens 1100 fds first, as a busy server has, so the Watcher's inotify and pipe fds are
# above 1023; then publishes a new version and prints what get() returns a second later.
PY_MANY_FDS = r"""
import os, resource, sys, time
sys.path.insert(0, sys.argv[2])
from redis_creds import credfile
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
f = credfile.CredentialFile("cache", sys.argv[1])
w = f.watch(interval=0.2)
print("before", f.get().current.version, flush=True)
path = os.path.join(sys.argv[1], "cache.json")
text = open(path).read().replace("h-3f9a0c5e11d2b7a4", "v-new")
with open(path + ".tmp", "w") as out:
    out.write(text)
os.rename(path + ".tmp", path)
deadline = time.monotonic() + 5
while time.monotonic() < deadline and f.get().current.version != "v-new":
    time.sleep(0.05)
print("after", f.get().current.version, "thread", w._thread.is_alive(), flush=True)
w.stop()
"""


def test_python_watcher_with_fds_above_1023_follows_changes(tmp_path):
    """select() refuses an fd above 1023: the watch thread died at once and get(),
    trusting the watch, served the old credential for ever."""
    shutil.copy(VECTOR, tmp_path / "cache.json")
    p = subprocess.run([sys.executable, "-c", PY_MANY_FDS, str(tmp_path),
                        ch.PYTHON_CLIENT_DIR], capture_output=True, text=True, timeout=30,
                       env=h.clean_env())
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "before h-3f9a0c5e11d2b7a4", (lines, p.stderr)
    assert lines[1] == "after v-new thread True", (lines, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
