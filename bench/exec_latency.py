#!/usr/bin/python3
"""Published-file rename -> program signalled, through `redis-creds exec --splay 0`.

The benchmark publishes <dir>/bench.json like the agent does (temporary file, rename; no
agent needed: exec only reads the file) with a new version each time, and times from just
before rename() until the program under exec has the signal in hand: a small probe that
waits in sigwaitinfo() and writes CLOCK_MONOTONIC to a pipe the moment a signal arrives.
Two modes:
  signal   exec --signal SIGUSR1: the probe gets SIGUSR1 (the same probe every time);
  restart  exec --restart: the probe gets SIGTERM, exits, and exec starts a new one (the
           next change waits until the new probe is up; only the SIGTERM is timed).

Usage: bench/exec_latency.py [--changes N] [--dir BASE ...] [--mode signal|restart ...]
Default: 300 changes in each mode, on /dev/shm (tmpfs) and on /tmp (ext4 here)."""
import argparse
import json
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from publish_latency import fs_type  # noqa: E402

PROBE = r'''
import os, signal, sys, time
sigs = {signal.SIGUSR1, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
os.write(1, b"start %f\n" % time.monotonic())
while True:
    info = signal.sigwaitinfo(sigs)
    os.write(1, b"sig %d %f\n" % (info.si_signo, time.monotonic()))
    if info.si_signo == signal.SIGTERM:
        sys.exit(0)
'''


def publish(path, version):
    doc = {"format": 1, "name": "bench", "username": "app", "version": "v%d" % version,
           "password": "bench-pw-%d-%s" % (version, os.urandom(6).hex())}
    d, base = os.path.split(path)
    tmp = os.path.join(d, ".tmp-" + base)
    with open(tmp, "w") as f:
        f.write(json.dumps(doc))
    t0 = time.monotonic()
    os.rename(tmp, path)
    return t0


class Lines:
    def __init__(self, fd):
        self.fd, self.buf = fd, b""

    def next(self, timeout=10):
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise RuntimeError("no line from the probe within %ss" % timeout)
            chunk = os.read(self.fd, 4096)
            if not chunk:
                raise RuntimeError("the probe's output closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode().split()


def run(base, mode, changes):
    root = B.tempdir_on(base)
    path = os.path.join(root, "bench.json")
    probe = os.path.join(root, "probe.py")
    with open(probe, "w") as f:
        f.write(PROBE)
    publish(path, 0)
    how = ["--signal", "SIGUSR1"] if mode == "signal" else ["--restart"]
    p = subprocess.Popen([B.CLI, "--runtime-dir", root, "exec", "--credential", "bench", "--splay",
                          "0"] + how + ["--", "/usr/bin/python3", probe], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    out = Lines(p.stdout.fileno())
    lat = []
    try:
        assert out.next()[0] == "start"
        for i in range(1, changes + 1):
            t0 = publish(path, i)
            words = out.next()
            assert words[0] == "sig", words
            lat.append((float(words[2]) - t0) * 1000.0)
            if mode == "restart":
                assert out.next()[0] == "start"
    finally:
        p.terminate()
        p.wait()
        B.cleanup(root)
    return sorted(lat)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--changes", type=int, default=300)
    ap.add_argument("--dir", action="append")
    ap.add_argument("--mode", action="append", choices=("signal", "restart"))
    a = ap.parse_args()
    print("%-10s %-8s %-8s %8s %8s %8s %8s %8s" % ("dir", "fs", "mode", "changes", "p50 ms", "p90 ms",
                                                   "p99 ms", "max ms"))
    for base in a.dir or ["/dev/shm", "/tmp"]:
        for mode in a.mode or ["signal", "restart"]:
            lat = run(base, mode, a.changes)
            print("%-10s %-8s %-8s %8d %8.2f %8.2f %8.2f %8.2f" % (
                base, fs_type(base), mode, len(lat), B.percentile(lat, 50), B.percentile(lat, 90),
                B.percentile(lat, 99), lat[-1]))


if __name__ == "__main__":
    main()
