"""A RESP proxy that enforces Entra token expiry the way Azure Managed Redis does, in front
of a real redis-server. Standard library only (asyncio); a test device, not a product.

- A client authenticates with `AUTH <user> <token>` or `HELLO <proto> AUTH <user> <token>
  [SETNAME <name>]`. The token must be an RS256 JWT that verifies with one of the keys of
  the JWKS (the fake Entra's, tests/fakes/azure_fake.py with signed_tokens=True), with the
  expected audience, nbf <= now < exp, and the user equal to its `oid` claim. Anything
  else is answered `-WRONGPASS ...`; other commands before AUTH get `-NOAUTH ...`.
- Once authenticated, the connection is forwarded to redis-server as one fixed backend
  ACL user (--backend-user, password from --backend-password-file), byte for byte.
- AUTH (or HELLO ... AUTH) on an open connection is a re-authentication: the proxy checks
  the token and forwards `AUTH <backend user> <password>` in its place (a wrong password
  when the token is bad), so that Redis answers in order, and refuses it the way Redis
  does (on a RESP2 connection in subscribed mode, Redis refuses AUTH; the proxy then keeps
  the old expiry). The new expiry counts from when Redis could run the AUTH: when a
  blocking command (BLPOP, BRPOP, BLMOVE, BZPOPMIN, XREAD ... BLOCK, ...) is outstanding,
  only after the server has answered something again (an approximation: it does not
  match each reply to its command).
- When a connection's token `exp` passes without a newer AUTH, the proxy closes it.

Events go to stdout as JSON lines: {"event": "auth"|"reauth"|"refused"|"expired"|"closed",
"name": <CLIENT SETNAME or HELLO SETNAME>, "peer": "ip:port", "t": unix time, ...}; at
SIGTERM/SIGINT a {"event": "summary", ...} line with the counts. The port it listens on
is written to --port-file once it accepts connections.

    python3 token_proxy.py --listen 127.0.0.1:0 --port-file p --backend 127.0.0.1:6379 \\
        --backend-user proxy --backend-password-file pw --jwks-url http://.../keys
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import signal
import sys
import time
import urllib.request

SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
BLOCKING = {b"BLPOP", b"BRPOP", b"BRPOPLPUSH", b"BLMOVE", b"BLMPOP", b"BZPOPMIN", b"BZPOPMAX",
            b"BZMPOP", b"WAIT", b"WAITAOF"}
SUBSCRIBE = {b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE"}
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
NOAUTH = b"-NOAUTH Authentication required.\r\n"


def b64url_decode(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


def _int(b64):
    return int.from_bytes(b64url_decode(b64), "big")


class Verifier:
    """RS256 JWT verification with the keys of a JWKS ({"keys": [{"kty": "RSA", "kid",
    "n", "e"}]}): RSASSA-PKCS1-v1_5 with SHA-256, with Python integers."""

    def __init__(self, jwks, audience):
        self.keys = {k["kid"]: (_int(k["n"]), _int(k["e"])) for k in jwks["keys"]
                     if k.get("kty") == "RSA"}
        self.audience = audience

    def claims(self, user, token, now=None):
        """The token's claims when it is valid for user now; else None."""
        try:
            h64, p64, s64 = token.split(b".")
            header = json.loads(b64url_decode(h64))
            claims = json.loads(b64url_decode(p64))
            key = self.keys.get(header.get("kid"))
            if header.get("alg") != "RS256" or key is None:
                return None
            n, e = key
            size = (n.bit_length() + 7) // 8
            sig = b64url_decode(s64)
            if len(sig) != size:
                return None
            em = pow(int.from_bytes(sig, "big"), e, n).to_bytes(size, "big")
            t = SHA256_DIGEST_INFO + hashlib.sha256(h64 + b"." + p64).digest()
            if em != b"\x00\x01" + b"\xff" * (size - len(t) - 3) + b"\x00" + t:
                return None
        except (ValueError, TypeError, AttributeError):
            return None
        now = time.time() if now is None else now
        if claims.get("aud") != self.audience or not isinstance(claims.get("exp"), int):
            return None
        if claims.get("nbf", 0) > now or claims["exp"] <= now:
            return None
        if user is not None and user.decode("utf-8", "replace") != claims.get("oid"):
            return None
        return claims


def parse_command(buf):
    """One client command from the front of buf: (args, length) or None when incomplete.
    Multibulk, or an inline command (split on spaces). Raises ValueError when malformed."""
    if not buf:
        return None
    if buf[0:1] != b"*":
        end = buf.find(b"\r\n")
        if end < 0:
            return None if len(buf) < 65536 else _bad()
        return [bytes(x) for x in buf[:end].split()], end + 2
    end = buf.find(b"\r\n")
    if end < 0:
        return None
    n = int(buf[1:end])
    pos, args = end + 2, []
    for _ in range(n):
        e = buf.find(b"\r\n", pos)
        if e < 0:
            return None
        if buf[pos:pos + 1] != b"$":
            _bad()
        ln = int(buf[pos + 1:e])
        if len(buf) < e + 2 + ln + 2:
            return None
        args.append(bytes(buf[e + 2:e + 2 + ln]))
        pos = e + 2 + ln + 2
    return args, pos


def _bad():
    raise ValueError("malformed RESP command")


def resp_command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def auth_of(args):
    """(user, token, rest) of AUTH or HELLO ... AUTH, else None. rest: HELLO without AUTH."""
    cmd = args[0].upper() if args else b""
    if cmd == b"AUTH" and len(args) in (2, 3):
        return (args[1] if len(args) == 3 else None), args[-1], None
    if cmd == b"HELLO":
        rest, user, token, i = [args[0]] + args[1:2], None, None, 2
        while i < len(args):
            if args[i].upper() == b"AUTH" and i + 2 < len(args):
                user, token, i = args[i + 1], args[i + 2], i + 3
            else:
                rest.append(args[i])
                i += 1
        if token is not None:
            return user, token, rest
    return None


class Conn:
    def __init__(self, proxy, reader, writer):
        self.proxy, self.cr, self.cw = proxy, reader, writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = "%s:%s" % peer[:2]
        self.name = None
        self.exp = None           # the token's exp in force
        self.pending_exp = None   # a re-AUTH behind a blocking command
        self.blocking = False
        self.resp3 = False
        self.subscribed = False   # RESP2 subscribed mode: Redis refuses AUTH
        self.br = self.bw = None
        self.closed = False

    def event(self, kind, **kw):
        self.proxy.event(kind, name=self.name, peer=self.peer, **kw)

    def close(self, why):
        if self.closed:
            return
        self.closed = True
        self.event(why)
        for w in (self.cw, self.bw):
            if w is not None:
                w.close()
        self.proxy.conns.discard(self)

    def verify(self, user, token):
        c = self.proxy.verifier.claims(user, token)
        if c is None:
            self.proxy.counts["refused"] += 1
            self.event("refused")
        return c

    def note_name(self, args):
        up = [a.upper() for a in args[:2]]
        if up == [b"CLIENT", b"SETNAME"] and len(args) > 2:
            self.name = args[2].decode("utf-8", "replace")
        elif up and up[0] == b"HELLO":
            for i in range(1, len(args) - 1):
                if args[i].upper() == b"SETNAME":
                    self.name = args[i + 1].decode("utf-8", "replace")

    async def run(self):
        try:
            if await self.login():
                # either side closing ends the connection (the client's close must not
                # leave the backend side open until the token expires)
                tasks = [asyncio.ensure_future(self.client_to_backend()),
                         asyncio.ensure_future(self.backend_to_client())]
                done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in pending:
                    t.cancel()
                for t in done:
                    t.exception()   # retrieved: a reset connection is an ordinary end
        except (ConnectionError, ValueError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self.close("closed")

    async def login(self):
        """Before the first good AUTH: answers the client itself. True once forwarding."""
        buf = bytearray()
        while True:
            got = parse_command(buf)
            if got is None:
                data = await self.cr.read(65536)
                if not data:
                    return False
                buf += data
                continue
            args, used = got
            del buf[:used]
            if not args:
                continue
            self.note_name(args)
            a = auth_of(args)
            if a is None:
                if args[0].upper() == b"QUIT":
                    self.cw.write(b"+OK\r\n")
                    return False
                self.cw.write(NOAUTH)
                continue
            claims = self.verify(a[0], a[1])
            if claims is None:
                self.cw.write(WRONGPASS)
                continue
            await self.open_backend(a[2])
            self.exp = claims["exp"]
            self.proxy.counts["auth"] += 1
            self.event("auth", exp=self.exp)
            self.leftover = bytes(buf)
            return True

    async def open_backend(self, hello):
        p = self.proxy
        self.br, self.bw = await asyncio.wait_for(
            asyncio.open_connection(p.backend_host, p.backend_port), 5)
        self.bw.write(resp_command(b"AUTH", p.backend_user, p.backend_password))
        line = await asyncio.wait_for(self.br.readline(), 5)
        if line != b"+OK\r\n":
            raise ConnectionError("the backend refused the proxy's own credential")
        if hello is None:
            self.cw.write(b"+OK\r\n")
        else:       # the client's HELLO without its AUTH: Redis answers it
            self.resp3 = len(hello) > 1 and hello[1] == b"3"
            self.bw.write(resp_command(*hello))

    def rewrite(self, args, raw):
        """What to forward for one command in forwarding mode."""
        self.note_name(args)
        cmd = args[0].upper()
        a = auth_of(args)
        if a is not None:
            claims = self.verify(a[0], a[1])
            p = self.proxy
            pw = p.backend_password if claims else b"wrong-" + os.urandom(8).hex().encode()
            if claims and not (self.subscribed and not self.resp3):
                p.counts["reauth"] += 1
                self.event("reauth", exp=claims["exp"], behind_blocking=self.blocking)
                if self.blocking:
                    self.pending_exp = claims["exp"]
                else:
                    self.exp = claims["exp"]
            if cmd == b"AUTH":
                return resp_command(b"AUTH", p.backend_user, pw)
            self.resp3 = len(a[2]) > 1 and a[2][1] == b"3"
            return resp_command(*(a[2] + [b"AUTH", p.backend_user, pw]))
        if cmd in BLOCKING or (cmd in (b"XREAD", b"XREADGROUP")
                               and any(x.upper() == b"BLOCK" for x in args)):
            self.blocking = True
        elif cmd in SUBSCRIBE:
            self.subscribed = True
        elif cmd == b"HELLO" and len(args) > 1:
            self.resp3 = args[1] == b"3"
        return raw

    async def client_to_backend(self):
        buf = bytearray(self.leftover)
        while not self.closed:
            out = []
            while True:
                got = parse_command(buf)
                if got is None:
                    break
                args, used = got
                raw = bytes(buf[:used])
                del buf[:used]
                if args:
                    out.append(self.rewrite(args, raw))
            if out:
                self.bw.write(b"".join(out))
                await self.bw.drain()
            data = await self.cr.read(65536)
            if not data:
                return
            buf += data

    async def backend_to_client(self):
        while not self.closed:
            data = await self.br.read(65536)
            if not data:
                return
            if self.blocking:
                self.blocking = False
                if self.pending_exp is not None:
                    self.exp, self.pending_exp = self.pending_exp, None
            self.cw.write(data)
            await self.cw.drain()


class Proxy:
    def __init__(self, verifier, backend, backend_user, backend_password, out=sys.stdout):
        self.verifier = verifier
        self.backend_host, port = backend.rsplit(":", 1)
        self.backend_port = int(port)
        self.backend_user = backend_user.encode()
        self.backend_password = backend_password.encode()
        self.conns = set()
        self.counts = {"auth": 0, "reauth": 0, "refused": 0, "expired": 0, "connections": 0}
        self.out = out

    def event(self, kind, **kw):
        kw.update(event=kind, t=round(time.time(), 3))
        self.out.write(json.dumps(kw) + "\n")
        self.out.flush()

    async def handle(self, reader, writer):
        c = Conn(self, reader, writer)
        self.conns.add(c)
        self.counts["connections"] += 1
        await c.run()

    async def reaper(self):
        """Closes every connection whose token's exp has passed."""
        while True:
            await asyncio.sleep(0.05)
            now = time.time()
            for c in list(self.conns):
                if c.exp is not None and now >= c.exp:
                    self.counts["expired"] += 1
                    c.close("expired")


def load_jwks(args):
    if args.jwks_file:
        with open(args.jwks_file, "rb") as f:
            return json.load(f)
    with urllib.request.urlopen(args.jwks_url, timeout=5) as r:
        return json.load(r)


async def amain(args):
    with open(args.backend_password_file) as f:
        pw = f.read().strip()
    proxy = Proxy(Verifier(load_jwks(args), args.audience), args.backend, args.backend_user, pw)
    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(proxy.handle, host, int(port))
    bound = server.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % bound)
        os.rename(tmp, args.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    reaper = asyncio.create_task(proxy.reaper())
    await stop.wait()
    reaper.cancel()
    server.close()
    proxy.event("summary", **proxy.counts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--port-file")
    ap.add_argument("--backend", required=True, help="host:port of redis-server")
    ap.add_argument("--backend-user", required=True)
    ap.add_argument("--backend-password-file", required=True)
    ap.add_argument("--jwks-url")
    ap.add_argument("--jwks-file")
    ap.add_argument("--audience", default="https://redis.azure.com")
    args = ap.parse_args()
    if not (args.jwks_url or args.jwks_file):
        ap.error("--jwks-url or --jwks-file is required")
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
