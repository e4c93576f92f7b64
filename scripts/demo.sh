#!/usr/bin/env bash
# A live demo of redis-creds on one machine: a zero-downtime password rotation.
#
#   ./scripts/demo.sh [--no-build] [--keep-running]
#
# Installs what is missing (Debian 12, as root), builds build/, then in a temporary
# directory: starts a throwaway redis-server on a free loopback port with an ACL user
# `app`, puts app's password into a local secret store (a directory), and runs the agent
# on it. The agent validates the password against Redis and publishes demo.json. Then,
# while a client runs INCR in a loop (reading the published file before every command),
# the demo rotates the password the safe way: add the new password to the ACL user, write
# it to the store, wait for the agent to validate and republish, then remove the old
# password. Then (act 2) it asks the agent to rotate by itself (`redis-creds rotate demo`,
# the `rotation` block of config/demo.conf): the agent claims a new password in the store,
# adds it to Redis, validates, publishes and removes the old one after a grace period.
# It prints how many commands ran and how many failed (exit 1 if any did).
#
#   --no-build       use the existing build/ as it is
#   --keep-running   leave redis and the agent running after the rotation until Ctrl-C
#   $REDIS_CREDS_BUILD_DIR   build directory to use instead of build/
#
# Passwords are never printed: the published file is shown with passwords as "***".
# Everything started here is stopped, and the temporary directory removed, on exit or
# Ctrl-C. No systemd needed.
set -euo pipefail

RC_SCRIPT_NAME=demo.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/deps.sh
. "$root/scripts/lib/deps.sh"

build=1
keep=0
while (($# > 0)); do
    case $1 in
    --no-build) build=0 ;;
    --keep-running) keep=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        rc_log "unknown argument: $1 (see --help)"
        exit 2
        ;;
    esac
    shift
done

build_dir=${REDIS_CREDS_BUILD_DIR:-$root/build}
bin=$build_dir/agent/redis-creds-agent
cli=$build_dir/agent/redis-creds
plugin_dir=$build_dir/plugins
grace=2          # seconds between "new password published" and "old password removed"
tmp=""
redis_pid="" agent_pid="" tail_pid="" watch_pid="" client_pid=""

if [[ -t 1 ]]; then
    say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
    say() { printf '\n==> %s\n' "$*"; }
fi
note() { printf '    %s\n' "$*"; }
die() {
    rc_log "$*"
    exit 1
}
now_ms() { date +%s%3N; }

# Stops a child: SIGTERM, then SIGKILL after $2 seconds. Returns the child's exit status.
stop_pid() {
    local pid=$1 timeout=${2:-5} i rc=0
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        rc_log "pid $pid did not stop within ${timeout}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    return "$rc"
}

# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [[ -n $tmp && -d $tmp ]] && : >"$tmp/stop"
    stop_pid "$client_pid" 5
    stop_pid "$watch_pid" 2
    stop_pid "$agent_pid" 10
    stop_pid "$tail_pid" 2
    stop_pid "$redis_pid" 5
    [[ -n $tmp ]] && rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The build tree must not be group- or world-writable: the agent refuses such a plugin_dir.
umask 022

rc_ensure_packages
rc_redis_service_note

if ((build)); then
    say "building $build_dir (no sanitizers)"
    cmake -S "$root" -B "$build_dir" -DREDIS_CREDS_SANITIZE=OFF >/dev/null ||
        die "cmake could not configure $build_dir"
    # Only what the demo runs: the agent, the CLI and every source plugin (rc_<name>_plugin),
    # so a test that does not compile yet does not stop the demo. All targets as a fallback.
    targets=(redis-creds-agent redis-creds)
    mapfile -t -O 2 targets < <(cmake --build "$build_dir" --target help 2>/dev/null |
        sed -n 's/^\.\.\. \(rc_[A-Za-z0-9_]*_plugin\)$/\1/p')
    ((${#targets[@]} > 2)) || targets=(all)
    cmake --build "$build_dir" -j "$(nproc 2>/dev/null || echo 2)" --target "${targets[@]}" ||
        die "the build failed (output above)"
fi
for f in "$bin" "$cli" "$plugin_dir/file.so"; do
    [[ -e $f ]] || die "$f is missing: build first (run without --no-build)"
done

tmp=$(mktemp -d /tmp/redis-creds-demo.XXXXXX)
chmod 0700 "$tmp"
store=$tmp/store run=$tmp/run state=$tmp/state
mkdir -m 0700 "$store" "$state" "$tmp/redis" "$tmp/ctl"
conf=$tmp/agent.conf
: >"$tmp/client.log"

# --- helpers on the published file and on Redis ----------------------------------------

# Prints the masked credential file: the real file, with every password shown as "***".
show_masked() {
    sed -E 's/("password"[[:space:]]*:[[:space:]]*)"([^"\\]|\\.)*"/\1"***"/g' "$1" | sed 's/^/    /'
}
# Prints one top-level field of the published file ("" for null).
field() {
    "$RC_PYTHON" -I -S -c 'import json, sys
v = json.load(open(sys.argv[1]))[sys.argv[2]]
print("" if v is None else v)' "$run/demo.json" "$1"
}
# redis-cli as the demo's admin user. The password travels in the environment, not argv;
# commands that carry a secret are given on stdin so they never appear in `ps` either.
admin_cli() {
    REDISCLI_AUTH=$admin_pw redis-cli --no-auth-warning --user admin -h 127.0.0.1 -p "$port" "$@"
}
# Writes app's password into the store atomically (temporary file + rename), the way a
# secret manager would, so the agent never sees half a file.
store_password() {
    (
        umask 077
        printf '{"username":"app","password":"%s"}\n' "$1" >"$store/.app.json.tmp"
    )
    mv -f "$store/.app.json.tmp" "$store/app.json"
}

# --- redis ------------------------------------------------------------------------------

say "starting a throwaway redis-server"
admin_pw=$(openssl rand -hex 24)
old_pw=$(openssl rand -hex 24)
(
    umask 077
    printf '%s\n' "$admin_pw" >"$tmp/admin.pw"   # for the agent's own rotation (act 2)
    # `default` is switched off: every connection must name a user. `admin` drives the
    # demo; `app` is what the agent publishes, limited to the demo's keys.
    cat >"$tmp/redis/redis.conf" <<EOF
user default off
user admin on >$admin_pw ~* &* +@all
user app on >$old_pw ~demo:* resetchannels -@all +@connection +@read +@write
EOF
)
for attempt in 1 2 3 4 5; do
    port=$("$RC_PYTHON" -I -S -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server "$tmp/redis/redis.conf" --port "$port" --bind 127.0.0.1 \
        --save '' --appendonly no --daemonize no --dir "$tmp/redis" \
        --logfile "$tmp/redis/redis.log" </dev/null &
    redis_pid=$!
    for ((i = 0; i < 50; i++)); do
        kill -0 "$redis_pid" 2>/dev/null || break
        [[ $(admin_cli PING 2>/dev/null) == PONG ]] && break 2
        sleep 0.1
    done
    stop_pid "$redis_pid" 2 || true
    redis_pid=""
    rc_log "redis-server did not start on port $port (attempt $attempt)"
done
[[ -n $redis_pid ]] || {
    tail -n 20 "$tmp/redis/redis.log" >&2 || true
    die "could not start redis-server"
}
note "redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') on 127.0.0.1:$port (pid $redis_pid)"
note "ACL user app: password ***, keys demo:*"

# --- the agent --------------------------------------------------------------------------

say "writing app's password to the secret store and starting the agent"
store_password "$old_pw"
sed -e "s|@RUNTIME_DIR@|$run|g" -e "s|@STORE_DIR@|$store|g" -e "s|@STATE_DIR@|$state|g" \
    -e "s|@PLUGIN_DIR@|$plugin_dir|g" -e "s|@REDIS_PORT@|$port|g" \
    -e "s|@CONTROL_SOCKET@|$tmp/ctl/control.sock|g" \
    -e "s|@ADMIN_PASSWORD_FILE@|$tmp/admin.pw|g" "$root/config/demo.conf" >"$conf"
note "store:  $store/app.json  {\"username\":\"app\",\"password\":\"***\"}"
note "config: $conf (from config/demo.conf)"
note "agent:  ${bin#"$root"/} -c $conf --foreground"
: >"$tmp/agent.log"
# Not under systemd here: drop any notify/journal variables an outer service manager set.
env -u NOTIFY_SOCKET -u WATCHDOG_USEC -u WATCHDOG_PID -u JOURNAL_STREAM -u LISTEN_FDS -u LISTEN_PID \
    "$bin" -c "$conf" --foreground </dev/null >>"$tmp/agent.log" 2>&1 &
agent_pid=$!
tail -n +1 -F --pid="$agent_pid" "$tmp/agent.log" 2>/dev/null > >(sed -u 's/^/    [agent] /') &
tail_pid=$!

for ((i = 0; i < 300; i++)); do
    [[ -s $run/demo.json ]] && break
    kill -0 "$agent_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ ! -s $run/demo.json ]]; then
    sleep 0.3
    if ! kill -0 "$agent_pid" 2>/dev/null; then
        rc=0
        wait "$agent_pid" || rc=$?
        agent_pid=""
        die "the agent exited (status $rc) before publishing; its log is above"
    fi
    die "no $run/demo.json after 30s; the agent's log is above"
fi
sleep 0.2 # let the agent's log line about the publication reach the terminal first

say "published: $run/demo.json (passwords masked)"
show_masked "$run/demo.json"
note "$(stat -c '%A %U:%G' "$run/demo.json")  $run/demo.json"
say "redis-creds --runtime-dir $run get demo --field version"
v1=$("$cli" --runtime-dir "$run" get demo --field version)
note "$v1"
[[ $v1 == "$(field version)" ]] || die "the CLI printed '$v1', the file says '$(field version)'"

# Consumers learn about a new version from inotify on the directory; so does this.
"$cli" --runtime-dir "$run" watch demo </dev/null > >(sed -u 's/^/    [watch] /') 2>&1 &
watch_pid=$!

# --- the client -------------------------------------------------------------------------

# Runs INCR demo:counter until $tmp/stop exists, authenticating every time with what the
# published file says at that moment; one line per command in client.log: "ok" or "fail …".
client_loop() {
    trap - EXIT INT TERM
    set +e
    local creds user pw out
    local -a as
    while [[ ! -e $tmp/stop ]]; do
        if ! creds=$("$RC_PYTHON" -I -S -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(d["username"] or ""); print(d["password"])' "$run/demo.json" 2>&1); then
            printf 'fail reading %s: %s\n' "$run/demo.json" "${creds//$'\n'/ }"
            continue
        fi
        user=${creds%%$'\n'*} pw=${creds#*$'\n'}
        as=()
        [[ -n $user ]] && as=(--user "$user")
        out=$(REDISCLI_AUTH=$pw redis-cli --no-auth-warning "${as[@]}" -h 127.0.0.1 -p "$port" \
            INCR demo:counter 2>&1 </dev/null)
        if [[ $out =~ ^[0-9]+$ ]]; then
            echo ok
        else
            printf 'fail %s\n' "${out//$'\n'/ }"
        fi
    done >>"$tmp/client.log"
}
counts() {
    local total failed
    total=$(wc -l <"$tmp/client.log")
    failed=$(grep -c '^fail' "$tmp/client.log" || true)
    printf '%d commands, %d failed' "$total" "$failed"
}

say "starting a client: INCR demo:counter in a loop, credentials read from demo.json each time"
client_loop &
client_pid=$!
sleep 2
note "client so far: $(counts)"

# --- the rotation -----------------------------------------------------------------------

new_pw=$(openssl rand -hex 24)
say "rotating app's password with zero downtime"
note "1. Redis: ACL SETUSER app >*** (new password added; the old one still works)"
out=$(printf 'ACL SETUSER app >%s\n' "$new_pw" | admin_cli 2>&1)
[[ $out == OK ]] || die "ACL SETUSER (add) failed: ${out%% *}"
note "2. store: app.json now holds the new password"
t0=$(now_ms)
store_password "$new_pw"
note "3. waiting for the agent to validate it against Redis and republish"
v2=$v1
for ((i = 0; i < 300; i++)); do
    v2=$(field version 2>/dev/null || echo "$v1")
    [[ $v2 != "$v1" ]] && break
    kill -0 "$agent_pid" 2>/dev/null || die "the agent died during the rotation; its log is above"
    sleep 0.1
done
[[ $v2 != "$v1" ]] || die "the agent did not republish within 30s (version still $v1)"
note "   republished in $(($(now_ms) - t0)) ms: version $v1 -> $v2"
sleep 0.2
show_masked "$run/demo.json"
note "4. grace period: ${grace}s for clients that read the old file just before the switch"
sleep "$grace"
note "5. Redis: ACL SETUSER app <*** (old password removed)"
out=$(printf 'ACL SETUSER app <%s\n' "$old_pw" | admin_cli 2>&1)
[[ $out == OK ]] || die "ACL SETUSER (remove) failed: ${out%% *}"
out=$(printf 'AUTH app %s\n' "$old_pw" | redis-cli -h 127.0.0.1 -p "$port" 2>&1 || true)
note "   the old password is now refused by Redis: ${out%% *}"
sleep 2

say "act 2: the agent rotates by itself (redis-creds -c \$conf rotate demo)"
note "claim a new password in the store (check-and-set), ACL SETUSER app >*** as admin,"
note "validate, publish with the old one as previous, wait ${grace}s, ACL SETUSER app <***"
v3=$(field version)
out=$("$cli" -c "$conf" rotate demo 2>&1) || die "redis-creds rotate failed: $out"
note "redis-creds: ${out:-rotation requested}"
t0=$(now_ms)
rotation_done() {
    "$cli" -c "$conf" status --json 2>/dev/null | "$RC_PYTHON" -I -S -c 'import json, sys
c = [c for c in json.load(sys.stdin)["credentials"] if c["name"] == "demo"][0]
r = c.get("rotation") or {}
sys.exit(0 if r.get("phase") == "idle" and r.get("last_rotation") and c["version"] != sys.argv[1] else 1)' "$v3"
}
for ((i = 0; i < 300; i++)); do
    rotation_done && break
    kill -0 "$agent_pid" 2>/dev/null || die "the agent died during its rotation; its log is above"
    sleep 0.1
done
rotation_done || die "the agent's rotation did not complete within 30s (see its log above)"
v4=$(field version)
note "   done in $(($(now_ms) - t0)) ms (grace included): version $v3 -> $v4"
out=$(printf 'AUTH app %s\n' "$new_pw" | redis-cli -h 127.0.0.1 -p "$port" 2>&1 || true)
note "   the password of act 1 is now refused by Redis: ${out%% *}"
agent_pw=$(field password)
sleep 2

: >"$tmp/stop"
wait "$client_pid" || true
client_pid=""
total=$(wc -l <"$tmp/client.log")
failed=$(grep -c '^fail' "$tmp/client.log" || true)
counter=$(admin_cli GET demo:counter)

say "result"
note "client: $(counts) (demo:counter = $counter)"
if ((failed > 0)); then
    note "failures (first 5):"
    grep '^fail' "$tmp/client.log" | head -n 5 | sed 's/^/      /'
fi
if ((counter != total - failed)); then
    note "warning: demo:counter is $counter but $((total - failed)) INCRs succeeded"
fi
say "redis-creds -c $conf status"
# Asks the agent through its control socket; exits 1 when a credential is not current.
"$cli" -c "$conf" status | sed 's/^/    /' || note "(status exited non-zero)"
leaked=0
if grep -qF -e "$old_pw" -e "$new_pw" -e "$admin_pw" -e "$agent_pw" "$tmp/agent.log"; then
    leaked=1
    note "ERROR: a password appears in the agent's log"
else
    note "checked: no password appears in the agent's log"
fi

# The verdict: every INCR succeeded and no password reached the log.
outcome=0
if ((failed > 0)); then
    verdict=$(printf 'demo: %d commands, %d failed: the rotation was NOT seamless' "$total" "$failed")
    outcome=1
elif ((leaked)); then
    verdict=$(printf 'demo: %d commands, 0 failed, but a password leaked into the log' "$total")
    outcome=1
else
    verdict=$(printf 'demo: %d commands, 0 failed across two live password rotations' "$total")
fi

if ((keep)); then
    printf '\n%s\n' "$verdict"
    # Ctrl-C now ends a demo that has already given its result: exit with that result.
    trap 'exit $outcome' INT TERM
    say "still running (Ctrl-C stops everything and removes $tmp)"
    note "published file:  $run/demo.json"
    note "CLI:             $cli --runtime-dir $run get demo"
    note "                 $cli --runtime-dir $run watch demo"
    note "rotate again:    $cli -c $conf rotate demo"
    note "                 or write {\"username\":\"app\",\"password\":\"...\"} to $store/app.json"
    note "                 (after ACL SETUSER app >... ; the admin password is in $tmp/redis/redis.conf)"
    wait "$agent_pid" || true
fi

say "stopping the agent (SIGTERM) and redis"
rc=0
stop_pid "$watch_pid" 2 || true
watch_pid=""
stop_pid "$agent_pid" 10 || rc=$?
agent_pid=""
note "agent exited with status $rc"
printf '\n%s\n' "$verdict"
exit "$outcome"
