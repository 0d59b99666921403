#!/usr/bin/env python3
"""Tests of the benchmark harness (tests/bench/README.md), not of timings.

The benchmarks are only worth their ratios if irp and every peer do the
same work.  These tests run the generated inputs for real, small, and
check that they do: irp's journal says which commands ran and how (argv
or /bin/sh -c, in chain order, skips without spawns), the peers' commands
leave their mark in a file, the descriptor probe agrees with what a run
under the same limit really reaches, and run.sh itself reports, fails and
refuses bad usage as documented.  No test asserts a time.

Every test works in a fresh temporary directory (kept and named when it
fails); every subprocess has a timeout.

Usage: harness_test.py [NAME-SUBSTRING...]   (runs only the matching tests)
Prints one line per test and a summary "N passed, M failed[, K skipped]";
exits 1 when any test failed.  Environment: IRP (the irp binary,
required), IRP_BINARY_DIR (the build, for irp_yaml_pull; tests needing it
are skipped without it).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
IRP = os.environ.get("IRP")
if not IRP:
    sys.exit("harness_test: set IRP to the path of the irp binary")
IRP = os.path.abspath(IRP)
BUILD = os.environ.get("IRP_BINARY_DIR", "")
PULL = os.path.abspath(os.path.join(BUILD, "irp_yaml_pull")) if BUILD else ""
TIMEOUT = 120                # seconds, any single subprocess
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error: |"
                          r"SUMMARY: \w+Sanitizer")


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


class Case:
    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"irp-bench-{name}-")

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def run(self, argv, timeout=TIMEOUT, env=None, preexec_fn=None):
        e = dict(os.environ)
        e.update(env or {})
        try:
            p = subprocess.run(argv, cwd=self.dir, env=e, capture_output=True, timeout=timeout,
                               stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)
        except subprocess.TimeoutExpired:
            raise Failure(f"timed out after {timeout} s: {' '.join(argv)}")
        out = p.stdout.decode(errors="replace")
        err = p.stderr.decode(errors="replace")
        check(not SANITIZER_RE.search(err), f"sanitizer report from {argv[0]}:\n{err[-3000:]}")
        return p.returncode, out, err

    def gen(self, name, *args):
        d = self.path(name)
        rc, _, err = self.run([sys.executable, os.path.join(HERE, "gen_spawn.py"), d, *args])
        eq(rc, 0, f"gen_spawn.py exit status ({err.strip()})")
        return d

    def irp_run(self, playbook, *args, preexec_fn=None):
        runs = self.path("runs")
        shutil.rmtree(runs, ignore_errors=True)
        rc, out, err = self.run([IRP, "run", "--quiet", "--runs", runs, *args, playbook],
                                preexec_fn=preexec_fn)
        eq(rc, 0, f"irp run exit status (stderr: {err.strip()[-2000:]})")
        (rd,) = os.listdir(runs)
        return os.path.join(runs, rd, "journal.jsonl")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def events(journal, name=None):
    with open(journal, encoding="utf-8") as f:
        evs = [json.loads(line) for line in f]
    return [e for e in evs if name is None or e["event"] == name]


def need(tool):
    if not shutil.which(tool):
        raise Skip(f"{tool} is not installed")


# ---- generated inputs -------------------------------------------------------------

def argv_steps_exec_directly_and_skips_spawn_nothing(c):
    d = c.gen("in", "--steps", "12", "--form", "argv", "--skipped", "7")
    rc, _, err = c.run([IRP, "validate", os.path.join(d, "irp.yaml")])
    eq(rc, 0, f"irp validate exit status ({err.strip()})")
    j = c.irp_run(os.path.join(d, "irp.yaml"), "--jobs", "4")
    started = events(j, "step.started")
    eq(len(started), 12, "steps started")
    eq({json.dumps(e["action"]["argv"]) for e in started}, {'["true"]'}, "argv of every step")
    eq(len(events(j, "step.spawned")), 12, "processes spawned")
    eq(sorted(e["status"] for e in events(j, "step.finished")), ["succeeded"] * 12,
       "statuses")
    skipped = events(j, "step.skipped")
    eq(sorted(e["step"] for e in skipped), sorted(f"k{i}" for i in range(7)), "skipped steps")
    eq({e["reason"] for e in skipped}, {"when is false"}, "skip reasons")


def shell_steps_go_through_a_shell_everywhere(c):
    """irp, ninja and make all run the shell form as SHELL -c, N times;
    the --skipped targets are in every file and run by none."""
    cmd = 'echo "$0" >> ran.txt'
    d = c.gen("in", "--steps", "9", "--form", "shell", "--cmd", cmd, "--skipped", "5")
    for name, count in (("build.ninja", "build k"), ("Makefile", "\nk")):
        with open(os.path.join(d, name)) as f:
            eq(f.read().count(count), 5, f"unbuilt targets in {name}")
    j = c.irp_run(os.path.join(d, "irp.yaml"))
    eq({json.dumps(e["action"]["argv"]) for e in events(j, "step.started")},
       {json.dumps(["/bin/sh", "-c", cmd])}, "argv of every step")
    with open(c.path("ran.txt")) as f:
        eq(f.read().split(), ["/bin/sh"] * 9, "irp's commands")
    for tool, argv, shell in (("ninja", ["ninja", "-C", d, "-j", "4", "--quiet"], "/bin/sh"),
                              ("make", ["make", "-C", d, "-s", "-j", "4"], "/bin/dash")):
        if not shutil.which(tool):
            continue
        out = os.path.join(d, "ran.txt")
        if os.path.exists(out):
            os.unlink(out)
        rc, _, err = c.run(argv)
        eq(rc, 0, f"{tool} exit status ({err.strip()})")
        with open(out) as f:
            eq(f.read().split(), [shell] * 9, f"{tool}'s commands")
        # Nothing writes a target: a second run does all the work again.
        os.unlink(out)
        rc, _, _ = c.run(argv)
        with open(out) as f:
            eq(len(f.read().split()), 9, f"{tool}'s commands on a second run")


def chain_runs_one_after_another(c):
    d = c.gen("in", "--steps", "8", "--shape", "chain", "--form", "argv")
    j = c.irp_run(os.path.join(d, "irp.yaml"), "--jobs", "8")
    order = []
    for e in events(j):
        if e["event"] in ("step.started", "step.finished"):
            order.append((e["event"], e["step"]))
    want = []
    for i in range(8):
        want += [("step.started", f"s{i}"), ("step.finished", f"s{i}")]
    eq(order, want, "journal order of a chain")
    for tool in ("ninja", "make"):
        if not shutil.which(tool):
            continue
        # Dry runs print the commands in the order the tool would run them.
        argv = ["ninja", "-C", d, "-n", "-j", "8"] if tool == "ninja" else \
               ["make", "-C", d, "-n", "-j", "8"]
        rc, out, err = c.run(argv)
        eq(rc, 0, f"{tool} -n exit status ({err.strip()})")
        eq(len(re.findall(r"^(\[\d+/\d+\] )?true$", out, re.M)), 8, f"{tool}'s planned commands")
    # The chain itself, as the files state it.
    with open(os.path.join(d, "build.ninja")) as f:
        eq(re.findall(r"^build o(\d+): t \|\| o(\d+)$", f.read(), re.M),
           [(str(i), str(i - 1)) for i in range(1, 8)], "ninja's chain")
    with open(os.path.join(d, "Makefile")) as f:
        eq(re.findall(r"^o(\d+): o(\d+)$", f.read(), re.M),
           [(str(i), str(i - 1)) for i in range(1, 8)], "make's chain")


def ansible_playbook_lists_the_same_tasks(c):
    need("ansible-playbook")
    d = c.gen("in", "--steps", "4", "--shape", "chain", "--ansible")
    env = {"ANSIBLE_HOME": c.path(".ansible"), "ANSIBLE_LOCAL_TEMP": c.path(".ansible", "tmp"),
           "ANSIBLE_NOCOLOR": "1"}
    rc, out, err = c.run(["ansible-playbook", "-i", "localhost,", "--list-tasks",
                          os.path.join(d, "ansible.yaml")], env=env)
    eq(rc, 0, f"ansible-playbook --list-tasks exit status ({err.strip()[-1000:]})")
    eq(re.findall(r"^\s+(s\d+)\s", out, re.M), ["s0", "s1", "s2", "s3"], "tasks")


def generated_playbooks_validate(c):
    for shape in ("independent", "chain", "mixed"):
        f = c.path(f"{shape}.yaml")
        with open(f, "wb") as out:
            p = subprocess.run([sys.executable, os.path.join(HERE, "gen_playbook.py"),
                                "--steps", "300", "--shape", shape], stdout=out, timeout=TIMEOUT)
        eq(p.returncode, 0, "gen_playbook.py exit status")
        rc, _, err = c.run([IRP, "validate", f])
        eq(rc, 0, f"irp validate of the {shape} playbook ({err.strip()[-2000:]})")


# ---- the descriptor probe -----------------------------------------------------------

def fd_probe_matches_a_run_under_the_limit(c):
    """The slots fd_slots.py computes are what a run under that limit
    reaches, and irp queues the rest instead of failing them."""
    import resource
    limit = 80
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < limit:
        raise Skip("the hard limit on open files is below 80")
    rc, out, err = c.run([sys.executable, os.path.join(HERE, "fd_slots.py"), IRP, str(limit),
                          c.path("probe")])
    eq(rc, 0, f"fd_slots.py exit status ({err.strip()})")
    slots, base, per, what = out.split()
    slots, base, per = int(slots), int(base), int(per)
    check(per >= 2 and "pipe=2" in what, f"a child costs at least its two pipes: {out!r}")
    check(3 <= base < limit, f"irp's own descriptors: {base}")
    eq(slots, (limit - base) // per, "slots")
    check(slots >= 4, f"too few slots to test with: {slots}")

    # Two waves, each child long enough for the whole first wave to start
    # even on a slow machine.
    n = 2 * slots
    d = c.gen("in", "--steps", str(n), "--cmd", "sleep 2")

    def lower():
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    j = c.irp_run(os.path.join(d, "irp.yaml"), "--jobs", str(n), preexec_fn=lower)
    eq(len(events(j, "step.finished")), n, "attempts finished")
    check(all(e["status"] == "succeeded" for e in events(j, "step.finished")),
          "every step succeeded under the limit")
    rc, out, err = c.run([sys.executable, os.path.join(HERE, "fd_slots.py"), "--peak", j])
    eq(rc, 0, f"fd_slots.py --peak exit status ({err.strip()})")
    peak = int(out)
    check(peak <= slots, f"{peak} children at once, more than the {slots} the probe allows")
    check(peak >= slots // 2, f"only {peak} children at once of {slots} possible")


# ---- run.sh ------------------------------------------------------------------------

RUN_SH = os.path.join(HERE, "run.sh")
WORKLOADS = ["validate", "simulate", "spawn_independent", "spawn_chain", "spawn_large_parent",
             "ansible", "fd_limit", "memory"]


def bench_env(c, irp=IRP):
    if not PULL or not os.access(PULL, os.X_OK):
        raise Skip("IRP_BINARY_DIR has no irp_yaml_pull")
    return {"IRP": irp, "IRP_YAML_PULL": PULL, "IRP_BENCH_TMPDIR": c.dir,
            "IRP_BINARY_DIR": ""}


def run_sh_usage(c):
    rc, out, _ = c.run(["bash", RUN_SH, "--list"])
    eq((rc, out.split()), (0, WORKLOADS), "--list")
    rc, out, _ = c.run(["bash", RUN_SH, "--help"])
    check(rc == 0 and "--spawn-steps" in out and "--runs-dir" in out, "--help")
    for args, what in ((["--bogus"], "unknown option"), (["--only", "nope"], "no workload 'nope'"),
                       (["--steps", "10", "--spawn-steps", "10"], "--spawn-steps must be below"),
                       (["--steps", "10", "--spawn-steps", "10", "--only", "spawn_large_parent"],
                        "--spawn-steps must be below"),
                       (["--runs", "0"], "--runs must be"),
                       (["--runs-dir", c.path("absent")], "no such directory")):
        rc, _, err = c.run(["bash", RUN_SH, *args, "."], env={"IRP": IRP, "IRP_YAML_PULL": IRP})
        eq(rc, 2, f"exit status of run.sh {' '.join(args)}")
        check(what in err, f"run.sh {' '.join(args)}: no {what!r} in {err!r}")


def run_sh_reports_rows_and_memory(c):
    env = bench_env(c)
    rc, out, err = c.run(["bash", RUN_SH, "--runs", "1", "--steps", "200", "--spawn-steps", "6",
                          "--only", "validate", "--only", "spawn_chain", "--only", "memory"],
                         env=env)
    eq(rc, 0, f"run.sh exit status (stderr: {err[-2000:]})")
    check(re.search(r"^\| validate 200 steps vs libyaml pull +\| +[\d.]+ ms \| +[\d.]+ ms \| +[\d.]+ \|",
                    out, re.M), f"no validate row in:\n{out}")
    fs = re.search(r"^  runs dir  .* on (\S+) ", out, re.M)
    check(fs, "no runs dir in the header")
    for form in ("argv", "shell"):
        for peer, opt in (("ninja", ""), ("ninja", " --no-fsync"), ("make", "")):
            label = f"6 chained {form} steps, --jobs 2{opt} vs {peer} -j2 [runs on {fs.group(1)}]"
            if shutil.which(peer):
                check(re.search(r"^\| " + re.escape(label) + r" +\| +[\d.]+ ms \|", out, re.M),
                      f"no row {label!r} in:\n{out}")
            else:
                check(label.split(" [")[0] in out and "not installed" in out,
                      f"no skipped row for {peer}")
    m = re.search(r"^\| irp run, every step when:false \[runs on \S+\] \| 200 \| ([\d.]+) MiB \|"
                  r" ([\d.]+) MiB \| ([\d.]+) KiB \|", out, re.M)
    check(m, f"no memory row for irp run in:\n{out}")
    peak, per = float(m.group(1)), float(m.group(3))
    # The MiB are rounded to 0.1, hence the tolerance.
    check(abs(peak * 1024 / 200 - per) < 0.3, f"KiB per step {per} is not {peak} MiB / 200")
    check(not os.listdir(c.dir), f"run.sh left files behind: {os.listdir(c.dir)}")


def run_sh_fails_when_a_run_fails(c):
    env = bench_env(c, irp="/bin/false")
    rc, out, err = c.run(["bash", RUN_SH, "--runs", "1", "--steps", "20", "--only", "validate"],
                         env=env)
    eq(rc, 1, "exit status when irp fails")
    check(re.search(r"^\| validate 20 steps vs libyaml pull +\| FAILED: irp exited 1", out, re.M),
          f"no FAILED row in:\n{out}")


TESTS = [
    argv_steps_exec_directly_and_skips_spawn_nothing,
    shell_steps_go_through_a_shell_everywhere,
    chain_runs_one_after_another,
    ansible_playbook_lists_the_same_tasks,
    generated_playbooks_validate,
    fd_probe_matches_a_run_under_the_limit,
    run_sh_usage,
    run_sh_reports_rows_and_memory,
    run_sh_fails_when_a_run_fails,
]


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
