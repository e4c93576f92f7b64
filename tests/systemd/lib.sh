# Helpers of tests/systemd/test_systemd.sh (sourced): reporting, preconditions, the
# package build, booting and tearing down the container, and running commands in it.
# shellcheck shell=bash

passed=0
failed=0
p1=""
unshare_pid=""
ok() { printf 'ok   %s\n' "$1"; passed=$((passed + 1)); }
bad() { printf 'FAIL %s\n' "$1"; failed=$((failed + 1)); }
finish() {
    printf '%d passed, %d failed\n' "$passed" "$failed"
    ((failed == 0))
    exit
}
skip() {
    printf 'test_systemd: skipped: %s\n' "$1"
    return 1
}

# A command inside the container: all of PID 1's namespaces, its root, bounded in time.
in_c() { timeout 60 nsenter -t "$p1" -a "$@"; }
# One property of the agent's unit, as systemctl show reports it.
prop() { in_c systemctl show -p "$1" --value redis-creds-agent.service; }
# wait_for SECONDS COMMAND...: polls every 0.3 s until COMMAND succeeds.
wait_for() {
    local end=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS >= end)) && return 1
        sleep 0.3
    done
}

# Can this machine boot systemd in namespaces? Sets cg_parent (a cgroup2 hierarchy).
sd_preconditions() {
    ((EUID == 0)) || skip "needs root (namespaces, mounts, dpkg)" || return 1
    local c
    for c in unshare nsenter setpriv timeout dpkg redis-server redis-cli /lib/systemd/systemd; do
        command -v "$c" >/dev/null || skip "$c is not installed" || return 1
    done
    cg_parent=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
    [[ -n $cg_parent ]] || skip "no cgroup2 hierarchy is mounted on this machine" || return 1
    mkdir "$cg_parent/rc-systemd-probe.$$" 2>/dev/null ||
        skip "cannot create a cgroup under $cg_parent" || return 1
    rmdir "$cg_parent/rc-systemd-probe.$$"
    unshare --pid --fork --mount --net --uts --ipc --cgroup --propagation private \
        sh -c 'mount -t tmpfs tmpfs /mnt && mkdir /mnt/cg && mount -t cgroup2 cgroup2 /mnt/cg' \
        >/dev/null 2>&1 ||
        skip "cannot create PID/mount/net/UTS/IPC/cgroup namespaces or mount cgroup2 in them" ||
        return 1
}

# Removes the cgroups and work directories of earlier runs that were killed before their
# teardown (the run's PID is in both names; the kernel refuses to remove a cgroup that
# still has processes, and a dead run's mount namespace is gone with its mounts).
sd_clean_stale() {
    local d pid
    for d in "$cg_parent"/rc-systemd-test.* /var/tmp/rc-systemd.*; do
        [[ -d $d ]] || continue
        pid=${d#*rc-systemd*.}
        pid=${pid%%.*}
        [[ $pid =~ ^[0-9]+$ ]] || continue
        kill -0 "$pid" 2>/dev/null && continue
        if [[ $d == /var/tmp/* ]]; then
            rm -rf --one-file-system "$d"
        else
            find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
        fi
    done
}

# sd_build_packages SOURCE DEST: the .deb files of a copy of SOURCE, into DEST.
sd_build_packages() {
    local s=$1 d=$2
    mkdir -p "$d/src"
    (cd "$s" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -C "$d/src" -xf -
    if ! (cd "$d/src" && umask 022 && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
        ./scripts/package.sh --no-lintian) >"$d/build.log" 2>&1; then
        tail -n 40 "$d/build.log"
        return 1
    fi
}

# sd_write_setup WORK HERE PASSWORD: what boot.sh runs in the root before booting.
sd_write_setup() {
    local w=$1 h=$2
    cp "$h/setup.sh" "$w/setup.sh"
    mkdir -p "$w/files"
    cp -r "$h/files/." "$w/files/"
    cp "$h/rc_check.py" "$w/files/rc_check.py"
    (umask 077 && printf '%s' "$3" >"$w/pw1")
    printf '%s\n' --unit=rc-test.target >"$w/boot.args"
}

# sd_boot WORK CGROUP BOOT.SH: starts boot.sh as PID 1 of new namespaces inside CGROUP
# (the cgroup namespace's root; --kill-child: if unshare is killed, so is everything in the
# namespace, e.g. on a ctest timeout), sets p1 (its PID here) and waits for systemd to finish
# starting up.
sd_boot() {
    local w=$1 c=$2 b=$3
    mkdir "$c" || return 1
    sh -c 'echo $$ >"$1/cgroup.procs" && exec unshare --pid --fork --kill-child --mount \
        --net --uts --ipc --cgroup --propagation private bash "$2" "$3"' _ "$c" "$b" "$w" \
        >"$w/console.log" 2>&1 &
    unshare_pid=$!
    local end=$((SECONDS + 180)) comm=""
    while ((SECONDS < end)); do
        kill -0 "$unshare_pid" 2>/dev/null || return 1
        p1=$(awk '{ print $1 }' "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null)
        comm=""
        [[ -n $p1 ]] && comm=$(cat "/proc/$p1/comm" 2>/dev/null)
        [[ $comm == systemd ]] && break
        sleep 0.5
    done
    [[ $comm == systemd ]] || return 1
    local state
    # systemctl needs PID 1's private bus socket, which comes a moment after the exec.
    wait_for 60 timeout 10 nsenter -t "$p1" -a test -S /run/systemd/private || {
        echo "systemd made no /run/systemd/private within 60 s"
        return 1
    }
    state=$(timeout 90 nsenter -t "$p1" -a systemctl is-system-running --wait 2>&1)
    [[ $state == running || $state == degraded ]] || {
        echo "systemctl is-system-running: $state"
        return 1
    }
    if [[ $state == degraded ]]; then
        in_c systemctl --failed --no-pager
    fi
}

# Kills the namespace's PID 1 (and with it every process in the namespace), then removes
# its cgroups and the work directory.
sd_teardown() {
    if [[ -n $p1 ]] && kill -0 "$p1" 2>/dev/null; then
        kill -KILL "$p1" 2>/dev/null
    fi
    if [[ -n $unshare_pid ]]; then
        local end=$((SECONDS + 20))
        while kill -0 "$unshare_pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.2; done
        kill -KILL "$unshare_pid" 2>/dev/null
        wait "$unshare_pid" 2>/dev/null
    fi
    if [[ -n ${cg:-} && -d $cg ]]; then
        local end=$((SECONDS + 20))
        until find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null && [[ ! -d $cg ]]; do
            ((SECONDS >= end)) && {
                echo "test_systemd: cgroup $cg is not empty; left behind"
                break
            }
            sleep 0.2
        done
    fi
    [[ -n ${work:-} ]] && rm -rf "$work"
}
