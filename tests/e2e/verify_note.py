#!/usr/bin/env python3
"""End-to-end tests of `irp verify` and `irp note` (SPEC §2, §3).

verify: runs made by the real `irp run` must verify; then the run
directory is tampered with the way an intruder or an accident would (a
changed byte, a deleted line, two lines swapped, a cut tail, a line
appended with a wrong `prev`) and verify must name the first damaged line
and exit 1.  Evidence is checked on a real run's copies and on journals
written here, chained exactly as irp chains them, with files under
evidence/: a changed, deleted, resized or stray file, and paths that try
to leave the run directory.

note: what it appends (fields, times, operator), what it refuses, and that
it is safe beside a live run: notes written in a loop while `irp run` works
through many short steps all land exactly once and the chain, recomputed
here with hashlib, stays whole.

Every test runs in a fresh temporary directory and every subprocess has a
timeout, so a hang fails a test, never the suite.

Usage: verify_note.py [NAME-SUBSTRING...]   (runs only the matching tests)
Prints one line per test and a summary "N passed, M failed"; exits 1 when
any test failed.  A failed test's directory is kept and named.
Environment: IRP (the irp binary, required).
"""
import calendar
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

IRP = os.environ.get("IRP")
if not IRP:
    sys.exit("verify_note: set IRP to the path of the irp binary")
IRP = os.path.abspath(IRP)

TIMEOUT = 60                # seconds, any single irp invocation
ZERO_HASH = "0" * 64
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEAD_RE = re.compile(r"journal head ([0-9a-f]{64})")
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error: |"
                          r"SUMMARY: \w+Sanitizer")


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


class Result:
    def __init__(self, argv, rc, out, err):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err
        m = SANITIZER_RE.search(err)
        if m:
            raise Failure(f"sanitizer report (exit {rc}):\n{err[max(0, m.start() - 200):][:4000]}")
        check(rc in (0, 1, 2, 3, 4), f"irp crashed or failed internally: {self!r}")

    def __repr__(self):
        return (f"<{' '.join(map(str, self.argv[1:]))}: exit {self.rc}>\n"
                f"--- stdout\n{self.out}--- stderr\n{self.err}---")


# ---- journals -----------------------------------------------------------

def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def write_lines(path, lines, newline=True):
    with open(path, "wb") as f:
        f.write(b"\n".join(lines) + (b"\n" if newline and lines else b""))


def chain_lines(events, prev=ZERO_HASH, first_seq=1):
    """Journal lines for events, chained exactly as irp chains them:
    compact JSON, UTF-8 as is, seq first, prev last."""
    lines = []
    for n, ev in enumerate(events, first_seq):
        obj = {"seq": n}
        obj.update(ev)
        obj["prev"] = prev
        line = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        lines.append(line)
        prev = hashlib.sha256(line).hexdigest()
    return lines


def chain_whole(lines):
    """None when the chain is whole, else what is wrong (recomputed here)."""
    prev = ZERO_HASH
    for n, line in enumerate(lines, 1):
        obj = json.loads(line)
        if obj.get("seq") != n:
            return f"line {n}: seq {obj.get('seq')}"
        if obj.get("prev") != prev:
            return f"line {n}: prev does not chain"
        if list(obj)[0] != "seq" or list(obj)[-1] != "prev":
            return f"line {n}: key order"
        prev = hashlib.sha256(line).hexdigest()
    return None


def head_of(lines):
    return hashlib.sha256(lines[-1]).hexdigest() if lines else ZERO_HASH


def step_event(name, step, **fields):
    ev = {"ts": "2026-11-28T12:00:00.000Z", "wall": "2026-11-28T12:00:00.000Z",
          "event": name, "step": step, "instance": step, "attempt": 1}
    ev.update(fields)
    return ev


def run_event(name, **fields):
    ev = {"ts": "2026-11-28T12:00:00.000Z", "wall": "2026-11-28T12:00:00.000Z", "event": name}
    ev.update(fields)
    return ev


# ---- a test's directory ----------------------------------------------------

class Case:
    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"irp-vn-{name}-")
        self.runs = os.path.join(self.dir, "runs")

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, rel, data):
        path = self.path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        return path

    def irp(self, *args, env=None, timeout=TIMEOUT):
        argv = [IRP] + [os.fsencode(a) if isinstance(a, bytes) else str(a) for a in args]
        e = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        e.update(env or {})
        try:
            p = subprocess.run(argv, cwd=self.dir, env=e, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"irp did not end within {timeout} s: {argv}")
        return Result(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                      p.stderr.decode("utf-8", "replace"))

    def run(self, steps, *args):
        """A real run of a playbook of `run` steps; returns (run dir, head printed)."""
        pb = self.write("pb.yaml", f"irp: 1\nid: vn\ntitle: Verify and note\nsteps:\n{steps}")
        r = self.irp("run", pb, "--runs", self.runs, *args)
        eq(r.rc, 0, f"irp run exit status {r!r}")
        rundir = r.out.splitlines()[-1]
        check(os.path.isdir(rundir), f"no run directory on irp run's last line: {r!r}")
        heads = HEAD_RE.findall(r.out)
        check(heads, f"irp run printed no journal head: {r!r}")
        return rundir, heads[-1]

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


SMALL = """\
  - id: hello
    run: [echo, hello]
  - id: fan
    for_each: [a, b, c]
    run: [echo, "${{ item }}"]
  - id: last
    needs: [hello, fan]
    run: "echo done"
"""


def verify(c, rundir, *args):
    return c.irp("verify", rundir, *args)


def expect_damage(r, jpath, line, *words):
    """verify exited 1 and named `jpath:line:` with every word on that line."""
    eq(r.rc, 1, f"verify exit status {r!r}")
    where = f"{jpath}:{line}: error: "
    found = [ln for ln in r.err.splitlines() if ln.startswith(where)]
    check(found, f"no diagnostic at {where!r}: {r!r}")
    for w in words:
        check(any(w in ln for ln in found), f"{w!r} not in {found!r}")


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---- verify: the chain --------------------------------------------------------

@test
def verify_real_run_passes(c):
    rundir, head = c.run(SMALL)
    lines = read_lines(os.path.join(rundir, "journal.jsonl"))
    eq(head_of(lines), head, "head printed by irp run vs sha256 of the last line")
    r = verify(c, rundir)
    eq(r.rc, 0, f"exit status {r!r}")
    check(f"journal: {len(lines)} lines, chain whole; head {head}" in r.out,
          f"summary line with line count and head: {r!r}")
    check("evidence: none collected" in r.out, f"evidence summary: {r!r}")
    eq(r.err, "", "stderr of a clean verify")
    # The head written down at the end, its upper-case form, and an older
    # head (the journal may grow after one is recorded) all pass.
    for h, line in ((head, len(lines)), (head.upper(), len(lines)),
                    (hashlib.sha256(lines[0]).hexdigest(), 1)):
        r = verify(c, rundir + "/", "--head", h)
        eq(r.rc, 0, f"--head {h}: {r!r}")
        check(f": line {line} of {len(lines)}" in r.out, f"--head names line {line}: {r!r}")
    r = c.irp("verify", rundir, "--quiet")
    eq((r.rc, r.out, r.err), (0, "", ""), "--quiet on a whole run prints nothing")


@test
def verify_changed_byte(c):
    rundir, head = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    lines = read_lines(jpath)
    k = 3
    check(b"\"event\":\"" in lines[k - 1], "line 3 has an event")
    lines[k - 1] = lines[k - 1].replace(b"\"event\":\"", b"\"event\":\"x", 1)
    write_lines(jpath, lines)
    # Line 3 itself still parses; its changed hash breaks line 4's prev.
    r = verify(c, rundir)
    expect_damage(r, jpath, k + 1, "prev does not match the hash of line 3")
    check("journal: damaged at line 4" in r.out, f"summary names line 4: {r!r}")


@test
def verify_changed_last_line_needs_head(c):
    rundir, head = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    lines = read_lines(jpath)
    lines[-1] = lines[-1].replace(b"succeeded", b"failed", 1)
    write_lines(jpath, lines)
    r = verify(c, rundir)
    eq(r.rc, 0, f"a replaced last line chains; only a recorded head shows it {r!r}")
    r = verify(c, rundir, "--head", head)
    eq(r.rc, 1, f"--head of the original head {r!r}")
    check(f"head {head} is not the hash of any line" in r.err, f"message {r!r}")
    check("removed or replaced" in r.err, f"message says why {r!r}")


@test
def verify_deleted_line(c):
    rundir, _ = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    lines = read_lines(jpath)
    del lines[4]                      # line 5 goes; line 6 becomes line 5
    write_lines(jpath, lines)
    expect_damage(verify(c, rundir), jpath, 5, "seq is 6, expected 5")


@test
def verify_deleted_first_line(c):
    rundir, _ = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    write_lines(jpath, read_lines(jpath)[1:])
    expect_damage(verify(c, rundir), jpath, 1, "seq is 2, expected 1")


@test
def verify_swapped_lines(c):
    rundir, _ = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    lines = read_lines(jpath)
    lines[5], lines[6] = lines[6], lines[5]     # lines 6 and 7
    write_lines(jpath, lines)
    expect_damage(verify(c, rundir), jpath, 6, "seq is 7, expected 6")


@test
def verify_swapped_lines_renumbered(c):
    """A careful forger swaps two lines and fixes their seq: prev still
    gives it away."""
    rundir, _ = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    lines = read_lines(jpath)
    a, b = json.loads(lines[5]), json.loads(lines[6])
    a["seq"], b["seq"] = 7, 6
    dump = lambda o: json.dumps(o, separators=(",", ":"), ensure_ascii=False).encode()
    lines[5], lines[6] = dump(b), dump(a)
    write_lines(jpath, lines)
    expect_damage(verify(c, rundir), jpath, 6, "prev does not match the hash of line 5")


@test
def verify_truncated_tail(c):
    rundir, head = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    lines = read_lines(jpath)
    n = len(lines) - 2
    write_lines(jpath, lines[:n])
    r = verify(c, rundir)
    eq(r.rc, 0, f"a cut tail chains without a recorded head {r!r}")
    check(f"journal: {n} lines, chain whole" in r.out, f"line count {r!r}")
    r = verify(c, rundir, "--head", head)
    eq(r.rc, 1, f"--head of the head before the cut {r!r}")
    new_head = head_of(lines[:n])
    check(f"head {head} is not the hash of any line (the journal has {n} lines; "
          f"its head is {new_head}): lines were removed or replaced after" in r.err,
          f"message names the line count and the present head {r!r}")


@test
def verify_appended_line_wrong_prev(c):
    rundir, _ = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    lines = read_lines(jpath)
    n = len(lines)
    forged = chain_lines([run_event("note", text="all fine", operator="x")],
                         prev="ab" * 32, first_seq=n + 1)
    write_lines(jpath, lines + forged)
    expect_damage(verify(c, rundir), jpath, n + 1, f"prev does not match the hash of line {n}")


@test
def verify_bad_json_and_long_line(c):
    rundir, _ = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    lines = read_lines(jpath)
    write_lines(jpath, lines[:2] + [b"{not json"] + lines[3:])
    expect_damage(verify(c, rundir), jpath, 3, "not valid JSON")
    write_lines(jpath, lines[:2] + [b"[1,2]"] + lines[3:])
    expect_damage(verify(c, rundir), jpath, 3, "not a JSON object")
    # Longer than any line irp writes (16 MiB): refused in bounded memory.
    write_lines(jpath, lines[:2] + [b'{"seq":3,"x":"' + b"a" * (17 << 20) + b'"}'] + lines[3:])
    expect_damage(verify(c, rundir), jpath, 3, "longer than 16 MiB")


@test
def verify_partial_last_line_is_a_note(c):
    rundir, head = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    lines = read_lines(jpath)
    with open(jpath, "ab") as f:
        f.write(b'{"seq":%d,"ts":"2026-11-28T12:0' % (len(lines) + 1))
    r = verify(c, rundir, "--head", head)
    eq(r.rc, 0, f"a line cut off mid-write is not damage {r!r}")
    check(f"{jpath}:{len(lines) + 1}: note: " in r.err and "no newline" in r.err,
          f"the cut line is noted {r!r}")
    check(f"journal: {len(lines)} lines, chain whole; head {head}" in r.out,
          f"the cut line is not counted {r!r}")


@test
def verify_empty_journal(c):
    c.write("run/journal.jsonl", b"")
    r = verify(c, c.path("run"))
    eq(r.rc, 1, f"an empty journal lost its lines {r!r}")
    check("journal is empty" in r.err, f"message {r!r}")


@test
def verify_usage_and_exit_codes(c):
    rundir, _ = c.run(SMALL)
    r = c.irp("verify", "--help")
    eq(r.rc, 0, f"--help {r!r}")
    check(r.out.startswith("usage: irp verify RUN_DIR [--head HASH]"), f"usage text {r!r}")
    cases = [
        ((), "no run directory given"),
        ((c.path("missing"),), "no such run directory"),
        ((c.dir,), "no journal.jsonl"),
        ((c.path("pb.yaml"),), "not a run directory"),
        ((rundir, "--head"), "--head needs a value"),
        ((rundir, "--head", "abc"), "64 hex digits"),
        ((rundir, "--head", "g" * 64), "64 hex digits"),
        ((rundir, "--head", "0" * 65), "64 hex digits"),
        ((rundir, "--frobnicate"), "unknown option"),
        ((rundir, rundir), "one run directory at a time"),
    ]
    for args, words in cases:
        r = c.irp("verify", *args)
        eq(r.rc, 2, f"verify {args}: exit status {r!r}")
        check(words in r.err, f"verify {args}: {words!r} not in stderr {r!r}")


# ---- verify: evidence -----------------------------------------------------------

class EvidenceRun:
    """A run directory written here: a chained journal whose
    evidence.collected events describe files under evidence/."""

    FILES = [
        ("evidence/preserve-logs/auth.log", b"Nov 28 11:58:01 sshd[77]: Accepted key\n"),
        ("evidence/preserve-logs/3/auth.log", "ü Zugriff\n".encode()),
        # Larger than verify's read chunk, so hashing is streamed.
        ("evidence/memory/dump.bin", bytes(range(256)) * 1200),
        ("evidence/empty/nothing.txt", b""),
    ]

    def __init__(self, c, files=None, extra_events=()):
        self.c = c
        self.dir = c.path("run")
        self.jpath = os.path.join(self.dir, "journal.jsonl")
        os.makedirs(self.dir, exist_ok=True)
        events = [run_event("run.started", format=1, mode="run", operator="t")]
        self.line_of = {}
        for rel, data in (files if files is not None else self.FILES):
            c.write(os.path.join("run", rel), data)
            events.append(step_event("step.started", "preserve", action={"evidence": rel}))
            events.append(step_event(
                "evidence.collected", "preserve", item=os.path.basename(rel),
                source={"path": "/var/log/" + os.path.basename(rel)}, collector="t", path=rel,
                sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
            self.line_of[rel] = len(events)
        for ev in extra_events:
            events.append(ev)
            self.line_of.setdefault(ev.get("path"), len(events))
        events.append(run_event("run.finished", status="succeeded"))
        self.lines = chain_lines(events)
        write_lines(self.jpath, self.lines)

    def file(self, rel):
        return os.path.join(self.dir, rel)

    def verify(self, *args):
        return self.c.irp("verify", self.dir, *args)

    def damage(self, rel, *words):
        r = self.verify()
        expect_damage(r, self.jpath, self.line_of[rel], rel, *words)
        return r


def collected(rel, data=b"", **over):
    ev = step_event("evidence.collected", "preserve", item="x", source={"path": "/x"},
                    collector="t",
                    path=rel, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    ev.update(over)
    return ev


@test
def evidence_of_a_real_run(c):
    c.write("src/auth.log", "".join(f"Nov 28 sshd[{i}]: Accepted key\n" for i in range(3000)))
    c.write("src/a.conf", b"a\n")
    c.write("src/b.conf", b"b\n")
    rundir, _ = c.run(f"""\
  - id: grab
    evidence:
      collect:
        - path: {c.path("src/auth.log")}
  - id: conf
    for_each: [a, b]
    evidence:
      collect:
        - path: "{c.dir}/src/${{{{ item }}}}.conf"
""")
    jpath = os.path.join(rundir, "journal.jsonl")
    events = [json.loads(line) for line in read_lines(jpath)]
    got = {e["path"]: e["seq"] for e in events if e["event"] == "evidence.collected"}
    eq(sorted(got), ["evidence/conf/0/a.conf", "evidence/conf/1/b.conf",
                     "evidence/grab/auth.log"], "copies the run journaled")
    r = verify(c, rundir)
    eq(r.rc, 0, f"verify of a real evidence run {r!r}")
    check("evidence: 3 files, all match" in r.out, f"summary {r!r}")
    copy = os.path.join(rundir, "evidence/conf/1/b.conf")
    os.chmod(copy, 0o600)
    with open(copy, "wb") as f:
        f.write(b"B\n")
    expect_damage(verify(c, rundir), jpath, got["evidence/conf/1/b.conf"],
                  "evidence/conf/1/b.conf", "sha256")


@test
def evidence_all_match(c):
    e = EvidenceRun(c)
    r = e.verify("--head", head_of(e.lines))
    eq(r.rc, 0, f"exit status {r!r}")
    check("evidence: 4 files, all match" in r.out, f"evidence summary {r!r}")


@test
def evidence_changed_file(c):
    e = EvidenceRun(c)
    rel = "evidence/memory/dump.bin"
    with open(e.file(rel), "r+b") as f:
        f.seek(200000)
        f.write(b"\xff")
    r = e.damage(rel, "sha256")
    check("1 damaged or unreadable, 0 not in the journal" in r.out, f"summary {r!r}")


@test
def evidence_deleted_file(c):
    e = EvidenceRun(c)
    rel = "evidence/preserve-logs/3/auth.log"
    os.unlink(e.file(rel))
    e.damage(rel, "missing")


@test
def evidence_resized_file(c):
    e = EvidenceRun(c)
    rel = "evidence/preserve-logs/auth.log"
    with open(e.file(rel), "ab") as f:
        f.write(b"appended later\n")
    e.damage(rel, "bytes", str(len(EvidenceRun.FILES[0][1])))


@test
def evidence_stray_file(c):
    e = EvidenceRun(c)
    c.write("run/evidence/preserve-logs/planted.log", b"not collected by irp\n")
    c.write("run/evidence/new/deep/also.txt", b"x")
    os.makedirs(e.file("evidence/empty-dir"))    # an empty directory is no file
    r = e.verify()
    eq(r.rc, 1, f"exit status {r!r}")
    for rel in ("evidence/preserve-logs/planted.log", "evidence/new/deep/also.txt"):
        check(f"{e.dir}/{rel}: error: not in the journal" in r.err, f"{rel} named {r!r}")
    check("2 not in the journal" in r.out, f"summary {r!r}")
    check("empty-dir" not in r.err, f"an empty directory was reported {r!r}")


@test
def evidence_several_problems_all_named(c):
    e = EvidenceRun(c)
    os.unlink(e.file("evidence/preserve-logs/auth.log"))
    with open(e.file("evidence/empty/nothing.txt"), "wb") as f:
        f.write(b"!")
    r = e.verify()
    expect_damage(r, e.jpath, e.line_of["evidence/preserve-logs/auth.log"], "missing")
    expect_damage(r, e.jpath, e.line_of["evidence/empty/nothing.txt"], "bytes")


@test
def evidence_paths_outside_the_run(c):
    secret = c.write("outside.txt", b"outside the run\n")
    data = b"outside the run\n"
    bad = {
        "evidence/../../outside.txt": "'..'",
        secret: "absolute",
        "evidence/./x": "'.'",
        "logs/hello.1.log": "not under evidence/",
        "": "empty",
    }
    e = EvidenceRun(c, files=[], extra_events=[collected(p, data) for p in bad])
    r = e.verify()
    eq(r.rc, 1, f"exit status {r!r}")
    for p, words in bad.items():
        expect_damage(r, e.jpath, e.line_of[p], words, f"evidence '{p}': the path")


@test
def evidence_path_with_control_characters(c):
    rel = "evidence/a\x1b[31m\nb"
    e = EvidenceRun(c, files=[], extra_events=[collected(rel)])
    r = e.verify()
    expect_damage(r, e.jpath, 2, "evidence/a?[31m?b is missing")
    check("\x1b" not in r.err, f"an escape sequence from the journal reached the terminal {r!r}")


@test
def evidence_malformed_event(c):
    e = EvidenceRun(c, files=[], extra_events=[
        collected("evidence/a/x", sha256="zz"),
        collected("evidence/a/y", size=-1),
        {k: v for k, v in collected("evidence/a/z").items() if k != "path"},
    ])
    r = e.verify()
    expect_damage(r, e.jpath, 2, "sha256")
    expect_damage(r, e.jpath, 3, "size")
    expect_damage(r, e.jpath, 4, "path")


@test
def evidence_symlink_is_not_the_copy(c):
    data = b"same bytes\n"
    outside = c.write("elsewhere/copy.txt", data)
    e = EvidenceRun(c, files=[], extra_events=[collected("evidence/s/copy.txt", data),
                                               collected("evidence/d/copy.txt", data)])
    os.makedirs(e.file("evidence/s"))
    os.symlink(outside, e.file("evidence/s/copy.txt"))
    os.symlink(os.path.dirname(outside), e.file("evidence/d"))
    r = e.verify()
    expect_damage(r, e.jpath, 2, "evidence/s/copy.txt", "symbolic link")
    expect_damage(r, e.jpath, 3, "evidence/d/copy.txt", "symbolic link")


@test
def evidence_collected_twice_checks_the_last(c):
    first, second = b"attempt 1\n", b"attempt 2, longer\n"
    rel = "evidence/retry/out.txt"
    e = EvidenceRun(c, files=[], extra_events=[collected(rel, first), collected(rel, second)])
    c.write("run/" + rel, second)
    r = e.verify()
    eq(r.rc, 0, f"the last event describes the file as left {r!r}")
    check("evidence: 1 file, all match" in r.out, f"one file {r!r}")
    c.write("run/" + rel, first)
    expect_damage(e.verify(), e.jpath, 3, rel, "bytes")


@test
def evidence_with_damaged_chain(c):
    e = EvidenceRun(c)
    lines = list(e.lines)
    del lines[-2]
    write_lines(e.jpath, lines)
    r = e.verify()
    eq(r.rc, 1, f"exit status {r!r}")
    check("evidence: 3 files, all match" in r.out,
          f"evidence before the damage is still checked {r!r}")
    check("not checked" in r.err, f"the stray check is said to be skipped {r!r}")


# ---- note ---------------------------------------------------------------------

def note(c, rundir, *args, env=None):
    return c.irp("note", rundir, *args, env=env)


@test
def note_appends_event(c):
    rundir, head = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    before = read_lines(jpath)
    t0 = time.time()
    r = note(c, rundir, "Firewall logs show 10.0.0.7 → 203.0.113.5 at 09:14",
             "--at", "2026-11-28T09:15:00.5+01:00", "--operator", "alice")
    eq(r.rc, 0, f"exit status {r!r}")
    lines = read_lines(jpath)
    eq(lines[:-1], before, "lines before the note are untouched")
    eq(chain_whole(lines), None, "chain after the note")
    ev = json.loads(lines[-1])
    eq(list(ev), ["seq", "ts", "wall", "event", "text", "operator", "at", "prev"], "keys in order")
    eq((ev["seq"], ev["event"], ev["operator"], ev["prev"]),
       (len(before) + 1, "note", "alice", head), "seq, event, operator, prev")
    eq(ev["text"], "Firewall logs show 10.0.0.7 → 203.0.113.5 at 09:14", "text")
    check("→".encode() in lines[-1], "non-ASCII text is written as UTF-8, not escaped")
    eq(ev["at"], "2026-11-28T08:15:00.500Z", "--at in UTC with ms")
    for k in ("ts", "wall"):
        check(TS_RE.match(ev[k]), f"{k} {ev[k]!r} is UTC with ms")
        stamp = calendar.timegm(time.strptime(ev[k][:19], "%Y-%m-%dT%H:%M:%S"))
        check(abs(stamp - t0) < 30, f"{k} {ev[k]} is now")
    eq(r.out, f"note added as line {ev['seq']}; journal head {head_of(lines)}\n", "stdout")
    r = c.irp("verify", rundir)
    eq(r.rc, 0, f"verify after the note {r!r}")


@test
def note_operator_default_and_no_at(c):
    rundir, _ = c.run(SMALL)
    r = note(c, rundir, "-- a dash-led text is fine after --", env={"USER": "bob-on-call"})
    eq(r.rc, 2, f"a text starting with - before -- is an option {r!r}")
    r = note(c, rundir, "--", "- a dash-led text", env={"USER": "bob-on-call"})
    eq(r.rc, 0, f"exit status {r!r}")
    ev = json.loads(read_lines(os.path.join(rundir, "journal.jsonl"))[-1])
    eq(ev["operator"], "bob-on-call", "operator from $USER")
    eq(ev["text"], "- a dash-led text", "text after --")
    check("at" not in ev, f"no `at` without --at: {ev}")
    r = note(c, rundir, "multi\nline\ttext", "--quiet")
    eq((r.rc, r.out), (0, ""), f"--quiet {r!r}")
    ev = json.loads(read_lines(os.path.join(rundir, "journal.jsonl"))[-1])
    eq(ev["text"], "multi\nline\ttext", "control characters kept (escaped by JSON)")


@test
def note_refusals(c):
    rundir, _ = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    with open(jpath, "rb") as f:
        before = f.read()
    cases = [
        ((rundir, ""), "the text is empty"),
        ((rundir, b"caf\xe9 latin-1"), "not valid UTF-8"),
        ((rundir, b"\xed\xa0\x80 surrogate"), "not valid UTF-8"),
        ((rundir,), "no text given"),
        ((), "no run directory given"),
        ((rundir, "x", "--at", "2026-11-28 09:15"), "RFC 3339"),
        ((rundir, "x", "--at", "2026-11-28T09:15:00"), "RFC 3339"),
        ((rundir, "x", "--at"), "--at needs a value"),
        ((rundir, "x", "--operator", ""), "--operator"),
        ((rundir, "x", "--frob"), "unknown option"),
        ((rundir, "x", "y"), "one text at a time"),
        ((c.path("missing"), "x"), "no such run directory"),
        ((c.dir, "x"), "no journal.jsonl"),
    ]
    for args, words in cases:
        r = c.irp("note", *args)
        eq(r.rc, 2, f"note {args}: exit status {r!r}")
        check(words in r.err, f"note {args}: {words!r} not in stderr {r!r}")
    with open(jpath, "rb") as f:
        eq(f.read(), before, "the journal after refused notes")
    c.write("emptyrun/journal.jsonl", b"")
    r = c.irp("note", c.path("emptyrun"), "x")
    eq(r.rc, 1, f"note on an empty journal {r!r}")
    check("journal is empty" in r.err, f"message {r!r}")
    eq(os.path.getsize(c.path("emptyrun/journal.jsonl")), 0, "nothing added to it")
    r = c.irp("note", "--help")
    eq(r.rc, 0, f"--help {r!r}")
    check(r.out.startswith("usage: irp note RUN_DIR TEXT"), f"usage text {r!r}")


@test
def note_refuses_damaged_journal(c):
    rundir, _ = c.run(SMALL)
    jpath = os.path.join(rundir, "journal.jsonl")
    lines = read_lines(jpath)
    lines[2] = lines[2].replace(b"\"event\":\"", b"\"event\":\"x", 1)
    write_lines(jpath, lines)
    with open(jpath, "rb") as f:
        before = f.read()
    r = note(c, rundir, "should not land")
    eq(r.rc, 1, f"exit status {r!r}")
    check(f"{jpath}:4: error: prev does not match" in r.err, f"damage named {r!r}")
    with open(jpath, "rb") as f:
        eq(f.read(), before, "a damaged journal is left as it was")
    # A line cut off mid-write is refused too: `irp resume` repairs it.
    write_lines(jpath, read_lines(jpath)[:2])
    with open(jpath, "ab") as f:
        f.write(b'{"seq":3')
    r = note(c, rundir, "should not land")
    eq(r.rc, 1, f"cut-off last line: exit status {r!r}")
    check(f"{jpath}:3: error: cut off mid-write" in r.err, f"message {r!r}")


@test
def note_while_run_is_live(c):
    items = ", ".join(f"i{n}" for n in range(60))
    pb = c.write("pb.yaml", "irp: 1\nid: live\ntitle: Live\nsteps:\n"
                 f"  - id: slow\n    for_each: [{items}]\n    run: 'sleep 0.1'\n")
    out = open(c.path("run.out"), "wb")
    err = open(c.path("run.err"), "wb")
    p = subprocess.Popen([IRP, "run", pb, "--runs", c.runs, "--jobs", "3"], cwd=c.dir,
                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    out.close()
    err.close()
    try:
        deadline = time.monotonic() + TIMEOUT
        rundir = None
        while rundir is None and time.monotonic() < deadline:
            made = os.listdir(c.runs) if os.path.isdir(c.runs) else []
            if made and os.path.exists(os.path.join(c.runs, made[0], "journal.jsonl")):
                rundir = os.path.join(c.runs, made[0])
            else:
                time.sleep(0.01)
        check(rundir, "irp run made no run directory")
        sent = []
        while p.poll() is None and time.monotonic() < deadline:
            text = f"observation {len(sent)} ✓"
            r = note(c, rundir, text, "--operator", "carol")
            eq(r.rc, 0, f"note during the run {r!r}")
            sent.append(text)
        rc = p.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(c.path("run.err"), "rb") as f:
        run_err = f.read().decode("utf-8", "replace")
    check(not SANITIZER_RE.search(run_err), f"sanitizer report from irp run:\n{run_err[:4000]}")
    eq(rc, 0, f"irp run beside the notes; stderr:\n{run_err}")
    check(len(sent) >= 5, f"only {len(sent)} notes were written during the run")
    lines = read_lines(os.path.join(rundir, "journal.jsonl"))
    eq(chain_whole(lines), None, "chain with notes from another process")
    events = [json.loads(line) for line in lines]
    texts = [e["text"] for e in events if e["event"] == "note"]
    eq(sorted(texts), sorted(sent), "every note present exactly once")
    eq(len(set(texts)), len(texts), "no note twice")
    finished = [i for i, e in enumerate(events) if e["event"] == "run.finished"]
    notes_at = [i for i, e in enumerate(events) if e["event"] == "note"]
    check(finished and notes_at and notes_at[0] < finished[0],
          "notes interleave with the run's own lines")
    eq(len([e for e in events if e["event"] == "step.finished"]), 60, "every step finished")
    r = c.irp("verify", rundir)
    eq(r.rc, 0, f"verify after the live notes {r!r}")


# ---- harness ------------------------------------------------------------------------

def main(argv):
    selected = [t for t in TESTS if not argv[1:] or any(a in t.__name__ for a in argv[1:])]
    passed = failed = 0
    for t in selected:
        c = Case(t.__name__)
        t0 = time.monotonic()
        try:
            t(c)
        except Failure as e:
            failed += 1
            print(f"FAIL {t.__name__}: {e}\n     (kept {c.dir})", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {t.__name__}: {traceback.format_exc()}     (kept {c.dir})", flush=True)
        else:
            passed += 1
            print(f"PASS {t.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
            c.cleanup()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
