"""Helpers for the Azure integration tests: an AzureFake (tests/fakes/azure_fake.py) on
loopback next to the Scenario's redis-server, config pieces for the three azure-* source
types, a Redis that follows the fake's Entra tokens and access keys like Azure's caches
do, and the check that no token, key or secret value shows in anything the agent says.
"""
import json
import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fakes"))

import rc_harness as h  # noqa: E402
from azure_fake import AzureFake, make_jwt, make_test_ca, FEDERATED_AUDIENCE  # noqa: E402,F401

# The environment variables the plugin reads; blanked for the agent unless a test sets
# them, so the machine running the tests cannot change what is tested.
AZURE_ENV = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
             "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IMDS_ENDPOINT")

PW0, PW1, PW2, PW3 = "kv-pw-zero-5e1c", "kv-pw-one-8a2f", "kv-pw-two-3b9d", "kv-pw-three-7c4e"


def write_file(path, content, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    os.chmod(path, mode)
    return path


class AzureScenario:
    """Wraps a Scenario: az.sc, az.fake (AzureFake), az.dir (0700, for bootstrap files)."""

    def __init__(self, sc, lifetime=3600, tls=False):
        self.sc = sc
        self.dir = os.path.join(sc.tree.root, "azure")
        os.mkdir(self.dir, 0o700)
        self.ca = None
        certs = None
        if tls:
            self.ca, cert, key = make_test_ca(os.path.join(sc.tree.root, "pki"))
            certs = (cert, key)
        self.fake = AzureFake(token_lifetime=lifetime, tls=certs).start()
        sc.on_close(self.fake.close)

    # --- config pieces
    def identity(self, type="managed", **kw):
        i = {"type": type}
        if type == "managed" and "imds_url" not in kw and not kw.pop("app_service", False):
            i["imds_url"] = self.fake.url
        if type in ("workload", "client_secret"):
            i.setdefault("tenant_id", self.fake.tenant)
            i.setdefault("authority_host", self.fake.url)
        i.update(kw)
        return i

    def kv_source(self, name="kv", identity=None, https=False, **extra):
        s = {"name": name, "type": "azure-keyvault",
             "vault_url": self.fake.https_url if https else self.fake.url,
             "identity": identity or self.identity(), "timeout": "2s"}
        if https:
            s["ca_file"] = self.ca
        s.update(extra)
        return s

    def entra_source(self, name="entra", identity=None, **extra):
        s = {"name": name, "type": "azure-entra", "identity": identity or self.identity(), "timeout": "2s"}
        s.update(extra)
        return s

    def keys_source(self, name="keys", identity=None, **extra):
        s = {"name": name, "type": "azure-redis-keys", "management_url": self.fake.url,
             "identity": identity or self.identity(), "timeout": "2s"}
        s.update(extra)
        return s

    def cred(self, name="cache", source="kv", path=None, poll_interval="1s", **extra):
        c = {"name": name, "source": source, "poll_interval": poll_interval,
             "redis": {"endpoints": [self.sc.redis.endpoint], "timeout": "1s"}}
        if path is not None:
            c["path"] = path
        c.update(extra)
        return c

    def start(self, credentials, sources, agent=None, env=None, ready=True, **kw):
        self.sc.write_config(credentials, sources, agent)
        e = {k: "" for k in AZURE_ENV}
        e.update(env or {})
        a = self.sc.start_agent(env=e, **kw)
        if ready:
            a.wait_ready(timeout=15)
        return a

    # --- Redis that behaves like an Azure cache
    def follow_entra_tokens(self):
        """Each token the fake issues for Redis becomes a password of the ACL user named by
        its oid, before the token is handed out; expired ones are removed (Azure refuses
        an expired token)."""
        live = {}

        def on_token(token, claims):
            if claims["aud"] != "https://redis.azure.com":
                return
            oid = claims["oid"]
            rules = [">" + token]
            now = time.time()
            for t, c in list(live.items()):
                if c["exp"] <= now:
                    rules.append("<" + t)
                    del live[t]
            live[token] = claims
            if len([c for c in live.values() if c["oid"] == oid]) == 1 and len(rules) == 1:
                self.sc.redis.acl_setuser(oid, "reset", "on", *rules, "~*", "&*", "+@all")
            else:
                self.sc.redis.acl_setuser(oid, *rules)
        self.fake.on_token.append(on_token)

    def redis_accepts_keys(self, *keys):
        """The default user's passwords become exactly `keys`."""
        self.sc.redis.acl_setuser("default", "on", "resetpass", *[">" + k for k in keys])

    # --- checks
    def outputs(self, agent):
        return agent.log() + "\n" + "\n".join(m.raw for m in agent.notify.snapshot())

    def assert_no_secrets(self, *texts):
        """No token, key, client secret or Key Vault value the fake ever produced or
        stored appears in the texts (logs, notify, CLI output)."""
        with self.fake.lock:
            leaked = set(self.fake.leaked)
        blob = "\n".join(texts)
        for s in leaked:
            # A 10+ character secret; also its first 24 characters (a truncated echo).
            if len(s) >= 10:
                assert s not in blob and s[:24] not in blob, "a secret value leaked into the output"
        assert "eyJ" not in blob, "something JWT-shaped leaked into the output"

    def status(self, *args):
        r = self.sc.run_cli("-c", self.sc.tree.conf, "status", *args)
        return r

    def status_json(self, name):
        r = self.sc.run_cli("-c", self.sc.tree.conf, "status", "--json")
        doc = json.loads(r.stdout)
        rows = doc if isinstance(doc, list) else doc.get("credentials", doc)
        if isinstance(rows, dict):
            rows = list(rows.values())
        for row in rows:
            if isinstance(row, dict) and row.get("name") == name:
                return row, r
        raise AssertionError("no status row for %s: %s" % (name, r.stdout))


@pytest.fixture
def az(sc):
    return AzureScenario(sc)


@pytest.fixture
def az_short(sc):
    """Tokens that live 8 s, for refresh timing."""
    return AzureScenario(sc, lifetime=8)


@pytest.fixture
def az_tls(sc):
    return AzureScenario(sc, tls=True)
