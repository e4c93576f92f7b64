"""`redis-creds status` shows what is true now (issue 14, item 6): a rotation error goes once
a later rotation completed, and a failed step says why without a meaningless node count
when it never reached a node (no password in the admin password file)."""
import os

import rc_harness as h
from test_rotation import admin_file, cred_status, start_rotating


def test_unreadable_admin_password_names_the_file_not_zero_of_zero_nodes(sc):
    a, first = start_rotating(sc, "clear-pw-1")
    path = admin_file(sc)
    open(path, "w").close()   # the agent checked it at load; now it holds no password
    mark = a.log_mark()
    r = sc.run_cli("-c", sc.tree.conf, "rotate", "cache")
    assert r.returncode == 0, (r.stdout, r.stderr)
    line = a.wait_log(lambda l: "rotation of cache failed" in l, since=mark, timeout=8)
    assert "0/0" not in line, line
    assert "admin-pw" in line, line   # names the file that could not be read
    st = cred_status(sc)
    assert st["current"] and st["rotation"]["last_error"], st
    assert "0/0" not in st["rotation"]["last_error"]
    assert sc.read_doc()["version"] == first["version"]
    assert sc.redis.auth_ok("app", "clear-pw-1")

    # the file is back: the next rotation completes, and status forgets the old error
    admin_file(sc)
    mark = a.log_mark()
    assert sc.run_cli("-c", sc.tree.conf, "rotate", "cache").returncode == 0
    a.wait_log(lambda l: "rotation of cache completed" in l, since=mark, timeout=15)
    st = cred_status(sc)
    assert st["rotation"]["last_error"] is None, st
    assert not (st.get("last_error") or "").startswith("rotation"), st
    text = sc.run_cli("-c", sc.tree.conf, "status").stdout
    assert "admin-pw" not in text and "failed" not in text, text
    h.wait_until(lambda: sc.read_doc()["version"] != first["version"], 5, "new version published")


def test_a_node_error_goes_once_the_node_accepts(sc):
    """validate = "any": published while one node was down; once that node is up and
    accepts, the next re-validation's node list replaces the error in status."""
    r2 = sc.another_redis()
    r2.create_user("app", "node-pw-1")
    r2.stop()
    c = sc.cred(endpoints=[sc.redis.endpoint, r2.endpoint],
                redis_extra={"validate": "any", "revalidate_interval": "1s"})
    sc.start_published("node-pw-1", credentials=[c])
    row = cred_status(sc)
    assert row["state"] == "current", row
    assert "%s=accepted" % sc.redis.endpoint in row["nodes"], row
    assert "%s=accepted" % r2.endpoint not in row["nodes"], row   # down: an error is shown
    r2.start()
    r2.create_user("app", "node-pw-1")

    def both_accepted():
        n = cred_status(sc)["nodes"] or ""
        return all("%s=accepted" % e in n for e in (sc.redis.endpoint, r2.endpoint))
    h.wait_until(both_accepted, 10, "both nodes accepted in status")
    text = sc.run_cli("-c", sc.tree.conf, "status").stdout
    assert "unreachable" not in text, text
