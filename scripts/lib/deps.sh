# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/demo.sh (sourced, not run): the Debian 12 packages
# redis-creds needs to build, test and demo, and a way to install the missing ones.
#
#   rc_ensure_packages          install what is missing (root), or list it and exit 1
#   rc_redis_service_note       say so when a packaged redis-server is running (harmless)
#   RC_PYTHON                   Debian's python3 (the first on PATH may be a pyenv one
#                               that cannot see python3-pytest / python3-redis)

RC_PACKAGES=(
    build-essential cmake pkg-config
    libcurl4-openssl-dev libjansson-dev libhiredis-dev libssl-dev libconfig-dev
    libsystemd-dev libcmocka-dev
    redis-server redis-tools
    python3 python3-pytest python3-redis python3-venv
    openssl iproute2 procps
    clang libclang-rt-14-dev valgrind
    debhelper dh-python python3-all dpkg-dev fakeroot lintian
    groff-base man-db
)
# shellcheck disable=SC2034  # used by the scripts that source this file
RC_PYTHON=/usr/bin/python3

rc_log() { printf '%s: %s\n' "${RC_SCRIPT_NAME:-${0##*/}}" "$*" >&2; }

# Prints the packages of RC_PACKAGES that are not installed, one a line.
rc_missing_packages() {
    local p status
    for p in "${RC_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || printf '%s\n' "$p"
    done
}

rc_ensure_packages() {
    local missing rc=0 policy=/usr/sbin/policy-rc.d ours=0
    if ! command -v dpkg-query >/dev/null 2>&1; then
        rc_log "dpkg-query not found: this script expects Debian 12; install by hand: ${RC_PACKAGES[*]}"
        exit 1
    fi
    mapfile -t missing < <(rc_missing_packages)
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    if ((EUID != 0)); then
        rc_log "missing Debian packages: ${missing[*]}"
        rc_log "run as root, or: sudo apt-get install --no-install-recommends ${missing[*]}"
        exit 1
    fi
    rc_log "installing missing packages: ${missing[*]}"
    # A freshly installed redis-server would start its packaged service on port 6379. We
    # start our own servers on free ports, so keep it from starting during the install
    # (policy-rc.d is how Debian says "do not start services now"; invoke-rc.d and
    # deb-systemd-invoke both honour it). Only our own file is removed afterwards.
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && ours=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update </dev/null || rc=$?
    if ((rc == 0)); then
        apt-get install -y --no-install-recommends "${missing[@]}" </dev/null || rc=$?
    fi
    if ((ours)); then rm -f "$policy"; fi
    if ((rc != 0)); then
        rc_log "apt-get failed (exit $rc) installing: ${missing[*]}"
        exit 1
    fi
    mapfile -t missing < <(rc_missing_packages)
    if ((${#missing[@]} != 0)); then
        rc_log "still missing after apt-get install: ${missing[*]}"
        exit 1
    fi
}

# A packaged redis-server listening on 6379 does not disturb us (every test and the demo
# start their own redis-server on a free loopback port), so we leave an operator's service
# alone and only mention it. No systemctl needed.
rc_redis_service_note() {
    local pids
    pids=$(pgrep -u redis -x redis-server 2>/dev/null | tr '\n' ' ' || true)
    if [[ -n $pids ]]; then
        rc_log "note: redis-server already running (pid ${pids% }); left alone, we use our own on free ports"
    fi
}
