#!/usr/bin/env bash
# Build redis-creds and run every test suite, on Debian 12, as root on a fresh machine.
#
#   ./scripts/test.sh
#
# 1. installs the Debian packages that are missing (scripts/lib/deps.sh);
# 2. builds build/ with -Werror and runs ctest (unit tests + integration tests);
# 3. builds build-asan/ with AddressSanitizer + UBSan (Debug) and runs ctest again.
#
# Environment:
#   REDIS_CREDS_SKIP_ASAN=1     skip the sanitizer pass (quick local runs)
#   REDIS_CREDS_BUILD_TYPE=T    build type of build/ (default RelWithDebInfo)
#   REDIS_CREDS_CTEST_JOBS=N    run N tests at once (default 1: the integration suite
#                               starts real servers and measures timeouts)
#   REDIS_CREDS_CTEST_ARGS="…"  extra ctest arguments, e.g. "-L unit" or "-R file"
# Exit status: 0 when every step passed, 1 otherwise (2 for a usage error).
set -euo pipefail

RC_SCRIPT_NAME=test.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib/deps.sh
. "$root/scripts/lib/deps.sh"

if (($# > 0)); then
    case $1 in
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        rc_log "unknown argument: $1 (see --help)"
        exit 2
        ;;
    esac
fi

# The build tree must not be group- or world-writable: the agent refuses a plugin_dir that
# is, and the integration tests load plugins from build/plugins.
umask 022

jobs=$(nproc 2>/dev/null || echo 2)
ctest_jobs=${REDIS_CREDS_CTEST_JOBS:-1}
read -r -a ctest_extra <<<"${REDIS_CREDS_CTEST_ARGS:-}"
start=$SECONDS
results=()
failed=0

step() { printf '\n==> %s\n' "$*"; }
record() { # record NAME STATUS
    results+=("$1: $2")
    [[ $2 == ok || $2 == skipped ]] || failed=1
}

step "checking Debian packages"
rc_ensure_packages
rc_redis_service_note

# configure_build_test LABEL DIR CMAKE-ARGS... : configure, build, run ctest; records results.
configure_build_test() {
    local label=$1 dir=$2
    shift 2
    step "$label: configure $dir ($*)"
    if ! cmake -S "$root" -B "$root/$dir" -DBUILD_TESTING=ON "$@"; then
        record "$label build" "FAILED (cmake configure)"
        record "$label ctest" "not run"
        return 0
    fi
    step "$label: build ($jobs jobs)"
    if ! cmake --build "$root/$dir" -j "$jobs"; then
        record "$label build" "FAILED"
        record "$label ctest" "not run"
        return 0
    fi
    record "$label build" ok
    step "$label: ctest"
    if (cd "$root/$dir" && ctest --output-on-failure -j "$ctest_jobs" "${ctest_extra[@]}" </dev/null); then
        record "$label ctest" ok
    else
        record "$label ctest" FAILED
    fi
}

# LeakSanitizer stops the process it checks with ptrace; where that is not allowed (some
# containers, or when the tests themselves run under strace/gdb) every sanitized program
# would fail with "LeakSanitizer has encountered a fatal error". Probe it once with a
# program that leaks on purpose and keep leak checking only if LSan reports the leak.
lsan_works() {
    local d out
    d=$(mktemp -d)
    printf '#include <stdlib.h>\nvoid *volatile p;\nint main(void) { p = malloc(17); p = 0; return 0; }\n' >"$d/leak.c"
    if ! cc -fsanitize=address -g -O0 "$d/leak.c" -o "$d/leak" 2>/dev/null; then
        rm -rf "$d"
        return 1
    fi
    out=$(ASAN_OPTIONS=detect_leaks=1 "$d/leak" 2>&1 || true)
    rm -rf "$d"
    [[ $out == *"detected memory leaks"* ]]
}

configure_build_test "release" build \
    -DCMAKE_BUILD_TYPE="${REDIS_CREDS_BUILD_TYPE:-RelWithDebInfo}" \
    -DREDIS_CREDS_WERROR=ON -DREDIS_CREDS_SANITIZE=OFF

if [[ ${REDIS_CREDS_SKIP_ASAN:-0} == 1 ]]; then
    step "asan: skipped (REDIS_CREDS_SKIP_ASAN=1)"
    record "asan" skipped
else
    if lsan_works; then
        leaks=1
    else
        leaks=0
        printf '\nnote: LeakSanitizer cannot run here (ptrace is restricted); running the\n'
        printf '      sanitizer pass with detect_leaks=0: memory errors and UB are still caught.\n'
    fi
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=$leaks:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1"
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"
    configure_build_test "asan" build-asan \
        -DCMAKE_BUILD_TYPE=Debug -DREDIS_CREDS_SANITIZE=ON -DREDIS_CREDS_WERROR=ON
    ((leaks)) || results+=("asan: leak checking off (LeakSanitizer unavailable)")
fi

printf '\n'
for r in "${results[@]}"; do
    printf '  %s\n' "$r"
done
elapsed=$((SECONDS - start))
if ((failed)); then
    printf 'test.sh: FAILED after %ds\n' "$elapsed"
    exit 1
fi
printf 'test.sh: all passed in %ds\n' "$elapsed"
