"""Shared pieces of the vault benchmarks: the fake Vault (tests/fakes/vault_fake.py) in
process over HTTPS with a throwaway CA, and agent configs with `vault` sources.
Benchmarks print numbers; they assert nothing."""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fakes"))
import benchlib as B  # noqa: E402
from vault_fake import FakeVault  # noqa: E402,F401

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def make_ca(d):
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)  # noqa: E731

    def run(*a):
        subprocess.run([OPENSSL] + list(a), check=True, capture_output=True, timeout=30)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=bench CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=localhost")
    with open(p("ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-out", p("server.pem"), "-days", "2", "-extfile", p("ext.cnf"))
    return {"ca": p("ca.pem"), "cert": p("server.pem"), "key": p("server.key")}


def secret_file(path, content):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.write(fd, content.encode())
    os.close(fd)
    return path


def config(root, fake, ca, redis_port, creds, auth, log_level="notice"):
    """creds: list of dicts {name, path, poll, engine}. Returns the config path."""
    for d in ("run", "state"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    auth_txt = " ".join('%s = "%s";' % (k, v) for k, v in auth.items())
    lines = [
        'agent = { runtime_dir = "%s/run"; state_dir = "%s/state"; group = ""; plugin_dir = "%s";'
        ' control_socket = "%s/control.sock"; log_level = "%s"; };' % (root, root, B.PLUGINS, root, log_level),
        'sources = ( { name = "vault"; type = "vault"; address = "%s"; ca_file = "%s"; timeout = "5s";'
        ' auth = { %s }; } );' % (fake.url, ca, auth_txt),
        "credentials = (",
        ",\n".join(
            '{ name = "%s"; source = "vault"; path = "%s"; engine = "%s"; poll_interval = "%s";'
            ' redis = { endpoints = [ "127.0.0.1:%d" ]; timeout = "2s"; }; }'
            % (c["name"], c["path"], c.get("engine", "kv2"), c.get("poll", "30s"), redis_port) for c in creds),
        ");",
    ]
    conf = os.path.join(root, "agent.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    return conf


def start_agent(conf):
    # The agent's log goes next to its config, for when a run goes wrong.
    log = open(os.path.join(os.path.dirname(conf), "agent.log"), "wb")
    return subprocess.Popen([B.AGENT, "-c", conf, "--foreground"], stdout=log, stderr=log)


def stop(proc):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dist(values_ms):
    v = sorted(values_ms)
    return {"n": len(v), "min": v[0], "p50": B.percentile(v, 50), "p90": B.percentile(v, 90),
            "p99": B.percentile(v, 99), "max": v[-1], "mean": sum(v) / len(v)}
