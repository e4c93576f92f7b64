"""Helpers for the cluster and TLS tests: certificates made with the openssl CLI, plain or
TLS redis-server nodes, and an OSS cluster formed with `redis-cli --cluster create`.

Everything runs on loopback and is stopped by the fixture that started it. Nodes keep the
default user open (`nopass`) so replicas can sync without masterauth; the tests use
named ACL users, set on each node separately (Redis does not propagate ACL changes
between cluster nodes, which is what the validator has to cope with).
"""
import os
import shutil
import socket
import subprocess
import time

import redis

import rc_harness as h

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


# --------------------------------------------------------------------------- certificates

def _openssl(*args, cwd):
    subprocess.run([OPENSSL] + list(args), cwd=cwd, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)


class Certs:
    """A CA, a server certificate it signed, a client certificate it signed, and an
    unrelated CA (for the wrong-CA case). EC P-256 keys: fast to make and to use.

    san: the server certificate's subjectAltName (default: 127.0.0.1 and localhost)."""

    def __init__(self, directory, san="IP:127.0.0.1,DNS:localhost"):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        p = lambda name: os.path.join(directory, name)  # noqa: E731
        self.ca, self.ca_key = p("ca.crt"), p("ca.key")
        self.other_ca, self.other_ca_key = p("other-ca.crt"), p("other-ca.key")
        self.server, self.server_key = p("server.crt"), p("server.key")
        self.client, self.client_key = p("client.crt"), p("client.key")
        for crt, key, cn in ((self.ca, self.ca_key, "rc-test-ca"),
                             (self.other_ca, self.other_ca_key, "rc-other-ca")):
            _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + cn,
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
        # clientAuth too: with tls-cluster / tls-replication a node presents its server
        # certificate when it connects to another node, which requires a client cert
        self._leaf(self.server, self.server_key, "rc-test-server", san, "serverAuth,clientAuth")
        self._leaf(self.client, self.client_key, "rc-test-client", None, "clientAuth")
        for k in (self.ca_key, self.other_ca_key, self.server_key, self.client_key):
            os.chmod(k, 0o600)

    def _leaf(self, crt, key, cn, san, usage):
        csr = crt + ".csr"
        ext = crt + ".ext"
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", "/CN=" + cn, cwd=self.dir)
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n" % usage)
            if san:
                f.write("subjectAltName=%s\n" % san)
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                 "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext, cwd=self.dir)


# --------------------------------------------------------------------------- nodes

class Node:
    """One redis-server. tls: a Certs to listen with TLS only (port 0, tls-port), or with
    tls_too both ways: `port` plaintext (what clients and the cluster bus use) plus a TLS
    port `tls_port`, without tls-cluster (so the cluster knows no TLS ports)."""

    def __init__(self, workdir, cluster=False, tls=None, tls_auth_clients=False, users=(),
                 tls_too=False):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = h.free_port()
        self.tls_port = h.free_port() if tls and tls_too else None
        self.tls = tls if not tls_too else None
        self.proc = None
        self.logfile = os.path.join(workdir, "redis.log")
        self.conf = os.path.join(workdir, "redis.conf")
        lines = ["bind 127.0.0.1", 'save ""', "appendonly no", "daemonize no",
                 "dir %s" % workdir, "logfile %s" % self.logfile,
                 "user %s on >%s ~* &* +@all" % (h.ADMIN_USER, h.ADMIN_PASSWORD),
                 "user default on nopass ~* &* +@all"]
        lines += ["user %s" % u for u in users]
        if tls and tls_too:
            lines += ["port %d" % self.port, "tls-port %d" % self.tls_port,
                      "tls-cert-file %s" % tls.server, "tls-key-file %s" % tls.server_key,
                      "tls-ca-cert-file %s" % tls.ca, "tls-auth-clients no"]
        elif tls:
            lines += ["port 0", "tls-port %d" % self.port,
                      "tls-cert-file %s" % tls.server, "tls-key-file %s" % tls.server_key,
                      "tls-ca-cert-file %s" % tls.ca,
                      "tls-auth-clients %s" % ("yes" if tls_auth_clients else "no"),
                      "tls-replication yes"]
            if cluster:
                # the cluster bus and what CLUSTER SHARDS/SLOTS advertise: TLS
                lines += ["tls-cluster yes"]
        else:
            lines += ["port %d" % self.port]
        if cluster:
            # an explicit bus port: the default (port + 10000) may be taken or too high
            lines += ["cluster-enabled yes", "cluster-config-file nodes.conf",
                      "cluster-node-timeout 5000", "cluster-port %d" % h.free_port()]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.port

    def client(self):
        kw = {}
        if self.tls:
            # redis-py 4.3: a client certificate too, so this works with tls-auth-clients
            kw = dict(ssl=True, ssl_ca_certs=self.tls.ca, ssl_certfile=self.tls.client,
                      ssl_keyfile=self.tls.client_key, ssl_check_hostname=False)
        return redis.Redis(host="127.0.0.1", port=self.port, username=h.ADMIN_USER,
                           password=h.ADMIN_PASSWORD, socket_timeout=5,
                           socket_connect_timeout=5, **kw)

    def start(self):
        self.proc = subprocess.Popen(["/usr/bin/redis-server", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=h.clean_env())
        return self

    def wait_up(self, timeout=10):
        def up():
            if self.proc.poll() is not None:
                with open(self.logfile, errors="replace") as f:
                    h.fail("redis-server exited %s: %s" % (self.proc.returncode, f.read()[-2000:]))
            try:
                c = self.client()
                try:
                    return c.ping()
                finally:
                    c.close()
            except (redis.exceptions.RedisError, OSError):
                return False
        h.wait_until(up, timeout, "redis-server on port %d" % self.port, interval=0.02)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cmd(self, *args):
        c = self.client()
        try:
            return c.execute_command(*args)
        finally:
            c.close()

    def set_user(self, user, *passwords):
        """ACL SETUSER on this node only."""
        self.cmd("ACL", "SETUSER", user, "reset", "on", *[">" + p for p in passwords],
                 "~*", "&*", "+@all")

    def add_password(self, user, password):
        self.cmd("ACL", "SETUSER", user, ">" + password)


class Cluster:
    """primaries + primaries*replicas nodes formed into one OSS cluster."""

    def __init__(self, root, primaries=3, replicas=1, tls=None, tls_too=False):
        """tls_too: every node also has a TLS port, but the cluster is formed and runs
        over the plaintext ports (no tls-cluster)."""
        self.nodes = [Node(os.path.join(root, "node%d" % i), cluster=True, tls=tls,
                           tls_too=tls_too)
                      for i in range(primaries * (1 + replicas))]
        self.tls = tls if not tls_too else None
        self.replicas = replicas
        self.n_primaries = primaries
        for n in self.nodes:
            n.start()
        try:
            for n in self.nodes:
                n.wait_up()
            self._create()
        except BaseException:
            self.stop()
            raise

    def _cli_args(self):
        a = [REDIS_CLI, "--user", h.ADMIN_USER, "--pass", h.ADMIN_PASSWORD, "--no-auth-warning"]
        if self.tls:
            a += ["--tls", "--cacert", self.tls.ca, "--cert", self.tls.client,
                  "--key", self.tls.client_key]
        return a

    def _create(self):
        args = self._cli_args() + ["--cluster", "create"] + [n.endpoint for n in self.nodes] + \
            ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            h.fail("redis-cli --cluster create failed: %s %s" % (r.stdout[-2000:], r.stderr[-2000:]))

        def ready():
            for n in self.nodes:
                info = n.cmd("CLUSTER", "INFO")
                info = info.decode() if isinstance(info, bytes) else info
                if "cluster_state:ok" not in info:
                    return False
                # every node knows every other, with its final role (the gossip has
                # converged: right after create a replica can still look like a primary)
                nodes = n.cmd("CLUSTER", "NODES")
                nodes = nodes.decode() if isinstance(nodes, bytes) else nodes
                lines = [ln.split() for ln in nodes.splitlines() if ln.strip()]
                if len(lines) != len(self.nodes):
                    return False
                flags = [ln[2] for ln in lines]
                if sum("master" in f for f in flags) != self.n_primaries or \
                        sum("slave" in f for f in flags) != len(self.nodes) - self.n_primaries:
                    return False
            return True
        h.wait_until(ready, 30, "cluster_state:ok on every node", interval=0.1)
        # role by node, as the cluster sees it now
        self.primaries, self.replica_nodes = [], []
        for n in self.nodes:
            role = n.cmd("ROLE")[0]
            role = role.decode() if isinstance(role, bytes) else role
            (self.primaries if role == "master" else self.replica_nodes).append(n)

    def set_user(self, user, *passwords, skip=()):
        for n in self.nodes:
            if n not in skip:
                n.set_user(user, *passwords)

    def stop(self):
        for n in self.nodes:
            n.stop()


class SilentServer:
    """Accepts TCP connections and never answers (see tests/fakes/silent_tcp.py)."""

    def __init__(self):
        from silent_tcp import SilentTCPServer
        self.srv = SilentTCPServer()
        self.endpoint = self.srv.endpoint

    def close(self):
        self.srv.close()


def port_of(endpoint):
    return int(endpoint.rsplit(":", 1)[1])


def wait_port_closed(port, timeout=5):
    def closed():
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
            return False
        except OSError:
            return True
        finally:
            s.close()
    h.wait_until(closed, timeout, "port %d closed" % port)


def elapsed(t0):
    return time.monotonic() - t0
