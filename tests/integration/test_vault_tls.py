"""The vault source's TLS vocabulary (docs/design.md §4.2) against the fake Vault over HTTPS:
server_name, ca_file, a client certificate, and what tls_insecure_skip_verify does."""
import os

from vault_helpers import PW1, VaultScenario, make_ca, make_client_cert  # noqa: F401


def _fake(sc, vs, pki, **kw):
    from vault_fake import FakeVault
    fv = FakeVault(tls_cert=pki["cert"], tls_key=pki["key"], root_token=vs.fake.root_token, **kw).start()
    sc.on_close(fv.stop)
    fv.kv2_put("secret", "redis/cache", {"username": "app", "password": PW1})
    return fv


def _plain(sc):
    vs = VaultScenario(sc)          # for its config builders; its own fake stays unused
    sc.redis.create_user("app", PW1)
    return vs


def test_server_name_is_what_the_certificate_must_name(sc):
    vs = _plain(sc)
    pki = make_ca(os.path.join(sc.tree.root, "pki"), names=("vault.internal.test",), ips=())
    fv = _fake(sc, vs, pki)
    creds = [vs.cred("named"), vs.cred("unnamed", source="bare")]
    srcs = [vs.source("vault", address=fv.url, ca_file=pki["ca"], server_name="vault.internal.test"),
            vs.source("bare", address=fv.url, ca_file=pki["ca"])]
    a = vs.start(credentials=creds, sources=srcs)
    assert sc.wait_published("named", password=PW1)
    st = a.notify.wait_status(lambda s: "unnamed" in s and "store-error" in s, timeout=5)
    assert "(transient)" in st, st
    assert sc.read_bytes("unnamed.json") is None


def test_client_certificate_and_insecure_skip_verify(sc):
    vs = _plain(sc)
    pki = make_ca(os.path.join(sc.tree.root, "pki"))
    client = make_client_cert(os.path.join(sc.tree.root, "pki"))
    fv = _fake(sc, vs, pki, tls_client_ca=pki["ca"])
    creds = [vs.cred("withcert"), vs.cred("nocert", source="nocert"), vs.cred("insecure", source="insecure")]
    srcs = [vs.source("vault", address=fv.url, ca_file=pki["ca"], cert_file=client["cert"], key_file=client["key"]),
            vs.source("nocert", address=fv.url, ca_file=pki["ca"]),
            # no CA at all: only skipping verification lets this one through
            vs.source("insecure", address=fv.url, tls_insecure_skip_verify=True, cert_file=client["cert"],
                      key_file=client["key"])]
    for s in srcs[2:]:
        s.pop("ca_file", None)
    a = vs.start(credentials=creds, sources=srcs)
    sc.wait_published("withcert", password=PW1)
    sc.wait_published("insecure", password=PW1)
    st = a.notify.wait_status(lambda s: "nocert" in s and "store-error" in s, timeout=5)
    assert sc.read_bytes("nocert.json") is None, st
    assert "insecure: tls_insecure_skip_verify is on" in a.log()
    assert fv.stats()["handshakes"] == 2
