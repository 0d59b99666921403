#!/usr/bin/env python3
"""End-to-end tests of `irp run`: the engine, the `run` and `wait`
executors, the run directory and the journal (SPEC §1.1-1.4, §2, §3).

Every test writes its own playbook into a fresh temporary directory, runs
the real binary on it (`--runs` inside that directory), and reads back what
irp wrote: journal.jsonl, logs/, inputs.json, report.md and files the
steps themselves left behind.  Nothing here trusts irp's own account of
itself where it can be checked independently: the hash chain is recomputed
with hashlib, durations are taken from the journal's timestamps and from
the clock of this process, and child processes are looked up in /proc.

Every subprocess has a timeout, so a hang fails a test, never the suite.

Usage: run_engine.py [NAME-SUBSTRING...]   (runs only the matching tests)
Prints one line per test and a summary "N passed, M failed[, K skipped]";
exits 1 when any test failed.  A failed test's directory is kept and
named.  Environment: IRP (the irp binary, required).
"""
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback

IRP = os.environ.get("IRP")
if not IRP:
    sys.exit("run_engine: set IRP to the path of the irp binary")
IRP = os.path.abspath(IRP)

RUN_TIMEOUT = 60            # seconds, any single irp invocation
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEAD_RE = re.compile(r"journal head ([0-9a-f]{64})")
ZERO_HASH = "0" * 64
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error: |"
                          r"SUMMARY: \w+Sanitizer")
SECRET = "s3cr3t-value-42"

# Variables the tests set for irp; never inherited from the caller.
SCRUB = ("TOKEN", "IRP_RUN_ID", "IRP_RUN_DIR", "IRP_STEP_ID", "IRP_INSTANCE",
         "IRP_ITEM", "IRP_INDEX", "IRP_ATTEMPT", "IRP_OUTPUT", "NO_COLOR")


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
    d = d.replace(tzinfo=datetime.timezone.utc)
    return round(d.timestamp() * 1000)


def process_gone(pid):
    """True when pid is not running: absent, or a zombie nobody reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0] in ("Z", "X")
    except FileNotFoundError:
        return True


# ---- one run ----------------------------------------------------------

class Run:
    """An irp invocation and what it left behind."""

    def __init__(self, rc, out, err, elapsed, cwd):
        self.rc, self.out, self.err, self.elapsed = rc, out, err, elapsed
        m = SANITIZER_RE.search(err)
        if m:
            raise Failure(f"sanitizer report (exit {rc}):\n{err[max(0, m.start() - 200):][:4000]}")
        self.dir = None
        lines = out.splitlines()
        if lines:
            last = lines[-1]
            path = last if os.path.isabs(last) else os.path.join(cwd, last)
            if os.path.isdir(path):
                self.dir = path
        self.raw = b""
        self.lines = []
        self.events = []
        if self.dir and os.path.exists(self.journal_path):
            with open(self.journal_path, "rb") as f:
                self.raw = f.read()
            self.lines = self.raw.split(b"\n")
            if self.lines and self.lines[-1] == b"":
                self.lines.pop()
            self.events = [json.loads(line) for line in self.lines]

    def __repr__(self):
        return (f"<irp exit {self.rc}, {self.elapsed:.2f}s, dir {self.dir}>\n"
                f"--- stdout\n{self.out}--- stderr\n{self.err}---")

    @property
    def journal_path(self):
        return os.path.join(self.dir, "journal.jsonl")

    def need_dir(self):
        check(self.dir, f"no run directory on the last line of stdout: {self!r}")
        check(self.events, f"empty journal: {self!r}")

    def ev(self, name, **match):
        return [e for e in self.events if e["event"] == name and
                all(e.get(k) == v for k, v in match.items())]

    def one(self, name, **match):
        found = self.ev(name, **match)
        check(len(found) == 1,
              f"expected one {name} {match}, found {len(found)}: {found}")
        return found[0]

    def finished(self, instance):
        """The last step.finished of an instance."""
        found = self.ev("step.finished", instance=instance)
        check(found, f"no step.finished for {instance}; journal:\n{self.dump()}")
        return found[-1]

    def inst_status(self, instance, step=None):
        """End state of an instance: its last finished/skipped/cancelled
        event (an event for the whole step counts for its instances)."""
        step = step or instance.split("[")[0]
        status = None
        for e in self.events:
            if e.get("step") != step:
                continue
            if e.get("instance") not in (None, instance):
                continue
            if e["event"] == "step.finished":
                status = e.get("status")
            elif e["event"] == "step.skipped":
                status = "skipped"
            elif e["event"] == "step.cancelled":
                status = "cancelled"
        return status

    def step_status(self, step):
        """A step's overall state, as report.md's table gives it."""
        text = self.read("report.md").decode()
        m = re.search(r"^\|\s*" + re.escape(step) + r"\s*\|\s*([a-z_]+)\s*\|\s*$",
                      text, re.M)
        check(m, f"step {step} not in report.md:\n{text}")
        return m.group(1)

    def seq_of(self, name, **match):
        found = self.ev(name, **match)
        check(found, f"no {name} {match}; journal:\n{self.dump()}")
        return found[0]["seq"]

    def status(self):
        return self.one("run.finished")["status"]

    def read(self, rel):
        with open(os.path.join(self.dir, rel), "rb") as f:
            return f.read()

    def log(self, rel):
        return self.read(os.path.join("logs", rel)).decode("utf-8", "replace")

    def dump(self):
        return "\n".join(line.decode("utf-8", "replace")[:300] for line in self.lines)


class Case:
    """A test's temporary directory and helpers to run irp inside it."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"irp-run-{name}-")
        self.runs = os.path.join(self.dir, "runs")

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, name, text, mode="w"):
        with open(self.path(name), mode) as f:
            f.write(text)
        return self.path(name)

    def env(self, extra=None, drop=()):
        env = {k: v for k, v in os.environ.items() if k not in SCRUB and k not in drop}
        env.update(extra or {})
        return env

    def argv(self, playbook, args, runs=True):
        pb = self.write("pb.yaml", playbook) if "\n" in playbook else playbook
        return [IRP, "run", pb] + (["--runs", self.runs] if runs else []) + list(args)

    def run(self, playbook, *args, env=None, timeout=RUN_TIMEOUT, runs=True, umask=None):
        argv = self.argv(playbook, args, runs)
        t0 = time.monotonic()
        pre = (lambda: os.umask(umask)) if umask is not None else None
        try:
            p = subprocess.run(argv, cwd=self.dir, env=self.env(env), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout, preexec_fn=pre)
        except subprocess.TimeoutExpired:
            raise Failure(f"irp run did not end within {timeout} s: {argv}")
        r = Run(p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"), time.monotonic() - t0, self.dir)
        check(r.rc in (0, 1, 2, 3, 4), f"irp crashed or failed internally: {r!r}")
        return r

    def spawn(self, playbook, *args, env=None):
        """Start irp in the background; stdout and stderr go to files."""
        argv = self.argv(playbook, args)
        out = open(self.path("irp.out"), "wb")
        err = open(self.path("irp.err"), "wb")
        p = subprocess.Popen(argv, cwd=self.dir, env=self.env(env), stdin=subprocess.DEVNULL,
                             stdout=out, stderr=err)
        out.close()
        err.close()
        return p

    def collect(self, p, t0, timeout=RUN_TIMEOUT):
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise Failure(f"irp did not end within {timeout} s")
        with open(self.path("irp.out"), "rb") as f:
            out = f.read().decode("utf-8", "replace")
        with open(self.path("irp.err"), "rb") as f:
            err = f.read().decode("utf-8", "replace")
        return Run(p.returncode, out, err, time.monotonic() - t0, self.dir)

    def journal_now(self):
        """Events of the (only) run under runs/ as they are now on disk."""
        if not os.path.isdir(self.runs):
            return []
        for d in os.listdir(self.runs):
            path = os.path.join(self.runs, d, "journal.jsonl")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    data = f.read()
                return [json.loads(line) for line in data.split(b"\n")[:-1]]
        return []

    def wait_for(self, pred, timeout=20, what="a journal event"):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            evs = self.journal_now()
            if any(pred(e) for e in evs):
                return evs
            time.sleep(0.02)
        raise Failure(f"timed out waiting for {what}")

    def no_run_dir(self):
        made = os.listdir(self.runs) if os.path.isdir(self.runs) else []
        check(not made, f"a run directory was created: {made}")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def playbook(steps, head="", finally_=None, id_="e2e"):
    text = f"irp: 1\nid: {id_}\ntitle: End-to-end {id_}\n{head}steps:\n{steps}"
    if finally_:
        text += f"finally:\n{finally_}"
    return text


def started_finished_gap(r, instance, attempt=1):
    s = r.one("step.started", instance=instance, attempt=attempt)
    f = r.one("step.finished", instance=instance, attempt=attempt)
    return ts_ms(f["ts"]) - ts_ms(s["ts"])


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---- 1. the journal's hash chain ---------------------------------------

@test
def chain_integrity(c):
    pb = playbook("""\
  - id: fan
    for_each: [one, two, three]
    run: [echo, "item ${{ item }}"]
  - id: fails
    needs: []
    run: "exit 3"
  - id: after
    needs: [fails]
    run: [echo, never]
  - id: pause
    needs: []
    wait: 50ms
""", head="tlp: green\n", finally_="""\
  - id: last
    run: [echo, "${{ run.status }}"]
""")
    r = c.run(pb)
    eq(r.rc, 1, f"exit status {r!r}")
    r.need_dir()
    check(r.raw.endswith(b"\n"), "the journal does not end with a newline")
    prev = ZERO_HASH
    for n, line in enumerate(r.lines, 1):
        check(not line.endswith(b"\r"), f"line {n} ends with CR")
        obj = json.loads(line)
        check(isinstance(obj, dict), f"line {n} is not a JSON object")
        eq(obj.get("seq"), n, f"seq of line {n}")
        eq(obj.get("prev"), prev, f"prev of line {n} (sha256 of line {n - 1})")
        for k in ("ts", "wall"):
            check(TS_RE.match(obj.get(k, "")), f"line {n}: {k} {obj.get(k)!r} is not UTC with ms")
        check(isinstance(obj.get("event"), str), f"line {n}: no event")
        if obj["event"] in ("step.started", "step.spawned", "step.finished", "step.retrying"):
            check(isinstance(obj.get("step"), str) and isinstance(obj.get("instance"), str),
                  f"line {n}: {obj['event']} without step or instance")
            check(isinstance(obj.get("attempt"), int) and obj["attempt"] >= 1,
                  f"line {n}: attempt {obj.get('attempt')!r}")
        prev = hashlib.sha256(line).hexdigest()
    heads = HEAD_RE.findall(r.out)
    check(heads, f"no journal head printed: {r.out!r}")
    eq(heads[-1], prev, "printed journal head vs sha256 of the last line")
    check(prev in r.read("report.md").decode(), "report.md does not give the journal head")
    first, last = r.events[0], r.events[-1]
    eq(first["event"], "run.started", "first event")
    eq(first.get("format"), 1, "run.started format")
    check(first.get("irp_version"), "run.started has no irp_version")
    eq(first.get("mode"), "run", "run.started mode")
    with open(c.path("pb.yaml"), "rb") as f:
        eq(first.get("playbook", {}).get("sha256"), hashlib.sha256(f.read()).hexdigest(),
           "run.started playbook sha256")
    eq(last["event"], "run.finished", "last event")
    eq(last.get("status"), "failed", "run.finished status")
    seqs = [e["seq"] for e in r.events]
    eq(seqs, list(range(1, len(seqs) + 1)), "seq sequence")


# ---- 2. order and parallelism ------------------------------------------

TWO_SLEEPS = """\
  - id: s1
    needs: []
    run: [sleep, "1"]
  - id: s2
    needs: []
    run: [sleep, "1"]
"""


@test
def parallel_jobs_2(c):
    t0 = time.monotonic()
    r = c.run(playbook(TWO_SLEEPS), "--jobs", "2")
    wall = time.monotonic() - t0
    eq(r.rc, 0, f"exit status {r!r}")
    # The run itself, from its journal: process start-up and exit (slow
    # under sanitizers on a busy machine) are not the steps' time.
    span = (ts_ms(r.events[-1]["ts"]) - ts_ms(r.events[0]["ts"])) / 1000
    check(span < 1.8, f"two independent `sleep 1` with --jobs 2 took {span:.2f} s (>= 1.8)")
    check(wall < 5, f"irp took {wall:.2f} s in all")
    # Both started before either finished.
    eq(r.status(), "succeeded", "run status")
    last_start = max(r.seq_of("step.started", instance=i) for i in ("s1", "s2"))
    first_end = min(r.seq_of("step.finished", instance=i) for i in ("s1", "s2"))
    check(last_start < first_end,
          "with --jobs 2 the second sleep started only after the first ended")


@test
def serial_jobs_1(c):
    t0 = time.monotonic()
    r = c.run(playbook(TWO_SLEEPS), "--jobs", "1")
    wall = time.monotonic() - t0
    eq(r.rc, 0, f"exit status {r!r}")
    check(wall >= 2.0, f"two `sleep 1` with --jobs 1 took only {wall:.2f} s")
    a, b = sorted(["s1", "s2"], key=lambda i: r.seq_of("step.started", instance=i))
    check(r.seq_of("step.finished", instance=a) < r.seq_of("step.started", instance=b),
          "with --jobs 1 two commands ran at the same time")


@test
def wait_takes_no_job_slot(c):
    pb = playbook("""\
  - id: cmd
    needs: []
    run: [sleep, "1"]
  - id: pause
    needs: []
    wait: 1s
""")
    t0 = time.monotonic()
    r = c.run(pb, "--jobs", "1")
    wall = time.monotonic() - t0
    eq(r.rc, 0, f"exit status {r!r}")
    check(wall < 1.8, f"a 1 s wait beside a 1 s command with --jobs 1 took {wall:.2f} s: "
          "the wait took a job slot (SPEC §2: waits do not)")


@test
def absent_needs_is_previous_step(c):
    pb = playbook("""\
  - id: first
    run: "sleep 0.4"
  - id: second
    run: "true"
  - id: free
    needs: []
    run: "true"
""", finally_="""\
  - id: fin1
    run: "sleep 0.3"
  - id: fin2
    run: "true"
""")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    check(r.seq_of("step.finished", instance="first") < r.seq_of("step.started", instance="second"),
          "a step with absent needs started before the step listed just before it finished")
    check(r.seq_of("step.started", instance="free") < r.seq_of("step.finished", instance="first"),
          "a step with needs: [] waited for an earlier step")
    check(r.seq_of("step.started", instance="first") < r.seq_of("step.finished", instance="free"),
          "the first step (no needs) did not start at once")
    check(r.seq_of("step.finished", instance="fin1") < r.seq_of("step.started", instance="fin2"),
          "a finally step with absent needs did not wait for the finally step before it")
    for s in ("first", "second", "free"):
        check(r.seq_of("step.finished", instance=s) < r.seq_of("step.started", instance="fin1"),
              f"finally started before main step {s} ended")


# ---- 3. fan-out ----------------------------------------------------------

FAN = """\
  - id: fan
    for_each: ${{ inputs.hosts }}
    run: [sh, -c, 'echo "host $1"; test "$1" != bad', sh, "${{ item }}"]
  - id: after
    run: [echo, after]
"""
FAN_HEAD = "inputs:\n  hosts:\n    type: list\n    default: [h1, bad, h2, h3]\n"


@test
def for_each_one_failing_item(c):
    r = c.run(playbook(FAN, head=FAN_HEAD), "--jobs", "1")
    eq(r.rc, 1, f"exit status {r!r}")
    r.need_dir()
    eq(r.one("step.expanded", step="fan").get("items"), ["h1", "bad", "h2", "h3"],
       "step.expanded items")
    for i, item in enumerate(["h1", "bad", "h2", "h3"]):
        inst = f"fan[{item}]"
        want = "failed" if item == "bad" else "succeeded"
        eq(r.inst_status(inst), want, f"status of {inst}")
        eq(r.one("step.started", instance=inst)["step"], "fan", f"step of {inst}")
        log = r.log(f"fan.{i}.1.log")
        eq(log, f"host {item}\n", f"logs/fan.{i}.1.log")
    eq(r.finished("fan[bad]").get("exit_code"), 1, "exit code of fan[bad]")
    eq(r.step_status("fan"), "failed", "status of the fan-out step")
    eq(r.inst_status("after"), "skipped", "the dependent of a failed fan-out")
    check("fan" in r.one("step.skipped", step="after").get("reason", ""),
          "skip reason does not name the failed step")
    eq(r.status(), "failed", "run status")


@test
def for_each_instance_ids_by_index(c):
    # A list with an item that is not a plain identifier: every instance
    # uses its index.
    r = c.run(playbook(FAN, head=FAN_HEAD), "-i", "hosts=[a b, ok, c/d]")
    eq(r.rc, 0, f"exit status {r!r}")
    for i, item in enumerate(["a b", "ok", "c/d"]):
        eq(r.inst_status(f"fan[{i}]"), "succeeded", f"status of fan[{i}]")
        eq(r.log(f"fan.{i}.1.log"), f"host {item}\n", f"logs/fan.{i}.1.log")
    check(not r.ev("step.started", instance="fan[ok]"), "mixed list used an item as an id")
    # Duplicates, and an item longer than 64 characters.
    c2 = Case("fan-dup")
    try:
        r = c2.run(playbook(FAN, head=FAN_HEAD), "-i", "hosts=x", "-i", "hosts=x")
        eq(r.rc, 0, f"exit status {r!r}")
        eq(sorted(e["instance"] for e in r.ev("step.started")), ["after", "fan[0]", "fan[1]"],
           "instances of a list with duplicate items")
        long_item = "h" * 65
        r = c2.run(playbook(FAN, head=FAN_HEAD), "-i", f"hosts={long_item}")
        eq(sorted(e["instance"] for e in r.ev("step.started")), ["after", "fan[0]"],
           "instance of a 65-character item")
        r = c2.run(playbook(FAN, head=FAN_HEAD), "-i", "hosts=A.b_1:x@y-z")
        eq(sorted(e["instance"] for e in r.ev("step.started")), ["after", "fan[A.b_1:x@y-z]"],
           "instance of an item using every allowed punctuation")
    finally:
        c2.cleanup()


@test
def for_each_empty_list_skips(c):
    r = c.run(playbook(FAN, head=FAN_HEAD), "-i", "hosts=[]")
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.step_status("fan"), "skipped", "a for_each over an empty list")
    eq(r.status(), "succeeded", "run status")


# ---- 4. outputs -----------------------------------------------------------

@test
def outputs_and_stdout(c):
    pb = playbook("""\
  - id: a
    run: |
      echo "key=first" >> "$IRP_OUTPUT"
      echo "key=hello world" >> "$IRP_OUTPUT"
      echo "eq=a=b" >> "$IRP_OUTPUT"
      echo "no equals sign" >> "$IRP_OUTPUT"
      echo "this is stdout"
      echo "this is stderr" >&2
  - id: b
    run: [printf, "<%s>\\n", "${{ steps.a.outputs.key }}", "${{ steps.a.outputs.eq }}",
          "${{ steps.a.stdout }}", "${{ steps.a.outputs.missing }}"]
  - id: c
    run: 'echo "got ${{ steps.a.outputs.key }}!"'
""")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.finished("a").get("outputs"), {"key": "hello world", "eq": "a=b"},
       "outputs of a in step.finished")
    eq(r.log("b.1.log"), "<hello world>\n<a=b>\n<this is stdout\n>\n<>\n",
       "argv rendered from outputs and stdout")
    eq(r.log("c.1.log"), "got hello world!\n", "string run rendered from an output")
    log_a = r.log("a.1.log")
    check("this is stdout" in log_a and "this is stderr" in log_a,
          f"stdout and stderr not both in the log: {log_a!r}")


@test
def for_each_outputs_in_item_order(c):
    pb = playbook("""\
  - id: fan
    for_each: [x, y, z]
    run: 'sleep 0.$((3 - IRP_INDEX)); echo "k=$IRP_ITEM-out" >> "$IRP_OUTPUT"; echo "out-$IRP_ITEM"'
  - id: use
    run: [printf, "[%s]", "${{ steps.fan.outputs.k }}"]
  - id: use2
    run: [printf, "(%s)", "${{ steps.fan.stdout }}"]
""")
    r = c.run(pb, "--jobs", "3")
    eq(r.rc, 0, f"exit status {r!r}")
    order = [e["instance"] for e in r.ev("step.finished") if e["step"] == "fan"]
    eq(r.log("use.1.log"), "[x-out][y-out][z-out]",
       f"outputs list of a for_each step (finish order {order})")
    eq(r.log("use2.1.log"), "(out-x\n)(out-y\n)(out-z\n)", "stdout list of a for_each step")


# ---- 5. retries -----------------------------------------------------------

@test
def retries_always_failing(c):
    pb = playbook("""\
  - id: flat
    needs: []
    retries: 2
    retry_delay: 100ms
    run: "echo attempt $IRP_ATTEMPT; exit 7"
  - id: backoff
    needs: []
    retries: 2
    retry_delay: 100ms
    retry_backoff: 3
    run: "exit 1"
""")
    r = c.run(pb)
    eq(r.rc, 1, f"exit status {r!r}")
    for step, delays in (("flat", [100, 100]), ("backoff", [100, 300])):
        started = r.ev("step.started", instance=step)
        eq([e["attempt"] for e in started], [1, 2, 3], f"attempts started for {step}")
        retrying = r.ev("step.retrying", instance=step)
        eq(len(retrying), 2, f"step.retrying events for {step}")
        eq([e.get("delay_ms") for e in retrying], delays, f"journaled delays of {step}")
        fins = r.ev("step.finished", instance=step)
        eq([e["status"] for e in fins], ["failed"] * 3, f"attempt outcomes of {step}")
        for n in (1, 2):
            gap = ts_ms(r.one("step.started", instance=step, attempt=n + 1)["ts"]) - \
                ts_ms(r.one("step.finished", instance=step, attempt=n)["ts"])
            check(gap >= delays[n - 1] - 2,
                  f"{step}: attempt {n + 1} started {gap} ms after attempt {n} ended "
                  f"(retry delay {delays[n - 1]} ms)")
        eq(r.step_status(step), "failed", f"final status of {step}")
    for n in (1, 2, 3):
        eq(r.log(f"flat.{n}.log"), f"attempt {n}\n", f"logs/flat.{n}.log")
    eq(r.finished("flat").get("exit_code"), 7, "exit code of the last attempt")


@test
def retry_then_success(c):
    pb = playbook("""\
  - id: flaky
    retries: 3
    retry_delay: 50ms
    run: |
      n=$(cat counter 2>/dev/null || echo 0)
      n=$((n + 1))
      echo $n > counter
      [ "$n" -ge 2 ]
  - id: next
    run: "true"
""")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(len(r.ev("step.started", instance="flaky")), 2, "attempts of a step failing once")
    eq(len(r.ev("step.retrying", instance="flaky")), 1, "retries of a step failing once")
    eq(r.inst_status("flaky"), "succeeded", "final status")
    eq(r.inst_status("next"), "succeeded", "dependent of a step that succeeded on retry")
    with open(c.path("counter")) as f:
        eq(f.read().strip(), "2", "times the command ran")


# ---- 6. timeouts ------------------------------------------------------------

@test
def timeout_kills_grandchildren(c):
    pb = playbook("""\
  - id: slow
    timeout: 500ms
    run: "sleep 60 & echo $! > pid; wait"
""")
    r = c.run(pb, timeout=30)
    eq(r.rc, 1, f"exit status {r!r}")
    f = r.finished("slow")
    eq(f.get("status"), "timed_out", "status after the timeout")
    gap = started_finished_gap(r, "slow")
    check(450 <= gap <= 1500, f"a 500 ms timeout ended the step after {gap} ms")
    check(r.elapsed < 5, f"the run took {r.elapsed:.1f} s")
    with open(c.path("pid")) as fh:
        pid = int(fh.read())
    deadline = time.monotonic() + 2
    while not process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not process_gone(pid):
        os.kill(pid, signal.SIGKILL)
        raise Failure(f"the grandchild `sleep 60` (pid {pid}) survived the timeout")
    eq(r.step_status("slow"), "timed_out", "step status in report.md")


@test
def timeout_sigkill_after_ignored_term(c):
    pb = playbook("""\
  - id: stubborn
    timeout: 300ms
    run: "trap 'echo got-term' TERM; while :; do sleep 0.1; done"
""")
    r = c.run(pb, timeout=30)
    eq(r.rc, 1, f"exit status {r!r}")
    f = r.finished("stubborn")
    eq(f.get("status"), "timed_out", "status")
    eq(f.get("signal"), 9, "signal that ended a child trapping TERM")
    gap = started_finished_gap(r, "stubborn")
    check(5200 <= gap <= 7500, f"SIGKILL should come 5 s after SIGTERM; step took {gap} ms")
    check("got-term" in r.log("stubborn.1.log"), "the child never saw SIGTERM")


# ---- 7. when, skip reasons, on_failure --------------------------------------

@test
def when_default_skips_dependent(c):
    pb = playbook("""\
  - id: broken
    run: "false"
  - id: dependent
    run: [echo, no]
  - id: transitive
    run: [echo, no]
""")
    r = c.run(pb)
    eq(r.rc, 1, f"exit status {r!r}")
    sk = r.one("step.skipped", step="dependent")
    check("broken" in sk.get("reason", ""), f"reason does not name the failed need: {sk}")
    sk2 = r.one("step.skipped", step="transitive")
    check("dependent" in sk2.get("reason", ""), f"reason does not name the skipped need: {sk2}")
    check(not r.ev("step.started", step="dependent"), "a dependent of a failed step started")


@test
def when_false_and_expression(c):
    pb = playbook("""\
  - id: never
    needs: []
    when: false
    run: [touch, never-ran]
  - id: maybe
    needs: []
    when: "inputs.go == 'yes'"
    run: [touch, maybe-ran]
  - id: wrapped
    needs: []
    when: "${{ inputs.go != 'yes' }}"
    run: [touch, wrapped-ran]
""", head="inputs:\n  go: {default: 'no'}\n")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.inst_status("never"), "skipped", "when: false")
    check(r.one("step.skipped", step="never").get("reason"), "skip without reason")
    eq(r.inst_status("maybe"), "skipped", "when false from an input")
    check(r.ev("step.skipped", step="maybe")[0].get("reason"), "skip without reason")
    eq(r.inst_status("wrapped"), "succeeded", "when true from an input")
    check(not os.path.exists(c.path("never-ran")), "a `when: false` step ran")
    check(not os.path.exists(c.path("maybe-ran")), "a step whose when is false ran")
    r = c.run(pb, "-i", "go=yes")
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.inst_status("maybe"), "succeeded", "when true from -i")
    check(os.path.exists(c.path("maybe-ran")), "the step did not run")


@test
def on_failure_ignore(c):
    pb = playbook("""\
  - id: flaky
    on_failure: ignore
    run: "exit 5"
  - id: dependent
    run: [touch, dependent-ran]
""")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status with on_failure: ignore {r!r}")
    eq(r.inst_status("flaky"), "failed", "an ignored failure stays failed")
    eq(r.inst_status("dependent"), "succeeded", "the dependent of an ignored failure")
    eq(r.status(), "succeeded", "run status")
    eq(r.finished("flaky").get("exit_code"), 5, "exit code")


@test
def on_failure_continue(c):
    pb = playbook("""\
  - id: broken
    run: "sleep 0.2; false"
  - id: dependent
    run: [touch, dependent-ran]
  - id: independent
    needs: []
    run: "sleep 0.5; touch independent-ran"
  - id: later
    needs: [independent]
    run: [touch, later-ran]
""")
    r = c.run(pb)
    eq(r.rc, 1, f"exit status {r!r}")
    eq(r.inst_status("dependent"), "skipped", "dependent of a failed step")
    eq(r.inst_status("independent"), "succeeded", "independent step")
    eq(r.inst_status("later"), "succeeded", "a step started after the failure")
    check(not os.path.exists(c.path("dependent-ran")), "the dependent ran")
    eq(r.status(), "failed", "run status")


@test
def on_failure_abort(c):
    # --jobs 2: `retrier` fails at once and waits 20 s for its retry,
    # `bad` and `running` then hold both slots, so `queued` waits for a
    # slot when `bad` aborts the run.
    pb = playbook("""\
  - id: retrier
    needs: []
    retries: 3
    retry_delay: 20s
    run: "false"
  - id: bad
    needs: []
    on_failure: abort
    run: "sleep 0.5; exit 9"
  - id: running
    needs: []
    run: "sleep 1; touch running-done"
  - id: queued
    needs: []
    run: [touch, queued-ran]
  - id: dependent
    needs: [bad]
    run: [touch, dependent-ran]
  - id: pause
    needs: []
    wait: 20s
""", finally_="""\
  - id: fin
    run: [sh, -c, 'echo "status=$1"', sh, "${{ run.status }}"]
""")
    r = c.run(pb, "--jobs", "2", timeout=30)
    eq(r.rc, 1, f"exit status {r!r}")
    check(r.elapsed < 10, f"abort left a 20 s wait or retry delay running ({r.elapsed:.1f} s)")
    eq(r.inst_status("bad"), "failed", "the aborting step")
    eq(r.inst_status("running"), "succeeded", "a process already running finishes")
    check(os.path.exists(c.path("running-done")), "the running process was stopped")
    check(r.seq_of("step.finished", instance="bad") < r.seq_of("step.finished", instance="running"),
          "`running` ended before the abort: the test did not exercise it")
    eq(r.inst_status("queued"), "cancelled", "a step queued for a job slot")
    eq(r.inst_status("dependent"), "cancelled", "a pending step")
    eq(len(r.ev("step.started", instance="retrier")), 1, "attempts of the retrying step")
    eq(r.inst_status("retrier"), "cancelled", "a step waiting for its retry")
    eq(r.inst_status("pause"), "cancelled", "a running wait")
    check(not os.path.exists(c.path("queued-ran")) and not os.path.exists(c.path("dependent-ran")),
          "a step started after the abort")
    eq(r.inst_status("fin"), "succeeded", "the finally step")
    eq(r.log("fin.1.log"), "status=failed\n", "run.status seen by finally")
    eq(r.status(), "failed", "run status")


@test
def when_overrides_failed_need(c):
    # A cleanup step that runs exactly because its need failed.
    pb = playbook("""\
  - id: broken
    run: "exit 4"
  - id: cleanup
    when: "steps.broken.status == 'failed'"
    run: [echo, "cleanup after ${{ steps.broken.exit_code }}"]
  - id: normal
    needs: [broken]
    run: [touch, normal-ran]
""")
    r = c.run(pb)
    eq(r.rc, 1, f"exit status {r!r}")
    eq(r.inst_status("cleanup"), "succeeded", "a step whose when accepts a failed need")
    eq(r.log("cleanup.1.log"), "cleanup after 4\n", "exit_code of the failed need")
    eq(r.inst_status("normal"), "skipped", "a default-when dependent")


@test
def when_per_instance(c):
    pb = playbook("""\
  - id: fan
    for_each: [keep, drop, keep2]
    when: "item != 'drop'"
    run: [echo, "${{ item }} ${{ index }}"]
  - id: none
    for_each: [x, y]
    when: "item == 'z'"
    run: [touch, none-ran]
""")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.inst_status("fan[drop]"), "skipped", "instance whose when is false")
    eq(r.inst_status("fan[keep]"), "succeeded", "instance whose when is true")
    eq(r.log("fan.2.1.log"), "keep2 2\n", "item and index")
    eq(r.step_status("fan"), "succeeded", "a step with some instances skipped")
    eq(r.step_status("none"), "skipped", "a step whose every instance was skipped")


@test
def expression_error_at_run_time(c):
    pb = playbook("""\
  - id: bad
    run: [echo, "${{ number(inputs.n) }}"]
  - id: bad-when
    needs: []
    when: "number(inputs.n) > 1"
    run: [touch, when-ran]
""", head="inputs:\n  n: {default: 'not a number'}\n")
    r = c.run(pb)
    check(r.rc == 1, f"exit status {r!r}")
    for inst in ("bad", "bad-when"):
        f = r.finished(inst)
        eq(f.get("status"), "failed", f"status of {inst}")
        check("expression" in json.dumps(f), f"{inst}: reason `expression` not given: {f}")
        # It failed before anything started: it took no time.
        check(0 <= f["duration_ms"] < 1000, f"{inst}: duration_ms {f['duration_ms']}")
    check(not os.path.exists(c.path("when-ran")), "a step with a failing when ran")


# ---- 8. shell injection -------------------------------------------------------

NASTY = ("a; touch PWNED1 $(touch PWNED2) `touch PWNED3` \"dq\" 'sq' $HOME ${IRP_V1} \\ |&>"
         "\nsecond line; touch PWNED4 #")


def assert_no_pwned(c):
    for root, dirs, files in os.walk(c.dir):
        for f in files:
            check(not f.startswith("PWNED"), f"shell injection: {os.path.join(root, f)} exists")


@test
def shell_injection_inputs(c):
    pb = playbook("""\
  - id: plain
    run: |
      printf '%s\\n' ${{ inputs.x }} > out1
  - id: quoted
    run: |
      printf '%s\\n' "pre ${{ inputs.x }} post" > out2
  - id: argv-sh
    run: [sh, -c, 'printf "%s\\n" "$1" > out3', sh, "${{ inputs.x }}"]
  - id: argv
    run: [printf, "%s", "${{ inputs.x }}"]
""", head="inputs:\n  x: {required: true}\n")
    c.write("inputs.json", json.dumps({"x": NASTY}))
    for how in (["--inputs", c.path("inputs.json")], ["-i", "x=" + NASTY]):
        for f in ("out1", "out2", "out3"):
            if os.path.exists(c.path(f)):
                os.unlink(c.path(f))
        r = c.run(pb, *how)
        eq(r.rc, 0, f"exit status ({how[0]}) {r!r}")
        assert_no_pwned(c)
        with open(c.path("out1")) as fh:
            eq(fh.read(), NASTY + "\n", f"value in a string run ({how[0]})")
        with open(c.path("out2")) as fh:
            eq(fh.read(), "pre " + NASTY + " post\n", f"value inside double quotes ({how[0]})")
        with open(c.path("out3")) as fh:
            eq(fh.read(), NASTY + "\n", f"value through argv to sh ({how[0]})")
        eq(r.log("argv.1.log"), NASTY, f"value as one argv element ({how[0]})")
        eq(json.loads(r.read("inputs.json")), {"x": NASTY}, "inputs.json")


# ---- 9. secrets ----------------------------------------------------------------

def files_under(d):
    for root, dirs, files in os.walk(d):
        for f in files:
            yield os.path.join(root, f)


def assert_secret_absent(c, r, secret=SECRET):
    leaks = []
    for p in files_under(r.dir):
        with open(p, "rb") as f:
            data = f.read()
        if secret.encode() in data:
            leaks.append(os.path.relpath(p, r.dir))
    check(not leaks, f"the secret value appears in {leaks}")
    check(secret not in r.out and secret not in r.err, "the secret value appears on the terminal")


@test
def secret_redacted_and_not_inherited(c):
    pb = playbook("""\
  - id: use
    env:
      TOKEN_ENV: "${{ secrets.TOKEN }}"
      AUTH: "Bearer ${{ secrets.TOKEN }}"
    run: |
      echo "token is $TOKEN_ENV"
      env
      echo "inherited=${TOKEN:-absent}"
""", head="tlp: red\n")
    r = c.run(pb, env={"TOKEN": SECRET})
    eq(r.rc, 0, f"exit status {r!r}")
    assert_secret_absent(c, r)
    log = r.log("use.1.log")
    check("token is ***" in log, f"the log does not show *** for the secret: {log!r}")
    check("TOKEN_ENV=***" in log, "TOKEN_ENV missing from the child's environment")
    check("AUTH=Bearer ***" in log, "AUTH (derived from the secret) missing or not redacted")
    check("inherited=absent" in log, "the child inherited the secret's own variable TOKEN")
    check(not re.search(r"^TOKEN=", log, re.M), "TOKEN= in the child's environment")
    env = r.one("step.started", instance="use")["action"].get("env", {})
    eq(env.get("TOKEN_ENV"), "***", "TOKEN_ENV in step.started")
    check(SECRET not in json.dumps(env), "secret in step.started env")


@test
def secret_split_across_writes_redacted(c):
    pb = playbook("""\
  - id: slow-echo
    env: {TOKEN_ENV: "${{ secrets.TOKEN }}"}
    run: |
      printf '%s' "$TOKEN_ENV" | head -c 7
      sleep 0.3
      printf '%s\\n' "$TOKEN_ENV" | tail -c +8
      printf 'x%s' "$TOKEN_ENV" >&2
      sleep 0.3
      echo >&2
""")
    r = c.run(pb, env={"TOKEN": SECRET})
    eq(r.rc, 0, f"exit status {r!r}")
    assert_secret_absent(c, r)
    log = r.log("slow-echo.1.log")
    check("***" in log, f"no *** in the log: {log!r}")


@test
def secret_echoed_into_outputs_not_journaled(c):
    # A child writes the secret's value into $IRP_OUTPUT and to stdout; a
    # later step passes both on.  The value is the secret's own, so the
    # journal must show *** wherever it would appear (SPEC §1.2): in
    # step.finished outputs and in the next step.started argv.
    pb = playbook("""\
  - id: leak
    env: {TOKEN_ENV: "${{ secrets.TOKEN }}"}
    run: 'echo "tok=$TOKEN_ENV" >> "$IRP_OUTPUT"; echo "$TOKEN_ENV"'
  - id: reuse
    run: [sh, -c, 'echo "lengths ${#1} ${#2}"', sh, "${{ steps.leak.outputs.tok }}",
          "${{ steps.leak.stdout }}"]
""")
    r = c.run(pb, env={"TOKEN": SECRET})
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.log("reuse.1.log"), f"lengths {len(SECRET)} {len(SECRET) + 1}\n",
       "values passed on to the next step")
    assert_secret_absent(c, r)


@test
def secret_in_run_refused(c):
    for run in ('[echo, "${{ secrets.TOKEN }}"]', '"echo ${{ secrets.TOKEN }}"'):
        r = c.run(playbook(f"  - id: a\n    run: {run}\n"), env={"TOKEN": SECRET})
        eq(r.rc, 2, f"exit status for a secret in run: {run} {r!r}")
        check(SECRET not in r.out + r.err, "the secret value on the terminal")
        c.no_run_dir()


@test
def secret_missing_stops_before_start(c):
    pb = playbook("""\
  - id: use
    env: {TOKEN_ENV: "${{ secrets.TOKEN }}"}
    run: [touch, ran]
""")
    r = c.run(pb, env=None)
    eq(r.rc, 2, f"exit status with a missing secret {r!r}")
    check("TOKEN" in r.err, f"stderr does not name the missing secret: {r.err!r}")
    c.no_run_dir()
    check(not os.path.exists(c.path("ran")), "a step ran")


# ---- 10. durability --------------------------------------------------------------

DURABLE_CHECK = r"""
import json, os, sys
path = os.path.join(os.environ["IRP_RUN_DIR"], "journal.jsonl")
data = open(path, "rb").read()
inst, att = os.environ["IRP_INSTANCE"], int(os.environ["IRP_ATTEMPT"])
found = [l for l in data.split(b"\n")[:-1]
         if json.loads(l).get("event") == "step.started"
         and json.loads(l).get("instance") == inst and json.loads(l).get("attempt") == att]
print("found" if found else "missing", inst, att)
if not found:
    sys.exit(3)
if inst.endswith("[q]") and att == 1:
    sys.exit(1)
"""


@test
def durability_started_visible_to_child(c):
    c.write("check.py", DURABLE_CHECK)
    pb = playbook(f"""\
  - id: single
    run: [{sys.executable}, {c.path("check.py")}]
  - id: fan
    for_each: [p, q, r]
    retries: 1
    retry_delay: 10ms
    run: [{sys.executable}, {c.path("check.py")}]
""")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.log("single.1.log"), "found single 1\n", "the child's view of its step.started")
    for i, item in enumerate("pqr"):
        eq(r.log(f"fan.{i}.1.log"), f"found fan[{item}] 1\n", f"fan[{item}] attempt 1")
    eq(r.log("fan.1.2.log"), "found fan[q] 2\n", "fan[q] attempt 2")


@test
def durability_fsync_before_spawn(c):
    """Under strace: the write of step.started (with the lines made in the
    same turn of the loop, written together) and an fsync/fdatasync that
    completes after it both come before the child's execve."""
    strace = shutil.which("strace")
    if not strace:
        raise Skip("strace not installed")
    pb = playbook("""\
  - id: marker
    run: [echo, durability-marker-1]
  - id: marker2
    run: [echo, durability-marker-2]
""")
    argv = [strace, "-f", "-qq", "-s", "8192", "-o", c.path("trace"),
            "-e", "trace=write,pwrite64,writev,fsync,fdatasync,execve"] + c.argv(pb, [])
    try:
        # LeakSanitizer cannot run under ptrace; the trace is what counts here.
        p = subprocess.run(argv, cwd=c.dir, env=c.env({"ASAN_OPTIONS": "detect_leaks=0"}),
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Failure("irp under strace did not end in 60 s")
    if p.returncode != 0 and b"ptrace" in p.stderr:
        raise Skip("ptrace not permitted here")
    eq(p.returncode, 0, f"exit status under strace: {p.stderr.decode()[-2000:]}")
    with open(c.path("trace")) as f:
        trace = f.read().splitlines()
    for n in (1, 2):
        inst = f"marker{'' if n == 1 else '2'}"
        w = next((i for i, line in enumerate(trace)
                  if "step.started" in line and f'\\"instance\\":\\"{inst}\\"' in line), None)
        check(w is not None, f"no write of step.started for {inst} in the trace")
        x = next((i for i, line in enumerate(trace)
                  if "execve(" in line and f"durability-marker-{n}" in line), None)
        check(x is not None, f"no execve of {inst}'s command in the trace")
        check(w < x, f"{inst}: command executed before its step.started was written")
        fd = re.match(r"\d+ +write\((\d+),", trace[w])
        check(fd, f"step.started not written with write(): {trace[w][:200]}")
        fd = fd.group(1)
        synced, pending = [], {}
        for i in range(w + 1, x):
            pid = trace[i].split()[0]
            m = re.search(r"\b(fsync|fdatasync)\((\d+)(\) += 0| <unfinished)", trace[i])
            if m and m.group(2) == fd:
                if m.group(3).startswith(")"):
                    synced.append(i)
                else:
                    pending[pid] = True
            elif pending.get(pid) and re.search(r"<\.\.\. (fsync|fdatasync) resumed>.*= 0",
                                                trace[i]):
                synced.append(i)
        check(synced, f"{inst}: no completed fsync between the write of step.started "
              f"(trace line {w + 1}) and the execve (line {x + 1})")


# ---- 11. exit codes, usage, signals -----------------------------------------------

@test
def exit_invalid_playbook(c):
    r = c.run("irp: 1\nid: bad\ntitle: Bad\nsteps:\n  - id: x\n    runn: [true]\n")
    eq(r.rc, 2, f"exit status for an invalid playbook {r!r}")
    check(re.search(r"pb\.yaml:\d+:\d+: error: ", r.err), f"no located diagnostic: {r.err!r}")
    c.no_run_dir()
    r = c.run(c.path("does-not-exist.yaml"))
    eq(r.rc, 2, f"exit status for a missing playbook {r!r}")
    c.no_run_dir()


@test
def exit_missing_required_input(c):
    pb = playbook("  - id: a\n    run: [echo, '${{ inputs.case }}']\n",
                  head="inputs:\n  case: {required: true}\n")
    r = c.run(pb)
    eq(r.rc, 2, f"exit status {r!r}")
    check("case" in r.err, f"stderr does not name the input: {r.err!r}")
    c.no_run_dir()


@test
def exit_pattern_mismatch(c):
    pb = playbook("  - id: a\n    run: [echo, '${{ inputs.case }}']\n",
                  head="inputs:\n  case:\n    required: true\n    pattern: '^INC-[0-9]{4}$'\n")
    r = c.run(pb, "-i", "case=INC-12")
    eq(r.rc, 2, f"exit status for a pattern mismatch {r!r}")
    check("case" in r.err, f"stderr does not name the input: {r.err!r}")
    c.no_run_dir()
    r = c.run(pb, "-i", "case=INC-1234")
    eq(r.rc, 0, f"exit status for a matching input {r!r}")


@test
def exit_unknown_option(c):
    pb = playbook("  - id: a\n    run: [touch, ran]\n")
    r = c.run(pb, "--no-such-option")
    eq(r.rc, 2, f"exit status for an unknown option {r!r}")
    check("--no-such-option" in r.err, f"stderr does not name the option: {r.err!r}")
    check(not os.path.exists(c.path("ran")), "a step ran")
    r = c.run(pb, "--jobs", "0")
    eq(r.rc, 2, f"exit status for --jobs 0 {r!r}")
    r = c.run(pb, "--jobs")
    eq(r.rc, 2, f"exit status for --jobs without a value {r!r}")
    c.no_run_dir()


@test
def confirm_without_terminal_fails_at_once(c):
    """SPEC §2: with no answer and no terminal, a step that needs an
    operator fails at once with a message naming it and how to answer."""
    pb = playbook("  - id: a\n    confirm: Really?\n    run: [touch, ran]\n"
                  "  - id: b\n    needs: []\n    run: [touch, b-ran]\n")
    argv = [IRP, "run", c.write("pb.yaml", pb), "--runs", c.runs]
    # A new session has no controlling terminal: /dev/tty cannot be opened.
    p = subprocess.run(argv, cwd=c.dir, capture_output=True, timeout=RUN_TIMEOUT,
                       stdin=subprocess.DEVNULL, start_new_session=True)
    eq(p.returncode, 1, f"exit status {p.stderr!r}")
    check(b"'a'" in p.stderr and b"--yes" in p.stderr, f"message names the step and --yes: {p.stderr!r}")
    check(not os.path.exists(c.path("ran")), "the unconfirmed step ran")
    check(os.path.exists(c.path("b-ran")), "an independent step did not run")
    r = c.run(pb, "--yes")
    eq(r.rc, 0, f"exit status for confirm with --yes {r!r}")
    check(os.path.exists(c.path("ran")), "the confirmed step did not run")
    ans = [e for e in r.events if e["event"] == "step.answered"]
    eq([(e["step"], e["answer"], e["via"]) for e in ans], [("a", "yes", "--yes")], "answers")


@test
def confirm_on_terminal(c):
    """A real terminal (tmux): yes runs every instance, no skips the step
    with who declined, a second question waits its turn while a step runs."""
    if not shutil.which("tmux"):
        raise Skip("tmux is not installed")
    pb = playbook("  - id: bg\n    needs: []\n    run: [sleep, '1']\n"
                  "  - id: iso\n    needs: []\n    confirm: Cut them off?\n"
                  "    for_each: [h1, h2]\n    run: [touch, '${{ item }}']\n"
                  "  - id: second\n    needs: []\n    confirm: true\n    run: [touch, two]\n")
    f = c.write("pb.yaml", pb)
    sock = c.path("tmux.sock")
    done = c.path("done")
    cmd = f"{IRP} run {f} --runs {c.runs} --operator alice; echo $? > {done}"
    tmux = ["tmux", "-S", sock]
    subprocess.run(tmux + ["new-session", "-d", "-x", "120", "-y", "40", "-c", c.dir, cmd],
                   check=True, timeout=10)
    try:
        def screen():
            return subprocess.run(tmux + ["capture-pane", "-p"], capture_output=True,
                                  text=True, timeout=10).stdout
        def wait_for(text):
            deadline = time.monotonic() + 10
            while text not in screen():
                check(time.monotonic() < deadline, f"{text!r} never appeared: {screen()!r}")
                time.sleep(0.05)
        wait_for("Cut them off? [y/N/o = one by one]")
        subprocess.run(tmux + ["send-keys", "y", "Enter"], check=True, timeout=10)
        wait_for("(second)? [y/N]")
        subprocess.run(tmux + ["send-keys", "n", "Enter"], check=True, timeout=10)
        deadline = time.monotonic() + 15
        while not os.path.exists(done):
            check(time.monotonic() < deadline, f"irp did not end: {screen()!r}")
            time.sleep(0.05)
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True, timeout=10)
    with open(done) as fh:
        eq(fh.read().strip(), "0", "exit status")
    check(os.path.exists(c.path("h1")) and os.path.exists(c.path("h2")), "confirmed instances ran")
    check(not os.path.exists(c.path("two")), "the declined step ran")
    run = [d for d in os.listdir(c.runs)][0]
    with open(os.path.join(c.runs, run, "journal.jsonl")) as fh:
        events = [json.loads(line) for line in fh]
    ans = [(e["step"], e["answer"], e["operator"], e["via"]) for e in events
           if e["event"] == "step.answered"]
    eq(ans, [("iso", "yes", "alice", "terminal"), ("second", "no", "alice", "terminal")], "answers")
    check(all(e.get("response_ms", -1) >= 0 for e in events if e["event"] == "step.answered"),
          "response_ms")
    skipped = [e for e in events if e["event"] == "step.skipped" and e["step"] == "second"]
    eq(skipped[0]["reason"], "declined by alice", "skip reason")
    prompted = [e["step"] for e in events if e["event"] == "step.prompted"]
    eq(sorted(prompted), ["iso", "second"], "prompted once per step")


def run_detached(c, pb, *args):
    """irp run in a new session: no controlling terminal, so nothing can
    be asked on /dev/tty."""
    argv = c.argv(pb, args)
    p = subprocess.run(argv, cwd=c.dir, env=c.env(), capture_output=True,
                       timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return Run(p.returncode, p.stdout.decode("utf-8", "replace"),
               p.stderr.decode("utf-8", "replace"), 0, c.dir)


ANSWERS_PB = playbook(
    "  - id: iso\n    needs: []\n    confirm: Cut them off?\n"
    "    for_each: [h1, h2, h3]\n    run: [touch, '${{ item }}']\n"
    "  - id: wipe\n    needs: []\n    confirm: true\n    run: [touch, wiped]\n")


@test
def answers_file_instance_before_step(c):
    """SPEC §2: --answers maps instances and steps to answers; an
    instance's own answer comes before its step's; a note is journaled."""
    ans = c.write("ans.yaml", 'iso[h2]: "no"\niso: "yes"\n'
                              'wipe: { answer: "no", note: Legal says keep the disks }\n')
    r = run_detached(c, ANSWERS_PB, "--answers", ans, "--operator", "bob")
    eq(r.rc, 0, f"exit status {r!r}")
    check(os.path.exists(c.path("h1")) and os.path.exists(c.path("h3")), "h1/h3 did not run")
    check(not os.path.exists(c.path("h2")), "declined instance ran")
    check(not os.path.exists(c.path("wiped")), "declined step ran")
    got = [(e["step"], e.get("instance"), e["answer"], e["via"], e.get("note"), e["operator"])
           for e in r.ev("step.answered")]
    eq(sorted(got, key=str), sorted([
        ("iso", "iso[h2]", "no", "answers-file", None, "bob"),
        ("iso", None, "yes", "answers-file", None, "bob"),
        ("wipe", None, "no", "answers-file", "Legal says keep the disks", "bob")], key=str),
       "answers journaled")
    eq(r.ev("step.prompted"), [], "nothing asked")
    eq(r.inst_status("iso[h2]"), "skipped", "declined instance")
    check("declined by bob" in r.one("step.skipped", instance="iso[h2]")["reason"], "reason")
    eq(r.one("step.skipped", step="wipe")["reason"], "declined by bob", "step declined")
    eq(r.inst_status("iso[h1]"), "succeeded", "h1")


@test
def answers_file_partial_then_yes_or_failure(c):
    """Instances the file leaves open go to --yes; without it and without
    a terminal they fail at once, naming the instance and how to answer."""
    ans = c.write("ans.yaml", 'iso[h1]: "yes"\nwipe: "yes"\n')
    r = run_detached(c, ANSWERS_PB, "--answers", ans)
    eq(r.rc, 1, f"exit status {r!r}")
    check(os.path.exists(c.path("h1")) and os.path.exists(c.path("wiped")), "answered ran")
    check(not os.path.exists(c.path("h2")) and not os.path.exists(c.path("h3")), "unanswered ran")
    for i in ("iso[h2]", "iso[h3]"):
        eq(r.inst_status(i), "failed", i)
        check(i in r.err and "--answers" in r.err and "--yes" in r.err,
              f"message names {i} and how to answer: {r.err!r}")
    r = run_detached(c, ANSWERS_PB, "--answers", ans, "--yes")
    eq(r.rc, 0, f"exit status with --yes {r!r}")
    vias = sorted((e.get("instance") or e["step"], e["via"]) for e in r.ev("step.answered"))
    eq(vias, [("iso", "--yes"), ("iso[h1]", "answers-file"), ("wipe", "answers-file")], "vias")
    check(os.path.exists(c.path("h3")), "h3 answered by --yes did not run")


@test
def answers_file_errors_located(c):
    """Every problem in an answers file is reported with its position, in
    one pass, and nothing runs (exit 2)."""
    pb = ANSWERS_PB + "  - id: plain\n    run: [touch, plain]\n"
    ans = c.write("ans.yaml", 'nope: "yes"\niso: maybe\nplain: "yes"\n'
                              'wipe[x]: "yes"\niso[h1]: { answer: "yes", color: red }\n'
                              'iso[h2]: { note: only a note }\n')
    r = run_detached(c, pb, "--answers", ans)
    eq(r.rc, 2, f"exit status {r!r}")
    for line, col, text in ((1, 1, "no step 'nope'"), (2, 6, "\"yes\" or \"no\""),
                            (3, 1, "asks nothing"), (4, 1, "no for_each"),
                            (5, 27, "unknown key 'color'"), (6, 10, "no answer given")):
        check(re.search(rf"ans\.yaml:{line}:{col}: error: .*{re.escape(text)}", r.err),
              f"no diagnostic at ans.yaml:{line}:{col} with {text!r}: {r.err!r}")
    check(not os.path.exists(c.runs), "a run directory was created")
    c.write("list.yaml", "- iso\n")
    r = run_detached(c, pb, "--answers", c.path("list.yaml"))
    eq(r.rc, 2, f"exit status for a list {r!r}")
    check("list.yaml:1:1: error: an answers file is a mapping" in r.err, r.err)
    r = run_detached(c, pb, "--answers", c.path("missing.yaml"))
    eq(r.rc, 2, f"exit status for a missing file {r!r}")
    check("missing.yaml" in r.err and "cannot read" in r.err, r.err)


@test
def answers_file_unused_instance_warns(c):
    ans = c.write("ans.yaml", 'iso: "yes"\niso[h9]: "no"\nwipe: "no"\n')
    r = run_detached(c, ANSWERS_PB, "--answers", ans)
    eq(r.rc, 0, f"exit status {r!r}")
    check(re.search(r"ans\.yaml:2:1: warning: 'iso\[h9\]' matched no instance", r.err), r.err)


MANUAL_PB = playbook(
    "  - id: brief\n    manual: Brief the Registrar.\n"
    "  - id: after\n    run: [touch, '${{ steps.brief.outputs.answer }}']\n"
    "  - id: optional\n    needs: []\n"
    "    manual: { prompt: Call the insurer, choices: [called, skip], assignee: Legal }\n")


@test
def manual_steps_from_answers_file(c):
    """SPEC §1.1: a manual step's answer (from --answers here) decides
    its status; others succeed with outputs.answer; the note is kept."""
    ans = c.write("ans.yaml", "brief: { answer: done, note: Briefed by phone }\n"
                              "optional: skip\n")
    r = run_detached(c, MANUAL_PB, "--answers", ans, "--operator", "carol")
    eq(r.rc, 0, f"exit status {r!r}")
    check(os.path.exists(c.path("done")), "the dependent did not see outputs.answer")
    eq(r.inst_status("brief"), "succeeded", "brief")
    eq(r.inst_status("optional"), "skipped", "a manual step answered skip")
    a = r.one("step.answered", step="brief")
    eq((a["about"], a["answer"], a["note"], a["via"], a["operator"]),
       ("manual", "done", "Briefed by phone", "answers-file", "carol"), "answer journaled")
    eq(r.one("step.finished", step="brief")["outputs"], {"answer": "done"}, "outputs")
    eq(r.one("step.started", step="optional")["action"],
       {"prompt": "Call the insurer", "choices": ["called", "skip"], "assignee": "Legal"},
       "action journaled")
    c.write("ans.yaml", "brief: failed\noptional: called\n")
    r = run_detached(c, MANUAL_PB, "--answers", ans)
    eq(r.rc, 1, f"exit status for a manual step answered failed {r!r}")
    eq(r.inst_status("brief"), "failed", "brief")
    eq(r.inst_status("after"), "skipped", "dependent of a failed manual step")


@test
def manual_without_terminal_fails_at_once(c):
    t0 = time.monotonic()
    r = run_detached(c, MANUAL_PB)
    eq(r.rc, 1, f"exit status {r!r}")
    check(time.monotonic() - t0 < 10, "did not fail at once")
    for step in ("brief", "optional"):
        eq(r.inst_status(step), "failed", step)
        check(f"'{step}'" in r.err and "--answers" in r.err and "irp answer" in r.err,
              f"message names {step} and how to answer: {r.err!r}")


class Tmux:
    """irp run inside a tmux session: a real terminal the test types into."""

    def __init__(self, c, args):
        self.c = c
        self.sock = c.path("tmux.sock")
        self.done = c.path("done.rc")
        self.tmux = ["tmux", "-S", self.sock]
        cmd = " ".join([IRP, "run"] + args + ["--runs", c.runs]) + f"; echo $? > {self.done}"
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

    def hang_up(self):
        subprocess.run(self.tmux + ["kill-server"], capture_output=True, timeout=10)

    def wait_done(self, timeout=20):
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.done):
            check(time.monotonic() < deadline, f"irp did not end: {self.screen()!r}")
            time.sleep(0.05)
        with open(self.done) as fh:
            return int(fh.read().strip())


def journal_events(c):
    run = os.listdir(c.runs)[0]
    with open(os.path.join(c.runs, run, "journal.jsonl")) as fh:
        return os.path.join(c.runs, run), [json.loads(line) for line in fh if line.endswith("\n")]


@test
def manual_and_one_by_one_on_terminal(c):
    """A real terminal: a manual step answered by number with a note, and
    a for_each confirmation answered one instance at a time, while a
    command step runs."""
    if not shutil.which("tmux"):
        raise Skip("tmux is not installed")
    pb = c.write("pb.yaml", playbook(
        "  - id: bg\n    needs: []\n    run: [sleep, '1']\n"
        "  - id: brief\n    needs: []\n    manual: Brief the Registrar.\n"
        "  - id: iso\n    needs: []\n    confirm: Cut them off?\n"
        "    for_each: [h1, h2]\n    run: [touch, '${{ item }}']\n"))
    t = Tmux(c, [pb, "--operator", "dave"])
    try:
        t.wait_for("Cut them off? [y/N/o = one by one]")
        t.wait_for("(waiting: [brief] Brief the Registrar.)")
        t.type("o", "Enter")
        t.wait_for("1) done 2) failed 3) skip")
        t.type("1", "Enter")
        t.wait_for("note for brief")
        t.type("called at 10:02", "Enter")
        t.wait_for("[iso[h1]]")
        t.type("y", "Enter")
        t.wait_for("[iso[h2]]")
        t.type("n", "Enter")
        eq(t.wait_done(), 0, "exit status")
    finally:
        t.hang_up()
    check(os.path.exists(c.path("h1")) and not os.path.exists(c.path("h2")), "one by one")
    _, events = journal_events(c)
    got = [(e["step"], e.get("instance"), e["answer"], e.get("note"), e["via"], e["operator"])
           for e in events if e["event"] == "step.answered"]
    eq(got, [("iso", None, "one by one", None, "terminal", "dave"),
             ("brief", "brief", "done", "called at 10:02", "terminal", "dave"),
             ("iso", "iso[h1]", "yes", None, "terminal", "dave"),
             ("iso", "iso[h2]", "no", None, "terminal", "dave")], "answers")


@test
def irp_answer_after_the_terminal_is_lost(c):
    """SIGHUP: the run goes on without its terminal, and `irp answer`
    from elsewhere answers its open question; a manual step's timeout
    bounds the wait for an answer."""
    if not shutil.which("tmux"):
        raise Skip("tmux is not installed")
    pb = c.write("pb.yaml", playbook(
        "  - id: brief\n    manual: Brief the Registrar.\n"
        "  - id: after\n    run: [touch, '${{ steps.brief.outputs.answer }}']\n"
        "  - id: late\n    needs: []\n    timeout: 3s\n    manual: Nobody answers this.\n"))
    t = Tmux(c, [pb])
    try:
        t.wait_for("Brief the Registrar.")
    finally:
        t.hang_up()                    # the terminal goes away: SIGHUP
    d, _ = journal_events(c)
    time.sleep(0.3)
    p = subprocess.run([IRP, "answer", d, "brief", "maybe"], capture_output=True, text=True,
                       timeout=RUN_TIMEOUT)
    eq(p.returncode, 2, f"not a choice: {p.stderr}")
    check("not one of the choices" in p.stderr, p.stderr)
    p = subprocess.run([IRP, "answer", d, "nope", "done"], capture_output=True, text=True,
                       timeout=RUN_TIMEOUT)
    eq(p.returncode, 2, f"no such question: {p.stderr}")
    p = subprocess.run([IRP, "answer", d, "brief", "done", "--note", "from the phone",
                        "--operator", "erin"], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    eq(p.returncode, 0, f"irp answer: {p.stderr}")
    deadline = time.monotonic() + 20
    while True:
        _, events = journal_events(c)
        if events and events[-1]["event"] == "run.finished":
            break
        check(time.monotonic() < deadline, f"the run did not end: {events[-3:]}")
        time.sleep(0.1)
    check(os.path.exists(c.path("done")), "the answer did not reach the run")
    a = [e for e in events if e["event"] == "step.answered"]
    eq([(e["step"], e["answer"], e["note"], e["via"], e["operator"]) for e in a],
       [("brief", "done", "from the phone", "irp-answer", "erin")], "answers")
    late = [e for e in events if e["event"] == "step.finished" and e["step"] == "late"]
    eq([e["status"] for e in late], ["timed_out"], "unanswered manual step with a timeout")
    eq(events[-1]["status"], "failed", "run status")
    p = subprocess.run([IRP, "answer", d, "brief", "done"], capture_output=True, text=True,
                       timeout=RUN_TIMEOUT)
    eq(p.returncode, 2, f"answering a run that ended: {p.stderr}")
    check("not a live run" in p.stderr, p.stderr)


def deadline_pb(deadlines, steps):
    return playbook(steps, head=f"deadlines:\n{deadlines}")


@test
def deadline_met_warned_missed_at_their_moment(c):
    """SPEC §4: met before due with its margin; a warning at due −
    warn_before and a miss at due, each at that moment (clock timers)."""
    pb = deadline_pb(
        "  - id: quick\n    within: 10s\n    from: start\n    met_by: a\n"
        "  - id: slow\n    within: 1500ms\n    from: start\n    warn_before: 1s\n    met_by: b\n",
        "  - id: a\n    run: [\"true\"]\n"
        "  - id: b\n    needs: []\n    run: [sleep, '2.5']\n")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    start = ts_ms(r.one("run.started")["ts"])
    dl = {d["id"]: d for d in r.one("run.started")["deadlines"]}
    eq(ts_ms(dl["quick"]["due"]) - start, 10000, "quick's due time")
    met = r.one("deadline.met", deadline="quick")
    check(0 < met["margin_ms"] <= 10000, f"margin {met}")
    eq(met["due"], dl["quick"]["due"], "met event's due")
    warn = r.one("deadline.warning", deadline="slow")
    check(abs(ts_ms(warn["ts"]) - (start + 500)) < 300, f"warning at due - warn_before: {warn}")
    miss = r.one("deadline.missed", deadline="slow")
    check(abs(ts_ms(miss["ts"]) - (start + 1500)) < 300, f"missed at due: {miss}")
    eq(r.ev("deadline.met", deadline="slow"), [], "a missed deadline is not met later")
    eq(r.ev("deadline.open"), [], "nothing left open")


@test
def deadline_from_detection_step_and_open_at_end(c):
    """`from: detected` two days ago is missed at once; `from: STEP` starts
    when that step finishes; a failure (even ignored) does not meet a
    deadline, which is then open when the run ends, on its last lines."""
    pb = deadline_pb(
        "  - id: nis2\n    within: 24h\n    from: detected\n    met_by: warn\n"
        "  - id: gdpr\n    within: 72h\n    from: a\n    met_by: report\n",
        "  - id: a\n    run: [sleep, '0.3']\n"
        "  - id: warn\n    run: [\"true\"]\n"
        "  - id: report\n    on_failure: ignore\n    run: [\"false\"]\n")
    detected = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
    r = c.run(pb, "--detected-at", detected.strftime("%Y-%m-%dT%H:%M:%SZ"))
    eq(r.rc, 0, f"exit status {r!r}")
    start = ts_ms(r.one("run.started")["ts"])
    miss = r.one("deadline.missed", deadline="nis2")
    check(ts_ms(miss["ts"]) - start < 1000, "a deadline already past is missed at once")
    eq(r.ev("deadline.met", deadline="nis2"), [], "met after it was missed")
    a_done = ts_ms(r.finished("a")["ts"])
    opened = r.one("deadline.open", deadline="gdpr")
    eq(ts_ms(opened["due"]) - a_done, 72 * 3600 * 1000, "due from the step's finish")
    check(re.search(r"^deadline gdpr still open: due \S+Z", r.out, re.M),
          f"open deadline not on the run's last lines: {r.out!r}")


@test
def deadline_from_the_detected_at_input(c):
    """SPEC §1.2: without --detected-at, the input detected_at is when the
    incident was detected; --detected-at wins over it."""
    pb = playbook("  - id: a\n    run: [\"true\"]\n",
                  head="inputs:\n  detected_at: { type: time }\n"
                       "deadlines:\n  - { id: d, within: 24h, from: detected, met_by: a }\n")
    r = c.run(pb, "-i", "detected_at=2026-11-29T10:00:00+01:00")
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.one("run.started")["detected_at"], "2026-11-29T09:00:00.000Z", "detected_at")
    eq(r.one("run.started")["deadlines"][0]["due"], "2026-11-30T09:00:00.000Z", "due")
    r = c.run(pb, "-i", "detected_at=2026-11-29T10:00:00+01:00",
              "--detected-at", "2026-11-29T08:00:00Z")
    eq(r.one("run.started")["detected_at"], "2026-11-29T08:00:00.000Z", "--detected-at wins")


@test
def deadline_values_in_expressions(c):
    pb = deadline_pb(
        "  - id: d\n    within: 1h\n    from: start\n    met_by: first\n",
        "  - id: before\n    needs: []\n    run: [echo, '${{ deadlines.d.status }}', "
        "'${{ deadlines.d.remaining > 3500 }}']\n"
        "  - id: first\n    needs: [before]\n    run: [\"true\"]\n"
        "  - id: after\n    run: [echo, '${{ deadlines.d.status }}', '${{ deadlines.d.due }}']\n")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.log("before.1.log"), "running true\n", "before it is met")
    due = r.one("run.started")["deadlines"][0]["due"]
    eq(r.log("after.1.log"), f"met {due}\n", "after it is met")


@test
def drill_playbook_from_the_readme(c):
    """The README's quick start runs playbooks/drill.yaml: it must succeed
    on any machine, meet its deadline, and leave evidence that verifies."""
    src = os.environ.get("IRP_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
    r = c.run(os.path.join(src, "playbooks", "drill.yaml"))
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.status(), "succeeded", "run status")
    r.one("deadline.met", deadline="first-snapshot")
    eq(sorted(e["item"] for e in r.ev("evidence.collected")), ["os-release", "processes.txt"],
       "evidence")
    p = subprocess.run([IRP, "verify", r.dir], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    eq(p.returncode, 0, f"irp verify: {p.stdout}{p.stderr}")


@test
def command_found_on_path_again_after_it_moves(c):
    """A command named without '/' is found on irp's PATH once and
    remembered; when it is gone from there, it is looked up again."""
    a, b = c.path("a"), c.path("b")
    for d, word in ((a, "from-a"), (b, "from-b")):
        os.makedirs(d)
        with open(os.path.join(d, "irp-test-tool"), "w") as f:
            f.write(f"#!/bin/sh\necho {word}\n")
        os.chmod(os.path.join(d, "irp-test-tool"), 0o755)
    pb = playbook("  - id: one\n    run: [irp-test-tool]\n"
                  f"  - id: gone\n    run: [rm, {a}/irp-test-tool]\n"
                  "  - id: two\n    run: [irp-test-tool]\n")
    r = c.run(pb, env={"PATH": f"{a}:{b}:" + os.environ.get("PATH", "/usr/bin:/bin")})
    eq(r.rc, 0, f"exit status {r!r}")
    eq((r.log("one.1.log"), r.log("two.1.log")), ("from-a\n", "from-b\n"), "which tool ran")


@test
def exit_success(c):
    r = c.run(playbook("  - id: a\n    run: [echo, hi]\n"))
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.status(), "succeeded", "run status")
    eq(r.log("a.1.log"), "hi\n", "log")
    r = c.run(playbook("  - id: a\n    run: [echo, hi]\n",
                       finally_="  - id: fin\n    run: [echo, '${{ run.status }}']\n"))
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.log("fin.1.log"), "succeeded\n", "run.status seen by finally")


@test
def journal_full_exits_4(c):
    """SPEC §3: a journal that cannot be written stops new work, skips
    finally, names the cause and exits 4; the chain stays whole."""
    small = c.path("small")
    os.makedirs(small)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", small],
                      capture_output=True).returncode != 0:
        raise Skip("cannot mount a small tmpfs (needs root)")
    try:
        marker = c.path("finally-ran")
        steps = "".join(f"  - id: s{i}\n    needs: []\n    run: [\"true\"]\n" for i in range(800))
        pb = playbook(steps, finally_=f"  - id: fin\n    run: [touch, {marker}]\n")
        argv = [IRP, "run", c.write("pb.yaml", pb), "--runs", small, "--jobs", "4"]
        p = subprocess.run(argv, cwd=c.dir, capture_output=True, timeout=RUN_TIMEOUT,
                           stdin=subprocess.DEVNULL)
        eq(p.returncode, 4, f"exit status; stderr {p.stderr[-300:]!r}")
        check(b"journal" in p.stderr, f"stderr names the journal: {p.stderr[-300:]!r}")
        check(not os.path.exists(marker), "finally ran although the journal was full")
        runs = [d for d in os.listdir(small) if os.path.isdir(os.path.join(small, d))]
        eq(len(runs), 1, "one run directory")
        with open(os.path.join(small, runs[0], "journal.jsonl"), "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        check(lines[-1] == b"", "the journal ends with a whole line")
        prev = "0" * 64
        for n, line in enumerate(lines[:-1], 1):
            ev = json.loads(line)
            eq(ev["seq"], n, "seq")
            eq(ev["prev"], prev, f"prev of line {n}")
            prev = hashlib.sha256(line).hexdigest()
        check(b"run.finished" not in data, "run.finished cannot have been written")
    finally:
        subprocess.run(["umount", "-l", small], capture_output=True)


SIGINT_PB = """\
  - id: long
    run: "sleep SECS; touch long-done"
  - id: dependent
    run: [touch, dependent-ran]
"""
SIGINT_FIN = """\
  - id: fin
    run: [sh, -c, 'echo "status=$1" > fin-status', sh, "${{ run.status }}"]
"""


@test
def sigint_once(c):
    p = c.spawn(playbook(SIGINT_PB.replace("SECS", "2"), finally_=SIGINT_FIN))
    t0 = time.monotonic()
    try:
        c.wait_for(lambda e: e["event"] == "step.spawned" and e.get("instance") == "long",
                   what="step.spawned of long")
        os.kill(p.pid, signal.SIGINT)
        r = c.collect(p, t0)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eq(r.rc, 3, f"exit status after Ctrl-C {r!r}")
    r.need_dir()
    check(os.path.exists(c.path("long-done")), "Ctrl-C once stopped the running command")
    check(r.elapsed >= 1.8, f"irp ended {r.elapsed:.1f} s after start: it did not wait for "
          "the running command")
    eq(r.inst_status("dependent"), "cancelled", "the pending dependent")
    check(not os.path.exists(c.path("dependent-ran")), "the dependent ran")
    eq(r.inst_status("long"), "succeeded", "the command already running")
    eq(r.inst_status("fin"), "succeeded", "the finally step")
    with open(c.path("fin-status")) as fh:
        eq(fh.read(), "status=interrupted\n", "run.status seen by finally")
    eq(r.status(), "interrupted", "run.finished status")
    check(r.ev("run.interrupted"), "no run.interrupted event")


@test
def sigint_twice(c):
    p = c.spawn(playbook(SIGINT_PB.replace("SECS", "30"), finally_=SIGINT_FIN))
    t0 = time.monotonic()
    try:
        evs = c.wait_for(lambda e: e["event"] == "step.spawned" and e.get("instance") == "long",
                         what="step.spawned of long")
        pgid = next(e for e in evs if e["event"] == "step.spawned").get("pgid")
        os.kill(p.pid, signal.SIGINT)
        time.sleep(0.3)
        check(p.poll() is None, "irp ended after one Ctrl-C with a command still running")
        t1 = time.monotonic()
        os.kill(p.pid, signal.SIGINT)
        r = c.collect(p, t0, timeout=20)
        after = time.monotonic() - t1
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eq(r.rc, 3, f"exit status after Ctrl-C twice {r!r}")
    check(after < 2.0, f"irp took {after:.1f} s to stop the `sleep 30` after the second Ctrl-C")
    if pgid:
        try:
            os.killpg(pgid, 0)
            alive = any(not process_gone(int(d)) for d in os.listdir("/proc") if d.isdigit()
                        and os.getpgid(int(d)) == pgid)
        except (ProcessLookupError, PermissionError):
            alive = False
        check(not alive, f"process group {pgid} of the command still alive")
    check(not os.path.exists(c.path("long-done")), "the command ran to its end")
    eq(r.inst_status("dependent"), "cancelled", "the pending dependent")
    eq(r.status(), "interrupted", "run.finished status")
    eq(r.inst_status("long"), "cancelled",
       "a command stopped by Ctrl-C (SPEC §1.4: cancelled = stopped by an abort or Ctrl-C)")


@test
def sigterm_acts_as_ctrl_c(c):
    p = c.spawn(playbook(SIGINT_PB.replace("SECS", "1"), finally_=SIGINT_FIN))
    t0 = time.monotonic()
    try:
        c.wait_for(lambda e: e["event"] == "step.spawned" and e.get("instance") == "long",
                   what="step.spawned of long")
        os.kill(p.pid, signal.SIGTERM)
        r = c.collect(p, t0)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eq(r.rc, 3, f"exit status after SIGTERM {r!r}")
    eq(r.inst_status("dependent"), "cancelled", "the pending dependent")
    eq(r.inst_status("fin"), "succeeded", "the finally step")
    eq(r.status(), "interrupted", "run.finished status")


# ---- 12. the run directory ---------------------------------------------------------

@test
def run_directory_layout(c):
    # Comments, trailing blanks, non-ASCII text and no final newline: the
    # copy must be the file's bytes, not a re-serialisation.
    text = ("# Playbook with odd bytes  \nirp: 1\nid: layout\ntitle: \"Réseau — Netz\"   \n"
            "tlp: amber+strict\ninputs:\n  hosts: {type: list, default: [a, b]}\n"
            "  n: {type: number, default: 3}\n  s: {default: plain}\n"
            "steps:\n  # a comment\n  - id: a\n    for_each: ${{ inputs.hosts }}\n"
            "    run: [echo, \"${{ item }}\"]\n  - id: b\n    wait: 10ms")
    pbfile = c.write("pb.yaml", text.encode(), "wb")
    r = c.run(pbfile, "-i", "n=4.5", umask=0)
    eq(r.rc, 0, f"exit status {r!r}")
    r.need_dir()
    eq(os.path.dirname(os.path.abspath(r.dir)), c.runs, "run directory not under --runs")
    check(re.fullmatch(r"\d{8}T\d{6}Z-layout-[0-9a-f]{4}", os.path.basename(r.dir)),
          f"run id {os.path.basename(r.dir)!r}")
    eq(r.one("run.started").get("run_id"), os.path.basename(r.dir), "run_id in run.started")
    mode = stat.S_IMODE(os.stat(r.dir).st_mode)
    eq(oct(mode), oct(0o700), "mode of the run directory (umask 0)")
    for p in files_under(r.dir):
        eq(oct(stat.S_IMODE(os.stat(p).st_mode)), oct(0o600),
           f"mode of {os.path.relpath(p, r.dir)} (umask 0)")
    for root, dirs, files in os.walk(r.dir):
        for d in dirs:
            eq(oct(stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode)), oct(0o700),
               f"mode of {d}/")
    for name in ("playbook.yaml", "inputs.json", "journal.jsonl", "report.md"):
        check(os.path.isfile(os.path.join(r.dir, name)), f"{name} missing")
    with open(pbfile, "rb") as f:
        eq(r.read("playbook.yaml"), f.read(), "playbook.yaml is not byte-identical")
    eq(json.loads(r.read("inputs.json")), {"hosts": ["a", "b"], "n": 4.5, "s": "plain"},
       "inputs.json")
    report = r.read("report.md").decode()
    check(re.search(r"TLP:AMBER\+STRICT", report, re.I), f"report.md lacks the TLP: {report!r}")
    check(re.search(r"TLP:AMBER\+STRICT", r.out, re.I), "terminal header lacks the TLP")
    check(not [f for f in os.listdir(os.path.join(r.dir, "logs")) if f.endswith(".out")],
          "$IRP_OUTPUT files left in logs/")



@test
def outputs_file_left_behind_is_not_read(c):
    """$IRP_OUTPUT is the command's to create: a file already at its path
    (left by an attempt that was interrupted) is removed before the command
    starts, never read as the new attempt's outputs; a command that writes
    none has no outputs and leaves no file."""
    pb = c.write("pb.yaml", playbook(
        "  - id: plant\n"
        "    run: 'printf \"stale=1\\n\" > \"$IRP_RUN_DIR/logs/victim.1.log.out\"'\n"
        "  - id: victim\n"
        "    run: 'test ! -e \"$IRP_OUTPUT\" && echo fresh=1 >> \"$IRP_OUTPUT\"'\n"
        "  - id: quiet\n"
        "    run: [\"true\"]\n"))
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.one("step.finished", instance="victim")["outputs"], {"fresh": "1"},
       "outputs of the step whose $IRP_OUTPUT path held a stale file")
    eq(r.one("step.finished", instance="quiet")["outputs"], {}, "outputs of a quiet step")
    eq(sorted(f for f in os.listdir(os.path.join(r.dir, "logs")) if f.endswith(".out")), [],
       "$IRP_OUTPUT files left in logs/")

# ---- 13. wait ------------------------------------------------------------------

@test
def wait_duration(c):
    r = c.run(playbook("  - id: w\n    wait: 300ms\n"))
    eq(r.rc, 0, f"exit status {r!r}")
    check(r.elapsed >= 0.3, f"the run took {r.elapsed:.3f} s")
    gap = started_finished_gap(r, "w")
    check(300 <= gap <= 900, f"wait: 300ms took {gap} ms")
    eq(r.inst_status("w"), "succeeded", "status")


@test
def wait_until(c):
    tz = datetime.timezone(datetime.timedelta(hours=2))
    target = datetime.datetime.now(tz) + datetime.timedelta(milliseconds=900)
    until = target.isoformat(timespec="milliseconds")       # ...+02:00
    past = (datetime.datetime.now(datetime.timezone.utc) -
            datetime.timedelta(hours=1)).isoformat(timespec="seconds")
    pb = playbook(f"""\
  - id: w
    wait: {{until: "{until}"}}
  - id: past
    wait: {{until: "{past}"}}
""")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    fin = ts_ms(r.finished("w")["ts"])
    want = round(target.timestamp() * 1000)
    check(want - 5 <= fin <= want + 600,
          f"wait until {until} ended at {r.finished('w')['ts']} ({fin - want:+d} ms)")
    gap = started_finished_gap(r, "past")
    check(gap <= 200, f"a wait until a past time took {gap} ms")


# ---- 14. children's environment ----------------------------------------------------

ENV_DUMP = 'env | grep "^IRP_" | sort; test "$IRP_ATTEMPT" -ge 2 || test "$IRP_ITEM" != beta'


def env_of(log):
    return dict(line.split("=", 1) for line in log.splitlines() if "=" in line)


@test
def child_environment(c):
    pb = playbook(f"""\
  - id: fan
    for_each: [alpha, beta]
    retries: 1
    run: '{ENV_DUMP}'
  - id: solo
    run: 'env | grep "^IRP_" | sort; echo "k=v" >> "$IRP_OUTPUT"'
  - id: reader
    run: [echo, "${{{{ steps.solo.outputs.k }}}}"]
""")
    # Stale IRP_* variables in irp's own environment must not reach children.
    r = c.run(pb, env={"IRP_INSTANCE": "stale", "IRP_ITEM": "stale", "IRP_OUTPUT": "/nonexistent"})
    eq(r.rc, 0, f"exit status {r!r}")
    run_id = os.path.basename(r.dir)
    cases = [("fan.0.1.log", "fan", "fan[alpha]", "alpha", "0", "1"),
             ("fan.1.1.log", "fan", "fan[beta]", "beta", "1", "1"),
             ("fan.1.2.log", "fan", "fan[beta]", "beta", "1", "2"),
             ("solo.1.log", "solo", "solo", None, None, "1")]
    for log, step, inst, item, index, attempt in cases:
        text = r.log(log)
        lines = [line.split("=", 1)[0] for line in text.splitlines()]
        eq(len(lines), len(set(lines)), f"{log}: a variable set twice: {text!r}")
        env = env_of(text)
        eq(env.get("IRP_RUN_ID"), run_id, f"{log}: IRP_RUN_ID")
        rd = env.get("IRP_RUN_DIR")
        check(rd and os.path.samefile(os.path.join(c.dir, rd), r.dir), f"{log}: IRP_RUN_DIR {rd!r}")
        eq(env.get("IRP_STEP_ID"), step, f"{log}: IRP_STEP_ID")
        eq(env.get("IRP_INSTANCE"), inst, f"{log}: IRP_INSTANCE")
        if item is not None:
            eq(env.get("IRP_ITEM"), item, f"{log}: IRP_ITEM")
            eq(env.get("IRP_INDEX"), index, f"{log}: IRP_INDEX")
        else:
            check("IRP_ITEM" in env or "IRP_ITEM" in text, f"{log}: IRP_ITEM not set")
            check("IRP_INDEX" in env, f"{log}: IRP_INDEX not set")
        eq(env.get("IRP_ATTEMPT"), attempt, f"{log}: IRP_ATTEMPT")
        check(env.get("IRP_OUTPUT") and env["IRP_OUTPUT"] != "/nonexistent",
              f"{log}: IRP_OUTPUT {env.get('IRP_OUTPUT')!r}")
        check("stale" not in text, f"{log}: a stale IRP_ variable reached the child")
    eq(r.log("reader.1.log"), "v\n", "an output written through $IRP_OUTPUT")
    outs = {env_of(r.log(l))["IRP_OUTPUT"] for l, *_ in cases}
    eq(len(outs), len(cases), "IRP_OUTPUT is not distinct per instance and attempt")


@test
def child_paths_with_cwd_and_relative_runs(c):
    """The default --runs is relative (./irp-runs); a step with `cwd`
    must still find $IRP_RUN_DIR and write to $IRP_OUTPUT."""
    os.mkdir(c.path("elsewhere"))
    pb = playbook("""\
  - id: a
    cwd: elsewhere
    run: 'echo "k=v" >> "$IRP_OUTPUT" && test -f "$IRP_RUN_DIR/journal.jsonl"'
  - id: b
    run: [echo, "${{ steps.a.outputs.k }}"]
""")
    r = c.run(pb, "--runs", "relative-runs", runs=False)
    r.need_dir()
    eq(r.rc, 0, f"exit status with --runs relative-runs and cwd: elsewhere "
       f"(log of a: {r.log('a.1.log')!r})")
    eq(r.log("b.1.log"), "v\n", "output of a step with cwd")


@test
def cwd_and_env_keys(c):
    os.mkdir(c.path("work"))
    pb = playbook("""\
  - id: a
    cwd: work
    env: {GREETING: "hello ${{ inputs.who }}"}
    run: 'pwd > where; echo "$GREETING"'
""", head="inputs:\n  who: {default: world}\n")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    with open(c.path("work", "where")) as f:
        check(os.path.samefile(f.read().strip(), c.path("work")), "cwd not honoured")
    eq(r.log("a.1.log"), "hello world\n", "env templated")


# ---- more of the engine -------------------------------------------------------

@test
def stdout_head_is_64k(c):
    pb = playbook("""\
  - id: big
    run: "head -c 102400 /dev/zero | tr '\\\\0' x"
  - id: measure
    run: [sh, -c, 'printf %s "$1" | wc -c', sh, "${{ steps.big.stdout }}"]
""")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(len(r.read("logs/big.1.log")), 102400, "the log keeps all of stdout")
    eq(r.log("measure.1.log").strip(), "65536", "length of steps.big.stdout (first 64 KiB)")


@test
def command_not_found(c):
    pb = playbook("""\
  - id: missing
    run: [/nonexistent/irp-no-such-command, arg]
  - id: other
    needs: []
    run: [echo, fine]
""")
    r = c.run(pb)
    eq(r.rc, 1, f"exit status {r!r}")
    f = r.finished("missing")
    eq(f.get("status"), "failed", "status of a command that does not exist")
    eq(r.inst_status("other"), "succeeded", "an independent step")


@test
def timeout_default_not_on_wait_and_retried(c):
    pb = playbook("""\
  - id: pause
    needs: []
    wait: 600ms
  - id: slow
    needs: []
    retries: 1
    run: 'echo "attempt $IRP_ATTEMPT"; sleep 5'
""", head="defaults:\n  timeout: 200ms\n")
    r = c.run(pb, timeout=30)
    eq(r.rc, 1, f"exit status {r!r}")
    eq(r.inst_status("pause"), "succeeded", "a wait under defaults.timeout (SPEC: never applies)")
    check(started_finished_gap(r, "pause") >= 600, "the wait was cut short")
    fins = r.ev("step.finished", instance="slow")
    eq([f["status"] for f in fins], ["timed_out", "timed_out"], "both attempts time out")
    eq(r.step_status("slow"), "timed_out", "final status after a retried timeout")
    eq(r.log("slow.2.log"), "attempt 2\n", "second attempt's log")
    check(r.elapsed < 4, f"the run took {r.elapsed:.1f} s")


@test
def sighup_does_not_stop(c):
    p = c.spawn(playbook("  - id: a\n    run: 'sleep 1; touch a-done'\n"
                         "  - id: b\n    run: [touch, b-done]\n"))
    t0 = time.monotonic()
    try:
        c.wait_for(lambda e: e["event"] == "step.spawned", what="step.spawned")
        os.kill(p.pid, signal.SIGHUP)
        r = c.collect(p, t0)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eq(r.rc, 0, f"exit status after SIGHUP {r!r}")
    check(os.path.exists(c.path("b-done")), "the run did not go on after SIGHUP")


def interrupt_wait(c, delay):
    """Start a run whose first step is a 30 s wait; Ctrl-C `delay` s after
    its step.started is in the journal (0: as soon as it is)."""
    for f in ("fin-ran", "after-ran"):
        if os.path.exists(c.path(f)):
            os.unlink(c.path(f))
    shutil.rmtree(c.runs, ignore_errors=True)
    p = c.spawn(playbook("  - id: pause\n    wait: 30s\n"
                         "  - id: after\n    run: [touch, after-ran]\n",
                         finally_="  - id: fin\n    run: [touch, fin-ran]\n"))
    t0 = time.monotonic()
    try:
        end = t0 + 20
        while time.monotonic() < end:          # no sleep: catch the line at once
            if any(e["event"] == "step.started" for e in c.journal_now()):
                break
        time.sleep(delay)
        t1 = time.monotonic()
        os.kill(p.pid, signal.SIGINT)
        try:
            r = c.collect(p, t0, timeout=5)
        except Failure:
            raise Failure(f"Ctrl-C {delay * 1000:.0f} ms after the wait's step.started: "
                          "the 30 s wait was not cancelled (irp still running 5 s later)")
        after = time.monotonic() - t1
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eq(r.rc, 3, f"exit status {r!r}")
    check(after < 2, f"a 30 s wait held the run {after:.1f} s after Ctrl-C")
    eq(r.inst_status("pause"), "cancelled", "the interrupted wait")
    eq(r.inst_status("after"), "cancelled", "the pending step")
    check(os.path.exists(c.path("fin-ran")), "finally did not run")
    check(not os.path.exists(c.path("after-ran")), "a step started after Ctrl-C")


@test
def sigint_during_wait(c):
    interrupt_wait(c, 0.3)


@test
def sigint_right_after_wait_started(c):
    # Ctrl-C while step.started is still being made durable, before the
    # wait's timer is armed.  Tried a few times: the window is short.
    for _ in range(3):
        interrupt_wait(c, 0)


@test
def many_instances(c):
    items = ", ".join(f"i{n}" for n in range(150))
    pb = playbook(f"""\
  - id: fan
    for_each: [{items}]
    run: 'echo "n=$IRP_INDEX" >> "$IRP_OUTPUT"'
  - id: sum
    run: [sh, -c, 'echo $#', sh, "${{{{ steps.fan.outputs.n }}}}"]
""")
    r = c.run(pb, "--jobs", "16", timeout=120)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(len(r.ev("step.finished", step="fan")), 150, "instances finished")
    eq(r.log("sum.1.log"), "150\n", "outputs list length")
    prev = ZERO_HASH
    for line in r.lines:
        eq(json.loads(line)["prev"], prev, "chain under load")
        prev = hashlib.sha256(line).hexdigest()
    running = most = 0
    for e in r.events:
        if e.get("step") == "fan" and e["event"] in ("step.spawned", "step.finished"):
            running += 1 if e["event"] == "step.spawned" else -1
            most = max(most, running)
    check(most <= 16, f"{most} commands at once with --jobs 16")


def find_b64(obj, raw):
    """True when some key ending in _b64 holds base64 of raw."""
    import base64
    if isinstance(obj, dict):
        for k, v in obj.items():
            encoded = [v] if isinstance(v, str) else v if isinstance(v, list) else []
            for item in encoded if k.endswith("_b64") else []:
                try:
                    if isinstance(item, str) and raw in base64.b64decode(item):
                        return True
                except ValueError:
                    pass
            if find_b64(v, raw):
                return True
    elif isinstance(obj, list):
        return any(find_b64(v, raw) for v in obj)
    return False


@test
def non_utf8_bytes_in_journal(c):
    pb = playbook("""\
  - id: a
    run: 'printf "k=\\377\\376ok\\n" >> "$IRP_OUTPUT"'
  - id: b
    run: [echo, "${{ steps.a.outputs.k }}", "${{ inputs.x }}"]
""", head="inputs:\n  x: {default: plain}\n")
    r = c.run(pb, "-i", os.fsdecode(b"x=\xff\xfe"))
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.read("logs/b.1.log"), b"\xff\xfeok \xff\xfe\n", "bytes the command received")
    eq(r.one("step.started", instance="a")["action"]["argv"],
       ["/bin/sh", "-c", 'printf "k=\\377\\376ok\\n" >> "$IRP_OUTPUT"'],
       "a string run is journaled as executed")
    started = r.one("step.started", instance="b")
    argv = started["action"].get("argv")
    eq(len(argv or []), 3, f"step.started argv of b (the command got 3 arguments): {argv}")
    check("\ufffd" in argv[1] and "\ufffd" in argv[2], f"no U+FFFD in argv {argv}")
    check(find_b64(started, b"\xff\xfeok"), "step.started has no *_b64 field with the raw bytes")
    fin = r.finished("a")
    check("\ufffd" in fin["outputs"].get("k", ""), f"outputs of a: {fin['outputs']}")
    check(find_b64(fin, b"\xff\xfeok"), "step.finished has no *_b64 field with the raw output")
    check(find_b64(r.events[0], b"\xff\xfe"), "run.started has no *_b64 field for input x")


@test
def descriptor_exhaustion(c):
    """With few file descriptors, children wait for one another; each
    attempt is journaled as started exactly once."""
    import resource
    items = ", ".join(f"i{n}" for n in range(20))
    pb = playbook(f"  - id: fan\n    for_each: [{items}]\n    run: 'sleep 0.3'\n")
    argv = c.argv(pb, ["--jobs", "20"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 24 if "asan" not in IRP else 40

    def lower():
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        p = subprocess.run(argv, cwd=c.dir, env=c.env(), capture_output=True, timeout=60,
                           preexec_fn=lower, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Failure("irp hung with a low descriptor limit")
    r = Run(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"),
            0, c.dir)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(len(r.ev("step.finished", status="succeeded")), 20, "instances that succeeded")
    seen = {}
    for e in r.ev("step.started"):
        key = (e["instance"], e["attempt"])
        seen[key] = seen.get(key, 0) + 1
    dups = {f"{k[0]}#{k[1]}": v for k, v in seen.items() if v > 1}
    check(not dups, f"step.started journaled more than once for the same attempt: {dups}")


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
