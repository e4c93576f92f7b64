"""The Node.js package (client/node) with node-redis and ioredis, each major the package
supports (versions pinned in its package-lock.json, installed here with `npm ci`), against
a real redis-server and the real agent: its two examples keep 0 failed commands through
rotations, their open connection re-AUTHs in place (the same connection id changes user
on the server), and a credential Redis refuses falls back to `previous`, at connect and
in place. Skipped, with a line saying so, where node is missing or older than 20."""
import os
import select
import shutil
import signal
import subprocess
import time

import pytest

import client_helpers as ch
import rc_harness as h

NODE_DIR = os.path.join(h.SOURCE_DIR, "client", "node")
ROTATIONS = 6
USERS = ("app-a", "app-b")
CLIENTS = [  # (example, module to import, client name on the server)
    ("node-redis", "redis5", "redis-creds-example-node-redis"),
    ("node-redis", "redis", "redis-creds-example-node-redis"),
    ("ioredis", "ioredis5", "redis-creds-example-ioredis"),
    ("ioredis", "ioredis", "redis-creds-example-ioredis"),
]
CLIENT_IDS = ["node-redis5", "node-redis6", "ioredis5", "ioredis6"]


def node_or_why():
    """(node, None) when node >= 20 is on PATH; else (None, why)."""
    node = shutil.which("node")
    if not node:
        return None, "node is not installed"
    v = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    if int(v.lstrip("v").split(".")[0] or 0) < 20:
        return None, "node %s is older than 20, which the package needs" % v
    return node, None


def npm_ci():
    """`npm ci` in client/node (the versions of package-lock.json): None, or why it failed."""
    p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        return ("npm ci in %s failed (the tests need the npm registry):\n%s"
                % (NODE_DIR, p.stderr[-2000:]))
    return None


@pytest.fixture(scope="module")
def node():
    """node, after `npm ci` in client/node."""
    node, why = node_or_why()
    if not node:
        pytest.skip("Node.js tests skipped: %s" % why)
    why = npm_ci()
    if why:
        h.fail(why)
    return node


class Example:
    """client/node/examples/<kind>.mjs, INCRing until SIGTERM."""

    def __init__(self, node, sc, kind, module):
        env = h.clean_env({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(sc.redis.port),
                           "REDIS_CREDS_NAME": "cache",
                           "REDIS_CREDS_RUNTIME_DIR": sc.tree.runtime,
                           "REDIS_CREDS_CLIENT_MODULE": module})
        self.proc = subprocess.Popen([node, "examples/%s.mjs" % kind], cwd=NODE_DIR, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r and self.proc.stdout.readline().strip() == b"ready":
                return
        self.proc.kill()
        _, err = self.proc.communicate()
        h.fail("the example did not get ready; stderr:\n%s" % err.decode(errors="replace"))

    def stop_with_no_failure(self, what):
        """stop(), and asserts that INCR succeeded and never failed."""
        ok, failed, err = self.stop()
        print("%s: ok %d failed %d" % (what, ok, failed))
        assert failed == 0, err[-2000:]
        assert ok > 0

    def stop(self):
        """SIGTERM; returns (ok, failed, stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            h.fail("the example did not stop on SIGTERM")
        assert self.proc.returncode == 0, err.decode(errors="replace")
        last = out.decode().strip().splitlines()[-1].split()
        assert last[0] == "ok" and last[2] == "failed", out
        return int(last[1]), int(last[3]), err.decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def connections(sc, name):
    """{id: user} of the connections named `name`, from CLIENT LIST."""
    c = sc.redis.client()
    try:
        return {e["id"]: e["user"] for e in c.client_list() if e.get("name") == name}
    finally:
        c.close()


def wait_connection(sc, name, conn_id, user, what):
    h.wait_until(lambda: connections(sc, name).get(conn_id) == user, 10, what)


def set_user(sc, user, password):
    sc.redis.acl_setuser(user, "reset", "on", ">" + password, "~*", "&*", "+@all")


def auth_failures(sc, user):
    """How many failed AUTHs as `user` ACL LOG counts (entries of 60 s are merged)."""
    c = sc.redis.client()
    try:
        entries = []
        for raw in c.execute_command("ACL", "LOG"):
            kv = [x.decode() if isinstance(x, bytes) else x for x in raw]
            entries.append(dict(zip(kv[0::2], kv[1::2])))
        return sum(int(e["count"]) for e in entries
                   if e["reason"] == "auth" and e["username"] == user)
    finally:
        c.close()


@pytest.mark.parametrize("kind,module,conn_name", CLIENTS, ids=CLIENT_IDS)
def test_example_keeps_zero_failed_commands_and_reauths_in_place(sc, node, kind, module,
                                                                 conn_name):
    """Each rotation moves the credential to the other ACL user: the example's one
    connection must show the new user under the same id (re-AUTHed in place, not
    reconnected), while INCR never fails."""
    set_user(sc, USERS[1], ch.rotation_password(1))
    sc.store_cred(USERS[1], ch.rotation_password(1))
    sc.write_config()
    sc.start_agent().wait_ready()
    sc.wait_published(password=ch.rotation_password(1))
    ex = Example(node, sc, kind, module)
    try:
        ex.wait_ready()
        conns = connections(sc, conn_name)
        assert list(conns.values()) == [USERS[1]], conns
        conn_id = next(iter(conns))
        for n in range(2, ROTATIONS + 2):
            user, old_user = USERS[n % 2], USERS[(n - 1) % 2]
            set_user(sc, user, ch.rotation_password(n))
            sc.store_cred(user, ch.rotation_password(n))
            sc.wait_published(password=ch.rotation_password(n), timeout=10)
            wait_connection(sc, conn_name, conn_id, user,
                            "connection %s re-AUTHed as %s (rotation %d)" % (conn_id, user, n))
            sc.redis.remove_password(old_user, ch.rotation_password(n - 1))
        ex.stop_with_no_failure("%s (%s)" % (kind, module))
    finally:
        ex.kill()
    assert list(connections(sc, conn_name)) == []  # the example closed it


@pytest.mark.parametrize("kind,module,conn_name", CLIENTS, ids=CLIENT_IDS)
def test_example_falls_back_to_previous_at_connect_and_in_place(sc, node, kind, module,
                                                               conn_name):
    """The agent (validate = "none") publishes credentials Redis does not know yet: the
    example connects with `previous`, and later, when a re-AUTH is refused, goes back to
    `previous` on the same connection. Not one INCR fails."""
    set_user(sc, "app-a", "pw-a")
    sc.store_cred("app-a", "pw-a")
    sc.write_config(credentials=[sc.cred(redis_extra={"validate": "none"})])
    sc.start_agent().wait_ready()
    sc.wait_published(password="pw-a")
    sc.store_cred("app-b", "pw-b")  # no such user in Redis yet
    sc.wait_published(password="pw-b")
    ex = Example(node, sc, kind, module)
    try:
        ex.wait_ready()
        conns = connections(sc, conn_name)
        assert list(conns.values()) == ["app-a"], conns  # `previous`, at connect
        assert auth_failures(sc, "app-b") >= 1
        conn_id = next(iter(conns))
        # Redis learns app-b; the agent publishes app-c, which Redis does not know.
        set_user(sc, "app-b", "pw-b")
        sc.store_cred("app-c", "pw-c")
        sc.wait_published(password="pw-c")
        h.wait_until(lambda: auth_failures(sc, "app-c") >= 1, 10, "a refused AUTH as app-c")
        wait_connection(sc, conn_name, conn_id, "app-b",
                        "connection %s back on previous (app-b), in place" % conn_id)
        # Once Redis knows app-c, the next publication moves the connection on.
        set_user(sc, "app-c", "pw-c2")
        sc.store_cred("app-c", "pw-c2")
        sc.wait_published(password="pw-c2")
        wait_connection(sc, conn_name, conn_id, "app-c", "connection %s on app-c" % conn_id)
        ex.stop_with_no_failure("%s (%s)" % (kind, module))
    finally:
        ex.kill()


def test_type_declarations_fit_the_clients_types(node):
    """tsc --strict over client/node/test/types/check.ts: index.d.ts compiles, and the
    provider is what node-redis 5 and 6 accept as credentialsProvider (the same for the
    ioredis helpers, with ioredis 5 and 6), from ESM and CommonJS imports."""
    tsc = os.path.join(NODE_DIR, "node_modules", "typescript", "bin", "tsc")
    p = subprocess.run([node, tsc, "-p", "test/types/tsconfig.json"], cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-1000:]


def _doc_snippets():
    """The ```js blocks of docs/clients.md's Node.js section that talk to Redis."""
    with open(os.path.join(h.SOURCE_DIR, "docs", "clients.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Node.js: redis-creds", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```js\n")[1:]]
    return [b for b in blocks if "redis-1.internal" in b or "ready()" in b]


def test_docs_snippets_run_as_written(sc, node):
    """Each snippet of the Node.js section, with only the host, port and runtime
    directory replaced, runs to completion against the real agent and server."""
    snippets = _doc_snippets()
    assert len(snippets) == 5, "the Node.js section of docs/clients.md changed shape"
    ch.start_agent_with_first_credential(sc)
    env = h.clean_env({"REDIS_CREDS_RUNTIME_DIR": sc.tree.runtime})
    for i, code in enumerate(snippets):
        code = code.replace("'redis-1.internal'", "'127.0.0.1'").replace(
            "port: 6379", "port: %d" % sc.redis.port)
        path = os.path.join(NODE_DIR, ".doc-snippet-%d-%d.mjs" % (os.getpid(), i))
        with open(path, "w") as f:
            f.write(code)
        try:
            p = subprocess.run([node, path], cwd=NODE_DIR, env=env, capture_output=True,
                               text=True, timeout=60)
        finally:
            os.unlink(path)
        assert p.returncode == 0, "snippet %d:\n%s\n%s" % (i, code, p.stderr[-2000:])
        assert "ERR" not in p.stderr and "refused" not in p.stderr, p.stderr
