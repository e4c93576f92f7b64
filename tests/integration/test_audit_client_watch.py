"""Watch failure modes of the clients' followers (docs/design.md §5.4): a follower whose
watch cannot work must not leave the application on a stale credential."""
import os
import shutil
import subprocess
import sys
import time

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


def _overflow_and_recreate(directory):
    """More events than inotify queues (fs.inotify.max_queued_events), then the directory
    removed and made again: its IN_DELETE_SELF and IN_IGNORED are among the events lost."""
    try:
        with open("/proc/sys/fs/inotify/max_queued_events") as f:
            limit = int(f.read())
    except (OSError, ValueError):
        limit = 16384
    for i in range(limit // 2 + 2):   # IN_CLOSE_WRITE and IN_DELETE each
        p = os.path.join(directory, "x%d" % i)
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600))
        os.unlink(p)
    shutil.rmtree(directory)
    os.mkdir(directory)


def _publish_version(directory, version):
    path = os.path.join(directory, "cache.json")
    with open(VECTOR) as f:
        text = f.read().replace("h-3f9a0c5e11d2b7a4", version)
    with open(path + ".tmp", "w") as out:
        out.write(text)
    os.rename(path + ".tmp", path)


def test_python_watcher_follows_a_directory_recreated_during_a_queue_overflow(tmp_path):
    """The watcher took the overflow for a change and re-read the file, but kept the dead
    watch of the removed directory: later publications were never seen, and get(),
    trusting the watch, served the old credential."""
    from redis_creds import credfile, watcher
    d = str(tmp_path / "run")
    os.mkdir(d)
    _publish_version(d, "v1")
    cf = credfile.CredentialFile("cache", d)
    w = watcher.Watcher(cf, method="inotify")   # watches set, not reading yet
    try:
        assert cf.get().current.version == "v1"
        _overflow_and_recreate(d)
        _publish_version(d, "v2")
        reads = cf.reads
        w.start()   # reads the file, and its thread reads it again for the overflow
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and cf.reads < reads + 2:
            time.sleep(0.05)
        assert cf.reads == reads + 2 and cf.get().current.version == "v2"
        _publish_version(d, "v3")   # in the new directory
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and cf.get().current.version != "v3":
            time.sleep(0.05)
        assert cf.get().current.version == "v3"
    finally:
        w.stop()
