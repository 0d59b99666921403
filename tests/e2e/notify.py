#!/usr/bin/env python3
"""End-to-end tests of `notify` steps under `irp run` (SPEC §1.1 notify,
§1.2 secrets, §3 journal): webhooks over HTTP and HTTPS, e-mail over
SMTP, and appends to a file.

Every receiver is real and runs in this process on 127.0.0.1, on a port
the kernel picks: an HTTP server (http.server) that records each request
and answers from a script, the same behind TLS with a certificate made by
the `openssl` command, a socket that accepts and never answers, and a
small SMTP server that records envelopes and messages.  Every test writes
its own playbook into a fresh temporary directory, runs the real binary
(`--runs` inside that directory) and checks what the receiver got against
what irp wrote in its journal.

Every subprocess has a timeout, so a hang fails a test, never the suite.

Usage: notify.py [NAME-SUBSTRING...]   (runs only the matching tests)
Prints one line per test and a summary "N passed, M failed[, K skipped]";
exits 1 when any test failed.  A failed test's directory is kept and
named.  Environment: IRP (the irp binary, required).
"""
import base64
import ctypes
import datetime
import email
import email.policy
import email.utils
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
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
    sys.exit("notify: set IRP to the path of the irp binary")
IRP = os.path.abspath(IRP)

RUN_TIMEOUT = 60            # seconds, any single irp invocation
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error: |"
                          r"SUMMARY: \w+Sanitizer")
SECRET = "tok-5ecr3t-77Zq"
# Variables the tests set for irp, or that would send the requests elsewhere.
SCRUB = ("TOKEN", "SMTP_PASS", "NO_COLOR", "http_proxy", "https_proxy", "HTTP_PROXY",
         "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY")


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


# ---- one run ------------------------------------------------------------------------

class Run:
    """An irp invocation and the journal it left behind."""

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
        check(self.events, f"no journal: {self!r}")

    def __repr__(self):
        return (f"<irp exit {self.rc}, {self.elapsed:.2f}s, dir {self.dir}>\n"
                f"--- stdout\n{self.out}--- stderr\n{self.err}---")

    def ev(self, name, **match):
        return [e for e in self.events if e["event"] == name and
                all(e.get(k) == v for k, v in match.items())]

    def one(self, name, **match):
        found = self.ev(name, **match)
        check(len(found) == 1, f"expected one {name} {match}, found {len(found)}:\n{self.dump()}")
        return found[0]

    def finished(self, instance):
        found = self.ev("step.finished", instance=instance)
        check(found, f"no step.finished for {instance}; journal:\n{self.dump()}")
        return found[-1]

    def sent(self, instance):
        return self.ev("notify.sent", instance=instance)

    def key(self, instance):
        return self.ev("step.started", instance=instance)[0]["action"]["idempotency_key"]

    def run_id(self):
        return self.one("run.started")["run_id"]

    def dump(self):
        return "\n".join(json.dumps(e)[:400] for e in self.events)


class Case:
    """A test's temporary directory and its receivers."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"irp-notify-{name}-")
        self.runs = os.path.join(self.dir, "runs")
        self.servers = []

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def run(self, playbook, *args, env=None, timeout=RUN_TIMEOUT, wrap=()):
        pb = self.write("pb.yaml", playbook)
        argv = list(wrap) + [IRP, "run", pb, "--runs", self.runs] + list(args)
        e = {k: v for k, v in os.environ.items() if k not in SCRUB}
        e.update(env or {})
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, cwd=self.dir, env=e, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout,
                               preexec_fn=lambda: os.umask(0o022))
        except subprocess.TimeoutExpired:
            raise Failure(f"irp run did not end within {timeout} s: {argv}")
        r = Run(p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"), time.monotonic() - t0, self.dir)
        check(r.rc in (0, 1), f"irp crashed, refused the playbook or failed internally: {r!r}")
        return r

    def serve(self, server):
        self.servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return server

    def close(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def playbook(steps, head=""):
    return f"irp: 1\nid: e2e-notify\ntitle: Notifications\n{head}steps:\n{steps}"


def expected_key(run_id, instance):
    """The documented derivation: hex SHA-256 of "run_id\\ninstance", 32 digits."""
    return hashlib.sha256(f"{run_id}\n{instance}".encode()).hexdigest()[:32]


# ---- an HTTP receiver ------------------------------------------------------------

class Recorder(http.server.BaseHTTPRequestHandler):
    """Records every request; answers from server.script: path → list of
    {status, body, delay, headers}, the first taken each time until one
    is left ("*" for any other path)."""

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        srv = self.server
        with srv.lock:
            srv.requests.append({"method": self.command, "path": self.path,
                                 "headers": {k.lower(): v for k, v in self.headers.items()},
                                 "body": body, "t": time.monotonic()})
            answers = srv.script.get(self.path) or srv.script.get("*") or [{}]
            a = answers.pop(0) if len(answers) > 1 else answers[0]
        time.sleep(a.get("delay", 0))
        out = a.get("body", b"ok")
        if callable(out):
            out = out(self)
        self.send_response(a.get("status", 200))
        for k, v in a.get("headers", {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST

    def log_message(self, *args):
        pass


class HTTPReceiver(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64   # the default 5 would make the kernel drop connections

    def __init__(self, script=None, tls=None):
        super().__init__(("127.0.0.1", 0), Recorder)
        self.lock = threading.Lock()
        self.requests = []
        self.script = script or {}
        if tls:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    def handle_error(self, request, client_address):
        pass   # a client that gave up (a timeout, a refused certificate)

    @property
    def port(self):
        return self.server_address[1]

    def url(self, path="/hook", scheme="http"):
        return f"{scheme}://127.0.0.1:{self.port}{path}"


class Silent:
    """A port that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def shutdown(self):
        pass

    def server_close(self):
        self.sock.close()


# ---- an SMTP receiver ------------------------------------------------------------

class SMTPSession(socketserver.StreamRequestHandler):
    """Enough of RFC 5321 for libcurl: EHLO, AUTH PLAIN, MAIL, RCPT, DATA,
    RSET, NOOP, QUIT.  No STARTTLS is offered."""

    def say(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        srv = self.server
        tx = {"mail_from": None, "rcpt": [], "auth": None, "data": None, "raw": None}
        self.say("220 test.invalid ESMTP ready")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250-test.invalid\r\n250-AUTH PLAIN\r\n250-8BITMIME\r\n")
                self.say("250 SIZE 1000000")
            elif verb == "AUTH":
                parts = cmd.split()
                if len(parts) < 3:
                    self.say("334 ")
                    resp = self.rfile.readline().decode().strip()
                else:
                    resp = parts[2]
                tx["auth"] = base64.b64decode(resp).split(b"\0")
                self.say("235 2.7.0 accepted")
            elif verb == "MAIL":
                tx["mail_from"] = cmd[len("MAIL FROM:"):].split()[0]
                self.say("250 2.1.0 ok")
            elif verb == "RCPT":
                to = cmd[len("RCPT TO:"):].split()[0]
                if to.strip("<>") in srv.reject:
                    self.say("550 5.1.1 no such mailbox here")
                else:
                    tx["rcpt"].append(to)
                    self.say("250 2.1.5 ok")
            elif verb == "DATA":
                self.say("354 go ahead")
                raw = b""
                while True:
                    chunk = self.rfile.readline()
                    if not chunk or chunk == b".\r\n":
                        break
                    raw += chunk
                tx["raw"] = raw
                # Undo the transparency procedure (RFC 5321 4.5.2).
                tx["data"] = b"".join(l[1:] if l.startswith(b".") else l
                                      for l in raw.splitlines(keepends=True))
                with srv.lock:
                    srv.messages.append(dict(tx))
                self.say("250 2.0.0 queued as 4711")
            elif verb == "RSET":
                tx.update(mail_from=None, rcpt=[], data=None)
                self.say("250 ok")
            elif verb == "NOOP":
                self.say("250 ok")
            elif verb == "QUIT":
                self.say("221 bye")
                return
            else:
                self.say("502 5.5.2 not implemented")


class SMTPReceiver(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, reject=()):
        super().__init__(("127.0.0.1", 0), SMTPSession)
        self.lock = threading.Lock()
        self.messages = []
        self.reject = set(reject)

    @property
    def port(self):
        return self.server_address[1]


# ---- tests ----------------------------------------------------------------------

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def webhook(id_, url, extra="", needs="[]"):
    return (f"  - id: {id_}\n    needs: {needs}\n{extra}"
            f"    notify:\n      via: webhook\n      url: \"{url}\"\n")


@test
def webhook_default_json_body(c):
    srv = c.serve(HTTPReceiver())
    pb = playbook(f"""\
  - id: csirt
    needs: []
    for_each: [alpha, beta]
    notify:
      via: webhook
      url: "{srv.url('/reports')}"
      subject: "Early warning ${{{{ inputs.incident }}}} ${{{{ item }}}}"
      body: |
        Unauthorised access detected.
        Zugriff bestätigt.
""", head="inputs:\n  incident: {default: INC-2026-7}\n")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(len(srv.requests), 2, "requests received")
    run_id = r.run_id()
    seen = set()
    for req in srv.requests:
        eq(req["method"], "POST", "method")
        eq(req["path"], "/reports", "path")
        h = req["headers"]
        eq(h.get("content-type"), "application/json", "Content-Type")
        check(h.get("user-agent", "").startswith("irp/"), f"User-Agent {h.get('user-agent')!r}")
        doc = json.loads(req["body"].decode("utf-8"))
        item = doc["instance"].split("[")[1].rstrip("]")
        inst = f"csirt[{item}]"
        eq(doc["instance"], inst, "instance in the body")
        eq(doc["step"], "csirt", "step in the body")
        eq(doc["playbook"], "e2e-notify", "playbook in the body")
        eq(doc["run"]["id"], run_id, "run.id in the body")
        eq(doc["run"]["mode"], "run", "run.mode in the body")
        eq(doc["subject"], f"Early warning INC-2026-7 {item}", "subject in the body")
        eq(doc["body"], "Unauthorised access detected.\nZugriff bestätigt.\n", "body in the body")
        key = h.get("idempotency-key")
        eq(key, expected_key(run_id, inst), f"Idempotency-Key of {inst}")
        eq(r.key(inst), key, f"idempotency_key in step.started of {inst}")
        eq(doc["idempotency_key"], key, "idempotency_key in the body")
        seen.add(key)
        sent = r.sent(inst)
        eq(len(sent), 1, f"notify.sent of {inst}")
        eq((sent[0]["ok"], sent[0]["status"], sent[0]["response"], sent[0]["via"]),
           (True, 200, "ok", "webhook"), "notify.sent")
        eq(sent[0]["target"], srv.url("/reports"), "notify.sent target")
        check(r.finished(inst)["seq"] > sent[0]["seq"], "step.finished came before notify.sent")
        eq(r.finished(inst)["status"], "succeeded", f"status of {inst}")
    eq(len(seen), 2, "distinct keys of the two instances")
    action = r.ev("step.started", instance="csirt[alpha]")[0]["action"]
    eq((action["via"], action["url"], action["tls_verify"]), ("webhook", srv.url("/reports"), True),
       "step.started action")


@test
def webhook_raw_body_with_content_type(c):
    srv = c.serve(HTTPReceiver())
    pb = playbook(f"""\
  - id: raw
    notify:
      via: webhook
      url: "{srv.url('/raw')}"
      content_type: text/plain; charset=utf-8
      headers: {{X-Case: "case ${{{{ run.mode }}}}"}}
      body: "plain text, not JSON: ${{{{ run.mode }}}}"
""")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(len(srv.requests), 1, "requests")
    req = srv.requests[0]
    eq(req["body"], b"plain text, not JSON: run", "raw body")
    eq(req["headers"].get("content-type"), "text/plain; charset=utf-8", "Content-Type")
    eq(req["headers"].get("x-case"), "case run", "templated header")
    eq(r.one("step.started")["action"]["headers"], {"X-Case": "case run"}, "headers in action")


@test
def webhook_secret_header_and_url_redacted(c):
    echo = lambda h: ("you sent " + h.headers.get("Authorization", "")).encode()
    srv = c.serve(HTTPReceiver({"*": [{"body": echo}]}))
    url = srv.url("/hooks/${{ secrets.TOKEN }}")
    pb = playbook(f"""\
  - id: tell
    notify:
      via: webhook
      url: "{url}"
      headers:
        Authorization: "Bearer ${{{{ secrets.TOKEN }}}}"
      subject: "about ${{{{ secrets.TOKEN }}}}"
      body: "plain"
""", head="tlp: red\n")
    r = c.run(pb, env={"TOKEN": SECRET})
    eq(r.rc, 0, f"exit status {r!r}")
    eq(len(srv.requests), 1, "requests")
    req = srv.requests[0]
    eq(req["headers"].get("authorization"), f"Bearer {SECRET}", "Authorization at the receiver")
    eq(req["path"], f"/hooks/{SECRET}", "the secret in the url reaches the receiver")
    eq(json.loads(req["body"])["subject"], f"about {SECRET}", "secret subject as sent")
    action = r.one("step.started")["action"]
    eq(action["headers"], {"Authorization": "***"}, "header in step.started")
    eq(action["url"], srv.url("/hooks/***"), "url in step.started")
    eq(action["subject"], "***", "subject in step.started")
    sent = r.one("notify.sent")
    eq(sent["response"], "you sent Bearer ***", "secret in the response excerpt")
    eq(sent["target"], srv.url("/hooks/***"), "notify.sent target")
    leaks = []
    for root, _, files in os.walk(r.dir):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                if SECRET.encode() in fh.read():
                    leaks.append(f)
    check(not leaks, f"the secret appears in {leaks}")
    check(SECRET not in r.out + r.err, "the secret appears on the terminal")


@test
def webhook_retry_keeps_key(c):
    srv = c.serve(HTTPReceiver({"/hook": [{"status": 500, "body": b"busy"}, {"status": 200}]}))
    pb = playbook(webhook("flaky", srv.url(), "    retries: 1\n"))
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    eq(len(srv.requests), 2, "requests (one failure, one retry)")
    keys = [q["headers"].get("idempotency-key") for q in srv.requests]
    eq(keys[0], keys[1], "Idempotency-Key across the retry")
    eq(keys[0], expected_key(r.run_id(), "flaky"), "Idempotency-Key")
    sent = r.sent("flaky")
    eq([(s["attempt"], s["status"], s["ok"]) for s in sent], [(1, 500, False), (2, 200, True)],
       "notify.sent per attempt")
    eq(sent[0]["response"], "busy", "response excerpt of the failure")
    eq([s["idempotency_key"] for s in sent], keys, "keys in notify.sent")
    eq(r.finished("flaky")["status"], "succeeded", "final status")


@test
def webhook_non_2xx_fails(c):
    big = b"x" * 5000
    srv = c.serve(HTTPReceiver({"*": [{"status": 404, "body": big}]}))
    r = c.run(playbook(webhook("missing", srv.url("/nope"))))
    eq(r.rc, 1, f"exit status {r!r}")
    sent = r.one("notify.sent")
    eq((sent["status"], sent["ok"]), (404, False), "notify.sent status and ok")
    eq(sent["response"], "x" * 1024, "response excerpt is the first 1 KiB")
    fin = r.finished("missing")
    eq(fin["status"], "failed", "step status")
    check("404" in fin.get("error", ""), f"step.finished error does not give the status: {fin}")
    check("404" in sent.get("error", ""), f"notify.sent error: {sent}")


@test
def webhook_slow_receiver_does_not_block(c):
    srv = c.serve(HTTPReceiver({"*": [{"delay": 3}]}))
    pb = playbook(webhook("slow1", srv.url("/a")) + webhook("slow2", srv.url("/b")) + """\
  - id: quick
    needs: []
    run: [sleep, "0.2"]
""")
    t0 = time.monotonic()
    r = c.run(pb, "--jobs", "1")   # sends take no job slot
    wall = time.monotonic() - t0
    eq(r.rc, 0, f"exit status {r!r}")
    check(r.finished("quick")["seq"] < min(r.finished("slow1")["seq"], r.finished("slow2")["seq"]),
          "the quick command finished only after a slow webhook")
    eq(len(srv.requests), 2, "requests")
    gap = abs(srv.requests[0]["t"] - srv.requests[1]["t"])
    check(gap < 1.5, f"the two webhooks were not in flight together (arrived {gap:.2f} s apart)")
    check(wall < 5.5, f"two 3 s webhooks in parallel took {wall:.2f} s")


@test
def webhook_fan_out_in_flight_together(c):
    srv = c.serve(HTTPReceiver({"*": [{"delay": 1.5}]}))
    items = ", ".join(f"n{i}" for i in range(12))
    pb = playbook(f"""\
  - id: fan
    for_each: [{items}]
    notify: {{via: webhook, url: "{srv.url()}", body: "${{{{ item }}}}"}}
""")
    t0 = time.monotonic()
    r = c.run(pb)
    wall = time.monotonic() - t0
    eq(r.rc, 0, f"exit status {r!r}")
    eq(len(srv.requests), 12, "requests")
    spread = max(q["t"] for q in srv.requests) - min(q["t"] for q in srv.requests)
    check(spread < 1.0, f"12 webhooks reached the receiver over {spread:.2f} s, not together")
    check(wall < 4.5, f"12 webhooks of 1.5 s each took {wall:.2f} s")
    eq(len({q["headers"]["idempotency-key"] for q in srv.requests}), 12, "distinct keys")


@test
def webhook_timeout(c):
    silent = Silent()
    c.servers.append(silent)
    pb = playbook(webhook("stuck", f"http://127.0.0.1:{silent.port}/hook", "    timeout: 1s\n"))
    t0 = time.monotonic()
    r = c.run(pb, timeout=30)
    wall = time.monotonic() - t0
    eq(r.rc, 1, f"exit status {r!r}")
    eq(r.finished("stuck")["status"], "timed_out", "step status")
    check(wall < 4.5, f"a 1 s timeout took {wall:.2f} s")
    sent = r.one("notify.sent")
    eq(sent["ok"], False, "notify.sent ok")
    check("status" not in sent, f"a status without an answer: {sent}")


@test
def webhook_ctrl_c_twice_stops_send(c):
    """Ctrl-C once lets a send under way finish; twice stops it."""
    srv = c.serve(HTTPReceiver({"*": [{"delay": 20}]}))
    pb = c.write("pb.yaml", playbook(webhook("slow", srv.url())))
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    p = subprocess.Popen([IRP, "run", pb, "--runs", c.runs], cwd=c.dir, env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        while not srv.requests and time.monotonic() - t0 < 20:
            time.sleep(0.02)
        check(srv.requests, "the webhook never reached the receiver")
        p.send_signal(signal.SIGINT)
        time.sleep(0.5)
        check(p.poll() is None, "irp ended on the first Ctrl-C while a send was under way")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise Failure("irp did not end within 10 s of the second Ctrl-C")
    r = Run(p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
            time.monotonic() - t0, c.dir)
    eq(r.rc, 3, f"exit status {r!r}")
    eq(r.finished("slow")["status"], "cancelled", "status of the stopped send")
    eq(r.one("notify.sent")["ok"], False, "notify.sent ok")


@test
def webhook_redirect_not_followed(c):
    other = c.serve(HTTPReceiver())
    srv = c.serve(HTTPReceiver({"*": [{"status": 302,
                                       "headers": {"Location": other.url("/elsewhere")}}]}))
    r = c.run(playbook(webhook("moved", srv.url("/old"))))
    eq(r.rc, 1, f"exit status {r!r}")
    eq(len(srv.requests), 1, "requests to the first receiver")
    eq(other.requests, [], "requests to the redirect's target")
    sent = r.one("notify.sent")
    eq((sent["status"], sent["ok"], sent.get("location")), (302, False, other.url("/elsewhere")),
       "notify.sent of a redirect")
    check("not followed" in r.finished("moved").get("error", ""), "step.finished error")


@test
def webhook_bad_url_and_header(c):
    pb = playbook("""\
  - id: ftp
    needs: []
    notify: {via: webhook, url: "ftp://127.0.0.1/x"}
  - id: crlf
    needs: []
    notify:
      via: webhook
      url: "http://127.0.0.1:9/x"
      headers: {X-Evil: "a${{ inputs.nl }}Injected: yes"}
""", head='inputs:\n  nl: {default: "\\r\\n"}\n')
    r = c.run(pb)
    eq(r.rc, 1, f"exit status {r!r}")
    check("http://" in r.finished("ftp").get("error", ""), f"error for ftp: {r.finished('ftp')}")
    check("line break" in r.finished("crlf").get("error", ""),
          f"error for a header with CRLF: {r.finished('crlf')}")


# ---- HTTPS ----------------------------------------------------------------------

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


@test
def https_verification(c):
    cert, ctx = make_cert(c)
    srv = c.serve(HTTPReceiver(tls=ctx))
    url = srv.url("/tls", scheme="https")
    pb = playbook(webhook("strict", url)
                  + webhook("pinned", url) + f"      ca_file: \"{cert}\"\n"
                  + webhook("lax", url) + "      tls_verify: false\n")
    r = c.run(pb)
    eq(r.rc, 1, f"exit status {r!r}")
    strict = r.finished("strict")
    eq(strict["status"], "failed", "status with default verification")
    check("certificate" in strict.get("error", "").lower(),
          f"the error does not mention the certificate: {strict}")
    eq(r.finished("pinned")["status"], "succeeded", "status with ca_file")
    eq(r.finished("lax")["status"], "succeeded", "status with tls_verify: false")
    eq(len(srv.requests), 2, "requests that reached the receiver")
    a = r.ev("step.started", instance="pinned")[0]["action"]
    eq((a["tls_verify"], a["ca_file"]), (True, cert), "ca_file in step.started")
    eq(r.ev("step.started", instance="lax")[0]["action"]["tls_verify"], False, "tls_verify")


# ---- e-mail ---------------------------------------------------------------------

@test
def email_delivered(c):
    srv = c.serve(SMTPReceiver())
    pb = playbook(f"""\
  - id: mail
    notify:
      via: email
      server: "smtp://127.0.0.1:{srv.port}"
      starttls: none
      from: "Incident Desk <irp@example.org>"
      to: [csirt@example.org, "${{{{ inputs.cc }}}}"]
      username: irp
      password: "${{{{ secrets.SMTP_PASS }}}}"
      subject: "Frühwarnung – ${{{{ inputs.incident }}}} – unbefugter Zugriff auf Systeme bestätigt"
      body: |
        Unbefugter Zugriff auf interne Systeme erkannt.
        .a line that starts with a dot
        Ende.
""", head="inputs:\n  incident: {default: INC-2026-9}\n  cc: {default: ciso@example.org}\n")
    t0 = datetime.datetime.now(datetime.timezone.utc)
    r = c.run(pb, env={"SMTP_PASS": SECRET})
    eq(r.rc, 0, f"exit status {r!r}")
    eq(len(srv.messages), 1, "messages received")
    m = srv.messages[0]
    eq(m["mail_from"], "<irp@example.org>", "envelope sender")
    eq(m["rcpt"], ["<csirt@example.org>", "<ciso@example.org>"], "envelope recipients")
    eq(m["auth"], [b"", b"irp", SECRET.encode()], "AUTH PLAIN credentials")
    raw = m["data"]
    check(b"\r\n" in raw and not re.search(rb"[^\r]\n", raw), "message lines do not end in CRLF")
    check(b"\r\n..a line that starts with a dot" in m["raw"], "a leading dot was not doubled")
    check(b"=?UTF-8?B?" in raw.split(b"\r\n\r\n")[0], "non-ASCII subject not RFC 2047-encoded")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    eq(str(msg["Subject"]),
       "Frühwarnung – INC-2026-9 – unbefugter Zugriff auf Systeme bestätigt", "decoded Subject")
    check(re.search(rb"\r\nSubject: =\?UTF-8\?B\?[^\r]*\?=\r\n =\?UTF-8\?B\?", raw),
          "a long non-ASCII subject is not folded into several encoded-words")
    eq(str(msg["From"]), "Incident Desk <irp@example.org>", "From")
    eq(str(msg["To"]), "csirt@example.org, ciso@example.org", "To")
    key = r.key("mail")
    eq(key, expected_key(r.run_id(), "mail"), "idempotency key")
    eq(str(msg["Message-ID"]), f"<{key}@irp>", "Message-ID")
    eq(msg.get_content_type(), "text/plain", "Content-Type")
    eq(msg.get_content_charset(), "utf-8", "charset")
    eq(str(msg["MIME-Version"]), "1.0", "MIME-Version")
    date = email.utils.parsedate_to_datetime(str(msg["Date"]))
    check(abs((date - t0).total_seconds()) < 120, f"Date {msg['Date']} is not now")
    eq(msg.get_content().replace("\r\n", "\n"),
       "Unbefugter Zugriff auf interne Systeme erkannt.\n.a line that starts with a dot\nEnde.\n",
       "body")
    sent = r.one("notify.sent")
    eq((sent["via"], sent["ok"], sent["status"], sent["target"]),
       ("email", True, 250, ["csirt@example.org", "ciso@example.org"]), "notify.sent")
    check("queued as 4711" in sent["response"], f"SMTP reply not in the response: {sent}")
    action = r.one("step.started")["action"]
    eq((action["server"], action["from"], action["starttls"]),
       (f"smtp://127.0.0.1:{srv.port}", "Incident Desk <irp@example.org>", "none"), "action")
    with open(os.path.join(r.dir, "journal.jsonl"), "rb") as f:
        check(SECRET.encode() not in f.read(), "the SMTP password is in the journal")


@test
def email_starttls_required_by_default(c):
    srv = c.serve(SMTPReceiver())
    pb = playbook(f"""\
  - id: mail
    notify:
      via: email
      server: "smtp://127.0.0.1:{srv.port}"
      from: irp@example.org
      to: [csirt@example.org]
      body: must not travel in clear text
""")
    r = c.run(pb)
    eq(r.rc, 1, f"exit status {r!r}")
    eq(srv.messages, [], "a message was delivered without TLS")
    fin = r.finished("mail")
    eq(fin["status"], "failed", "status")
    check("starttls" in fin.get("error", "").lower() or "tls" in fin.get("error", "").lower(),
          f"the error does not mention TLS: {fin}")
    eq(r.one("step.started")["action"]["starttls"], "required", "starttls default")


@test
def email_recipient_rejected(c):
    srv = c.serve(SMTPReceiver(reject={"nobody@example.org"}))
    pb = playbook(f"""\
  - id: mail
    notify:
      via: email
      server: "smtp://127.0.0.1:{srv.port}"
      starttls: none
      from: irp@example.org
      to: [nobody@example.org]
      subject: plain ASCII
      body: hello
""")
    r = c.run(pb)
    eq(r.rc, 1, f"exit status {r!r}")
    eq(srv.messages, [], "messages delivered")
    sent = r.one("notify.sent")
    eq((sent["ok"], sent["status"]), (False, 550), "notify.sent")
    fin = r.finished("mail")
    eq(fin["status"], "failed", "status")
    check("550" in fin.get("error", ""), f"the error does not give the SMTP code: {fin}")


# ---- file -----------------------------------------------------------------------

@test
def file_appended_by_two_steps(c):
    target = c.path("status.txt")
    pb = playbook(f"""\
  - id: first
    notify: {{via: file, to: "{target}", subject: "Status ${{{{ run.mode }}}}", body: "one"}}
  - id: second
    notify:
      via: file
      to: "{target}"
      body: |
        two
        lines
""")
    r = c.run(pb)
    eq(r.rc, 0, f"exit status {r!r}")
    with open(target, encoding="utf-8") as f:
        eq(f.read(), "Status run\n\none\ntwo\nlines\n", "file content")
    eq(stat.S_IMODE(os.stat(target).st_mode), 0o600, "mode of the created file")
    for inst in ("first", "second"):
        sent = r.one("notify.sent", instance=inst)
        eq((sent["via"], sent["target"], sent["ok"]), ("file", target, True), f"notify.sent {inst}")
        eq(r.finished(inst)["status"], "succeeded", f"status of {inst}")
    eq(r.one("step.started", instance="first")["action"]["to"], target, "to in step.started")


@test
def file_unwritable_fails(c):
    target = c.path("no", "such", "dir", "status.txt")
    r = c.run(playbook(f"  - id: f\n    notify: {{via: file, to: \"{target}\", body: x}}\n"))
    eq(r.rc, 1, f"exit status {r!r}")
    fin = r.finished("f")
    eq(fin["status"], "failed", "status")
    check("no such file" in fin.get("error", "").lower(), f"error: {fin}")
    eq(r.one("notify.sent")["ok"], False, "notify.sent ok")


# ---- libcurl, loaded by the runs that send ------------------------------------

# A step exec'd by irp (argv form) reads its parent's memory map: irp's.
COUNT_CURL = ("  - id: maps\n    needs: []\n"
              "    run: [sh, -c, 'grep -c libcurl[.]so /proc/$PPID/maps > curl.count; true']\n")


def curl_mappings(c):
    with open(c.path("curl.count")) as f:
        return int(f.read())


@test
def libcurl_loaded_only_by_runs_that_send(c):
    target = c.path("status.txt")
    r = c.run(playbook(COUNT_CURL + f"  - id: f\n    notify: {{via: file, to: \"{target}\", body: x}}\n"))
    eq(r.rc, 0, f"exit status {r!r}")
    eq(curl_mappings(c), 0, "libcurl mappings of a run that sends no webhook or e-mail")
    srv = c.serve(HTTPReceiver())
    r = c.run(playbook(COUNT_CURL + webhook("hook", srv.url())))
    eq(r.rc, 0, f"exit status {r!r}")
    check(curl_mappings(c) > 0, "libcurl is not loaded by a run that sends a webhook")
    eq(len(srv.requests), 1, "requests received")


def libcurl_path():
    """The file the dynamic loader opens for libcurl.so.4, as irp's dlopen
    finds it (same search, same environment), or None."""
    try:
        ctypes.CDLL("libcurl.so.4")
    except OSError:
        return None
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "/libcurl.so" in path:
                return os.path.realpath(path)
    return None


# Runs "$@" with the file $0 hidden behind an empty one, in a mount
# namespace of its own.
HIDE = 'mount --bind /dev/null "$0" && exec "$@"'


@test
def without_libcurl_the_run_goes_on(c):
    """libcurl hidden (an empty file mounted over it, in a mount namespace
    of the run's own): the webhook fails saying why, the rest runs."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        raise Skip("needs root and unshare(1)")
    lib = libcurl_path()
    if not lib:
        raise Skip("libcurl.so.4 cannot be loaded here")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", HIDE, lib, "true"],
                           capture_output=True)
    if probe.returncode != 0:
        raise Skip(f"cannot mount over {lib} in a mount namespace here: "
                   f"{probe.stderr.decode().strip()}")
    srv = c.serve(HTTPReceiver())
    pb = playbook(webhook("hook", srv.url()) +
                  "  - id: contain\n    needs: []\n    run: [touch, contained]\n")
    hide = ["unshare", "-m", "sh", "-c", HIDE, lib]
    r = c.run(pb, wrap=hide)
    eq(r.rc, 1, f"exit status {r!r}")
    check("notifications cannot be sent" in r.err and "libcurl" in r.err,
          f"stderr does not say why: {r.err!r}")
    fin = r.finished("hook")
    eq(fin["status"], "failed", "status of the webhook step")
    check("libcurl could not be loaded" in fin.get("error", ""), f"error: {fin}")
    eq(len(srv.requests), 0, "requests received")
    eq(r.finished("contain")["status"], "succeeded", "status of the step beside it")
    check(os.path.exists(c.path("contained")), "the step beside it did not run")


# ---- harness --------------------------------------------------------------------

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
            c.close()
            c.cleanup()
        except Failure as e:
            failed += 1
            print(f"FAIL {t.__name__}: {e}\n     (kept {c.dir})", flush=True)
            c.close()
        except Exception:
            failed += 1
            print(f"FAIL {t.__name__}: {traceback.format_exc()}     (kept {c.dir})", flush=True)
            c.close()
        else:
            passed += 1
            print(f"PASS {t.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
            c.close()
            c.cleanup()
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
