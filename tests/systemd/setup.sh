#!/usr/bin/env bash
# The container's root before systemd boots (run by boot.sh, inside the mount namespace):
#
#   setup.sh ROOT WORK
#
# installs WORK/debs' packages with dpkg -i (chrooted, so the postinst scripts create the
# user and directories as on a real host), then adds the test's files: a redis-server on
# 127.0.0.1:6390 (rc-redis.service, user `app` with the password in WORK/pw1), the `file`
# store /var/lib/redis-creds/secrets/cache.json, /etc/redis-creds/agent.conf, the target
# rc-test.target and a drop-in that shortens the agent's WatchdogSec= (the one change to
# the shipped unit). Also masks systemd-modules-load.service: a container loads no modules.
set -eu
r=$1
w=$2
f=$w/files
pw=$(cat "$w/pw1")
export DEBIAN_FRONTEND=noninteractive
chroot "$r" sh -c 'dpkg -i /pkgs/*.deb' >"$w/dpkg.log" 2>&1 || {
    tail -n 20 "$w/dpkg.log"
    exit 1
}

install -d -m 0755 "$r/etc/rc-test" "$r/rc-test"
install -m 0644 "$f/rc-redis.service" "$f/rc-test.target" "$r/etc/systemd/system/"
install -d -m 0755 "$r/etc/systemd/system/redis-creds-agent.service.d"
install -m 0644 "$f/test-watchdog.conf" "$r/etc/systemd/system/redis-creds-agent.service.d/"
ln -sf /dev/null "$r/etc/systemd/system/systemd-modules-load.service"
install -m 0644 "$f/rc_check.py" "$r/rc-test/rc_check.py"
(umask 077 && printf '%s' "$pw" >"$r/rc-test/pw1")
(
    umask 077
    cat "$f/redis.conf"
    printf 'user app on >%s ~* &* +@all\n' "$pw"
) >"$r/etc/rc-test/redis.conf"

install -d -m 0700 "$r/var/lib/redis-creds" "$r/var/lib/redis-creds/secrets"
(umask 077 && printf '{"username": "app", "password": "%s"}\n' "$pw" \
    >"$r/var/lib/redis-creds/secrets/cache.json")
chroot "$r" chown -R redis-creds:redis-creds /var/lib/redis-creds
install -m 0640 "$f/agent.conf" "$r/etc/redis-creds/agent.conf"
chroot "$r" chown root:redis-creds /etc/redis-creds/agent.conf
chroot "$r" redis-creds-agent -c /etc/redis-creds/agent.conf --check-config
