"""Validation against a TLS Redis Cluster (`tls-cluster yes`, plaintext ports off): the
nodes are discovered over TLS, reached on the TLS ports they advertise, and their
certificates are checked against the seed's host name or `server_name`, never against
the address a node advertises.

The node certificates here carry only DNS:localhost, while the nodes advertise
127.0.0.1: validation succeeds only because discovered nodes are verified against the
configured name.
"""
import json
import os
import shutil
import signal
import tempfile

import pytest

import cluster_helpers as ch


@pytest.fixture(scope="module")
def tls_cluster():
    root = tempfile.mkdtemp(prefix="rc-tcl-", dir="/tmp")
    c = None
    try:
        certs = ch.Certs(os.path.join(root, "pki"), san="DNS:localhost")
        c = ch.Cluster(root, primaries=3, replicas=0, tls=certs)
        c.certs = certs
        yield c
    finally:
        if c:
            c.stop()
        shutil.rmtree(root, ignore_errors=True)


def status_of(sc, name="cache"):
    doc = json.loads(sc.run_cli("-c", sc.tree.conf, "status", "--json").stdout)
    return next(c for c in doc["credentials"] if c["name"] == name)


def test_tls_cluster_validates_every_primary_on_its_tls_port(sc, tls_cluster):
    tls_cluster.set_user("app", "pw1")
    sc.store_cred("app", "pw1")
    seed = tls_cluster.nodes[0]
    sc.write_config([sc.cred(endpoints=["localhost:%d" % seed.port], timeout="2s",
                             redis_extra={"cluster": True, "tls": True,
                                          "ca_file": tls_cluster.certs.ca})])
    a = sc.start_agent()
    a.wait_ready()
    doc = sc.wait_published(password="pw1", timeout=8)
    assert doc["validated"] == "all"
    nodes = status_of(sc)["nodes"]
    for n in tls_cluster.primaries:
        # the TLS port each node advertises (plaintext ports are off)
        assert "127.0.0.1:%d=accepted" % n.port in nodes, nodes
    assert nodes.count("=accepted") == len(tls_cluster.primaries)


def test_tls_cluster_with_a_wrong_server_name_sends_no_password(sc, tls_cluster):
    tls_cluster.set_user("app2", "pw1")
    sc.store_cred("app2", "pw1")
    seed = tls_cluster.nodes[0]
    sc.write_config([sc.cred(endpoints=[seed.endpoint], timeout="2s",
                             redis_extra={"cluster": True, "tls": True,
                                          "ca_file": tls_cluster.certs.ca,
                                          "server_name": "redis.example.net"})])
    a = sc.start_agent()
    a.wait_ready()
    a.notify.wait_status(lambda s: "0/1" in s and "certificate" in s, timeout=5,
                         what="STATUS with the certificate problem")
    st = status_of(sc)
    assert "%s=certificate-error" % seed.endpoint in st["nodes"], st
    assert "refused" not in st["last_error"], st
    assert sc.read_bytes() is None


def test_tls_cluster_seed_by_address_needs_server_name(sc, tls_cluster):
    """The certificates carry no IP SAN: a seed given as 127.0.0.1 fails verification,
    and server_name = "localhost" fixes it for the seed and every discovered node."""
    tls_cluster.set_user("app3", "pw1")
    sc.store_cred("app3", "pw1")
    seed = tls_cluster.nodes[1]
    base = {"cluster": True, "tls": True, "ca_file": tls_cluster.certs.ca}
    sc.write_config([sc.cred(name="byaddr", path="cache.json", endpoints=[seed.endpoint],
                             timeout="2s", redis_extra=dict(base)),
                     sc.cred(name="named", path="cache.json", endpoints=[seed.endpoint],
                             timeout="2s", redis_extra=dict(base, server_name="localhost"))])
    a = sc.start_agent()
    a.wait_ready()
    sc.wait_published(name="named", password="pw1", timeout=8)
    st = status_of(sc, "byaddr")
    assert not st["current"]
    assert "certificate" in st["last_error"], st
    assert sc.read_bytes("byaddr.json") is None


@pytest.fixture(scope="module")
def plain_bus_cluster():
    """Nodes with a plaintext and a TLS port each, clustered without tls-cluster: what
    CLUSTER SHARDS lists are the plaintext ports only."""
    root = tempfile.mkdtemp(prefix="rc-pcl-", dir="/tmp")
    c = None
    try:
        certs = ch.Certs(os.path.join(root, "pki"))
        c = ch.Cluster(root, primaries=3, replicas=0, tls=certs, tls_too=True)
        c.certs = certs
        yield c
    finally:
        if c:
            c.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_tls_to_a_cluster_that_advertises_no_tls_ports_says_so(sc, plain_bus_cluster):
    """tls = true, the seed's TLS port answers, but the cluster lists only plaintext ports:
    no TLS handshake is tried on a plaintext port (and no password goes over plain TCP);
    each node is a tls-error that names tls-cluster."""
    c = plain_bus_cluster
    c.set_user("app", "pw1")
    sc.store_cred("app", "pw1")
    seed = c.nodes[0]
    sc.write_config([sc.cred(endpoints=["127.0.0.1:%d" % seed.tls_port], timeout="2s",
                             redis_extra={"cluster": True, "tls": True,
                                          "ca_file": c.certs.ca})])
    a = sc.start_agent()
    a.wait_ready()
    a.notify.wait_status(lambda s: "0/1" in s, timeout=5, what="STATUS 0/1")
    st = status_of(sc)
    for n in c.primaries:
        assert "127.0.0.1:%d=tls-error" % n.port in st["nodes"], st
    assert "tls-cluster yes" in st["last_error"], st
    assert "refused" not in st["last_error"], st
    assert sc.read_bytes() is None
    # the same nodes over plain TCP: discovered and validated on the ports listed
    sc.write_config([sc.cred(endpoints=[seed.endpoint], timeout="2s",
                             redis_extra={"cluster": True})])
    a.send(signal.SIGHUP)
    doc = sc.wait_published(password="pw1", timeout=8)
    assert doc["validated"] == "all"
