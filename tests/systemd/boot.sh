#!/usr/bin/env bash
# PID 1 of the test's namespaces (run by test_systemd.sh through unshare): builds the
# container's root and execs systemd in it.
#
#   boot.sh WORK
#
# WORK/ovl becomes a tmpfs holding the overlay's upper layer; WORK/root the overlay of /
# (nothing written there reaches the real system). WORK/setup.sh, when present, runs
# first with the root as $1 and WORK as $2 (dpkg -i, units, config), chrooted where it needs to. Then
# proc, a read-only sysfs, a fresh cgroup2, a private /dev, tmpfs /run and /tmp are
# mounted, the root is switched with pivot_root and /lib/systemd/systemd is exec'd with
# WORK/boot.args as its arguments. /proc/sys and /proc/sysrq-trigger are read-only, and
# /dev has no kmsg or console: nothing in the container can change the host's kernel
# settings or write to its log.
set -eu
w=$1
mount -t tmpfs -o mode=0755 tmpfs "$w/ovl"
mkdir -p "$w/ovl/upper" "$w/ovl/work" "$w/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$w/ovl/upper,workdir=$w/ovl/work" "$w/root"
r=$w/root
mount -t proc proc "$r/proc"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$r/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"
mount -t tmpfs -o mode=0755,nosuid,noexec tmpfs "$r/dev"
for d in null zero full random urandom tty; do
    touch "$r/dev/$d"
    mount --bind "/dev/$d" "$r/dev/$d"
done
mkdir -p "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/dev/shm"
ln -s /proc/self/fd "$r/dev/fd"
ln -s /proc/self/fd/0 "$r/dev/stdin"
ln -s /proc/self/fd/1 "$r/dev/stdout"
ln -s /proc/self/fd/2 "$r/dev/stderr"
if [ -e "$w/debs" ]; then
    mkdir -p "$r/pkgs"
    mount --bind "$w/debs" "$r/pkgs"
fi
if [ -e "$w/setup.sh" ]; then
    bash "$w/setup.sh" "$r" "$w"
fi
[ -e "$w/debs" ] && umount "$r/pkgs" && rmdir "$r/pkgs"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$r/sys/fs/cgroup"
for p in sys sysrq-trigger; do
    [ -e "$r/proc/$p" ] || continue
    mount --bind "$r/proc/$p" "$r/proc/$p"
    mount -o remount,bind,ro "$r/proc/$p"
done
args=()
[ -e "$w/boot.args" ] && mapfile -t args <"$w/boot.args"
cd "$r"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
export container=redis-creds-test
# As systemd-nspawn does: no loading kernel modules, setting the clock, raw I/O or
# reading the kernel log from the container.
exec setpriv --bounding-set -sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-block_suspend \
    /lib/systemd/systemd "${args[@]}"
