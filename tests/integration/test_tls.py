"""Validation over TLS against a real redis-server (docs/design.md §4.2 TLS vocabulary, §7): a CA and
a server certificate made here with openssl (SAN 127.0.0.1 and localhost), the wrong CA,
the wrong server_name, mutual TLS, and TLS spoken to a plaintext port.

A certificate problem must be reported as one (unreachable, "certificate verify
failed"), never as a refused password, and no password is sent before the certificate
has been verified.
"""
import json
import os
import shutil
import tempfile

import pytest

import cluster_helpers as ch
import rc_harness as h

USERS = ("app on >pw1 ~* &* +@all",)


@pytest.fixture(scope="module")
def certs():
    root = tempfile.mkdtemp(prefix="rc-tls-", dir="/tmp")
    try:
        yield ch.Certs(os.path.join(root, "pki"))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _node(certs, **kw):
    root = tempfile.mkdtemp(prefix="rc-tlsn-", dir="/tmp")
    n = ch.Node(os.path.join(root, "n"), tls=certs, users=USERS, **kw).start()
    try:
        n.wait_up()
    except BaseException:
        n.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return n, root


@pytest.fixture(scope="module")
def tls_node(certs):
    n, root = _node(certs)
    yield n
    n.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def mtls_node(certs):
    n, root = _node(certs, tls_auth_clients=True)
    yield n
    n.stop()
    shutil.rmtree(root, ignore_errors=True)


def tls_cred(sc, endpoint, name="cache", path="cache.json", **tls):
    r = {"tls": True}
    r.update(tls)
    return sc.cred(name=name, path=path, endpoints=[endpoint], timeout="2s", redis_extra=r)


def status_of(sc, name="cache"):
    doc = json.loads(sc.run_cli("-c", sc.tree.conf, "status", "--json").stdout)
    return next(c for c in doc["credentials"] if c["name"] == name)


def test_tls_validation_succeeds_by_ip_and_by_name(sc, certs, tls_node):
    sc.store_cred("app", "pw1")
    sc.write_config([
        tls_cred(sc, tls_node.endpoint, name="byip", ca_file=certs.ca),
        tls_cred(sc, "localhost:%d" % tls_node.port, name="byname", ca_file=certs.ca),
    ])
    a = sc.start_agent()
    a.wait_ready()
    for name in ("byip", "byname"):
        doc = sc.wait_published(name=name, password="pw1", timeout=5)
        assert doc["validated"] == "all"
    assert "localhost:%d=accepted" % tls_node.port in status_of(sc, "byname")["nodes"]


def test_wrong_ca_is_a_certificate_error_not_a_refused_password(sc, certs, tls_node):
    sc.store_cred("app", "pw1")
    sc.write_config([tls_cred(sc, tls_node.endpoint, ca_file=certs.other_ca)])
    a = sc.start_agent()
    a.wait_ready()
    status = a.notify.wait_status(lambda s: "0/1" in s and "certificate" in s, timeout=5,
                                  what="STATUS with the certificate problem")
    assert "refused" not in status, status
    assert "unreachable" in status, status
    st = status_of(sc)
    assert "%s=certificate-error" % tls_node.endpoint in st["nodes"], st
    assert "certificate verify failed" in st["last_error"], st
    assert "pw1" not in st["last_error"]
    assert sc.read_bytes() is None


def test_wrong_server_name_is_a_name_mismatch(sc, certs, tls_node):
    sc.store_cred("app", "pw1")
    sc.write_config([tls_cred(sc, tls_node.endpoint, ca_file=certs.ca,
                              server_name="redis.example.net")])
    a = sc.start_agent()
    a.wait_ready()
    a.notify.wait_status(lambda s: "0/1" in s and "certificate" in s, timeout=5,
                         what="STATUS with the certificate problem")
    st = status_of(sc)
    assert "not for redis.example.net" in st["last_error"], st
    assert "name mismatch" in st["last_error"], st
    assert "refused" not in st["last_error"]
    assert sc.read_bytes() is None

    # server_name set to a name the certificate carries: accepted, whatever the endpoint
    sc.write_config([tls_cred(sc, tls_node.endpoint, ca_file=certs.ca, server_name="localhost")])
    mark = a.notify.mark()
    a.send(1)   # SIGHUP
    a.wait_notify("READY", "1", since=mark, timeout=5)
    sc.wait_published(password="pw1", timeout=8)


def test_mutual_tls_needs_and_uses_the_client_certificate(sc, certs, mtls_node):
    sc.store_cred("app", "pw1")
    sc.write_config([
        tls_cred(sc, mtls_node.endpoint, name="nocert", ca_file=certs.ca),
        tls_cred(sc, mtls_node.endpoint, name="mtls", ca_file=certs.ca,
                 cert_file=certs.client, key_file=certs.client_key),
    ])
    a = sc.start_agent()
    a.wait_ready()
    doc = sc.wait_published(name="mtls", password="pw1", timeout=5)
    assert doc["validated"] == "all"
    a.notify.wait_status(lambda s: "nocert" in s and "unreachable" in s, timeout=5,
                         what="STATUS: nocert unreachable")
    assert sc.read_bytes("nocert.json") is None
    st = status_of(sc, "nocert")
    assert "refused" not in st["last_error"], st
    # A TLS error, though TLS 1.3 finishes our side of the handshake before the server
    # judges our (missing) certificate: its alert comes with AUTH's reply.
    assert "%s=tls-error" % mtls_node.endpoint in st["nodes"], st
    # The alert's words, when it arrives before the server closes; on a loaded machine
    # the reset can come first, and then the message says what to check.
    assert ("certificate required" in st["last_error"] or
            "client certificate" in st["last_error"]), st


def test_tls_to_a_plaintext_port_says_so(sc, certs):
    # A plaintext Redis reads the ClientHello as the start of an inline command and waits
    # for its end: the handshake times out, and the message says what to check.
    sc.redis.create_user("app", "pw1")
    sc.store_cred("app", "pw1")
    c = tls_cred(sc, sc.redis.endpoint, ca_file=certs.ca)
    c["redis"]["timeout"] = "500ms"
    sc.write_config([c])
    a = sc.start_agent()
    a.wait_ready()
    a.notify.wait_status(lambda s: "0/1" in s, timeout=5, what="STATUS 0/1")
    st = status_of(sc)
    assert "%s=unreachable" % sc.redis.endpoint in st["nodes"], st
    assert "TLS handshake timed out after 500 ms" in st["last_error"], st
    assert "is this a TLS port?" in st["last_error"], st
    assert sc.read_bytes() is None


def test_bad_tls_files_are_reported_with_their_name(sc, certs, tls_node):
    """A CA file that is there but holds no certificate fails at run time, by name. (A
    missing one is a configuration error: test_check_config.py.)"""
    sc.store_cred("app", "pw1")
    garbage = os.path.join(sc.tree.root, "garbage-ca.pem")
    with open(garbage, "w") as f:
        f.write("not a certificate\n")
    sc.write_config([tls_cred(sc, tls_node.endpoint, ca_file=garbage)])
    a = sc.start_agent()
    a.wait_ready()
    a.notify.wait_status(lambda s: "0/1" in s, timeout=5, what="STATUS 0/1")
    assert garbage in status_of(sc)["last_error"]


def test_insecure_skip_verify_is_warned_at_every_start_and_reload(sc, certs, tls_node):
    sc.store_cred("app", "pw1")
    sc.write_config([tls_cred(sc, tls_node.endpoint, tls_insecure_skip_verify=True),
                     sc.cred(name="plain", path="cache.json",
                             redis_extra={"ca_file": certs.ca})])
    a = sc.start_agent()
    a.wait_ready()
    # Verification off still talks TLS and validates; the operator is told at start...
    sc.wait_published(password="pw1", timeout=5)
    a.wait_log("tls_insecure_skip_verify = true", what="insecure TLS warning at start")
    a.wait_log("set but tls = false", what="TLS keys without tls warning at start")
    # ...and again at each reload.
    mark = a.log_mark()
    a.send(1)   # SIGHUP
    a.wait_log("tls_insecure_skip_verify = true", since=mark, what="insecure TLS warning at reload")


def test_cluster_discovery_on_a_mutual_tls_seed_without_our_certificate_is_a_tls_error(
        sc, certs, mtls_node):
    """Discovery's login is the first exchange after the handshake, as AUTH is for a
    plain check: a server that wants a client certificate makes the seed a tls-error."""
    sc.store_cred("app", "pw1")
    c = tls_cred(sc, mtls_node.endpoint, ca_file=certs.ca)
    c["redis"]["cluster"] = True
    sc.write_config([c])
    a = sc.start_agent()
    a.wait_ready()
    a.notify.wait_status(lambda s: "0/1" in s, timeout=5, what="STATUS 0/1")
    st = status_of(sc)
    assert "%s=tls-error" % mtls_node.endpoint in st["nodes"], st
    assert "refused" not in st["last_error"], st
    assert ("certificate required" in st["last_error"] or
            "client certificate" in st["last_error"]), st
    assert sc.read_bytes() is None
