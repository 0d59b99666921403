#!/usr/bin/env python3
"""End-to-end tests of `evidence` steps under `irp run` (SPEC §1.1
`evidence`, §1.3, §3; docs/evidence.md).

Every test writes its own playbook and sources into a fresh temporary
directory, runs the real binary on it (`--runs` inside that directory)
and checks what irp wrote against the sources themselves: hashes are
recomputed with hashlib from the source and from the copy, modes are read
with stat, memory from the kernel's rusage of the irp process.

Every subprocess has a timeout, so a hang fails a test, never the suite.

Usage: evidence.py [NAME-SUBSTRING...]   (runs only the matching tests)
Prints one line per test and a summary "N passed, M failed"; exits 1 when
any test failed.  A failed test's directory is kept and named.
Environment: IRP (the irp binary, required).
"""
import datetime
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback

IRP = os.environ.get("IRP")
if not IRP:
    sys.exit("evidence: set IRP to the path of the irp binary")
IRP = os.path.abspath(IRP)

RUN_TIMEOUT = 60            # seconds, any single irp invocation
BIG_TIMEOUT = 300           # the 1 GiB copy, in a sanitizer build on a busy machine
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error: |"
                          r"SUMMARY: \w+Sanitizer")
SCRUB = ("TOKEN", "IRP_RUN_ID", "IRP_RUN_DIR", "IRP_STEP_ID", "IRP_INSTANCE",
         "IRP_ITEM", "IRP_INDEX", "IRP_ATTEMPT", "IRP_OUTPUT", "NO_COLOR")
MIB = 1024 * 1024


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


def ts_ms(ts):
    check(TS_RE.match(ts or ""), f"bad journal time {ts!r}")
    d = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    return round(d.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


def utc_ms(ns):
    """A time in nanoseconds as irp writes it: UTC, milliseconds."""
    d = datetime.datetime.fromtimestamp(ns // 1_000_000 / 1000, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns // 1_000_000 % 1000:03d}Z"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(MIB)
            if not b:
                return h.hexdigest()
            h.update(b)


def process_gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def files_under(top):
    out = []
    for d, _, names in os.walk(top):
        out += [os.path.relpath(os.path.join(d, n), top) for n in names]
    return sorted(out)


# ---- one run ----------------------------------------------------------

class Run:
    """An irp invocation and the journal it left."""

    def __init__(self, rc, out, err, cwd, maxrss_kib=None):
        self.rc, self.out, self.err, self.maxrss_kib = rc, out, err, maxrss_kib
        self.dir = None
        m = SANITIZER_RE.search(err)
        if m:
            raise Failure(f"sanitizer report (exit {rc}):\n{err[max(0, m.start() - 200):][:4000]}")
        check(rc in (0, 1, 2, 3, 4), f"irp crashed or failed internally: {self!r}")
        lines = out.splitlines()
        if lines:
            path = os.path.join(cwd, lines[-1])
            if os.path.isdir(path):
                self.dir = path
        self.events = []
        if self.dir and os.path.exists(os.path.join(self.dir, "journal.jsonl")):
            with open(os.path.join(self.dir, "journal.jsonl"), "rb") as f:
                self.events = [json.loads(x) for x in f.read().split(b"\n") if x]

    def __repr__(self):
        return (f"<irp exit {self.rc}, dir {self.dir}>\n--- stdout\n{self.out}"
                f"--- stderr\n{self.err}---")

    def ev(self, name, **match):
        return [e for e in self.events if e["event"] == name and
                all(e.get(k) == v for k, v in match.items())]

    def one(self, name, **match):
        found = self.ev(name, **match)
        check(len(found) == 1, f"expected one {name} {match}, found {len(found)}: {found}")
        return found[0]

    def finished(self, instance):
        found = self.ev("step.finished", instance=instance)
        check(found, f"no step.finished for {instance}: {self!r}")
        return found[-1]

    def path(self, rel):
        return os.path.join(self.dir, rel)


class Case:
    """A test's temporary directory and helpers to run irp inside it."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"irp-evidence-{name}-")
        self.runs = os.path.join(self.dir, "runs")

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, name, data):
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(self.path(name), mode) as f:
            f.write(data)
        return self.path(name)

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if k not in SCRUB}
        env.update(extra or {})
        return env

    def argv(self, pb, args):
        return [IRP, "run", self.write("pb.yaml", pb), "--runs", self.runs,
                "--operator", "alice"] + list(args)

    def run(self, pb, *args, env=None, timeout=RUN_TIMEOUT):
        try:
            p = subprocess.run(self.argv(pb, args), cwd=self.dir, env=self.env(env),
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"irp run did not end within {timeout} s")
        return Run(p.returncode, p.stdout.decode("utf-8", "replace"),
                   p.stderr.decode("utf-8", "replace"), self.dir)

    def run_measured(self, pb, *args, timeout=RUN_TIMEOUT):
        """Run irp and read its own peak RSS from wait4()."""
        out, err = open(self.path("irp.out"), "wb"), open(self.path("irp.err"), "wb")
        p = subprocess.Popen(self.argv(pb, args), cwd=self.dir, env=self.env(),
                             stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        out.close()
        err.close()
        end = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > end:
                p.kill()
                p.wait()
                raise Failure(f"irp run did not end within {timeout} s")
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)
        with open(self.path("irp.out"), "rb") as f:
            o = f.read().decode("utf-8", "replace")
        with open(self.path("irp.err"), "rb") as f:
            e = f.read().decode("utf-8", "replace")
        return Run(p.returncode, o, e, self.dir, maxrss_kib=ru.ru_maxrss)

    def no_run_dir(self):
        made = os.listdir(self.runs) if os.path.isdir(self.runs) else []
        check(not made, f"a run directory was created: {made}")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def playbook(steps):
    return f"irp: 1\nid: ev\ntitle: Evidence end-to-end\nsteps:\n{steps}"


def check_copy(r, ev, source=None):
    """The copy an evidence.collected announces: hash and size as journaled
    (and as the source's, when given), read-only, its folders 0700."""
    rel = ev["path"]
    check(not os.path.isabs(rel) and rel.startswith("evidence/") and ".." not in rel.split("/"),
          f"copy path {rel!r} is not under evidence/")
    path = r.path(rel)
    st = os.lstat(path)
    check(stat.S_ISREG(st.st_mode), f"{rel} is not a regular file")
    eq(stat.S_IMODE(st.st_mode), 0o400, f"mode of {rel}")
    eq(st.st_size, ev["size"], f"size of {rel} vs the journal")
    eq(sha256_file(path), ev["sha256"], f"sha256 of {rel} vs the journal")
    if source is not None:
        eq(ev["sha256"], sha256_file(source), f"sha256 of {rel} vs its source")
    d = os.path.dirname(rel)
    while d:
        eq(stat.S_IMODE(os.lstat(r.path(d)).st_mode), 0o700, f"mode of folder {d}")
        d = os.path.dirname(d)
    eq(ev.get("collector"), "alice", "collector")
    check(TS_RE.match(ev["ts"]), "event ts")


def verify_ok(r):
    """`irp verify` re-hashes every copy against the journal: it must agree."""
    try:
        p = subprocess.run([IRP, "verify", r.dir], capture_output=True, timeout=RUN_TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Failure("irp verify did not end")
    err = p.stderr.decode("utf-8", "replace")
    check(not SANITIZER_RE.search(err), f"sanitizer report from verify: {err[:3000]}")
    eq(p.returncode, 0, f"irp verify exit status; stdout {p.stdout!r} stderr {err!r}")


def no_partials(r):
    left = [f for f in files_under(r.path("evidence")) if ".irp-partial" in f] \
        if os.path.isdir(r.path("evidence")) else []
    eq(left, [], "partial copies left in evidence/")


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---- copies ----------------------------------------------------------------

@test
def copies_files(c):
    os.makedirs(c.path("src"))
    auth = c.write("src/auth.log", "".join(f"line {i} sshd accepted\n" for i in range(5000)))
    empty = c.write("src/empty.bin", b"")
    blob = c.write("src/blob.bin", os.urandom(3 * MIB + 12345))   # crosses the buffer size
    os.utime(auth, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    pb = playbook(f"""\
  - id: grab
    evidence:
      collect:
        - path: {auth}
        - path: src/empty.bin
        - path: "${{{{ inputs.blob }}}}"
  - id: disk
    evidence:
      into: disk-image
      collect:
        - path: {auth}
""").replace("steps:", "inputs:\n  blob: {}\nsteps:")
    r = c.run(pb, "-i", "blob=" + blob)
    eq(r.rc, 0, f"exit status {r!r}")
    got = r.ev("evidence.collected", step="grab")
    eq([e["item"] for e in got], ["auth.log", "empty.bin", "blob.bin"], "items in order")
    for e, src in zip(got, (auth, empty, blob)):
        eq(e["path"], "evidence/grab/" + os.path.basename(src), "copy path")
        eq(e["source"], {"path": src}, "source (absolute, also for a relative path)")
        eq(e["size"], os.path.getsize(src), f"size of {src}")
        eq(e["instance"], "grab", "instance")
        eq(e["attempt"], 1, "attempt")
        check("warning" not in e, f"unexpected warning {e}")
        check_copy(r, e, src)
        with open(src, "rb") as f, open(r.path(e["path"]), "rb") as g:
            check(f.read() == g.read(), f"copy of {src} differs from it")
    eq(got[0]["mtime"], "2023-11-14T22:13:20.123Z", "mtime of auth.log (UTC, ms)")
    eq(got[2]["mtime"], utc_ms(os.stat(blob).st_mtime_ns), "mtime of blob.bin")
    eq(got[1]["sha256"], hashlib.sha256(b"").hexdigest(), "hash of an empty file")
    started = r.one("step.started", step="grab")["action"]
    eq(started, {"collect": [{"path": auth}, {"path": empty}, {"path": blob}],
                 "into": "evidence/grab"}, "step.started action")
    fin = r.finished("grab")
    eq(fin["status"], "succeeded", "grab status")
    check(r.one("evidence.collected", step="grab", item="blob.bin")["seq"] < fin["seq"],
          "evidence.collected after step.finished")
    d = r.one("evidence.collected", step="disk")
    eq(d["path"], "evidence/disk-image/auth.log", "into")
    check_copy(r, d, auth)
    eq(r.one("step.started", step="disk")["action"]["into"], "evidence/disk-image", "into shown")
    no_partials(r)
    eq(files_under(r.path("evidence")),
       ["disk-image/auth.log", "grab/auth.log", "grab/blob.bin", "grab/empty.bin"],
       "files in evidence/")
    verify_ok(r)


@test
def command_output_with_for_each(c):
    for h in ("ws-1", "fs-2", "db-3"):
        c.write(f"{h}.conf", f"host {h}\n")
    pb = playbook("""\
  - id: cap
    for_each: [ws-1, fs-2, db-3]
    evidence:
      collect:
        - run: [sh, -c, 'echo "noise on stderr" >&2; printf "%s|%s|%s\\n" "$1" "$IRP_INDEX" "$IRP_STEP_ID"', sh, "${{ item }}"]
          name: ps.txt
        - path: "${{ item }}.conf"
""")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    for i, h in enumerate(("ws-1", "fs-2", "db-3")):
        inst = f"cap[{h}]"
        ps = r.one("evidence.collected", instance=inst, item="ps.txt")
        eq(ps["path"], f"evidence/cap/{i}/ps.txt", f"{inst} command copy path (index)")
        eq(ps["source"]["argv"][-1], h, f"{inst} argv rendered")
        eq(ps["source"]["argv"][:2], ["sh", "-c"], f"{inst} argv")
        check("mtime" not in ps, "a command's output has no mtime")
        check_copy(r, ps)
        expect = f"{h}|{i}|cap\n".encode()
        with open(r.path(ps["path"]), "rb") as f:
            eq(f.read(), expect, f"{inst} captured stdout (stderr not in it)")
        eq(ps["sha256"], hashlib.sha256(expect).hexdigest(), f"{inst} hash of stdout")
        eq(ps["size"], len(expect), f"{inst} size")
        conf = r.one("evidence.collected", instance=inst, item=f"{h}.conf")
        eq(conf["path"], f"evidence/cap/{i}/{h}.conf", f"{inst} file copy path (index)")
        check_copy(r, conf, c.path(f"{h}.conf"))
        with open(r.path(f"logs/cap.{i}.1.log"), "rb") as f:
            eq(f.read(), b"noise on stderr\n", f"{inst} stderr in the step log")
        fin = r.finished(inst)
        check(fin.get("log_sha256"), f"{inst} step.finished has no log_sha256")
        eq(fin["log_sha256"], sha256_file(r.path(f"logs/cap.{i}.1.log")), f"{inst} log hash")
        action = r.one("step.started", instance=inst)["action"]
        eq(action["into"], f"evidence/cap/{i}", f"{inst} into")
        eq(action["collect"][0]["name"], "ps.txt", f"{inst} action names the capture")
        eq(action["collect"][1], {"path": c.path(f"{h}.conf")}, f"{inst} action path")
        check(r.ev("step.spawned", instance=inst), f"{inst} no step.spawned")
    no_partials(r)
    verify_ok(r)


@test
def evidence_is_not_redacted(c):
    secret = "s3cr3t-value-42"
    pb = playbook("""\
  - id: keys
    env: { TOK: "${{ secrets.TOKEN }}" }
    evidence:
      collect:
        - run: [sh, -c, 'printf "token=%s" "$TOK"']
          name: token.txt
""")
    r = c.run(pb, env={"TOKEN": secret})
    eq(r.rc, 0, f"exit status {r!r}")
    ev = r.one("evidence.collected", item="token.txt")
    with open(r.path(ev["path"]), "rb") as f:
        eq(f.read(), f"token={secret}".encode(), "the evidence holds the bytes as written")
    check_copy(r, ev)
    with open(r.path("journal.jsonl"), "rb") as f:
        check(secret.encode() not in f.read(), "the secret is in the journal")
    eq(r.one("step.started", step="keys")["action"]["env"], {"TOK": "***"}, "env shown redacted")


@test
def large_sparse_file_bounded_memory(c):
    big = c.path("disk.img")
    subprocess.run(["truncate", "-s", "1G", big], check=True, timeout=30)
    with open(big, "r+b") as f:          # some data inside the holes
        f.seek(300 * MIB + 7)
        f.write(b"MBR and a partition table, say")
    expect = sha256_file(big)
    pb = playbook(f"""\
  - id: image
    timeout: 10m
    evidence:
      collect:
        - path: {big}
""")
    r = c.run_measured(pb, timeout=BIG_TIMEOUT)
    eq(r.rc, 0, f"exit status {r!r}")
    ev = r.one("evidence.collected", item="disk.img")
    eq(ev["size"], 1 << 30, "size")
    eq(ev["sha256"], expect, "sha256 vs hashlib over the source")
    check_copy(r, ev)
    check(r.maxrss_kib < 64 * 1024, f"irp's peak RSS was {r.maxrss_kib} KiB (>= 64 MiB)")
    used = os.stat(r.path(ev["path"])).st_blocks * 512
    check(used < 64 * MIB, f"the copy of a sparse image takes {used} bytes on disk")


@test
def missing_source_fails_naming_it(c):
    ok = c.write("present.log", "here\n")
    pb = playbook(f"""\
  - id: grab
    evidence:
      collect:
        - path: {ok}
        - path: {c.path("auth.log")}
        - run: [touch, {c.path("third-ran")}]
          name: third.txt
  - id: after
    run: [touch, after-ran]
""")
    r = c.run(pb)
    eq(r.rc, 1, f"exit status {r!r}")
    fin = r.finished("grab")
    eq(fin["status"], "failed", "status")
    check("auth.log: No such file or directory" in fin.get("error", ""),
          f"error names the item and why: {fin}")
    eq([e["item"] for e in r.ev("evidence.collected")], ["present.log"], "collected items")
    check(not os.path.exists(c.path("third-ran")), "an item after the failing one ran")
    check(not os.path.exists(c.path("after-ran")), "the dependent step ran")
    eq(files_under(r.path("evidence")), ["grab/present.log"], "files in evidence/")


@test
def unsafe_names_refused(c):
    # Static names: validate refuses them before anything runs.
    for bad, text in (('into: "../x"', "into '../x' must be a plain folder name"),
                      ('into: /tmp', "into '/tmp' must be a plain folder name"),
                      (None, "evidence name '../x' must be a plain file name")):
        into = f"      {bad}\n" if bad else ""
        pb = playbook(f"""\
  - id: grab
    evidence:
{into}      collect:
        - run: [echo, hi]
          name: {"x.txt" if bad else '"../x"'}
""")
        r = c.run(pb)
        eq(r.rc, 2, f"exit status for {bad or 'name ../x'} {r!r}")
        check(re.search(r"pb\.yaml:\d+:\d+: error: " + re.escape(text), r.err),
              f"no located diagnostic {text!r}: {r.err!r}")
        c.no_run_dir()
        check(not os.path.exists(c.path("x")) and not os.path.exists(c.path("x.txt")),
              "something was written outside the run directory")
    # A rendered path whose last component is no plain file name.
    os.makedirs(c.path("sub"))
    os.makedirs(c.runs)
    pb = playbook("""\
  - id: grab
    evidence:
      collect:
        - path: "${{ inputs.p }}"
""").replace("steps:", "inputs:\n  p: {}\nsteps:")
    for p in (c.path("sub") + "/..", c.path("sub") + "/"):
        before = sorted(os.listdir(c.dir))
        r = c.run(pb, "-i", f"p={p}")
        eq(r.rc, 1, f"exit status for path {p!r} {r!r}")
        fin = r.finished("grab")
        check("names no plain file" in fin.get("error", "") and p in fin["error"],
              f"error for path {p!r}: {fin}")
        eq(r.ev("evidence.collected"), [], "nothing collected")
        check(not os.path.exists(r.path("evidence")), "evidence/ was written to")
        eq(sorted(os.listdir(c.dir)), before, "files appeared beside the run")
    # Two items saved under one name.
    os.makedirs(c.path("a"))
    os.makedirs(c.path("b"))
    c.write("a/x.log", "a")
    c.write("b/x.log", "b")
    r = c.run(playbook("  - id: grab\n    evidence:\n      collect:\n"
                       "        - path: a/x.log\n        - path: b/x.log\n"))
    eq(r.rc, 1, f"exit status for a duplicate name {r!r}")
    check("both saved as 'x.log'" in r.finished("grab").get("error", ""), "duplicate refused")
    check(not os.path.exists(r.path("evidence")), "evidence/ was written to")


@test
def symlink_in_evidence_not_followed(c):
    """A folder of evidence/ replaced by a symlink (here by an earlier
    step) is refused, and nothing lands where it points."""
    target = c.path("elsewhere")
    os.makedirs(target)
    src = c.write("auth.log", "x\n")
    pb = playbook(f"""\
  - id: plant
    run: [sh, -c, 'mkdir -p "$IRP_RUN_DIR/evidence" && ln -s {target} "$IRP_RUN_DIR/evidence/grab"']
  - id: grab
    evidence:
      collect:
        - path: {src}
""")
    r = c.run(pb)
    eq(r.rc, 1, f"exit status {r!r}")
    eq(r.finished("plant")["status"], "succeeded", "the planting step")
    fin = r.finished("grab")
    eq(fin["status"], "failed", "status")
    check("auth.log:" in fin.get("error", "") and "symbolic link" in fin["error"],
          f"error: {fin}")
    eq(os.listdir(target), [], "files written through the symlink")
    eq(r.ev("evidence.collected"), [], "nothing collected")


# ---- the loop and time ----------------------------------------------------------

class SlowWriter(threading.Thread):
    """Feeds a FIFO: waits for a reader, then `chunks` chunks, `gap` s apart."""

    def __init__(self, path, chunks, gap, timeout=30):
        super().__init__(daemon=True)
        self.path, self.chunks, self.gap, self.timeout = path, chunks, gap, timeout
        self.sent = hashlib.sha256()
        self.size = 0
        self.error = None

    def run(self):
        end = time.monotonic() + self.timeout
        fd = None
        while fd is None:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:          # ENXIO: no reader yet
                if time.monotonic() > end:
                    self.error = "no reader opened the FIFO"
                    return
                time.sleep(0.02)
        os.set_blocking(fd, True)
        try:
            for i in range(self.chunks):
                data = bytes([65 + i % 26]) * 65536
                os.write(fd, data)
                self.sent.update(data)
                self.size += len(data)
                time.sleep(self.gap)
        except OSError as e:
            self.error = str(e)
        finally:
            os.close(fd)


@test
def slow_copy_does_not_block_the_loop(c):
    fifo = c.path("feed")
    os.mkfifo(fifo)
    w = SlowWriter(fifo, chunks=10, gap=0.3)
    w.start()
    pb = playbook(f"""\
  - id: slow
    needs: []
    evidence:
      collect:
        - path: {fifo}
  - id: quick
    needs: []
    run: [sleep, "0.3"]
  - id: pause
    needs: []
    wait: 500ms
""")
    r = c.run(pb, "--jobs", "2")
    w.join(10)
    check(w.error is None, f"writer: {w.error}")
    eq(r.rc, 0, f"exit status {r!r}")
    ev = r.one("evidence.collected", item="feed")
    eq(ev["size"], w.size, "bytes copied from the FIFO")
    eq(ev["sha256"], w.sent.hexdigest(), "hash of what was written to the FIFO")
    check_copy(r, ev)
    started = ts_ms(r.one("step.started", step="slow")["ts"])
    collected = ts_ms(ev["ts"])
    check(collected - started >= 2500, f"the copy took only {collected - started} ms")
    for other in ("quick", "pause"):
        done = ts_ms(r.finished(other)["ts"])
        check(done < collected - 1000,
              f"{other} finished at {done}, the copy at {collected}: the loop was blocked")
        check(r.finished(other)["seq"] < ev["seq"], f"{other} journaled after the copy ended")


@test
def source_changed_during_copy_warns(c):
    big = c.path("growing.log")
    with open(big, "wb") as f:
        chunk = b"0123456789abcdef" * 65536          # 1 MiB, not zeros
        for _ in range(160):
            f.write(chunk)
    stop = threading.Event()
    appended = threading.Event()

    def writer():
        with open(big, "ab", buffering=0) as f:
            while not stop.is_set():
                f.write(b"late line\n")
                appended.set()
                time.sleep(0.002)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        check(appended.wait(5), "the writer did not start")
        pb = playbook(f"  - id: grab\n    evidence:\n      collect:\n        - path: {big}\n")
        r = c.run(pb)
    finally:
        stop.set()
        t.join(5)
    eq(r.rc, 0, f"exit status {r!r}")
    ev = r.one("evidence.collected", item="growing.log")
    eq(ev.get("warning"), "source changed during the copy", f"warning in {ev}")
    before, after = ev.get("before"), ev.get("after")
    check(isinstance(before, dict) and isinstance(after, dict), f"before/after in {ev}")
    check(before["size"] < after["size"], f"sizes before/after {before} {after}")
    check(before["size"] <= ev["size"] <= after["size"], f"bytes copied {ev['size']}")
    eq(ev["mtime"], before["mtime"], "mtime is the one seen before the copy")
    check(TS_RE.match(after["mtime"]), "after mtime")
    check_copy(r, ev)
    eq(r.finished("grab")["status"], "succeeded", "a changed source still counts")
    verify_ok(r)


@test
def timeout_stops_command_and_copy(c):
    fifo = c.path("never-fed")
    os.mkfifo(fifo)
    pb = playbook(f"""\
  - id: cmd
    needs: []
    timeout: 1s
    evidence:
      collect:
        - run: [sh, -c, 'printf partial; exec sleep 30']
          name: dump.bin
  - id: pipe
    needs: []
    timeout: 1s
    evidence:
      collect:
        - path: {fifo}
""")
    t0 = time.monotonic()
    r = c.run(pb, "--jobs", "2")
    took = time.monotonic() - t0
    eq(r.rc, 1, f"exit status {r!r}")
    check(took < 15, f"the run took {took:.1f} s: the timeouts did not stop the work")
    for step in ("cmd", "pipe"):
        fin = r.finished(step)
        eq(fin["status"], "timed_out", f"{step} status")
        check(fin["duration_ms"] < 7000, f"{step} took {fin['duration_ms']} ms")
    eq(r.one("step.finished", step="cmd").get("signal"), 15, "the command got SIGTERM")
    pid = r.one("step.spawned", step="cmd")["pid"]
    check(process_gone(pid), f"the command (pid {pid}) is still running")
    eq(r.ev("evidence.collected"), [], "nothing collected")
    left = files_under(r.path("evidence")) if os.path.isdir(r.path("evidence")) else []
    eq(left, [], "files left in evidence/ by the stopped items")


@test
def retry_keeps_earlier_copies(c):
    """Attempt 1 copies a file, then its command fails; attempt 2 keeps
    that whole copy (evidence is never replaced), leaves no partial file,
    and collects the rest."""
    src = c.write("auth.log", "first\n")
    pb = playbook(f"""\
  - id: grab
    retries: 1
    evidence:
      collect:
        - path: {src}
        - run: [sh, -c, 'printf half; test -e flag || {{ touch flag; exit 3; }}; printf " whole"']
          name: out.txt
""")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    f1 = r.one("step.finished", step="grab", attempt=1)
    eq(f1["status"], "failed", "attempt 1")
    eq(f1.get("exit_code"), 3, "attempt 1 exit code")
    check("out.txt:" in f1.get("error", "") and "status 3" in f1["error"], f"error {f1}")
    eq(r.one("step.finished", step="grab", attempt=2)["status"], "succeeded", "attempt 2")
    a, kept = r.ev("evidence.collected", item="auth.log")
    eq((a["attempt"], "kept" in a), (1, False), "auth.log copied by attempt 1")
    # Attempt 2 journals the copy it kept again (a crash may have come
    # between the copy and its first line): same bytes, same hash.
    eq((kept["attempt"], kept.get("kept")), (2, True), "auth.log kept by attempt 2")
    eq((kept["sha256"], kept["size"], kept["path"]), (a["sha256"], a["size"], a["path"]),
       "the kept copy is the first one")
    o = r.one("evidence.collected", item="out.txt")
    eq(o["attempt"], 2, "out.txt collected by attempt 2")
    check_copy(r, a, src)
    check_copy(r, o)
    with open(r.path(o["path"]), "rb") as f:
        eq(f.read(), b"half whole", "the capture of attempt 2")
    no_partials(r)
    eq(files_under(r.path("evidence")), ["grab/auth.log", "grab/out.txt"], "evidence/")
    verify_ok(r)


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
