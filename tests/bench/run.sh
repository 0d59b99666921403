#!/usr/bin/env bash
# irp benchmarks: each workload times irp against a peer -- a program that
# does only the part of the job any implementation has to do, or the tool a
# team would otherwise pick -- and prints the medians of alternating runs
# (irp, peer, irp, peer, ...) after a warm-up of each.
#
#   tests/bench/run.sh [options] [BUILD_DIR]
#
# BUILD_DIR (or $IRP_BINARY_DIR) is a CMake build of irp; the programs are
# $IRP (default BUILD_DIR/irp) and $IRP_YAML_PULL (default
# BUILD_DIR/irp_yaml_pull).  Needs bash, coreutils and python3; the peers
# ninja, make and ansible-playbook are used when installed (a row says
# "skipped" otherwise).  The workloads are in workloads.sh.

# Functions run through a trap and "workload_$name"; SC2317 cannot see that.
# shellcheck disable=SC2317
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=workloads.sh source-path=SCRIPTDIR
source "$HERE/workloads.sh"   # defines WORKLOADS and the workload_* functions

usage() {
	cat <<EOF
usage: $0 [options] [BUILD_DIR]

  BUILD_DIR        CMake build directory (default: \$IRP_BINARY_DIR)
  --runs N         timed runs of each program per workload (default 7)
  --steps N        steps in the large generated playbooks (default 100000)
  --spawn-steps N  steps that spawn a process, in the spawn workloads
                   (default 2000)
  --runs-dir DIR   where irp run and irp simulate write their run
                   directories (default: inside the temporary directory);
                   its filesystem is named in every row that writes there
  --quick          smoke test: 3 runs, 10000 steps, 100 spawn steps, and
                   smaller fd_limit, ansible and simulate workloads
  --only NAME      run only this workload (repeatable); see --list
  --list           list the workloads and exit
  --keep           keep the temporary directory (its path is printed)
  -h, --help       this text

environment: IRP, IRP_YAML_PULL (programs to time), IRP_BENCH_TMPDIR
(where inputs are generated; default \$TMPDIR or /tmp), IRP_BENCH_RUNS_DIR
(as --runs-dir), IRP_BENCH_SPAWN_STEPS (as --spawn-steps).
EOF
}

die() {
	echo "run.sh: $*" >&2
	exit 2
}

runs='' steps='' spawn_steps=${IRP_BENCH_SPAWN_STEPS:-} quick=0 keep=0 build=''
runs_base=${IRP_BENCH_RUNS_DIR:-}
only=()
while (($#)); do
	case $1 in
	--runs) (($# >= 2)) || die "--runs needs a value"; runs=$2; shift 2 ;;
	--runs=*) runs=${1#*=}; shift ;;
	--steps) (($# >= 2)) || die "--steps needs a value"; steps=$2; shift 2 ;;
	--steps=*) steps=${1#*=}; shift ;;
	--spawn-steps) (($# >= 2)) || die "--spawn-steps needs a value"; spawn_steps=$2; shift 2 ;;
	--spawn-steps=*) spawn_steps=${1#*=}; shift ;;
	--runs-dir) (($# >= 2)) || die "--runs-dir needs a value"; runs_base=$2; shift 2 ;;
	--runs-dir=*) runs_base=${1#*=}; shift ;;
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
	spawn_steps=${spawn_steps:-100}
fi
runs=${runs:-7}
steps=${steps:-100000}
spawn_steps=${spawn_steps:-2000}
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $steps =~ ^[1-9][0-9]*$ ]] || die "--steps must be a positive integer"
[[ $spawn_steps =~ ^[1-9][0-9]*$ ]] || die "--spawn-steps must be a positive integer"
WARMUPS=1
for name in "${only[@]}"; do
	[[ " ${WORKLOADS[*]} " == *" $name "* ]] || die "no workload '$name' (see --list)"
done
selected() { ((${#only[@]} == 0)) || [[ " ${only[*]} " == *" $1 "* ]]; }
if selected spawn_large_parent && ((spawn_steps >= steps)); then
	die "--spawn-steps must be below --steps (spawn_large_parent skips the difference)"
fi

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

[[ -z $runs_base || -d $runs_base ]] || die "no such directory: $runs_base (--runs-dir)"

tmpbase=${IRP_BENCH_TMPDIR:-${TMPDIR:-/tmp}}
WORK=$(mktemp -d "$tmpbase/irp-bench.XXXXXX") || die "cannot create a directory in $tmpbase"
# Run directories go to a directory of our own, inside --runs-dir when one
# is given, so that clearing it between runs never touches anything else.
if [[ -n $runs_base ]]; then
	RUNS=$(mktemp -d "$runs_base/irp-bench-runs.XXXXXX") ||
		{ rm -rf -- "$WORK"; die "cannot create a directory in $runs_base"; }
else
	RUNS=$WORK/runs
	mkdir -- "$RUNS"
fi
SPENT=$RUNS.spent
mkdir -- "$SPENT"
RUNS_FS=$(df -PT "$RUNS" | awk 'NR == 2 { print $2 }')
cleanup() {
	if ((keep)); then
		echo "run.sh: kept $WORK${runs_base:+ and $RUNS, $SPENT}" >&2
	else
		rm -rf -- "$WORK"
		[[ -z $runs_base ]] || rm -rf -- "$RUNS" "$SPENT"
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

# --- races ------------------------------------------------------------------
#
# A workload declares the programs it times, then races them:
#
#   side NAME ARGV...     a program to time (NAME: a word, e.g. irp, ninja)
#   race [RUNS [WARMUPS]] warm-ups, then RUNS rounds of every side in turn
#                         (default: --runs and 1); every run must exit 0
#   row LABEL A B         a table row: side A (irp) against side B (a peer)
#   row_ideal LABEL A SECONDS WHAT
#                         side A against a computed time instead of a program
#   skip_row LABEL WHY    a row for a workload that could not run (not a failure)
#
# Racing every side in one loop shares the irp runs between several rows
# and keeps drift on the machine from favouring a side.  RACE_PREP, if set,
# names a function called with the side's name before each of its runs,
# outside the timing (to clear run directories, say).

declare -a SIDES=()
declare -A SIDE_ARGV=() SEC=() RSS=() MED_SEC=() MED_RSS=()
RACE_FAILED='' RACE_PREP=''
failed=0
US=$'\x1f'   # separates a side's arguments (none holds it)

side() {
	local name=$1 IFS=$US
	shift
	(($#)) || die "side $name: empty command"
	SIDES+=("$name")
	SIDE_ARGV[$name]="$*"
}

# shellcheck disable=SC2120  # callers may pass RUNS and WARMUPS
race() {
	local n=${1:-$runs} warm=${2:-$WARMUPS} i name argv
	((${#SIDES[@]})) || die "race: no sides"
	RACE_FAILED=''
	SEC=() RSS=() MED_SEC=() MED_RSS=()
	echo "run.sh:   ${SIDES[*]}: $warm warm-up + $n runs of each" >&2
	for ((i = -warm; i < n; i++)); do
		for name in "${SIDES[@]}"; do
			IFS=$US read -r -a argv <<<"${SIDE_ARGV[$name]}"
			[[ -z $RACE_PREP ]] || "$RACE_PREP" "$name"
			measure "$WORK/stderr.$name" "${argv[@]}"
			if [[ $m_status != 0 ]]; then
				echo "run.sh: $name exited $m_status; its stderr begins:" >&2
				head -n 20 "$WORK/stderr.$name" | sed 's/^/    /' >&2
				RACE_FAILED="$name exited $m_status"
				failed=1
				break 2
			fi
			((i >= 0)) || continue
			SEC[$name]+=" $m_sec"
			RSS[$name]+=" $m_rss"
		done
	done
	if [[ -z $RACE_FAILED ]]; then
		for name in "${SIDES[@]}"; do
			# shellcheck disable=SC2086  # the lists are space-separated on purpose
			MED_SEC[$name]=$(median ${SEC[$name]})
			# shellcheck disable=SC2086
			MED_RSS[$name]=$(median ${RSS[$name]})
		done
	fi
	SIDES=()
	RACE_PREP=''
	[[ -z $RACE_FAILED ]]
}

# Formatting for row and row_ideal: times in ms below 10 s; a ratio far
# below 1 (irp against ansible, say) also as "1/N", which says more than 0.00.
ROW_AWK='
function ms(s) { return s >= 10 ? sprintf("%.2f s", s) : sprintf("%.1f ms", s * 1000) }
function ratio(a, b) {
	if (b <= 0) return "-"
	if (a / b >= 0.1) return sprintf("%.2f", a / b)
	return sprintf("%.4f = 1/%.0f", a / b, b / a)
}'

row() {
	local label=$1 a=$2 b=$3
	if [[ -n $RACE_FAILED ]]; then
		printf '%s\t%s\n' "$label" "FAILED: $RACE_FAILED" >>"$WORK/rows"
		return 0
	fi
	[[ -n ${MED_SEC[$a]:-} && -n ${MED_SEC[$b]:-} ]] || die "row $label: no side $a or $b in the last race"
	# shellcheck disable=SC2086
	awk -v l="$label" -v as="${MED_SEC[$a]}" -v bs="${MED_SEC[$b]}" \
		-v ar="${MED_RSS[$a]}" -v br="${MED_RSS[$b]}" \
		-v asp="$(minmax ${SEC[$a]})" -v bsp="$(minmax ${SEC[$b]})" 'BEGIN {
		printf "%s\t%s\t%s\t%s\t%.1f MiB\t%.1f MiB\t%.2f\t%s\t%s\n",
			l, ms(as), ms(bs), ratio(as, bs),
			ar / 1024, br / 1024, (br > 0 ? ar / br : 0), asp, bsp
	}
	'"$ROW_AWK" >>"$WORK/rows"
}

row_ideal() {
	local label=$1 a=$2 ideal=$3 what=$4
	if [[ -n $RACE_FAILED ]]; then
		printf '%s\t%s\n' "$label" "FAILED: $RACE_FAILED" >>"$WORK/rows"
		return 0
	fi
	# shellcheck disable=SC2086
	awk -v l="$label" -v as="${MED_SEC[$a]}" -v bs="$ideal" -v ar="${MED_RSS[$a]}" \
		-v asp="$(minmax ${SEC[$a]})" -v w="$what" 'BEGIN {
		printf "%s\t%s\t%s\t%s\t%.1f MiB\t-\t-\t%s\t%s\n",
			l, ms(as), ms(bs), ratio(as, bs), ar / 1024, asp, w
	}
	'"$ROW_AWK" >>"$WORK/rows"
}

skip_row() {
	echo "run.sh: $1: skipped: $2" >&2
	printf '%s\t%s\n' "$1" "skipped: $2" >>"$WORK/rows"
}

# note TEXT: a line printed under the table (how a figure was computed).
note() {
	printf '%s\n' "$*" >>"$WORK/notes"
}

# compare LABEL -- IRP-ARGV... -- PEER-ARGV...: a race of two sides and its row.
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
	side irp "${a[@]}"
	side peer "${b[@]}"
	race "$runs" || true
	row "$label" irp peer
}

# mem_row LABEL STEPS SIDE BASE_SIDE: peak RSS per step of SIDE in the last
# race, in total and above BASE_SIDE (the same program on a tiny input).
mem_row() {
	local label=$1 count=$2 big=$3 small=$4
	if [[ -n $RACE_FAILED ]]; then
		printf '%s\t%s\n' "$label" "FAILED: $RACE_FAILED" >>"$WORK/mem"
		return 0
	fi
	awk -v l="$label" -v n="$count" -v r="${MED_RSS[$big]}" -v b="${MED_RSS[$small]}" 'BEGIN {
		printf "%s\t%d\t%.1f MiB\t%.1f MiB\t%.2f KiB\t%.2f KiB\n",
			l, n, r / 1024, b / 1024, r / n, (r - b) / n
	}' >>"$WORK/mem"
}

# --- inputs ------------------------------------------------------------------

human() {
	local n=$1
	if ((n >= 1000000 && n % 1000000 == 0)); then echo "$((n / 1000000))M"
	elif ((n >= 1000 && n % 1000 == 0)); then echo "$((n / 1000))k"
	else echo "$n"; fi
}

# input_made FILE STEPS: list FILE under "inputs" in the output.
input_made() {
	printf '%s\t%s\t%s\n' "${1#"$WORK"/}" "$(stat -c %s "$1")" "$2" >>"$WORK/inputs"
}

# playbook STEPS SHAPE: path of a generated playbook (made once per run).
playbook() {
	local f="$WORK/pb-$2-$1.yaml"
	if [[ ! -f $f ]]; then
		python3 "$HERE/gen_playbook.py" --steps "$1" --shape "$2" >"$f.tmp"
		mv -- "$f.tmp" "$f"
		input_made "$f" "$1"
	fi
	echo "$f"
}

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
printf '  runs dir  %s on %s (--runs of irp run and irp simulate)\n' "$RUNS" "$RUNS_FS"
printf '  peers     %s (%s)\n' "$PULL" "$("$PULL" -V 2>/dev/null || echo 'libyaml ?')"
# `sed -n 1p` reads to the end: ansible-playbook dies of a closed pipe.
for p in ninja make ansible-playbook; do
	if command -v "$p" >/dev/null; then
		printf '            %s (%s)\n' "$(command -v "$p")" "$("$p" --version 2>/dev/null | sed -n 1p)"
	else
		printf '            %s: not installed (its rows are skipped)\n' "$p"
	fi
done
measure "$WORK/stderr.floor" true
if [[ -n $TIMER ]]; then
	printf '  peak RSS  from %s %%M (floor: true shows %s KiB)\n' "$TIMER" "$m_rss"
else
	printf '  peak RSS  from wait4() in python3, which inflates it: true shows %s KiB\n' "$m_rss"
	printf '            (apt-get install time for exact figures)\n'
fi
printf '  runs      %s rounds of every program in turn (irp, peer, ...) after %s warm-up\n' "$runs" "$WARMUPS"
printf '            of each; medians (fd_limit, ansible, memory: at most 3 rounds, 1 with --quick)\n'
echo

for name in "${WORKLOADS[@]}"; do
	selected "$name" || continue
	echo "run.sh: workload $name" >&2
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
				if ((c == 1 || nf[r] >= 7) && length(cell[r, c]) > w[c])
					w[c] = length(cell[r, c])
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

if [[ -f $WORK/notes ]]; then
	echo
	echo "notes"
	sed 's/^/  /' "$WORK/notes"
fi

if [[ -f $WORK/mem ]]; then
	echo
	echo "peak memory per step (median peak RSS of the runs, divided by the steps)"
	echo
	awk -F'\t' '
	BEGIN {
		print "| workload | steps | peak RSS | same program, 1 step | per step | per step above 1 step |"
		print "|---|---:|---:|---:|---:|---:|"
	}
	NF < 6 { printf "| %s | %s | | | | |\n", $1, $2; next }
	{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$WORK/mem"
fi

exit "$failed"
