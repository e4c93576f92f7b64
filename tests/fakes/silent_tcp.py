"""A TCP endpoint that accepts connections and never answers (a hung "Redis").

Used to check that a validation stuck on the network does not block the agent's loop:
the kernel completes the handshake, the server accepts, keeps the socket open, never
reads and never writes, until close().
"""
import select
import socket
import threading


class SilentTCPServer:
    def __init__(self, host="127.0.0.1"):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(64)
        self.host = host
        self.port = self._sock.getsockname()[1]
        self.accepted = 0
        self._conns = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="silent-tcp", daemon=True)
        self._thread.start()

    @property
    def endpoint(self):
        return "%s:%d" % (self.host, self.port)

    def _run(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self._sock], [], [], 0.05)
            if not r:
                continue
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._conns.append(conn)   # held open, never read, never written
            self.accepted += 1

    def close(self):
        self._stop.set()
        self._thread.join(2)
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
