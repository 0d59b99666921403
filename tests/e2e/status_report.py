#!/usr/bin/env python3
"""End-to-end tests of `irp status` and `irp report` (SPEC §2, §3, §4).

Runs made by the real `irp run` (run and wait steps, a for_each with a
failing sibling, a skipped dependent, retries, a timeout) are reported in
all three formats, and every report is compared with the journal itself,
read and re-hashed here: the JSON's states, attempts, counts and head; the
JUnit's counts after xmllint and xml.etree have parsed it; the Markdown's
TLP line, head, steps and one timeline row per journal line.  Titles full
of `|`, `<`, `&`, newlines and non-ASCII text must come out escaped, and
every Markdown table row must keep its header's number of cells.  Events
`irp run` does not write yet (prompts answered with notes, evidence,
notifications, notes, deadlines, resume) are rendered from journals
written here, chained exactly as irp chains them.  `irp status` is run on
finished runs, on a live one, and on damaged or missing run directories.

Every test runs in a fresh temporary directory and every subprocess has a
timeout, so a hang fails a test, never the suite.

Usage: status_report.py [NAME-SUBSTRING...]   (runs only the matching tests)
Prints one line per test and a summary "N passed, M failed"; exits 1 when
any test failed.  A failed test's directory is kept and named.
Environment: IRP (the irp binary, required).
"""
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET

IRP = os.environ.get("IRP")
if not IRP:
    sys.exit("status_report: set IRP to the path of the irp binary")
IRP = os.path.abspath(IRP)

TIMEOUT = 60                # seconds, any single subprocess
ZERO_HASH = "0" * 64
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error: |"
                          r"SUMMARY: \w+Sanitizer")
SCRUB = ("IRP_RUN_ID", "IRP_RUN_DIR", "IRP_STEP_ID", "IRP_INSTANCE", "IRP_ITEM",
         "IRP_INDEX", "IRP_ATTEMPT", "IRP_OUTPUT", "NO_COLOR")

# A title that would break a Markdown table or an XML document if written
# as is.
NASTY = "Pipes | and <b>tags</b> & ampersands\nsecond line: Zürich – 東京"
NASTY_YAML = json.dumps(NASTY, ensure_ascii=False)   # a YAML double-quoted scalar


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
            raise Failure(f"sanitizer report from {argv[1:3]}:\n"
                          f"{err[max(0, m.start() - 200):][:4000]}")
        if rc not in (0, 1, 2, 3, 4):
            raise Failure(f"irp crashed or failed internally: {self!r}")

    def __repr__(self):
        return (f"<{' '.join(self.argv[1:])}: exit {self.rc}>\n--- stdout\n{self.out[:6000]}"
                f"--- stderr\n{self.err[:3000]}---")


class Case:
    """A test's temporary directory and helpers to run irp inside it."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"irp-sr-{name}-")
        self.runs = os.path.join(self.dir, "runs")

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, name, data):
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(self.path(name), mode) as f:
            f.write(data)
        return self.path(name)

    def env(self):
        env = {k: v for k, v in os.environ.items() if k not in SCRUB}
        env["USER"] = "alice"
        return env

    def irp(self, *args, timeout=TIMEOUT):
        argv = [IRP] + list(args)
        try:
            p = subprocess.run(argv, cwd=self.dir, env=self.env(), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"irp did not end within {timeout} s: {argv}")
        return Result(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                      p.stderr.decode("utf-8", "replace"))

    def run(self, playbook, *args):
        pb = self.write("pb.yaml", playbook)
        r = self.irp("run", pb, "--runs", self.runs, *args)
        lines = r.out.splitlines()
        check(lines and os.path.isdir(lines[-1]), f"no run directory printed: {r!r}")
        return r, lines[-1]

    def spawn(self, playbook):
        pb = self.write("pb.yaml", playbook)
        out = open(self.path("irp.out"), "wb")
        err = open(self.path("irp.err"), "wb")
        p = subprocess.Popen([IRP, "run", pb, "--runs", self.runs], cwd=self.dir,
                             env=self.env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        out.close()
        err.close()
        return p

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- the journal, read independently ---------------------------------------

def journal(run_dir):
    """(events, head) of RUN_DIR/journal.jsonl, the chain checked here."""
    with open(os.path.join(run_dir, "journal.jsonl"), "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    prev, events = ZERO_HASH, []
    for n, line in enumerate(lines, 1):
        ev = json.loads(line)
        eq(ev["seq"], n, "seq")
        eq(ev["prev"], prev, f"prev of line {n}")
        prev = hashlib.sha256(line).hexdigest()
        events.append(ev)
    return events, prev


def write_journal(path, events):
    """Chain the events as irp does; returns the head."""
    prev, out = ZERO_HASH, []
    for n, ev in enumerate(events, 1):
        d = {"seq": n}
        d.update(ev)
        d["prev"] = prev
        line = json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode()
        prev = hashlib.sha256(line).hexdigest()
        out.append(line)
    with open(path, "wb") as f:
        f.write(b"\n".join(out) + b"\n")
    return prev


def inst_states(events):
    """{instance: end state} from the journal, as a reader must derive it."""
    states = {}
    for e in events:
        name, inst = e["event"], e.get("instance")
        if inst is None:
            continue
        if name == "step.finished":
            states[inst] = e["status"]
        elif name == "step.retrying":
            states[inst] = "waiting"
        elif name == "step.skipped":
            states[inst] = "skipped"
        elif name == "step.cancelled":
            states[inst] = "cancelled"
    return states


def step_states(events):
    """{step: end state} for steps ended as a whole (no instance)."""
    return {e["step"]: ("skipped" if e["event"] == "step.skipped" else
                        "cancelled" if e["event"] == "step.cancelled" else e["status"])
            for e in events if "step" in e and "instance" not in e and
            e["event"] in ("step.skipped", "step.cancelled", "step.finished")}


# ---- reading Markdown --------------------------------------------------------

def cells(row):
    """A table row's cells, split at pipes not escaped with a backslash."""
    parts = re.split(r"(?<!\\)\|", row)
    check(parts[0].strip() == "" and parts[-1].strip() == "", f"row not closed: {row!r}")
    return [p.strip() for p in parts[1:-1]]


def check_tables(md):
    """Every row of every table has as many cells as its header."""
    width = None
    for n, line in enumerate(md.split("\n"), 1):
        if not line.startswith("|"):
            width = None
            continue
        k = len(cells(line))
        if width is None:
            width = k
        check(k == width, f"line {n} of the report has {k} cells, its table {width}: {line!r}")


def section(md, title):
    m = re.search(r"^## " + re.escape(title) + r"\n\n(.*?)(?=\n## |\n---\n|\Z)", md, re.S | re.M)
    check(m, f"no section {title!r} in the report:\n{md[:3000]}")
    return m.group(1)


def table_rows(text):
    rows = [cells(line) for line in text.split("\n") if line.startswith("|")]
    return rows[2:]     # header and rule


def unescape_md(cell):
    cell = cell.replace("<br>", "\n").replace("&lt;", "<").replace("&gt;", ">")
    cell = re.sub(r"\\(.)", r"\1", cell)
    return cell.replace("&amp;", "&")


# ---- the playbook of a real run ------------------------------------------------

REAL_PLAYBOOK = f"""\
irp: 1
id: report-e2e
title: {NASTY_YAML}
tlp: red
steps:
  - id: fan
    title: {NASTY_YAML}
    phase: containment
    for_each: [alpha, beta, gamma]
    run: 'test "${{{{ item }}}}" != beta'
  - id: after-fan
    needs: [fan]
    run: [echo, never]
  - id: flaky
    needs: []
    run: 'n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; test $n -ge 1'
    retries: 2
    retry_delay: 100ms
  - id: slow
    needs: []
    run: [sleep, "5"]
    timeout: 300ms
  - id: pause
    needs: []
    wait: 200ms
finally:
  - id: wrap-up
    run: [echo, done]
"""


def real_run(c):
    r, d = c.run(REAL_PLAYBOOK)
    eq(r.rc, 1, f"exit status of the run: {r!r}")
    return d


def test_md_of_real_run(c):
    """report.md is `irp report` verbatim, with TLP, head, steps, escaped
    titles and one timeline row per journal line."""
    d = real_run(c)
    events, head = journal(d)
    r = c.irp("report", d)
    eq(r.rc, 0, f"irp report: {r!r}")
    with open(os.path.join(d, "report.md"), encoding="utf-8") as f:
        eq(r.out, f.read(), "report.md against `irp report RUN_DIR`")
    md = r.out
    eq(md.split("\n")[0], "**TLP:RED**", "first line")
    check(f"`{head}`" in md, "the journal head is not in the report")
    check(events[0]["run_id"] in md, "run id missing")
    check(events[0]["playbook"]["sha256"] in md, "playbook SHA-256 missing")
    check_tables(md)
    check("<" not in md.replace("<br>", ""), "a raw '<' in the Markdown")
    title = md.split("\n")[2]
    check(title.startswith("# "), f"no title heading: {title!r}")
    eq(unescape_md(title[2:]), NASTY.replace("\n", " "), "title heading, unescaped")
    # Outcome: two columns, the journal's end state of each step.
    outcome = dict(table_rows(section(md, "Outcome")))
    inst = inst_states(events)
    eq(outcome, {"fan": "failed", "after-fan": "skipped", "flaky": "succeeded",
                 "slow": "timed_out", "pause": "succeeded", "wrap-up": "succeeded"},
       "Outcome table")
    eq((inst["fan[alpha]"], inst["fan[beta]"], inst["fan[gamma]"]),
       ("succeeded", "failed", "succeeded"), "instance states in the journal")
    steps = table_rows(section(md, "Steps"))
    fan = [row for row in steps if row[0] == "`fan`"]
    check(fan, f"no row for fan in Steps: {steps}")
    eq(unescape_md(fan[0][1]), NASTY, "step title, unescaped")
    eq(fan[0][2], "containment", "phase")
    flaky = [row for row in steps if row[0] == "`flaky`"][0]
    eq(flaky[4], "2", "attempts of flaky")
    beta = [row for row in steps if "fan[beta]" in row[0]][0]
    eq((beta[3], beta[8]), ("failed", "exit 1"), "fan[beta] row")
    # Timeline: one row per line, in order, with T+ offsets.
    rows = table_rows(section(md, "Timeline"))
    eq(len(rows), len(events), "timeline rows")
    eq([row[3] for row in rows], [e["event"] for e in events], "timeline events")
    eq([row[0] for row in rows], [e["ts"] for e in events], "timeline times")
    eq(rows[0][1], "T+00:00:00.000", "first offset")
    check(all(re.fullmatch(r"T\+\d\d:\d\d:\d\d\.\d{3}", row[1]) for row in rows),
          "T+ offsets")
    check("retrying" in " ".join(r[3] for r in rows), "no step.retrying row")


def test_json_of_real_run(c):
    """The JSON report agrees with the journal: states, attempts, counts,
    head and every event."""
    d = real_run(c)
    events, head = journal(d)
    r = c.irp("report", d, "--format", "json")
    eq(r.rc, 0, f"irp report --format json: {r!r}")
    rep = json.loads(r.out)
    eq(rep["head"], head, "head")
    eq(rep["lines"], len(events), "lines")
    eq(rep["events"], events, "events")
    eq(rep["tlp"], "red", "tlp")
    eq(rep["tlp_label"], "TLP:RED", "tlp_label")
    eq(rep["playbook"], events[0]["playbook"], "playbook")
    eq(rep["playbook"]["title"], NASTY, "title, as written")
    fin = [e for e in events if e["event"] == "run.finished"][-1]
    eq(rep["run"]["status"], fin["status"], "run status")
    eq(rep["run"]["counts"], fin["steps"], "counts")
    eq(rep["run"]["id"], events[0]["run_id"], "run id")
    counts = {}
    for s in rep["steps"]:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    eq(counts, fin["steps"], "step states against run.finished's counts")
    inst = inst_states(events)
    whole = step_states(events)
    seen = set()
    for s in rep["steps"]:
        if s["id"] in whole:
            eq(s["status"], whole[s["id"]], f"status of {s['id']}")
        for i in s["instances"]:
            seen.add(i["id"])
            eq(i["status"], inst[i["id"]], f"status of {i['id']}")
            starts = [e for e in events if e["event"] == "step.started" and
                      e.get("instance") == i["id"]]
            eq(len(i["attempts"]), len(starts), f"attempts of {i['id']}")
            for a, e in zip(i["attempts"], starts):
                eq(a["started_at"], e["ts"], f"start of {i['id']} attempt {a['attempt']}")
                eq(a["action"], e["action"], f"action of {i['id']}")
    eq(seen, set(inst), "instances")
    fan = [s for s in rep["steps"] if s["id"] == "fan"][0]
    eq(fan["title"], NASTY, "step title")
    eq([i["item"] for i in fan["instances"]], ["alpha", "beta", "gamma"], "items")
    slow = [s for s in rep["steps"] if s["id"] == "slow"][0]
    eq(slow["instances"][0]["attempts"][0]["status"], "timed_out", "slow's attempt")
    check(slow["instances"][0]["attempts"][0]["signal"], "no signal for the killed attempt")
    wrap = [s for s in rep["steps"] if s["id"] == "wrap-up"][0]
    eq(wrap["finally"], True, "finally flag")


def test_junit_of_real_run(c):
    """JUnit: valid XML, one testcase per instance, counts that add up,
    the TLP and the nasty title escaped and intact after parsing."""
    d = real_run(c)
    events, head = journal(d)
    out = c.path("report.xml")
    r = c.irp("report", d, "--format", "junit", "-o", out)
    eq(r.rc, 0, f"irp report --format junit: {r!r}")
    eq(r.out, "", "stdout with -o")
    eq(oct(stat.S_IMODE(os.stat(out).st_mode)), oct(0o600), "mode of the -o file")
    try:
        x = subprocess.run(["xmllint", "--noout", out], capture_output=True, timeout=TIMEOUT)
    except FileNotFoundError:
        raise Failure("xmllint is not installed (package libxml2-utils)")
    eq(x.returncode, 0, f"xmllint: {x.stderr.decode(errors='replace')}")
    suite = ET.parse(out).getroot()
    eq(suite.tag, "testsuite", "root element")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    eq(props["tlp"], "TLP:RED", "tlp property")
    eq(props["journal_head"], head, "head property")
    eq(props["playbook_title"], NASTY, "title property after parsing")
    cases = suite.findall("testcase")
    inst = inst_states(events)
    whole = step_states(events)
    expected = dict(inst)
    for s, st in whole.items():
        if not any(i.split("[")[0] == s for i in inst):
            expected[s] = st
    eq(sorted(tc.get("name") for tc in cases), sorted(expected), "testcase names")
    check(all(tc.get("classname") == "report-e2e" for tc in cases), "classname")
    fails = {tc.get("name") for tc in cases if tc.find("failure") is not None}
    skips = {tc.get("name") for tc in cases if tc.find("skipped") is not None}
    eq(fails, {k for k, v in expected.items() if v in ("failed", "timed_out")}, "failures")
    eq(skips, {k for k, v in expected.items() if v in ("skipped", "cancelled")}, "skipped")
    eq(int(suite.get("tests")), len(cases), "tests=")
    eq(int(suite.get("failures")), len(fails), "failures=")
    eq(int(suite.get("skipped")), len(skips), "skipped=")
    eq(suite.get("name"), events[0]["run_id"], "suite name")
    slow = [tc for tc in cases if tc.get("name") == "slow"][0]
    eq(slow.find("failure").get("type"), "timed_out", "slow's failure type")
    check(float(slow.get("time")) >= 0.3, f"slow's time {slow.get('time')}")
    skipped = [tc for tc in cases if tc.get("name") == "after-fan"][0]
    check("needs fan" in skipped.find("skipped").get("message"), "skip reason")


def test_status_finished_run(c):
    """status: TLP first, every step and instance with its state and
    attempts, head and line count; exit 0; not live."""
    d = real_run(c)
    events, head = journal(d)
    r = c.irp("status", d)
    eq(r.rc, 0, f"irp status: {r!r}")
    lines = r.out.split("\n")
    check(lines[0].startswith("TLP:RED  Pipes"), f"first line: {lines[0]!r}")
    check("\x1b" not in r.out, "escape character on the terminal")
    check(re.search(r"^status\s+failed$", r.out, re.M), f"run status: {r.out}")
    check(f"{len(events)} lines, head {head}" in r.out, f"journal line: {r.out}")
    states = dict(inst_states(events))
    states.update(step_states(events))
    states.update({"fan": "failed", "flaky": "succeeded", "slow": "timed_out",
                   "pause": "succeeded", "wrap-up": "succeeded"})
    for ident, st in states.items():
        m = re.search(r"^\s*" + re.escape(ident) + r"\s+(\S+)\s+(\d*)", r.out, re.M)
        check(m, f"{ident} not in status:\n{r.out}")
        eq(m.group(1), st, f"state of {ident} in status")
    m = re.search(r"^flaky\s+succeeded\s+(\d+)", r.out, re.M)
    eq(m.group(1), "2", "attempts of flaky")


def test_status_live_run(c):
    """While a run sleeps, status shows it running and live; afterwards
    finished and not live.  The report of a live run works too."""
    pb = """\
irp: 1
id: live
title: Live run
steps:
  - id: quick
    run: [true]
  - id: sleeper
    run: [sleep, "3"]
"""
    p = c.spawn(pb)
    try:
        end = time.monotonic() + 20
        d = None
        while time.monotonic() < end:
            runs = os.listdir(c.runs) if os.path.isdir(c.runs) else []
            if runs:
                d = os.path.join(c.runs, runs[0])
                try:
                    evs, _ = journal(d)
                except (FileNotFoundError, json.JSONDecodeError):
                    evs = []
                if any(e["event"] == "step.started" and e.get("step") == "sleeper" for e in evs):
                    break
            time.sleep(0.02)
        else:
            raise Failure("sleeper never started")
        r = c.irp("status", d)
        eq(r.rc, 0, f"status of a live run: {r!r}")
        check(p.poll() is None, "the run ended before status was taken: sleep longer")
        check(re.search(r"^status\s+running: live", r.out, re.M), f"not live:\n{r.out}")
        check(re.search(r"^sleeper\s+running\s+1\s", r.out, re.M), f"sleeper:\n{r.out}")
        check(re.search(r"^quick\s+succeeded\s+1\s", r.out, re.M), f"quick:\n{r.out}")
        rep = c.irp("report", d, "--format", "json")
        eq(rep.rc, 0, f"report of a live run: {rep!r}")
        js = json.loads(rep.out)
        eq(js["run"]["status"], None, "run status while live")
        eq([s["status"] for s in js["steps"]], ["succeeded", "running"], "step states while live")
        p.wait(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eq(p.returncode, 0, "exit status of the run")
    r = c.irp("status", d)
    eq(r.rc, 0, f"status after: {r!r}")
    check(re.search(r"^status\s+succeeded$", r.out, re.M), f"status after the run:\n{r.out}")
    check("live" not in r.out.split("\n")[3], "still live after the run")
    check(re.search(r"^sleeper\s+succeeded\s+1\s", r.out, re.M), f"sleeper after:\n{r.out}")


# ---- journals written here -----------------------------------------------------

T0 = "2026-11-28T09:00:00.000Z"


def ts(minutes, seconds=0, ms=0):
    total = minutes * 60 + seconds
    return f"2026-11-28T{9 + total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}.{ms:03d}Z"


def ev(name, when, **fields):
    e = {"ts": when, "wall": when, "event": name}
    e.update(fields)
    return e


EVIDENCE_SHA = hashlib.sha256(b"auth log\n").hexdigest()


def rich_events(finished=True):
    """A run with every event the report renders, as irp writes them."""
    evs = [
        ev("run.started", T0, format=1, irp_version="0.1.0", run_id="20261128T090000Z-rich-0a1b",
           mode="run", playbook={"id": "rich", "title": NASTY, "tlp": "amber+strict",
                                 "sha256": "ab" * 32},
           operator="alice", host="ir-laptop", inputs={"incident_id": "INC-2026-7", "hosts": ["a", "b"]},
           detected_at="2026-11-28T08:30:00.000Z", jobs=8,
           deadlines=[{"id": "nis2", "title": "Early warning | CSIRT", "due": "2026-11-29T08:30:00.000Z",
                       "from": "detected", "within_ms": 86400000},
                      {"id": "gdpr", "title": "DPA <72h>", "due": "2026-12-01T08:30:00.000Z",
                       "from": "detected", "within_ms": 259200000},
                      {"id": "police", "title": "Police", "due": "2026-11-28T09:30:00.000Z",
                       "from": "start", "within_ms": 1800000},
                      {"id": "after-iso", "title": "After isolation", "due": None,
                       "from": "never-runs", "within_ms": 3600000}]),
        ev("step.prompted", ts(0, 1), step="isolate", prompt="Cut hosts | off?\nReally?",
           choices=["yes", "no"]),
        ev("step.answered", ts(0, 13, 500), step="isolate", answer="yes", operator="bob",
           via="answers-file", response_ms=12500, note="Approved by the CISO & the DPO"),
        ev("step.started", ts(0, 14), step="isolate", instance="isolate", attempt=1,
           action={"argv": ["/usr/sbin/edr-isolate", "--host", "a"], "env": {}, "cwd": "/"}),
        ev("step.finished", ts(0, 20), step="isolate", instance="isolate", attempt=1,
           status="succeeded", exit_code=0, duration_ms=6000, outputs={}),
        ev("step.started", ts(1), step="preserve", instance="preserve", attempt=1, action={}),
        ev("evidence.collected", ts(1, 2), step="preserve", instance="preserve", attempt=1,
           item="auth.log", source={"path": "/var/log/auth.log"},
           path="evidence/preserve/auth.log", size=9, sha256=EVIDENCE_SHA,
           mtime="2026-11-28T08:59:00.000Z", collector="alice"),
        ev("evidence.collected", ts(1, 3), step="preserve", instance="preserve", attempt=1,
           item="journal.export", source={"argv": ["journalctl", "--since", "-2d"]},
           path="evidence/preserve/journal.export", size=1234, sha256="cd" * 32,
           collector="alice"),
        ev("step.finished", ts(1, 4), step="preserve", instance="preserve", attempt=1,
           status="succeeded", duration_ms=4000, outputs={}),
        ev("step.started", ts(2), step="notify-csirt", instance="notify-csirt", attempt=1,
           action={}),
        ev("notify.sent", ts(2, 1), step="notify-csirt", instance="notify-csirt", attempt=1,
           via="webhook", target="https://csirt.example/api/reports",
           idempotency_key="idem-1234", status=202, response='{"ok":true}', ok=True),
        ev("step.finished", ts(2, 1), step="notify-csirt", instance="notify-csirt", attempt=1,
           status="succeeded", duration_ms=1000, outputs={}),
        ev("deadline.met", ts(2, 1), deadline="nis2", title="Early warning | CSIRT",
           due="2026-11-29T08:30:00.000Z", margin_ms=84479000),
        ev("note", ts(3), text="Attacker | seen on\nVPN <gw-2>", operator="carol",
           at="2026-11-28T08:15:00.000Z"),
        ev("deadline.warning", ts(20), deadline="police", title="Police",
           due="2026-11-28T09:30:00.000Z"),
        ev("deadline.missed", ts(30), deadline="police", title="Police",
           due="2026-11-28T09:30:00.000Z"),
    ]
    if finished:
        evs += [
            ev("deadline.open", ts(31), deadline="gdpr", title="DPA <72h>",
               due="2026-12-01T08:30:00.000Z"),
            ev("run.finished", ts(31), status="succeeded",
               steps={"succeeded": 3}),
        ]
    return evs


def rich_dir(c, finished=True):
    d = c.path("run")
    os.mkdir(d, 0o700)
    head = write_journal(os.path.join(d, "journal.jsonl"), rich_events(finished))
    return d, head


def test_hand_written_journal_md(c):
    """Decisions, notes, evidence, notifications and deadlines render as
    sections, escaped, with margins and response times."""
    d, head = rich_dir(c)
    r = c.irp("report", d)
    eq(r.rc, 0, f"irp report: {r!r}")
    md = r.out
    eq(md.split("\n")[0], "**TLP:AMBER+STRICT**", "TLP line")
    check_tables(md)
    check("<" not in md.replace("<br>", ""), "a raw '<' in the Markdown")
    check(f"`{head}`" in md, "head")
    ops = section(md, "Operators")
    for who, what in (("alice", "started the run"), ("bob", "answered 1 question"),
                      ("carol", "added 1 note")):
        check(re.search(rf"^- {who}: .*{what}", ops, re.M), f"operator {who}: {ops}")
    inputs = dict(table_rows(section(md, "Inputs")))
    eq(inputs, {"`incident_id`": "INC-2026-7", "`hosts`": '\\["a","b"\\]'}, "inputs")
    dec = table_rows(section(md, "Decisions"))
    eq(len(dec), 1, "decisions")
    eq(unescape_md(dec[0][2]), "Cut hosts | off?\nReally?", "question")
    eq(dec[0][3:8], ["yes", "bob", "answers-file", "12s500ms", "Approved by the CISO &amp; the DPO"],
       "answer row")
    notes = table_rows(section(md, "Notes"))
    eq(notes, [[ts(3), "2026-11-28T08:15:00.000Z", "carol",
                "Attacker \\| seen on<br>VPN &lt;gw-2&gt;"]], "notes")
    evd = table_rows(section(md, "Evidence (chain of custody)"))
    eq(len(evd), 2, "evidence rows")
    eq(evd[0][:4], ["auth.log", "/var/log/auth.log", f"`{EVIDENCE_SHA}`", "9"], "evidence 1")
    eq(evd[0][5:], [ts(1, 2), "alice", "`preserve`", "`evidence/preserve/auth.log`"],
       "evidence 1 custody")
    eq(evd[1][1], "output of: journalctl --since -2d", "evidence 2 source")
    nt = table_rows(section(md, "Notifications"))
    eq(len(nt), 1, "notification rows")
    eq(nt[0][3:7], ["webhook", "https://csirt.example/api/reports", "ok (status 202)",
                    "`idem-1234`"], "notification")
    dl = {row[0]: row for row in table_rows(section(md, "Deadlines"))}
    eq(dl["`nis2`"][4:], ["met", "+23h27m59s before due"], "nis2")
    eq(unescape_md(dl["`nis2`"][1]), "Early warning | CSIRT", "nis2 title")
    eq(dl["`police`"][4], "missed", "police")
    eq(dl["`gdpr`"][4:], ["open", "+2d22h59m left"], "gdpr")
    eq(dl["`after-iso`"][3:], ["", "not_started", ""], "after-iso (its step never ended)")
    rows = table_rows(section(md, "Timeline"))
    eq(len(rows), len(rich_events()), "timeline rows")
    note_row = [row for row in rows if row[3] == "note"][0]
    eq(note_row[4], "carol", "note's author in the timeline")
    check("happened at 2026-11-28T08:15:00.000Z" in note_row[5], f"note row {note_row}")


def test_hand_written_journal_json(c):
    """The JSON report carries the same facts for tools."""
    d, head = rich_dir(c)
    r = c.irp("report", d, "--format", "json")
    eq(r.rc, 0, f"irp report --format json: {r!r}")
    js = json.loads(r.out)
    evs = rich_events()
    eq(js["head"], head, "head")
    eq(js["tlp"], "amber+strict", "tlp")
    got = [{k: v for k, v in e.items() if k not in ("seq", "prev")} for e in js["evidence"]]
    eq(got, [e for e in evs if e["event"] == "evidence.collected"], "evidence")
    eq([e["seq"] for e in js["evidence"]], [7, 8], "evidence lines")
    eq([e["idempotency_key"] for e in js["notifications"]], ["idem-1234"], "notifications")
    eq([n["text"] for n in js["notes"]], ["Attacker | seen on\nVPN <gw-2>"], "notes")
    eq(js["decisions"][0]["status"], "answered", "decision")
    eq(js["decisions"][0]["response_ms"], 12500, "response_ms")
    eq(js["decisions"][0]["note"], "Approved by the CISO & the DPO", "answer's note")
    dl = {x["id"]: x for x in js["deadlines"]}
    eq({k: v["status"] for k, v in dl.items()},
       {"nis2": "met", "gdpr": "open", "police": "missed", "after-iso": "not_started"},
       "deadline states")
    eq(dl["nis2"]["margin_ms"], 84479000, "nis2 margin")
    eq(dl["police"]["warned_at"], ts(20), "police warned")
    eq(sorted(o["name"] for o in js["operators"]), ["alice", "bob", "carol"], "operators")
    eq([s["id"] for s in js["steps"]], ["isolate", "preserve", "notify-csirt"], "steps")
    eq(js["steps"][0]["title"], "isolate", "title without playbook.yaml")


def test_hand_written_journal_status(c):
    """status on an unfinished hand-written run: open prompt, deadlines
    with due time and state, no lock file."""
    d, head = rich_dir(c, finished=False)
    evs = rich_events(finished=False)
    evs.append(ev("step.prompted", ts(40), step="brief", prompt="Brief the Registrar",
                  choices=["done", "failed", "skip"]))
    head = write_journal(os.path.join(d, "journal.jsonl"), evs)
    r = c.irp("status", d)
    eq(r.rc, 0, f"irp status: {r!r}")
    check(r.out.startswith("TLP:AMBER+STRICT  "), f"TLP line: {r.out[:80]!r}")
    check(re.search(r"^status\s+running: no run\.finished", r.out, re.M), f"status:\n{r.out}")
    check(f"{len(evs)} lines, head {head}" in r.out, "journal line")
    check(re.search(r"^OPEN PROMPTS\n  brief: Brief the Registrar \[done, failed, skip\]"
                    r"  asked " + re.escape(ts(40)), r.out, re.M), f"open prompt:\n{r.out}")
    check(re.search(r"^brief\s+awaiting_input", r.out, re.M), f"brief's state:\n{r.out}")
    check(re.search(r"^nis2\s+met\s+2026-11-29T08:30:00\.000Z\s+23h27m59s margin", r.out, re.M),
          f"nis2:\n{r.out}")
    check(re.search(r"^police\s+missed\s+2026-11-28T09:30:00\.000Z", r.out, re.M),
          f"police:\n{r.out}")
    check(re.search(r"^gdpr\s+running\s+2026-12-01T08:30:00\.000Z\s+-?\d", r.out, re.M),
          f"gdpr:\n{r.out}")
    # A lock no process holds: the run stopped without finishing.
    c.write("run/lock", "")
    r = c.irp("status", d)
    check(re.search(r"^status\s+stopped without finishing", r.out, re.M), f"no holder:\n{r.out}")


def test_resumed_and_interrupted(c):
    """run.interrupted and run.resumed: an instance cut off is shown
    interrupted, and the run is unfinished until a later run.finished."""
    evs = [
        ev("run.started", T0, format=1, run_id="r1", mode="run",
           playbook={"id": "res", "title": "Resume", "tlp": "green", "sha256": "00" * 32},
           operator="alice", host="h", inputs={}, detected_at=T0, jobs=8),
        ev("step.started", ts(0, 1), step="a", instance="a", attempt=1, action={}),
        ev("step.started", ts(0, 1), step="b", instance="b", attempt=1, action={}),
        ev("run.interrupted", ts(0, 2), how="abort"),
        ev("run.finished", ts(0, 3), status="interrupted", steps={"running": 2}),
        ev("run.resumed", ts(5), operator="dave", dropped_bytes=17, interrupted=["a"],
           rerun=["b"]),
    ]
    d = c.path("run")
    os.mkdir(d)
    write_journal(os.path.join(d, "journal.jsonl"), evs)
    js = json.loads(c.irp("report", d, "--format", "json").out)
    eq(js["run"]["status"], None, "status after run.resumed")
    eq({s["id"]: s["status"] for s in js["steps"]}, {"a": "interrupted", "b": "waiting"},
       "states after resume")
    x = c.irp("report", d, "--format", "junit")
    suite = ET.fromstring(x.out)
    eq(suite.get("errors"), "1", "interrupted counts as an error")
    md = c.irp("report", d).out
    check_tables(md)
    rows = table_rows(section(md, "Timeline"))
    resumed = [row for row in rows if row[3] == "run.resumed"][0]
    eq(resumed[4], "dave", "who resumed")
    check("interrupted: a; run again: b" in resumed[5], f"resumed row {resumed}")
    check("- dave: resumed the run" in md, "operator dave")


def test_manual_prompt_in_attempt(c):
    """A question asked inside an attempt (a manual step): awaiting input
    while open, running once answered, answered in the decisions."""
    evs = [
        ev("run.started", T0, run_id="m1", mode="run",
           playbook={"id": "man", "title": "Manual", "tlp": "clear", "sha256": "00" * 32},
           operator="alice", host="h", inputs={}, detected_at=T0, jobs=8),
        ev("step.started", ts(0, 1), step="brief", instance="brief", attempt=1,
           action={"manual": "Brief the Registrar"}),
        ev("step.prompted", ts(0, 1), step="brief", instance="brief",
           prompt="Brief the Registrar", choices=["done", "failed", "skip"]),
    ]
    d = c.path("run")
    os.mkdir(d)
    write_journal(os.path.join(d, "journal.jsonl"), evs)
    r = c.irp("status", d)
    eq(r.rc, 0, f"status: {r!r}")
    check(r.out.startswith("TLP:CLEAR  Manual"), f"TLP line: {r.out[:60]!r}")
    check(re.search(r"^brief\s+awaiting_input\s+1\s", r.out, re.M), f"open:\n{r.out}")
    check("OPEN PROMPTS\n  brief: Brief the Registrar [done, failed, skip]" in r.out,
          f"open prompt:\n{r.out}")
    evs.append(ev("step.answered", ts(2), step="brief", instance="brief", answer="done",
                  operator="erin", via="irp-answer", response_ms=119000,
                  note="by phone"))
    write_journal(os.path.join(d, "journal.jsonl"), evs)
    r = c.irp("status", d)
    check(re.search(r"^brief\s+running\s+1\s", r.out, re.M), f"answered:\n{r.out}")
    check("OPEN PROMPTS" not in r.out, f"no prompt is open any more:\n{r.out}")
    js = json.loads(c.irp("report", d, "--format", "json").out)
    dec = js["decisions"][0]
    eq((dec["instance"], dec["answer"], dec["operator"], dec["via"], dec["response_ms"],
        dec["note"]), ("brief", "done", "erin", "irp-answer", 119000, "by phone"), "decision")
    md = c.irp("report", d).out
    row = table_rows(section(md, "Decisions"))[0]
    eq(row[3:], ["done", "erin", "irp-answer", "1m59s", "by phone"], "decision row")


def test_odd_fields(c):
    """A well-chained journal whose fields have unexpected types or
    values: every format is still made, valid, and nothing crashes."""
    evs = [
        ev("run.started", T0, run_id=7, mode=None, playbook="not-an-object", operator=["x"],
           inputs=[1, 2], detected_at="yesterday", deadlines="none"),
        ev("run.started", T0, run_id="second", deadlines=[{"id": 5}, {"id": "d", "due": 3}]),
        ev("step.expanded", ts(0, 1), step="s", items="not-a-list"),
        ev("step.expanded", ts(0, 1), step="t", items=[{"a": 1}, None, "x", "x"]),
        ev("step.started", ts(0, 2), step="t", instance="t[1]", attempt="one", action=5),
        ev("step.started", ts(0, 2), step="t", instance="t[9]", attempt=10 ** 15,
           action={"argv": "no-list"}),
        ev("step.finished", ts(0, 3), step="t", instance="t[1]", status="exploded",
           exit_code="7", outputs=[]),
        ev("step.finished", ts(0, 3), step=5, instance="t[1]"),
        ev("step.answered", ts(0, 4), step="u", answer=None, operator=None),
        ev("step.prompted", ts(0, 4), step="u", prompt=None, choices="yes"),
        ev("evidence.collected", "not a time", step="t", source=3, size="big", sha256=None),
        ev("notify.sent", ts(0, 5), step="t", target={"a": 1}, status={"x": 1}, ok="yes"),
        ev("note", ts(0, 6), text=None, at=17),
        ev("deadline.met", ts(0, 7), deadline=None),
        ev("deadline.met", ts(0, 7), deadline="d", margin_ms="lots"),
        ev("run.resumed", ts(0, 8), interrupted="t[1]", rerun=[None, 3, "t[0]", "zz[1]"]),
        ev("unknown.event", ts(0, 9), payload={"deep": [1, {"x": "<&>"}]}),
        {"ts": None, "event": None},
        ev("run.finished", ts(1), status=None, steps=[1]),
    ]
    d = c.path("run")
    os.mkdir(d)
    head = write_journal(os.path.join(d, "journal.jsonl"), evs)
    r = c.irp("status", d)
    eq(r.rc, 0, f"status: {r!r}")
    check(f"{len(evs)} lines, head {head}" in r.out, f"status journal line:\n{r.out}")
    md = c.irp("report", d)
    eq(md.rc, 0, f"md: {md!r}")
    check_tables(md.out)
    eq(len(table_rows(section(md.out, "Timeline"))), len(evs), "timeline rows")
    js = c.irp("report", d, "--format", "json")
    eq(js.rc, 0, f"json: {js!r}")
    eq(json.loads(js.out)["head"], head, "json head")
    x = c.irp("report", d, "--format", "junit")
    eq(x.rc, 0, f"junit: {x!r}")
    ET.fromstring(x.out)


def test_bad_run_dirs(c):
    """Missing or non-run directories exit 2; a damaged journal is named
    (line N) with exit 1; a cut-off last line is not counted."""
    for cmd in (["status"], ["report"], ["report", "--format", "junit"]):
        r = c.irp(*cmd, c.path("nope"))
        eq(r.rc, 2, f"{cmd} on a missing directory: {r!r}")
        check("nope" in r.err and r.out == "", f"message: {r!r}")
        os.makedirs(c.path("empty"), exist_ok=True)
        r = c.irp(*cmd, c.path("empty"))
        eq(r.rc, 2, f"{cmd} on a directory without journal: {r!r}")
        check("journal" in r.err, f"message: {r!r}")
    d, head = rich_dir(c)
    path = os.path.join(d, "journal.jsonl")
    with open(path, "rb") as f:
        good = f.read()
    # a cut-off last line: ignored, the head is the last whole line's
    with open(path, "ab") as f:
        f.write(b'{"seq":99,"ts":"2026')
    r = c.irp("status", d)
    eq(r.rc, 0, f"status with a partial last line: {r!r}")
    check(f"{len(rich_events())} lines, head {head}" in r.out, f"partial line:\n{r.out}")
    # a changed byte in line 3: the chain breaks at line 4
    lines = good.split(b"\n")
    check(b'"operator":"bob"' in lines[2], "line 3 is not the answer")
    lines[2] = lines[2].replace(b'"operator":"bob"', b'"operator":"eve"')
    with open(path, "wb") as f:
        f.write(b"\n".join(lines))
    r = c.irp("status", d)
    eq(r.rc, 1, f"status of a damaged journal: {r!r}")
    check("damaged" in r.err and "line 4" in r.err, f"damage message: {r.err!r}")
    check(re.search(r"^journal\s+3 lines", r.out, re.M), f"lines before the damage:\n{r.out}")
    r = c.irp("report", d)
    eq(r.rc, 1, f"report of a damaged journal: {r!r}")
    check("line 4" in r.err, f"report's damage message: {r.err!r}")
    check("journal is damaged" in r.out, "the report does not say it is damaged")
    # not JSON at all
    with open(path, "wb") as f:
        f.write(b"\x00\xffgarbage\n")
    r = c.irp("report", d, "--format", "json")
    eq(r.rc, 1, f"report of garbage: {r!r}")
    check("line 1" in r.err, f"garbage message: {r.err!r}")
    eq(json.loads(r.out)["lines"], 0, "lines of a garbage journal")


def test_usage(c):
    """--help, bad options and arguments."""
    for cmd in ("status", "report"):
        r = c.irp(cmd, "--help")
        eq(r.rc, 0, f"{cmd} --help")
        check(r.out.startswith(f"usage: irp {cmd} RUN_DIR"), f"{cmd} usage: {r.out!r}")
        r = c.irp(cmd)
        eq(r.rc, 2, f"{cmd} without a run directory: {r!r}")
        r = c.irp(cmd, "a", "b")
        eq(r.rc, 2, f"{cmd} with two directories: {r!r}")
        r = c.irp(cmd, "--bogus", "a")
        eq(r.rc, 2, f"{cmd} --bogus: {r!r}")
        check("unknown option" in r.err, f"message: {r.err!r}")
    d, _ = rich_dir(c)
    r = c.irp("report", d, "--format", "xml")
    eq(r.rc, 2, f"--format xml: {r!r}")
    check("md, json or junit" in r.err, f"message: {r.err!r}")
    r = c.irp("report", d, "--format")
    eq(r.rc, 2, f"--format without a value: {r!r}")
    r = c.irp("report", d, "-o", c.path("no", "such", "dir.md"))
    eq(r.rc, 2, f"-o into a missing directory: {r!r}")
    r = c.irp("report", d, "--format=junit")
    eq(r.rc, 0, f"--format=junit: {r!r}")
    check(r.out.startswith("<?xml"), "--format=junit output")
    check("report" in c.irp("--help").out and "status" in c.irp("--help").out,
          "commands missing from irp --help")


TESTS = [test_md_of_real_run, test_json_of_real_run, test_junit_of_real_run,
         test_status_finished_run, test_status_live_run, test_hand_written_journal_md,
         test_hand_written_journal_json, test_hand_written_journal_status,
         test_resumed_and_interrupted, test_manual_prompt_in_attempt,
         test_odd_fields, test_bad_run_dirs, test_usage]


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
