#!/usr/bin/env bash
# Golden diagnostics of `irp validate`.
#
# Each tests/diag/NAME.yaml is a small playbook with something wrong in
# it; NAME.expected beside it holds "# exit: N" and then exactly what
# `irp validate NAME.yaml`, run from inside tests/diag/, prints on stderr.
#
#   diag_golden.sh [NAME...]            check every case (or the ones named)
#   diag_golden.sh --update [NAME...]   rewrite the .expected files from the
#                                       binary -- then read every changed
#                                       line before committing it
#
# Besides the exact comparison, every line printed must have the form
# NAME.yaml:LINE:COL: error|warning: message (LINE, COL >= 1), or
# NAME.yaml: error: message for a whole-file problem, and stdout must stay
# empty.
#
# Environment: IRP (the irp binary, required), IRP_SOURCE_DIR (the source
# tree; default: two levels above this script).
set -euo pipefail

IRP=${IRP:?set IRP to the path of the irp binary}
IRP=$(realpath "$IRP")
SRC=${IRP_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
DIR=$SRC/tests/diag

update=0
if [[ ${1:-} == --update ]]; then
    update=1
    shift
fi

names=()
if (($#)); then
    for n in "$@"; do
        n=${n##*/}
        names+=("${n%.yaml}")
    done
else
    for f in "$DIR"/*.yaml; do
        n=${f##*/}
        names+=("${n%.yaml}")
    done
fi
if ((${#names[@]} == 0)); then
    echo "diag_golden: no cases in $DIR" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
failures=()

fail() {
    failed=$((failed + 1))
    failures+=("$1")
}

for name in "${names[@]}"; do
    if [[ ! -f $DIR/$name.yaml ]]; then
        echo "FAIL $name: no $name.yaml in $DIR"
        fail "$name"
        continue
    fi
    rc=0
    (cd "$DIR" && NO_COLOR=1 timeout 20 "$IRP" validate "$name.yaml") \
        >"$tmp/stdout" 2>"$tmp/stderr" || rc=$?
    { printf '# exit: %d\n' "$rc"; cat "$tmp/stderr"; } >"$tmp/actual"

    if ((update)); then
        cp "$tmp/actual" "$DIR/$name.expected"
        echo "updated $name.expected"
        continue
    fi

    ok=1
    if ((rc == 124)); then
        echo "FAIL $name: irp validate did not finish within 20 s"
        ok=0
    elif ((rc >= 2)); then
        echo "FAIL $name: exit status $rc (0 or 1 expected from validate on a readable file)"
        ok=0
    fi
    if [[ -s $tmp/stdout ]]; then
        echo "FAIL $name: irp validate wrote to stdout:"
        sed 's/^/    /' "$tmp/stdout"
        ok=0
    fi
    # The form of every line, whatever the expected file says.
    esc_name=$(printf '%s' "$name.yaml" | sed 's/[.[\*^$]/\\&/g')
    if bad=$(grep -nEv "^$esc_name(:[1-9][0-9]*:[1-9][0-9]*)?: (error|warning): [^ ]" \
                 "$tmp/stderr"); then
        echo "FAIL $name: stderr lines not of the form $name.yaml:LINE:COL: error|warning: ..."
        printf '%s\n' "$bad" | sed 's/^/    line /'
        ok=0
    fi
    if [[ ! -f $DIR/$name.expected ]]; then
        echo "FAIL $name: no $name.expected (create it with --update, then review it)"
        ok=0
    elif ! diff -u --label "$name.expected" --label "actual" \
            "$DIR/$name.expected" "$tmp/actual" >"$tmp/diff"; then
        echo "FAIL $name:"
        cat "$tmp/diff"
        ok=0
    fi
    if ((ok)); then
        passed=$((passed + 1))
    else
        fail "$name"
    fi
done

((update)) && exit 0

# Every expected file belongs to a case.
if (($# == 0)); then
    for e in "$DIR"/*.expected; do
        n=${e##*/}
        n=${n%.expected}
        if [[ ! -f $DIR/$n.yaml ]]; then
            echo "FAIL $n: $n.expected has no $n.yaml"
            fail "$n"
        fi
    done
fi

echo "$passed passed, $failed failed"
if ((failed)); then
    echo "failed: ${failures[*]}"
    exit 1
fi
