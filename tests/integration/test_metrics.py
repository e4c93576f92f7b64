"""agent.metrics_file: a Prometheus textfile, written atomically, never a secret (docs/design.md §4.1, §12.2)."""
import os
import re

import rc_harness as h


def _metrics(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _value(text, metric, name):
    m = re.search(r'^%s\{name="%s"\} (\S+)$' % (metric, name), text, re.M)
    return None if m is None else float(m.group(1))


def test_metrics_file_tracks_current_and_errors_without_secrets(sc):
    mdir = os.path.join(sc.tree.root, "metrics")
    os.mkdir(mdir, 0o755)
    mpath = os.path.join(mdir, "redis_creds.prom")
    sc.redis.create_user("app", "metric-pw-1")
    sc.store_cred("app", "metric-pw-1")
    sc.write_config(agent={"metrics_file": mpath})
    w = h.InotifyWatcher(mdir)
    sc.watchers.append(w)
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="metric-pw-1")
    h.wait_until(lambda: _value(_metrics(mpath), "redis_creds_current", "cache") == 1, 3,
                 "redis_creds_current{name=\"cache\"} 1")
    for line in _metrics(mpath).splitlines():
        assert line.startswith("#") or re.match(r'^[a-z_]+\{name="cache"\} [0-9.e+-]+$', line), line

    mark = a.log_mark()
    sc.store_cred("app", "metric-pw-2-refused")
    a.wait_log("refused", since=mark)
    h.wait_until(lambda: _value(_metrics(mpath), "redis_creds_current", "cache") == 0, 3,
                 "redis_creds_current{name=\"cache\"} 0 after a refusal")
    assert (_value(_metrics(mpath), "redis_creds_errors_total", "cache") or 0) >= 1
    text = _metrics(mpath)
    assert "metric-pw" not in text
    # written atomically: only renamed into place, never written in place
    assert not w.snapshot("redis_creds.prom", h.IN_CLOSE_WRITE | h.IN_MODIFY)
    assert w.snapshot("redis_creds.prom", h.IN_MOVED_TO)
