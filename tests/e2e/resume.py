#!/usr/bin/env python3
"""End-to-end tests of `irp resume` (SPEC §3): runs are really killed
(SIGKILL, SIGINT) and resumed, and the test reads what the steps did
(files they append to) and the journal irp wrote.

The heart is a kill loop: a playbook of steps with side effects is killed
at random moments, at least 30 times, and resumed each time until it ends;
every instance with a journaled finish must have had its side effect
exactly once, an interrupted one at most once more per interruption, and
the hash chain (recomputed here) must be whole after every process.

Usage: resume.py [NAME-SUBSTRING...]; environment: IRP (the binary).
Prints one line per test and a summary; exits 1 when any test failed.
"""
import collections
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

IRP = os.environ.get("IRP")
if not IRP:
    sys.exit("resume: set IRP to the path of the irp binary")
IRP = os.path.abspath(IRP)
TIMEOUT = 60
KILLS = int(os.environ.get("IRP_RESUME_KILLS", "30"))
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error: |SUMMARY: \w+Sanitizer")


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


def chain(path):
    """Recompute the journal's chain; return the events of its whole lines
    (a last line without newline is ignored, as readers must)."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    lines.pop()                      # "" after the last newline, or a cut-off line
    prev = "0" * 64
    events = []
    for n, line in enumerate(lines, 1):
        ev = json.loads(line)
        eq(ev["seq"], n, f"seq of line {n}")
        eq(ev["prev"], prev, f"prev of line {n}")
        prev = hashlib.sha256(line).hexdigest()
        events.append(ev)
    return events


class Case:
    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"irp-resume-{name}-")
        self.runs = os.path.join(self.dir, "runs")

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def env(self):
        env = dict(os.environ)
        env.pop("NO_COLOR", None)
        return env

    def start(self, argv):
        return subprocess.Popen(argv, cwd=self.dir, env=self.env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)

    def finish(self, p, timeout=TIMEOUT):
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise Failure(f"irp did not end within {timeout} s")
        err = err.decode("utf-8", "replace")
        m = SANITIZER_RE.search(err)
        check(not m, f"sanitizer report:\n{err[:4000]}")
        return p.returncode, out.decode("utf-8", "replace"), err

    def run(self, *args, timeout=TIMEOUT):
        return self.finish(self.start([IRP] + list(args)), timeout)

    def run_dir(self):
        dirs = os.listdir(self.runs) if os.path.isdir(self.runs) else []
        check(len(dirs) == 1, f"expected one run directory, found {dirs}")
        return os.path.join(self.runs, dirs[0])

    def events_now(self):
        """The (only) run's journal as it is now; [] before it exists."""
        if not os.path.isdir(self.runs) or not os.listdir(self.runs):
            return []
        path = os.path.join(self.run_dir(), "journal.jsonl")
        return chain(path) if os.path.exists(path) else []

    def effects(self):
        try:
            with open(self.path("effects")) as f:
                return collections.Counter(f.read().split())
        except FileNotFoundError:
            return collections.Counter()


def playbook(steps, id_="rs"):
    return f"irp: 1\nid: {id_}\ntitle: Resume {id_}\nsteps:\n{steps}"


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# A playbook of side effects: each instance appends its id to `effects`
# (its own process, so a kill of irp does not stop it), with short sleeps
# so kills land in every phase: before a spawn, while children run,
# between a finish and the next start.
KILL_PB = playbook("".join(
    f"  - id: s{i}\n    idempotent: true\n"
    + ("    needs: []\n" if i % 4 == 0 else "")
    + (f"    for_each: [a, b, c]\n    run: \"sleep 0.0{i % 7}; echo s{i}-${{{{ item }}}} >> effects\"\n"
       if i % 3 == 0 else
       f"    run: \"sleep 0.0{i % 5}; echo s{i} >> effects\"\n")
    for i in range(14)))
KILL_INSTANCES = sorted([f"s{i}-{x}" for i in range(14) if i % 3 == 0 for x in "abc"] +
                        [f"s{i}" for i in range(14) if i % 3])


def effect_name(instance):
    m = re.match(r"^(s\d+)\[(\w)\]$", instance)
    return f"{m.group(1)}-{m.group(2)}" if m else instance


@test
def kill_loop(c):
    """Killed with SIGKILL at random moments (at least 30 times in all,
    over as many runs as it takes), resumed each time until it ends."""
    rng = random.Random(int(os.environ.get("IRP_RESUME_SEED", "7")))
    pb = c.write("pb.yaml", KILL_PB)
    kills = runs = 0
    while kills < KILLS or runs < 3:
        runs += 1
        shutil.rmtree(c.runs, ignore_errors=True)
        if os.path.exists(c.path("effects")):
            os.unlink(c.path("effects"))
        argv = [IRP, "run", pb, "--runs", c.runs, "--jobs", "3"]
        interrupted = collections.Counter()
        while True:
            p = c.start(argv)
            delay = rng.uniform(0.0, 0.6)
            try:
                p.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                kills += 1
            rc, out, err = c.finish(p)
            if not os.path.isdir(c.runs) or not os.listdir(c.runs):
                break                               # killed before the run directory existed
            journal = os.path.join(c.run_dir(), "journal.jsonl")
            events = chain(journal) if os.path.exists(journal) else []
            if not events:
                break                               # killed before run.started was written
            for ev in events:
                if ev["event"] == "run.resumed":
                    interrupted.update(set(ev["interrupted"]))
            if rc >= 0:
                eq(rc, 0, f"exit status of {argv[1]}: {err}")
                eq(events[-1]["event"], "run.finished", "last event")
                eq(events[-1]["status"], "succeeded", "run status")
                break
            argv = [IRP, "resume", c.run_dir(), "--jobs", "3"]
        if not os.path.isdir(c.runs) or not os.listdir(c.runs) or not events or \
                events[-1]["event"] != "run.finished":
            continue
        # Every instance finished exactly once, never started again after
        # its finish, and did its side effect once per start it was given.
        done = {}
        for ev in events:
            inst = ev.get("instance")
            if ev["event"] == "step.started":
                check(inst not in done, f"{inst} started again after its finish (line {ev['seq']})")
            if ev["event"] == "step.finished":
                eq(ev["status"], "succeeded", f"{inst} status")
                done[inst] = ev["seq"]
        eq(sorted(effect_name(i) for i in done), KILL_INSTANCES, "instances finished")
        effects = c.effects()
        for inst in done:
            n = effects[effect_name(inst)]
            limit = 1 + interrupted[inst]
            check(1 <= n <= limit, f"{inst}: side effect {n} times, allowed 1..{limit} "
                                   f"(interrupted {interrupted[inst]} times)")
            if not interrupted[inst]:
                eq(n, 1, f"{inst}: side effects of an instance never interrupted")
    check(kills >= KILLS, f"only {kills} kills")
    print(f"  {kills} kills over {runs} runs")


@test
def refuses_a_live_run(c):
    pb = c.write("pb.yaml", playbook("  - id: a\n    run: [sleep, '3']\n"))
    p = c.start([IRP, "run", pb, "--runs", c.runs])
    deadline = time.monotonic() + 10
    while not c.events_now():
        check(time.monotonic() < deadline, "run directory never appeared")
        time.sleep(0.02)
    rc, out, err = c.run("resume", c.run_dir())
    eq(rc, 2, f"exit status resuming a live run: {err}")
    check("live" in err and str(p.pid) in err, f"message names the live process: {err!r}")
    rc, _, err = c.finish(p)
    eq(rc, 0, f"the live run: {err}")


@test
def reruns_only_what_was_interrupted(c):
    """SIGKILL while a non-idempotent step's process runs: resume waits for
    that process, leaves the step interrupted without a terminal (exit 3),
    and runs it again with --rerun-interrupted; finished steps never rerun."""
    pb = c.write("pb.yaml", playbook(
        "  - id: first\n    run: \"echo first >> effects\"\n"
        "  - id: slow\n    run: \"sleep 1.5; echo slow >> effects\"\n"
        "  - id: last\n    run: \"echo last >> effects\"\n"))
    p = c.start([IRP, "run", pb, "--runs", c.runs])
    deadline = time.monotonic() + 10
    while True:
        if any(e["event"] == "step.spawned" and e["step"] == "slow" for e in c.events_now()):
            break
        check(time.monotonic() < deadline, "slow never spawned")
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    c.finish(p)
    t0 = time.time()
    rc, out, err = c.run("resume", c.run_dir())
    eq(rc, 3, f"exit status with an instance left interrupted: {err}")
    check("waiting for process group" in err, f"did not wait for the live process: {err!r}")
    check("--rerun-interrupted" in err, f"does not say how to rerun: {err!r}")
    eq(c.effects(), collections.Counter({"first": 1, "slow": 1}), "effects after the first resume")
    events = chain(os.path.join(c.run_dir(), "journal.jsonl"))
    resumed = [e for e in events if e["event"] == "run.resumed"]
    eq([(r["interrupted"], r["rerun"]) for r in resumed], [(["slow"], [])], "run.resumed")
    eq(events[-1]["status"], "interrupted", "run status")
    check(time.time() - t0 >= 0.5, "resume did not wait for the old process")
    rc, out, err = c.run("resume", c.run_dir(), "--rerun-interrupted")
    eq(rc, 0, f"exit status with --rerun-interrupted: {err}")
    eq(c.effects(), collections.Counter({"first": 1, "slow": 2, "last": 1}), "effects")
    events = chain(os.path.join(c.run_dir(), "journal.jsonl"))
    eq([e["attempt"] for e in events if e["event"] == "step.started" and e["step"] == "slow"],
       [1, 2], "attempts of the rerun step")
    eq(len([e for e in events if e["event"] == "step.started" and e["step"] == "first"]), 1,
       "first never started again")


@test
def uses_the_run_directory_copy(c):
    """The playbook may change after a run starts; resume runs the copy."""
    pb = c.write("pb.yaml", playbook("  - id: a\n    run: [sleep, '5']\n"
                                     "  - id: b\n    run: [touch, from-copy]\n"))
    p = c.start([IRP, "run", pb, "--runs", c.runs])
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)                    # Ctrl-C: b is cancelled, a finishes
    rc, _, err = c.finish(p)
    eq(rc, 3, f"interrupted run: {err}")
    c.write("pb.yaml", playbook("  - id: a\n    run: [sleep, '5']\n"
                                "  - id: b\n    run: [touch, from-changed-file]\n"))
    rc, out, err = c.run("resume", c.run_dir())
    eq(rc, 0, f"resume after Ctrl-C: {err}")
    check(os.path.exists(c.path("from-copy")), "the copy's command did not run")
    check(not os.path.exists(c.path("from-changed-file")), "the changed file was run")
    events = chain(os.path.join(c.run_dir(), "journal.jsonl"))
    eq(len([e for e in events if e["event"] == "step.started" and e["step"] == "a"]), 1,
       "a (finished, cancelled by the second signal or succeeded) started once")


@test
def damaged_journal_refused_cut_line_dropped(c):
    pb = c.write("pb.yaml", playbook("  - id: a\n    run: [touch, a]\n"
                                     "  - id: b\n    run: [touch, b]\n"))
    rc, out, err = c.run("run", pb, "--runs", c.runs)
    eq(rc, 0, err)
    d = c.run_dir()
    j = os.path.join(d, "journal.jsonl")
    with open(j, "rb") as f:
        good = f.read()
    lines = good.split(b"\n")
    bad = lines[:]
    bad[2] = bad[2].replace(b'"a"', b'"x"', 1)
    with open(j, "wb") as f:
        f.write(b"\n".join(bad))
    rc, out, err = c.run("resume", d)
    eq(rc, 2, f"damaged journal: {err}")
    check("line 4" in err or "line 3" in err, f"message names the line: {err!r}")
    check("not resuming" in err, err)
    # A last line cut off mid-write: dropped and recorded.
    with open(j, "wb") as f:
        f.write(good + b'{"seq":99,"ts":"2026')
    rc, out, err = c.run("resume", d)
    eq(rc, 0, f"resume with a cut-off last line: {err}")
    events = chain(j)
    r = [e for e in events if e["event"] == "run.resumed"]
    eq(len(r), 1, "run.resumed")
    eq(r[0]["dropped_bytes"], 20, "dropped bytes recorded")
    eq(len([e for e in events if e["event"] == "step.started"]), 2, "nothing ran again")
    rc, out, err = c.run("resume", c.path("nope"))
    eq(rc, 2, "missing run directory")


@test
def answers_stand_and_retries_continue(c):
    """A confirmation answered before the crash is not asked again; an
    instance killed while waiting for its retry gets its next attempt."""
    pb = c.write("pb.yaml", playbook(
        "  - id: ok\n    confirm: Go?\n    run: \"echo ok >> effects\"\n"
        "  - id: flaky\n    retries: 2\n    retry_delay: 3s\n"
        "    run: \"echo try >> effects; test -e fixed\"\n"))
    p = c.start([IRP, "run", pb, "--runs", c.runs, "--yes"])
    deadline = time.monotonic() + 10
    while not any(e["event"] == "step.retrying" for e in c.events_now()):
        check(time.monotonic() < deadline, "no retry scheduled")
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    c.finish(p)
    open(c.path("fixed"), "w").close()
    rc, out, err = c.run("resume", c.run_dir())      # no --yes, no terminal
    eq(rc, 0, f"resume: {err}")
    events = chain(os.path.join(c.run_dir(), "journal.jsonl"))
    eq([e["attempt"] for e in events if e["event"] == "step.started" and e["step"] == "flaky"],
       [1, 2], "attempts")
    eq(c.effects(), collections.Counter({"ok": 1, "try": 2}), "effects")
    eq(len([e for e in events if e["event"] == "step.answered"]), 1, "answered once")


@test
def deadlines_keep_their_reference_times(c):
    """SPEC §3: after a resume a deadline is due when it was due before;
    one met before the crash is not met (or journaled) again."""
    pb = c.write("pb.yaml", "irp: 1\nid: rs\ndeadlines:\n"
                 "  - id: early\n    within: 1h\n    from: start\n    met_by: first\n"
                 "  - id: full\n    within: 3h\n    from: start\n    met_by: last\n"
                 "steps:\n  - id: first\n    run: [\"true\"]\n"
                 "  - id: slow\n    run: [sleep, '5']\n  - id: last\n    run: [\"true\"]\n")
    p = c.start([IRP, "run", pb, "--runs", c.runs])
    deadline = time.monotonic() + 10
    while not any(e["event"] == "step.spawned" and e["step"] == "slow" for e in c.events_now()):
        check(time.monotonic() < deadline, "slow never spawned")
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    c.finish(p)
    time.sleep(1.1)                                   # the resume starts later
    rc, out, err = c.run("resume", c.run_dir(), "--rerun-interrupted")
    eq(rc, 0, f"resume: {err}")
    events = chain(os.path.join(c.run_dir(), "journal.jsonl"))
    due = {d["id"]: d["due"] for d in events[0]["deadlines"]}
    met = [e for e in events if e["event"] == "deadline.met"]
    eq(sorted((e["deadline"], e["due"]) for e in met),
       [("early", due["early"]), ("full", due["full"])], "each met once, due as at the start")


@test
def operator_terminates_the_old_process(c):
    """On a terminal, resume offers to terminate a process the interrupted
    run left running instead of waiting for it; yes sends its group
    SIGTERM, and the instance then re-runs (idempotent)."""
    if not shutil.which("tmux"):
        print("  SKIP: tmux is not installed")
        return
    pb = c.write("pb.yaml", playbook(
        "  - id: long\n    idempotent: true\n    run: \"echo start >> effects; sleep 30\"\n"))
    p = c.start([IRP, "run", pb, "--runs", c.runs])
    deadline = time.monotonic() + 10
    while not any(e["event"] == "step.spawned" for e in c.events_now()):
        check(time.monotonic() < deadline, "long never spawned")
        time.sleep(0.02)
    old = [e for e in c.events_now() if e["event"] == "step.spawned"][0]["pgid"]
    os.kill(p.pid, signal.SIGKILL)
    c.finish(p)
    sock, done = c.path("tmux.sock"), c.path("done.rc")
    tmux = ["tmux", "-S", sock]
    cmd = f"{IRP} resume {c.run_dir()} --jobs 1; echo $? > {done}"
    subprocess.run(tmux + ["new-session", "-d", "-x", "160", "-y", "40", "-c", c.dir, cmd],
                   check=True, timeout=10)
    try:
        deadline = time.monotonic() + 15
        while "Terminate it" not in subprocess.run(tmux + ["capture-pane", "-p"], text=True,
                                                   capture_output=True, timeout=10).stdout:
            check(time.monotonic() < deadline, "no question to terminate the old process")
            time.sleep(0.05)
        t0 = time.monotonic()
        subprocess.run(tmux + ["send-keys", "y", "Enter"], check=True, timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                os.kill(old, 0)
            except ProcessLookupError:
                break
            check(time.monotonic() < deadline, "the old process group was not terminated")
            time.sleep(0.05)
        check(time.monotonic() - t0 < 6, "termination took too long")
        # The re-run sleeps 30 s too: stop it, the test has what it needs.
        deadline = time.monotonic() + 10
        while c.effects()["start"] < 2:
            check(time.monotonic() < deadline, "the instance was not run again")
            time.sleep(0.05)
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True, timeout=10)
    events = c.events_now()
    a = [e for e in events if e["event"] == "step.answered"]
    eq([(e.get("about"), e["answer"]) for e in a], [("terminate", "yes")], "answer journaled")
    eq([e["attempt"] for e in events if e["event"] == "step.started"], [1, 2], "attempts")
    for e in events:
        if e["event"] == "step.spawned" and e["attempt"] == 2:
            try:
                os.killpg(e["pgid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


@test
def notification_resent_with_its_idempotency_key(c):
    """SPEC §3: a notification whose intent has no result is interrupted
    like any step, and re-sent with the same idempotency key, so the
    receiver can drop the duplicate."""
    import http.server
    import threading
    got = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.append(self.headers.get("Idempotency-Key"))
            if len(got) == 1:
                time.sleep(3)               # irp is killed while it waits
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        pb = c.write("pb.yaml", playbook(
            "  - id: tell\n    notify: { via: webhook, url: 'http://127.0.0.1:%d/hook', "
            "subject: Early warning, body: Intrusion detected }\n" % srv.server_port))
        p = c.start([IRP, "run", pb, "--runs", c.runs])
        deadline = time.monotonic() + 10
        while not got:
            check(time.monotonic() < deadline, "the request never arrived")
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
        c.finish(p)
        rc, out, err = c.run("resume", c.run_dir(), "--rerun-interrupted")
        eq(rc, 0, f"resume: {err}")
    finally:
        srv.shutdown()
    eq(len(got), 2, "requests received")
    check(got[0] and got[0] == got[1], f"idempotency keys differ: {got}")
    events = chain(os.path.join(c.run_dir(), "journal.jsonl"))
    sent = [e for e in events if e["event"] == "notify.sent"]
    eq([(e["attempt"], e["idempotency_key"], e["ok"]) for e in sent], [(2, got[0], True)],
       "notify.sent of the re-sent notification")


def main(argv):
    only = argv[1:]
    passed = failed = 0
    for fn in TESTS:
        if only and not any(o in fn.__name__ for o in only):
            continue
        c = Case(fn.__name__)
        t0 = time.monotonic()
        try:
            fn(c)
        except Exception as e:  # noqa: BLE001 -- report every failure the same way
            failed += 1
            detail = str(e) if isinstance(e, Failure) else traceback.format_exc()
            print(f"FAIL {fn.__name__}: {detail}\n     (kept {c.dir})", flush=True)
            continue
        passed += 1
        print(f"PASS {fn.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
        shutil.rmtree(c.dir, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
