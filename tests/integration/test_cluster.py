"""Validation against a real OSS Redis Cluster (docs/design.md §7; issue: validation at
production depth): 3 primaries + 3 replicas formed with `redis-cli --cluster create`,
ACL users set on each node separately. Also: a node that accepts TCP and never answers.

The cluster is started once for the module; each test uses its own ACL user so tests
do not see each other's passwords.
"""
import json
import shutil
import tempfile
import time

import pytest

import cluster_helpers as ch
import rc_harness as h


@pytest.fixture(scope="module")
def cluster():
    root = tempfile.mkdtemp(prefix="rc-cl-", dir="/tmp")
    c = None
    try:
        c = ch.Cluster(root, primaries=3, replicas=1)
        yield c
    finally:
        if c:
            c.stop()
        shutil.rmtree(root, ignore_errors=True)


def cluster_cred(sc, seed, name="cache", path="cache.json", **redis_extra):
    r = {"cluster": True}
    r.update(redis_extra)
    return sc.cred(name=name, path=path, endpoints=[seed.endpoint], timeout="2s", redis_extra=r)


def status_of(sc, name="cache"):
    r = sc.run_cli("-c", sc.tree.conf, "status", "--json")
    doc = json.loads(r.stdout)
    for c in doc["credentials"]:
        if c["name"] == name:
            return c
    h.fail("no %s in status: %r" % (name, doc))


def test_cluster_publishes_only_when_every_primary_accepts_and_names_the_refusing_node(sc, cluster):
    user = "app1"
    cluster.set_user(user, "pw1")
    sc.store_cred(user, "pw1")
    sc.write_config([cluster_cred(sc, cluster.primaries[0])])
    a = sc.start_agent()
    a.wait_ready()
    doc = sc.wait_published(password="pw1", timeout=8)
    assert doc["validated"] == "all"
    nodes = status_of(sc)["nodes"]
    for p in cluster.primaries:
        assert "%s=accepted" % p.endpoint in nodes, nodes
    for r in cluster.replica_nodes:
        assert r.endpoint not in nodes, "replicas are not required by default: %s" % nodes

    # the new password reaches every node but one primary: not published, and said where
    odd = cluster.primaries[1]
    for n in cluster.nodes:
        if n is not odd:
            n.add_password(user, "pw2")
    before = sc.read_bytes()
    mark = a.log_mark()
    sc.store_cred(user, "pw2")
    line = a.wait_log("refused", since=mark, timeout=8)
    assert odd.endpoint in line, line
    status = a.notify.wait_status(lambda s: "refused" in s and odd.endpoint in s, timeout=5,
                                  what="STATUS naming the refusing node")
    assert "pw2" not in status
    st = status_of(sc)
    assert "%s=refused" % odd.endpoint in st["nodes"], st
    assert odd.endpoint in st["last_error"], st
    a.barrier()                               # the refused attempt has ended
    assert sc.read_bytes() == before, "a candidate refused by one primary was published"

    # the node is fixed: the agent's retry publishes it, no restart
    odd.add_password(user, "pw2")
    doc = sc.wait_published(password="pw2", timeout=15)
    assert doc["previous"]["password"] == "pw1"
    a.notify.wait_status(lambda s: "1/1 current" in s, timeout=5, what="STATUS current")


def test_replicas_are_required_only_with_validate_replicas(sc, cluster):
    user = "app2"
    cluster.set_user(user, "pw1", skip=cluster.replica_nodes)   # primaries only
    sc.store_cred(user, "pw1", filename="app2.json")
    seed = cluster.primaries[0]
    sc.write_config([cluster_cred(sc, seed, name="loose", path="app2.json"),
                     cluster_cred(sc, seed, name="strict", path="app2.json",
                                  validate_replicas=True)])
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(name="loose", password="pw1", timeout=8)
    a.notify.wait_status(lambda s: "strict" in s and "refused" in s, timeout=8,
                         what="STATUS: strict refused")
    assert sc.read_bytes("strict.json") is None
    st = status_of(sc, "strict")
    for r in cluster.replica_nodes:
        assert "%s=refused" % r.endpoint in st["nodes"], st

    for r in cluster.replica_nodes:
        r.set_user(user, "pw1")
    doc = sc.wait_published(name="strict", password="pw1", timeout=15)
    assert doc["validated"] == "all"
    st = status_of(sc, "strict")
    assert st["nodes"].count("=accepted") == len(cluster.nodes), st


def test_discovery_from_any_seed_and_the_next_seed_when_one_is_down(sc, cluster):
    user = "app3"
    cluster.set_user(user, "pw1")
    sc.store_cred(user, "pw1")
    dead = h.closed_port_endpoint()
    # a replica as the live seed: discovery works from any node
    sc.write_config([sc.cred(endpoints=[dead, cluster.replica_nodes[0].endpoint], timeout="2s",
                             redis_extra={"cluster": True})])
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(password="pw1", timeout=8)
    nodes = status_of(sc)["nodes"]
    assert nodes.count("=accepted") == len(cluster.primaries), nodes
    assert dead not in nodes


def test_silent_node_times_out_without_delaying_the_other_nodes(sc):
    """Three nodes accept TCP and never answer; validation asks all four at once, so the
    whole check costs one timeout (1 s), not three."""
    silent = [ch.SilentServer() for _ in range(3)]
    for s in silent:
        sc.on_close(s.close)
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    sc.write_config([sc.cred(endpoints=[s.endpoint for s in silent] + [sc.redis.endpoint],
                             timeout="1s", redis_extra={"validate": "any"})])
    t0 = time.monotonic()
    a = sc.start_agent()
    sc.wait_published(password="pw1", timeout=8)
    took = ch.elapsed(t0)
    line = a.wait_log("published")
    for s in silent:
        assert "%s=unreachable" % s.endpoint in line, line
    assert "%s=accepted" % sc.redis.endpoint in line, line
    assert 0.9 <= took < 2.8, "validation took %.2fs: the silent nodes were not asked at once" % took
    print("published after %.2fs with 3 silent nodes (timeout 1s)" % took)
