"""Fake Azure endpoints for tests and benchmarks, in one process (Python 3 stdlib only).

One AzureFake serves, on 127.0.0.1 (plain http, and optionally https with a test CA):

  IMDS             GET  /metadata/identity/oauth2/token      (Metadata: true; numbers as strings)
  App Service      GET  /msi/token                           (X-IDENTITY-HEADER; expires_on only)
  Azure Arc agent  GET  /metadata/identity/oauth2/token      (after enable_arc(): instead of IMDS;
                                                              401 + Basic realm=<challenge file>)
  Entra ID         POST /{tenant}/oauth2/v2.0/token          (client secret or client assertion)
  Key Vault        GET  /secrets/{name}[/{version}]          (SecretBundle; 401 challenge;
                   GET  /secrets/{name}/versions              403 SecretDisabled; paging with
                   PUT  /secrets/{name}                       nextLink + $skiptoken)
                   PATCH /secrets/{name}/{version}
  Resource Manager POST {resourceId}/listKeys                 (Microsoft.Cache redis and
                   POST {resourceId}/regenerateKey            redisEnterprise databases; 202 +
                   GET  .../operationsStatus/{id}             Azure-AsyncOperation for the latter)

Wire formats, status codes and error envelopes follow Microsoft's public documentation
(Azure Instance Metadata Service, the identity platform's v2 token endpoint, the Key
Vault and Azure Cache for Redis REST APIs): IMDS writes every number as a string and answers a missing
Metadata header and an unknown identity with 400 invalid_request; the v2 token endpoint
writes integers; Key Vault errors are {"error": {"code", "message", "innererror"}}, a
missing or refused bearer token gets `WWW-Authenticate: Bearer authorization="...",
resource="https://vault.azure.net"`; Resource Manager errors use the same envelope
(AuthorizationFailed, ResourceNotFound, ...). Two details are not documented and are
marked as guesses below: App Service's answer to a wrong X-IDENTITY-HEADER, and the
order of Key Vault's version list (the fake returns it unordered on purpose). The Azure Arc
agent's challenge (reference §2.3) is documented as a flow only; how it answers a wrong
key, a user-assigned selector or a reused key, and the 401's body, are guesses marked there.

Tokens are JWT-shaped (header.payload.signature) with aud, iss, iat, nbf, exp, oid, tid,
appid, and an unverifiable random signature; the fake remembers every token it issued
and accepts only those (with the right audience, not expired) as bearer tokens. With
signed_tokens=True (--signed) they are real RS256 JWTs signed with a key the fake makes at
start, whose public half is .jwks() (and served at /<tenant>/discovery/v2.0/keys), so a
relying party such as tests/fakes/token_proxy.py can verify them like Entra's are.

Tests drive it through the Python API (kv_set, kv_disable, add_cache, regenerate,
add_identity, add_app, inject, ...) and observe it through .requests and callbacks
(on_token, on_keys). Errors are injected per endpoint kind with inject(). Run standalone
(`python3 azure_fake.py --help`) for manual experiments.
"""
import base64
import datetime
import http.server
import json
import os
import re
import secrets as _secrets
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse

# The Arc agent's api-versions in Microsoft's examples (PowerShell 2020-06-01, bash 2019-11-01).
ARC_API_VERSIONS = {"2019-11-01", "2020-06-01"}
KV_API_VERSIONS = {"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-06-01", "2025-07-01"}
ARM_API_VERSIONS = {
    "redis": {"2023-08-01", "2024-03-01", "2024-11-01"},
    "redisenterprise": {"2024-02-01", "2024-10-01", "2025-04-01", "2025-07-01"},
}
FEDERATED_AUDIENCE = "api://AzureADTokenExchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def make_jwt(claims, header=None, key=None):
    """A JWT with the claims; signed RS256 with key (an RsaKey) if given, else with a random
    (unverifiable) signature."""
    h = header or {"typ": "JWT", "alg": "RS256", "kid": key.kid if key else "fake-azure-key"}
    signing_input = "%s.%s" % (b64url(json.dumps(h, separators=(",", ":")).encode()),
                               b64url(json.dumps(claims, separators=(",", ":")).encode()))
    sig = key.sign(signing_input.encode()) if key else _secrets.token_bytes(64)
    return "%s.%s" % (signing_input, b64url(sig))


# RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2, §9.2): the DER DigestInfo prefix.
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def _probable_prime(bits):
    small = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73)
    while True:
        n = _secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if any(n % p == 0 for p in small):
            continue
        d, r = n - 1, 0
        while d % 2 == 0:
            d //= 2
            r += 1
        for _ in range(24):     # Miller-Rabin
            x = pow(_secrets.randbelow(n - 3) + 2, d, n)
            if x in (1, n - 1):
                continue
            for _ in range(r - 1):
                x = pow(x, 2, n)
                if x == n - 1:
                    break
            else:
                break
        else:
            return n


class RsaKey:
    """A test RSA key (2048 bits, e = 65537), made with the stdlib: good enough to sign test
    tokens, not for anything else."""

    def __init__(self, bits=2048):
        e = 65537
        while True:
            p, q = _probable_prime(bits // 2), _probable_prime(bits // 2)
            phi = (p - 1) * (q - 1)
            if p != q and phi % e:
                break
        self.n, self.e, self._d = p * q, e, pow(e, -1, phi)
        self.size = (self.n.bit_length() + 7) // 8
        self.kid = "fake-entra-" + _secrets.token_hex(4)

    def sign(self, data):
        import hashlib
        t = SHA256_DIGEST_INFO + hashlib.sha256(data).digest()
        em = b"\x00\x01" + b"\xff" * (self.size - len(t) - 3) + b"\x00" + t
        return pow(int.from_bytes(em, "big"), self._d, self.n).to_bytes(self.size, "big")

    def jwk(self):
        def b(i):
            return b64url(i.to_bytes((i.bit_length() + 7) // 8, "big"))
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                "n": b(self.n), "e": b(self.e)}


def jwt_claims(token):
    try:
        return json.loads(b64url_decode(token.split(".")[1]))
    except Exception:  # noqa: BLE001 - anything unreadable is "not a JWT"
        return None


def new_guid():
    h = _secrets.token_hex(16)
    return "%s-%s-4%s-8%s-%s" % (h[:8], h[8:12], h[13:16], h[17:20], h[20:32])


def normalize_resource(r):
    r = (r or "").strip()
    if r.endswith("/.default"):
        r = r[: -len("/.default")]
    return r.rstrip("/")


def make_test_ca(directory, names=("localhost",), ips=("127.0.0.1", "::1")):
    """A throwaway CA and a server certificate for names/ips, with the openssl CLI.
    Returns (ca_cert, server_cert, server_key) paths."""
    os.makedirs(directory, exist_ok=True)
    ca_key = os.path.join(directory, "ca.key")
    ca = os.path.join(directory, "ca.pem")
    key = os.path.join(directory, "server.key")
    csr = os.path.join(directory, "server.csr")
    crt = os.path.join(directory, "server.pem")
    ext = os.path.join(directory, "server.ext")
    san = ",".join(["DNS:%s" % n for n in names] + ["IP:%s" % i for i in ips])
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n" % san)

    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # EC keys: generated in milliseconds, and every client here speaks ECDSA.
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    run("req", "-x509", *ec, "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=redis-creds test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=%s" % names[0])
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
        "-days", "2", "-extfile", ext)
    return ca, crt, key


class Identity:
    """A managed identity (system- or user-assigned) or an app registration."""

    def __init__(self, name, client_id=None, object_id=None, resource_id=None):
        self.name = name
        self.client_id = client_id or new_guid()
        self.object_id = object_id or new_guid()
        self.resource_id = resource_id or (
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
            "Microsoft.ManagedIdentity/userAssignedIdentities/%s" % name)


class App(Identity):
    """An app registration (service principal) with client secrets and federated credentials."""

    def __init__(self, name, tenant, secret=None, federated=()):
        super().__init__(name)
        self.tenant = tenant
        self.secrets = {secret} if secret else set()
        self.federated = list(federated)   # [(issuer, subject)]


class Fault:
    def __init__(self, kind, status=None, body=None, headers=None, count=1, delay=0.0, drop=False,
                 match=None):
        self.kind, self.status, self.body, self.headers = kind, status, body, headers or {}
        self.count, self.delay, self.drop, self.match = count, delay, drop, match


class Request:
    __slots__ = ("t", "kind", "method", "path", "query", "status", "headers")

    def __init__(self, t, kind, method, path, query, headers):
        self.t, self.kind, self.method, self.path, self.query = t, kind, method, path, query
        self.headers = headers
        self.status = None

    def __repr__(self):
        return "<%s %s %s -> %s>" % (self.kind, self.method, self.path, self.status)


class AzureFake:
    def __init__(self, token_lifetime=3600, tls=None, location="westus", signed_tokens=False):
        self.lock = threading.RLock()
        self.signing_key = RsaKey() if signed_tokens else None
        self.tenant = new_guid()
        self.subscription = "00000000-0000-0000-0000-000000000001"
        self.location = location
        self.token_lifetime = token_lifetime
        # IMDS and App Service hand back their cached token while it has more than this
        # fraction of its lifetime left (None: a new token every time). Real IMDS caches;
        # how long it keeps a token is not documented.
        self.imds_reuse_fraction = None
        self.system_identity = Identity("system")
        self.system_identity_enabled = True
        self.user_identities = []
        self.apps = {}                 # client_id -> App
        self.identity_header = _secrets.token_hex(16)
        self.arc_key_dir = None        # enable_arc(): the Arc agent's token directory
        self.arc_key_mode = 0o640      # guess: the agent's files are for root and group himds
        self.arc_keys = {}             # key -> challenge file, each good for one answer
        self.issued = {}               # token -> claims
        self.mi_cache = {}             # (object_id, resource) -> token
        self.requests = []
        self.faults = []
        self.on_token = []             # fn(token, claims), called before the response goes out
        self.on_keys = []              # fn(resource_id, keys_dict) after a key changed
        self.secrets = {}              # name -> [version dict], in creation order
        self.kv_allowed = None         # None: any identity may read; else set of oids
        self.kv_page_size = 25
        self.caches = {}               # resource id (lower) -> {"id", "kind", "primary", "secondary"}
        self.mgmt_allowed = None       # None: any identity; else set of oids
        self.lro = True                # redisEnterprise regenerateKey: 202 + Azure-AsyncOperation
        self.lro_seconds = 0.3
        self.operations = {}           # op id -> dict
        self.leaked = set()            # every secret value the fake ever produced or stored
        self._tls = tls
        self._servers = []
        self._threads = []
        self.port = None
        self.https_port = None

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        handler = self._handler_class()
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        srv.fake_scheme = "http"
        self.port = srv.server_address[1]
        self._servers.append(srv)
        if self._tls:
            cert, key = self._tls
            tsrv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            tsrv.daemon_threads = True
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            tsrv.socket = ctx.wrap_socket(tsrv.socket, server_side=True)
            tsrv.fake_scheme = "https"
            self.https_port = tsrv.server_address[1]
            self._servers.append(tsrv)
        for s in self._servers:
            t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self):
        for s in self._servers:
            s.shutdown()
            s.server_close()
        for t in self._threads:
            t.join(2)
        self._servers = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def https_url(self):
        return "https://localhost:%d" % self.https_port

    @property
    def app_service_endpoint(self):
        return self.url + "/msi/token"

    def enable_arc(self, key_dir):
        """From now on the token path is an Azure Arc agent's (its IDENTITY_ENDPOINT is
        .arc_identity_endpoint, IMDS_ENDPOINT .url) instead of IMDS: it writes each
        challenge file into key_dir, which it creates if needed."""
        os.makedirs(key_dir, mode=0o755, exist_ok=True)
        with self.lock:
            self.arc_key_dir = key_dir
        return self.arc_identity_endpoint

    @property
    def arc_identity_endpoint(self):
        return self.url + "/metadata/identity/oauth2/token"

    def arc_challenge(self):
        """A fresh challenge file, as the agent writes one per unauthenticated request;
        returns its path."""
        key = _secrets.token_hex(32)
        with self.lock:
            path = os.path.join(self.arc_key_dir, new_guid() + ".key")
            self.arc_keys[key] = path
            self.leaked.add(key)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self.arc_key_mode)
        try:
            os.write(fd, key.encode())
        finally:
            os.close(fd)
        os.chmod(path, self.arc_key_mode)
        return path

    # ------------------------------------------------------------------ identities
    def add_identity(self, name):
        i = Identity(name)
        with self.lock:
            self.user_identities.append(i)
        return i

    def add_app(self, name, secret=None, federated=()):
        a = App(name, self.tenant, secret, federated)
        with self.lock:
            self.apps[a.client_id] = a
            if secret:
                self.leaked.add(secret)
        return a

    def _find_mi(self, q):
        ids = self.user_identities
        if "client_id" in q:
            return next((i for i in ids if i.client_id.lower() == q["client_id"].lower()), None)
        if "object_id" in q or "principal_id" in q:
            v = q.get("object_id") or q.get("principal_id")
            return next((i for i in ids if i.object_id.lower() == v.lower()), None)
        if "msi_res_id" in q or "mi_res_id" in q:
            v = q.get("msi_res_id") or q.get("mi_res_id")
            return next((i for i in ids if i.resource_id.lower() == v.lower()), None)
        return self.system_identity if self.system_identity_enabled else None

    # ------------------------------------------------------------------ tokens
    def issue(self, ident, resource, lifetime=None, appid=None):
        now = int(time.time())
        life = self.token_lifetime if lifetime is None else lifetime
        claims = {
            "aud": normalize_resource(resource),
            "iss": "https://sts.windows.net/%s/" % self.tenant,
            "iat": now, "nbf": now, "exp": now + life,
            "oid": ident.object_id, "sub": ident.object_id, "tid": self.tenant,
            "appid": appid or ident.client_id, "uti": b64url(_secrets.token_bytes(16)), "ver": "1.0",
        }
        token = make_jwt(claims, key=self.signing_key)
        with self.lock:
            self.issued[token] = claims
            self.leaked.add(token)
            callbacks = list(self.on_token)
        for cb in callbacks:
            cb(token, claims)
        return token, claims

    def jwks(self):
        """The public keys that verify the tokens ({"keys": []} unless signed_tokens)."""
        return {"keys": [self.signing_key.jwk()] if self.signing_key else []}

    def _managed_token(self, ident, resource):
        key = (ident.object_id, normalize_resource(resource))
        with self.lock:
            cached = self.mi_cache.get(key)
            if cached and self.imds_reuse_fraction is not None:
                c = self.issued[cached]
                life = c["exp"] - c["iat"]
                if c["exp"] - time.time() > self.imds_reuse_fraction * life:
                    return cached, c
        token, claims = self.issue(ident, resource)
        with self.lock:
            self.mi_cache[key] = token
        return token, claims

    def check_bearer(self, headers, audiences):
        """(claims, None) or (None, (code, message)) for an Authorization header."""
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return None, ("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
        with self.lock:
            claims = self.issued.get(auth[7:].strip())
        if claims is None:
            return None, ("Unauthorized", "AKV10032: Invalid issuer or signature.")
        if claims["exp"] <= time.time():
            return None, ("Unauthorized", "AKV10022: Token expired.")
        if claims["aud"] not in audiences:
            return None, ("Unauthorized", "AKV10022: Invalid audience. Expected %s, found: %s."
                          % (sorted(audiences)[0], claims["aud"]))
        return claims, None

    # ------------------------------------------------------------------ key vault
    def kv_set(self, name, value, content_type=None, enabled=True, exp=None, created=None):
        """Adds a version (like PUT /secrets/{name}); returns its version id."""
        with self.lock:
            now = int(time.time()) if created is None else created
            v = {"version": _secrets.token_hex(16), "value": value, "contentType": content_type,
                 "enabled": enabled, "created": now, "updated": now, "exp": exp, "tags": {}}
            self.secrets.setdefault(name, []).append(v)
            self.leaked.add(value)
            return v["version"]

    def kv_disable(self, name, version, enabled=False):
        with self.lock:
            for v in self.secrets[name]:
                if v["version"] == version:
                    v["enabled"] = enabled
                    v["updated"] = int(time.time())

    def kv_latest(self, name):
        with self.lock:
            vs = self.secrets.get(name)
            return vs[-1]["version"] if vs else None

    def _bundle(self, base, name, v, with_value=True):
        b = {"id": "%s/secrets/%s/%s" % (base, name, v["version"]),
             "attributes": {"enabled": v["enabled"], "created": v["created"], "updated": v["updated"],
                            "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
             "tags": v["tags"]}
        if v["exp"] is not None:
            b["attributes"]["exp"] = v["exp"]
        if v["contentType"] is not None:
            b["contentType"] = v["contentType"]
        if with_value:
            b["value"] = v["value"]
        return b

    # ------------------------------------------------------------------ management
    def cache_id(self, name, enterprise=True, group="rg"):
        if enterprise:
            return ("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Cache/redisEnterprise/%s"
                    "/databases/default" % (self.subscription, group, name))
        return "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Cache/redis/%s" % (
            self.subscription, group, name)

    def add_cache(self, name, enterprise=True, primary=None, secondary=None):
        rid = self.cache_id(name, enterprise)
        c = {"id": rid, "kind": "redisenterprise" if enterprise else "redis",
             "primary": primary or self._new_key(), "secondary": secondary or self._new_key()}
        with self.lock:
            self.caches[rid.lower()] = c
            self.leaked.update([c["primary"], c["secondary"]])
        return rid

    def _new_key(self):
        # Access keys look like 44 base64 characters.
        return base64.b64encode(_secrets.token_bytes(32)).decode()

    def keys(self, rid):
        with self.lock:
            c = self.caches[rid.lower()]
            return {"primaryKey": c["primary"], "secondaryKey": c["secondary"]}

    def regenerate(self, rid, which):
        """Regenerates `which` ("primary" | "secondary") at once; returns the new keys."""
        which = which.lower()
        with self.lock:
            c = self.caches[rid.lower()]
            c[which] = self._new_key()
            self.leaked.add(c[which])
            keys = {"primaryKey": c["primary"], "secondaryKey": c["secondary"]}
            callbacks = list(self.on_keys)
        for cb in callbacks:
            cb(rid, keys)
        return keys

    # ------------------------------------------------------------------ faults
    def inject(self, kind, status=None, body=None, headers=None, count=1, delay=0.0, drop=False,
               match=None):
        """The next `count` requests of `kind` ("imds", "arc", "appservice", "aad", "keyvault",
        "arm", "any") whose path contains `match` get this answer instead: a status with
        a JSON body (dict) or raw bytes, after `delay` seconds; drop=True closes the
        connection without answering."""
        with self.lock:
            self.faults.append(Fault(kind, status, body, headers, count, delay, drop, match))

    def clear_faults(self):
        with self.lock:
            self.faults = []

    def _take_fault(self, kind, path):
        with self.lock:
            for f in self.faults:
                if f.count > 0 and f.kind in (kind, "any") and (f.match is None or f.match in path):
                    f.count -= 1
                    return f
        return None

    def count(self, kind=None, path_contains=None, status=None):
        with self.lock:
            return len([r for r in self.requests if (kind is None or r.kind == kind)
                        and (path_contains is None or path_contains in r.path)
                        and (status is None or r.status == status)])

    # ------------------------------------------------------------------ HTTP
    def _handler_class(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "fake-azure/1"

            def log_message(self, *a):  # quiet
                pass

            def _reply(self, status, body=None, headers=None):
                if isinstance(body, (dict, list)):
                    data = json.dumps(body).encode()
                    ctype = "application/json; charset=utf-8"
                elif body is None:
                    data = b""
                    ctype = None
                else:
                    data = body if isinstance(body, bytes) else body.encode()
                    ctype = "application/json; charset=utf-8"
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-ms-request-id", new_guid())
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                if self._req is not None:
                    self._req.status = status

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _base(self):
                host = self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1]
                return "%s://%s" % (self.server.fake_scheme, host)

            def _dispatch(self):
                u = urllib.parse.urlsplit(self.path)
                path = urllib.parse.unquote(u.path)
                q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
                low = path.lower()
                if low.startswith("/metadata/identity/oauth2/token"):
                    kind = "arc" if fake.arc_key_dir else "imds"
                elif low.startswith("/msi/token"):
                    kind = "appservice"
                elif re.match(r"^/[^/]+/oauth2/v2\.0/token$", low):
                    kind = "aad"
                elif re.match(r"^/[^/]+/discovery/v2\.0/keys$", low):
                    kind = "jwks"
                elif low.startswith("/secrets"):
                    kind = "keyvault"
                elif low.startswith("/subscriptions/"):
                    kind = "arm"
                else:
                    kind = "other"
                self._req = Request(time.monotonic(), kind, self.command, path, q,
                                    {k: v for k, v in self.headers.items()
                                     if k.lower() not in ("authorization", "x-identity-header")})
                with fake.lock:
                    fake.requests.append(self._req)
                body = self._body()
                f = fake._take_fault(kind, path)
                if f:
                    if f.delay:
                        time.sleep(f.delay)
                    if f.drop:
                        self.close_connection = True
                        try:
                            self.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        return
                    if f.status is not None:
                        return self._reply(f.status, f.body, f.headers)
                if kind == "jwks":
                    return self._reply(200, fake.jwks())
                handler = {"imds": self._imds, "arc": self._arc, "appservice": self._appservice, "aad": self._aad,
                           "keyvault": self._keyvault, "arm": self._arm}.get(kind)
                if not handler:
                    return self._reply(404, {"error": {"code": "NotFound", "message": "no such endpoint"}})
                return handler(path, q, body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

            # ---------------- IMDS (numbers as strings)
            def _imds(self, path, q, body):
                if self.headers.get("Metadata", "").lower() != "true":
                    return self._reply(400, {"error": "invalid_request",
                                             "error_description": "Required metadata header not specified"})
                if "api-version" not in q:
                    return self._reply(400, {"error": "invalid_request",
                                             "error_description": "Required query variable 'api-version' is missing"})
                if not q.get("resource"):
                    return self._reply(400, {"error": "invalid_request",
                                             "error_description": "Required audience parameter not specified"})
                ident = fake._find_mi(q)
                if ident is None:
                    return self._reply(400, {"error": "invalid_request", "error_description": "Identity not found"})
                token, c = fake._managed_token(ident, q["resource"])
                life = c["exp"] - c["iat"]
                return self._reply(200, {
                    "access_token": token, "refresh_token": "", "client_id": ident.client_id,
                    "expires_in": str(life), "expires_on": str(c["exp"]), "ext_expires_in": str(life),
                    "not_before": str(c["nbf"]), "resource": q["resource"], "token_type": "Bearer"})

            # ---------------- Azure Arc agent (himds): IMDS with a challenge file
            def _arc(self, path, q, body):
                if self.headers.get("Metadata", "").lower() != "true":
                    return self._reply(400, {"error": "invalid_request",
                                             "error_description": "Required metadata header not specified"})
                if q.get("api-version") not in ARC_API_VERSIONS or not q.get("resource"):
                    # Guess: refused like IMDS refuses a missing parameter.
                    return self._reply(400, {"error": "invalid_request",
                                             "error_description": "api-version and resource are required"})
                auth = self.headers.get("Authorization") or ""
                with fake.lock:
                    # Guess: a key answers one challenge; the agent removes its file then.
                    used = fake.arc_keys.pop(auth[6:], None) if auth.startswith("Basic ") else None
                if used is None:
                    # Missing or wrong key (guess: the same as missing): a new challenge.
                    return self._reply(401, {"error": "unauthorized_client",
                                             "error_description": "Authorization header is missing or invalid"},
                                       {"WWW-Authenticate": "Basic realm=%s" % fake.arc_challenge()})
                try:
                    os.unlink(used)
                except OSError:
                    pass
                # Guess: the agent has only the machine's identity and refuses selectors.
                if any(k in q for k in ("client_id", "object_id", "msi_res_id", "mi_res_id")):
                    return self._reply(400, {"error": "invalid_request", "error_description": "Identity not found"})
                ident = fake._find_mi({})
                if ident is None:
                    return self._reply(400, {"error": "invalid_request", "error_description": "Identity not found"})
                token, c = fake._managed_token(ident, q["resource"])
                life = c["exp"] - c["iat"]
                return self._reply(200, {
                    "access_token": token, "expires_in": str(life), "expires_on": str(c["exp"]),
                    "ext_expires_in": str(life), "not_before": str(c["nbf"]), "refresh_token": "",
                    "resource": q["resource"], "token_type": "Bearer"})

            # ---------------- App Service (2019-08-01)
            def _appservice(self, path, q, body):
                # Guess (undocumented): a wrong or missing header is refused with 401.
                if self.headers.get("X-IDENTITY-HEADER") != fake.identity_header:
                    return self._reply(401, {"statusCode": 401, "message": "Unauthorized request"})
                if q.get("api-version") != "2019-08-01" or not q.get("resource"):
                    return self._reply(400, {"statusCode": 400,
                                             "message": "api-version 2019-08-01 and resource are required"})
                ident = fake._find_mi(q)
                if ident is None:
                    return self._reply(400, {"statusCode": 400, "message": "Unable to load the proper Managed Identity."})
                token, c = fake._managed_token(ident, q["resource"])
                return self._reply(200, {"access_token": token, "expires_on": str(c["exp"]),
                                         "resource": q["resource"], "token_type": "Bearer",
                                         "client_id": ident.client_id})

            # ---------------- Entra ID v2 token endpoint (integers)
            def _aad_error(self, status, error, code, text):
                return self._reply(status, {
                    "error": error, "error_description": "AADSTS%d: %s Trace ID: %s Correlation ID: %s "
                    "Timestamp: %s" % (code, text, new_guid(), new_guid(),
                                       datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M:%SZ")),
                    "error_codes": [code], "timestamp": datetime.datetime.utcnow().isoformat() + "Z",
                    "trace_id": new_guid(), "correlation_id": new_guid()})

            def _aad(self, path, q, body):
                tenant = path.split("/")[1]
                if self.command != "POST":
                    return self._reply(405, {"error": "invalid_request"})
                if tenant.lower() != fake.tenant.lower():
                    return self._aad_error(400, "invalid_request", 90002,
                                           "Tenant '%s' not found. Check to make sure you have the correct tenant ID." % tenant)
                form = {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()}
                if form.get("grant_type") != "client_credentials":
                    return self._aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
                scope = form.get("scope", "")
                if not scope.endswith("/.default"):
                    return self._aad_error(400, "invalid_scope", 70011,
                                           "The provided value for the input parameter 'scope' is not valid.")
                with fake.lock:
                    app = fake.apps.get(form.get("client_id", ""))
                if app is None:
                    return self._aad_error(400, "unauthorized_client", 700016,
                                           "Application with identifier '%s' was not found in the directory."
                                           % form.get("client_id", ""))
                if "client_secret" in form:
                    if form["client_secret"] not in app.secrets:
                        return self._aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
                elif form.get("client_assertion_type") == ASSERTION_TYPE and form.get("client_assertion"):
                    c = jwt_claims(form["client_assertion"])
                    if c is None:
                        return self._aad_error(400, "invalid_client", 50027, "JWT token is invalid or malformed.")
                    if c.get("exp", 0) <= time.time():
                        return self._aad_error(400, "invalid_client", 700024,
                                               "Client assertion is not within its valid time range.")
                    aud = c.get("aud")
                    auds = aud if isinstance(aud, list) else [aud]
                    if FEDERATED_AUDIENCE not in auds or (c.get("iss"), c.get("sub")) not in app.federated:
                        return self._aad_error(400, "invalid_client", 70021,
                                               "No matching federated identity record found for presented assertion.")
                else:
                    return self._aad_error(400, "invalid_client", 7000218,
                                           "The request body must contain the following parameter: "
                                           "'client_assertion' or 'client_secret'.")
                token, cl = fake.issue(app, scope, appid=app.client_id)
                life = cl["exp"] - cl["iat"]
                return self._reply(200, {"token_type": "Bearer", "expires_in": life,
                                         "ext_expires_in": life, "access_token": token})

            # ---------------- Key Vault
            def _kv_error(self, status, code, message, inner=None, headers=None):
                e = {"code": code, "message": message}
                if inner:
                    e["innererror"] = {"code": inner}
                return self._reply(status, {"error": e}, headers)

            def _keyvault(self, path, q, body):
                base = self._base()
                challenge = {"WWW-Authenticate": 'Bearer authorization="%s/%s", resource="https://vault.azure.net"'
                             % (fake.url, fake.tenant)}
                claims, why = fake.check_bearer(self.headers, {"https://vault.azure.net"})
                if claims is None:
                    return self._kv_error(401, why[0], why[1], headers=challenge)
                av = q.get("api-version")
                if av not in KV_API_VERSIONS:
                    return self._kv_error(400, "BadParameter",
                                          "The specified version (%s) is not recognized. Consider using the "
                                          "latest supported version (2025-07-01)." % av)
                if fake.kv_allowed is not None and claims["oid"] not in fake.kv_allowed:
                    return self._kv_error(403, "Forbidden",
                                          "Caller is not authorized to perform action on resource. If role "
                                          "assignments, deny assignments or role definitions were changed recently, "
                                          "please observe propagation time. Caller: appid=%s;oid=%s Action: "
                                          "'Microsoft.KeyVault/vaults/secrets/getSecret/action'"
                                          % (claims["appid"], claims["oid"]), "ForbiddenByRbac")
                parts = [p for p in path.split("/") if p][1:]   # after "secrets"
                if not parts:
                    return self._kv_error(405, "MethodNotAllowed", "list all secrets is not implemented here")
                name = parts[0]
                with fake.lock:
                    versions = list(fake.secrets.get(name, []))
                if self.command == "PUT" and len(parts) == 1:
                    try:
                        p = json.loads(body)
                    except ValueError:
                        return self._kv_error(400, "BadParameter", "Invalid JSON body")
                    if not isinstance(p.get("value"), str):
                        return self._kv_error(400, "BadParameter", "Property value is required")
                    a = p.get("attributes") or {}
                    ver = fake.kv_set(name, p["value"], p.get("contentType"), a.get("enabled", True), a.get("exp"))
                    v = next(x for x in fake.secrets[name] if x["version"] == ver)
                    return self._reply(200, fake._bundle(base, name, v))
                if not versions:
                    return self._kv_error(404, "SecretNotFound",
                                          "A secret with (name/id) %s was not found in this key vault. If you "
                                          "recently deleted this secret you may be able to recover it using the "
                                          "correct recovery command." % name)
                if len(parts) >= 2 and parts[1] == "versions" and self.command == "GET":
                    return self._kv_versions(base, name, versions, q)
                if self.command == "PATCH" and len(parts) == 2:
                    v = next((x for x in versions if x["version"] == parts[1]), None)
                    if v is None:
                        return self._kv_error(404, "SecretNotFound", "A secret with (name/id) %s/%s was not found "
                                              "in this key vault." % (name, parts[1]))
                    p = json.loads(body or b"{}")
                    if "enabled" in (p.get("attributes") or {}):
                        fake.kv_disable(name, parts[1], bool(p["attributes"]["enabled"]))
                    if "contentType" in p:
                        v["contentType"] = p["contentType"]
                    return self._reply(200, fake._bundle(base, name, v, with_value=False))
                if self.command != "GET":
                    return self._kv_error(405, "MethodNotAllowed", "not implemented")
                if len(parts) == 1 or parts[1] == "":
                    v = versions[-1]
                else:
                    v = next((x for x in versions if x["version"] == parts[1]), None)
                    if v is None:
                        return self._kv_error(404, "SecretNotFound",
                                              "A secret with (name/id) %s/%s was not found in this key vault."
                                              % (name, parts[1]))
                if not v["enabled"]:
                    return self._kv_error(403, "Forbidden", "Operation get is not allowed on a disabled secret.",
                                          "SecretDisabled")
                return self._reply(200, fake._bundle(base, name, v))

            def _kv_versions(self, base, name, versions, q):
                try:
                    maxr = int(q.get("maxresults") or fake.kv_page_size)
                except ValueError:
                    maxr = 0
                if not 1 <= maxr <= 25:
                    return self._kv_error(400, "BadParameter", "maxresults must be between 1 and 25")
                # Undocumented order: the fake lists by version id, i.e. in no useful order.
                ordered = sorted(versions, key=lambda v: v["version"])
                start = 0
                tok = q.get("$skiptoken")
                if tok:
                    try:
                        start = json.loads(b64url_decode(tok))["NextMarker"]
                    except Exception:  # noqa: BLE001
                        return self._kv_error(400, "BadParameter", "invalid $skiptoken")
                page = ordered[start:start + maxr]
                out = {"value": [fake._bundle(base, name, v, with_value=False) for v in page], "nextLink": None}
                if start + maxr < len(ordered):
                    skip = b64url(json.dumps({"NextMarker": start + maxr}).encode())
                    host = self.headers.get("Host") or ""
                    if ":" not in host.rsplit("]", 1)[-1]:
                        host += ":443"
                    out["nextLink"] = "%s://%s/secrets/%s/versions?api-version=%s&$skiptoken=%s&maxresults=%d" % (
                        self.server.fake_scheme, host, name, q.get("api-version"), skip, maxr)
                return self._reply(200, out)

            # ---------------- Resource Manager
            def _arm_error(self, status, code, message, headers=None):
                return self._reply(status, {"error": {"code": code, "message": message}}, headers)

            def _arm(self, path, q, body):
                claims, why = fake.check_bearer(self.headers, {"https://management.azure.com",
                                                               "https://management.core.windows.net"})
                if claims is None:
                    code = "AuthenticationFailed" if "missing" in why[1] else "InvalidAuthenticationToken"
                    return self._arm_error(401, code, why[1], {
                        "WWW-Authenticate": 'Bearer authorization_uri="%s/%s", error="invalid_token", '
                                            'error_description="The access token is invalid."' % (fake.url, fake.tenant)})
                m = re.match(r"^(/subscriptions/[^/]+/providers/Microsoft\.Cache/locations/[^/]+/operationsStatus/)([^/]+)$",
                             path, re.I)
                if m and self.command == "GET":
                    return self._operation(m.group(2))
                m = re.match(r"^(/subscriptions/.+?)/(listKeys|regenerateKey)$", path, re.I)
                if not m or self.command != "POST":
                    return self._arm_error(404, "InvalidResourceType", "The resource type could not be found.")
                rid, action = m.group(1), m.group(2).lower()
                av = q.get("api-version")
                if not av:
                    return self._arm_error(400, "MissingApiVersionParameter",
                                           "The api-version query parameter (?api-version=) is required for all requests.")
                with fake.lock:
                    c = fake.caches.get(rid.lower())
                kind = "redisenterprise" if "/redisenterprise/" in rid.lower() else "redis"
                if av not in ARM_API_VERSIONS[kind]:
                    return self._arm_error(400, "NoRegisteredProviderFound",
                                           "No registered resource provider found for location '%s' and API version "
                                           "'%s' for type '%s'." % (fake.location, av, kind))
                if fake.mgmt_allowed is not None and claims["oid"] not in fake.mgmt_allowed:
                    return self._arm_error(403, "AuthorizationFailed",
                                           "The client '%s' with object id '%s' does not have authorization to perform "
                                           "action 'Microsoft.Cache/%s/%s/action' over scope '%s' or the scope is "
                                           "invalid. If access was recently granted, please refresh your credentials."
                                           % (claims["appid"], claims["oid"], kind, action, rid))
                if c is None:
                    tail = rid.split("/providers/", 1)[-1]
                    return self._arm_error(404, "ResourceNotFound",
                                           "The Resource '%s' under resource group '%s' was not found. For more details "
                                           "please go to https://aka.ms/ARMResourceNotFoundFix"
                                           % (tail, rid.split("/")[4] if len(rid.split("/")) > 4 else "?"))
                if action == "listkeys":
                    return self._reply(200, fake.keys(rid))
                try:
                    kt = json.loads(body).get("keyType")
                except (ValueError, AttributeError):
                    kt = None
                if kt not in ("Primary", "Secondary"):
                    return self._arm_error(400, "InvalidRequestContent",
                                           "The request content was invalid: keyType must be Primary or Secondary.")
                if kind == "redisenterprise" and fake.lro:
                    op = new_guid()
                    with fake.lock:
                        fake.operations[op] = {"start": time.time(), "status": "InProgress"}
                    t = threading.Timer(fake.lro_seconds, fake._finish_operation, (op, rid, kt))
                    t.daemon = True
                    t.start()
                    base = self._base()
                    opath = "/subscriptions/%s/providers/Microsoft.Cache/locations/%s" % (fake.subscription, fake.location)
                    return self._reply(202, None, {
                        "Azure-AsyncOperation": "%s%s/operationsStatus/%s?api-version=%s" % (base, opath, op, av),
                        "Location": "%s%s/operationResults/%s?api-version=%s" % (base, opath, op, av),
                        "Retry-After": "1"})
                return self._reply(200, fake.regenerate(rid, kt))

            def _operation(self, op):
                with fake.lock:
                    o = fake.operations.get(op)
                if o is None:
                    return self._arm_error(404, "ResourceNotFound", "operation not found")
                start = datetime.datetime.utcfromtimestamp(o["start"]).isoformat() + "Z"
                out = {"id": "/subscriptions/%s/providers/Microsoft.Cache/locations/%s/operationsStatus/%s"
                             % (fake.subscription, fake.location, op),
                       "name": op, "startTime": start, "status": o["status"]}
                if o["status"] != "InProgress":
                    out["endTime"] = datetime.datetime.utcfromtimestamp(o["end"]).isoformat() + "Z"
                return self._reply(200, out)

        return Handler

    def _finish_operation(self, op, rid, key_type):
        self.regenerate(rid, key_type)
        with self.lock:
            self.operations[op].update(status="Succeeded", end=time.time())


def main():
    import argparse
    ap = argparse.ArgumentParser(description="Run the fake Azure endpoints on loopback.")
    ap.add_argument("--lifetime", type=int, default=3600, help="token lifetime in seconds")
    ap.add_argument("--signed", action="store_true",
                    help="sign tokens RS256 (public key at /<tenant>/discovery/v2.0/keys)")
    ap.add_argument("--tls-dir", help="make a test CA here and also serve https")
    ap.add_argument("--secret", action="append", default=[], metavar="NAME=VALUE",
                    help="a Key Vault secret to create")
    args = ap.parse_args()
    tls = make_test_ca(args.tls_dir)[1:] if args.tls_dir else None
    fake = AzureFake(token_lifetime=args.lifetime, tls=tls, signed_tokens=args.signed).start()
    for s in args.secret:
        n, v = s.split("=", 1)
        fake.kv_set(n, v)
    rid = fake.add_cache("cache1")
    print("http  %s  (IMDS, App Service %s, Entra /%s/oauth2/v2.0/token, Key Vault, ARM)"
          % (fake.url, fake.app_service_endpoint, fake.tenant))
    if tls:
        print("https %s  (CA %s/ca.pem)" % (fake.https_url, args.tls_dir))
    print("X-IDENTITY-HEADER %s" % fake.identity_header)
    print("cache %s" % rid)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.close()


if __name__ == "__main__":
    main()
