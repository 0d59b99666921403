#!/usr/bin/env bash
# irp benchmarks: each workload times irp against a peer that does the part
# of the job any implementation has to do, and prints the medians of
# alternating runs (irp, peer, irp, peer, ...) after a warm-up of each.
#
#   tests/bench/run.sh [options] [BUILD_DIR]
#
# BUILD_DIR (or $IRP_BINARY_DIR) is a CMake build of irp; the programs are
# $IRP (default BUILD_DIR/irp) and $IRP_YAML_PULL (default
# BUILD_DIR/irp_yaml_pull).  Needs only bash, coreutils and python3.
#
# Adding a workload: write a function workload_NAME that prepares its
# inputs and calls `compare LABEL -- IRP-ARGV... -- PEER-ARGV...`, then
# add NAME to WORKLOADS below.

# Functions run through a trap and "workload_$name"; SC2317 cannot see that.
# shellcheck disable=SC2317
set -euo pipefail

WORKLOADS=(validate spawn_independent spawn_chain)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	cat <<EOF
usage: $0 [options] [BUILD_DIR]

  BUILD_DIR        CMake build directory (default: \$IRP_BINARY_DIR)
  --runs N         timed runs of each program per workload (default 7)
  --steps N        steps in the generated playbooks (default 100000)
  --quick          smoke test: 3 runs, 10000 steps
  --only NAME      run only this workload (repeatable); see --list
  --list           list the workloads and exit
  --keep           keep the temporary directory (its path is printed)
  -h, --help       this text

environment: IRP, IRP_YAML_PULL (programs to time), IRP_BENCH_TMPDIR
(where inputs are generated; default \$TMPDIR or /tmp).
EOF
}

die() {
	echo "run.sh: $*" >&2
	exit 2
}

runs='' steps='' quick=0 keep=0 build=''
only=()
while (($#)); do
	case $1 in
	--runs) (($# >= 2)) || die "--runs needs a value"; runs=$2; shift 2 ;;
	--runs=*) runs=${1#*=}; shift ;;
	--steps) (($# >= 2)) || die "--steps needs a value"; steps=$2; shift 2 ;;
	--steps=*) steps=${1#*=}; shift ;;
	--quick) quick=1; shift ;;
	--only) (($# >= 2)) || die "--only needs a value"; only+=("$2"); shift 2 ;;
	--only=*) only+=("${1#*=}"); shift ;;
	--list) printf '%s\n' "${WORKLOADS[@]}"; exit 0 ;;
	--keep) keep=1; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) [[ -z $build ]] || die "more than one build directory given"
	   build=$1; shift ;;
	esac
done
if ((quick)); then
	runs=${runs:-3}
	steps=${steps:-10000}
fi
runs=${runs:-7}
steps=${steps:-100000}
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $steps =~ ^[1-9][0-9]*$ ]] || die "--steps must be a positive integer"
WARMUPS=1
for name in "${only[@]}"; do
	[[ " ${WORKLOADS[*]} " == *" $name "* ]] || die "no workload '$name' (see --list)"
done

build=${build:-${IRP_BINARY_DIR:-}}
if [[ -n $build ]]; then
	[[ -d $build ]] || die "no such build directory: $build"
	build=$(cd "$build" && pwd)
fi
if [[ -z $build && ( -z ${IRP:-} || -z ${IRP_YAML_PULL:-} ) ]]; then
	die "give the build directory as an argument or in IRP_BINARY_DIR (see --help)"
fi
IRP=${IRP:-$build/irp}
PULL=${IRP_YAML_PULL:-$build/irp_yaml_pull}
if [[ ! -x $PULL && -z ${IRP_YAML_PULL:-} && -f $build/CMakeCache.txt ]]; then
	echo "run.sh: building irp_yaml_pull in $build" >&2
	cmake --build "$build" --target irp_yaml_pull >&2 ||
		die "could not build irp_yaml_pull; add tests/bench/bench.cmake to the build"
fi
[[ $IRP == */* ]] || IRP=$(command -v -- "$IRP") || die "irp not found on PATH"
[[ -x $IRP ]] || die "irp not found or not executable: $IRP (build it, or set IRP)"
[[ -x $PULL ]] || die "peer not found or not executable: $PULL (build target irp_yaml_pull, or set IRP_YAML_PULL)"
command -v python3 >/dev/null || die "python3 is required"

tmpbase=${IRP_BENCH_TMPDIR:-${TMPDIR:-/tmp}}
WORK=$(mktemp -d "$tmpbase/irp-bench.XXXXXX") || die "cannot create a directory in $tmpbase"
cleanup() {
	if ((keep)); then
		echo "run.sh: kept $WORK" >&2
	else
		rm -rf -- "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- measuring ---------------------------------------------------------------

# One run of ARGV: prints "SECONDS MAXRSS_KIB EXIT_STATUS"; stdout goes to
# /dev/null, stderr to ERRFILE.  Wall time: a monotonic clock in ns around
# the run (`/usr/bin/time`'s %e has only 10 ms resolution).  Peak RSS:
# `/usr/bin/time`'s %M.  Linux carries the peak RSS of the process that
# forks over exec, so wait4() straight from Python would report at least
# Python's own ~14 MiB; the small `time` program keeps that floor near 1 MiB.
# Without it (Debian package `time`), Python's wait4() is the fallback and
# the header says so.
MEASURE_PY='
import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: stop quietly
errfile, timer, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
rssfile = errfile + ".rss"
cmd = [timer, "-f", "%M", "-o", rssfile, "--"] + argv if timer else argv
with open(os.devnull, "wb") as out, open(errfile, "wb") as err:
    t0 = time.perf_counter_ns()
    try:
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
    except OSError as e:
        err.write(("cannot run %s: %s\n" % (cmd[0], e)).encode())
        print("0 0 127")
        sys.exit(0)
    _, status, ru = os.wait4(p.pid, 0)
    t1 = time.perf_counter_ns()
p.returncode = code = os.waitstatus_to_exitcode(status)
if code < 0:
    code = 128 - code
rss = ru.ru_maxrss
if timer:
    try:
        with open(rssfile) as f:
            rss = int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        rss = 0
print("%.6f %d %d" % ((t1 - t0) / 1e9, rss, code))
'
TIMER=
if [[ -x /usr/bin/time ]] && /usr/bin/time -f %M -o /dev/null -- true 2>/dev/null; then
	TIMER=/usr/bin/time
fi

# measure ERRFILE ARGV...: sets m_sec, m_rss (KiB) and m_status.
measure() {
	local r err=$1
	shift
	r=$(python3 -c "$MEASURE_PY" "$err" "$TIMER" "$@")
	read -r m_sec m_rss m_status <<<"$r"
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
		END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

minmax() {
	printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 }
		END { printf "%.1f..%.1f ms", lo * 1000, hi * 1000 }'
}

# Results: one tab-separated line per workload in $WORK/rows.
failed=0

# compare LABEL -- IRP-ARGV... -- PEER-ARGV...
# Warm-up of each, then RUNS alternating pairs; every run must exit 0.
compare() {
	local label=$1
	shift
	[[ ${1:-} == -- ]] || die "compare: expected -- after the label"
	shift
	local a=() b=()
	while (($#)) && [[ $1 != -- ]]; do a+=("$1"); shift; done
	(($#)) || die "compare: expected -- before the peer's command"
	shift
	b=("$@")
	((${#a[@]} && ${#b[@]})) || die "compare: empty command"

	local a_sec=() a_rss=() b_sec=() b_rss=() i side who
	echo "run.sh: $label: $WARMUPS warm-up + $runs runs of each" >&2
	for ((i = -WARMUPS; i < runs; i++)); do
		for side in a b; do
			if [[ $side == a ]]; then
				who=irp
				measure "$WORK/stderr.a" "${a[@]}"
			else
				who=peer
				measure "$WORK/stderr.b" "${b[@]}"
			fi
			if [[ $m_status != 0 ]]; then
				echo "run.sh: $label: $who exited $m_status; its stderr begins:" >&2
				head -n 20 "$WORK/stderr.$side" | sed 's/^/    /' >&2
				printf '%s\t%s\n' "$label" "FAILED: $who exited $m_status" >>"$WORK/rows"
				failed=1
				return 0
			fi
			((i >= 0)) || continue
			if [[ $side == a ]]; then
				a_sec+=("$m_sec")
				a_rss+=("$m_rss")
			else
				b_sec+=("$m_sec")
				b_rss+=("$m_rss")
			fi
		done
	done

	local as bs ar br
	as=$(median "${a_sec[@]}")
	bs=$(median "${b_sec[@]}")
	ar=$(median "${a_rss[@]}")
	br=$(median "${b_rss[@]}")
	awk -v l="$label" -v as="$as" -v bs="$bs" -v ar="$ar" -v br="$br" \
		-v asp="$(minmax "${a_sec[@]}")" -v bsp="$(minmax "${b_sec[@]}")" 'BEGIN {
		printf "%s\t%.1f ms\t%.1f ms\t%.2f\t%.1f MiB\t%.1f MiB\t%.2f\t%s\t%s\n",
			l, as * 1000, bs * 1000, (bs > 0 ? as / bs : 0),
			ar / 1024, br / 1024, (br > 0 ? ar / br : 0), asp, bsp
	}' >>"$WORK/rows"
}

# --- inputs ------------------------------------------------------------------

human() {
	local n=$1
	if ((n >= 1000000 && n % 1000000 == 0)); then echo "$((n / 1000000))M"
	elif ((n >= 1000 && n % 1000 == 0)); then echo "$((n / 1000))k"
	else echo "$n"; fi
}

# playbook STEPS SHAPE: path of a generated playbook (made once per run).
playbook() {
	local f="$WORK/pb-$2-$1.yaml"
	if [[ ! -f $f ]]; then
		python3 "$HERE/gen_playbook.py" --steps "$1" --shape "$2" >"$f.tmp"
		mv -- "$f.tmp" "$f"
		printf '%s\t%s\t%s\n' "$(basename "$f")" "$(stat -c %s "$f")" "$1" >>"$WORK/inputs"
	fi
	echo "$f"
}

# --- workloads ---------------------------------------------------------------

# Load and check a large playbook: `irp validate` against pulling the same
# file's YAML events with libyaml and nothing else.
workload_validate() {
	local f
	f=$(playbook "$steps" mixed)
	compare "validate $(human "$steps") steps" -- "$IRP" validate "$f" -- "$PULL" "$f"
}

# N no-op steps for irp (argv, no shell) and the same N `true` commands
# for ninja; chain: each waits for the one before.
spawn_inputs() { # n shape dir
	python3 - "$1" "$2" "$3" <<'PY'
import os, sys
n, shape, d = int(sys.argv[1]), sys.argv[2], sys.argv[3]
os.makedirs(d, exist_ok=True)
with open(os.path.join(d, "noop.yaml"), "w") as f:
    f.write("irp: 1\nid: noop\nsteps:\n")
    for i in range(n):
        needs = "    needs: []\n" if shape == "independent" else ""
        f.write(f"  - id: s{i}\n{needs}    run: [\"true\"]\n")
with open(os.path.join(d, "build.ninja"), "w") as f:
    f.write("rule t\n  command = true\n")
    for i in range(n):
        dep = f" | o{i-1}" if shape == "chain" and i else ""
        f.write(f"build o{i}: t{dep}\n")
PY
}

spawn_workload() { # shape
	local n=${IRP_BENCH_SPAWN_STEPS:-2000} d="$WORK/spawn-$1"
	command -v ninja >/dev/null || { echo "run.sh: ninja not installed; skipping spawn_$1" >&2; return 0; }
	spawn_inputs "$n" "$1" "$d"
	compare "$n no-op steps, $1, --jobs 2 vs ninja -j2" -- \
		"$IRP" run --quiet --runs "$d/runs" --jobs 2 "$d/noop.yaml" -- \
		ninja -C "$d" -j2 --quiet
}

workload_spawn_independent() { spawn_workload independent; }
workload_spawn_chain() { spawn_workload chain; }

# --- report ------------------------------------------------------------------

cpu_model() {
	local m
	m=$(awk -F': *' '/^(model name|Hardware|cpu model|uarch)[[:space:]]*:/ { print $2; exit }' \
		/proc/cpuinfo 2>/dev/null || true)
	echo "${m:-$(uname -m)}"
}

# The build type in the cache, and the optimisation and sanitizer flags
# the compiler really got (CMakeLists.txt may set the type without caching it).
build_info() {
	local t='' f=''
	if [[ -n $build && -f $build/CMakeCache.txt ]]; then
		t=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
	fi
	if [[ -n $build && -f $build/compile_commands.json ]]; then
		f=$(grep -o -e ' -O[0-3sgz]\b' -e ' -fsanitize=[^ "]*' "$build/compile_commands.json" |
			sort -u | tr -d '\n')
	fi
	echo "build type ${t:-not cached}; flags${f:- unknown}"
}

printf 'irp benchmarks, %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
printf '  machine   %s CPUs (nproc), %s; %s %s\n' "$(nproc)" "$(cpu_model)" "$(uname -s)" "$(uname -r)"
gov=/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor
[[ -r $gov ]] && printf '  governor  %s\n' "$(cat "$gov")"
load=$(cut -d' ' -f1-3 /proc/loadavg)
busy=$(awk -v l="${load%% *}" -v n="$(nproc)" 'BEGIN { if (l > n / 4) print "; busy, expect noise" }')
printf '  load      %s (1, 5, 15 min)%s\n' "$load" "$busy"
printf '  temp dir  %s on %s\n' "$WORK" "$(df -PT "$WORK" | awk 'NR == 2 { print $2 " (" $7 ")" }')"
printf '  irp       %s (%s; %s)\n' "$IRP" \
	"$("$IRP" --version 2>/dev/null | head -n 1 || true)" "$(build_info)"
printf '  peer      %s (%s)\n' "$PULL" "$("$PULL" -V 2>/dev/null || echo 'libyaml ?')"
measure "$WORK/stderr.floor" true
if [[ -n $TIMER ]]; then
	printf '  peak RSS  from %s %%M (floor: true shows %s KiB)\n' "$TIMER" "$m_rss"
else
	printf '  peak RSS  from wait4() in python3, which inflates it: true shows %s KiB\n' "$m_rss"
	printf '            (apt-get install time for exact figures)\n'
fi
printf '  runs      %s alternating (irp, peer) after %s warm-up of each; medians\n' "$runs" "$WARMUPS"
echo

for name in "${WORKLOADS[@]}"; do
	if ((${#only[@]})) && [[ " ${only[*]} " != *" $name "* ]]; then
		continue
	fi
	"workload_$name"
done

if [[ -f $WORK/inputs ]]; then
	echo "inputs"
	awk -F'\t' '{ printf "  %-26s %6.1f MB  %d bytes, %d steps, %.0f bytes/step\n",
		$1, $2 / 1e6, $2, $3, $2 / $3 }' "$WORK/inputs"
	echo
fi

if [[ -f $WORK/rows ]]; then
	awk -F'\t' '
	{ n++; for (c = 1; c <= NF; c++) cell[n, c] = $c; nf[n] = NF }
	function dashes(k,   d) { d = ""; while (k-- > 0) d = d "-"; return d }
	END {
		split("workload|irp|peer|ratio (irp/peer)|irp peak RSS|peer peak RSS|RSS ratio", h, "|")
		for (c = 1; c <= 7; c++) w[c] = length(h[c])
		for (r = 1; r <= n; r++)
			for (c = 1; c <= 7 && c <= nf[r]; c++)
				if (length(cell[r, c]) > w[c]) w[c] = length(cell[r, c])
		line = "|"; sep = "|"
		for (c = 1; c <= 7; c++) {
			line = line sprintf(" %-*s |", w[c], h[c])
			sep = sep (c == 1 ? dashes(w[c] + 2) : dashes(w[c] + 1) ":") "|"
		}
		print line
		print sep
		for (r = 1; r <= n; r++) {
			line = "|"
			for (c = 1; c <= 7; c++) {
				v = (c <= nf[r]) ? cell[r, c] : ""
				line = line sprintf(c == 1 || nf[r] < 7 ? " %-*s |" : " %*s |", w[c], v)
			}
			print line
		}
		head = "\nspread (min..max of the timed runs)"
		for (r = 1; r <= n; r++)
			if (nf[r] >= 9) {
				if (head != "") { print head; head = "" }
				printf "  %s: irp %s, peer %s\n", cell[r, 1], cell[r, 8], cell[r, 9]
			}
	}' "$WORK/rows"
fi

exit "$failed"
