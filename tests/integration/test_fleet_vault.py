"""Fleet rotation on Vault KV v2 (docs/design.md §9.5, §9.6): five agents (separate
processes, each its own runtime_dir, state_dir and host key) sharing one credential in the
fake Vault (check-and-set required on the mount) and one redis-server, strategy redis-acl,
rotating every few seconds over several intervals. The claim is the check-and-set creation
of the secret `<path>.rotation`: one claim per base version; every host publishes each
rotation; no warning or error anywhere; consecutive rotations spaced >= interval and <=
interval + splay + poll_interval + 1 s; Redis holds only what the entry or a live record
holds.

Waits on events (the fake's KV writes, inotify on each runtime_dir, the agents' journal
entries), never on a sleep followed by an assertion."""
import os
import time

import rc_harness as h
from fleet_helpers import MID_STARTED, MID_TAKEN_OVER, Fleet, problems, redis_passwords, sha
from vault_helpers import VaultScenario

N_HOSTS = 5
PATH = "redis/cache"
RECORD = PATH + ".rotation"
INTERVAL, SPLAY, GRACE, POLL = 4.0, 1.0, 1.0, 1.0


class VaultFleet(Fleet):
    """fleet_helpers.Fleet on the fake Vault: also records every KV write attempt on the
    credential and on its rotation record (time, key, cas, whether it won, the data)."""

    def __init__(self, sc, vs, n, rotation):
        cred = vs.cred(path="secret/" + PATH, poll_interval="%gs" % POLL, engine="kv2", rotation=rotation)
        super().__init__(sc, n, rotation, cred=cred, sources=[vs.source(name="vault")])
        self.writes = []            # (time.monotonic(), key, cas, won, data, time.time())
        orig = vs.fake._kv2_write

        def recording(m, key, data, cas):
            try:
                v = orig(m, key, data, cas)
            except Exception:
                with self.lock:
                    self.writes.append((time.monotonic(), key, cas, False, dict(data), time.time()))
                raise
            with self.lock:
                self.writes.append((time.monotonic(), key, cas, True, dict(data), time.time()))
            return v
        vs.fake._kv2_write = recording

    def entry_writes(self):
        """The credential's new versions: (monotonic time, password, data, wall time), in order."""
        with self.lock:
            return [(t, d["password"], d, tw) for t, k, _, won, d, tw in self.writes if k == PATH and won]

    def record_writes(self):
        with self.lock:
            return [(t, cas, won, d) for t, k, cas, won, d, _ in self.writes if k == RECORD]

    def claims(self):
        """The record's creations (a winning write of a record where there was none: no
        version yet, or the empty data of a removal), and the attempts that lost."""
        won, lost, live = [], [], False
        for t, cas, ok, d in self.record_writes():
            if not live and d:
                (won if ok else lost).append((t, d))
            if ok:
                live = bool(d)
        return won, lost


def test_vault_fleet_rotates_once_per_interval_with_one_claim_per_base_version(sc):
    n_rot = 4
    vs = VaultScenario(sc)
    vs.fake.kv2_enable("secret", cas_required=True)
    sc.redis.create_user("app", "vault-fleet-pw-0")
    vs.fake.kv2_put("secret", PATH, {"username": "app", "password": "vault-fleet-pw-0"}, cas=0)
    admin = os.path.join(sc.tree.root, "admin-pw")
    with open(admin, "w") as f:
        f.write(h.ADMIN_PASSWORD + "\n")
    os.chmod(admin, 0o600)
    fl = VaultFleet(sc, vs, N_HOSTS, {"strategy": "redis-acl", "admin_username": h.ADMIN_USER,
                                       "admin_password_file": admin, "interval": "%gs" % INTERVAL,
                                       "grace": "%gs" % GRACE, "splay": "%gs" % SPLAY})
    for i in range(N_HOSTS):
        fl.start(i)
    h.wait_until(lambda: fl.all_published("vault-fleet-pw-0"), 60, "every host to publish the first password")

    per_rotation = INTERVAL + SPLAY + POLL + 2
    h.wait_until(lambda: len(fl.entry_writes()) >= n_rot, 30 + n_rot * per_rotation, "%d rotations" % n_rot)
    rots = fl.entry_writes()[:n_rot]
    for _, pw, _, _ in rots:
        h.wait_until(lambda pw=pw: fl.all_published(pw), POLL + 10, "every host to publish each rotation")

    # spacing of consecutive rotations (new versions of the entry); the entry's version is
    # the rotation's completion (its created_time is the fleet clock)
    spacing = [b[0] - a[0] for a, b in zip(rots, rots[1:])]
    assert all(INTERVAL <= s <= INTERVAL + SPLAY + POLL + 1 for s in spacing), spacing
    # one claim per base version: the record is created (CAS on "no record") exactly once
    # before each new version, by the one host that logged `started` in that span, and the
    # claim names the version it replaces (its old password)
    creates, lost = fl.claims()
    started = sorted(m.t for i in range(N_HOSTS) for m in fl.journal(i, MID_STARTED))
    bases = ["vault-fleet-pw-0"] + [pw for _, pw, _, _ in rots]
    for k, (t_write, pw, _, _) in enumerate(rots):
        t_prev = rots[k - 1][0] if k else 0.0
        made = [rec for t, rec in creates if t_prev < t <= t_write]
        assert len(made) == 1, (k, made)
        assert made[0]["old_password"] == bases[k] and made[0]["password"] == pw
        assert made[0]["epoch"] == 1 and made[0]["phase"] == "adding"
        assert len([t for t in started if t_prev < t <= t_write]) == 1, (k, started)
    # every host publishes each rotation (waited for above) within poll_interval + 1 s
    # (wall clock: cache.json's mtime against the write's time.time())
    pickup = [fl.published[(i, pw)] - t for _, pw, _, t in rots for i in range(N_HOSTS)]
    assert max(pickup) <= POLL + 1.0, sorted(pickup)[-5:]
    for _, _, doc, _ in rots:
        assert doc["redis_creds_rotated_by"] == os.uname().nodename
    # no warning or error anywhere, no takeover
    for i in range(N_HOSTS):
        assert problems(fl.agents[i]) == [], (i, problems(fl.agents[i])[:3])
        assert fl.journal(i, MID_TAKEN_OVER) == []
    # Redis holds only what the entry or a live record holds
    for a in fl.agents:
        a.stop()
    held = {sha(fl.entry_writes()[-1][1])}
    last = [d for _, _, ok, d in fl.record_writes() if ok][-1:]
    if last and last[0]:
        held |= {sha(last[0]["password"]), sha(last[0]["old_password"])}
    assert set(redis_passwords(sc)) <= held
    print("vault fleet: spacing %s s; pickup p50 %.0f ms, max %.0f ms; %d claims, %d lost record CAS"
          % ([round(s, 2) for s in spacing], sorted(pickup)[len(pickup) // 2] * 1e3, max(pickup) * 1e3,
             len(creates), len(lost)))
