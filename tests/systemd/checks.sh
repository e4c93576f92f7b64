# The checks of tests/systemd/test_systemd.sh (sourced; lib.sh first). Each talks to the
# container's systemd with in_c (nsenter + systemctl/journalctl) and reports ok/FAIL lines.
# shellcheck shell=bash
# p1 (lib.sh), src and work (test_systemd.sh) are set before these run.
# shellcheck disable=SC2154

mid_published=5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b01
mid_rotation_completed=5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b06
mid_reload_rejected=5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b0f
mid_runtime_dir_lost=5b1c0c2f0d4a4f8e9a0f6c1d2e3a4b10
unit=redis-creds-agent.service

# check DESCRIPTION COMMAND...
check() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}
agent_running() {
    [[ $(prop ActiveState) == active && $(prop SubState) == running ]]
}
published_version() { in_c /usr/bin/python3 /rc-test/rc_check.py version 2>/dev/null; }
# journal MESSAGE_ID [SINCE]: the agent's events with that MESSAGE_ID, as JSON lines.
journal() {
    in_c journalctl --no-pager -o json ${2:+--since "@$2"} _SYSTEMD_UNIT="$unit" \
        MESSAGE_ID="$1"
}
has_event() { [[ -n $(journal "$@") ]]; }
# unit_log SINCE: what systemd itself logged about the agent's unit since then.
unit_log() { in_c journalctl --no-pager -o cat --since "@$1" _PID=1 UNIT="$unit"; }
now() { in_c date +%s.%N; }

check_ready() {
    check "the packages are installed in the container" \
        in_c sh -c "dpkg-query -W -f '\${Status}' redis-creds | grep -q 'install ok installed'"
    check "the unit is the shipped one: the package's file is deploy/redis-creds-agent.service" \
        sh -c "timeout 10 nsenter -t $p1 -a cat /lib/systemd/system/$unit | cmp -s - '$src/deploy/$unit'"
    check "the unit's one drop-in is the test's (WatchdogSec=3s): $(prop DropInPaths)" \
        test "$(prop DropInPaths)" = /etc/systemd/system/$unit.d/test-watchdog.conf
    if ! wait_for 60 agent_running; then
        bad "READY=1: the agent reaches active/running ($(in_c systemctl status --no-pager $unit 2>&1 | tail -n 15))"
        return
    fi
    local show status
    show=$(in_c systemctl show -p StatusText,ActiveState,SubState $unit)
    ok "READY=1: systemctl show says $(tr '\n' ' ' <<<"$show")"
    wait_for 20 sh -c "[ -n \"\$(timeout 10 nsenter -t $p1 -a systemctl show -p StatusText --value $unit)\" ]"
    status=$(prop StatusText)
    if [[ $status == *cache* || $status == *1/1* || $status == *published* ]]; then
        ok "STATUS=: StatusText='$status'"
    else
        bad "STATUS=: StatusText='$status' says nothing about the credential"
    fi
    # shellcheck disable=SC2016 # expanded inside the container
    check "the credential is published (/run/redis-creds/cache.json, 0640 redis-creds:redis-creds)" \
        in_c sh -c '[ "$(stat -c "%a %U %G" /run/redis-creds/cache.json)" = "640 redis-creds redis-creds" ]'
}

check_journal() {
    local j
    j=$(journal $mid_published)
    if /usr/bin/python3 -c '
import json, sys
docs = [json.loads(l) for l in sys.stdin if l.strip()]
need = {"REDIS_CREDS_NAME": "cache", "REDIS_CREDS_SOURCE": "local", "SYSLOG_IDENTIFIER": "redis-creds-agent"}
ok = any(all(d.get(k) == v for k, v in need.items()) and d.get("REDIS_CREDS_VERSION")
         and d.get("REDIS_CREDS_NODES") for d in docs)
sys.exit(0 if ok else 1)' <<<"$j"; then
        ok "journal: MESSAGE_ID=$mid_published with REDIS_CREDS_NAME=cache, _VERSION, _SOURCE=local, _NODES"
    else
        bad "journal: MESSAGE_ID=$mid_published with REDIS_CREDS_NAME/_VERSION/_SOURCE/_NODES (got: ${j:0:400})"
    fi
    check "journalctl --update-catalog" in_c journalctl --update-catalog
    local x
    x=$(in_c journalctl --no-pager -x _SYSTEMD_UNIT=$unit MESSAGE_ID=$mid_published)
    if grep -q 'Subject: Redis credential cache published (version' <<<"$x" &&
        grep -q 'Consumers watching the runtime directory' <<<"$x"; then
        ok "journalctl -x shows the catalog text of the published event, fields filled in"
    else
        bad "journalctl -x shows the catalog text (got: ${x:0:400})"
    fi
    check "the journal holds no password" sh -c "! timeout 60 nsenter -t $p1 -a journalctl --no-pager -o verbose | grep -qF -- \"\$(cat '$work/pw1')\""
}

check_reload() {
    local conf=/etc/redis-creds/agent.conf rc since exec_reload out
    in_c sed -i 's/poll_interval = "30s"/poll_interval = "20s"/' $conf
    out=$(in_c systemctl reload $unit 2>&1)
    rc=$?
    if ((rc == 0)) && agent_running; then
        ok "systemctl reload with a good config: exit 0, the agent runs on"
    else
        bad "systemctl reload with a good config: exit $rc, $(prop ActiveState)/$(prop SubState) ($out)"
    fi
    since=$(now)
    in_c sed -i 's/log_level      = "info"/log_level      = "loud"/' $conf
    in_c systemctl reload $unit >/dev/null 2>&1
    rc=$?
    exec_reload=$(prop ExecReload)
    if ((rc != 0)); then
        ok "systemctl reload with a bad config: exit $rc"
    else
        bad "systemctl reload with a bad config: exit 0 (ExecReload: $exec_reload)"
    fi
    if wait_for 15 has_event $mid_reload_rejected "$since"; then
        ok "a bad config is \"reload rejected\" in the journal (MESSAGE_ID=$mid_reload_rejected)"
    else
        bad "a bad config is \"reload rejected\" in the journal (MESSAGE_ID=$mid_reload_rejected)"
    fi
    check "after the rejected reload the agent runs on and the credential is published" \
        sh -c "[ \"\$(timeout 10 nsenter -t $p1 -a systemctl show -p SubState --value $unit)\" = running ] &&
               timeout 10 nsenter -t $p1 -a test -s /run/redis-creds/cache.json"
    in_c sed -i 's/log_level      = "loud"/log_level      = "info"/' $conf
    check "systemctl reload with the good config again: exit 0" in_c systemctl reload $unit
}

# main_pid_changed OLD: the agent runs again, with another main PID.
main_pid_changed() {
    local pid
    pid=$(prop MainPID)
    [[ $pid != "$1" && $pid != 0 ]] && agent_running
}

check_watchdog() {
    local n0 pid0 v0 since gone=0 end
    n0=$(prop NRestarts)
    pid0=$(prop MainPID)
    v0=$(published_version)
    since=$(now)
    in_c kill -STOP "$pid0"
    end=$((SECONDS + 40))
    until main_pid_changed "$pid0"; do
        in_c test -s /run/redis-creds/cache.json || gone=1
        ((SECONDS >= end)) && break
        sleep 0.3
    done
    if main_pid_changed "$pid0"; then
        ok "watchdog: an agent stopped with SIGSTOP is restarted (pid $pid0 -> $(prop MainPID))"
    else
        bad "watchdog: an agent stopped with SIGSTOP is restarted within 40 s ($(prop ActiveState)/$(prop SubState))"
        return
    fi
    check "watchdog: NRestarts went up ($n0 -> $(prop NRestarts))" test "$(prop NRestarts)" -gt "$n0"
    check "watchdog: systemd logged a watchdog timeout" sh -c "timeout 10 nsenter -t $p1 -a journalctl --no-pager -o cat --since @$since _PID=1 | grep -q 'Watchdog timeout'"
    if ((gone == 0)) && [[ $(published_version) == "$v0" && -n $v0 ]]; then
        ok "watchdog: the published file stayed in place throughout (version $v0)"
    else
        bad "watchdog: the published file stayed in place (missing at some point: $gone, version $v0 -> $(published_version))"
    fi
}

check_rotation() {
    local v0 since out
    v0=$(published_version)
    since=$(now)
    if ! out=$(in_c redis-creds rotate cache 2>&1); then
        bad "rotation: redis-creds rotate cache ($out)"
        return
    fi
    if wait_for 30 has_event $mid_rotation_completed "$since"; then
        ok "rotation: \"rotation completed\" in the journal (MESSAGE_ID=$mid_rotation_completed)"
    else
        bad "rotation: \"rotation completed\" within 30 s ($(in_c journalctl --no-pager -o cat --since "@$since" _SYSTEMD_UNIT=$unit | tail -n 5))"
        return
    fi
    check "rotation: a new version is published ($v0 -> $(published_version))" \
        test "$(published_version)" != "$v0"
    if out=$(in_c /usr/bin/python3 /rc-test/rc_check.py rotated 2>&1); then
        ok "rotation: the store under /var/lib/redis-creds holds the new password, Redis takes it and no longer the first"
    else
        bad "rotation: $out"
    fi
}

check_runtime_dir_deleted() {
    local n0 pid0 v0 since
    n0=$(prop NRestarts)
    pid0=$(prop MainPID)
    v0=$(published_version)
    since=$(now)
    in_c rm -rf /run/redis-creds
    if wait_for 30 main_pid_changed "$pid0" && wait_for 15 in_c test -s /run/redis-creds/cache.json; then
        ok "D1: after rm -rf /run/redis-creds the agent is restarted and republishes (pid $pid0 -> $(prop MainPID))"
    else
        bad "D1: after rm -rf /run/redis-creds the agent is restarted and republishes within 45 s ($(prop ActiveState)/$(prop SubState))"
        return
    fi
    check "D1: the agent exited with status 1" sh -c "timeout 10 nsenter -t $p1 -a journalctl --no-pager -o cat --since @$since _PID=1 | grep -q 'Main process exited, code=exited, status=1/FAILURE'"
    check "D1: \"runtime_dir lost\" in the journal (MESSAGE_ID=$mid_runtime_dir_lost, priority err)" \
        sh -c "timeout 10 nsenter -t $p1 -a journalctl --no-pager -o cat --since @$since _SYSTEMD_UNIT=$unit MESSAGE_ID=$mid_runtime_dir_lost PRIORITY=3 | grep -q ."
    check "D1: NRestarts went up ($n0 -> $(prop NRestarts))" test "$(prop NRestarts)" -gt "$n0"
    # shellcheck disable=SC2016 # expanded inside the container
    check "D1: /run/redis-creds is back, 0750 redis-creds:redis-creds" \
        in_c sh -c '[ "$(stat -c "%a %U %G" /run/redis-creds)" = "750 redis-creds redis-creds" ]'
    check "D1: the same version is republished ($v0)" test "$(published_version)" = "$v0"
}

check_security() {
    local out level
    out=$(in_c systemd-analyze security --no-pager $unit 2>&1)
    level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
    if [[ -n $level ]] && awk -v l="$level" 'BEGIN { exit !(l <= 1.5) }'; then
        ok "systemd-analyze security: exposure $level <= 1.5"
    else
        bad "systemd-analyze security: exposure '${level:-?}' > 1.5 ($(tail -n 3 <<<"$out"))"
    fi
}
