#!/usr/bin/env python3
"""Assemble the seed corpus of each fuzz target from the project's files.

    seeds.py OUT_DIR [TARGET...]      (default: every target)

writes OUT_DIR/TARGET/<name> for the targets playbook, expr, inputs,
journal, answers and scenario, and prints one line per target with the
number of seeds:

  playbook  tests/corpora/yaml-test-suite/*/in.yaml, every input of
            tests/corpora/pyyaml-legacy-error-cases, tests/diag/*.yaml,
            playbooks/**/*.yaml, tests/fuzz/seeds/playbook/*
  expr      every case of tests/expr/*.test as EXPRESSION NUL SCOPE-JSON
            (the form fuzz_expr.c reads), every value holding `${{` in the
            playbooks and diagnostics cases, tests/fuzz/seeds/expr/*
  inputs    tests/fuzz/seeds/inputs/*, and the yaml-test-suite inputs of
            at most 512 bytes
  journal   a chain written here by the journal's rules (SHA-256 `prev`,
            `seq` from 1) and damaged copies of it; when IRP names the irp
            binary, the journal of a quick `irp run` and damaged copies of
            it; tests/fuzz/seeds/journal/*
  answers   tests/fuzz/seeds/answers/*, and the yaml-test-suite inputs of
            at most 512 bytes
  scenario  playbooks/scenarios/*.yaml, tests/fuzz/seeds/scenario/*

Environment: IRP (optional, the irp binary), IRP_SOURCE_DIR (default: two
levels above this file).  Every subprocess has a timeout.  Exits 2 on bad
usage, 1 when a target ends up without seeds.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.environ.get("IRP_SOURCE_DIR") or os.path.join(HERE, "..", ".."))
TARGETS = ("playbook", "expr", "inputs", "journal", "answers", "scenario")
RUN_TIMEOUT = 60
ZERO_HASH = "0" * 64


class Seeds:
    """Writes the seeds of one target, naming each after where it came from."""

    def __init__(self, out, target):
        self.dir = os.path.join(out, target)
        os.makedirs(self.dir, exist_ok=True)
        self.count = 0

    def add(self, name, data):
        if isinstance(data, str):
            data = data.encode()
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "seed"
        path = os.path.join(self.dir, name)
        n = 1
        while os.path.exists(path):
            n += 1
            path = os.path.join(self.dir, "%s.%d" % (name, n))
        with open(path, "wb") as f:
            f.write(data)
        self.count += 1

    def add_file(self, path, prefix=""):
        with open(path, "rb") as f:
            self.add(prefix + os.path.relpath(path, SRC), f.read())


def files_under(rel, suffix=""):
    top = os.path.join(SRC, rel)
    found = []
    for root, _dirs, names in os.walk(top):
        for name in names:
            if name.endswith(suffix) and name not in ("README.md", "LICENSE"):
                found.append(os.path.join(root, name))
    return sorted(found)


def checked_in(seeds, target):
    for path in files_under(os.path.join("tests", "fuzz", "seeds", target)):
        seeds.add_file(path)


def yaml_test_suite():
    return [p for p in files_under(os.path.join("tests", "corpora", "yaml-test-suite"))
            if os.path.basename(p) == "in.yaml"]


def seed_playbook(seeds):
    for path in yaml_test_suite():
        seeds.add_file(path)
    for path in files_under(os.path.join("tests", "corpora", "pyyaml-legacy-error-cases")):
        seeds.add_file(path)
    for path in files_under(os.path.join("tests", "diag"), ".yaml"):
        seeds.add_file(path)
    for path in files_under("playbooks", ".yaml"):
        seeds.add_file(path)
    checked_in(seeds, "playbook")


def golden_cases(path):
    """(expression, scope) of every case of an expression golden file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    block = []
    for line in lines + [""]:
        if line.startswith("#"):
            continue
        if line.strip() == "":
            if block:
                if block[0] == "%%FAIL":
                    block = block[1:]
                if len(block) >= 2:
                    yield block[0], block[1]
            block = []
        else:
            block.append(line)


TEMPLATE_VALUE = re.compile(r"^\s*(?:-\s+)?(?:[A-Za-z_][\w-]*:\s+)?(.*\$\{\{.*)$")


def seed_expr(seeds):
    for path in files_under(os.path.join("tests", "expr"), ".test"):
        name = os.path.basename(path)
        for i, (expr, scope) in enumerate(golden_cases(path), 1):
            seeds.add("golden-%s-%d" % (name, i), expr.encode() + b"\0" + scope.encode())
    sources = files_under("playbooks", ".yaml") + files_under(os.path.join("tests", "diag"), ".yaml")
    for path in sources:
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                m = TEMPLATE_VALUE.match(line.rstrip("\n"))
                if not m:
                    continue
                value = m.group(1).strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                    value = value[1:-1]
                seeds.add("tpl-%s-%d" % (os.path.relpath(path, SRC), lineno), value)
    checked_in(seeds, "expr")


def seed_inputs(seeds):
    checked_in(seeds, "inputs")
    for path in yaml_test_suite():
        if os.path.getsize(path) <= 512:
            seeds.add_file(path)


def seed_answers(seeds):
    checked_in(seeds, "answers")
    for path in yaml_test_suite():
        if os.path.getsize(path) <= 512:
            seeds.add_file(path)


def seed_scenario(seeds):
    for path in files_under(os.path.join("playbooks", "scenarios"), ".yaml"):
        seeds.add_file(path)
    checked_in(seeds, "scenario")


def chain(events):
    """Journal lines as irp writes them: seq first, prev last, compact."""
    out, prev = [], ZERO_HASH
    for seq, ev in enumerate(events, 1):
        obj = {"seq": seq}
        obj.update(ev)
        obj["prev"] = prev
        line = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        prev = hashlib.sha256(line).hexdigest()
        out.append(line)
    return out


def written_journal():
    ts = "2026-11-28T12:00:%02d.000Z"
    events = [
        {"ts": ts % 0, "wall": ts % 0, "event": "run.started", "format": 1, "version": "0.1.0",
         "playbook": {"id": "fuzz", "sha256": ZERO_HASH}, "mode": "run", "operator": "alice",
         "host": "ws-017", "inputs": {"hosts": ["a", "b"], "token": "***"}},
        {"ts": ts % 1, "wall": ts % 1, "event": "step.expanded", "step": "scan",
         "items": ["a", "b"]},
        {"ts": ts % 2, "wall": ts % 2, "event": "step.started", "step": "scan",
         "instance": "scan[0]", "attempt": 1, "argv": ["echo", "a\u00e9\u0000"]},
        {"ts": ts % 3, "wall": ts % 3, "event": "step.finished", "step": "scan",
         "instance": "scan[0]", "attempt": 1, "status": "succeeded", "exit_code": 0,
         "duration_ms": 12.5, "outputs": {}},
        {"ts": ts % 4, "wall": ts % 4, "event": "note", "operator": "bob", "text": "seen"},
        {"ts": ts % 5, "wall": ts % 5, "event": "run.finished", "status": "succeeded",
         "counts": {"succeeded": 1}},
    ]
    return chain(events)


def damaged(lines):
    """The chain whole, and each way a reader must refuse or repair it."""
    whole = b"\n".join(lines) + b"\n"
    yield "whole", whole
    yield "cut-off", whole[:-9]
    yield "no-final-newline", whole[:-1]
    yield "first-only", lines[0] + b"\n"
    if len(lines) > 2:
        yield "line-missing", b"\n".join(lines[:1] + lines[2:]) + b"\n"
        yield "lines-swapped", b"\n".join([lines[1], lines[0]] + lines[2:]) + b"\n"
        flipped = lines[1].replace(b'"prev":"', b'"prev":"f', 1)[:len(lines[1])]
        yield "prev-flipped", b"\n".join([lines[0], flipped] + lines[2:]) + b"\n"
    yield "not-json", lines[0] + b"\nnot json\n"
    yield "empty-line", lines[0] + b"\n\n"
    yield "crlf", b"\r\n".join(lines) + b"\r\n"
    yield "duplicate-key", lines[0][:-1] + b',"seq":1}\n'


def irp_run_journal():
    """journal.jsonl of a quick `irp run`, or None without a working irp."""
    irp = os.environ.get("IRP")
    if not irp:
        return None
    playbook = "\n".join([
        "irp: 1",
        "id: fuzz-seed",
        "inputs:",
        "  hosts: { type: list, default: [a, b] }",
        "steps:",
        "  - id: hello",
        "    run: [echo, hello]",
        "  - id: each",
        "    for_each: ${{ inputs.hosts }}",
        "    run: [echo, '${{ item }}']",
        "  - id: fails",
        "    needs: []",
        "    on_failure: continue",
        "    run: [sh, -c, 'exit 3']",
        "finally:",
        "  - id: done",
        "    run: [echo, done]",
        ""])
    with tempfile.TemporaryDirectory(prefix="irp-fuzz-seed-") as tmp:
        path = os.path.join(tmp, "seed.yaml")
        with open(path, "w") as f:
            f.write(playbook)
        runs = os.path.join(tmp, "runs")
        try:
            subprocess.run([irp, "run", path, "--runs", runs, "--yes"], cwd=tmp,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=RUN_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            return None
        for root, _dirs, names in os.walk(runs):
            if "journal.jsonl" in names:
                with open(os.path.join(root, "journal.jsonl"), "rb") as f:
                    data = f.read()
                return [l for l in data.split(b"\n") if l] or None
    return None


def seed_journal(seeds):
    for name, data in damaged(written_journal()):
        seeds.add("written-" + name, data)
    real = irp_run_journal()
    if real:
        for name, data in damaged(real):
            seeds.add("irp-run-" + name, data)
    else:
        print("seeds: no journal from `irp run` (IRP unset or the run failed)", file=sys.stderr)
    checked_in(seeds, "journal")


def main(argv):
    if len(argv) < 2 or argv[1].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out, wanted = argv[1], argv[2:] or list(TARGETS)
    for t in wanted:
        if t not in TARGETS:
            print("seeds: unknown target '%s' (one of %s)" % (t, ", ".join(TARGETS)),
                  file=sys.stderr)
            return 2
    empty = 0
    for t in wanted:
        seeds = Seeds(out, t)
        globals()["seed_" + t](seeds)
        print("%s: %d seeds" % (t, seeds.count))
        empty += seeds.count == 0
    return 1 if empty else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
