#!/usr/bin/python3
"""How validation time grows with the number of Redis nodes (docs/benchmarks.md, Validation).

Starts 12 redis-servers on loopback, each with a plaintext port and a TLS port (a CA and
server certificate made here with openssl), and times agent/validate.c through
build/bench/validate_bench for 1, 3, 6 and 12 nodes, plain and TLS: connect (+ TLS
handshake), AUTH, PING on every node, all nodes at once. For reference it also times the
12 nodes asked one after another (--one-by-one).

Over loopback a round trip costs microseconds, so on 2 cores the TLS rows measure CPU
(handshakes) rather than the network. The "delayed" rows put each node behind a small
TCP proxy that holds every chunk 5 ms in each direction (10 ms round trip) and the first
client chunk another 10 ms for the TCP handshake it stands in for: a realistic network
round trip without tc netem (which this kernel does not have: CONFIG_NET_SCH_NETEM is
off). The proxy only ever listens on and connects to 127.0.0.1.

Besides the wall time, each row shows the CPU the validation cost: the validating
process's (getrusage) and the servers' (/proc/PID/schedstat), per validation, and their
sum divided by the cores: no schedule can finish faster than that.

Run after a build:  /usr/bin/python3 bench/validate_scaling.py [--quick]
"""
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("REDIS_CREDS_BUILD_DIR", os.path.join(SRC, "build"))
BENCH = os.path.join(BUILD, "bench", "validate_bench")
USER, PASSWORD = "app", "bench-pw-5f2c"
SIZES = (1, 3, 6, 12)
DELAY = 0.005   # one way


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(d):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=bench-ca", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=bench", cwd=d)
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext", cwd=d)


class Server:
    def __init__(self, root, i, pki):
        self.dir = os.path.join(root, "n%d" % i)
        os.makedirs(self.dir)
        self.port, self.tls_port = free_port(), free_port()
        conf = os.path.join(self.dir, "redis.conf")
        with open(conf, "w") as f:
            f.write("\n".join([
                "bind 127.0.0.1", "port %d" % self.port, "tls-port %d" % self.tls_port,
                "tls-cert-file %s/server.crt" % pki, "tls-key-file %s/server.key" % pki,
                "tls-ca-cert-file %s/ca.crt" % pki, "tls-auth-clients no",
                'save ""', "appendonly no", "dir %s" % self.dir,
                "logfile %s/log" % self.dir,
                "user %s on >%s ~* &* +@all" % (USER, PASSWORD)]) + "\n")
        self.proc = subprocess.Popen(["/usr/bin/redis-server", conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self):
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("redis-server on %d did not start" % self.port)

    def cpu_ns(self):
        """Time this server has spent on a CPU so far (schedstat: nanoseconds)."""
        with open("/proc/%d/schedstat" % self.proc.pid) as f:
            return int(f.read().split()[0])

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class DelayProxy:
    """127.0.0.1:listen -> 127.0.0.1:target, each chunk held `delay` seconds per direction
    (in arrival order, without adding up), the first client chunk 2*delay more (the
    TCP handshake's round trip, which connecting to a local proxy does not pay)."""

    def __init__(self, targets, delay):
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        self.ports = {}
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            for t in targets:
                srv = self.loop.run_until_complete(asyncio.start_server(
                    lambda r, w, t=t: self._conn(r, w, t), "127.0.0.1", 0))
                self.ports[t] = srv.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait()

    async def _pipe(self, reader, writer, first_extra):
        q = asyncio.Queue()

        async def pump():
            extra = first_extra
            while True:
                data = await reader.read(65536)
                await q.put((time.monotonic() + self.delay + extra, data))
                extra = 0
                if not data:
                    return

        task = asyncio.ensure_future(pump())
        try:
            while True:
                due, data = await q.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            task.cancel()
            try:
                writer.close()
            except Exception:
                pass

    async def _conn(self, creader, cwriter, target):
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(self._pipe(creader, swriter, 2 * self.delay),
                             self._pipe(sreader, cwriter, 0), return_exceptions=True)

    def close(self):
        async def shutdown():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(2)
        self.loop.close()


def run_bench(endpoints, tls, pki, iterations, servers, one_by_one=False):
    args = [BENCH, "--iterations", str(iterations), "--timeout-ms", "5000", "--user", USER]
    if tls:
        args += ["--tls", "--ca", os.path.join(pki, "ca.crt")]
    if one_by_one:
        args += ["--one-by-one"]
    before = sum(s.cpu_ns() for s in servers)
    r = subprocess.run(args + endpoints, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, RC_BENCH_PASSWORD=PASSWORD))
    after = sum(s.cpu_ns() for s in servers)
    if r.returncode != 0:
        raise RuntimeError("validate_bench failed: %s %s" % (r.stdout, r.stderr))
    out = json.loads(r.stdout)
    # every server's CPU time over the run (the warm-up round included), per validation
    out["server_cpu_ms"] = (after - before) / 1e6 / (iterations + 1)
    return out


def main():
    quick = "--quick" in sys.argv
    if not os.path.exists(BENCH):
        sys.exit("build first: %s is missing" % BENCH)
    root = tempfile.mkdtemp(prefix="rc-vbench-", dir="/tmp")
    pki = os.path.join(root, "pki")
    os.makedirs(pki)
    make_certs(pki)
    servers, proxy = [], None
    try:
        servers = [Server(root, i, pki) for i in range(max(SIZES))]
        for s in servers:
            s.wait()
        targets = [s.port for s in servers] + [s.tls_port for s in servers]
        proxy = DelayProxy(targets, DELAY)
        print("validate_scaling: %d cores, %s, %s" % (
            os.cpu_count(), subprocess.run(["redis-server", "--version"], capture_output=True,
                                           text=True).stdout.split()[2],
            subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()))
        print()
        print("| network | transport | nodes | median ms | p90 ms | median / 1 node "
              "| client CPU ms | servers' CPU ms | all CPU / cores ms |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        cores = os.cpu_count()
        nets = ("loopback",) if "--loopback" in sys.argv else ("loopback", "delayed")
        for net in nets:
            its = (20 if quick else 200) if net == "loopback" else (5 if quick else 20)
            for tls in ((False,) if "--plain" in sys.argv else (False, True)):
                base = None
                for n in SIZES + ("12, one by one",):
                    seq = isinstance(n, str)
                    k = 12 if seq else n
                    ports = [(s.tls_port if tls else s.port) for s in servers[:k]]
                    if net == "delayed":
                        ports = [proxy.ports[p] for p in ports]
                    eps = ["127.0.0.1:%d" % p for p in ports]
                    its_n = max(5, its // 4) if (seq or tls) and net == "loopback" else its
                    r = run_bench(eps, tls, pki, its_n, servers[:k], one_by_one=seq)
                    if base is None:
                        base = r["median_ms"]
                    # The least wall time the CPU work allows: all of it (validating
                    # process and servers), spread perfectly over every core.
                    floor = (r["cpu_ms"] + r["server_cpu_ms"]) / cores
                    print("| %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
                        net if net == "loopback" else "10 ms RTT", "TLS" if tls else "TCP", n,
                        r["median_ms"], r["p90_ms"], r["median_ms"] / base, r["cpu_ms"],
                        r["server_cpu_ms"], floor))
                    sys.stdout.flush()
    finally:
        if proxy:
            proxy.close()
        for s in servers:
            s.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
