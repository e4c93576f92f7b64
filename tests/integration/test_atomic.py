"""Atomic publication as a consumer sees it (docs/design.md §5.2): inotify IN_MOVED_TO on the final
name, never a partial file, temporary names starting with '.'."""
import json
import os
import threading
import time

import rc_harness as h


def test_inotify_consumer_sees_one_moved_to_per_publish_and_reads_whole_files(sc):
    sc.redis.create_user("app", "pw-a", "pw-b")
    sc.store_cred("app", "pw-a")
    sc.write_config()
    reads = []

    def consumer(ev):
        if ev.name == "cache.json" and ev.mask & h.IN_MOVED_TO:
            with open(os.path.join(sc.tree.runtime, "cache.json"), "rb") as f:
                reads.append(json.loads(f.read()))   # raises (recorded) on a partial file

    w = sc.watch_runtime(on_event=consumer)
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw-a")
    n = 10
    for i in range(n):
        pw = "pw-b" if i % 2 == 0 else "pw-a"
        sc.store_cred("app", pw)
        sc.wait_published(password=pw)
        h.wait_until(lambda: w.count("cache.json", h.IN_MOVED_TO) >= i + 2, 2,
                     "IN_MOVED_TO for publish %d" % (i + 2))
    h.wait_until(lambda: len(reads) + len(w.errors) >= n + 1, 5, "the consumer's last read")
    assert not w.errors, "consumer failed to read a published file: %r" % w.errors[:5]
    assert w.count("cache.json", h.IN_MOVED_TO) == n + 1
    assert len(reads) == n + 1
    # the final name is only ever renamed onto, never written in place or created
    bad = w.snapshot("cache.json", h.IN_CREATE | h.IN_CLOSE_WRITE | h.IN_MODIFY)
    assert not bad, "cache.json written in place: %r" % bad[:5]
    others = {e.name for e in w.snapshot(mask=h.IN_CREATE)}
    assert all(name.startswith(".") for name in others), \
        "temporary files must start with '.': %r" % sorted(others)
    left = [f for f in os.listdir(sc.tree.runtime) if f.startswith(".tmp-")]
    assert not left, "temporary files left behind: %r" % left


def test_reader_never_sees_a_torn_file_across_200_republishes(sc):
    pa, pb = "alpha-" + "a" * 40, "beta-" + "b" * 40
    sc.redis.create_user("app", pa, pb)
    sc.store_cred("app", pa)
    sc.write_config()
    w = sc.watch_runtime()
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password=pa)

    stop = threading.Event()
    stats = {"reads": 0, "torn": [], "missing": 0, "transitions": 0, "versions": set(),
             "mixed": []}

    def reader():
        path = os.path.join(sc.tree.runtime, "cache.json")
        last = None
        while not stop.is_set():
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                stats["missing"] += 1
                continue
            try:
                d = json.loads(data)
            except ValueError:
                stats["torn"].append(data[:200])
                continue
            stats["reads"] += 1
            stats["versions"].add(d["version"])
            prev = d.get("previous")
            if prev is not None and {d["password"], prev["password"]} != {pa, pb}:
                stats["mixed"].append((d["password"], prev["password"]))
            if last is not None and d["password"] != last:
                stats["transitions"] += 1
            last = d["password"]

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    n = 200
    t0 = time.monotonic()
    try:
        for i in range(n):
            pw = pb if i % 2 == 0 else pa
            sc.store_cred("app", pw)
            sc.wait_published(password=pw, timeout=5)
    finally:
        stop.set()
        t.join(5)
    took = time.monotonic() - t0
    print("%d republishes in %.2fs; reader: %d reads, %d transitions"
          % (n, took, stats["reads"], stats["transitions"]))
    assert not stats["torn"], "reader parsed a torn file: %r" % stats["torn"][:3]
    assert stats["missing"] == 0, "cache.json missing %d times during republish" % stats["missing"]
    assert not stats["mixed"], "password/previous mixed up: %r" % stats["mixed"][:3]
    assert len(stats["versions"]) >= 2
    assert stats["transitions"] >= n // 4, "reader saw only %d of %d republishes" % (stats["transitions"], n)
    assert w.count("cache.json", h.IN_MOVED_TO) >= n + 1
    assert not [f for f in os.listdir(sc.tree.runtime) if f.startswith(".tmp-")]
