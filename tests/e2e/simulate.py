#!/usr/bin/env python3
"""End-to-end tests of `irp simulate` (SPEC §1.5, §2, §3, §5): the virtual
clock, simulated executors, seeded draws, scenarios and their injects.

Every test writes its playbook (and scenario) into a fresh temporary
directory and runs the real binary there, with `--runs` inside it, then
reads back the journal irp wrote.  Virtual times are checked to the
millisecond against the scenario's start; real times with this process's
clock.  Nothing real may happen: the tests look for the files, copies and
connections a real run would have made.

Every subprocess has a timeout, so a hang fails a test, never the suite.

Usage: simulate.py [NAME-SUBSTRING...]   (runs only the matching tests)
Prints one line per test and a summary "N passed, M failed[, K skipped]";
exits 1 when any test failed.  A failed test's directory is kept and
named.  Environment: IRP (the irp binary, required).
"""
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

IRP = os.environ.get("IRP")
if not IRP:
    sys.exit("simulate: set IRP to the path of the irp binary")
IRP = os.path.abspath(IRP)

RUN_TIMEOUT = 60            # seconds, any single irp invocation
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error: |"
                          r"SUMMARY: \w+Sanitizer")
START = "2023-09-08T18:00:00Z"
SCRUB = ("IRP_RUN_ID", "IRP_RUN_DIR", "IRP_STEP_ID", "IRP_INSTANCE", "IRP_ITEM",
         "IRP_INDEX", "IRP_ATTEMPT", "IRP_OUTPUT", "NO_COLOR")
# Fields that may differ between two runs of one exercise (SPEC §5).
VOLATILE = ("wall", "prev", "run_id", "response_ms")


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


def ts_ms(ts):
    """Milliseconds since the epoch of a journal time (UTC, ms)."""
    check(TS_RE.match(ts or ""), f"bad journal time {ts!r}")
    d = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    return round(d.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


START_MS = ts_ms("2023-09-08T18:00:00.000Z")
MIN, HOUR = 60000, 3600000


class Run:
    """An irp invocation and the journal it left."""

    def __init__(self, rc, out, err, elapsed, cwd):
        self.rc, self.out, self.err, self.elapsed = rc, out, err, elapsed
        m = SANITIZER_RE.search(err)
        if m:
            raise Failure(f"sanitizer report (exit {rc}):\n{err[max(0, m.start() - 200):][:4000]}")
        self.dir = None
        lines = out.splitlines()
        if lines:
            path = lines[-1] if os.path.isabs(lines[-1]) else os.path.join(cwd, lines[-1])
            if os.path.isdir(path):
                self.dir = path
        self.events = []
        if self.dir and os.path.exists(os.path.join(self.dir, "journal.jsonl")):
            with open(os.path.join(self.dir, "journal.jsonl"), "rb") as f:
                self.events = [json.loads(line) for line in f.read().split(b"\n") if line]

    def __repr__(self):
        return (f"<irp exit {self.rc}, {self.elapsed:.2f}s, dir {self.dir}>\n"
                f"--- stdout\n{self.out}--- stderr\n{self.err}---")

    def ev(self, name, **match):
        return [e for e in self.events if e["event"] == name and
                all(e.get(k) == v for k, v in match.items())]

    def one(self, name, **match):
        found = self.ev(name, **match)
        check(len(found) == 1, f"expected one {name} {match}, found {len(found)}: {self!r}")
        return found[0]

    def at(self, name, **match):
        """Virtual ms after the start of the one matching event."""
        return ts_ms(self.one(name, **match)["ts"]) - START_MS

    def span(self, instance, attempt=1):
        return (self.at("step.finished", instance=instance, attempt=attempt) -
                self.at("step.started", instance=instance, attempt=attempt))

    def comparable(self):
        return [{k: v for k, v in e.items() if k not in VOLATILE} for e in self.events]


class Case:
    """A test's temporary directory and helpers to run irp inside it."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"irp-sim-{name}-")
        self.runs = os.path.join(self.dir, "runs")

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def simulate(self, playbook, *args, scenario=None, timeout=RUN_TIMEOUT, cmd="simulate"):
        pb = self.write("pb.yaml", playbook) if "\n" in playbook else playbook
        argv = [IRP, cmd, pb, "--runs", self.runs] + list(args)
        if scenario is not None:
            argv += ["--scenario", self.write("scenario.yaml", scenario)]
        env = {k: v for k, v in os.environ.items() if k not in SCRUB}
        t0 = time.monotonic()
        try:
            # A session of its own: no controlling terminal, so nobody is asked.
            p = subprocess.run(argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise Failure(f"irp {cmd} did not end within {timeout} s: {argv}")
        r = Run(p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"), time.monotonic() - t0, self.dir)
        check(r.rc in (0, 1, 2, 3, 4), f"irp crashed or failed internally: {r!r}")
        return r

    def ok(self, playbook, *args, scenario=None, rc=0):
        r = self.simulate(playbook, *args, scenario=scenario)
        eq(r.rc, rc, f"exit status of {r!r}")
        check(r.events, f"no journal: {r!r}")
        eq(r.events[0]["mode"], "simulate", "run.started mode")
        return r

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def playbook(steps, head="", id_="sim"):
    return f"irp: 1\nid: {id_}\ntitle: Simulation {id_}\n{head}steps:\n{steps}"


def scenario(injects, start=START):
    return f"scenario: e2e\nstart: {start}\ninjects:\n{injects}"


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---- determinism --------------------------------------------------------

DRAWS = playbook(
    "  - id: flaky\n    for_each: [a, b, c, d, e, f, g, h]\n    run: [probe, '${{ item }}']\n"
    "    retries: 1\n    simulate: { duration: 10s..5m, success_rate: 0.5, outputs: { k: v } }\n"
    "  - id: brief\n    needs: []\n    manual: { prompt: Brief them, choices: [done, failed] }\n"
    "  - id: gate\n    needs: []\n    confirm: Go?\n    run: [gate]\n"
    "    simulate: { duration: 1m..2m }\n"
    "  - id: tail\n    needs: [flaky]\n    when: 'true'\n    wait: 30m\n")
DRAWS_SCENARIO = scenario("  - at: 90s\n    title: News\n    message: Something\n"
                          "  - at: 3m\n    fail: flaky[h]\n")


@test
def same_seed_same_journal(c):
    """Same playbook, scenario with start, seed and answers: the same
    journal but for wall, prev, run id and response_ms; another seed
    draws other durations and outcomes."""
    answers = c.write("answers.yaml", "brief: { answer: done, note: by phone }\ngate: \"yes\"\n")
    first = c.simulate(DRAWS, "--speed", "max", "--seed", "7", "--answers", answers,
                       scenario=DRAWS_SCENARIO)
    second = c.simulate(DRAWS, "--speed", "max", "--seed", "7", "--answers", answers,
                        scenario=DRAWS_SCENARIO)
    other = c.simulate(DRAWS, "--speed", "max", "--seed", "8", "--answers", answers,
                       scenario=DRAWS_SCENARIO)
    for r in (first, second, other):
        check(r.rc in (0, 1) and r.events, f"simulation did not run: {r!r}")
    check(first.dir != second.dir, "two runs, two run directories")
    eq(second.comparable(), first.comparable(), "journal of the same exercise")
    outcomes = {e["status"] for e in first.ev("step.finished") if e["step"] == "flaky"}
    check(outcomes == {"succeeded", "failed"},
          f"success_rate 0.5 over 8 instances gave only {outcomes}")

    def draws(r):
        return [(e["instance"], e["attempt"], e["status"], e["duration_ms"])
                for e in r.ev("step.finished") if e["step"] == "flaky"]
    check(draws(other) != draws(first), "seed 8 drew exactly what seed 7 drew")


# ---- injects ------------------------------------------------------------

@test
def inject_at_its_exact_millisecond(c):
    """An inject is delivered at start + at, to the millisecond, whatever
    the offset the start is written with; its fields are journaled."""
    r = c.ok(playbook("  - id: w\n    wait: 2h\n"), "--speed", "max",
             scenario=scenario("  - at: 1h30m15s250ms\n    title: Press inquiry\n"
                               "    message: A journalist asks.\n"
                               "  - at: 250ms\n    message: early\n",
                               start="2023-09-08T20:00:00+02:00"))
    ev = r.one("inject.delivered", inject=0)
    eq(ts_ms(ev["ts"]) - START_MS, 1 * HOUR + 30 * MIN + 15250, "inject ts - start")
    eq((ev["title"], ev["message"], ev["scenario"]),
       ("Press inquiry", "A journalist asks.", "e2e"), "inject fields")
    eq(r.at("inject.delivered", inject=1), 250, "second inject")
    eq(r.at("run.started"), 0, "virtual start")
    check("*** INJECT T+01:30:15.250 Press inquiry: A journalist asks." in r.out,
          f"inject not shown: {r.out}")
    ordered = [e["inject"] for e in r.ev("inject.delivered")]
    eq(ordered, [1, 0], "delivered in time order")


@test
def inject_fail_running_pending_and_ended(c):
    """`fail` on a running step fails it at that instant with no retry;
    on a step not started yet it fails when it starts; on a step that
    already ended it is journaled inject.ignored."""
    pb = playbook(
        "  - id: running\n    run: [x]\n    retries: 2\n    simulate: { duration: 10m }\n"
        "  - id: first\n    needs: []\n    run: [x]\n    simulate: { duration: 5m }\n"
        "  - id: pending\n    needs: [first]\n    run: [x]\n    retries: 2\n"
        "    simulate: { duration: 1m }\n"
        "  - id: done\n    needs: []\n    run: [x]\n    simulate: { duration: 1m }\n"
        "  - id: fan\n    needs: []\n    for_each: [h1, h2]\n    run: [x]\n"
        "    simulate: { duration: 10m }\n")
    r = c.ok(pb, "--speed", "max", rc=1, scenario=scenario(
        "  - at: 2m\n    fail: running\n  - at: 1m\n    fail: pending\n"
        "  - at: 3m\n    fail: done\n  - at: 4m\n    fail: fan[h2]\n"))
    f = r.one("step.finished", instance="running")
    eq((f["status"], r.at("step.finished", instance="running")), ("failed", 2 * MIN),
       "running step failed at the inject")
    eq(r.ev("step.retrying", step="running"), [], "no retry after an inject")
    eq(len(r.ev("step.started", instance="running")), 1, "one attempt")
    f = r.one("step.finished", instance="pending")
    eq((f["status"], r.at("step.finished", instance="pending")), ("failed", 5 * MIN),
       "pending step fails as it starts")
    check("inject" in f.get("error", ""), f"reason: {f}")
    eq(r.ev("step.retrying", step="pending"), [], "no retry of the pending step")
    eq(r.one("step.finished", instance="done")["status"], "succeeded", "ended step")
    ign = r.one("inject.ignored")
    eq((ign["fail"], ign["inject"], r.at("inject.ignored")), ("done", 2, 3 * MIN), "ignored")
    eq(r.one("step.finished", instance="fan[h2]")["status"], "failed", "instance failed")
    eq(r.at("step.finished", instance="fan[h2]"), 4 * MIN, "instance failed at the inject")
    eq(r.one("step.finished", instance="fan[h1]")["status"], "succeeded", "sibling")
    eq(r.at("step.finished", instance="fan[h1]"), 10 * MIN, "sibling carried on")


@test
def inject_set_changes_a_later_when(c):
    """`set` gives a declared var a new value; a `when` evaluated later
    sees it."""
    pb = playbook("  - id: w\n    wait: 1h\n"
                  "  - id: protect\n    when: vars.exfiltration\n    run: [x]\n",
                  head="vars:\n  exfiltration: false\n  who: nobody\n")
    plain = c.ok(pb, "--speed", "max")
    eq(plain.one("step.skipped", step="protect")["reason"], "when is false", "without inject")
    r = c.ok(pb, "--speed", "max", scenario=scenario(
        "  - at: 30m\n    set: { exfiltration: true, who: Registrar }\n"))
    ev = r.one("inject.delivered")
    eq(ev["set"], {"exfiltration": True, "who": "Registrar"}, "journaled values")
    eq(r.at("inject.delivered"), 30 * MIN, "set at its time")
    eq(r.ev("step.skipped", step="protect"), [], "protect not skipped")
    eq(r.one("step.finished", instance="protect")["status"], "succeeded", "protect ran")


@test
def scenario_errors_located_in_one_pass(c):
    """Every problem of a scenario file, located, in one pass; exit 2 and
    nothing run."""
    pb = playbook("  - id: isolate\n    for_each: [ws-017, fs-02]\n    run: [x]\n"
                  "  - id: brief\n    manual: Brief\n", head="vars:\n  exfil: false\n")
    bad = ("scenario: e2e\n"
           "strat: 2023-09-08T18:00:00Z\n"
           "injects:\n"
           "  - at: 5\n    message: bare number\n"
           "  - at: 1h\n    fail: isolat\n"
           "  - at: 1h\n    fail: isolate[fs-03]\n"
           "  - at: 2h\n    set: { exfill: true }\n"
           "  - at: 2h\n    set: { exfil: maybe }\n"
           "  - at: 3h\n    title: nothing to do\n"
           "  - at: 3h\n    message: two\n    fail: brief\n"
           "  - at: 4h\n    mesage: typo\n")
    r = c.simulate(pb, "--speed", "max", scenario=bad)
    eq(r.rc, 2, f"exit status: {r!r}")
    check(not os.path.exists(c.runs), "a run directory was made")
    f = re.escape(c.path("scenario.yaml"))
    want = [
        (2, 1, r"unknown key 'strat'.*did you mean 'start'"),
        (4, 9, r"'at' takes a duration"),
        (7, 11, r"no step 'isolat'.*did you mean 'isolate'"),
        (9, 11, r"no instance 'isolate\[fs-03\]'.*did you mean 'isolate\[fs-02\]'"),
        (11, 12, r"declares no var 'exfill'.*did you mean 'exfil'"),
        (13, 19, r"var 'exfil' is a boolean"),
        (14, 5, r"does nothing"),
        (18, 5, r"one of message, fail and set"),
        (19, 5, r"does nothing"),
        (20, 5, r"unknown key 'mesage'.*did you mean 'message'"),
    ]
    for line, col, msg in want:
        check(re.search(rf"^{f}:{line}:{col}: error: .*{msg}", r.err, re.M),
              f"missing {line}:{col} {msg!r} in:\n{r.err}")
    eq(len(re.findall(r": error: ", r.err)), len(want), f"error count in:\n{r.err}")
    r = c.simulate(pb, "--speed", "max", "--scenario", c.path("nope.yaml"))
    eq(r.rc, 2, "unreadable scenario")
    check("cannot read the scenario file" in r.err, r.err)


# ---- durations and outcomes --------------------------------------------

@test
def durations_sampled_within_their_range(c):
    """A range is sampled per instance, inside its bounds; without a hint
    a step lasts 1m, but never longer than its timeout."""
    items = ", ".join(f"h{i}" for i in range(24))
    r = c.ok(playbook(
        f"  - id: fan\n    for_each: [{items}]\n    run: [x]\n"
        "    simulate: { duration: 30s..90s }\n"
        "  - id: plain\n    needs: []\n    run: [x]\n"
        "  - id: short\n    needs: []\n    timeout: 20s\n    run: [x]\n"), "--speed", "max")
    spans = [r.span(f"fan[h{i}]") for i in range(24)]
    check(all(30000 <= s <= 90000 for s in spans), f"outside 30s..90s: {spans}")
    check(len(set(spans)) > 12, f"hardly sampled: {spans}")
    eq(r.span("plain"), MIN, "default duration")
    eq(r.span("short"), 20000, "default cut to the timeout")
    eq(r.one("step.finished", instance="short")["status"], "succeeded", "exactly the timeout")


@test
def longer_than_timeout_times_out(c):
    """A duration longer than the step's timeout ends timed_out at the
    timeout."""
    r = c.ok(playbook("  - id: slow\n    timeout: 2m\n    run: [x]\n"
                      "    simulate: { duration: 5m }\n"), "--speed", "max", rc=1)
    f = r.one("step.finished", instance="slow")
    eq((f["status"], r.span("slow")), ("timed_out", 2 * MIN), "timed out at 2m")


@test
def outcome_and_outputs(c):
    """simulate.outcome decides; success_rate 0 always fails, 1 always
    succeeds; outputs become steps.ID.outputs; a failure is retried with
    a draw of its own."""
    r = c.ok(playbook(
        "  - id: bad\n    run: [x]\n    retries: 2\n    simulate: { outcome: failed }\n"
        "  - id: never\n    needs: []\n    run: [x]\n    simulate: { success_rate: 0 }\n"
        "  - id: always\n    needs: []\n    run: [x]\n"
        "    simulate: { success_rate: 1, outputs: { ticket: T-42 } }\n"
        "  - id: use\n    needs: [always]\n    run: [echo, '${{ steps.always.outputs.ticket }}']\n"
        "    simulate: { duration: 1s }\n"), "--speed", "max", rc=1)
    eq([e["status"] for e in r.ev("step.finished", step="bad")], ["failed"] * 3, "retried")
    eq(r.one("step.finished", instance="never")["status"], "failed", "rate 0")
    f = r.one("step.finished", instance="always")
    eq((f["status"], f["outputs"]), ("succeeded", {"ticket": "T-42"}), "outputs")
    eq(r.one("step.started", instance="use")["action"]["argv"], ["echo", "T-42"], "rendered")


@test
def outputs_made_from_a_secret_stay_secret(c):
    """simulate.outputs rendered from a secret keep its taint: a later
    step's argv shows ***, and the value is nowhere in the run directory."""
    token = "s3cr3t-sim-token-4711"
    os.environ["IRP_E2E_SIM_TOKEN"] = token
    try:
        r = c.ok(playbook(
            "  - id: mint\n    run: [x]\n"
            "    simulate: { outputs: { ticket: 'T-${{ secrets.IRP_E2E_SIM_TOKEN }}', plain: T-1 } }\n"
            "  - id: use\n    needs: [mint]\n"
            "    run: [echo, '${{ steps.mint.outputs.ticket }}', '${{ steps.mint.outputs.plain }}']\n"),
            "--speed", "max")
    finally:
        del os.environ["IRP_E2E_SIM_TOKEN"]
    eq(r.one("step.started", instance="use")["action"]["argv"], ["echo", "***", "T-1"],
       "argv from a secret output")
    # A map holding a secret is secret as a whole (value.h), as in a real run.
    eq(r.one("step.finished", instance="mint")["outputs"], "***", "outputs journaled")
    for root, _, files in os.walk(r.dir):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                check(token.encode() not in f.read(), f"the secret is in {name}")


# ---- time ---------------------------------------------------------------

@test
def seventy_two_hours_at_max_speed(c):
    """72 hours of virtual time in well under a second at --speed max."""
    r = c.ok(playbook("  - id: hold\n    wait: 72h\n"
                      "  - id: after\n    run: [x]\n    simulate: { duration: 2h }\n"
                      "  - id: side\n    needs: []\n    wait: { until: '2023-09-10T18:00:00Z' }\n"),
             "--speed", "max", scenario=scenario("  - at: 71h\n    message: late news\n"))
    eq(r.at("run.finished"), 74 * HOUR, "virtual span")
    eq(r.at("step.finished", instance="side"), 48 * HOUR, "wait until a virtual time")
    eq(r.at("inject.delivered"), 71 * HOUR, "inject after 71h")
    check(r.elapsed < 1.0, f"74 virtual hours took {r.elapsed:.2f} s")


@test
def pacing_at_speed_3600(c):
    """--speed 3600: an hour of virtual time takes about a real second."""
    r = c.ok(playbook("  - id: hold\n    wait: 1h\n"), "--speed", "3600")
    eq(r.span("hold"), HOUR, "virtual wait")
    check(0.7 <= r.elapsed <= 2.5, f"1h at 3600x took {r.elapsed:.2f} s")


# ---- answers ------------------------------------------------------------

@test
def auto_answers_confirm_and_manual(c):
    """--auto: a confirmation takes simulate.answer, else yes; a manual
    step simulate.answer, else its first choice; no virtual time passes
    for the answer."""
    r = c.ok(playbook(
        "  - id: yes-gate\n    confirm: Go?\n    run: [x]\n    simulate: { duration: 1s }\n"
        "  - id: no-gate\n    needs: []\n    confirm: Go?\n    run: [x]\n"
        "    simulate: { answer: 'no' }\n"
        "  - id: pick\n    needs: []\n    manual: { prompt: Which?, choices: [alpha, beta] }\n"
        "  - id: told\n    needs: []\n    manual: { prompt: Which?, choices: [alpha, beta] }\n"
        "    simulate: { answer: beta }\n"
        "  - id: lasts\n    needs: []\n    manual: Brief\n    simulate: { duration: 20m }\n"),
        "--speed", "max", "--auto")
    got = {(e["step"], e["answer"], e["via"]) for e in r.ev("step.answered")}
    eq(got, {("yes-gate", "yes", "--auto"), ("no-gate", "no", "--auto"),
             ("pick", "alpha", "--auto"), ("told", "beta", "--auto"),
             ("lasts", "done", "--auto")}, "answers")
    eq(r.one("step.finished", instance="yes-gate")["status"], "succeeded", "confirmed")
    check(r.ev("step.skipped", step="no-gate"), "declined step not skipped")
    eq(r.one("step.finished", instance="pick")["outputs"], {"answer": "alpha"}, "pick")
    eq(r.one("step.finished", instance="told")["outputs"], {"answer": "beta"}, "told")
    eq(r.span("pick"), 0, "an answer given in advance takes no time")
    eq(r.span("lasts"), 20 * MIN, "a manual step with a duration hint")
    # Without --auto, answers nor a terminal: the manual step cannot be asked.
    r = c.ok(playbook("  - id: pick\n    manual: Which?\n"), "--speed", "max", rc=1)
    check("no terminal" in r.one("step.finished", instance="pick").get("error", ""), r.err)


# ---- nothing real -------------------------------------------------------

@test
def nothing_real_happens(c):
    """No command runs, nothing is sent, no evidence is copied; each
    action is journaled as simulated, with its rendered arguments."""
    with socket.socket() as s:        # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c.write("secret-source.txt", "evidence\n")
    r = c.ok(playbook(
        "  - id: touch\n    run: [touch, '${{ inputs.name }}']\n"
        "  - id: shell\n    needs: []\n    run: 'echo hi > shell-made'\n"
        f"  - id: hook\n    needs: []\n    notify: {{ via: webhook,"
        f" url: 'http://127.0.0.1:{port}/x', body: 'about ${{{{ inputs.name }}}}' }}\n"
        "  - id: letter\n    needs: []\n    notify: { via: file, to: letter.txt, body: hi }\n"
        "  - id: grab\n    needs: []\n    evidence: { collect: [ { path: secret-source.txt },"
        " { run: [touch, ev-made], name: out } ] }\n",
        head="inputs:\n  name: { default: x }\n"), "--speed", "max")
    for name in ("x", "shell-made", "letter.txt", "ev-made"):
        check(not os.path.exists(c.path(name)), f"{name} was made")
    made = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(r.dir, "evidence"))
            for f in fs]
    eq(made, [], "files under evidence/")
    eq(r.ev("evidence.collected") + r.ev("notify.sent") + r.ev("step.spawned"), [],
       "events of real actions")
    for step in ("touch", "shell", "hook", "letter", "grab"):
        eq(r.one("step.finished", instance=step)["status"], "succeeded", step)
        eq(r.one("step.started", instance=step)["action"].get("simulated"), True, step)
    eq(r.one("step.started", instance="touch")["action"]["argv"], ["touch", "x"], "argv")
    hook = r.one("step.started", instance="hook")["action"]
    eq((hook["url"], hook["body"]), (f"http://127.0.0.1:{port}/x", "about x"), "webhook")
    grab = r.one("step.started", instance="grab")["action"]
    eq(grab["collect"][0]["path"], c.path("secret-source.txt"), "evidence source")


# ---- participants on a terminal ----------------------------------------

class Tmux:
    """irp simulate inside a tmux session: a real terminal to type into."""

    def __init__(self, c, args):
        self.sock = c.path("tmux.sock")
        self.done = c.path("done.rc")
        self.tmux = ["tmux", "-S", self.sock]
        cmd = " ".join([IRP, "simulate"] + args + ["--runs", c.runs]) + f"; echo $? > {self.done}"
        subprocess.run(self.tmux + ["new-session", "-d", "-x", "150", "-y", "45", "-c", c.dir,
                                    cmd], check=True, timeout=10)

    def screen(self):
        return subprocess.run(self.tmux + ["capture-pane", "-p", "-S", "-100"],
                              capture_output=True, text=True, timeout=10).stdout

    def wait_for(self, text, timeout=15):
        deadline = time.monotonic() + timeout
        while text not in self.screen():
            check(time.monotonic() < deadline, f"{text!r} never appeared: {self.screen()!r}")
            time.sleep(0.05)

    def type(self, *keys):
        subprocess.run(self.tmux + ["send-keys"] + list(keys), check=True, timeout=10)

    def close(self):
        subprocess.run(self.tmux + ["kill-server"], capture_output=True, timeout=10)

    def wait_done(self, timeout=30):
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.done):
            check(time.monotonic() < deadline, f"irp did not end: {self.screen()!r}")
            time.sleep(0.05)
        with open(self.done) as fh:
            return int(fh.read().strip())


def only_journal(c):
    run = os.listdir(c.runs)[0]
    with open(os.path.join(c.runs, run, "journal.jsonl")) as fh:
        return [json.loads(line) for line in fh if line.endswith("\n")]


@test
def participant_answers_while_the_clock_runs(c):
    """At --speed X a manual step is asked on the terminal and the clock
    keeps running while the room decides; at max the clock stands still
    until the answer."""
    if not shutil.which("tmux"):
        raise Skip("tmux is not installed")
    pb = c.write("pb.yaml", playbook(
        "  - id: brief\n    manual: Brief the Registrar.\n"
        "  - id: bg\n    needs: []\n    wait: 10m\n"))
    sc = c.write("sc.yaml", scenario("  - at: 1m\n    title: Press\n    message: A call.\n"))
    t = Tmux(c, [pb, "--speed", "600", "--scenario", sc])
    try:
        t.wait_for("1) done 2) failed 3) skip")
        t.wait_for("*** INJECT T+00:01 Press: A call.")   # shown while the prompt is open
        time.sleep(0.5)
        t.type("1", "Enter")
        t.wait_for("note for brief")
        t.type("Enter")
        eq(t.wait_done(), 0, "exit status")
    finally:
        t.close()
    evs = only_journal(c)
    asked = next(e for e in evs if e["event"] == "step.prompted")
    answered = next(e for e in evs if e["event"] == "step.answered")
    eq((answered["answer"], answered["via"]), ("done", "terminal"), "answer")
    gap = ts_ms(answered["ts"]) - ts_ms(asked["ts"])
    check(gap >= MIN, f"the clock stood still while the question was open ({gap} ms)")

    shutil.rmtree(c.runs)
    os.unlink(c.path("done.rc"))
    t = Tmux(c, [pb, "--speed", "max"])
    try:
        t.wait_for("1) done 2) failed 3) skip")
        time.sleep(0.3)
        t.type("2", "Enter")
        t.wait_for("note for brief")
        t.type("Enter")
        eq(t.wait_done(), 1, "exit status (answered failed)")
    finally:
        t.close()
    evs = only_journal(c)
    answered = next(e for e in evs if e["event"] == "step.answered")
    eq(ts_ms(answered["ts"]), ts_ms(evs[0]["ts"]),
       "no virtual time passes at max while the question is open")
    bg = next(e for e in evs if e["event"] == "step.finished" and e["step"] == "bg")
    check(bg["seq"] > answered["seq"], "the wait ended before the answer at max speed")


@test
def facilitator_pauses_the_clock(c):
    """On a terminal the facilitator sees virtual time with T+, and `p`
    Enter pauses the clock: real time passes, virtual time does not."""
    if not shutil.which("tmux"):
        raise Skip("tmux is not installed")
    pb = c.write("pb.yaml", playbook("  - id: hold\n    wait: 20m\n"))
    sc = c.write("sc.yaml", scenario("  - at: 5m\n    title: Later\n    message: Still here.\n"))
    t0 = time.monotonic()
    t = Tmux(c, [pb, "--speed", "600", "--scenario", sc])      # 20m take 2 s real
    try:
        t.wait_for("virtual time ")
        t.wait_for("T+00:0")
        t.type("p", "Enter")
        t.wait_for("PAUSED")
        time.sleep(0.4)                       # let a frame or two be drawn paused
        frozen = [l for l in t.screen().splitlines() if "virtual time" in l][-1]
        time.sleep(2.5)
        again = [l for l in t.screen().splitlines() if "virtual time" in l][-1]
        eq(again, frozen, "virtual time moved while paused")
        t.type("p", "Enter")
        eq(t.wait_done(), 0, "exit status")
    finally:
        t.close()
    check(time.monotonic() - t0 >= 4.4, "the pause did not hold the clock")
    evs = only_journal(c)
    hold = [e for e in evs if e.get("step") == "hold" and e["event"] in ("step.started",
                                                                        "step.finished")]
    eq(ts_ms(hold[1]["ts"]) - ts_ms(hold[0]["ts"]), 20 * 60000, "virtual length of the wait")
    inj = next(e for e in evs if e["event"] == "inject.delivered")
    eq(ts_ms(inj["ts"]) - ts_ms(evs[0]["ts"]), 5 * 60000, "the inject still lands on time")


# ---- the command line ---------------------------------------------------

@test
def notes_from_another_process_join_the_batched_journal(c):
    """A simulation writes its lines in batches; `irp note` from another
    process meanwhile is neither held up nor lost: the chain stays one,
    every note is in it once, and report.md is what `irp report` prints."""
    # 200 x 90 s at --speed 3600: five real seconds, time enough for a few
    # `irp note` processes even on a loaded machine (each one starts,
    # loads the journal and appends).
    steps = "".join(f"  - id: w{i:03d}\n    wait: 90s\n" for i in range(200))
    pb = c.write("pb.yaml", playbook(steps))
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    p = subprocess.Popen([IRP, "simulate", pb, "--runs", c.runs, "--speed", "3600"],
                         cwd=c.dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        rundir, deadline = None, time.monotonic() + 20
        while rundir is None and time.monotonic() < deadline and p.poll() is None:
            found = [d for d in (os.listdir(c.runs) if os.path.isdir(c.runs) else [])
                     if os.path.exists(os.path.join(c.runs, d, "journal.jsonl"))]
            rundir = os.path.join(c.runs, found[0]) if found else None
            time.sleep(0.01)
        check(rundir is not None, "no run directory appeared")
        # The journal gets its name with its first line: never seen empty.
        with open(os.path.join(rundir, "journal.jsonl"), "rb") as f:
            first = f.readline()
        check(first.endswith(b"\n") and json.loads(first)["event"] == "run.started",
              f"the journal's first sight: {first[:80]!r}")
        sent = []
        while p.poll() is None and len(sent) < 40:
            text = f"note {len(sent)} from the room"
            n = subprocess.run([IRP, "note", rundir, text], env=env, capture_output=True,
                               text=True, timeout=RUN_TIMEOUT)
            eq(n.returncode, 0, f"irp note: {n.stderr}")
            sent.append(text)
            time.sleep(0.02)
        out, err = p.communicate(timeout=RUN_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eq(p.returncode, 0, f"simulate: {err.decode()}")
    check(len(sent) >= 5, f"only {len(sent)} notes went in while the exercise ran")
    v = subprocess.run([IRP, "verify", rundir], capture_output=True, text=True,
                       timeout=RUN_TIMEOUT)
    eq(v.returncode, 0, f"irp verify: {v.stdout}{v.stderr}")
    with open(os.path.join(rundir, "journal.jsonl"), "rb") as f:
        events = [json.loads(line) for line in f.read().split(b"\n") if line]
    eq([e["seq"] for e in events], list(range(1, len(events) + 1)), "seq")
    eq([e["text"] for e in events if e["event"] == "note"], sent, "notes, in order")
    finished = [e for e in events if e["event"] == "step.finished"]
    eq(len(finished), 200, "steps finished")
    # Notes came between the simulation's own lines, not all after them.
    first_note = next(i for i, e in enumerate(events) if e["event"] == "note")
    check(first_note < events.index(finished[-1]), "every note came after the exercise")
    # report.md covers the journal at least up to run.finished.  A note
    # that came after it, while the process was ending, is in report.md
    # when the report was read back from the journal (a note landing in
    # the middle of a batch does that), else only in `irp report`.
    finished_at = next(i for i, e in enumerate(events) if e["event"] == "run.finished") + 1
    with open(os.path.join(rundir, "report.md"), "rb") as f:
        md = f.read()
    m = re.search(rb"\| journal \| (\d+) lines \|", md)
    check(m is not None, "report.md has no line count")
    end = int(m.group(1))
    check(finished_at <= end <= len(events),
          f"report.md covers {end} lines; run.finished is line {finished_at} of {len(events)}")
    for e in events[:end]:
        if e["event"] == "note":
            check(e["text"].encode() in md, f"{e['text']!r} is not in report.md")
    if end == len(events):
        rep = subprocess.run([IRP, "report", rundir], capture_output=True,
                             timeout=RUN_TIMEOUT)
        eq(rep.returncode, 0, "irp report")
        check(md == rep.stdout, "report.md differs from `irp report`")


@test
def long_report_is_what_irp_report_prints(c):
    """An exercise whose timeline outgrows the report's in-memory buffer
    (its rows go to a file in the run directory as they are made), and
    whose steps table outgrows the 1 MiB buffer report.md is written
    through: the report.md written at the end is still exactly `irp
    report`, and no file of those rows is left behind."""
    steps = "".join(f"  - id: s{i:05d}\n    run: [probe, '{i}']\n    simulate: {{ duration: 1s }}\n"
                    for i in range(14000))
    pb = c.write("long.yaml", playbook(steps))
    r = c.ok(pb, "--speed", "max", "--seed", "5")
    with open(os.path.join(r.dir, "report.md"), "rb") as f:
        md = f.read()
    table = md[md.index(b"## Steps"):md.index(b"## Timeline")]
    check(len(table) > 1_200_000, f"the steps table is only {len(table)} bytes")
    # The copy, written on its own thread while the exercise ran, is whole
    # (and no playbook.yaml.part is left: the listing below).
    with open(pb, "rb") as f, open(os.path.join(r.dir, "playbook.yaml"), "rb") as g:
        check(f.read() == g.read(), "playbook.yaml is not the playbook")
    rep = subprocess.run([IRP, "report", r.dir], capture_output=True, timeout=RUN_TIMEOUT)
    eq(rep.returncode, 0, "irp report")
    check(md == rep.stdout, "report.md differs from `irp report`")
    eq(sorted(os.listdir(r.dir)),
       ["inputs.json", "journal.jsonl", "lock", "logs", "playbook.yaml", "report.md"],
       "files in the run directory")


@test
def usage_and_bad_options(c):
    """--help shows the usage; bad options are usage errors (exit 2)."""
    p = subprocess.run([IRP, "simulate", "--help"], capture_output=True, text=True,
                       timeout=RUN_TIMEOUT)
    eq(p.returncode, 0, "--help")
    check("usage: irp simulate PLAYBOOK" in p.stdout and "--speed X|max" in p.stdout, p.stdout)
    pb = playbook("  - id: a\n    run: [x]\n")
    for args, msg in ((["--speed", "0"], "--speed"), (["--speed", "fast"], "--speed"),
                      (["--seed", "-1"], "--seed"), (["--seed", "x"], "--seed"),
                      (["--bogus"], "unknown option"), (["--jobs", "0"], "--jobs")):
        r = c.simulate(pb, *args)
        eq(r.rc, 2, f"{args}: {r!r}")
        check(msg in r.err, f"{args}: {r.err}")
    check(not os.path.exists(c.runs), "a run directory was made")


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
