#!/usr/bin/env python3
"""End-to-end tests of `irp check`, the CI dry-run (SPEC §6, §7, §2).

Every test writes its playbooks into a fresh temporary directory, runs the
real binary there and reads back its exit status, its diagnostics (stderr)
and the reports it wrote.  The JUnit report is checked with `xmllint
--noout` when it is installed and always parsed with Python's own XML
parser, its counts recounted from the elements; the JSON report is parsed
and checked against the diagnostics.

Every subprocess has a timeout, so a hang fails a test, never the suite.

Usage: check.py [NAME-SUBSTRING...]   (runs only the matching tests)
Prints one line per test and a summary "N passed, M failed[, K skipped]";
exits 1 when any test failed.  A failed test's directory is kept and
named.  Environment: IRP (the irp binary, required), IRP_SOURCE_DIR (the
source tree, for the example playbooks; default: two levels up).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET

IRP = os.environ.get("IRP")
if not IRP:
    sys.exit("check: set IRP to the path of the irp binary")
IRP = os.path.abspath(IRP)
SOURCE = os.environ.get("IRP_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")

RUN_TIMEOUT = 60            # seconds, any single irp invocation
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error: |"
                          r"SUMMARY: \w+Sanitizer")
DIAG_RE = re.compile(r"^(?P<file>[^\n]*?):(?P<line>\d+):(?P<col>\d+): "
                     r"(?P<sev>error|warning): (?P<msg>.*)$", re.M)
# An example playbook must be checked in well under a second; sanitizers
# slow irp down several times.
EXAMPLE_LIMIT = 5.0 if "asan" in IRP else 1.0
SCRUB = ("NO_COLOR", "IRP_CHECK_TOKEN", "IRP_CHECK_SMTP")


class Failure(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


class Result:
    def __init__(self, argv, rc, out, err, elapsed):
        self.argv, self.rc, self.out, self.err, self.elapsed = argv, rc, out, err, elapsed
        m = SANITIZER_RE.search(err)
        if m:
            raise Failure(f"sanitizer report (exit {rc}):\n{err[max(0, m.start() - 200):][:4000]}")
        self.diags = [m.groupdict() for m in DIAG_RE.finditer(err)]

    def __repr__(self):
        return (f"<irp exit {self.rc}, {self.elapsed:.2f}s: {' '.join(self.argv[1:])}>\n"
                f"--- stdout\n{self.out}--- stderr\n{self.err}---")

    def errors(self):
        return [d for d in self.diags if d["sev"] == "error"]

    def warnings(self):
        return [d for d in self.diags if d["sev"] == "warning"]

    def find(self, sev, pattern):
        """The diagnostics of this severity whose message matches."""
        return [d for d in self.diags if d["sev"] == sev and re.search(pattern, d["msg"])]

    def one(self, sev, pattern):
        found = self.find(sev, pattern)
        check(len(found) == 1, f"expected one {sev} matching {pattern!r}, found "
                               f"{len(found)}: {self!r}")
        return found[0]


class Case:
    """A test's temporary directory and helpers to run irp check in it."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"irp-check-{name}-")

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return name

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if k not in SCRUB}
        env.update(extra or {})
        return env

    def irp(self, *args, env=None, timeout=RUN_TIMEOUT):
        argv = [IRP, "check"] + list(args)
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, cwd=self.dir, env=self.env(env), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"irp check did not end within {timeout} s: {argv}")
        r = Result(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                   p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)
        check(r.rc in (0, 1, 2), f"irp crashed or failed internally: {r!r}")
        return r

    def json(self, name):
        with open(self.path(name)) as f:
            return json.load(f)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def playbook(steps, head="", pid="t"):
    return f"irp: 1\nid: {pid}\ntitle: A test playbook\n{head}steps:\n{steps}"


SOUND = playbook("""\
  - id: collect
    run: [true]
    simulate: { duration: 1m..2m }
  - id: tell
    notify: { via: webhook, url: "https://csirt.example/api", body: done }
""", head="deadlines:\n  - { id: tell-csirt, within: 1h, met_by: tell }\n")


# ---- reports -----------------------------------------------------------

def junit_counts(root):
    """Recount a JUnit tree: per suite and in all."""
    suites = root.findall("testsuite") if root.tag == "testsuites" else [root]
    total = {"tests": 0, "failures": 0, "skipped": 0}
    for s in suites:
        cases = s.findall("testcase")
        got = {"tests": len(cases),
               "failures": sum(1 for c in cases if c.find("failure") is not None),
               "skipped": sum(1 for c in cases if c.find("skipped") is not None)}
        for k, v in got.items():
            eq(int(s.get(k)), v, f"{k} of testsuite {s.get('name')}")
            total[k] += v
        eq(int(s.get("errors")), 0, f"errors of testsuite {s.get('name')}")
    return suites, total


def xmllint(c, name):
    if not shutil.which("xmllint"):
        return False
    p = subprocess.run(["xmllint", "--noout", c.path(name)], capture_output=True, timeout=30)
    check(p.returncode == 0, f"xmllint rejects {name}: {p.stderr.decode(errors='replace')}")
    return True


@test
def junit_and_json_reports(c):
    """JUnit: a suite per playbook named after the file, a case per check
    and per failure path, counts right, escaped text; JSON: the same
    diagnostics and paths."""
    c.write("good.yaml", SOUND)
    # The URL holds every character XML must escape; it is reported.
    c.write("bad.yaml", playbook("""\
  - id: a
    run: [true]
  - id: hook
    notify: { via: webhook, url: "gopher://x<y>&'q\\"/", body: b }
  - id: never
    when: false
    run: [true]
"""))
    r = c.irp("good.yaml", "bad.yaml", "--junit", "out.xml", "--json", "out.json")
    eq(r.rc, 1, f"exit status {r!r}")
    linted = xmllint(c, "out.xml")
    root = ET.parse(c.path("out.xml")).getroot()
    eq(root.tag, "testsuites", "root element")
    suites, total = junit_counts(root)
    for k in ("tests", "failures", "skipped"):
        eq(int(root.get(k)), total[k], f"{k} of testsuites")
    eq([s.get("name") for s in suites], ["good.yaml", "bad.yaml"], "suite names")
    doc = c.json("out.json")
    eq([p["file"] for p in doc["playbooks"]], ["good.yaml", "bad.yaml"], "JSON files")
    kinds = ["validate", "inputs", "expressions", "graph", "commands", "addresses",
             "deadlines", "paths"]
    for s, p in zip(suites, doc["playbooks"]):
        names = [tc.get("name") for tc in s.findall("testcase")]
        eq(names[:8], kinds, f"check test cases of {s.get('name')}")
        eq(len(names) - 8, len(p["paths"]), f"path test cases of {s.get('name')}")
        check(len(p["paths"]) >= 3, f"too few paths for {s.get('name')}: {p['paths']}")
        eq(p["paths"][0]["failing"], None, "the first path fails nothing")
        props = {e.get("name"): e.get("value") for e in s.iter("property")}
        eq(props.get("tlp"), "TLP:AMBER", f"TLP of {s.get('name')}")
        eq(p["tlp"], "amber", "JSON TLP")
        for d in p["diagnostics"]:
            check(set(d) >= {"line", "col", "severity", "message"}, f"diagnostic fields {d}")
        eq(p["errors"], sum(d["severity"] == "error" for d in p["diagnostics"]),
           f"errors of {p['file']}")
        eq(p["warnings"], sum(d["severity"] == "warning" for d in p["diagnostics"]),
           f"warnings of {p['file']}")
        for path in p["paths"]:
            eq(path["ok"], not path["problems"], f"ok of path {path}")
    good, bad = doc["playbooks"]
    eq((good["errors"], good["warnings"]), (0, 0), f"counts of good.yaml {r!r}")
    check(all(p["ok"] for p in good["paths"]), f"paths of good.yaml: {good['paths']}")
    eq(bad["errors"], 1, f"errors of bad.yaml {r!r}")
    # The console saw the same diagnostics as the JSON.
    eq(len(r.diags), len(bad["diagnostics"]), f"diagnostics on stderr {r!r}")
    url = r.one("error", r"^url ")
    check("x<y>&'q\"" in url["msg"], f"url quoted in {url}")
    failure = suites[1].find("testcase[@name='addresses']/failure")
    check(failure is not None, "no failure in bad.yaml's addresses test case")
    check("x<y>&'q\"" in failure.text, f"failure text not escaped right: {failure.text!r}")
    check(failure.text.startswith("bad.yaml:"), f"failure text: {failure.text!r}")
    warn = suites[1].find("testcase[@name='graph']/system-out")
    check(warn is not None and "can never run" in warn.text, "graph warning not in system-out")
    check(linted or True, "")


# ---- deadlines ---------------------------------------------------------

@test
def deadline_infeasible_through_chain(c):
    """Even at each range's minimum, the chain of needs into met_by is
    longer than `within`: an error at the deadline naming the path."""
    c.write("pb.yaml", """\
irp: 1
id: chain
title: A chain too long for its deadline
deadlines:
  - id: nis2
    within: 24h
    met_by: notify
steps:
  - id: isolate
    run: [true]
    simulate: { duration: 2h..3h }
  - id: side
    needs: []
    run: [true]
    simulate: { duration: 1h }
  - id: preserve
    needs: [isolate, side]
    run: [true]
    simulate: { duration: 20h }
  - id: notify
    run: [true]
    simulate: { duration: 3h }
""")
    r = c.irp("pb.yaml")
    eq(r.rc, 1, f"exit status {r!r}")
    d = r.one("error", "^deadline 'nis2'")
    eq(d["msg"], "deadline 'nis2' (24h) cannot be met: isolate (2h) → preserve (20h) → "
                 "notify (3h) = 25h", "message")
    eq((d["line"], d["col"]), ("5", "9"), "located at the deadline's id")
    eq(len(r.errors()), 1, f"errors {r!r}")


@test
def deadline_late_only_in_worst_case(c):
    """Fine at the minimum, late with the maximum and every retry: a
    warning, exit 0."""
    c.write("pb.yaml", playbook("""\
  - id: isolate
    run: [true]
    timeout: 20m
    retries: 2
    retry_delay: 5m
    simulate: { duration: 5m..15m }
  - id: notify
    run: [true]
    simulate: { duration: 1m }
""", head="deadlines:\n  - { id: early-warning, within: 50m, met_by: notify }\n"))
    r = c.irp("pb.yaml")
    eq(r.rc, 0, f"exit status {r!r}")
    w = r.one("warning", "^deadline 'early-warning'")
    eq(w["msg"], "deadline 'early-warning' (50m) may be missed: in the worst case isolate "
                 "(55m, 3 attempts) → notify (1m) = 56m", "message")
    eq(r.errors(), [], "errors")
    r = c.irp("pb.yaml", "--json", "o.json")
    eq(c.json("o.json")["playbooks"][0]["checks"]["deadlines"]["warnings"], 1, "JSON count")


@test
def deadline_jobs_rounds(c):
    """Instances that take a --jobs slot run in rounds in the worst case."""
    c.write("pb.yaml", playbook("""\
  - id: isolate
    for_each: [a, b, c, d]
    run: [true, "${{ item }}"]
    simulate: { duration: 10m }
""", head="deadlines:\n  - { id: d, within: 30m, met_by: isolate }\n"))
    eq(c.irp("pb.yaml", "--jobs", "4").warnings(), [], "with 4 jobs, one round")
    r = c.irp("pb.yaml", "--jobs", "1")
    eq(r.rc, 0, f"exit status {r!r}")
    r.one("warning", r"isolate \(40m, 4 rounds of --jobs 1\) = 40m")


# ---- failure paths -----------------------------------------------------

FINALLY_BREAKS = """\
irp: 1
id: fin
title: finally breaks only when x fails
steps:
  - id: x
    run: [true]
    simulate: { outputs: { k: "3" } }
  - id: y
    needs: []
    run: [true]
finally:
  - id: status-to-commander
    when: number(steps.x.outputs.k) > 2
    run: [true]
"""


@test
def finally_breaks_on_one_failure_path(c):
    """number(null) fails only when x failed and left no output: validate
    and the static pass cannot see it, the path where x fails does."""
    c.write("pb.yaml", FINALLY_BREAKS)
    p = subprocess.run([IRP, "validate", "pb.yaml"], cwd=c.dir, capture_output=True,
                       timeout=RUN_TIMEOUT)
    eq(p.returncode, 0, f"validate: {p.stderr!r}")
    r = c.irp("pb.yaml", "--json", "o.json", "--junit", "o.xml")
    eq(r.rc, 1, f"exit status {r!r}")
    d = r.one("error", "^when 'x' fails: ")
    check(d["msg"].startswith("when 'x' fails: finally step 'status-to-commander' failed: "
                              "expression: "), f"message {d}")
    eq(d["line"], "12", f"located at the finally step {d}")
    eq(len(r.errors()), 1, f"errors {r!r}")
    paths = {p["failing"]: p for p in c.json("o.json")["playbooks"][0]["paths"]}
    eq(sorted(paths, key=str), sorted([None, "x", "y", "status-to-commander"], key=str),
       "paths run")
    check(paths[None]["ok"] and paths["y"]["ok"], f"paths {paths}")
    check(not paths["x"]["ok"] and paths["x"]["took_effect"], f"path of x {paths['x']}")
    root = ET.parse(c.path("o.xml")).getroot()
    fails = [tc.get("name") for tc in root.iter("testcase") if tc.find("failure") is not None]
    eq(sorted(fails), ["path: when 'x' fails", "paths"], "failing test cases")


@test
def for_each_instance_path(c):
    """A for_each step gets a path for the step and one for its first
    instance, named as the engine names it."""
    c.write("pb.yaml", playbook("""\
  - id: iso
    for_each: ${{ inputs.hosts }}
    run: [true, "${{ item }}"]
""", head="inputs:\n  hosts: { type: list, example: [ws-1, ws-2] }\n"))
    r = c.irp("pb.yaml", "--json", "o.json")
    eq(r.rc, 0, f"exit status {r!r}")
    paths = c.json("o.json")["playbooks"][0]["paths"]
    eq([(p["failing"], p["instance"]) for p in paths],
       [(None, False), ("iso", False), ("iso[ws-1]", True)], "paths")
    check(all(p["took_effect"] for p in paths[1:]), f"paths {paths}")


@test
def expression_errors_located(c):
    """A template whose types clash with the inputs is an error at the
    expression, found without running anything; a when of the wrong type
    too."""
    c.write("pb.yaml", playbook("""\
  - id: a
    when: inputs.n > 'x'
    run: [true]
  - id: b
    needs: []
    when: "${{ inputs.label }}"
    run: [true, "${{ lower(inputs.n) }}"]
""", head="inputs:\n  n: { type: number, default: 3 }\n  label: { default: yes }\n"))
    r = c.irp("pb.yaml")
    eq(r.rc, 1, f"exit status {r!r}")
    d = r.one("error", r"^when: '>'")
    eq((d["line"], d["col"]), ("9", "20"), f"position of the comparison {d}")
    d = r.one("error", "^when gave a string")
    eq(d["line"], "13", f"line of b's when {d}")
    d = r.one("error", r"^run\[1\]: ")
    eq((d["line"], d["col"]), ("14", "28"), f"position of lower's argument {d}")
    check(not r.find("error", "fails: "), f"paths repeat static errors {r!r}")


# ---- commands, secrets, addresses, graph -------------------------------

@test
def strict_missing_command(c):
    """A command not on PATH: a warning, an error with --strict; a
    templated command is not looked up."""
    c.write("pb.yaml", playbook("""\
  - id: a
    run: [irp-no-such-command-4711, --x]
  - id: b
    run: [/nonexistent/irp-tool]
  - id: c
    run: ["${{ inputs.tool }}"]
  - id: d
    run: [sh, -c, "true"]
""", head="inputs:\n  tool: { default: irp-also-missing }\n"))
    r = c.irp("pb.yaml")
    eq(r.rc, 0, f"exit status {r!r}")
    w = r.one("warning", "irp-no-such-command-4711")
    eq(w["msg"], "command 'irp-no-such-command-4711' not found on PATH", "message")
    r.one("warning", "'/nonexistent/irp-tool' does not exist")
    eq(len(r.warnings()), 2, f"warnings {r!r}")
    r = c.irp("pb.yaml", "--strict")
    eq(r.rc, 1, f"exit status with --strict {r!r}")
    r.one("error", "irp-no-such-command-4711' not found on PATH")
    eq(len(r.errors()), 2, f"errors with --strict {r!r}")


@test
def unset_secret_placeholder(c):
    """An unset secret: a warning, and the checks go on with a placeholder
    (the dry runs render it); exit 0.  A set secret: no warning."""
    c.write("pb.yaml", playbook("""\
  - id: tell
    notify:
      via: webhook
      url: https://csirt.example/api
      headers: { Authorization: "Bearer ${{ secrets.IRP_CHECK_TOKEN }}" }
      body: x
"""))
    r = c.irp("pb.yaml", "--json", "o.json")
    eq(r.rc, 0, f"exit status {r!r}")
    w = r.one("warning", "IRP_CHECK_TOKEN")
    check("placeholder" in w["msg"], f"message {w}")
    eq((w["line"], w["col"]), ("9", "45"), f"position of the reference {w}")
    doc = c.json("o.json")["playbooks"][0]
    check(doc["paths"] and all(p["ok"] for p in doc["paths"]), f"paths {doc['paths']}")
    r = c.irp("pb.yaml", env={"IRP_CHECK_TOKEN": "t0ken"})
    eq((r.rc, r.diags), (0, []), f"with the secret set {r!r}")


@test
def addresses_and_never_run(c):
    """Malformed URLs and addresses (literal or rendered with the inputs)
    are errors; steps that can never run are warnings."""
    c.write("pb.yaml", playbook("""\
  - id: hook
    notify: { via: webhook, url: "${{ inputs.url }}", body: b }
  - id: mail
    notify:
      via: email
      server: "smtp://"
      from: "IR team <ir@org.example>"
      to: ["dpo@org.example", "${{ inputs.who }}"]
      password: ${{ secrets.IRP_CHECK_SMTP }}
      body: b
  - id: off
    when: false
    run: [true]
  - id: after-off
    run: [true]
""", head="inputs:\n  url: { example: 'https://' }\n  who: { example: 'a@@b' }\n"))
    r = c.irp("pb.yaml")
    eq(r.rc, 1, f"exit status {r!r}")
    r.one("error", r"^url 'https://' \(as rendered with the inputs\) has no host")
    r.one("error", "^server 'smtp://' has no host")
    r.one("error", "^recipient 'a@@b'")
    eq(len(r.errors()), 3, f"errors {r!r}")
    r.one("warning", "^step 'off' can never run: its when is false")
    r.one("warning", "^step 'after-off' can never run: it needs 'off'")


@test
def inputs_resolution(c):
    """Inputs come from -i, default or example; a required input with no
    value is an error of the inputs check.  With several playbooks each
    gets the -i values of the inputs it declares."""
    c.write("a.yaml", playbook("  - id: s\n    run: [true, '${{ inputs.case }}']\n",
                               head="inputs:\n  case: { required: true }\n", pid="a"))
    c.write("b.yaml", playbook("  - id: s\n    run: [true]\n", pid="b"))
    r = c.irp("a.yaml", "--json", "o.json")
    eq(r.rc, 1, f"exit status {r!r}")
    doc = c.json("o.json")["playbooks"][0]
    eq(doc["checks"]["inputs"]["errors"], 1, f"inputs errors {doc['checks']}")
    check(doc["checks"]["paths"]["skipped"], f"paths not skipped {doc['checks']}")
    r = c.irp("a.yaml", "b.yaml", "-i", "case=INC-1")
    eq((r.rc, r.diags), (0, []), f"with -i for a.yaml only {r!r}")
    r = c.irp("a.yaml", "b.yaml", "-i", "case=INC-1", "-i", "nosuch=1")
    eq(r.rc, 1, f"an input no playbook declares {r!r}")


# ---- the whole command -------------------------------------------------

@test
def sound_playbook_passes(c):
    c.write("pb.yaml", SOUND)
    r = c.irp("pb.yaml")
    eq((r.rc, r.diags), (0, []), f"result {r!r}")
    check("ok:" in r.out, f"summary {r.out!r}")


@test
def writes_no_run_directory(c):
    """Nothing but the reports asked for appears, here or in ./irp-runs."""
    c.write("pb.yaml", FINALLY_BREAKS)
    c.irp("pb.yaml", "--junit", "r.xml")
    eq(sorted(os.listdir(c.dir)), ["pb.yaml", "r.xml"], "files in the working directory")
    check(not os.path.exists(c.path("irp-runs")), "irp-runs was created")


@test
def example_playbooks(c):
    """Every example playbook passes, each in well under a second."""
    books = sorted(glob.glob(os.path.join(SOURCE, "playbooks", "*.yaml")))
    check(len(books) >= 3, f"example playbooks not found under {SOURCE}")
    for pb in books:
        r = c.irp(pb, "--json", "o.json", "--junit", "o.xml")
        eq(r.rc, 0, f"exit status for {pb} {r!r}")
        eq(r.errors(), [], f"errors for {pb}")
        check(r.elapsed < EXAMPLE_LIMIT, f"{pb} took {r.elapsed:.2f} s")
        doc = c.json("o.json")["playbooks"][0]
        check(len(doc["paths"]) > 1 and all(p["ok"] for p in doc["paths"]),
              f"paths of {pb}: {[p for p in doc['paths'] if not p['ok']]}")
        junit_counts(ET.parse(c.path("o.xml")).getroot())
    eq(os.listdir(c.dir).count("irp-runs"), 0, "a run directory was written")


@test
def bad_usage(c):
    """Bad usage is exit 2; an unreadable playbook is exit 2, and the
    reports still cover the others."""
    for args in ([], ["--bogus", "x.yaml"], ["x.yaml", "--jobs", "0"], ["x.yaml", "-i", "novalue"],
                 ["x.yaml", "--junit"]):
        r = c.irp(*args)
        eq(r.rc, 2, f"exit status of {args} {r!r}")
        check("irp check" in r.err, f"message of {args}: {r.err!r}")
    c.write("good.yaml", SOUND)
    r = c.irp("missing.yaml", "good.yaml", "--junit", "r.xml", "--json", "r.json")
    eq(r.rc, 2, f"exit status {r!r}")
    doc = c.json("r.json")
    eq([(p["file"], p["readable"]) for p in doc["playbooks"]],
       [("missing.yaml", False), ("good.yaml", True)], "playbooks in JSON")
    check(doc["playbooks"][1]["paths"], "good.yaml was not checked")
    suites, _ = junit_counts(ET.parse(c.path("r.xml")).getroot())
    eq(len(suites), 2, "suites")
    check(suites[0].find("testcase[@name='validate']/failure") is not None,
          "missing.yaml's validate case does not fail")
    r = c.irp("good.yaml", "--inputs", "nosuch.yaml")
    eq(r.rc, 2, f"an unreadable --inputs file {r!r}")
    p = subprocess.run([IRP, "check", "--help"], capture_output=True, timeout=RUN_TIMEOUT)
    eq(p.returncode, 0, "--help")
    check(b"usage: irp check" in p.stdout, f"help text {p.stdout!r}")


# ---- harness ------------------------------------------------------------------------

def main(argv):
    selected = [t for t in TESTS if not argv[1:] or any(a in t.__name__ for a in argv[1:])]
    passed = failed = skipped = 0
    for t in selected:
        c = Case(t.__name__)
        t0 = time.monotonic()
        try:
            t(c)
        except Skip as e:
            skipped += 1
            print(f"SKIP {t.__name__}: {e}", flush=True)
            c.cleanup()
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
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
