"""Helpers of the ACL strategies' tests (test_acl_users.py, test_revocation_watch.py)."""
import os

import rc_harness as h


def admin_file(sc):
    """The rotator admin's password file (mode 0600) for rotation.admin_password_file."""
    path = os.path.join(sc.tree.root, "admin-pw")
    with open(path, "w") as f:
        f.write(h.ADMIN_PASSWORD + "\n")
    os.chmod(path, 0o600)
    return path


def journal(agent, mid):
    """The fields of every journal entry of the agent with that MESSAGE_ID."""
    return [m.fields for m in agent.journal.snapshot() if m.fields.get("MESSAGE_ID") == mid]
