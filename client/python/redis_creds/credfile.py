"""Reading <runtime_dir>/<name>.json (DESIGN §4) with caching by inode and mtime.

Thread-safe. Standard library only. Never puts a password in an exception or a repr."""
import json
import os
import re
import threading
import time
from calendar import timegm

DEFAULT_RUNTIME_DIR = "/run/redis-creds"
MAX_FILE = 64 * 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class CredentialError(Exception):
    """Base class of this package's errors."""


class CredentialFileError(CredentialError):
    """The file could not be used: missing, unreadable, malformed, unknown format, too big.
    .path names the file; .cause is the underlying exception, if any."""

    def __init__(self, path, message, cause=None):
        super().__init__("%s: %s" % (path, message))
        self.path = path
        self.cause = cause


class CredentialUnavailable(CredentialFileError):
    """No good credential has ever been loaded from the file (raised by get() only then:
    once a good one was loaded, it is kept and the error is in .last_error)."""


def default_runtime_dir():
    return os.environ.get("REDIS_CREDS_RUNTIME_DIR") or DEFAULT_RUNTIME_DIR


def _parse_time(value, path):
    if value is None:
        return None
    m = _RFC3339_RE.match(value) if isinstance(value, str) else None
    if not m:
        raise CredentialFileError(path, "expires_at is not an RFC 3339 time")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    t = timegm((y, mo, d, h, mi, s, 0, 0, 0)) + (float(m.group(7)) if m.group(7) else 0.0)
    tz = m.group(8)
    if tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        t -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return t


class Credential:
    """One credential. username None means Redis' `default` user (AUTH <password>)."""
    __slots__ = ("username", "password", "version", "expires_at")

    def __init__(self, username, password, version, expires_at=None):
        self.username = username
        self.password = password
        self.version = version
        self.expires_at = expires_at  # Unix time (float) or None

    def auth_args(self):
        """(username, password), or (password,) for the default user: the arguments of
        AUTH, and what redis-py's CredentialProvider.get_credentials returns."""
        return (self.username, self.password) if self.username else (self.password,)

    def expired(self, now=None):
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    def __eq__(self, other):
        return isinstance(other, Credential) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __hash__(self):
        return hash((self.username, self.version))

    def __repr__(self):
        return "Credential(username=%r, password=<hidden>, version=%r, expires_at=%r)" % (
            self.username, self.version, self.expires_at)


class Snapshot:
    """An immutable view of one version of the file."""
    __slots__ = ("name", "current", "previous", "generation", "published_at")

    def __init__(self, name, current, previous, generation, published_at=None):
        self.name = name
        self.current = current
        self.previous = previous
        self.generation = generation
        self.published_at = published_at

    def credential(self, previous=False):
        if not previous:
            return self.current
        if self.previous is None:
            raise CredentialError("%s: no previous credential" % self.name)
        return self.previous

    def same_as(self, other):
        return other is not None and self.current == other.current and \
            self.previous == other.previous

    def __repr__(self):
        return "Snapshot(name=%r, version=%r, previous=%r, generation=%d)" % (
            self.name, self.current.version,
            self.previous.version if self.previous else None, self.generation)


def _cred(obj, path, what):
    if not isinstance(obj, dict):
        raise CredentialFileError(path, "%s is not an object" % what)
    user, pw, ver = obj.get("username"), obj.get("password"), obj.get("version")
    if user is not None and not isinstance(user, str):
        raise CredentialFileError(path, "%s.username is not a string or null" % what)
    if not isinstance(pw, str) or not pw:
        raise CredentialFileError(path, "%s.password is missing or empty" % what)
    if not isinstance(ver, str):
        raise CredentialFileError(path, "%s.version is missing" % what)
    return Credential(user or None, pw, ver, _parse_time(obj.get("expires_at"), path))


def parse(data, name, path="<credential file>"):
    """Bytes of a credential file -> (current, previous or None, published_at). Raises
    CredentialFileError (never with the password in its message)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        # the decoder's message may quote the text around the error: keep only its kind
        raise CredentialFileError(path, "malformed JSON (%s)" % type(e).__name__) from None
    if not isinstance(doc, dict):
        raise CredentialFileError(path, "not a JSON object")
    fmt = doc.get("format")
    if fmt != 1:
        raise CredentialFileError(path, "unknown format %r (this client knows 1)" % (fmt,)
                                  if isinstance(fmt, int) else "no format number")
    if "name" in doc and doc["name"] != name:
        raise CredentialFileError(path, "the file is for credential %r" % (doc["name"],))
    current = _cred(doc, path, "credential")
    prev = doc.get("previous")
    previous = None if prev is None else _cred(prev, path, "previous")
    return current, previous, doc.get("published_at")


class CredentialFile:
    """Follows one published credential.

    get() returns the current Snapshot. Each call costs one stat(); the file is re-read
    only when its inode, size, mtime or ctime changed. While a Watcher with inotify runs,
    get() does no I/O at all. A malformed, missing or unreadable file keeps the last good
    snapshot (the error is in .last_error); CredentialUnavailable is raised only while no
    good credential has ever been loaded."""

    def __init__(self, name, runtime_dir=None):
        if not isinstance(name, str) or not _NAME_RE.match(name) or name.startswith("."):
            raise ValueError("invalid credential name %r: [A-Za-z0-9_.-]{1,64}, "
                             "not starting with '.'" % (name,))
        self.name = name
        self.runtime_dir = runtime_dir or default_runtime_dir()
        self.path = os.path.join(self.runtime_dir, name + ".json")
        self.last_error = None
        self._lock = threading.Lock()
        self._snap = None
        self._key = None
        self._gen = 0
        self._watched = False   # set by an inotify Watcher while its watch is in place
        self.reads = 0          # how many times the file was actually read (for tests)

    @property
    def generation(self):
        """Generation of the last loaded snapshot (0: none), without any I/O."""
        return self._gen

    def get(self):
        snap = self._snap
        if self._watched and snap is not None:
            return snap
        return self._refresh(force=False)

    def credential(self, previous=False):
        """The current credential, or `previous` when asked (CredentialError if none)."""
        return self.get().credential(previous)

    def reload(self):
        """Reads the file now, cache or not. True when the credential changed. Never
        raises for a bad file once a good credential was loaded."""
        before = self._gen
        try:
            self._refresh(force=True)
        except CredentialUnavailable:
            return False
        return self._gen != before

    def _fail(self, err):
        self.last_error = err
        if self._snap is not None:
            return self._snap
        if isinstance(err, CredentialUnavailable):
            raise err
        raise CredentialUnavailable(self.path, str(err).split(": ", 1)[-1]
                                    if isinstance(err, CredentialFileError) else
                                    "%s" % (err.strerror or err), err) from None

    def _refresh(self, force):
        with self._lock:
            try:
                st = os.stat(self.path)
            except OSError as e:
                self._key = None
                return self._fail(e)
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if not force and key == self._key:
                if self.last_error is None and self._snap is not None:
                    return self._snap
                return self._fail(self.last_error)   # the same bad file: not re-read
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
            except OSError as e:
                self._key = None
                return self._fail(e)
            try:
                fst = os.fstat(fd)
                key = (fst.st_dev, fst.st_ino, fst.st_size, fst.st_mtime_ns, fst.st_ctime_ns)
                chunks, total = [], 0
                while True:
                    b = os.read(fd, MAX_FILE + 1 - total)
                    if not b:
                        break
                    chunks.append(b)
                    total += len(b)
                    if total > MAX_FILE:
                        break
            except OSError as e:
                self._key = None
                return self._fail(e)
            finally:
                os.close(fd)
            self.reads += 1
            self._key = key
            data = b"".join(chunks)
            if len(data) > MAX_FILE:
                return self._fail(CredentialFileError(self.path, "larger than 64 KiB"))
            try:
                current, previous, published_at = parse(data, self.name, self.path)
            except CredentialFileError as e:
                return self._fail(e)
            self.last_error = None
            candidate = Snapshot(self.name, current, previous, self._gen + 1, published_at)
            if candidate.same_as(self._snap):
                return self._snap
            self._gen += 1
            self._snap = candidate
            return candidate

    def watch(self, callback=None, method="auto", interval=1.0):
        """Starts and returns a Watcher (see watcher.py)."""
        from .watcher import Watcher
        w = Watcher(self, callback=callback, method=method, interval=interval)
        w.start()
        return w

    def __repr__(self):
        return "CredentialFile(%r)" % self.path
