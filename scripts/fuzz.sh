#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each one for a while on a copy of its
# seed corpus. Exits non-zero if any target finds a crash, a leak or a slow input.
#
#   ./scripts/fuzz.sh [options] [target...]
#
# Targets: every tests/fuzz/fuzz_<name>.c (corpus tests/fuzz/corpus/<name>/) and every
# client/fuzz/fuzz_<name>.c (built as fuzz_client_<name>, corpus client/fuzz/corpus/).
# Name some (e.g. fuzz_vault) to run only those. Options:
#   --seconds N      run each target for N seconds (default 30)
#   --runs N         also stop a target after N executions (default: no limit)
#   --build-dir DIR  the clang build tree (default build-fuzz; made when missing)
#   --no-build       use the targets already built in DIR
#   --nice           run the targets under nice -n 10 (a shared machine)
#   --keep           keep the work directory (corpora, logs) even when all passed
#   -- ARGS          more libFuzzer flags for every target (e.g. -- -max_len=4096)
# Prints one line per target: executions, exec/s, coverage (libFuzzer's cov: edges),
# seconds. A finding is saved in the work directory, whose path is printed, with the
# command that reproduces it. Needs clang and libclang-rt-14-dev (scripts/lib/deps.sh).
# Exit status: 0 all passed, 1 a target found something or did not build, 2 usage.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

seconds=30 runs="" build_dir=build-fuzz build=1 nice_cmd=() keep=0 extra=() only=()
usage() { printf 'fuzz.sh: %s (see --help)\n' "$1" >&2; exit 2; }
number() { [[ $2 =~ ^[1-9][0-9]*$ ]] || usage "$1 wants a positive number, not '$2'"; }
while (($# > 0)); do
    case $1 in
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    --seconds) (($# > 1)) || usage "--seconds needs a value"; number "$1" "$2"; seconds=$2; shift 2 ;;
    --runs) (($# > 1)) || usage "--runs needs a value"; number "$1" "$2"; runs=$2; shift 2 ;;
    --build-dir) (($# > 1)) || usage "--build-dir needs a value"; build_dir=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --nice) nice_cmd=(nice -n 10); shift ;;
    --keep) keep=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -*) usage "unknown option: $1" ;;
    *) only+=("$1"); shift ;;
    esac
done
case $build_dir in /*) ;; *) build_dir=$root/$build_dir ;; esac

# name -> binary and seed corpus, from the sources (so fuzz_control appears once added).
declare -A bin corpus
names=()
for src in tests/fuzz/fuzz_*.c; do
    n=$(basename "$src" .c)
    names+=("$n") bin[$n]=$build_dir/tests/fuzz/$n corpus[$n]=tests/fuzz/corpus/${n#fuzz_}
done
for src in client/fuzz/fuzz_*.c; do
    b=$(basename "$src" .c)
    n=fuzz_client_${b#fuzz_}
    names+=("$n") bin[$n]=$build_dir/client/$n corpus[$n]=client/fuzz/corpus
done
if ((${#only[@]} > 0)); then
    for n in "${only[@]}"; do
        [[ -n ${bin[$n]:-} ]] || usage "no fuzz target $n (known: ${names[*]})"
    done
    names=("${only[@]}")
fi

if ((build)); then
    command -v clang >/dev/null || { printf 'fuzz.sh: clang is missing (apt-get install clang libclang-rt-14-dev)\n' >&2; exit 1; }
    # The tree must not be group-writable (the agent's plugin checks; harmless here).
    umask 022
    if [[ ! -f $build_dir/CMakeCache.txt ]]; then
        CC=clang cmake -S "$root" -B "$build_dir" -DREDIS_CREDS_FUZZ=ON -DBUILD_TESTING=ON >"$build_dir.configure.log" 2>&1 ||
            { cat "$build_dir.configure.log" >&2; printf 'fuzz.sh: cmake failed (is libclang-rt-14-dev installed?)\n' >&2; exit 1; }
        rm -f "$build_dir.configure.log"
    fi
    cmake --build "$build_dir" -j"$(nproc)" --target "${names[@]}" >"$build_dir/fuzz-build.log" 2>&1 ||
        { tail -40 "$build_dir/fuzz-build.log" >&2; printf 'fuzz.sh: the build failed (log: %s)\n' "$build_dir/fuzz-build.log" >&2; exit 1; }
fi

work=$(mktemp -d /tmp/redis-creds-fuzz.XXXXXX)
mkdir -p "$work/artifacts"
supp=$root/tests/fuzz/lsan.supp
limits=(-max_total_time="$seconds" -timeout=25 -print_final_stats=1)
[[ -n $runs ]] && limits+=(-runs="$runs")
failed=()
printf '%-22s %-6s %12s %9s %6s %6s\n' target result executions exec/s cov secs
for n in "${names[@]}"; do
    [[ -x ${bin[$n]} ]] || { printf '%-22s %-6s (not built: %s)\n' "$n" MISSING "${bin[$n]}"; failed+=("$n"); continue; }
    mkdir -p "$work/corpus/$n"
    [[ -d ${corpus[$n]} ]] && cp -r "${corpus[$n]}/." "$work/corpus/$n/"
    log=$work/$n.log
    start=$(date +%s)
    rc=0
    # libFuzzer adds what it finds to the corpus directory: a copy, never the seeds.
    (cd "$work" && LSAN_OPTIONS=suppressions=$supp "${nice_cmd[@]}" "${bin[$n]}" \
        -artifact_prefix="$work/artifacts/$n-" "${limits[@]}" "${extra[@]}" "$work/corpus/$n" >"$log" 2>&1) || rc=$?
    secs=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)   # none when it died on a seed
    result=ok
    if ((rc != 0)); then
        result=FOUND failed+=("$n")
    fi
    printf '%-22s %-6s %12s %9s %6s %6s\n' "$n" "$result" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$secs"
    if ((rc != 0)); then
        grep -E '^==[0-9]+==ERROR|^SUMMARY|Test unit written to|^ALARM|out-of-memory|leak' "$log" | head -8 | sed 's/^/    /'
        printf '    log: %s\n    reproduce: %s <the file named above>\n' "$log" "${bin[$n]}"
    fi
done

if ((${#failed[@]} > 0)); then
    printf 'fuzz.sh: %d target(s) found something: %s; work directory kept: %s\n' "${#failed[@]}" "${failed[*]}" "$work" >&2
    exit 1
fi
if ((keep)); then
    printf 'fuzz.sh: work directory: %s\n' "$work"
else
    rm -rf "$work"
fi
