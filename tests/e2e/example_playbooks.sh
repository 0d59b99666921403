#!/usr/bin/env bash
# Every example playbook validates with no error and no warning, and the
# binary answers --help and --version.
set -euo pipefail
: "${IRP:?path of the irp binary}" "${IRP_SOURCE_DIR:?}"
fail=0 pass=0
for f in "$IRP_SOURCE_DIR"/playbooks/*.yaml; do
  if out=$("$IRP" validate "$f" 2>&1) && [ -z "$out" ]; then
    pass=$((pass + 1))
  else
    echo "FAIL: $f"; echo "$out"; fail=$((fail + 1))
  fi
done
check() { # name, command...
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); else echo "FAIL: $name"; fail=$((fail + 1)); fi
}
check "irp --version prints the version" sh -c '"$0" --version | grep -q "^irp [0-9]"' "$IRP"
check "irp --help lists validate" sh -c '"$0" --help | grep -q validate' "$IRP"
check "irp validate --help" sh -c '"$0" validate --help | grep -q "usage: irp validate"' "$IRP"
check "no arguments is bad usage (2)" sh -c '"$0"; test $? -eq 2' "$IRP"
check "unknown command suggests" sh -c '"$0" valdate x 2>&1 | grep -q "did you mean .validate"' "$IRP"
check "unreadable file exits 2" sh -c '"$0" validate /nonexistent.yaml; test $? -eq 2' "$IRP"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
