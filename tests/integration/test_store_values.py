"""Store values the published files cannot carry (issue 10, D6).

The published .json is JSON, which holds only UTF-8 text without NUL bytes. Redis takes
any bytes as a password, so such a value used to pass validation and then fail at every
publish ("cannot format cache: Invalid argument"). The file source now refuses it when
it reads the file, saying why and where, without printing the value, and the agent
picks up a good value written later as usual.
"""
import pytest

import rc_harness as h

CASES = [
    pytest.param(b"nul\x00Secr3tPart", "contains a NUL byte (at byte 3)", id="nul"),
    pytest.param(b"utf8\xffSecr3tPart", "is not valid UTF-8 (at byte 4)", id="invalid-utf8"),
]


@pytest.mark.parametrize("value,why", CASES)
def test_bare_password_the_files_cannot_carry_is_refused_when_read(sc, value, why):
    # Redis accepts the bytes: without the check the agent would validate, then fail.
    sc.redis.acl_setuser("default", "resetpass", b">" + value)
    assert sc.redis.auth_ok("default", value)
    sc.store("cache", value + b"\n")
    sc.write_config(credentials=[sc.cred(path="cache")])
    a = sc.start_agent()
    a.wait_ready(timeout=10)
    line = a.wait_log(why, timeout=10)
    assert "cache" in line and "write it without" in line, line
    log = a.log()
    assert "Secr3tPart" not in log
    assert "cannot format" not in log, "refused when read, not validated then failing at publish"
    assert sc.read_bytes() is None, "nothing is published"

    # A good value written later is picked up (the watch is still on).
    sc.redis.set_default_password("good-Pw-1")
    sc.store("cache", "good-Pw-1\n")
    doc = sc.wait_published(password="good-Pw-1", timeout=10)
    assert doc["username"] is None
    assert "Secr3tPart" not in a.log()


def test_unknown_key_is_refused_naming_it_and_reserved_keys_are_accepted(sc):
    """Issue 14: {"user": ...} used to be read silently as the default user, then refused
    with WRONGPASS without naming the user. Now the key is named, with what was meant, and
    the agent's own keys (redis_creds_*) are accepted."""
    sc.redis.acl_setuser("app", "on", ">Unkn0wnKeyPw", "~*", "+@all")
    sc.store("cache.json", '{"user": "app", "password": "Unkn0wnKeyPw"}\n')
    sc.write_config(credentials=[sc.cred()])
    a = sc.start_agent()
    a.wait_ready(timeout=10)
    line = a.wait_log("unknown key `user` (did you mean `username`?)", timeout=10)
    assert "cache.json" in line and "redis_creds_" in line, line
    assert "Unkn0wnKeyPw" not in a.log()
    assert sc.read_bytes() is None, "nothing is published"

    sc.store("cache.json", '{"username": "app", "password": "Unkn0wnKeyPw", '
                           '"redis_creds_rotated_at": "2026-12-02T06:30:00Z", '
                           '"redis_creds_rotated_by": "host-a"}\n')
    doc = sc.wait_published(password="Unkn0wnKeyPw", timeout=10)
    assert doc["username"] == "app"
    assert "redis_creds_" not in sc.read_bytes().decode(), "the agent's keys stay in the store"
    assert "Unkn0wnKeyPw" not in a.log()
