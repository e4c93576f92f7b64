"""A fake HashiCorp Vault for the tests: Python 3 stdlib only (http.server, ssl, threading).

It serves, on a loopback port, over HTTP or HTTPS, what the `vault` source uses, with
Vault's own envelopes, status codes and error texts as Vault's public HTTP API
documentation describes them (the behaviours below are numbered by topic, §1 to §n, and
the code's comments refer to those numbers):

- common (§1): /v1/ routes, X-Vault-Token (or Authorization: Bearer), X-Vault-Namespace
  and namespace path prefixes, LIST and ?list=true, the success envelope in Vault's field
  order with a trailing newline, {"errors":[...]} for every error, 204 for a nil body,
  Cache-Control: no-store, chunked bodies over 2 KiB (Go's net/http), 403 texts for a
  missing, invalid and under-privileged token, 404 "no handler for route", 503 sealed,
  307 from a standby, 429 rate-limit quota with optional Retry-After.
- KV v2 (§2): data/ (read, ?version=, write with check-and-set and its exact 400s,
  PATCH, soft delete), delete/ undelete/ destroy/, metadata/ (read, list, write, delete),
  config, max_versions, delete_version_after; deleted and destroyed versions answer 404
  with the whole envelope (no trailing newline) like the kv plugin does.
- KV v1 (§3).
- database static roles (§4): static-creds/ with a real-time ttl, static-roles/,
  rotate-role/, rotation from a queue checked every `tick` seconds (Vault: 5 s), period
  and schedule roles (a schedule is a test stand-in: a boundary every
  `schedule_period` seconds), optionally with the ttl-reset bug of Vault issue #31918.
- tokens and logins (§5): lookup-self, renew-self (increment, max TTL cap with Vault's
  warning, "past the max TTL, cannot renew"), revoke-self, AppRole and Kubernetes login
  with their 400/403 texts, token TTL / max TTL / num_uses, ACL policies with path globs.
- error injection per path (403, 404, 429 + Retry-After, 500, 503 sealed, 412, 307,
  delays, hangs, truncated / cut / malformed / oversized / wrong-shaped bodies, dropped
  connections), a request log and counters (requests, TCP connections, TLS handshakes).

Use it in-process (FakeVault(...).start()) or as a program:
    /usr/bin/python3 vault_fake.py [--tls-cert C --tls-key K] [--port 0] [--root-token T]
prints "PORT <n>" and serves until SIGTERM (or, with --exit-on-stdin-eof, until stdin
closes). Either way every public
method of FakeVault can also be called over HTTP: POST /_fake/<method> with the keyword
arguments as a JSON object answers {"result": ...} (for tests written in C).

It never prints a token, secret id, JWT or password.
"""
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import ssl
import string
import sys
import threading
import time
import uuid

SYSTEM_MAX_TTL = 2764800          # 768h: Vault's default max lease TTL
KV1_DEFAULT_LEASE = 2764800
CHUNK_THRESHOLD = 2048            # Go's net/http buffers this much before chunking

PERMISSION_DENIED_1 = "1 error occurred:\n\t* permission denied\n\n"
PERMISSION_DENIED_INVALID = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"


# --------------------------------------------------------------------------- helpers

def go_json(obj, newline=True):
    """JSON as Go's encoding/json writes it: compact, UTF-8, <>& escaped."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    s = s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (s + ("\n" if newline else "")).encode("utf-8")


def sorted_map(d):
    """A Go map[string]interface{} marshals with its keys sorted."""
    if isinstance(d, dict):
        return {k: sorted_map(d[k]) for k in sorted(d)}
    return d


def rfc3339nano(t=None, local=False):
    """time.Time.Format(time.RFC3339Nano): trailing zeros of the fraction trimmed, Z for UTC."""
    t = time.time() if t is None else t
    dt = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    if local:
        dt = dt.astimezone()
    frac = ("%09d" % (int(round((t - int(t)) * 1e9)) % 1000000000)).rstrip("0")
    off = dt.utcoffset() or datetime.timedelta(0)
    if off == datetime.timedelta(0):
        tz = "Z"
    else:
        mins = int(off.total_seconds() // 60)
        sign = "+" if mins >= 0 else "-"
        tz = "%s%02d:%02d" % (sign, abs(mins) // 60, abs(mins) % 60)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ("." + frac if frac else "") + tz


def go_duration(seconds):
    """time.Duration.String() for whole seconds: "1h0m0s", "10m0s", "45s"."""
    seconds = int(seconds)
    if seconds == 0:
        return "0s"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return "%dh%dm%ds" % (h, m, s)
    if m:
        return "%dm%ds" % (m, s)
    return "%ds" % s


_DUR_RE = re.compile(r"^(\d+)(ms|s|m|h|d)?$")


def parse_duration(v):
    """A Vault duration parameter (integer seconds or "30s", "5m", "1h") in seconds."""
    if isinstance(v, bool):
        raise ValueError(v)
    if isinstance(v, (int, float)):
        return int(v)
    m = _DUR_RE.match(str(v).strip())
    if not m:
        total = 0
        for num, unit in re.findall(r"(\d+)(h|m|s)", str(v)):
            total += int(num) * {"h": 3600, "m": 60, "s": 1}[unit]
        if total or v in ("0s",):
            return total
        raise ValueError(v)
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def gen_password():
    """Like Vault's default password policy: 20 characters, letters, digits and a dash."""
    alphabet = string.ascii_letters + string.digits
    while True:
        p = "".join(secrets.choice(alphabet) for _ in range(19))
        p = p[:4] + "-" + p[4:]
        if any(c.islower() for c in p) and any(c.isupper() for c in p) and any(c.isdigit() for c in p):
            return p


def gen_token(prefix="hvs."):
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(18)).decode().rstrip("=")


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


class VaultError(Exception):
    def __init__(self, status, errors=None, headers=None, raw=None):
        super().__init__(status)
        self.status = status
        self.errors = [] if errors is None else errors
        self.headers = headers or {}
        self.raw = raw            # a raw body (bytes) instead of {"errors":...}


# --------------------------------------------------------------------------- state

class Token:
    def __init__(self, fv, policies, ttl, max_ttl=0, renewable=True, namespace="", path="auth/token/create",
                 meta=None, num_uses=0, token_type="service", display_name="token", explicit_max_ttl=0,
                 period=0, root=False):
        now = time.time()
        self.id = gen_token("hvs." if token_type == "service" else "hvb.")
        if root:
            self.id = gen_token("hvs.")
        self.accessor = b64url(secrets.token_bytes(18))
        self.policies = sorted(set(policies))
        self.creation_time = int(now)
        self.creation_ttl = int(ttl)
        self.ttl = int(ttl)
        self.issue = now
        self.expire_at = now + ttl if ttl else None
        cap = [x for x in (max_ttl, explicit_max_ttl) if x]
        if not ttl:
            self.max_expire_at = None
        else:
            self.max_expire_at = now + (min(cap) if cap else SYSTEM_MAX_TTL)
        self.explicit_max_ttl = int(explicit_max_ttl)
        self.renewable = bool(renewable) and token_type == "service" and bool(ttl)
        self.namespace = namespace
        self.path = path
        self.meta = meta
        self.num_uses = int(num_uses)
        self.type = token_type
        self.display_name = display_name
        self.period = int(period)
        self.entity_id = "" if root else str(uuid.uuid4())
        self.last_renewal = None
        self.orphan = path != "auth/token/create"
        self.revoked = False

    def remaining(self, now=None):
        if self.expire_at is None:
            return 0
        now = time.time() if now is None else now
        return max(0, int(round(self.expire_at - now)))

    def valid(self, now=None):
        if self.revoked:
            return False
        now = time.time() if now is None else now
        return self.expire_at is None or now < self.expire_at

    def auth_block(self, lease):
        return {
            "client_token": self.id,
            "accessor": self.accessor,
            "policies": self.policies,
            "token_policies": self.policies,
            "metadata": self.meta,
            "lease_duration": int(lease),
            "renewable": self.renewable,
            "entity_id": self.entity_id,
            "token_type": self.type,
            "orphan": self.orphan,
            "mfa_requirement": None,
            "num_uses": self.num_uses,
        }


class Mount:
    def __init__(self, kind, path, namespace, version=None, options=None):
        self.kind = kind                  # kv | database | approle | kubernetes
        self.path = path                  # without slashes
        self.namespace = namespace
        self.version = version            # kv: 1 or 2
        self.accessor = "%s_%s" % (kind, secrets.token_hex(4))
        # kv2
        self.keys = {}
        self.max_versions = 0
        self.cas_required = False
        self.delete_version_after = 0
        # kv1
        self.kv1 = {}
        # database
        self.roles = {}
        # approle / kubernetes
        self.auth_roles = {}
        self.options = options or {}


class Injection:
    def __init__(self, path, kind, times=None, method=None, **params):
        self.path = re.compile(path)
        self.kind = kind
        self.times = times
        self.method = method
        self.params = params
        self.hits = 0


# --------------------------------------------------------------------------- the server

class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, handler, fake):
        self.fake = fake
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = super().get_request()
        self.fake._on_connection()
        return sock, addr

    def handle_error(self, request, client_address):
        pass   # a client that went away; never print (no secrets in output)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = ""
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus the
        # client's delayed ACK would add 40 ms to every answer.
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
                self.server.fake._on_handshake()
            except (ssl.SSLError, OSError):
                self.close_connection = True
                raise

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, OSError):
            pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 32 * 1024 * 1024:
            raise VaultError(413, ["request body too large"])
        return self.rfile.read(n) if n else b""

    def _dispatch(self):
        fake = self.server.fake
        try:
            body = self._body()
        except VaultError as e:
            self._send_error(e)
            return
        try:
            status, headers, payload = fake._handle(self.command, self.path, self.headers, body, self)
        except VaultError as e:
            self._send_error(e)
            return
        except _Drop:
            self.close_connection = True
            return
        self._send(status, headers, payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_LIST = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def _send_error(self, e):
        if e.raw is not None:
            payload = e.raw
        else:
            payload = go_json({"errors": e.errors})
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        headers.update(e.headers)
        self._send(e.status, headers, payload)

    def _send(self, status, headers, payload, chunked=None):
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for k, v in headers.items():
            self.send_header(k, v)
        if chunked is None:
            chunked = payload is not None and len(payload) > CHUNK_THRESHOLD
        if payload is None or status == 204:
            if status != 204:
                self.send_header("Content-Length", "0")
            self.end_headers()
            self.wfile.flush()
            return
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(payload), 16384):
                part = payload[i:i + 16384]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        self.wfile.flush()


class _Drop(Exception):
    """Close the connection without an answer."""


class FakeVault:
    """One fake Vault server. Public methods are the test's controls."""

    def __init__(self, host="127.0.0.1", port=0, tls_cert=None, tls_key=None, root_token=None, tick=5.0,
                 tls_client_ca=None):
        self.host = host
        self._lock = threading.RLock()
        self.tick = tick
        self.sealed = False
        self.standby_redirect = None        # base URL of the active node: answer 307
        self.rate_limit_headers = False
        self.namespaces = {""}
        self.mounts = {}                    # (namespace, path) -> Mount
        self.tokens = {}                    # id -> Token
        self.policies = {
            "default": [("auth/token/lookup-self", {"read"}), ("auth/token/renew-self", {"update"}),
                        ("auth/token/revoke-self", {"update"}), ("sys/capabilities-self", {"update"})],
        }
        self.requests = []
        self.connections = 0
        self.handshakes = 0
        self.injections = []
        self._jwt_key = secrets.token_bytes(32)
        self._stop = threading.Event()
        self._release = threading.Event()
        root = Token(self, ["root"], 0, root=True, path="auth/token/root", display_name="root")
        if root_token:
            root.id = root_token
        self.root_token = root.id
        self.tokens[root.id] = root
        self.kv2_enable("secret")           # like `vault server -dev`
        self.tls = bool(tls_cert)
        self._srv = _Server((host, port), _Handler, self)
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_cert, tls_key)
            if tls_client_ca:
                # A listener with tls_require_and_verify_client_cert = true.
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(tls_client_ca)
            self._srv.socket = ctx.wrap_socket(self._srv.socket, server_side=True,
                                               do_handshake_on_connect=False)
        self.port = self._srv.server_address[1]
        self._threads = []

    # ----------------------------------------------------------------- lifecycle
    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.tls else "http", self.host, self.port)

    def start(self):
        t = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05},
                             name="fake-vault", daemon=True)
        t.start()
        q = threading.Thread(target=self._rotation_queue, name="fake-vault-queue", daemon=True)
        q.start()
        self._threads = [t, q]
        return self

    def stop(self):
        self._stop.set()
        self._release.set()
        self._srv.shutdown()
        self._srv.server_close()
        for t in self._threads:
            t.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _on_connection(self):
        with self._lock:
            self.connections += 1

    def _on_handshake(self):
        with self._lock:
            self.handshakes += 1

    # ----------------------------------------------------------------- controls: general
    def seal(self):
        self.sealed = True

    def unseal(self):
        self.sealed = False

    def set_standby(self, active_url=None):
        """Answer every request with a 307 to active_url + the same path (None: active)."""
        self.standby_redirect = active_url

    def namespace_create(self, ns):
        with self._lock:
            self.namespaces.add(ns.strip("/"))

    def policy(self, name, rules):
        """rules: {path glob: [capabilities]}; globs as Vault's: a trailing * and + segments."""
        with self._lock:
            self.policies[name] = [(p, set(c)) for p, c in rules.items()]

    def token_create(self, policies=("default",), ttl=0, max_ttl=0, renewable=True, namespace="",
                     explicit_max_ttl=0, num_uses=0, token_type="service", no_default_policy=False):
        pols = list(policies) + ([] if no_default_policy or "root" in policies else ["default"])
        t = Token(self, pols, ttl, max_ttl=max_ttl, renewable=renewable, namespace=namespace.strip("/"),
                  num_uses=num_uses, token_type=token_type, explicit_max_ttl=explicit_max_ttl)
        with self._lock:
            self.tokens[t.id] = t
        return t.id

    def token_revoke(self, token):
        with self._lock:
            t = self.tokens.get(token)
            if t:
                t.revoked = True

    def token_info(self, token):
        """What the test may know about a token (never printed by the fake)."""
        with self._lock:
            t = self.tokens.get(token)
            if not t:
                return None
            return {"ttl": t.remaining(), "valid": t.valid(), "renewable": t.renewable,
                    "policies": t.policies, "path": t.path, "namespace": t.namespace,
                    "last_renewal": t.last_renewal}

    def tokens_issued(self, path_prefix="auth/"):
        """How many tokens logins issued (path auth/<mount>/login)."""
        with self._lock:
            return sum(1 for t in self.tokens.values() if t.path.startswith(path_prefix) and t.path.endswith("/login"))

    def expire_tokens(self, path_prefix=""):
        """Makes every matching token expire now (as if its TTL ran out)."""
        with self._lock:
            for t in self.tokens.values():
                if t.path.startswith(path_prefix) and t.id != self.root_token:
                    t.expire_at = time.time() - 1

    def inject(self, path, kind, times=None, method=None, **params):
        """Error injection for requests whose URL path (with /v1/, without the query) matches
        the regex `path`. kinds: status (status=, errors=, headers=), 403, 403-invalid, 404,
        429 (retry_after=), 500, 503 (sealed), 412, redirect (location= or to=base URL),
        ("{token}" in an error becomes the request's token), delay (seconds=, then served normally), hang (seconds=, no answer; released by
        release() or stop()), truncated, cut, malformed, wrong_shape, oversized (size=,
        chunked=), close. times=None: every matching request; n: the next n."""
        inj = Injection(path, kind, times, method, **params)
        with self._lock:
            self.injections.append(inj)
        return len(self.injections) - 1

    def clear_injections(self):
        with self._lock:
            self.injections = []
        self.release()

    def release(self):
        """Lets hung requests go (they then get no answer and are closed)."""
        self._release.set()
        self._release = threading.Event()

    def reset_counts(self):
        with self._lock:
            self.requests = []
            self.connections = 0
            self.handshakes = 0

    def count(self, path=".*", method=None, since=0.0):
        """Requests so far whose URL path matches the regex (optionally one method)."""
        rx = re.compile(path)
        with self._lock:
            return sum(1 for r in self.requests if rx.search(r["path"]) and (method is None or r["method"] == method)
                       and r["t"] >= since)

    def request_log(self):
        with self._lock:
            return [dict(r) for r in self.requests]

    def stats(self):
        with self._lock:
            return {"requests": len(self.requests), "connections": self.connections, "handshakes": self.handshakes}

    # ----------------------------------------------------------------- controls: KV
    def _mount(self, path, namespace=""):
        with self._lock:
            m = self.mounts.get((namespace.strip("/"), path.strip("/")))
        if not m:
            raise KeyError("no mount %s in namespace %r" % (path, namespace))
        return m

    def kv2_enable(self, mount, namespace="", max_versions=0, cas_required=False, delete_version_after=0):
        m = Mount("kv", mount.strip("/"), namespace.strip("/"), version=2)
        m.max_versions = max_versions
        m.cas_required = cas_required
        m.delete_version_after = delete_version_after
        with self._lock:
            self.mounts[(m.namespace, m.path)] = m

    def kv1_enable(self, mount, namespace=""):
        m = Mount("kv", mount.strip("/"), namespace.strip("/"), version=1)
        with self._lock:
            self.mounts[(m.namespace, m.path)] = m

    def kv2_put(self, mount, path, data, cas=None, namespace=""):
        """Writes a new version as `vault kv put` would; returns its number."""
        m = self._mount(mount, namespace)
        with self._lock:
            return self._kv2_write(m, path.strip("/"), data, cas)

    def kv2_delete(self, mount, path, versions=None, namespace=""):
        """Soft-deletes the given versions (default: the latest)."""
        m = self._mount(mount, namespace)
        with self._lock:
            k = m.keys[path.strip("/")]
            for v in versions or [k["current_version"]]:
                if v in k["versions"] and not k["versions"][v]["destroyed"]:
                    k["versions"][v]["deletion_time"] = rfc3339nano()
            k["updated_time"] = rfc3339nano()

    def kv2_undelete(self, mount, path, versions, namespace=""):
        m = self._mount(mount, namespace)
        with self._lock:
            k = m.keys[path.strip("/")]
            for v in versions:
                if v in k["versions"] and not k["versions"][v]["destroyed"]:
                    k["versions"][v]["deletion_time"] = ""

    def kv2_destroy(self, mount, path, versions, namespace=""):
        m = self._mount(mount, namespace)
        with self._lock:
            k = m.keys[path.strip("/")]
            for v in versions:
                if v in k["versions"]:
                    k["versions"][v]["destroyed"] = True
                    k["versions"][v]["data"] = None

    def kv2_current_version(self, mount, path, namespace=""):
        m = self._mount(mount, namespace)
        with self._lock:
            k = m.keys.get(path.strip("/"))
            return k["current_version"] if k else 0

    def kv1_put(self, mount, path, data, namespace=""):
        m = self._mount(mount, namespace)
        with self._lock:
            m.kv1[path.strip("/")] = dict(data)

    # ----------------------------------------------------------------- controls: database
    def database_enable(self, mount="database", namespace=""):
        m = Mount("database", mount.strip("/"), namespace.strip("/"))
        with self._lock:
            self.mounts[(m.namespace, m.path)] = m

    def static_role(self, mount, name, username, rotation_period=None, rotation_schedule=None,
                    schedule_period=None, rotation_window=0, password=None, ttl_reset_bug=False,
                    namespace="", on_rotate=None):
        """Creates a static role; like Vault, creating it rotates the password at once.
        A schedule role needs schedule_period (seconds between the test's boundaries) next
        to the rotation_schedule text it echoes. on_rotate(username, password) runs after
        each rotation (in-process use: set the password in Redis, RESETPASS-style)."""
        m = self._mount(mount, namespace)
        if rotation_period is not None and rotation_period < 5:
            raise VaultError(400, ["rotation_period must be 5 seconds or more"])
        role = {"username": username, "rotation_period": rotation_period, "rotation_schedule": rotation_schedule,
                "schedule_period": schedule_period, "rotation_window": rotation_window,
                "password": password, "last_vault_rotation": None, "lvr_t": None, "next_rotation": None,
                "ttl_reset_bug": ttl_reset_bug, "on_rotate": on_rotate, "rotations": []}
        with self._lock:
            m.roles[name] = role
        if password is None:
            self._rotate(m, name)
        else:
            with self._lock:
                now = time.time()
                role["last_vault_rotation"] = rfc3339nano(now, local=True)
                role["lvr_t"] = now
                role["next_rotation"] = self._next_rotation(role, now)
        return role["password"]

    def static_role_info(self, mount, name, namespace=""):
        """The role as the test sees it: password, rotation times (time.monotonic() of the
        moment each new password became what Vault serves)."""
        m = self._mount(mount, namespace)
        with self._lock:
            r = m.roles[name]
            return {"username": r["username"], "password": r["password"], "last_vault_rotation": r["last_vault_rotation"],
                    "rotations": list(r["rotations"]), "next_rotation": r["next_rotation"]}

    def rotate_role(self, mount, name, namespace=""):
        self._rotate(self._mount(mount, namespace), name)

    def _next_rotation(self, role, now):
        if role["rotation_period"]:
            return now + role["rotation_period"]
        period = role["schedule_period"] or 3600
        return (int(now // period) + 1) * period

    def _rotate(self, m, name):
        """Like the database engine: the plugin changes the password in the database first
        (Redis: ACL SETUSER user RESETPASS >new), then Vault stores and serves it."""
        with self._lock:
            role = m.roles[name]
            cb, user = role["on_rotate"], role["username"]
        pw = gen_password()
        if cb:
            cb(user, pw)
        with self._lock:
            now = time.time()
            role["password"] = pw
            role["last_vault_rotation"] = rfc3339nano(now, local=True)
            role["lvr_t"] = now
            role["rotations"].append(time.monotonic())
            if role["rotation_period"]:
                role["next_rotation"] = now + role["rotation_period"]
            else:
                role["next_rotation"] = self._next_rotation(role, now)

    def _rotation_queue(self):
        """Vault's rotation queue: checked every `tick` seconds (queueTickInterval)."""
        while not self._stop.wait(self.tick):
            due = []
            with self._lock:
                now = time.time()
                for m in self.mounts.values():
                    if m.kind != "database":
                        continue
                    for name, r in m.roles.items():
                        if r["next_rotation"] is not None and r["next_rotation"] <= now:
                            due.append((m, name))
            for m, name in due:
                try:
                    self._rotate(m, name)
                except Exception:  # a failing on_rotate must not stop the queue
                    pass

    # ----------------------------------------------------------------- controls: auth
    def approle_enable(self, mount="approle", namespace=""):
        m = Mount("approle", "auth/" + mount.strip("/"), namespace.strip("/"))
        with self._lock:
            self.mounts[(m.namespace, m.path)] = m

    def approle_role(self, name, policies=(), token_ttl=0, token_max_ttl=0, bind_secret_id=True,
                     role_id=None, token_type="service", token_num_uses=0, mount="approle", namespace=""):
        m = self._mount("auth/" + mount.strip("/"), namespace)
        role_id = role_id or str(uuid.uuid4())
        with self._lock:
            m.auth_roles[name] = {"role_id": role_id, "policies": list(policies), "token_ttl": token_ttl,
                                  "token_max_ttl": token_max_ttl, "bind_secret_id": bind_secret_id,
                                  "token_type": token_type, "token_num_uses": token_num_uses,
                                  "secret_ids": {}}
        return role_id

    def approle_secret_id(self, role, secret_id=None, num_uses=0, ttl=0, mount="approle", namespace=""):
        m = self._mount("auth/" + mount.strip("/"), namespace)
        sid = secret_id or str(uuid.uuid4())
        with self._lock:
            m.auth_roles[role]["secret_ids"][sid] = {"num_uses": num_uses,
                                                    "expire_at": time.time() + ttl if ttl else None}
        return sid

    def kubernetes_enable(self, mount="kubernetes", namespace=""):
        m = Mount("kubernetes", "auth/" + mount.strip("/"), namespace.strip("/"))
        with self._lock:
            self.mounts[(m.namespace, m.path)] = m

    def kubernetes_role(self, name, bound_service_account_names, bound_service_account_namespaces,
                        policies=(), token_ttl=0, token_max_ttl=0, mount="kubernetes", namespace=""):
        m = self._mount("auth/" + mount.strip("/"), namespace)
        with self._lock:
            m.auth_roles[name] = {"names": list(bound_service_account_names),
                                  "namespaces": list(bound_service_account_namespaces),
                                  "policies": list(policies), "token_ttl": token_ttl, "token_max_ttl": token_max_ttl}

    def kubernetes_jwt(self, service_account, namespace="default"):
        """A service-account JWT this fake accepts (its stand-in for a TokenReview)."""
        header = {"alg": "RS256", "kid": "fake-vault"}
        payload = {"iss": "kubernetes/serviceaccount",
                   "kubernetes.io/serviceaccount/namespace": namespace,
                   "kubernetes.io/serviceaccount/secret.name": service_account + "-token-" + secrets.token_hex(3),
                   "kubernetes.io/serviceaccount/service-account.name": service_account,
                   "kubernetes.io/serviceaccount/service-account.uid": str(uuid.uuid4()),
                   "sub": "system:serviceaccount:%s:%s" % (namespace, service_account)}
        signing = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
        sig = hmac.new(self._jwt_key, signing.encode(), hashlib.sha256).digest()
        return signing + "." + b64url(sig)

    # ----------------------------------------------------------------- request handling
    def _record(self, method, path, query, namespace, has_token, conn):
        with self._lock:
            self.requests.append({"t": time.monotonic(), "method": method, "path": path, "query": query,
                                  "namespace": namespace, "token": has_token, "conn": conn})

    def _injection(self, method, path):
        with self._lock:
            for inj in self.injections:
                if inj.method and inj.method != method:
                    continue
                if not inj.path.search(path):
                    continue
                if inj.times is not None and inj.hits >= inj.times:
                    continue
                inj.hits += 1
                return inj
        return None

    def _apply_injection(self, inj, method, path, handler):
        """Returns None to go on serving normally, or (status, headers, payload)."""
        k, p = inj.kind, inj.params
        jh = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        if k == "delay":
            time.sleep(p.get("seconds", 1))
            return None
        if k == "hang":
            ev = self._release
            ev.wait(p.get("seconds", 3600))
            raise _Drop()
        if k == "close":
            raise _Drop()
        if k == "status":
            # "{token}" in an error text is replaced by the request's token: a server that
            # echoes what it was sent (the client must not repeat it anywhere).
            tok = handler.headers.get("X-Vault-Token") or ""
            errors = [e.replace("{token}", tok) for e in p.get("errors", [])]
            raise VaultError(p.get("status", 500), errors, p.get("headers"))
        if k == "403":
            raise VaultError(403, [PERMISSION_DENIED_1])
        if k == "403-invalid":
            raise VaultError(403, [PERMISSION_DENIED_INVALID])
        if k == "404":
            raise VaultError(404, [])
        if k == "429":
            headers = {}
            if p.get("retry_after") is not None:
                headers["Retry-After"] = str(p["retry_after"])
            raise VaultError(429, ['request path "%s": rate limit quota exceeded' % path[len("/v1/"):]], headers)
        if k == "500":
            raise VaultError(500, p.get("errors", ["internal error"]))
        if k == "503":
            raise VaultError(503, ["Vault is sealed"])
        if k == "412":
            raise VaultError(412, ["required index state not present"])
        if k == "redirect":
            loc = p.get("location") or (p["to"].rstrip("/") + handler.path)
            return 307, {"Location": loc, "Cache-Control": "no-store"}, None
        if k == "truncated":
            body = go_json(self._shape_body(path, p))
            return 200, jh, body[: max(1, len(body) // 2)]
        if k == "cut":
            body = go_json(self._shape_body(path, p))
            handler.send_response_only(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            raise _Drop()
        if k == "malformed":
            return 200, jh, p.get("body", b"<html><body>502 Bad Gateway</body></html>\n")
        if k == "wrong_shape":
            return 200, jh, go_json(p.get("json", {"data": "not an object"}))
        if k == "oversized":
            size = int(p.get("size", 2 * 1024 * 1024))
            body = b'{"data":{"pad":"' + b"x" * size + b'"}}\n'
            if p.get("chunked", True):
                handler._send(200, jh, body, chunked=True)
            else:
                handler._send(200, jh, body, chunked=False)
            raise _Sent()
        raise ValueError("unknown injection kind %r" % k)

    def _shape_body(self, path, p):
        return p.get("json", {"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False,
                              "lease_duration": 0, "data": {"data": {"username": "u", "password": "p" * 40},
                                                            "metadata": {"version": 1}},
                              "wrap_info": None, "warnings": None, "auth": None, "mount_type": "kv"})

    def _handle(self, method, raw_path, headers, body, handler):
        path, _, query = raw_path.partition("?")
        params = {}
        for part in query.split("&"):
            if part:
                k, _, v = part.partition("=")
                params[k] = v
        token = headers.get("X-Vault-Token")
        if not token:
            auth = headers.get("Authorization") or ""
            if auth.startswith("Bearer "):
                token = auth[len("Bearer "):]
        ns_header = (headers.get("X-Vault-Namespace") or "").strip("/")

        if path.startswith("/_fake/"):
            return self._admin(path[len("/_fake/"):], body)

        self._record(method, path, query, ns_header, bool(token), id(handler.connection))
        inj = self._injection(method, path)
        if inj:
            try:
                r = self._apply_injection(inj, method, path, handler)
            except _Sent:
                raise _Drop()
            if r is not None:
                return r
        if not path.startswith("/v1/"):
            raise VaultError(404, [])
        rel = path[len("/v1/"):]
        if rel in ("sys/health", "sys/seal-status"):
            return self._sys(rel, params)
        if self.sealed:
            raise VaultError(503, ["Vault is sealed"])
        if self.standby_redirect:
            return 307, {"Location": self.standby_redirect.rstrip("/") + raw_path, "Cache-Control": "no-store"}, None

        if method == "GET" and params.get("list") in ("true", "1"):
            method = "LIST"
        if method == "PATCH" and "merge-patch+json" not in (headers.get("Content-Type") or ""):
            raise VaultError(415, ["PATCH requires Content-Type application/merge-patch+json"])
        if method not in ("GET", "POST", "PUT", "DELETE", "LIST", "PATCH"):
            raise VaultError(405, [])
        if method == "PUT":
            method = "POST"

        # Namespace: the header, then any namespace named at the front of the path.
        full = "/".join(x for x in (ns_header, rel) if x)
        ns = ""
        for cand in sorted(self.namespaces, key=len, reverse=True):
            if cand and (full == cand or full.startswith(cand + "/")):
                ns = cand
                break
        if ns_header and ns_header not in self.namespaces:
            raise VaultError(403, [PERMISSION_DENIED_1])   # unknown namespace: nothing to see
        rel = full[len(ns):].lstrip("/") if ns else full

        data = None
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                raise VaultError(400, ["error parsing JSON"])

        # Logins need no token.
        m_login = re.match(r"^auth/(.+)/login$", rel)
        if m_login and method == "POST":
            mount = self.mounts.get((ns, "auth/" + m_login.group(1)))
            if mount and mount.kind in ("approle", "kubernetes"):
                return self._login(mount, ns, data or {})

        tok = self._check_token(token, ns)
        if rel.startswith("auth/token/"):
            return self._token_api(tok, method, rel[len("auth/token/"):], data or {})

        cap = {"GET": "read", "LIST": "list", "POST": "update", "DELETE": "delete", "PATCH": "patch"}[method]
        mount = self._find_mount(ns, rel)
        acl_path = ((ns + "/") if ns and tok.namespace != ns else "") + rel
        if not self._allowed(tok, acl_path, cap, mount, rel, method):
            raise VaultError(403, [PERMISSION_DENIED_1])
        self._use(tok)
        if not mount:
            raise VaultError(404, ['no handler for route "%s". route entry not found.' % rel])
        sub = rel[len(mount.path):].lstrip("/")
        if mount.kind == "kv" and mount.version == 2:
            return self._kv2(mount, method, sub, params, data, headers, body)
        if mount.kind == "kv":
            return self._kv1(mount, method, sub, data)
        if mount.kind == "database":
            return self._database(mount, method, sub, data)
        raise VaultError(404, ['no handler for route "%s". route entry not found.' % rel])

    def _admin(self, name, body):
        if name.startswith("_") or not callable(getattr(self, name, None)) or name in ("start", "stop"):
            raise VaultError(404, ["no such fake control"])
        try:
            kwargs = json.loads(body) if body else {}
            result = getattr(self, name)(**kwargs)
        except VaultError:
            raise
        except Exception as e:  # noqa: BLE001 - report to the test
            raise VaultError(400, ["fake control %s: %r" % (name, e)])
        return 200, {"Content-Type": "application/json"}, go_json({"result": result})

    def _sys(self, rel, params):
        if rel == "sys/health":
            body = {"initialized": True, "sealed": self.sealed, "standby": bool(self.standby_redirect),
                    "performance_standby": False, "replication_performance_mode": "disabled",
                    "replication_dr_mode": "disabled", "server_time_utc": int(time.time()),
                    "version": "1.17.0+fake", "cluster_name": "vault-cluster-fake", "cluster_id": "fake"}
            status = 503 if self.sealed else 429 if self.standby_redirect else 200
            return status, {"Content-Type": "application/json", "Cache-Control": "no-store"}, go_json(body)
        body = {"type": "shamir", "initialized": True, "sealed": self.sealed, "t": 1, "n": 1, "progress": 0,
                "nonce": "", "version": "1.17.0+fake", "build_date": "2024-01-01T00:00:00Z", "migration": False,
                "recovery_seal": False, "storage_type": "inmem"}
        return 200, {"Content-Type": "application/json", "Cache-Control": "no-store"}, go_json(body)

    def _check_token(self, token, ns):
        if not token:
            raise VaultError(403, ["permission denied"])
        with self._lock:
            t = self.tokens.get(token)
            if not t or not t.valid():
                raise VaultError(403, [PERMISSION_DENIED_INVALID])
            if t.namespace and not (ns == t.namespace or ns.startswith(t.namespace + "/")):
                raise VaultError(403, [PERMISSION_DENIED_1])
        return t

    def _use(self, t):
        with self._lock:
            if t.num_uses > 0:
                t.num_uses -= 1
                if t.num_uses == 0:
                    t.revoked = True

    def _find_mount(self, ns, rel):
        best = None
        with self._lock:
            for (mns, mpath), m in self.mounts.items():
                if mns == ns and (rel == mpath or rel.startswith(mpath + "/")):
                    if best is None or len(mpath) > len(best.path):
                        best = m
        return best

    @staticmethod
    def _glob(pattern, path):
        """Vault's policy paths: a trailing * is a prefix match, a + segment matches one segment."""
        prefix = pattern.endswith("*")
        pat = pattern[:-1] if prefix else pattern
        rx = "/".join("[^/]+" if seg == "+" else re.escape(seg) for seg in pat.split("/"))
        return re.fullmatch(rx + (".*" if prefix else ""), path) is not None

    def _allowed(self, tok, acl_path, cap, mount, rel, method):
        if "root" in tok.policies:
            return True
        caps = set()
        with self._lock:
            for name in tok.policies:
                for pattern, c in self.policies.get(name, []):
                    if self._glob(pattern, acl_path):
                        caps |= c
        if "deny" in caps:
            return False
        if cap == "update" and "create" in caps:
            return True
        return cap in caps

    # ----------------------------------------------------------------- envelopes
    @staticmethod
    def _envelope(data=None, auth=None, warnings=None, mount_type="kv", lease_duration=0):
        return {"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False,
                "lease_duration": lease_duration, "data": data, "wrap_info": None,
                "warnings": warnings, "auth": auth, "mount_type": mount_type}

    def _ok(self, env):
        return 200, {"Cache-Control": "no-store", "Content-Type": "application/json"}, go_json(env)

    @staticmethod
    def _no_content():
        return 204, {"Cache-Control": "no-store", "Content-Type": "application/json"}, None

    # ----------------------------------------------------------------- logins and tokens
    def _issue(self, ns, path, policies, ttl, max_ttl, meta, token_type="service", num_uses=0):
        ttl = ttl or SYSTEM_MAX_TTL
        if max_ttl and ttl > max_ttl:
            ttl = max_ttl
        t = Token(self, list(policies) + ["default"], ttl, max_ttl=max_ttl, namespace=ns, path=path, meta=meta,
                  token_type=token_type, num_uses=num_uses, display_name=path.split("/")[1])
        with self._lock:
            self.tokens[t.id] = t
        return t

    def _login(self, mount, ns, data):
        if mount.kind == "approle":
            role_id = data.get("role_id")
            if not role_id:
                raise VaultError(400, ["missing role_id"])
            with self._lock:
                hit = [(n, r) for n, r in mount.auth_roles.items() if r["role_id"] == role_id]
                if not hit:
                    raise VaultError(400, ["invalid role or secret ID"])
                name, role = hit[0]
                if role["bind_secret_id"]:
                    sid = data.get("secret_id")
                    if not sid:
                        raise VaultError(400, ["missing secret_id"])
                    entry = role["secret_ids"].get(sid)
                    if not entry or (entry["expire_at"] and time.time() >= entry["expire_at"]):
                        raise VaultError(400, ["invalid role or secret ID"])
                    if entry["num_uses"]:
                        entry["num_uses"] -= 1
                        if entry["num_uses"] == 0:
                            del role["secret_ids"][sid]
            t = self._issue(ns, mount.path + "/login", role["policies"], role["token_ttl"], role["token_max_ttl"],
                            {"role_name": name}, role["token_type"], role["token_num_uses"])
        else:
            role_name, jwt = data.get("role"), data.get("jwt")
            if not role_name:
                raise VaultError(400, ["missing role"])
            if not jwt:
                raise VaultError(400, ["missing jwt"])
            with self._lock:
                role = mount.auth_roles.get(role_name)
            if not role:
                raise VaultError(400, ['invalid role name "%s"' % role_name])
            claims = self._verify_jwt(jwt)
            if claims is None:
                raise VaultError(403, ["permission denied"])
            sa = claims["kubernetes.io/serviceaccount/service-account.name"]
            sans = claims["kubernetes.io/serviceaccount/namespace"]
            if "*" not in role["names"] and sa not in role["names"]:
                raise VaultError(403, ["service account name not authorized"])
            if "*" not in role["namespaces"] and sans not in role["namespaces"]:
                raise VaultError(403, ["namespace not authorized"])
            meta = {"role": role_name, "service_account_name": sa, "service_account_namespace": sans,
                    "service_account_secret_name": claims["kubernetes.io/serviceaccount/secret.name"],
                    "service_account_uid": claims["kubernetes.io/serviceaccount/service-account.uid"]}
            t = self._issue(ns, mount.path + "/login", role["policies"], role["token_ttl"], role["token_max_ttl"], meta)
        return self._ok(self._envelope(None, t.auth_block(t.ttl), mount_type=""))

    def _verify_jwt(self, jwt):
        parts = jwt.split(".")
        if len(parts) != 3:
            return None
        want = b64url(hmac.new(self._jwt_key, (parts[0] + "." + parts[1]).encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(want, parts[2]):
            return None
        try:
            return json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            return None

    def _token_api(self, t, method, op, data):
        cap = "read" if method == "GET" or op == "lookup-self" else "update"
        if not self._allowed(t, "auth/token/" + op, cap, None, op, method):
            raise VaultError(403, [PERMISSION_DENIED_1])
        now = time.time()
        if op == "lookup-self" and method in ("GET", "POST"):
            expire = None if t.expire_at is None else rfc3339nano(t.expire_at, local=True)
            d = {"accessor": t.accessor, "creation_time": t.creation_time, "creation_ttl": t.creation_ttl,
                 "display_name": t.display_name, "entity_id": t.entity_id, "expire_time": expire,
                 "explicit_max_ttl": t.explicit_max_ttl, "id": t.id, "issue_time": rfc3339nano(t.issue, local=True),
                 "meta": t.meta, "num_uses": t.num_uses, "orphan": t.orphan, "path": t.path,
                 "policies": t.policies, "renewable": t.renewable, "ttl": t.remaining(now), "type": t.type}
            if t.last_renewal:
                d["last_renewal"] = rfc3339nano(t.last_renewal, local=True)
                d["last_renewal_time"] = int(t.last_renewal)
            if t.namespace:
                d["namespace_path"] = t.namespace + "/"
            self._use(t)
            return self._ok(self._envelope(sorted_map(d), mount_type="token"))
        if op == "renew-self" and method == "POST":
            if not t.renewable:
                raise VaultError(400, ["lease is not renewable"])
            with self._lock:
                if t.max_expire_at is not None and now >= t.max_expire_at:
                    raise VaultError(400, ["past the max TTL, cannot renew"])
                inc = data.get("increment")
                try:
                    want = parse_duration(inc) if inc not in (None, "", 0) else t.creation_ttl
                except ValueError:
                    raise VaultError(400, ["error parsing increment"])
                want = int(want) or t.creation_ttl
                warnings = None
                ttl = want
                if t.max_expire_at is not None and now + ttl > t.max_expire_at:
                    ttl = max(0, int(t.max_expire_at - now))
                    max_eff = int(round(t.max_expire_at - t.issue))
                    warnings = ['TTL of "%s" exceeded the effective max_ttl of "%s"; TTL value is capped accordingly'
                                % (go_duration(want), go_duration(max_eff))]
                t.expire_at = now + ttl
                t.ttl = ttl
                t.last_renewal = now
            self._use(t)
            return self._ok(self._envelope(None, t.auth_block(ttl), warnings, mount_type="token"))
        if op == "revoke-self" and method == "POST":
            t.revoked = True
            return self._no_content()
        raise VaultError(405, ["unsupported operation"])

    # ----------------------------------------------------------------- KV v2
    def _kv2_write(self, m, key, data, cas):
        k = m.keys.get(key)
        current = k["current_version"] if k else 0
        cas_required = m.cas_required or (k and k["cas_required"])
        if cas is None and cas_required:
            raise VaultError(400, ["check-and-set parameter required for this call"])
        if cas is not None:
            try:
                cas = int(cas)
            except (TypeError, ValueError):
                raise VaultError(400, ["error parsing check-and-set parameter"])
            if cas != current:
                raise VaultError(400, ["check-and-set parameter did not match the current version"])
        now = time.time()
        if not k:
            k = {"versions": {}, "current_version": 0, "oldest_version": 0, "max_versions": 0,
                 "cas_required": False, "delete_version_after": 0, "custom_metadata": None,
                 "created_time": rfc3339nano(now), "updated_time": rfc3339nano(now)}
            m.keys[key] = k
        v = current + 1
        dva = k["delete_version_after"] or m.delete_version_after
        k["versions"][v] = {"data": dict(data), "created_time": rfc3339nano(now),
                            "deletion_time": rfc3339nano(now + dva) if dva else "", "destroyed": False}
        k["current_version"] = v
        k["updated_time"] = rfc3339nano(now)
        maxv = k["max_versions"] or m.max_versions or 10
        while len(k["versions"]) > maxv:
            del k["versions"][min(k["versions"])]
            k["oldest_version"] = min(k["versions"])
        return v

    @staticmethod
    def _version_meta(k, v):
        e = k["versions"][v]
        return sorted_map({"created_time": e["created_time"], "custom_metadata": k["custom_metadata"],
                           "deletion_time": e["deletion_time"], "destroyed": e["destroyed"], "version": v})

    @staticmethod
    def _gone(e):
        if e["destroyed"]:
            return True
        if not e["deletion_time"]:
            return False
        # deletion_time is ours (UTC, "Z"); compare as text-free epoch
        dt = datetime.datetime.strptime(e["deletion_time"][:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=datetime.timezone.utc)
        return dt.timestamp() <= time.time()

    def _kv2(self, m, method, sub, params, data, headers, body):
        op, _, key = sub.partition("/")
        key = key.strip("/")
        with self._lock:
            if op == "config":
                if method == "GET":
                    return self._ok(self._envelope(sorted_map({"cas_required": m.cas_required,
                                                               "delete_version_after": go_duration(m.delete_version_after),
                                                               "max_versions": m.max_versions})))
                if method == "POST":
                    d = data or {}
                    m.max_versions = int(d.get("max_versions", m.max_versions))
                    m.cas_required = bool(d.get("cas_required", m.cas_required))
                    if "delete_version_after" in d:
                        m.delete_version_after = parse_duration(d["delete_version_after"])
                    return self._no_content()
            if op == "data" and key:
                k = m.keys.get(key)
                if method == "GET":
                    v = params.get("version")
                    try:
                        v = int(v) if v else 0
                    except ValueError:
                        v = 0
                    if not k:
                        raise VaultError(404, [])
                    v = v or k["current_version"]
                    e = k["versions"].get(v)
                    if not e:
                        raise VaultError(404, [])
                    if self._gone(e):
                        env = self._envelope({"data": None, "metadata": self._version_meta(k, v)}, mount_type="")
                        raise VaultError(404, raw=go_json(env, newline=False))
                    return self._ok(self._envelope({"data": sorted_map(e["data"]), "metadata": self._version_meta(k, v)}))
                if method == "POST":
                    d = data or {}
                    if "data" not in d or not isinstance(d["data"], dict):
                        raise VaultError(400, ["no data provided"])
                    opts = d.get("options") or {}
                    v = self._kv2_write(m, key, d["data"], opts.get("cas"))
                    return self._ok(self._envelope(self._version_meta(m.keys[key], v)))
                if method == "PATCH":
                    if not k:
                        raise VaultError(404, raw=b"")
                    e = k["versions"].get(k["current_version"])
                    if not e or self._gone(e):
                        env = self._envelope({"data": None, "metadata": self._version_meta(k, k["current_version"])},
                                             mount_type="")
                        raise VaultError(404, raw=go_json(env, newline=False))
                    d = data or {}
                    merged = dict(e["data"])
                    for kk, vv in (d.get("data") or {}).items():
                        if vv is None:
                            merged.pop(kk, None)
                        else:
                            merged[kk] = vv
                    opts = d.get("options") or {}
                    v = self._kv2_write(m, key, merged, opts.get("cas"))
                    return self._ok(self._envelope(self._version_meta(m.keys[key], v)))
                if method == "DELETE":
                    if k and k["current_version"] in k["versions"]:
                        k["versions"][k["current_version"]]["deletion_time"] = rfc3339nano()
                    return self._no_content()
            if op in ("delete", "undelete", "destroy") and key and method == "POST":
                k = m.keys.get(key)
                versions = (data or {}).get("versions") or []
                if not versions:
                    raise VaultError(400, ["no version number provided"])
                for v in versions:
                    e = k["versions"].get(int(v)) if k else None
                    if not e:
                        continue
                    if op == "delete" and not e["destroyed"]:
                        e["deletion_time"] = rfc3339nano()
                    elif op == "undelete" and not e["destroyed"]:
                        e["deletion_time"] = ""
                    elif op == "destroy":
                        e["destroyed"] = True
                        e["data"] = None
                return self._no_content()
            if op == "metadata":
                if method == "LIST":
                    prefix = key + "/" if key else ""
                    keys = sorted({(kk[len(prefix):].split("/")[0] + ("/" if "/" in kk[len(prefix):] else ""))
                                   for kk in m.keys if kk.startswith(prefix)})
                    if not keys:
                        raise VaultError(404, [])
                    return self._ok(self._envelope({"keys": keys}))
                k = m.keys.get(key)
                if method == "GET":
                    if not k:
                        raise VaultError(404, [])
                    versions = {str(v): sorted_map({"created_time": e["created_time"], "deletion_time": e["deletion_time"],
                                                    "destroyed": e["destroyed"]})
                                for v, e in k["versions"].items()}
                    d = {"cas_required": k["cas_required"], "created_time": k["created_time"],
                         "current_version": k["current_version"], "custom_metadata": k["custom_metadata"],
                         "delete_version_after": go_duration(k["delete_version_after"]),
                         "max_versions": k["max_versions"], "oldest_version": k["oldest_version"],
                         "updated_time": k["updated_time"], "versions": dict(sorted(versions.items()))}
                    return self._ok(self._envelope(d))
                if method == "POST":
                    d = data or {}
                    if not k:
                        now = time.time()
                        k = {"versions": {}, "current_version": 0, "oldest_version": 0, "max_versions": 0,
                             "cas_required": False, "delete_version_after": 0, "custom_metadata": None,
                             "created_time": rfc3339nano(now), "updated_time": rfc3339nano(now)}
                        m.keys[key] = k
                    if "max_versions" in d:
                        k["max_versions"] = int(d["max_versions"])
                    if "cas_required" in d:
                        k["cas_required"] = bool(d["cas_required"])
                    if "delete_version_after" in d:
                        k["delete_version_after"] = parse_duration(d["delete_version_after"])
                    if "custom_metadata" in d:
                        k["custom_metadata"] = d["custom_metadata"]
                    return self._no_content()
                if method == "DELETE":
                    m.keys.pop(key, None)
                    return self._no_content()
        raise VaultError(405, ["unsupported operation"])

    # ----------------------------------------------------------------- KV v1
    def _kv1(self, m, method, key, data):
        key = key.strip("/")
        with self._lock:
            if method == "GET":
                d = m.kv1.get(key)
                if d is None:
                    raise VaultError(404, [])
                lease = KV1_DEFAULT_LEASE
                if "ttl" in d:
                    try:
                        lease = int(parse_duration(d["ttl"]))
                    except ValueError:
                        pass
                return self._ok(self._envelope(sorted_map(d), lease_duration=lease))
            if method == "POST":
                if not isinstance(data, dict) or not data:
                    raise VaultError(400, ["missing data fields"])
                m.kv1[key] = dict(data)
                return self._no_content()
            if method == "DELETE":
                m.kv1.pop(key, None)
                return self._no_content()
            if method == "LIST":
                prefix = key + "/" if key else ""
                keys = sorted({(kk[len(prefix):].split("/")[0] + ("/" if "/" in kk[len(prefix):] else ""))
                               for kk in m.kv1 if kk.startswith(prefix)})
                if not keys:
                    raise VaultError(404, [])
                return self._ok(self._envelope({"keys": keys}))
        raise VaultError(405, ["unsupported operation"])

    # ----------------------------------------------------------------- database
    def _static_ttl(self, r, now):
        if r["ttl_reset_bug"] and not r["rotation_period"]:
            # Vault issue #31918: the ttl counts to the next cron boundary even while the
            # rotation for the boundary just passed has not happened yet.
            period = r["schedule_period"] or 3600
            nxt = (int(now // period) + 1) * period
            return max(0, int(round(nxt - now)))
        return max(0, int(round(r["next_rotation"] - now)))

    def _database(self, m, method, sub, data):
        op, _, name = sub.partition("/")
        with self._lock:
            if op == "static-creds" and method == "GET":
                r = m.roles.get(name)
                if not r:
                    raise VaultError(400, ["unknown role: %s" % name])
                d = {"last_vault_rotation": r["last_vault_rotation"], "password": r["password"],
                     "ttl": self._static_ttl(r, time.time()), "username": r["username"]}
                if r["rotation_period"]:
                    d["rotation_period"] = r["rotation_period"]
                else:
                    d["rotation_schedule"] = r["rotation_schedule"] or "0 * * * *"
                    if r["rotation_window"]:
                        d["rotation_window"] = r["rotation_window"]
                return self._ok(self._envelope(sorted_map(d), mount_type="database"))
            if op == "rotate-role" and method == "POST":
                if not name:
                    raise VaultError(400, ["empty role name attribute given"])
                if name not in m.roles:
                    raise VaultError(400, ["no static role found for role name"])
            elif op == "static-roles" and method == "GET":
                r = m.roles.get(name)
                if not r:
                    raise VaultError(404, [])
                d = {"credential_type": "password", "db_name": "redis", "username": r["username"],
                     "last_vault_rotation": r["last_vault_rotation"], "rotation_statements": []}
                if r["rotation_period"]:
                    d["rotation_period"] = r["rotation_period"]
                else:
                    d["rotation_schedule"] = r["rotation_schedule"]
                    d["rotation_window"] = r["rotation_window"]
                return self._ok(self._envelope(sorted_map(d), mount_type="database"))
            elif op == "static-roles" and method == "POST":
                d = data or {}
                if not d.get("username"):
                    raise VaultError(400, ["username is a required field to create a static account"])
                rp = d.get("rotation_period")
                if rp is not None:
                    rp = parse_duration(rp)
                    if rp < 5:
                        raise VaultError(400, ["rotation_period must be 5 seconds or more"])
            else:
                raise VaultError(405, ["unsupported operation"])
        if op == "rotate-role":
            self._rotate(m, name)
            return self._no_content()
        self.static_role(m.path, name, d["username"], rotation_period=rp,
                         rotation_schedule=d.get("rotation_schedule"), namespace=m.namespace)
        return self._no_content()


class _Sent(Exception):
    """The injection wrote its own answer."""


# --------------------------------------------------------------------------- program

def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="A fake HashiCorp Vault for tests.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--root-token")
    ap.add_argument("--tick", type=float, default=5.0)
    ap.add_argument("--exit-on-stdin-eof", action="store_true",
                    help="stop when stdin closes (a test that dies takes the fake with it)")
    args = ap.parse_args(argv)
    fv = FakeVault(host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key,
                   root_token=args.root_token, tick=args.tick).start()
    sys.stdout.write("PORT %d\n" % fv.port)
    sys.stdout.flush()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def watch_stdin():
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        done.set()
    if args.exit_on_stdin_eof:
        threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    fv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
