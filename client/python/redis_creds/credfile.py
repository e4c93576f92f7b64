"""Reading <runtime_dir>/<name>.json (docs/design.md §5) with caching by inode and mtime.

Thread-safe. Standard library only. Never puts a password in an exception or a repr."""
import json
import os
import re
import stat
import threading
import time

DEFAULT_RUNTIME_DIR = "/run/redis-creds"
MAX_FILE = 64 * 1024
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")   # fullmatch: "$" lets a "\n" through
# [0-9], not \d (which takes any Unicode digit); fullmatch, not $ (which allows a "\n")
_RFC3339_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):"
                         r"([0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})")
_INT64 = (-(1 << 63), (1 << 63) - 1)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


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


def _days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date; a day past the month's end
    rolls over into the next month, as C's timegm does. Never raises."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _parse_time(value, path, what):
    """RFC 3339 date-time (the C client's rules: month 1-12, day 1-31, hour <= 23,
    minute <= 59, second <= 60, zone hour <= 23, zone minute <= 59) -> Unix time (float),
    None for null/absent. Raises CredentialFileError only."""
    if value is None:
        return None
    m = _RFC3339_RE.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise CredentialFileError(path, "%s is not an RFC 3339 time" % what)
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    offset = 0
    tz = m.group(8)
    if tz not in ("Z", "z"):
        oh, om = int(tz[1:3]), int(tz[4:6])
        if oh > 23 or om > 59:
            raise CredentialFileError(path, "%s has an out-of-range zone offset" % what)
        offset = (-1 if tz[0] == "-" else 1) * (oh * 3600 + om * 60)
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 60):
        raise CredentialFileError(path, "%s has a field out of range" % what)
    t = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
    # microseconds at most: a long .999... must not round up to the next second
    return t + (float(m.group(7)[:7]) if m.group(7) else 0.0)


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
    """An immutable view of one version of the file. previous is as published;
    usable_previous() is the one worth trying when Redis refuses current."""
    __slots__ = ("name", "current", "previous", "generation", "published_at",
                 "previous_valid_until")

    def __init__(self, name, current, previous, generation, published_at=None,
                 previous_valid_until=None):
        self.name = name
        self.current = current
        self.previous = previous
        self.generation = generation
        self.published_at = published_at
        self.previous_valid_until = previous_valid_until  # Unix time (float) or None

    def usable_previous(self, now=None):
        """previous, unless there is none, it expired, or the file's previous_valid_until
        has passed (the agent removed it from Redis): then None."""
        p = self.previous
        now = time.time() if now is None else now
        if p is None or p.expired(now):
            return None
        if self.previous_valid_until is not None and now >= self.previous_valid_until:
            return None
        return p

    def credential(self, previous=False):
        """current, or with previous=True usable_previous() (CredentialError if none)."""
        if not previous:
            return self.current
        p = self.usable_previous()
        if p is None:
            raise CredentialError("%s: no previous credential%s" % (
                self.name, "" if self.previous is None else " still valid"))
        return p

    def same_as(self, other):
        return other is not None and self.current == other.current and \
            self.previous == other.previous and \
            self.previous_valid_until == other.previous_valid_until

    def __repr__(self):
        return "Snapshot(name=%r, version=%r, previous=%r, generation=%d)" % (
            self.name, self.current.version,
            self.previous.version if self.previous else None, self.generation)


class _NotJson(ValueError):
    """What json.loads' hooks raise for what JSON (RFC 8259) or the format refuses."""


def _object(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise _NotJson("duplicate key")
        d[k] = v
    return d


def _constant(_text):
    raise _NotJson("NaN or Infinity")


def _integer(text):
    v = int(text)
    if not _INT64[0] <= v <= _INT64[1]:
        raise _NotJson("an integer beyond 64 bits")
    return v


def _real(text):
    v = float(text)
    if v in (float("inf"), float("-inf")):
        raise _NotJson("a number out of range")
    return v


def _check_strings(doc):
    """Refuses lone surrogate escapes anywhere, and \\u0000 in a key (what the C client's
    jansson refuses). Iterative: the depth is json's to limit, not this walk's."""
    stack = [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if _SURROGATE_RE.search(v):
                raise _NotJson("a lone surrogate escape")
        elif isinstance(v, dict):
            for k, item in v.items():
                if "\0" in k or _SURROGATE_RE.search(k):
                    raise _NotJson("an invalid key")
                stack.append(item)
        elif isinstance(v, list):
            stack.extend(v)


def _load_json(data, path):
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_object,
                         parse_constant=_constant, parse_int=_integer, parse_float=_real)
        _check_strings(doc)
    except _NotJson as e:
        raise CredentialFileError(path, "malformed JSON (%s)" % e) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        # the decoder's message may quote the text around the error: keep only its kind
        raise CredentialFileError(path, "malformed JSON (%s)" % type(e).__name__) from None
    return doc


def _str(obj, key, path, what, required=False, nul=False):
    v = obj.get(key)
    if v is None:
        if required:
            raise CredentialFileError(path, "%s.%s is missing" % (what, key))
        return None
    if not isinstance(v, str) or (not nul and "\0" in v):
        raise CredentialFileError(path, "%s.%s is not a string%s" % (
            what, key, "" if nul else " without \\u0000"))
    return v


def _cred(obj, path, what):
    if not isinstance(obj, dict):
        raise CredentialFileError(path, "%s is not an object" % what)
    user = _str(obj, "username", path, what)
    pw = _str(obj, "password", path, what, required=True, nul=True)
    ver = _str(obj, "version", path, what, required=True)
    if not pw:
        raise CredentialFileError(path, "%s.password is empty" % what)
    return Credential(user or None, pw, ver,
                      _parse_time(obj.get("expires_at"), path, what + ".expires_at"))


def parse_document(data, name, path="<credential file>"):
    """Bytes of a credential file -> (current, previous or None, published_at,
    previous_valid_until or None). Raises CredentialFileError (never with the password in
    its message), and nothing else."""
    doc = _load_json(data, path)
    if not isinstance(doc, dict):
        raise CredentialFileError(path, "not a JSON object")
    fmt = doc.get("format")
    if type(fmt) is not int:   # not 1.0, not true
        raise CredentialFileError(path, "no format number")
    if fmt != 1:
        raise CredentialFileError(path, "unknown format %d (this client knows 1)" % fmt)
    if "name" in doc and doc["name"] != name:
        raise CredentialFileError(path, "the file is for credential %r" % (doc["name"],)
                                  if isinstance(doc["name"], str) else
                                  "the file's name is not a string")
    current = _cred(doc, path, "credential")
    prev = doc.get("previous")
    previous = None if prev is None else _cred(prev, path, "previous")
    valid_until = _parse_time(doc.get("previous_valid_until"), path, "previous_valid_until")
    published_at = doc.get("published_at")
    return current, previous, published_at if isinstance(published_at, str) else None, \
        valid_until


def parse(data, name, path="<credential file>"):
    """Bytes of a credential file -> (current, previous or None, published_at). Raises
    CredentialFileError (never with the password in its message)."""
    return parse_document(data, name, path)[:3]


class CredentialFile:
    """Follows one published credential.

    get() returns the current Snapshot. Each call costs one stat(); the file is re-read
    only when its inode, size, mtime or ctime changed. While a Watcher with inotify runs,
    get() does no I/O at all. A malformed, missing or unreadable file keeps the last good
    snapshot (the error is in .last_error); CredentialUnavailable is raised only while no
    good credential has ever been loaded."""

    def __init__(self, name, runtime_dir=None):
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name.startswith("."):
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
                # O_NONBLOCK: a FIFO in the file's place must not block the open (and hold
                # the lock, i.e. every get(), until some writer comes)
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY |
                             os.O_NONBLOCK)
            except OSError as e:
                self._key = None
                return self._fail(e)
            try:
                fst = os.fstat(fd)
                key = (fst.st_dev, fst.st_ino, fst.st_size, fst.st_mtime_ns, fst.st_ctime_ns)
                if not stat.S_ISREG(fst.st_mode):
                    self._key = key
                    return self._fail(CredentialFileError(self.path, "not a regular file"))
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
                current, previous, published_at, valid_until = parse_document(
                    data, self.name, self.path)
            except CredentialFileError as e:
                return self._fail(e)
            self.last_error = None
            candidate = Snapshot(self.name, current, previous, self._gen + 1, published_at,
                                 valid_until)
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
