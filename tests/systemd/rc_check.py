"""Checks run inside the redis-creds systemd test's container (/usr/bin/python3, redis-py).

  rc_check.py version   print the published version of /run/redis-creds/cache.json
  rc_check.py rotated   after `redis-creds rotate cache`: the store file holds the published
                        password, the published file keeps the first password as previous,
                        Redis takes the new password for `app` and no longer the first one

Never prints a password. Exit status 0 when every check holds, 1 otherwise (with a line
saying which failed).
"""
import json
import os
import stat
import sys

import redis

PUBLISHED = "/run/redis-creds/cache.json"
STORE = "/var/lib/redis-creds/secrets/cache.json"
FIRST = "/rc-test/pw1"


def auth_ok(user, password):
    try:
        r = redis.Redis(host="127.0.0.1", port=6390, username=user, password=password,
                        socket_timeout=5)
        return r.ping()
    except redis.exceptions.AuthenticationError:
        return False
    except redis.exceptions.ResponseError as e:  # redis-py 4.3 raises WRONGPASS as this
        if str(e).startswith("WRONGPASS"):
            return False
        raise


def rotated():
    with open(PUBLISHED) as f:
        doc = json.load(f)
    with open(STORE) as f:
        store = json.load(f)
    with open(FIRST) as f:
        first = f.read()
    st = os.stat(STORE)
    problems = []
    if store.get("password") != doc["password"]:
        problems.append("the store file does not hold the published password")
    if doc["password"] == first:
        problems.append("the published password is still the first one")
    if (doc.get("previous") or {}).get("password") != first:
        problems.append("the published file does not keep the first password as previous")
    if stat.S_IMODE(st.st_mode) != 0o600:
        problems.append("the store file's mode is %o, not 600" % stat.S_IMODE(st.st_mode))
    if not auth_ok("app", doc["password"]):
        problems.append("Redis refuses the new password")
    if auth_ok("app", first):
        problems.append("Redis still takes the first password after the grace")
    for p in problems:
        print(p)
    return 1 if problems else 0


def main():
    if sys.argv[1:] == ["version"]:
        with open(PUBLISHED) as f:
            print(json.load(f)["version"])
        return 0
    if sys.argv[1:] == ["rotated"]:
        return rotated()
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
