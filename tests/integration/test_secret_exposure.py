"""No secret in anything the agent or the CLI says, at log_level debug, over every scenario
(docs/design.md §5, §11): rotation (redis-acl, with the admin password), a hook, the metrics file,
`status` as text and --json, the CLI's other verbs, the journal entries, and the Vault
(tests/fakes/vault_fake.py) and Azure (tests/fakes/azure_fake.py) sources with their
bootstrap secrets and the tokens they hand out. Every secret used is searched for in every
output, whole and by its longest part (a truncated echo): 0 hits.

test_secrets.py covers the file source's refused, malformed and unreachable cases.

The host's own line of defence (common/secret.h, secret_scrub) is checked on a path no
module cuts: a Redis whose AUTH error echoes the candidate password's first 32 characters.
"""
import os
import secrets
import signal
import socket
import threading

import rc_harness as h
from azure_helpers import az  # noqa: F401 - fixture
from test_rotation import rot_cred
from vault_helpers import vault, write_secret_file  # noqa: F401 - fixture


def new_secret(tag):
    return "S%s-%s" % (tag, secrets.token_hex(12))


def assert_no_secret(outputs, secret_values):
    """outputs: {where: text}; secret_values: {what: value}. Also the value without its
    first and last 3 characters, so a clipped or quoted echo is caught, and any 10 of its
    characters in a row (an echo cut short keeps only its first ones)."""
    assert outputs and secret_values
    for where, text in outputs.items():
        for what, value in secret_values.items():
            assert len(value) >= 10, "secret %s too short to search for" % what
            for part in [value, value[3:-3]] + [value[i:i + 10] for i in range(len(value) - 9)]:
                assert part not in text, "secret %s appears in the %s" % (what, where)


def cli(sc, *args):
    r = sc.run_cli("-c", sc.tree.conf, *args, timeout=30)
    return "$ redis-creds %s -> %d\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr)


def hook(sc):
    """An on_change hook that records its argv and environment, and prints to stdout and
    stderr (the agent may log what a hook prints)."""
    path = os.path.join(sc.tree.root, "hook.py")
    out = os.path.join(sc.tree.root, "hook.out")
    with open(path, "w") as f:
        f.write("import json, os, sys\n"
                "open(%r, 'a').write(json.dumps([sys.argv, dict(os.environ)]) + '\\n')\n"
                "print('hook ran for', sys.argv[1:])\n"
                "print('hook stderr line', file=sys.stderr)\n" % out)
    os.chmod(path, 0o755)
    return ["/usr/bin/python3", path, "cache"], out


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_journal(a, text, since, timeout=10):
    """Waits for a journal entry at or after index `since` whose MESSAGE holds text (with
    journal=True the agent logs there, not to stderr)."""
    h.wait_until(lambda: any(text in m.fields.get("MESSAGE", "")
                             for m in a.journal.snapshot()[since:]), timeout,
                 "a journal entry saying %r" % text)


def agent_outputs(a):
    o = {"agent stderr": a.log(),
         "notify": "\n".join(m.raw for m in a.notify.snapshot())}
    if a.journal:
        o["journal"] = "\n".join(m.raw for m in a.journal.snapshot())
    return o


def reload_stop_and_collect(sc, a, hook_out, *names):
    """SIGHUP (then READY), `status` as text and --json, `refresh` of each name, SIGTERM;
    returns every output: the CLI's, the agent's (stderr, journal, notify), the hook's."""
    nmark = a.notify.mark()
    a.send(signal.SIGHUP)
    a.wait_notify("READY", "1", since=nmark)
    outputs = {"CLI": cli(sc, "status") + cli(sc, "status", "--json")
               + "".join(cli(sc, "refresh", n) for n in names)}
    assert a.stop() == 0
    outputs.update(agent_outputs(a))
    outputs["hook argv and environment"] = read(hook_out)
    return outputs


def test_file_source_rotation_hook_metrics_and_status_show_no_secret(sc):
    pw = {k: new_secret(k) for k in ("first", "second", "refused")}
    sc.redis.create_user("app", pw["first"], pw["second"])
    sc.store_cred("app", pw["first"])
    mdir = os.path.join(sc.tree.root, "metrics")
    os.mkdir(mdir, 0o755)
    metrics = os.path.join(mdir, "redis_creds.prom")
    argv, hook_out = hook(sc)
    cred = rot_cred(sc, grace="1s")
    cred.update(on_change=argv, formats=["json", "env", "password"])
    sc.write_config([cred], agent={"metrics_file": metrics, "log_level": "debug"})
    a = sc.start_agent(journal=True)
    a.wait_ready()
    first = sc.wait_published(password=pw["first"])
    outputs = {"--check-config": "", "CLI": ""}

    sc.store_cred("app", pw["second"])                       # a store change
    sc.wait_published(password=pw["second"])
    mark = a.journal.mark()                                  # an agent-driven rotation
    outputs["CLI"] += cli(sc, "rotate", "cache")
    rotated = sc.wait_published(pred=lambda d: d["version"] != first["version"]
                                and d["password"] not in pw.values(), timeout=10)
    wait_journal(a, "rotation of cache completed", mark)
    pw["rotated"] = rotated["password"]

    mark = a.journal.mark()
    sc.store_cred("app", pw["refused"])                      # refused by Redis
    wait_journal(a, "refused", mark)

    nmark = a.notify.mark()                                  # a reload
    a.send(signal.SIGHUP)
    a.wait_notify("READY", "1", since=nmark)
    h.wait_until(lambda: len(read(hook_out).splitlines()) >= 2, 10, "the hook to run")
    h.wait_until(lambda: "redis_creds_current" in read(metrics), 10, "the metrics file")

    outputs["CLI"] += cli(sc, "status") + cli(sc, "status", "--json") + cli(sc, "refresh", "cache")
    outputs["CLI"] += cli(sc, "--help")
    r = sc.run_agent("--check-config")
    outputs["--check-config"] = r.stdout + r.stderr
    assert a.stop() == 0
    once = sc.run_agent("--once")
    outputs["--once"] = once.stdout + once.stderr
    outputs.update(agent_outputs(a))
    outputs["hook argv and environment"] = read(hook_out)
    outputs["metrics file"] = read(metrics)
    outputs["rotation record"] = read(os.path.join(sc.tree.state, "rotation-cache.json"))

    assert "published" in outputs["journal"] and "hook ran" in outputs["agent stderr"]
    assert '"credentials"' in outputs["CLI"] and "redis_creds_current" in outputs["metrics file"]
    secrets_used = dict(pw)
    secrets_used["admin password"] = h.ADMIN_PASSWORD
    assert_no_secret(outputs, secrets_used)


def test_vault_approle_source_shows_no_password_secret_id_or_token(vault, sc):
    pw = {k: new_secret(k) for k in ("one", "two", "malformed", "refused")}
    sc.redis.create_user("app", pw["one"], pw["two"])
    vault.read_policy()
    auth = vault.approle(token_ttl=60)
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": pw["one"]})
    argv, hook_out = hook(sc)
    a = vault.start([vault.cred(poll_interval="300ms", on_change=argv)],
                    [vault.source(auth=auth)], journal=True)
    sc.wait_published(password=pw["one"])
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": pw["two"]})
    sc.wait_published(password=pw["two"], timeout=10)
    # answers that break off or are not JSON, quoting a password: the parser's error text
    # must not carry it into a log line or the status
    for kind, body in (("truncated", None),
                       ("malformed", b'{"data": {"data": {"password": "%s", ' % pw["malformed"].encode())):
        mark = a.journal.mark()
        vault.fake.inject(r"^/v1/secret/data/redis/cache$", kind, body=body)
        vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": pw["malformed"]})
        wait_journal(a, "malformed JSON", mark)
        vault.fake.clear_injections()
    mark = a.journal.mark()
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": pw["refused"]})
    wait_journal(a, "refused", mark)
    outputs = reload_stop_and_collect(sc, a, hook_out, "cache")
    tokens = {"vault token %d" % i: t for i, t in enumerate(list(vault.fake.tokens))}
    assert len(tokens) >= 2, "the agent logged in (root token + a login token)"
    secrets_used = dict(pw, **tokens)
    secrets_used["secret id"] = vault.secret_id
    assert_no_secret(outputs, secrets_used)


def test_azure_keyvault_with_a_client_secret_shows_no_secret_or_token(sc, az):
    pw = {k: new_secret(k) for k in ("one", "two", "malformed")}
    sc.redis.create_user("app", pw["one"], pw["two"])
    client_secret = new_secret("client")
    app = az.fake.add_app("sp", secret=client_secret)
    sfile = write_secret_file(os.path.join(az.dir, "client-secret"), client_secret + "\n")
    az.fake.kv_set("cache-pw", pw["one"])
    argv, hook_out = hook(sc)
    identity = az.identity("client_secret", client_id=app.client_id, client_secret_file=sfile)
    a = az.start([az.cred(path="cache-pw", username="app", poll_interval="300ms", on_change=argv)],
                 [az.kv_source(identity=identity)], journal=True)
    sc.wait_published(password=pw["one"])
    az.fake.kv_set("cache-pw", pw["two"])
    sc.wait_published(password=pw["two"], timeout=10)
    mark = a.journal.mark()
    az.fake.inject("keyvault", status=200, count=1000,
                   body=b'{"value": "%s", "id": ' % pw["malformed"].encode())
    az.fake.kv_set("cache-pw", pw["malformed"])
    wait_journal(a, "cache", mark)
    h.wait_until(lambda: "malformed" in cli(sc, "status") or "JSON" in cli(sc, "status"), 10,
                 "the malformed answer in the status")
    az.fake.clear_faults()
    outputs = reload_stop_and_collect(sc, a, hook_out, "cache")
    with az.fake.lock:
        produced = sorted(s for s in az.fake.leaked if len(s) >= 10)
    assert client_secret in produced and any(s.startswith("eyJ") for s in produced), \
        "the fake issued a token and knows the client secret"
    secrets_used = dict(pw, **{"azure secret %d" % i: s for i, s in enumerate(produced)})
    assert_no_secret(outputs, secrets_used)
    az.assert_no_secrets(*outputs.values())


def test_azure_entra_tokens_and_redis_access_keys_show_no_secret(sc, az):
    az.follow_entra_tokens()
    rid = az.fake.add_cache("cache2")
    keys = az.fake.keys(rid)
    az.redis_accepts_keys(keys["primaryKey"], keys["secondaryKey"])
    argv, hook_out = hook(sc)
    a = az.start([az.cred(name="entra", source="entra", poll_interval="500ms", on_change=argv),
                  az.cred(name="keys", source="keys", path=rid, poll_interval="300ms")],
                 [az.entra_source(), az.keys_source()], journal=True)
    token = sc.wait_published("entra", timeout=10)["password"]
    sc.wait_published("keys", password=keys["primaryKey"], timeout=10)
    mark = a.journal.mark()
    az.fake.inject("arm", status=200, count=1000,           # an answer without both keys
                   body={"primaryKey": keys["primaryKey"]})
    wait_journal(a, "lacks", mark)
    az.fake.clear_faults()
    outputs = reload_stop_and_collect(sc, a, hook_out, "entra", "keys")
    with az.fake.lock:
        produced = sorted(s for s in az.fake.leaked if len(s) >= 10)
    assert token in produced and keys["primaryKey"] in produced
    assert_no_secret(outputs, {"azure secret %d" % i: s for i, s in enumerate(produced)})
    az.assert_no_secrets(*outputs.values())


class EchoingRedis:
    """A loopback "Redis" that answers AUTH with an error whose first word is the first 32
    characters of the password it was sent: a word of capitals and digits that does not
    hold the whole password. common/resp.c's first-word check once let it through; it now
    redacts a word holding a piece of the argument, and the host's scrub (secret_scrub)
    stands behind it for the journal and the status. Any other command gets a plain -ERR."""

    def __init__(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.endpoint = "127.0.0.1:%d" % self._sock.getsockname()[1]
        self.auths = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _commands(data):
        """The complete RESP arrays of bulk strings in data, and the bytes left over."""
        cmds = []
        while data.startswith(b"*") and b"\r\n" in data:
            head, rest = data.split(b"\r\n", 1)
            args = []
            for _ in range(int(head[1:])):
                if b"\r\n" not in rest:
                    return cmds, data
                blen, rest = rest.split(b"\r\n", 1)
                n = int(blen[1:])
                if len(rest) < n + 2:
                    return cmds, data
                args.append(rest[:n])
                rest = rest[n + 2:]
            cmds.append(args)
            data = rest
        return cmds, data

    def _serve(self, conn):
        conn.settimeout(2)
        buf = b""
        try:
            while not self._stop.is_set():
                chunk = conn.recv(4096)
                if not chunk:
                    break
                cmds, buf = self._commands(buf + chunk)
                for args in cmds:
                    if args and args[0].upper() == b"AUTH":
                        self.auths += 1
                        conn.sendall(b"-%s is not a password here\r\n" % args[-1][:32])
                    else:
                        conn.sendall(b"-ERR unknown command\r\n")
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def close(self):
        self._stop.set()
        self._sock.close()
        self._thread.join(2)


def test_redis_echoing_the_password_in_an_auth_error_leaves_it_out_of_journal_and_status(sc):
    pw = "P" + secrets.token_hex(20).upper()          # 41 capitals and digits
    server = EchoingRedis()
    sc.on_close(server.close)
    sc.store_cred("app", pw)
    sc.write_config([sc.cred(endpoints=[server.endpoint])])
    a = sc.start_agent(journal=True)
    wait_journal(a, "unexpected error reply", 0)
    assert server.auths >= 1
    h.wait_until(lambda: "unexpected error reply" in cli(sc, "status", "--json"), 10,
                 "the candidate's error in the status")
    outputs = {"CLI": cli(sc, "status") + cli(sc, "status", "--json")}
    assert a.stop() == 0
    outputs.update(agent_outputs(a))
    assert_no_secret(outputs, {"candidate password": pw})
    # common/resp.c now cuts this echo at the source ("(redacted)": the first word holds a
    # piece of the AUTH argument); the host's scrub ("[redacted]", secret_scrub(), unit
    # tests test_secret, test_log and test_agent) is the second line behind it
    for where in ("journal", "CLI"):
        assert ("unexpected error reply (redacted)" in outputs[where] or
                "unexpected error reply [redacted]" in outputs[where]), where
