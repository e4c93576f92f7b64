"""The fake Vault on its own: it must answer what Vault answers, because the vault source
is tested against it and not against a real Vault. Clients nobody here wrote check it:
curl running the Vault API docs' own examples, and node-vault (from the npm registry)
validating the answers against its own response schemas. The rest pins the wire facts
from Vault's HTTP API documentation that the plugin relies on."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

import rc_harness as h
from vault_helpers import FakeVault, make_ca, write_secret_file

CURL = shutil.which("curl") or "/usr/bin/curl"
NODE = shutil.which("node")
NPM = shutil.which("npm")
NODE_VAULT = "node-vault@0.12.0"


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="rc-vpki-", dir="/tmp")
    yield make_ca(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fv(pki):
    f = FakeVault(tls_cert=pki["cert"], tls_key=pki["key"], tick=0.5).start()
    yield f
    f.stop()


def call(fv, method, path, body=None, token=True, headers=None, raw=False):
    """(status, headers, body) of one request, over a plain urllib client with our CA."""
    import ssl
    ctx = ssl.create_default_context(cafile=fv._ca) if fv.tls else None
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(fv.url + path, data=data, method=method)
    if token:
        req.add_header("X-Vault-Token", fv.root_token if token is True else token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            b = r.read()
            return r.status, dict(r.headers), b if raw else (json.loads(b) if b else None)
    except urllib.error.HTTPError as e:
        b = e.read()
        return e.code, dict(e.headers), b if raw else (json.loads(b) if b else None)


@pytest.fixture(autouse=True)
def _ca(request, pki):
    FakeVault._ca = pki["ca"]


# --------------------------------------------------------------------------- curl

def curl(fv, ca, *args):
    r = subprocess.run([CURL, "-sS", "--cacert", ca, "-w", "\n%{http_code}"] + list(args),
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.rpartition("\n")
    return int(code), (json.loads(body) if body.strip() else None)


def test_vault_api_docs_curl_examples(fv, pki, tmp_path):
    """The examples of api-docs/secret/kv/kv-v2.mdx, auth/approle.mdx, auth/token.mdx and
    secret/databases, run as written (address and token substituted)."""
    ca, tok, addr = pki["ca"], fv.root_token, fv.url
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"options": {"cas": 0}, "data": {"foo": "bar", "zip": "zap"}}))
    code, j = curl(fv, ca, "--header", "X-Vault-Token: " + tok, "--request", "POST", "--data", "@" + str(payload),
                   addr + "/v1/secret/data/my-secret")
    assert code == 200 and j["data"]["version"] == 1 and j["data"]["destroyed"] is False
    code, j = curl(fv, ca, "--header", "X-Vault-Token: " + tok, addr + "/v1/secret/data/my-secret?version=1")
    assert code == 200 and j["data"]["data"] == {"foo": "bar", "zip": "zap"} and j["data"]["metadata"]["version"] == 1
    code, j = curl(fv, ca, "--header", "X-Vault-Token: " + tok, "--request", "POST", "--data", "@" + str(payload),
                   addr + "/v1/secret/data/my-secret")
    assert code == 400 and j == {"errors": ["check-and-set parameter did not match the current version"]}
    code, j = curl(fv, ca, "--header", "X-Vault-Token: " + tok, addr + "/v1/secret/metadata/my-secret")
    assert code == 200 and j["data"]["current_version"] == 1 and "1" in j["data"]["versions"]
    code, j = curl(fv, ca, "--header", "X-Vault-Token: " + tok, "--request", "LIST", addr + "/v1/secret/metadata/")
    assert code == 200 and j["data"]["keys"] == ["my-secret"]
    code, j = curl(fv, ca, "--header", "X-Vault-Token: " + tok, "--request", "DELETE", addr + "/v1/secret/data/my-secret")
    assert code == 204 and j is None
    code, j = curl(fv, ca, "--header", "X-Vault-Token: " + tok, addr + "/v1/secret/data/my-secret")
    assert code == 404 and j["data"]["data"] is None and j["data"]["metadata"]["deletion_time"] != ""

    fv.approle_enable()
    fv.policy("p", {"secret/*": ["read"]})
    role_id = fv.approle_role("my-role", policies=["p"], token_ttl=60)
    secret_id = fv.approle_secret_id("my-role")
    payload.write_text(json.dumps({"role_id": role_id, "secret_id": secret_id}))
    code, j = curl(fv, ca, "--request", "POST", "--data", "@" + str(payload), addr + "/v1/auth/approle/login")
    assert code == 200 and j["data"] is None and j["auth"]["lease_duration"] == 60 and j["auth"]["renewable"] is True
    assert j["auth"]["policies"] == ["default", "p"] and j["auth"]["metadata"] == {"role_name": "my-role"}
    ctok = j["auth"]["client_token"]
    code, j = curl(fv, ca, "--header", "X-Vault-Token: " + ctok, addr + "/v1/auth/token/lookup-self")
    assert code == 200 and j["data"]["ttl"] <= 60 and j["data"]["type"] == "service" and j["data"]["id"] == ctok
    payload.write_text(json.dumps({"increment": "1h"}))
    code, j = curl(fv, ca, "--header", "X-Vault-Token: " + ctok, "--request", "POST", "--data", "@" + str(payload),
                   addr + "/v1/auth/token/renew-self")
    assert code == 200 and j["auth"]["client_token"] == ctok and j["auth"]["lease_duration"] == 3600

    fv.database_enable()
    fv.static_role("database", "my-static-role", "static-user", rotation_period=3600)
    code, j = curl(fv, ca, "--header", "X-Vault-Token: " + tok, addr + "/v1/database/static-creds/my-static-role")
    assert code == 200 and j["mount_type"] == "database" and j["lease_duration"] == 0 and j["lease_id"] == ""
    assert set(j["data"]) == {"last_vault_rotation", "password", "rotation_period", "ttl", "username"}
    code, j = curl(fv, ca, "--header", "X-Vault-Token: " + tok, "--request", "POST",
                   addr + "/v1/database/rotate-role/my-static-role")
    assert code == 204


# --------------------------------------------------------------------------- node-vault

NODE_SCRIPT = r"""
const fs = require('fs');
const tv4 = require('tv4');
const commands = require('node-vault/src/commands.js');
const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const ca = fs.readFileSync(cfg.ca);
const out = {};
// node-vault's approleResponse declares data, warnings and wrap_info as object/string,
// but Vault answers null there (api-docs/auth/approle.mdx sample; reference §5.3): the
// fake follows Vault, so top-level nulls are dropped before validating.
function check(name, res) {
  const copy = Object.fromEntries(Object.entries(res).filter(([, v]) => v !== null));
  const ok = tv4.validate(copy, commands[name].schema.res);
  out[name] = ok ? 'ok' : ('schema: ' + tv4.error.message + ' at ' + tv4.error.dataPath);
}
(async () => {
  const root = require('node-vault')({ endpoint: cfg.addr, token: cfg.root, requestOptions: { ca } });
  check('status', await root.status());
  check('health', await root.health());
  out.write = (await root.write('secret/data/app', { data: { username: 'app', password: 'nv-1' } })).data.version;
  out.read = (await root.read('secret/data/app')).data.data.username;
  out.meta = (await root.read('secret/metadata/app')).data.current_version;
  try { await root.write('secret/data/app', { options: { cas: 0 }, data: { a: 1 } }); out.cas = 'no error'; }
  catch (e) { out.cas = [e.response.statusCode, e.message]; }
  try { await root.read('secret/data/missing'); out.missing = 'no error'; }
  catch (e) { out.missing = [e.response.statusCode, e.message, JSON.stringify(e.response.body)]; }
  try { await require('node-vault')({ endpoint: cfg.addr, token: 'bogus', requestOptions: { ca } }).read('secret/data/app'); }
  catch (e) { out.badtoken = [e.response.statusCode, e.message]; }
  out.static = (await root.read('database/static-creds/r')).data.username;

  const ar = require('node-vault')({ endpoint: cfg.addr, requestOptions: { ca } });
  const login = await ar.approleLogin({ role_id: cfg.role_id, secret_id: cfg.secret_id });
  check('approleLogin', login);
  check('tokenLookupSelf', await ar.tokenLookupSelf());
  check('tokenRenewSelf', await ar.tokenRenewSelf({ increment: '30s' }));
  out.approle_read = (await ar.read('secret/data/app')).data.data.password === 'nv-1';
  try { await ar.read('secret/metadata/app'); out.denied = 'no error'; }
  catch (e) { out.denied = [e.response.statusCode, e.message]; }

  const k8 = require('node-vault')({ endpoint: cfg.addr, requestOptions: { ca } });
  // node-vault 0.12 never fills {{kubernetesPath}} in: name the mount.
  check('kubernetesLogin', await k8.kubernetesLogin({ role: 'k8s', jwt: cfg.jwt, mount_point: 'kubernetes' }));
  try { await k8.kubernetesLogin({ role: 'k8s', jwt: cfg.jwt + 'x', mount_point: 'kubernetes' }); out.badjwt = 'no error'; }
  catch (e) { out.badjwt = [e.response.statusCode, e.message]; }
  console.log(JSON.stringify(out));
})().catch((e) => { console.log(JSON.stringify({ fatal: String(e && e.stack || e) })); process.exit(1); });
"""


def _node_vault_dir():
    """node-vault installed with npm into a cache directory; skips when it cannot be."""
    if os.environ.get("REDIS_CREDS_SKIP_NPM"):
        pytest.skip("REDIS_CREDS_SKIP_NPM is set")
    if not NODE or not NPM:
        pytest.skip("node or npm is not installed")
    d = os.path.join(tempfile.gettempdir(), "redis-creds-" + NODE_VAULT.replace("@", "-"))
    if os.path.isdir(os.path.join(d, "node_modules", "node-vault")):
        return d
    os.makedirs(d, exist_ok=True)
    try:
        r = subprocess.run([NPM, "install", "--no-audit", "--no-fund", "--no-save", "--fetch-retries=1",
                            "--fetch-timeout=30000", "--prefix", d, NODE_VAULT],
                           capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install %s timed out (no route to the npm registry?)" % NODE_VAULT)
    if r.returncode != 0 or not os.path.isdir(os.path.join(d, "node_modules", "node-vault")):
        pytest.skip("cannot install %s with npm (registry unreachable?): %s"
                    % (NODE_VAULT, (r.stderr or r.stdout).strip().splitlines()[-1:] or ""))
    return d


def test_node_vault_gets_what_it_expects(fv, pki, tmp_path):
    d = _node_vault_dir()
    fv.database_enable()
    fv.static_role("database", "r", "static-user", rotation_period=60)
    fv.policy("app", {"secret/data/*": ["read"]})
    fv.approle_enable()
    role_id = fv.approle_role("nv", policies=["app"], token_ttl=60, token_max_ttl=600)
    secret_id = fv.approle_secret_id("nv")
    fv.kubernetes_enable()
    fv.kubernetes_role("k8s", ["app"], ["default"], policies=["app"], token_ttl=60)
    cfg = {"addr": fv.url, "root": fv.root_token, "ca": pki["ca"], "role_id": role_id, "secret_id": secret_id,
           "jwt": fv.kubernetes_jwt("app")}
    cfgf = write_secret_file(str(tmp_path / "cfg.json"), json.dumps(cfg))
    script = tmp_path / "check.js"
    script.write_text(NODE_SCRIPT)
    r = subprocess.run([NODE, str(script), cfgf], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, NODE_PATH=os.path.join(d, "node_modules")), cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for name in ("status", "health", "approleLogin", "tokenLookupSelf", "tokenRenewSelf", "kubernetesLogin"):
        assert out[name] == "ok", (name, out[name])
    assert out["write"] == 1 and out["read"] == "app" and out["meta"] == 1
    assert out["cas"] == [400, "check-and-set parameter did not match the current version"]
    assert out["missing"][0] == 404 and out["missing"][2] == '{"errors":[]}'
    assert out["badtoken"] == [403, "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]
    assert out["denied"] == [403, "1 error occurred:\n\t* permission denied\n\n"]
    assert out["badjwt"] == [403, "permission denied"]
    assert out["static"] == "static-user" and out["approle_read"] is True


# --------------------------------------------------------------------------- wire facts

def test_envelopes_and_headers(fv):
    fv.kv2_put("secret", "a", {"password": "p<&>"})
    code, hdrs, raw = call(fv, "GET", "/v1/secret/data/a", raw=True)
    assert code == 200 and raw.endswith(b"}\n")
    assert hdrs["Content-Type"] == "application/json" and hdrs["Cache-Control"] == "no-store"
    assert b'"p\\u003c\\u0026\\u003e"' in raw              # Go's HTML-safe escaping
    keys = list(json.loads(raw))
    assert keys == ["request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings",
                    "auth", "mount_type"]
    fv.kv2_delete("secret", "a")
    code, _, raw = call(fv, "GET", "/v1/secret/data/a", raw=True)
    assert code == 404 and not raw.endswith(b"\n") and json.loads(raw)["mount_type"] == ""
    fv.kv2_put("secret", "a", {"password": "x" * 5000})
    code, hdrs, raw = call(fv, "GET", "/v1/secret/data/a", raw=True)
    assert code == 200 and hdrs.get("Transfer-Encoding") == "chunked"
    code, _, j = call(fv, "GET", "/v1/secret/data/a", token=False)
    assert code == 403 and j == {"errors": ["permission denied"]}


def test_cas_required_and_max_versions(fv):
    fv.kv2_enable("kv", cas_required=True, max_versions=2)
    code, _, j = call(fv, "POST", "/v1/kv/data/x", {"data": {"a": 1}})
    assert code == 400 and j == {"errors": ["check-and-set parameter required for this call"]}
    code, _, j = call(fv, "POST", "/v1/kv/data/x", {"options": {"cas": "zz"}, "data": {"a": 1}})
    assert code == 400 and j == {"errors": ["error parsing check-and-set parameter"]}
    code, _, j = call(fv, "POST", "/v1/kv/data/x", {"options": {"cas": 1}})
    assert code == 400 and j == {"errors": ["no data provided"]}
    for cas in range(3):
        code, _, j = call(fv, "POST", "/v1/kv/data/x", {"options": {"cas": cas}, "data": {"a": cas}})
        assert code == 200 and j["data"]["version"] == cas + 1
    code, _, j = call(fv, "GET", "/v1/kv/metadata/x")
    assert sorted(j["data"]["versions"]) == ["2", "3"] and j["data"]["oldest_version"] == 2
    code, _, j = call(fv, "GET", "/v1/kv/data/x?version=1")
    assert code == 404 and j == {"errors": []}
    fv.kv2_destroy("kv", "x", [2])
    code, _, j = call(fv, "GET", "/v1/kv/data/x?version=2")
    assert code == 404 and j["data"]["data"] is None and j["data"]["metadata"]["destroyed"] is True


def test_token_ttl_renewal_cap_and_expiry(fv):
    tok = fv.token_create(["default"], ttl=3, max_ttl=4)
    code, _, j = call(fv, "POST", "/v1/auth/token/renew-self", {"increment": 3600}, token=tok)
    assert code == 200 and j["auth"]["lease_duration"] <= 4
    assert j["warnings"] == ['TTL of "1h0m0s" exceeded the effective max_ttl of "4s"; TTL value is capped accordingly']
    code, _, j = call(fv, "GET", "/v1/auth/token/lookup-self", token=tok)
    assert code == 200 and 0 < j["data"]["ttl"] <= 4 and j["data"]["renewable"] is True
    fv.expire_tokens()
    code, _, j = call(fv, "GET", "/v1/auth/token/lookup-self", token=tok)
    assert code == 403 and j == {"errors": ["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]}
    tok2 = fv.token_create(["default"], ttl=1, max_ttl=1)
    time.sleep(1.1)
    code, _, j = call(fv, "POST", "/v1/auth/token/renew-self", {}, token=tok2)
    assert code == 403
    tok3 = fv.token_create(["default"], ttl=5, renewable=False)
    code, _, j = call(fv, "POST", "/v1/auth/token/renew-self", {}, token=tok3)
    assert code == 400 and j == {"errors": ["lease is not renewable"]}


def test_approle_and_kubernetes_login_errors(fv):
    fv.approle_enable()
    rid = fv.approle_role("r", token_ttl=10)
    sid = fv.approle_secret_id("r", num_uses=1)
    assert call(fv, "POST", "/v1/auth/approle/login", {}, token=False)[2] == {"errors": ["missing role_id"]}
    assert call(fv, "POST", "/v1/auth/approle/login", {"role_id": rid}, token=False)[2] == {"errors": ["missing secret_id"]}
    assert call(fv, "POST", "/v1/auth/approle/login", {"role_id": rid, "secret_id": "nope"}, token=False)[:3:2] == \
        (400, {"errors": ["invalid role or secret ID"]})
    assert call(fv, "POST", "/v1/auth/approle/login", {"role_id": rid, "secret_id": sid}, token=False)[0] == 200
    assert call(fv, "POST", "/v1/auth/approle/login", {"role_id": rid, "secret_id": sid}, token=False)[0] == 400
    fv.kubernetes_enable()
    fv.kubernetes_role("k", ["app"], ["default"])
    assert call(fv, "POST", "/v1/auth/kubernetes/login", {"role": "k", "jwt": fv.kubernetes_jwt("other")},
                token=False)[:3:2] == (403, {"errors": ["service account name not authorized"]})
    assert call(fv, "POST", "/v1/auth/kubernetes/login", {"role": "nope", "jwt": "x"}, token=False)[:3:2] == \
        (400, {"errors": ['invalid role name "nope"']})


def test_static_role_ttl_counts_down_and_the_queue_rotates_on_its_tick(fv):
    fv.database_enable()
    fv.static_role("database", "r", "u", rotation_period=5)
    code, _, j = call(fv, "GET", "/v1/database/static-creds/r")
    assert j["data"]["ttl"] in (4, 5) and j["data"]["rotation_period"] == 5
    lvr = j["data"]["last_vault_rotation"]
    time.sleep(1.2)
    assert call(fv, "GET", "/v1/database/static-creds/r")[2]["data"]["ttl"] in (3, 4)
    rotated = fv.static_role_info("database", "r")["rotations"]
    h.wait_until(lambda: len(fv.static_role_info("database", "r")["rotations"]) > len(rotated), 8,
                 "the queue's rotation of the static role")
    j = call(fv, "GET", "/v1/database/static-creds/r")[2]
    assert j["data"]["last_vault_rotation"] != lvr and j["data"]["ttl"] in (4, 5)
    assert call(fv, "GET", "/v1/database/static-creds/nope")[:3:2] == (400, {"errors": ["unknown role: nope"]})
    assert call(fv, "POST", "/v1/database/rotate-role/nope")[:3:2] == \
        (400, {"errors": ["no static role found for role name"]})


def test_namespaces_header_or_path_sealed_and_injected_429(fv):
    fv.namespace_create("team")
    fv.kv2_enable("kv", namespace="team")
    fv.kv2_put("kv", "x", {"a": "b"}, namespace="team")
    assert call(fv, "GET", "/v1/kv/data/x", headers={"X-Vault-Namespace": "team/"})[0] == 200
    assert call(fv, "GET", "/v1/team/kv/data/x")[0] == 200
    assert call(fv, "GET", "/v1/kv/data/x")[0] == 404
    fv.inject("kv/data/x$", "429", retry_after=3, times=1)
    code, hdrs, j = call(fv, "GET", "/v1/team/kv/data/x")
    assert code == 429 and hdrs["Retry-After"] == "3"
    assert j == {"errors": ['request path "team/kv/data/x": rate limit quota exceeded']}
    fv.seal()
    assert call(fv, "GET", "/v1/team/kv/data/x")[:3:2] == (503, {"errors": ["Vault is sealed"]})
    assert call(fv, "GET", "/v1/sys/health")[0] == 503
    fv.unseal()
    assert fv.count("/v1/team/kv/data/x") == 3
