#!/usr/bin/env bash
# Hostile and oversized playbooks (SPEC §7): each one generated here must be
# refused by `irp validate` with exit status 1 and exactly one located
# diagnostic, well within a time bound -- never a crash, a hang or a
# runaway allocation.  A large valid playbook must be checked in bounded
# time too.  Then the error inputs again under valgrind, which must find
# no invalid access and no leak on these error paths.
#
# Environment: IRP (the irp binary, required).
# Exit status: 0 all passed; 1 a check failed; 77 every check passed but
# valgrind is not installed (or the binary is built with AddressSanitizer,
# which valgrind cannot run), so the memory checks were skipped.
set -euo pipefail

IRP=${IRP:?set IRP to the path of the irp binary}
IRP=$(realpath "$IRP")
LIMIT_S=10          # wall-clock bound of one run without valgrind
VALGRIND_LIMIT_S=120

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

passed=0
failed=0
fail() {
    echo "FAIL $*"
    failed=$((failed + 1))
}

# A valid start for generated playbooks: line 1-5.
head5() {
    printf 'irp: 1\nid: %s\nsteps:\n  - id: isolate\n    run: [edr-isolate, ws-017]\n' "$1"
}

# ---- the inputs ----------------------------------------------------------

# The classic "billion laughs": 10 levels of 10 aliases (10^10 nodes once
# expanded); irp must count, not expand.
{
    head5 bomb
    printf 'x-lol:\n'
    printf '  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n'
    for i in 1 2 3 4 5 6 7 8 9; do
        p=$((i - 1))
        printf '  l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n' \
            "$i" "$i" "$p" "$p" "$p" "$p" "$p" "$p" "$p" "$p" "$p" "$p"
    done
} >bomb.yaml

# 200 nested flow lists on line 6.  The root mapping is level 1, so the
# 64th '[' (column 8 + 64) opens level 65, the first one too deep.
{
    head5 deep
    printf 'x-deep: '
    printf '[%.0s' $(seq 200)
    printf ']%.0s' $(seq 200)
    printf '\n'
} >deep.yaml

# 65 MiB: a valid playbook padded with a long block scalar.
{
    head5 big
    printf 'x-padding: |\n'
    head -c $((65 * 1024 * 1024)) /dev/zero | tr '\0' 'a' | fold -w 100 | sed 's/^/  /'
} >big.yaml

# A byte that is not UTF-8 (0xFF) in a value: line 6, column 20.
{
    head5 utf8
    printf '    title: Isolate \xff host\n'
} >utf8.yaml

# A byte-order mark and nothing else.
printf '\xef\xbb\xbf' >bom.yaml

# A duplicate header deep inside a step: line 13, first at line 11.
cat >dupdeep.yaml <<'EOF'
irp: 1
id: dupdeep
steps:
  - id: isolate
    run: [edr-isolate, ws-017]
  - id: notify-csirt
    notify:
      via: webhook
      url: https://csirt.example/api/reports
      headers:
        Authorization: "Bearer ${{ secrets.CSIRT_TOKEN }}"
        Content-Language: en
        Authorization: "Bearer ${{ secrets.OTHER_TOKEN }}"
EOF

# 100,000 env keys, and one of them again on the last line (100,007).
{
    head5 wide
    printf '    env:\n'
    seq 0 99999 | sed 's/^/      VAR_/; s/$/: x/'
    printf '      VAR_4242: again\n'
} >wide.yaml

# Not an error, but the same promise: 50,000 steps in a chain (absent
# needs: the step before), each reading steps.s0.ok of the first one, so
# every reference is checked against a long chain of needs.  Checking must
# stay near linear: this file takes well under a second when it is.
{
    printf 'irp: 1\nid: chain\nsteps:\n  - id: s0\n    run: [x]\n'
    seq 1 49999 | awk '{ printf "  - id: s%d\n    when: steps.s0.ok\n    run: [x]\n", $1 }'
} >chain.yaml

# name | expected stderr, exactly (a regex, anchored)
cases=(
    "bomb|bomb\\.yaml:[0-9]+:[0-9]+: error: document expands to more than 10000000 nodes \\(alias expansion counted\\)"
    "deep|deep\\.yaml:6:72: error: nesting deeper than 64 levels"
    "big|big\\.yaml: error: file is larger than the 64 MiB limit"
    "utf8|utf8\\.yaml:6:20: error: invalid UTF-8: .*"
    "bom|bom\\.yaml:1:1: error: empty document: a playbook is a YAML mapping"
    "dupdeep|dupdeep\\.yaml:13:9: error: duplicate key 'Authorization' \\(first defined at line 11\\)"
    "wide|wide\\.yaml:100007:7: error: duplicate key 'VAR_4242' \\(first defined at line 4249\\)"
)
# The size limit is refused before any parsing, so it has no line: it is
# the one whole-file diagnostic.

size=$(stat -c %s big.yaml)
if ((size <= 65 * 1024 * 1024)); then
    fail "big.yaml is only $size bytes"
fi

# ---- plain runs ----------------------------------------------------------

for c in "${cases[@]}"; do
    name=${c%%|*}
    want=${c#*|}
    rc=0
    start=$(date +%s%N)
    NO_COLOR=1 timeout "$LIMIT_S" "$IRP" validate "$name.yaml" >out.txt 2>err.txt || rc=$?
    ms=$((($(date +%s%N) - start) / 1000000))
    if ((rc == 124)); then
        fail "$name: no answer within $LIMIT_S s"
        continue
    fi
    ok=1
    if ((rc != 1)); then
        fail "$name: exit status $rc, want 1"
        ok=0
    fi
    if [[ -s out.txt ]]; then
        fail "$name: wrote to stdout"
        ok=0
    fi
    if [[ $(wc -l <err.txt) -ne 1 ]] || ! grep -qxE "$want" err.txt; then
        fail "$name: want exactly one line matching: $want"
        awk 'NR <= 5 { print "    have: " $0 }' err.txt
        ok=0
    fi
    if ((ok)); then
        echo "ok   $name (${ms} ms): $(cat err.txt)"
        passed=$((passed + 1))
    fi
done

rc=0
start=$(date +%s%N)
timeout "$LIMIT_S" "$IRP" validate chain.yaml >out.txt 2>err.txt || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
if ((rc == 124)); then
    fail "chain: 50,000 steps reading steps.s0 not validated within $LIMIT_S s"
elif ((rc != 0)) || [[ -s err.txt || -s out.txt ]]; then
    fail "chain: exit status $rc, want 0 and no output"
    awk 'NR <= 5 { print "    have: " $0 }' err.txt
else
    echo "ok   chain (${ms} ms): 50,000 steps reading steps.s0, no diagnostics"
    passed=$((passed + 1))
fi

# ---- under valgrind ------------------------------------------------------

vg_skipped=0
if ! command -v valgrind >/dev/null 2>&1; then
    echo "SKIP valgrind checks: valgrind is not installed (apt-get install valgrind)"
    vg_skipped=1
elif ldd "$IRP" 2>/dev/null | grep -q libasan; then
    echo "SKIP valgrind checks: $IRP is built with AddressSanitizer"
    vg_skipped=1
else
    for c in "${cases[@]}"; do
        name=${c%%|*}
        rc=0
        timeout "$VALGRIND_LIMIT_S" valgrind -q --error-exitcode=99 --leak-check=full \
            --errors-for-leak-kinds=definite,indirect,possible --log-file=vg.txt \
            "$IRP" validate "$name.yaml" >/dev/null 2>&1 || rc=$?
        if ((rc == 1)); then
            echo "ok   $name under valgrind"
            passed=$((passed + 1))
        else
            fail "$name under valgrind: exit status $rc (99: valgrind found errors)"
            awk '/^==[0-9]+== +(Invalid|Conditional|Use of|[0-9,]+ bytes in|at |by )/ &&
                 n++ < 12 { print "    " $0 }' vg.txt
        fi
    done
fi

echo "$passed passed, $failed failed"
if ((failed)); then
    exit 1
fi
if ((vg_skipped)); then
    exit 77
fi
