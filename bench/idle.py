#!/usr/bin/python3
"""Agent RSS and CPU while idle with many credentials (file store, real redis-server).

Starts the agent with N credentials (default 100) that all validate, waits until every
one is published, then samples /proc for a window (default 30 s): RSS (VmRSS, VmHWM),
CPU time used (utime+stime of all threads), and context switches of all threads
(wakeups). Idle means no store changes; poll_interval is 30 s so the window holds one
round of polls, as production would.

Usage: bench/idle.py [--creds N] [--seconds S] [--poll 30s] [--revalidate 5m] [--dir /dev/shm] [--smaps]
--smaps lists the mappings that hold the most RSS (heap, secure heap, stacks, libraries).
--revalidate sets redis.revalidate_interval (default: the agent's, 5m); e.g. "0s" and
"1s" with 100 credentials give the agent's CPU for 100 re-validations per second."""
import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])   # utime + stime, all threads


def ctx_switches(pid):
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def print_smaps(pid, top=16):
    """The mappings that hold the most resident memory, largest first."""
    maps, cur = [], None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            head = line.split()
            if head and re.match(r"^[0-9a-f]+-[0-9a-f]+$", head[0]):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                cur = {"name": head[5] if len(head) > 5 else "[anon]",
                       "size": (hi - lo) // 1024, "rss": 0, "locked": 0, "perm": head[1]}
                maps.append(cur)
            elif head and head[0] == "Rss:":
                cur["rss"] = int(head[1])
            elif head and head[0] == "Locked:":
                cur["locked"] = int(head[1])
    print("  mappings by RSS (kB): rss / size / locked  perm  name")
    for m in sorted(maps, key=lambda m: -m["rss"])[:top]:
        print("    %6d / %7d / %5d  %s  %s" % (m["rss"], m["size"], m["locked"], m["perm"], m["name"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--creds", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--poll", default="30s")
    ap.add_argument("--revalidate", default=None, help="redis.revalidate_interval")
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--smaps", action="store_true",
                    help="also list the mappings holding the most RSS (/proc/PID/smaps)")
    args = ap.parse_args()

    root = B.tempdir_on(args.dir)
    redis = B.Redis(root)
    agent = None
    try:
        redis.cmd("ACL", "SETUSER", "app", "on", ">idle-pw", "~*", "+@all")
        names = ["cred%03d" % i for i in range(args.creds)]
        conf = B.agent_config(root, redis.port, names, poll=args.poll,
                              redis_extra='revalidate_interval = "%s";' % args.revalidate
                              if args.revalidate else "")
        for n in names:
            B.write_atomic(os.path.join(root, "store", n), '{"username":"app","password":"idle-pw"}')
        agent = subprocess.Popen([B.AGENT, "-c", conf, "--foreground"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run_dir = os.path.join(root, "run")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(1 for f in os.listdir(run_dir) if f.endswith(".json")) == args.creds:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("not every credential was published")
        time.sleep(1.0)
        hz = os.sysconf("SC_CLK_TCK")
        t0, c0, s0 = time.monotonic(), cpu_ticks(agent.pid), ctx_switches(agent.pid)
        time.sleep(args.seconds)
        t1, c1, s1 = time.monotonic(), cpu_ticks(agent.pid), ctx_switches(agent.pid)
        st = proc_status(agent.pid)
        libs = sorted({l.split()[-1] for l in open("/proc/%d/maps" % agent.pid) if ".so" in l})
        win = t1 - t0
        print("idle agent: %d credentials (file store), poll_interval %s, revalidate_interval %s, "
              "window %.1f s" % (args.creds, args.poll, args.revalidate or "5m (default)", win))
        print("  runtime_dir on   %s (%s)" % (args.dir, B.filesystem_of(root)))
        print("  VmRSS            %s   (target: <= 12,000 kB at 1,000 credentials)" % st["VmRSS"])
        print("  VmHWM            %s" % st["VmHWM"])
        print("  RssAnon          %s   (the agent's own memory)" % st["RssAnon"])
        print("  RssFile          %s   (mapped code of the binary and %d shared objects)" % (st["RssFile"], len(libs)))
        print("  threads          %s" % st["Threads"])
        print("  CPU              %.3f%% (%.2f s of CPU in %.1f s)" % (
            100.0 * (c1 - c0) / hz / win, (c1 - c0) / hz, win))
        print("  context switches %d (%.2f/s, all threads; each poll round is %d checks)" % (
            s1 - s0, (s1 - s0) / win, args.creds))
        if args.smaps:
            print_smaps(agent.pid)
    finally:
        B.teardown(agent, redis, root)


if __name__ == "__main__":
    main()
