#!/usr/bin/env python3
"""The security guarantees of README.md ("Guarantees"), each tested here by
name against the real `irp` binary: private run directories, files never
written through a symlink, secrets kept out of every record and out of
children's argv and inherited environment, inputs that can never become
shell syntax, TLS verified for e-mail, children that start clean.

Guarantees tested elsewhere are named in the README with their file:
notify.py (webhook TLS, redirects), verify_note.py (tamper-evident
journal), evidence.py (evidence folders replaced by symlinks).

Every test runs in a fresh temporary directory, reads what irp wrote and
what its children saw (/proc, files they left), and every subprocess has a
timeout, so a hang fails a test, never the suite.

Usage: security.py [NAME-SUBSTRING...]   (runs only the matching tests)
Prints one line per test and a summary "N passed, M failed[, K skipped]";
exits 1 when any test failed.  A failed test's directory is kept and
named.  Environment: IRP (the irp binary, required).
"""
import json
import os
import re
import shutil
import signal
import socketserver
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback

IRP = os.environ.get("IRP")
if not IRP:
    sys.exit("security: set IRP to the path of the irp binary")
IRP = os.path.abspath(IRP)

RUN_TIMEOUT = 60            # seconds, any single irp invocation
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error: |"
                          r"SUMMARY: \w+Sanitizer")
SECRET_VAR = "IRP_SECURITY_TOKEN"
SECRET = "s3cr3t-T0ken-9f2b7c"
SCRUB = (SECRET_VAR, "IRP_RUN_ID", "IRP_RUN_DIR", "IRP_STEP_ID", "IRP_INSTANCE", "IRP_ITEM",
         "IRP_INDEX", "IRP_ATTEMPT", "IRP_OUTPUT", "NO_COLOR")


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


def files_under(top):
    for root, dirs, files in os.walk(top):
        for f in files:
            yield os.path.join(root, f)


def mode(path):
    return oct(stat.S_IMODE(os.lstat(path).st_mode))


class Run:
    """An irp invocation and what it left behind."""

    def __init__(self, rc, out, err, cwd):
        self.rc, self.out, self.err = rc, out, err
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
        if self.dir and os.path.exists(self.path("journal.jsonl")):
            with open(self.path("journal.jsonl"), "rb") as f:
                self.events = [json.loads(line) for line in f.read().split(b"\n")[:-1]]

    def __repr__(self):
        return (f"<irp exit {self.rc}, dir {self.dir}>\n"
                f"--- stdout\n{self.out[-3000:]}--- stderr\n{self.err[-3000:]}---")

    def path(self, rel=""):
        return os.path.join(self.dir, rel)

    def ev(self, name, **match):
        return [e for e in self.events if e["event"] == name and
                all(e.get(k) == v for k, v in match.items())]

    def one(self, name, **match):
        found = self.ev(name, **match)
        check(len(found) == 1, f"expected one {name} {match}, found {len(found)}: {found}")
        return found[0]

    def read(self, rel):
        with open(self.path(rel), "rb") as f:
            return f.read()


class Case:
    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"irp-security-{name}-")
        self.runs = os.path.join(self.dir, "runs")

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if k not in SCRUB}
        env.update(extra or {})
        return env

    def argv(self, pb, args):
        return [IRP, "run", self.write("pb.yaml", pb), "--runs", self.runs] + list(args)

    def irp(self, *args, env=None, umask=None, timeout=RUN_TIMEOUT):
        """Any irp command; (exit status, stdout, stderr)."""
        pre = (lambda: os.umask(umask)) if umask is not None else None
        try:
            p = subprocess.run([IRP] + list(args), cwd=self.dir, env=self.env(env),
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                               preexec_fn=pre)
        except subprocess.TimeoutExpired:
            raise Failure(f"irp {args[0]} did not end within {timeout} s")
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        m = SANITIZER_RE.search(err)
        check(not m, f"sanitizer report:\n{err[:4000]}")
        return p.returncode, out, err

    def run(self, pb, *args, env=None, umask=None):
        rc, out, err = self.irp("run", self.write("pb.yaml", pb), "--runs", self.runs, *args,
                                env=env, umask=umask)
        return Run(rc, out, err, self.dir)

    def spawn(self, pb, *args, env=None):
        out, err = open(self.path("irp.out"), "wb"), open(self.path("irp.err"), "wb")
        p = subprocess.Popen(self.argv(pb, args), cwd=self.dir, env=self.env(env),
                             stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        out.close()
        err.close()
        return p

    def collect(self, p, timeout=RUN_TIMEOUT):
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
        return Run(p.returncode, out, err, self.dir)

    def journal_now(self):
        if not os.path.isdir(self.runs):
            return []
        for d in os.listdir(self.runs):
            path = os.path.join(self.runs, d, "journal.jsonl")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    return [json.loads(line) for line in f.read().split(b"\n")[:-1]]
        return []

    def wait_for(self, pred, p, timeout=20, what="a journal event"):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            evs = self.journal_now()
            found = [e for e in evs if pred(e)]
            if found:
                return found
            if p.poll() is not None:
                raise Failure(f"irp ended (exit {p.returncode}) before {what}")
            time.sleep(0.02)
        raise Failure(f"timed out waiting for {what}")

    def no_run_dir(self):
        made = os.listdir(self.runs) if os.path.isdir(self.runs) else []
        check(not made, f"a run directory was created: {made}")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def playbook(steps, head="", id_="sec"):
    return f"irp: 1\nid: {id_}\ntitle: Security {id_}\n{head}steps:\n{steps}"


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---- 1. the run directory is private ----------------------------------------

@test
def guarantee_run_directory_private(c):
    """Even under umask 0: the runs folder irp creates and the run directory
    0700, every folder inside 0700; journal, logs, inputs.json, report.md,
    the playbook copy and the lock 0600; evidence copies 0400."""
    src = c.write("auth.log", "Failed password for root\n")
    pb = playbook(f"""\
  - id: cmd
    for_each: [a, b]
    run: [echo, "${{{{ item }}}}"]
  - id: grab
    for_each: [x, y]
    evidence:
      collect:
        - path: {src}
        - run: [echo, captured]
          name: echo.txt
""", head="inputs:\n  note: {default: plain}\n")
    r = c.run(pb, umask=0)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(mode(c.runs), oct(0o700), "mode of the runs folder irp created")
    eq(mode(r.dir), oct(0o700), "mode of the run directory")
    copies = {e["path"] for e in r.ev("evidence.collected")}
    eq(len(copies), 4, f"evidence copies: {copies}")
    seen = set()
    for root, dirs, files in os.walk(r.dir):
        for d in dirs:
            eq(mode(os.path.join(root, d)), oct(0o700), f"mode of folder {d}/")
        for f in files:
            p = os.path.join(root, f)
            rel = os.path.relpath(p, r.dir)
            want = 0o400 if rel in copies else 0o600
            eq(mode(p), oct(want), f"mode of {rel}")
            seen.add(rel)
    for name in ("journal.jsonl", "inputs.json", "report.md", "playbook.yaml", "lock",
                 "logs/cmd.0.1.log", "logs/cmd.1.1.log"):
        check(name in seen, f"{name} missing from the run directory")
    check(copies <= seen, f"evidence copies missing: {copies - seen}")


# ---- 2. no symlink is followed ----------------------------------------------

SYMLINK_PB = """\
  - id: plant
    run: ['sh', '-c', 'PLANT']
  - id: victim
    run: [echo, payload-must-not-land]
  - id: later
    run: [touch, later-ran]
"""


def planted(c, plant):
    """Run a playbook whose first step plants a symlink in the run's logs/;
    return the run."""
    target = c.path("target")
    with open(target, "w") as f:
        f.write("original\n")
    os.makedirs(c.path("elsewhere"), exist_ok=True)
    r = c.run(playbook(SYMLINK_PB.replace("PLANT", plant.replace("TARGET", target)
                                          .replace("ELSEWHERE", c.path("elsewhere")))))
    with open(target) as f:
        eq(f.read(), "original\n", f"the symlink's target was written ({plant})")
    eq(os.listdir(c.path("elsewhere")), [], f"files written through a folder symlink ({plant})")
    return r


@test
def guarantee_logs_never_follow_symlinks(c):
    """A symlink planted where a step's log, its $IRP_OUTPUT file, or the
    logs/ folder itself belongs is refused, never written through: the step
    fails naming the symlink, the run starts nothing new and exits 4 (the
    run's own record cannot be written, SPEC §3)."""
    cases = {
        "log": 'ln -s TARGET "$IRP_RUN_DIR/logs/victim.1.log"',
        "outputs file": 'ln -s TARGET "$IRP_RUN_DIR/logs/victim.1.log.out"',
        "logs folder": 'mv "$IRP_RUN_DIR/logs" "$IRP_RUN_DIR/logs.moved" && '
                       'ln -s ELSEWHERE "$IRP_RUN_DIR/logs"',
    }
    for what, plant in cases.items():
        r = planted(c, plant)
        eq(r.rc, 4, f"exit status with a symlink for the {what} {r!r}")
        eq(r.one("step.finished", instance="plant")["status"], "succeeded", "the planting step")
        fin = r.one("step.finished", instance="victim")
        eq(fin["status"], "failed", f"status of the step whose {what} is a symlink")
        check("symbolic link" in fin.get("error", ""), f"error does not name the symlink: {fin}")
        check("victim" in r.err and "cannot write" in r.err, f"stderr: {r.err!r}")
        check(not os.path.exists(c.path("later-ran")), "a step started after the refusal")
        shutil.rmtree(c.runs)


# ---- 3. secrets ---------------------------------------------------------------

SECRETS_PB = f"""\
  - id: use
    env:
      TOKEN_ENV: "${{{{ secrets.{SECRET_VAR} }}}}"
      AUTH: "Bearer ${{{{ secrets.{SECRET_VAR} }}}}"
    run: |
      echo "stdout $TOKEN_ENV"
      echo "stderr $AUTH" >&2
      echo "tok=$TOKEN_ENV" >> "$IRP_OUTPUT"
      sleep 3
  - id: plain
    needs: []
    run: 'env > plain.env; sleep 3'
"""


def proc_file(pid, name):
    with open(f"/proc/{pid}/{name}", "rb") as f:
        return f.read()


@test
def guarantee_secrets_kept_out(c):
    """A secret handed to a command through `env:` (as itself and inside a
    derived value) reaches that command's environment and nothing else:
    not its argv (/proc/PID/cmdline while it runs), not the environment a
    command inherits (/proc/PID/environ of both, `env` of the other), not
    the journal, logs, inputs.json, report.md or any file of the run, not
    the terminal of `irp run` (also with --verbose), `irp status` or
    `irp report` in any format."""
    p = c.spawn(playbook(SECRETS_PB, head="tlp: red\n"), "--verbose", env={SECRET_VAR: SECRET})
    try:
        spawned = {e["instance"]: e["pid"] for e in
                   c.wait_for(lambda e: e["event"] == "step.spawned", p,
                              what="both steps spawned") if e}
        end = time.monotonic() + 10
        while len(spawned) < 2 and time.monotonic() < end:
            spawned = {e["instance"]: e["pid"] for e in c.journal_now()
                       if e["event"] == "step.spawned"}
            time.sleep(0.02)
        eq(sorted(spawned), ["plain", "use"], "spawned steps")
        views = {inst: (proc_file(pid, "cmdline"), proc_file(pid, "environ"))
                 for inst, pid in spawned.items()}
        r = c.collect(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eq(r.rc, 0, f"exit status {r!r}")
    s = SECRET.encode()
    for inst, (cmdline, environ) in views.items():
        check(s not in cmdline, f"the secret is in the argv of {inst}: {cmdline!r}")
        check(f"{SECRET_VAR}=".encode() not in environ,
              f"{inst} inherited the secret's own variable {SECRET_VAR}")
    env_use = views["use"][1].split(b"\0")
    check(b"TOKEN_ENV=" + s in env_use, "the secret did not reach the command given it in env")
    check(b"AUTH=Bearer " + s in env_use, "the derived value did not reach the command")
    check(s not in views["plain"][1], "the secret is in the environment of another command")
    with open(c.path("plain.env"), "rb") as f:
        check(s not in f.read(), "the secret is in `env` of a command not given it")
    leaks = [os.path.relpath(f, r.dir) for f in files_under(r.dir) if s in open(f, "rb").read()]
    eq(leaks, [], "files of the run holding the secret")
    check(SECRET not in r.out + r.err, "the secret is on the terminal of irp run")
    log = r.read("logs/use.1.log").decode()
    check("stdout ***" in log and "stderr Bearer ***" in log, f"log not redacted as ***: {log!r}")
    eq(r.one("step.started", instance="use")["action"]["env"],
       {"TOKEN_ENV": "***", "AUTH": "***"}, "env in step.started")
    eq(r.one("step.finished", instance="use")["outputs"], {"tok": "***"}, "outputs")
    for args in (["status", r.dir], ["report", r.dir], ["report", r.dir, "--format", "json"],
                 ["report", r.dir, "--format", "junit"]):
        rc, out, err = c.irp(*args)
        eq(rc, 0, f"irp {' '.join(args[:1] + args[2:])}: {err}")
        check(SECRET not in out + err, f"the secret is in the output of irp {args[0]}")


@test
def guarantee_secret_in_run_refused(c):
    """A secret written into `run` (argv or shell string) would sit in the
    process list: `validate` reports it (exit 1) and `run` refuses before
    anything starts (exit 2), never showing the value."""
    pb = playbook(f"""\
  - id: in-argv
    run: [curl, -H, "Authorization: ${{{{ secrets.{SECRET_VAR} }}}}", https://example.invalid]
  - id: in-string
    run: "echo ${{{{ secrets.{SECRET_VAR} }}}} | login"
""")
    rc, out, err = c.irp("validate", c.write("pb.yaml", pb), env={SECRET_VAR: SECRET})
    eq(rc, 1, f"validate exit status: {err}")
    found = re.findall(r"^(.*):(\d+):(\d+): error: (.*)$", err, re.M)
    eq([(int(line), "secret" in msg and "pass it through env" in msg)
        for _, line, _, msg in found], [(6, True), (8, True)], f"diagnostics: {err!r}")
    r = c.run(pb, env={SECRET_VAR: SECRET})
    eq(r.rc, 2, f"run exit status {r!r}")
    check("pass it through env" in r.err, f"run does not say why: {r.err!r}")
    check(SECRET not in r.out + r.err + out + err, "the secret value on the terminal")
    c.no_run_dir()


# ---- 4. inputs never become shell syntax -------------------------------------------

HOSTILE = [
    "; rm -rf canary",
    "$(touch pwned-1)",
    "`touch pwned-2`",
    "\"; touch pwned-3; \"",
    "'; touch pwned-4; '",
    "line one\ntouch pwned-5\n",
    "${IFS}touch${IFS}pwned-6",
    "*",
    "-n",
    "--help",
    "$HOME ${HOME} $IRP_V1 ${IRP_V2}",
    "\\\" \\ \\\\",
    "a && touch pwned-7 || touch pwned-8 | cat > pwned-9 &",
    "",
    "  two  spaces  ",
    "\t\r\x1b[31m",
    "Réseau — ünïcode ✓",
    "%s%n%x",
]


@test
def guarantee_inputs_never_shell_syntax(c):
    """Hostile input values in a string `run` -- bare, inside double
    quotes, in an assignment -- and as an argv element: nothing executes
    (no pwned-* file, the canary survives, no glob expands), and each
    value arrives byte-exact."""
    os.makedirs(c.path("canary"))
    c.write("canary/keep", "keep\n")
    c.write("glob-bait", "")
    c.write("inputs.json", json.dumps({"values": HOSTILE}))
    pb = playbook("""\
  - id: bare
    for_each: ${{ inputs.values }}
    run: printf '%s' ${{ item }} > out-bare-$IRP_INDEX
  - id: dquoted
    needs: []
    for_each: ${{ inputs.values }}
    run: 'printf "%s" "<${{ item }}>" > out-dq-$IRP_INDEX'
  - id: assigned
    needs: []
    for_each: ${{ inputs.values }}
    run: v=${{ item }}; printf '%s' "$v" > out-as-$IRP_INDEX
  - id: argv
    needs: []
    for_each: ${{ inputs.values }}
    run: [printf, '%s', "${{ item }}"]
""", head="inputs:\n  values: {type: list}\n")
    r = c.run(pb, "--inputs", c.path("inputs.json"))
    eq(r.rc, 0, f"exit status {r!r}")
    pwned = [f for f in files_under(c.dir) if os.path.basename(f).startswith("pwned")]
    eq(pwned, [], "files created by injected commands")
    check(os.path.exists(c.path("canary/keep")), "the canary folder was removed")
    for i, v in enumerate(HOSTILE):
        b = v.encode()
        for prefix, want in (("bare", b), ("dq", b"<" + b + b">"), ("as", b)):
            with open(c.path(f"out-{prefix}-{i}"), "rb") as f:
                eq(f.read(), want, f"value {i} ({v!r}) in the {prefix} form")
        eq(r.read(f"logs/argv.{i}.1.log"), b, f"value {i} ({v!r}) as an argv element")
    started = r.ev("step.started", step="bare")[0]["action"]["argv"][-1]
    check("${IRP_V1}" in started, f"the script is not written with ${{IRP_V1}}: {started!r}")


@test
def guarantee_templates_in_quotes_refused(c):
    """Where the shell would not expand a value as one word -- single
    quotes, backquotes, a here-document -- `validate` refuses the template
    (exit 1, located); `run` refuses before anything starts (exit 2)."""
    pb = playbook("""\
  - id: single
    run: "echo '${{ inputs.x }}'"
  - id: back
    run: "echo `${{ inputs.x }}`"
  - id: heredoc
    run: |
      cat <<EOF
      ${{ inputs.x }}
      EOF
""", head="inputs:\n  x: {default: value}\n")
    rc, out, err = c.irp("validate", c.write("pb.yaml", pb))
    eq(rc, 1, f"validate exit status: {err}")
    lines = sorted(int(m) for m in re.findall(r"^.*?:(\d+):\d+: error: ", err, re.M))
    eq(lines, [8, 10, 14], f"located diagnostics: {err!r}")
    check("single quotes" in err and "backquotes" in err and "here-document" in err,
          f"diagnostics do not say why: {err!r}")
    r = c.run(pb)
    eq(r.rc, 2, f"run exit status {r!r}")
    c.no_run_dir()


# ---- 5. children start clean -----------------------------------------------------

@test
def guarantee_children_start_clean(c):
    """Every command starts with stdin on /dev/null, no descriptor of irp's
    but 0-2 (not the journal, not the lock), in a process group of its own,
    with default signal handling even when irp's own caller ignored
    SIGINT and SIGHUP (as nohup does)."""
    # The descriptors are listed by a fresh process, not the shell: a
    # shell's own pipes and saved descriptors would show.  Its own handle
    # on /proc/self/fd is closed by the time it checks which entries exist.
    lister = ("import os; print(' '.join(f for f in os.listdir('/proc/self/fd') "
              "if os.path.exists('/proc/self/fd/' + f)))")
    # The signal state is read by the command itself, exec'd by irp: a
    # shell's own child would read the shell's mask while dash has every
    # signal blocked around its vfork.
    sig_lister = ("print(''.join(l for l in open('/proc/self/status') "
                  "if l.startswith(('SigIgn', 'SigBlk'))), end='')")
    pb = playbook(f"""\
  - id: fds
    run: [{json.dumps(sys.executable)}, -c, "{lister}"]
  - id: probe
    run: |
      readlink /proc/$$/fd/0
      cut -d' ' -f5 /proc/$$/stat; echo $$
  - id: sigs
    run: [{json.dumps(sys.executable)}, -c, "{sig_lister}"]
""")

    def nohup_like():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        p = subprocess.run(c.argv(pb, []), cwd=c.dir, env=c.env(), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=RUN_TIMEOUT, preexec_fn=nohup_like)
    except subprocess.TimeoutExpired:
        raise Failure("irp did not end")
    r = Run(p.returncode, p.stdout.decode(), p.stderr.decode(), c.dir)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(r.read("logs/fds.1.log").split(), [b"0", b"1", b"2"], "descriptors of a command")
    lines = r.read("logs/probe.1.log").decode().splitlines()
    eq(lines[0], "/dev/null", "stdin")
    eq(lines[1], lines[2], "process group id vs pid (a group of its own)")
    sig = dict(line.split(":\t") for line in r.read("logs/sigs.1.log").decode().splitlines())
    eq(int(sig["SigIgn"], 16) & ((1 << (signal.SIGINT - 1)) | (1 << (signal.SIGHUP - 1))), 0,
       "SIGINT/SIGHUP ignored in the command")
    eq(int(sig["SigBlk"], 16), 0, "signals blocked in the command")


# ---- 6. TLS for e-mail -------------------------------------------------------------

def make_cert(c):
    if not shutil.which("openssl"):
        raise Skip("the openssl command is not installed")
    cert, key = c.path("cert.pem"), c.path("key.pem")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       capture_output=True, timeout=60)
    check(p.returncode == 0, f"openssl req failed: {p.stderr.decode(errors='replace')}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return cert, ctx


class TLSSMTPSession(socketserver.StreamRequestHandler):
    """SMTP over TLS, implicit (smtps) or after STARTTLS: records what a
    client said after the handshake, and handshakes that failed."""
    timeout = 20

    def say(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handshake(self):
        try:
            tls = self.server.ctx.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.server.lock:
                self.server.failed_handshakes.append(str(e))
            return False
        self.request = tls
        self.rfile = tls.makefile("rb")
        self.wfile = tls.makefile("wb")
        return True

    def handle(self):
        srv = self.server
        secure = srv.implicit and self.handshake()
        if srv.implicit and not secure:
            return
        self.say("220 tls.test ESMTP")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if secure and verb not in ("EHLO", "HELO", "QUIT"):
                with srv.lock:
                    srv.after_tls.append(verb)
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250-tls.test\r\n" + (b"" if secure else b"250-STARTTLS\r\n"))
                self.say("250 8BITMIME")
            elif verb == "STARTTLS" and not secure:
                self.say("220 go ahead")
                if not self.handshake():
                    return
                secure = True
            elif verb == "DATA":
                self.say("354 go ahead")
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                with srv.lock:
                    srv.delivered += 1
                self.say("250 queued")
            elif verb == "QUIT":
                self.say("221 bye")
                return
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                self.say("250 ok")
            else:
                self.say("502 not implemented")


class TLSSMTP(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ctx, implicit):
        super().__init__(("127.0.0.1", 0), TLSSMTPSession)
        self.ctx, self.implicit = ctx, implicit
        self.lock = threading.Lock()
        self.failed_handshakes, self.after_tls, self.delivered = [], [], 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self):
        return self.server_address[1]


def email_step(id_, server, extra=""):
    return f"""\
  - id: {id_}
    needs: []
    notify:
      via: email
      server: "{server}"
      from: irp@example.org
      to: [csirt@example.org]
      subject: Early warning
      body: must only travel to a verified server
{extra}"""


@test
def guarantee_email_tls_verified_by_default(c):
    """E-mail over smtps:// and over STARTTLS (required by default) checks
    the server's certificate: an untrusted one fails the step before any
    command of the mail transaction is sent; the same server trusted
    through `ca_file` receives the message (so the refusal is the
    verification, not a broken server)."""
    cert, ctx = make_cert(c)
    for scheme, implicit in (("smtps", True), ("smtp", False)):
        srv = TLSSMTP(ctx, implicit)
        try:
            url = f"{scheme}://127.0.0.1:{srv.port}"
            r = c.run(playbook(email_step("strict", url)
                               + email_step("pinned", url, f"      ca_file: \"{cert}\"\n")))
            eq(r.rc, 1, f"exit status ({scheme}) {r!r}")
            strict = r.one("step.finished", instance="strict")
            eq(strict["status"], "failed", f"status with an untrusted certificate ({scheme})")
            check(re.search(r"certificate|SSL|TLS", strict.get("error", ""), re.I),
                  f"the error does not mention the certificate ({scheme}): {strict}")
            eq(r.one("step.finished", instance="pinned")["status"], "succeeded",
               f"status with ca_file ({scheme})")
            eq(srv.delivered, 1, f"messages delivered ({scheme})")
            eq(srv.after_tls.count("MAIL"), 1, f"MAIL commands after a handshake ({scheme})")
            check(srv.failed_handshakes, f"no handshake was refused ({scheme})")
            eq(r.one("step.started", instance="strict")["action"].get("tls_verify"), True,
               f"tls_verify default in step.started ({scheme})")
        finally:
            srv.shutdown()
            srv.server_close()
        shutil.rmtree(c.runs)


# ---- harness ---------------------------------------------------------------------------

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
