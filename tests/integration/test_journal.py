"""Structured logging to journald when JOURNAL_STREAM names stderr (docs/design.md §12)."""
import re

import rc_harness as h


def test_events_go_to_the_journal_with_name_version_and_a_fixed_message_id(sc):
    a = sc.start_published(also_accept=("pw2",), journal=True)
    v1 = a.first_doc["version"]
    sc.store_cred("app", "pw2")
    v2 = sc.wait_published(password="pw2")["version"]
    sc.store_cred("app", "pw3-refused")
    h.wait_until(lambda: any(m.fields.get("REDIS_CREDS_VERSION") not in (None, v1, v2)
                             and m.fields.get("REDIS_CREDS_NAME") == "cache"
                             and "MESSAGE_ID" in m.fields
                             for m in a.journal.snapshot()), 5, "a journal entry for the refusal")
    a.barrier()
    a.journal.settle()
    entries = a.journal.snapshot()
    assert entries, "nothing sent to the journal socket"
    for m in entries:
        assert "MESSAGE" in m.fields and "PRIORITY" in m.fields, m.fields

    def published(v):
        return [m for m in entries if m.fields.get("REDIS_CREDS_NAME") == "cache"
                and m.fields.get("REDIS_CREDS_VERSION") == v and "MESSAGE_ID" in m.fields
                and "published" in m.fields.get("MESSAGE", "")]
    p1, p2 = published(v1), published(v2)
    assert p1 and p2, [m.fields for m in entries]
    mid = p1[0].fields["MESSAGE_ID"]
    assert re.match(r"^[0-9a-f]{32}$", mid), mid
    assert p2[0].fields["MESSAGE_ID"] == mid, "one fixed MESSAGE_ID per event kind"
    refused = [m for m in entries if m.fields.get("REDIS_CREDS_NAME") == "cache"
               and m.fields.get("REDIS_CREDS_VERSION") not in (None, v1, v2)
               and "MESSAGE_ID" in m.fields]
    assert refused and refused[0].fields["MESSAGE_ID"] != mid
    # stderr is the journal stream: events are not written there twice
    assert "published" not in a.log()
    for m in entries:
        for pw in ("pw1", "pw2", "pw3-refused"):
            assert pw not in m.raw.replace(v1, "").replace(v2, ""), m.raw
