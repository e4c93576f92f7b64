#!/usr/bin/python3
"""Writes the shared test vectors of the published credential file (docs/file-format.md)
into this directory: files/<id>.json (the exact bytes) and vectors.json (what a reader
must make of each). Run it after changing the list below; commit what it writes.
See README.md for the format."""
import json
import os
from calendar import timegm

HERE = os.path.dirname(os.path.abspath(__file__))
T_EXP = timegm((2026, 11, 22, 10, 0, 0))           # 2026-11-22T10:00:00Z
T_PVU = timegm((2026, 11, 22, 11, 30, 0))          # 2026-11-22T11:30:00Z

PREV = '{"username": "app", "password": "old", "version": "h-0b6e2d9f7a81c453", "expires_at": null}'


def doc(**over):
    """The example of docs/file-format.md, with keys replaced (value None: key left out;
    values are raw JSON text)."""
    keys = [("format", "1"), ("name", '"cache"'), ("username", '"app"'),
            ("password", '"s3cr3t"'), ("version", '"h-3f9a0c5e11d2b7a4"'),
            ("source", '"local:cache.json"'), ("published_at", '"2026-11-22T10:00:00Z"'),
            ("validated", '"all"'), ("expires_at", "null"), ("previous", PREV)]
    out, seen = [], set()
    for k, v in keys:
        seen.add(k)
        v = over.get(k, v)
        if v is not None:
            out.append('  "%s": %s' % (k, v))
    for k, v in over.items():
        if k not in seen and v is not None:
            out.append('  "%s": %s' % (k, v))
    return ("{\n" + ",\n".join(out) + "\n}\n").encode()


def cred(username="app", password="s3cr3t", version="h-3f9a0c5e11d2b7a4", expires_at=None):
    return {"username": username, "password": password, "version": version,
            "expires_at": expires_at}


OLD = cred(password="old", version="h-0b6e2d9f7a81c453")


def ok(current=None, previous=OLD, **extra):
    e = {"result": "ok", "current": current or cred(), "previous": previous}
    e.update(extra)
    return e


def bad(error="EBADMSG", **extra):
    e = {"result": "reject", "error": error}
    e.update(extra)
    return e


def exp_doc(value):
    return doc(expires_at=json.dumps(value))


def padded(size):
    base = doc()
    pad = size - len(base) - len(',\n  "pad": ""')
    return base[:-3] + (',\n  "pad": "%s"\n}\n' % ("x" * pad)).encode()


VALID = [
    ("basic", "the example of file-format.md", doc(), ok()),
    ("default-user-null", "username null: the default user", doc(username="null"),
     ok(cred(username=None))),
    ("default-user-empty", "username \"\": the default user, as null",
     doc(username='""'), ok(cred(username=None))),
    ("default-user-absent", "no username key: the default user", doc(username=None),
     ok(cred(username=None))),
    ("previous-null", "previous null", doc(previous="null"), ok(previous=None)),
    ("previous-absent", "no previous key", doc(previous=None), ok(previous=None)),
    ("previous-default-user", "previous for the default user",
     doc(previous='{"username": null, "password": "old", "version": "v0"}'),
     ok(previous=cred(username=None, password="old", version="v0"))),
    ("no-name", "no name key (optional)", doc(name=None), ok()),
    ("expires-z", "expires_at in UTC", exp_doc("2026-11-22T10:00:00Z"),
     ok(cred(expires_at=T_EXP))),
    ("expires-offset", "expires_at with a +hh:mm offset",
     exp_doc("2026-11-22T12:30:00+02:30"), ok(cred(expires_at=T_EXP))),
    ("expires-negative-offset", "expires_at with a -hh:mm offset",
     exp_doc("2026-11-22T05:00:00-05:00"), ok(cred(expires_at=T_EXP))),
    ("expires-fraction", "a fraction of a second (seconds are compared, rounded down)",
     exp_doc("2026-11-22T10:00:00.999Z"), ok(cred(expires_at=T_EXP))),
    ("expires-lowercase", "lowercase t and z", exp_doc("2026-11-22t10:00:00z"),
     ok(cred(expires_at=T_EXP))),
    ("expires-space", "a space between date and time (RFC 3339 allows it)",
     exp_doc("2026-11-22 10:00:00Z"), ok(cred(expires_at=T_EXP))),
    ("expires-day-past-month-end", "day 31 of November rolls over to 1 December, as timegm "
     "does", exp_doc("2026-11-31T10:00:00Z"), ok(cred(expires_at=timegm((2026, 12, 1, 10, 0, 0))))),
    ("expires-leap-second", "second 60", exp_doc("2026-12-31T23:59:60Z"),
     ok(cred(expires_at=timegm((2027, 1, 1, 0, 0, 0))))),
    ("previous-expires", "previous with an expiry",
     doc(previous='{"username": "app", "password": "old", "version": "v0", '
                  '"expires_at": "2026-11-22T10:00:00Z"}'),
     ok(previous=cred(password="old", version="v0", expires_at=T_EXP))),
    ("unknown-keys", "keys a reader does not know, of every JSON type, are ignored",
     doc(extra_obj='{"a": [1, 2.5e3, -0.5, true, false, null, {"b": "c"}]}',
         extra_num="-12", refresh_by='"2026-11-22T09:00:00Z"'), ok()),
    ("nul-in-unknown-key", "\\u0000 in the value of a key a reader does not know",
     doc(extra='"a\\u0000b"'), ok()),
    ("unicode", "UTF-8 and \\u escapes (with a surrogate pair) in password and username",
     doc(username='"\u00e4pp"', password='"p\\u00e4ss\u2713\\ud83d\\ude00/\\/\\"\\\\"'),
     ok(cred(username="\u00e4pp", password="p\u00e4ss\u2713\U0001F600//\"\\"))),
    ("password-nul", "a password containing \\u0000 (the C client gives password_len)",
     doc(password='"a\\u0000b"'), ok(cred(password="a\u0000b"))),
    ("compact", "no whitespace at all, no final newline",
     json.dumps(json.loads(doc()), separators=(",", ":")).encode(), ok()),
    ("crlf", "CR LF and tabs as whitespace", doc().replace(b"\n", b"\r\n").replace(b"  ", b"\t"),
     ok()),
    ("previous-valid-until", "previous_valid_until (added by the fleet rotation)",
     doc(previous_valid_until='"2026-11-22T11:30:00Z"'),
     ok(previous_valid_until=T_PVU)),
    ("previous-valid-until-null", "previous_valid_until null",
     doc(previous_valid_until="null"), ok(previous_valid_until=None)),
    ("size-64k", "exactly 64 KiB", padded(65536), ok()),
    ("expires-fraction-long", "a fraction longer than a double holds: still rounded down, "
     "never up to the next second", exp_doc("2026-11-22T10:00:00.99999999999999999999Z"),
     ok(cred(expires_at=T_EXP))),
    ("expires-before-epoch", "expires_at one second before 1970: Unix time -1 (timegm's "
     "error value, and a time like any other)", exp_doc("1969-12-31T23:59:59Z"),
     ok(cred(expires_at=-1))),
    ("unknown-key-nested", "arrays nested 500 deep in a key a reader does not know",
     doc(extra="[" * 500 + "]" * 500), ok()),
]

INVALID = [
    ("empty", "an empty file", b"", bad()),
    ("not-json", "not JSON", b"hello\n", bad()),
    ("truncated", "cut short inside the password (a non-atomic writer)",
     doc()[:60], bad()),
    ("array", "a JSON array", b"[1]\n", bad()),
    ("string", "a JSON string", b'"cache"\n', bad()),
    ("format-missing", "no format", doc(format=None), bad()),
    ("format-2", "a format this reader does not know", doc(format="2"),
     bad("EPROTONOSUPPORT")),
    ("format-0", "format 0", doc(format="0"), bad("EPROTONOSUPPORT")),
    ("format-string", "format \"1\" (a string)", doc(format='"1"'), bad()),
    ("format-real", "format 1.0 (not an integer)", doc(format="1.0"), bad()),
    ("format-true", "format true (not an integer)", doc(format="true"), bad()),
    ("name-mismatch", "the file is for another credential", doc(name='"other"'), bad()),
    ("name-null", "name null", doc(name="null"), bad()),
    ("password-missing", "no password", doc(password=None), bad()),
    ("password-empty", "an empty password", doc(password='""'), bad()),
    ("password-null", "password null", doc(password="null"), bad()),
    ("password-number", "a number as password", doc(password="12345"), bad()),
    ("version-missing", "no version", doc(version=None), bad()),
    ("version-number", "a number as version", doc(version="3"), bad()),
    ("username-number", "a number as username", doc(username="7"), bad()),
    ("username-nul", "a username containing \\u0000", doc(username='"a\\u0000p"'), bad()),
    ("version-nul", "a version containing \\u0000", doc(version='"v\\u00001"'), bad()),
    ("expires-number", "expires_at as a number", doc(expires_at="1795860000"), bad()),
    ("expires-garbage", "expires_at not a time", exp_doc("tomorrow"), bad()),
    ("expires-no-zone", "expires_at without a zone", exp_doc("2026-11-22T10:00:00"), bad()),
    ("expires-date-only", "expires_at a date only", exp_doc("2026-11-22"), bad()),
    ("expires-month-13", "month 13", exp_doc("2026-13-01T10:00:00Z"), bad()),
    ("expires-day-32", "day 32", exp_doc("2026-11-32T10:00:00Z"), bad()),
    ("expires-hour-24", "hour 24", exp_doc("2026-11-22T24:00:00Z"), bad()),
    ("expires-offset-24", "offset +24:00", exp_doc("2026-11-22T10:00:00+24:00"), bad()),
    ("expires-empty-fraction", "a '.' with no digits", exp_doc("2026-11-22T10:00:00.Z"),
     bad()),
    ("expires-trailing", "text after the zone", exp_doc("2026-11-22T10:00:00Zx"), bad()),
    ("previous-string", "previous a string", doc(previous='"old"'), bad()),
    ("previous-array", "previous an array", doc(previous="[]"), bad()),
    ("previous-password-missing", "previous without a password",
     doc(previous='{"username": "app", "version": "v0"}'), bad()),
    ("previous-version-missing", "previous without a version",
     doc(previous='{"username": "app", "password": "old"}'), bad()),
    ("previous-expires-garbage", "previous.expires_at not a time",
     doc(previous='{"username": "app", "password": "old", "version": "v0", '
                  '"expires_at": "soon"}'), bad()),
    ("duplicate-key", "the password key twice",
     doc(password='"s3cr3t"').replace(b'"version"', b'"password": "other",\n  "version"'),
     bad()),
    ("duplicate-key-nested", "a key twice inside previous",
     doc(previous='{"username": "app", "password": "old", "password": "x", "version": "v0"}'),
     bad()),
    ("trailing-text", "a second value after the object", doc() + b"{}\n", bad()),
    ("trailing-comma", "a comma before }", doc()[:-3] + b",\n}\n", bad()),
    ("single-quotes", "single-quoted strings",
     b"{'format': 1, 'username': 'app', 'password': 's3cr3t', 'version': 'v'}\n", bad()),
    ("comment", "a comment", b"// cache\n" + doc(), bad()),
    ("invalid-utf8", "a byte that is not UTF-8 in the password",
     doc().replace(b"s3cr3t", b"s3\xffcr3t"), bad()),
    ("overlong-utf8", "an overlong UTF-8 sequence", doc().replace(b"s3cr3t", b"s3\xc0\xafcr3t"),
     bad()),
    ("bom", "a UTF-8 byte order mark", b"\xef\xbb\xbf" + doc(), bad()),
    ("control-char", "a raw tab inside a string", doc().replace(b"s3cr3t", b"s3\tcr3t"), bad()),
    ("lone-surrogate", "a lone surrogate escape in the password",
     doc(password='"s3\\ud800cr3t"'), bad()),
    ("nan", "NaN (not JSON) in a key the reader does not know", doc(extra="NaN"), bad()),
    ("int-overflow", "an integer beyond 64 bits in a key the reader does not know",
     doc(extra="9223372036854775808"), bad()),
    ("size-over-64k", "one byte over 64 KiB", padded(65537), bad("EFBIG")),
    ("key-nul", "\\u0000 in a key a reader does not know (jansson refuses it in any key)",
     doc(**{"ex\\u0000tra": "1"}), bad()),
    ("nested-too-deep", "2049 levels of nesting (the object and 2048 arrays): jansson's "
     "limit is 2048", doc(extra="[" * 2048 + "]" * 2048), bad()),
    ("previous-valid-until-garbage", "previous_valid_until not a time",
     doc(previous_valid_until='"later"'), bad(requires=["previous_valid_until"])),
]


def main():
    files = os.path.join(HERE, "files")
    os.makedirs(files, exist_ok=True)
    for f in os.listdir(files):
        os.unlink(os.path.join(files, f))
    out = []
    for kind, vectors in (("valid", VALID), ("invalid", INVALID)):
        for vid, what, data, expect in vectors:
            fname = "%s-%s.json" % ("ok" if kind == "valid" else "bad", vid)
            with open(os.path.join(files, fname), "wb") as f:
                f.write(data)
            out.append(dict({"id": vid, "description": what, "file": "files/" + fname,
                             "name": "cache"}, **expect))
    with open(os.path.join(HERE, "vectors.json"), "w") as f:
        json.dump({"format": 1, "vectors": out}, f, indent=1, ensure_ascii=True)
        f.write("\n")


if __name__ == "__main__":
    main()
