"""The Azure fake checked with Microsoft's own SDK: @azure/identity's
ManagedIdentityCredential gets a token from the fake IMDS (AZURE_POD_IDENTITY_AUTHORITY_HOST
points it there), and @azure/keyvault-secrets reads a secret from the fake Key Vault over
HTTPS with a test CA (NODE_EXTRA_CA_CERTS): the SDK refuses bearer tokens over plain
http, and the challenge names https://vault.azure.net, which it would check against the
vault's host unless told not to (disableChallengeResourceVerification). On the way it
exercises the 401 challenge, the IMDS wire format, version paging through nextLink and
the 403 of a disabled version. Skipped when node is missing or npm cannot install the
packages (no registry); the packages are kept in the build directory for later runs."""
import json
import os
import shutil
import subprocess

import pytest

import rc_harness as h
from azure_helpers import az_tls  # noqa: F401 - fixture

SDK_DIR = os.path.join(h.BUILD_DIR, "azure-sdk-check")
PACKAGES = ("@azure/identity@4", "@azure/keyvault-secrets@4")

CHECK_JS = r"""
const { ManagedIdentityCredential } = require("@azure/identity");
const { SecretClient } = require("@azure/keyvault-secrets");
(async () => {
  const cred = new ManagedIdentityCredential();
  const client = new SecretClient(process.env.VAULT_URL, cred,
    { disableChallengeResourceVerification: true, retryOptions: { maxRetries: 0 } });
  const s = await client.getSecret(process.env.SECRET);
  const versions = [];
  for await (const p of client.listPropertiesOfSecretVersions(process.env.SECRET)) versions.push(p.version);
  let disabled = null;
  try { await client.getSecret(process.env.SECRET, { version: process.env.DISABLED }); }
  catch (e) { disabled = (e.code || "") + "/" + (e.statusCode || ""); }
  // Never print the value itself.
  console.log(JSON.stringify({ value_ok: s.value === process.env.EXPECT, version: s.properties.version,
    contentType: s.properties.contentType || null, enabled: s.properties.enabled,
    versions: versions.sort(), disabled }));
})().catch(e => { console.error("SDK-ERROR " + (e.code || "") + " " + (e.statusCode || "") + " " + e.message);
                  process.exit(3); });
"""


def sdk_ready():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm not installed")
    if all(os.path.isdir(os.path.join(SDK_DIR, "node_modules", p.rsplit("@", 1)[0])) for p in PACKAGES):
        return node
    os.makedirs(SDK_DIR, exist_ok=True)
    try:
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", SDK_DIR]
                           + list(PACKAGES), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=240)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install timed out (registry unreachable?)")
    if r.returncode != 0:
        pytest.skip("npm cannot install the Azure SDK (registry unreachable?): %s" % r.stderr.strip()[-300:])
    return node


def test_microsoft_sdk_reads_a_secret_from_the_fakes(sc, az_tls):
    node = sdk_ready()
    az = az_tls
    az.fake.kv_page_size = 2        # three versions: the SDK must follow nextLink
    az.fake.kv_set("sdk-secret", "sdk-value-one-41c2")
    off = az.fake.kv_set("sdk-secret", "sdk-value-two-82d3", enabled=False)
    last = az.fake.kv_set("sdk-secret", "sdk-value-three-c3e4", content_type="text/plain")
    script = os.path.join(az.dir, "check.js")
    with open(script, "w") as f:
        f.write(CHECK_JS)
    env = h.clean_env({"AZURE_POD_IDENTITY_AUTHORITY_HOST": az.fake.url, "NODE_EXTRA_CA_CERTS": az.ca,
                       "NODE_PATH": os.path.join(SDK_DIR, "node_modules"),
                       "VAULT_URL": "https://127.0.0.1:%d" % az.fake.https_port, "SECRET": "sdk-secret",
                       "EXPECT": "sdk-value-three-c3e4", "DISABLED": off})
    for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID"):
        env.pop(k, None)
    r = subprocess.run([node, script], cwd=az.dir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["value_ok"] and out["version"] == last and out["contentType"] == "text/plain" and out["enabled"]
    assert len(out["versions"]) == 3 and last in out["versions"] and off in out["versions"]
    assert out["disabled"] == "Forbidden/403"
    kinds = [(x.kind, x.status) for x in az.fake.requests]
    assert ("keyvault", 401) in kinds, kinds       # the SDK's challenge round trip
    assert ("imds", 200) in kinds, kinds
    assert az.fake.count("keyvault", "/versions") == 2, kinds
