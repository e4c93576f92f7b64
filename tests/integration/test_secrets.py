"""No secret value in any log line or status, at log_level debug (docs/design.md §14.2)."""
import secrets
import signal

import rc_harness as h


def test_no_secret_in_logs_or_notify_messages_across_a_whole_scenario(sc):
    pw = {k: "Sx%s%s" % (k, secrets.token_hex(12)) for k in "ABCDEF"}
    sc.redis.create_user("app", pw["A"], pw["B"])
    sc.redis.set_default_password(pw["F"])
    sc.store_cred("app", pw["A"])
    sc.store("plain.txt", pw["F"])
    sc.write_config([sc.cred("cache", formats=["json", "env", "password"]),
                     sc.cred("plain", path="plain.txt")])
    a = sc.start_agent(watchdog_usec=2000000)
    a.wait_ready()
    sc.wait_published(password=pw["A"])
    assert sc.read_doc("plain")["password"] == pw["F"]

    sc.store_cred("app", pw["B"])                           # accepted rotation
    sc.wait_published(password=pw["B"])

    mark = a.log_mark()
    sc.store_cred("app", pw["C"])                           # refused (WRONGPASS)
    a.wait_log("refused", since=mark)
    sc.redis.add_password("app", pw["C"])                   # then accepted on retry
    sc.wait_published(password=pw["C"], timeout=12)

    mark = a.log_mark()                                     # malformed store content
    sc.store("cache.json", '{"username": "app", "password": "%s"' % pw["E"], atomic=False)
    a.wait_log(lambda l: "cache" in l and h.level_is_error(l), since=mark,
               what="an error about the malformed store file")

    sc.redis.add_password("app", pw["D"])
    sc.redis.stop()                                          # unreachable
    mark = a.log_mark()
    sc.store_cred("app", pw["D"])
    a.wait_log("unreachable", since=mark)
    sc.redis.start()
    sc.wait_published(password=pw["D"], timeout=12)

    nmark = a.notify.mark()
    a.send(signal.SIGHUP)
    a.wait_notify("READY", "1", since=nmark)
    assert a.stop() == 0

    once = sc.run_agent("--once")
    assert once.returncode == 0, once.stderr

    outputs = {"agent log": a.log(),
               "notify": "\n".join(m.raw for m in a.notify.snapshot()),
               "--once output": once.stdout + once.stderr}
    assert "published" in outputs["agent log"]
    for where, text in outputs.items():
        for k, v in pw.items():
            assert v not in text, "secret %s appears in the %s" % (k, where)
            assert v[2:] not in text, "secret %s (or most of it) appears in the %s" % (k, where)
