#!/usr/bin/env bash
# Build irp's libFuzzer targets with clang and fuzz each for a bounded time.
#
#   tests/fuzz/run.sh [--time SECONDS] [--build DIR] [TARGET...]
#
# Configures DIR (default build-fuzz) with CC=clang, IRP_FUZZ=ON: the core
# with -fsanitize=fuzzer-no-link,address,undefined, the targets with
# -fsanitize=fuzzer,address,undefined (tests/fuzz/fuzz.cmake).  Seeds each
# target's corpus with seeds.py (and a journal from a quick `irp run` of
# that build), then runs the targets one at a time for SECONDS each
# (default $IRP_FUZZ_TIME or 30) with -rss_limit_mb=2048 -timeout=10, the
# target's dictionary, and tests/fuzz/regressions/TARGET as corpus too.
#
# The corpus grows in DIR/fuzz/corpus/TARGET and is kept between runs.  A
# crash, leak, timeout or out-of-memory input is saved under
# DIR/fuzz/artifacts/TARGET/ and fails the run: minimise it
# (`fuzz_TARGET -minimize_crash=1 -runs=10000 FILE`) and add it to
# tests/fuzz/regressions/TARGET/ with the fix.  Prints one line per target
# and a summary; exits 1 when a target failed, 2 on bad usage or a failed
# build.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ALL=(playbook expr inputs journal answers scenario)

usage() {
	cat <<USAGE
usage: $0 [--time SECONDS] [--build DIR] [TARGET...]

  --time SECONDS   fuzzing time per target (default \$IRP_FUZZ_TIME or 30)
  --build DIR      clang build directory (default build-fuzz, under the source tree)
  TARGET           ${ALL[*]} (default: all)
  -h, --help       this text
USAGE
}

die() {
	echo "run.sh: $*" >&2
	exit 2
}

secs=${IRP_FUZZ_TIME:-30} build=build-fuzz
targets=()
while (($#)); do
	case $1 in
	--time) [ $# -ge 2 ] || die "--time needs a value"; secs=$2; shift 2 ;;
	--build) [ $# -ge 2 ] || die "--build needs a value"; build=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	-*) usage >&2; exit 2 ;;
	*) targets+=("$1"); shift ;;
	esac
done
[[ $secs =~ ^[1-9][0-9]*$ ]] || die "--time: a whole number of seconds, not '$secs'"
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")
for t in "${targets[@]}"; do
	[[ " ${ALL[*]} " == *" $t "* ]] || die "unknown target '$t' (one of: ${ALL[*]})"
done
case $build in /*) ;; *) build=$ROOT/$build ;; esac
command -v clang >/dev/null || die "clang is not installed (scripts/install-deps installs it)"

# Build: only the targets and irp (for a journal seed); tests are the
# normal builds' business.
work=$build/fuzz
mkdir -p "$work"
if ! { cmake -S "$ROOT" -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang -DIRP_FUZZ=ON \
	-DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
	cmake --build "$build" -j2 --target irp "${targets[@]/#/fuzz_}"; } >"$work/build.log" 2>&1; then
	tail -n 40 "$work/build.log" >&2
	die "the clang build failed (log: $work/build.log)"
fi

# The targets write each input to a file: on a tmpfs that costs no disk.
tmpbase=$work
[ -d /dev/shm ] && [ -w /dev/shm ] && tmpbase=/dev/shm
tmp=$(mktemp -d "$tmpbase/irp-fuzz-run.XXXXXX") || die "cannot create a temporary directory"
trap 'rm -rf "$tmp"' EXIT
rm -rf "$work/seeds"
mkdir -p "$work/seeds"
# Leaks in a one-shot `irp run` are the normal builds' tests' business;
# here it only writes a journal.
IRP=$build/irp ASAN_OPTIONS=detect_leaks=0 TMPDIR=$tmp \
	timeout 300 python3 "$HERE/seeds.py" "$work/seeds" "${targets[@]}" || die "seeds.py failed"

failed=0
for t in "${targets[@]}"; do
	corpus=$work/corpus/$t artifacts=$work/artifacts/$t
	mkdir -p "$corpus" "$artifacts"
	rm -f "$artifacts"/*
	log=$work/$t.log
	dict=()
	[ -f "$HERE/$t.dict" ] && dict=(-dict="$HERE/$t.dict")
	# A target with no regression yet has no folder (git keeps no empty ones).
	dirs=("$corpus" "$work/seeds/$t")
	[ -d "$HERE/regressions/$t" ] && dirs+=("$HERE/regressions/$t")
	# The fuzzer stops itself after $secs; the outer timeout only guards
	# against it hanging on the way out.
	TMPDIR=$tmp timeout $((secs + 300)) "$build/fuzz_$t" \
		-max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
		-artifact_prefix="$artifacts/" "${dict[@]}" \
		"${dirs[@]}" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	if [ "$rc" -eq 0 ]; then
		echo "fuzz $t: ok, ${execs:-?} inputs in ${secs}s, corpus $(find "$corpus" -type f | wc -l)"
	else
		failed=$((failed + 1))
		echo "fuzz $t: FAILED (exit $rc); log $log; input(s):"
		find "$artifacts" -type f | sed 's/^/  /'
		grep -E 'ERROR: |SUMMARY: |runtime error: |fuzz invariant broken' "$log" | head -n 5 | sed 's/^/  /'
	fi
done
echo "fuzz: ${#targets[@]} targets, $failed failed"
[ "$failed" -eq 0 ]
