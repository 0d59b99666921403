#!/usr/bin/env bash
# Replay a fuzz target's regression inputs and seed corpus through its
# standalone driver (a normal build: gcc or ASan+UBSan, no libFuzzer).
#
#   replay.sh TARGET DRIVER
#
# TARGET is playbook, expr, inputs, journal, answers or scenario; DRIVER
# the fuzz_replay_TARGET binary.  Seeds are assembled with seeds.py in a
# fresh temporary directory (IRP, when set, provides a real journal).
# Fails when the driver crashes, a sanitizer or an invariant check
# reports, the driver prints anything but its summary (targets must be
# quiet), or not every input was replayed.  Prints a summary line;
# exits 1 on failure.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPLAY_TIMEOUT=300    # seconds for the whole replay; a hang fails

if [ $# -ne 2 ]; then
	echo "usage: $0 TARGET DRIVER" >&2
	exit 2
fi
target=$1 driver=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/irp-fuzz-replay.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT

failed=0
fail() {
	echo "FAIL $target: $*"
	failed=1
}

if ! timeout 120 python3 "$HERE/seeds.py" "$tmp/seeds" "$target" >"$tmp/seeds.out" 2>&1; then
	fail "seeds.py failed:"
	cat "$tmp/seeds.out"
fi
mkdir -p "$tmp/seeds/$target"
# A target with no regression yet has no folder (git keeps no empty ones).
regressions="$HERE/regressions/$target"
dirs=("$tmp/seeds/$target")
[ -d "$regressions" ] && dirs=("$regressions" "${dirs[@]}")
inputs=$(find "${dirs[@]}" -maxdepth 1 -type f ! -name '.*' | wc -l)

TMPDIR=$tmp timeout "$REPLAY_TIMEOUT" "$driver" "${dirs[@]}" \
	>"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
if [ "$rc" -ne 0 ]; then
	fail "the driver exited with $rc"
	tail -n 40 "$tmp/stderr"
elif [ -s "$tmp/stderr" ]; then
	fail "the target printed on stderr (targets must be quiet):"
	head -n 20 "$tmp/stderr"
elif ! grep -qx ".*: $inputs inputs replayed" "$tmp/stdout"; then
	fail "expected $inputs inputs replayed, the driver said: $(cat "$tmp/stdout")"
fi
leftover=$(find "$tmp" -mindepth 1 -maxdepth 1 -name 'irp-fuzz-*' | wc -l)
[ "$leftover" -eq 0 ] || fail "the target left its temporary directory behind"

if [ "$failed" -eq 0 ]; then
	echo "fuzz replay $target: $inputs inputs, 0 failed"
	exit 0
fi
echo "fuzz replay $target: $inputs inputs, 1 failed"
exit 1
