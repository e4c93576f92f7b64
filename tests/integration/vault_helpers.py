"""Pieces for the vault source's integration tests: the fake Vault (tests/fakes/vault_fake.py)
in-process, a test CA made with the openssl CLI, and config builders for `vault` sources.

Fixtures (import them into a test module to use them):
  vault     - a Scenario (rc_harness) with a running redis-server, a plain-http FakeVault on
              a free loopback port (sc.fake) and helpers (see VaultScenario)
  vault_tls - the same over HTTPS with a test CA (vs.ca is the CA file)
"""
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakes"))
import rc_harness as h  # noqa: E402,F401
from vault_fake import FakeVault  # noqa: E402

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def make_ca(directory, names=("localhost",), ips=("127.0.0.1",)):
    """A CA and a server certificate for names/ips, made with the openssl CLI.
    Returns {"ca", "cert", "key"} paths."""
    os.makedirs(directory, exist_ok=True)
    p = lambda n: os.path.join(directory, n)  # noqa: E731
    run = lambda *a: subprocess.run([OPENSSL] + list(a), check=True, capture_output=True, timeout=30)  # noqa: E731
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=redis-creds test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=%s" % names[0])
    san = ",".join(["DNS:%s" % n for n in names] + ["IP:%s" % i for i in ips])
    with open(p("ext.cnf"), "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" % san)
    run("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-out", p("server.pem"), "-days", "2", "-extfile", p("ext.cnf"))
    return {"ca": p("ca.pem"), "cert": p("server.pem"), "key": p("server.key")}


def make_client_cert(directory, cn="redis-creds"):
    """A client certificate signed by the CA of make_ca(directory). Returns {"cert", "key"}."""
    p = lambda n: os.path.join(directory, n)  # noqa: E731
    run = lambda *a: subprocess.run([OPENSSL] + list(a), check=True, capture_output=True, timeout=30)  # noqa: E731
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", p("client.key"), "-out", p("client.csr"), "-subj", "/CN=%s" % cn)
    with open(p("client.cnf"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    run("x509", "-req", "-in", p("client.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-out", p("client.pem"), "-days", "2", "-extfile", p("client.cnf"))
    os.chmod(p("client.key"), 0o600)
    return {"cert": p("client.pem"), "key": p("client.key")}


def write_secret_file(path, content, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    os.chmod(path, mode)
    return path


class VaultScenario:
    """Wraps a Scenario: vs.sc (the Scenario), vs.fake (the FakeVault), vs.dir (a 0700
    directory for bootstrap files)."""

    def __init__(self, sc, tls=False, tick=5.0):
        self.sc = sc
        self.dir = os.path.join(sc.tree.root, "vault")
        os.mkdir(self.dir, 0o700)
        self.ca = None
        self.tls_files = None
        kw = {}
        if tls:
            c = make_ca(os.path.join(sc.tree.root, "pki"))
            self.ca = c["ca"]
            self.tls_files = c
            kw = {"tls_cert": c["cert"], "tls_key": c["key"]}
        self.fake = FakeVault(tick=tick, **kw).start()
        sc.on_close(self.fake.stop)

    def another_fake(self, **kw):
        """A second fake Vault (same TLS certificate and root token), stopped at teardown."""
        if self.tls_files:
            kw.setdefault("tls_cert", self.tls_files["cert"])
            kw.setdefault("tls_key", self.tls_files["key"])
        fv = FakeVault(root_token=self.fake.root_token, **kw).start()
        self.sc.on_close(fv.stop)
        return fv

    def status(self):
        """`redis-creds status --json` as a dict name -> credential row."""
        r = self.sc.run_cli("-c", self.sc.tree.conf, "status", "--json")
        import json
        return {c["name"]: c for c in json.loads(r.stdout)["credentials"]}

    # --- bootstrap material
    def token_file(self, token, name="token"):
        return write_secret_file(os.path.join(self.dir, name), token + "\n")

    def approle(self, role="redis-creds", policies=("redis-read",), token_ttl=60, token_max_ttl=0, **kw):
        """An AppRole with a secret id; returns the auth group for the config."""
        self.fake.approle_enable()
        role_id = self.fake.approle_role(role, policies=policies, token_ttl=token_ttl, token_max_ttl=token_max_ttl, **kw)
        secret_id = self.fake.approle_secret_id(role)
        self.role_id, self.secret_id = role_id, secret_id
        return {"method": "approle",
                "role_id_file": write_secret_file(os.path.join(self.dir, "role-id"), role_id + "\n"),
                "secret_id_file": write_secret_file(os.path.join(self.dir, "secret-id"), secret_id + "\n")}

    def kubernetes(self, role="redis-creds", policies=("redis-read",), token_ttl=60, token_max_ttl=0,
                   service_account="app", namespace="default"):
        self.fake.kubernetes_enable()
        self.fake.kubernetes_role(role, [service_account], [namespace], policies=policies, token_ttl=token_ttl,
                                  token_max_ttl=token_max_ttl)
        self.jwt = self.fake.kubernetes_jwt(service_account, namespace)
        # kubelet's projected token: mode 0644 behind a ..data symlink
        real = os.path.join(self.dir, "..data")
        os.mkdir(real, 0o755)
        write_secret_file(os.path.join(real, "token"), self.jwt, mode=0o644)
        link = os.path.join(self.dir, "sa-token")
        os.symlink(os.path.join(real, "token"), link)
        return {"method": "kubernetes", "role": role, "jwt_file": link}

    def read_policy(self, name="redis-read", paths=("secret/data/*", "secret/metadata/*")):
        self.fake.policy(name, {p: ["read"] for p in paths})

    # --- config
    def source(self, name="vault", auth=None, **extra):
        s = {"name": name, "type": "vault", "address": self.fake.url, "timeout": "2s",
             "auth": auth or {"method": "token", "token_file": self.token_file(self.fake.root_token)}}
        if self.ca:
            s["ca_file"] = self.ca
        s.update(extra)
        return s

    def cred(self, name="cache", path="secret/redis/cache", poll_interval="30s", source="vault", **extra):
        c = {"name": name, "source": source, "path": path, "poll_interval": poll_interval,
             "redis": {"endpoints": [self.sc.redis.endpoint], "timeout": "1s"}}
        c.update(extra)
        return c

    def write_config(self, credentials=None, sources=None, agent=None):
        return self.sc.write_config(credentials if credentials is not None else [self.cred()],
                                    sources or [self.source()], agent)

    def start(self, credentials=None, sources=None, agent=None, **kw):
        self.write_config(credentials, sources, agent)
        a = self.sc.start_agent(**kw)
        a.wait_ready(timeout=15)
        return a

    def outputs(self, agent):
        """Everything the agent said: log, notify messages."""
        return agent.log() + "\n" + "\n".join(m.raw for m in agent.notify.snapshot())


PW1, PW2, PW3 = "pw-one-1f2e3d9a", "pw-two-4c5b6a7e", "pw-three-9d8c7b6a"


def _make(sc, tls):
    """A VaultScenario whose Redis knows user app with PW1 and PW2 (not PW3)."""
    vs = VaultScenario(sc, tls=tls)
    sc.redis.create_user("app", PW1, PW2)
    return vs


@pytest.fixture
def vault(sc):
    return _make(sc, False)


@pytest.fixture
def vault_tls(sc):
    return _make(sc, True)
