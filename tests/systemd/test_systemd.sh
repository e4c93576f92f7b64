#!/usr/bin/env bash
# The shipped unit under a real systemd: Debian's systemd booted as PID 1 in its own
# PID, mount, network, UTS, IPC and cgroup namespaces, over an overlay of / with a tmpfs
# upper layer (nothing reaches the real system, and the host's systemd, if any, is never
# asked anything).
#
#   tests/systemd/test_systemd.sh SOURCE_DIR
#
# The Debian packages are built from a copy of SOURCE_DIR with scripts/package.sh
# (DEB_BUILD_OPTIONS=nocheck, no lintian: tests/package checks that), or taken from
# $REDIS_CREDS_DEBS_DIR when it is set (a directory of .deb files, e.g. ../ after
# scripts/package.sh). They are installed with dpkg -i into the overlay, beside a
# redis-server unit on 127.0.0.1:6390, an agent.conf with a `file` store under
# /var/lib/redis-creds that the agent rotates (strategy redis-acl), and one test-only
# drop-in for the shipped redis-creds-agent.service: WatchdogSec=3s. Then, each a check of
# its own: READY and STATUS=, `systemctl reload` with a good and a bad config, a watchdog
# restart after SIGSTOP, the journal fields and the catalog text, a rotation inside the
# sandbox, the runtime directory deleted under the agent (reliability D1), and
# `systemd-analyze security` <= 1.5.
#
# Skipped (exit 0, with a line saying why) when the machine cannot boot systemd this way:
# not root, no namespaces, no cgroup2. Bounded: every wait has a deadline, PID 1 of the
# namespace is killed at the end, and its cgroup and work directory are removed.
# Prints "N passed, N failed" last (an expected failure is reported, not counted).
set -uo pipefail

src=$(cd "${1:?usage: test_systemd.sh SOURCE_DIR}" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/systemd/lib.sh
. "$here/lib.sh"
# shellcheck source=tests/systemd/checks.sh
. "$here/checks.sh"

sd_preconditions || exit 0
sd_clean_stale
work=$(mktemp -d "/var/tmp/rc-systemd.$$.XXXXXX")
cg=$cg_parent/rc-systemd-test.$$
trap sd_teardown EXIT
trap 'exit 1' INT TERM HUP
mkdir -p "$work/ovl" "$work/debs"

# 1. the packages
if [[ -n ${REDIS_CREDS_DEBS_DIR:-} ]]; then
    debdir=$REDIS_CREDS_DEBS_DIR
else
    sd_build_packages "$src" "$work/build" || { bad "the packages build (scripts/package.sh)"; finish; }
    debdir=$work/build
fi
debs=()
for d in "$debdir"/*.deb; do
    [[ -f $d && $d != *-dbgsym_* ]] && debs+=("$d")
done
if ((${#debs[@]} == 0)); then
    bad "Debian packages found in $debdir"
    finish
fi
cp "${debs[@]}" "$work/debs/"

# 2. the container's root, then systemd
pw1=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
sd_write_setup "$work" "$here" "$pw1"
if ! sd_boot "$work" "$cg" "$here/boot.sh"; then
    bad "systemd boots as PID 1 in the namespaces"
    tail -n 30 "$work/console.log"
    finish
fi
ok "systemd boots as PID 1 in the namespaces ($(in_c systemctl is-system-running 2>&1))"

# 3. the checks
check_ready
check_journal
check_reload
check_watchdog
check_rotation
check_runtime_dir_deleted
check_security
finish
