#!/usr/bin/env bash
# Build redis-creds and run every test suite, on Debian 12, as root on a fresh machine.
#
#   ./scripts/test.sh
#
# 1. installs the Debian packages that are missing (scripts/lib/deps.sh);
# 2. builds build/ with -Werror and runs ctest (unit tests + integration tests);
# 3. runs scripts/fuzz.sh --seconds 10 (every libFuzzer target, built with clang), when
#    that script exists;
# 4. builds build-asan/ with AddressSanitizer + UBSan (Debug) and runs ctest again, without
#    the suites labelled `once` (the kill -9 torture, valgrind).
# At the end it prints each step's result and, per ctest pass, every suite's time, longest
# first (ctest labels and the budget per suite: docs/development.md).
#
# Environment:
#   REDIS_CREDS_QUICK=1         only the unit tests and the integration suites not labelled
#                               `slow`, release build only (no fuzzing, no ASan pass)
#   REDIS_CREDS_SKIP_ASAN=1     skip the sanitizer pass (quick local runs)
#   REDIS_CREDS_SKIP_FUZZ=1     skip the fuzzing step
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
quick=${REDIS_CREDS_QUICK:-0}
start=$SECONDS
results=()
failed=0
times_dir=$(mktemp -d)
trap 'rm -rf "$times_dir"' EXIT

step() { printf '\n==> %s\n' "$*"; }
record() { # record NAME STATUS [SECONDS]
    results+=("$1: $2${3:+ (${3}s)}")
    [[ $2 == ok || $2 == skipped ]] || failed=1
}

# ctest_times LOG OUT: one "seconds name status" line per test from ctest's progress lines
# (" 3/40 Test  #3: unit.test_config .......   Passed    0.12 sec"), longest first.
ctest_times() {
    sed -nE 's/^ *[0-9]+\/[0-9]+ +Test +#[0-9]+: +([^ ]+) +[.]* *[*]*([A-Za-z][^0-9]*[A-Za-z)]) +([0-9.]+) sec.*/\3 \1 \2/p' \
        "$1" | sort -k1,1 -rn >"$2"
}

print_times() { # print_times LABEL FILE
    local total
    total=$(awk '{ s += $1 } END { printf "%.1f", s }' "$2")
    printf '\n  %s: %d tests, %ss in total\n' "$1" "$(wc -l <"$2")" "$total"
    awk '{ st = $3; for (i = 4; i <= NF; i++) st = st " " $i
           printf "    %8.1fs  %-42s %s\n", $1, $2, st }' "$2"
}

step "checking Debian packages"
rc_ensure_packages
rc_redis_service_note

# configure_build_test LABEL DIR CMAKE-ARGS... : configure, build, run ctest; records results.
configure_build_test() {
    local label=$1 dir=$2 t0
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
    t0=$SECONDS
    if run_ctest "$root/$dir" "$times_dir/$label.log"; then
        record "$label ctest" ok $((SECONDS - t0))
    else
        record "$label ctest" FAILED $((SECONDS - t0))
    fi
    ctest_times "$times_dir/$label.log" "$times_dir/$label.times"
}

# run_ctest DIR LOG: ctest in DIR, its output also into LOG. The unit, docs and arch tests
# (no servers, no timing) run $jobs at once, then the rest $ctest_jobs at once; with
# REDIS_CREDS_CTEST_ARGS, one ctest with those arguments. label_exclude (a label, or
# empty) is left out of both.
run_ctest() {
    local dir=$1 log=$2 quick_labels='^(unit|docs|arch)$' rc=0 ex=()
    [[ -n $label_exclude ]] && ex=(-LE "^($label_exclude)\$")
    if ((${#ctest_extra[@]} > 0)); then
        step "ctest ${ex[*]} ${ctest_extra[*]}"
        (cd "$dir" && ctest --output-on-failure -j "$ctest_jobs" "${ex[@]}" "${ctest_extra[@]}" \
            </dev/null) 2>&1 | tee "$log" || return 1
        return 0
    fi
    step "ctest -L '$quick_labels' ${ex[*]} -j $jobs"
    (cd "$dir" && ctest --output-on-failure -j "$jobs" -L "$quick_labels" "${ex[@]}" \
        </dev/null) 2>&1 | tee "$log" || rc=1
    local rest="^(unit|docs|arch${label_exclude:+|$label_exclude})\$"
    step "ctest -LE '$rest' -j $ctest_jobs"
    (cd "$dir" && ctest --output-on-failure -j "$ctest_jobs" -LE "$rest" </dev/null) 2>&1 |
        tee -a "$log" || rc=1
    return $rc
}

# The fuzzing step: scripts/fuzz.sh builds every libFuzzer target with clang (build-fuzz/)
# and runs each for a bounded time.
run_fuzz() {
    local t0
    if [[ ! -f $root/scripts/fuzz.sh ]]; then
        results+=("fuzz: not run (no scripts/fuzz.sh)")
        return 0
    fi
    if [[ $quick == 1 || ${REDIS_CREDS_SKIP_FUZZ:-0} == 1 ]]; then
        step "fuzz: skipped (REDIS_CREDS_QUICK=1 or REDIS_CREDS_SKIP_FUZZ=1)"
        record "fuzz" skipped
        return 0
    fi
    step "fuzz: scripts/fuzz.sh --seconds 10"
    t0=$SECONDS
    if bash "$root/scripts/fuzz.sh" --seconds 10 </dev/null; then
        record "fuzz" ok $((SECONDS - t0))
    else
        record "fuzz" FAILED $((SECONDS - t0))
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

label_exclude=""
[[ $quick == 1 ]] && label_exclude=slow
configure_build_test "release" build \
    -DCMAKE_BUILD_TYPE="${REDIS_CREDS_BUILD_TYPE:-RelWithDebInfo}" \
    -DREDIS_CREDS_WERROR=ON -DREDIS_CREDS_SANITIZE=OFF

run_fuzz

if [[ $quick == 1 || ${REDIS_CREDS_SKIP_ASAN:-0} == 1 ]]; then
    step "asan: skipped (REDIS_CREDS_QUICK=1 or REDIS_CREDS_SKIP_ASAN=1)"
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
    label_exclude=once
    configure_build_test "asan" build-asan \
        -DCMAKE_BUILD_TYPE=Debug -DREDIS_CREDS_SANITIZE=ON -DREDIS_CREDS_WERROR=ON
    ((leaks)) || results+=("asan: leak checking off (LeakSanitizer unavailable)")
fi

printf '\nSuite times (seconds, longest first):'
for label in release asan; do
    [[ -s $times_dir/$label.times ]] && print_times "$label" "$times_dir/$label.times"
done
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
