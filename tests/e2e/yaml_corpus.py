#!/usr/bin/env python3
"""Run `irp validate` on every input of two public YAML corpora.

tests/corpora/yaml-test-suite/ (402 cases) and
tests/corpora/pyyaml-legacy-error-cases/ (88 inputs a loader must refuse);
see the README in each for source and licence.  None of these inputs is a
playbook, so irp must reject every one (exit 1), and:

  - never crash or hang: each run has a 10 s timeout, and an exit status
    other than 0 or 1 (70 internal error, >= 128 or a signal: a crash)
    fails the case;
  - print only diagnostics, one per line, of the form
    FILE:LINE:COL: error|warning: message, with LINE and COL >= 1 and
    inside the file (a line that exists, a column at most one past its
    end, or the end of the input).  No input here is unreadable or over the size limit, which are
    the only whole-file diagnostics irp has, so none may appear;
  - where libyaml 0.2.5 rejects an input (libyaml-0.2.5-baseline.tsv),
    irp's first error is libyaml's, at the same line:col -- except for the
    divergences listed below, each with its reason;
  - where libyaml accepts, irp reports no YAML syntax error;
  - PyYAML's cases that libyaml parses fine but a loader must refuse
    (tags, merge keys, mappings as keys, undefined aliases, several
    documents) are refused by irp's own checks, at the offending node.

Prints one line per failure and a summary "N passed, M failed"; exits 1
when any case failed.  Environment: IRP (the irp binary, required),
IRP_SOURCE_DIR (the source tree; default two levels above this file).
"""
import os
import re
import subprocess
import sys

TIMEOUT = 10

IRP = os.environ.get("IRP")
if not IRP:
    sys.exit("yaml_corpus: set IRP to the path of the irp binary")
IRP = os.path.abspath(IRP)
SRC = os.environ.get("IRP_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPORA = os.path.join(SRC, "tests", "corpora")

# Cases where irp's first error is legitimately not libyaml's: irp stops
# earlier, at something it refuses and libyaml does not.  Each must still
# stop before libyaml's position.
EARLIER_THAN_LIBYAML = {
    "QLJ7": "a playbook is one document: irp refuses the tag on the first "
            "one (2:5) and stops at the second '---' (4:1), before libyaml "
            "reaches the undefined tag handle at 4:5",
    "document-separator-in-quoted-scalar.loader-error":
            "a playbook is one document: irp stops at the second '---' "
            "(3:1), before libyaml's error at 10:1",
}

# libyaml counts these as line breaks (a CRLF is one).
BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    head = rows[0]
    return [dict(zip(head, r + [""] * (len(head) - len(r)))) for r in rows[1:]]


def source_lines(data):
    """The input's lines as libyaml counts them, or None if not UTF-8."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return None
    text = data.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    return BREAKS.split(text)


def char_pos(data, offset):
    """1-based line and column (in characters) of byte `offset`."""
    text = data[:offset].decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = BREAKS.split(text)
    return len(lines), len(lines[-1]) + 1


def reader_error_pos(data):
    """Where a byte-level problem is: the first byte that is not UTF-8 or
    is a control character YAML forbids; for UTF-16, the character cut
    short at the end."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        enc = "utf-16-le" if data[:2] == b"\xff\xfe" else "utf-16-be"
        body = data[2:]
        text = body[: len(body) - len(body) % 2].decode(enc)
        lines = BREAKS.split(text)
        return len(lines), len(lines[-1]) + 1
    try:
        text = data.decode("utf-8")
        bad = None
    except UnicodeDecodeError as e:
        bad = e.start
    if bad is None:
        for i, ch in enumerate(text):
            if ord(ch) < 0x20 and ch not in "\t\n\r":
                bad = len(text[:i].encode("utf-8"))
                break
    return char_pos(data, bad) if bad is not None else None


def pos_of(data, needle):
    i = data.find(needle)
    assert i >= 0, needle
    return char_pos(data, i)


class Case:
    def __init__(self, corpus, name, folder, file):
        self.corpus, self.name, self.folder, self.file = corpus, name, folder, file
        self.problems = []

    def fail(self, msg):
        self.problems.append(msg)


def run_irp(case):
    """Run irp; returns (status, diagnostics) or None when it failed to run
    cleanly (recorded on the case)."""
    env = dict(os.environ, NO_COLOR="1")
    try:
        p = subprocess.run([IRP, "validate", case.file], cwd=case.folder, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        case.fail("no answer within %d s (a hang)" % TIMEOUT)
        return None
    if p.returncode < 0:
        case.fail("killed by signal %d (a crash)" % -p.returncode)
        return None
    if p.returncode not in (0, 1):
        case.fail("exit status %d (0 or 1 expected; 70 is an internal error, "
                  ">= 128 a crash)" % p.returncode)
    if p.stdout:
        case.fail("wrote to stdout: %r" % p.stdout[:200])
    err = p.stderr.decode("utf-8", "replace")
    if err and not err.endswith("\n"):
        case.fail("stderr does not end with a newline")
    form = re.compile(r"^%s:([0-9]+):([0-9]+): (error|warning): (\S.*)$" % re.escape(case.file))
    diags = []
    lines = err.split("\n")        # "\n" only: that is what "one per line" means
    if lines[-1] == "":
        lines.pop()
    for line in lines:
        m = form.match(line)
        if not m:
            case.fail("not a FILE:LINE:COL: diagnostic: %r" % line[:200])
            continue
        diags.append((int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)))
    return p.returncode, diags


def check_common(case, data, rc, diags):
    if rc != 1:
        case.fail("exit status %d: every input here must be rejected (1)" % rc)
    errors = [d for d in diags if d[2] == "error"]
    if not errors:
        case.fail("no error reported")
    lines = source_lines(data)
    for line, col, _, msg in diags:
        if line < 1 or col < 1:
            case.fail("position %d:%d is not 1-based: %s" % (line, col, msg))
        elif lines is not None:
            if line == len(lines) + 1 and col == 1:
                pass  # end of input: libyaml ends a last line that has no newline
            elif line > len(lines):
                case.fail("line %d is past the end of the file (%d lines): %s"
                          % (line, len(lines), msg))
            elif col > len(lines[line - 1]) + 1:
                case.fail("column %d is past the end of line %d (%d characters): %s"
                          % (col, line, len(lines[line - 1]), msg))
    return errors


def show(d):
    return "%d:%d: %s" % (d[0], d[1], d[3]) if d else "nothing"


def check_libyaml_reject(case, errors, line, col, problem):
    first = errors[0] if errors else None
    if case.name in EARLIER_THAN_LIBYAML:
        if first and (first[0], first[1]) < (line, col):
            return
        case.fail("listed as stopping before libyaml's %d:%d, but irp's first error is %s"
                  % (line, col, show(first)))
        return
    if not first or (first[0], first[1]) != (line, col) or not first[3].startswith(problem):
        case.fail("libyaml rejects at %d:%d (%s); irp's first error is %s"
                  % (line, col, problem, show(first)))


def check_no_syntax_error(case, errors, syntax_problems):
    for d in errors:
        if any(d[3].startswith(p) for p in syntax_problems):
            case.fail("libyaml accepts this input, but irp reports a YAML error: %s" % show(d))


def want_error(case, errors, line, col, part, why):
    if not any(d[0] == line and d[1] == col and part in d[3] for d in errors):
        case.fail("%s: want an error at %d:%d holding %r; have %s"
                  % (why, line, col, part, "; ".join(show(d) for d in errors) or "none"))


def run_yaml_test_suite():
    root = os.path.join(CORPORA, "yaml-test-suite")
    index = {r["case"]: r for r in read_tsv(os.path.join(root, "index.tsv"))}
    base = read_tsv(os.path.join(root, "libyaml-0.2.5-baseline.tsv"))
    syntax_problems = {r["problem"] for r in base if r["libyaml_parse"] == "reject"}
    cases = []
    for r in base:
        name = r["case"]
        folder = os.path.join(root, name)
        case = Case("yaml-test-suite", name, folder, "in.yaml")
        cases.append(case)
        if name not in index:
            case.fail("not in index.tsv")
        has_marker = os.path.exists(os.path.join(folder, "error"))
        if name in index and has_marker != (index[name]["error"] == "1"):
            case.fail("error marker and index.tsv disagree")
        with open(os.path.join(folder, "in.yaml"), "rb") as f:
            data = f.read()
        res = run_irp(case)
        if res is None:
            continue
        rc, diags = res
        errors = check_common(case, data, rc, diags)
        if r["libyaml_parse"] == "reject":
            check_libyaml_reject(case, errors, int(r["line"]), int(r["column"]), r["problem"])
        else:
            check_no_syntax_error(case, errors, syntax_problems)
    if len(cases) != 402:
        print("FAIL yaml-test-suite: %d cases in the baseline, 402 expected" % len(cases))
        cases.append(Case("yaml-test-suite", "(count)", root, ""))
        cases[-1].fail("case count")
    return cases


def check_pyyaml_case(case, data, layer, pos, problem, errors):
    name = case.name
    if layer == "parse" and pos:
        line, col = (int(x) for x in pos.split(":"))
        check_libyaml_reject(case, errors, line, col, problem)
    elif layer == "parse":
        # A byte-level problem: libyaml names the character, not a place;
        # irp must locate it.
        where = reader_error_pos(data)
        what = problem.split(": ", 1)[-1]
        if where is None:
            case.fail("cannot find the bad byte of this input (test data?)")
        else:
            want_error(case, errors, where[0], where[1], what, "bad byte")
    elif layer == "compose":
        if name.startswith("duplicate-anchor"):
            # YAML 1.2 lets a later anchor reuse a name (yaml-test-suite's
            # valid cases 3GZX and PW8X do), and so does irp: these are
            # refused because they are not playbooks.
            pass
        elif name == "undefined-anchor.loader-error":
            line, col = (int(x) for x in pos.split(":"))
            want_error(case, errors, line, col, "names no anchor", "alias without anchor")
        elif ".single-loader-error" in name:
            line, col = (int(x) for x in pos.split(":"))
            want_error(case, errors, line, col, "one YAML document", "several documents")
        else:
            case.fail("compose-level case with no expectation here")
    elif "merge" in name:
        line, col = pos_of(data, b"<<")
        want_error(case, errors, line, col, "merge keys", "merge key")
    elif name == "unacceptable-key.loader-error":
        line, col = pos_of(data, b"- foo")
        want_error(case, errors, line, col, "mapping key must be a scalar", "list as a key")
    elif "constructor for the tag 'tag:yaml.org,2002:" in problem or \
            re.match(r"invalid-(base64|omap|pairs)", name):
        line, col = pos_of(data, b"!")
        want_error(case, errors, line, col, "unsupported tag", "tag outside the core schema")
    elif name == "undefined-constructor.loader-error" or name.startswith("expected-"):
        # A local tag on the root scalar (`--- !foo bar`), or a core tag on
        # the wrong kind of node: refused at the tagged node.
        line, col = pos_of(data, b"!")
        want_error(case, errors, line, col, "", "tagged root node")
    else:
        case.fail("construct-level case with no expectation here")


def run_pyyaml():
    root = os.path.join(CORPORA, "pyyaml-legacy-error-cases")
    base = read_tsv(os.path.join(root, "libyaml-0.2.5-baseline.tsv"))
    on_disk = sorted(f for f in os.listdir(root) if re.search(r"\.(loader|single-loader|stream)-error$", f))
    cases = []
    listed = {r["file"] for r in base}
    for f in on_disk:
        if f not in listed:
            c = Case("pyyaml", f, root, f)
            c.fail("not in the baseline")
            cases.append(c)
    for r in base:
        name = r["file"]
        case = Case("pyyaml", name, root, name)
        cases.append(case)
        layer = r["first_failing_layer"].split("(")[0]
        with open(os.path.join(root, name), "rb") as f:
            data = f.read()
        res = run_irp(case)
        if res is None:
            continue
        rc, diags = res
        errors = check_common(case, data, rc, diags)
        check_pyyaml_case(case, data, layer, r["line:col"], r["problem"], errors)
    if len(cases) != 88:
        c = Case("pyyaml", "(count)", root, "")
        c.fail("%d inputs, 88 expected" % len(cases))
        cases.append(c)
    return cases


def main():
    if not os.access(IRP, os.X_OK):
        sys.exit("yaml_corpus: %s is not executable" % IRP)
    cases = run_yaml_test_suite() + run_pyyaml()
    failed = [c for c in cases if c.problems]
    for c in failed:
        for p in c.problems:
            print("FAIL %s %s: %s" % (c.corpus, c.name, p))
    for name, why in sorted(EARLIER_THAN_LIBYAML.items()):
        print("note: %s: %s" % (name, why))
    for corpus in ("yaml-test-suite", "pyyaml"):
        mine = [c for c in cases if c.corpus == corpus]
        bad = sum(1 for c in mine if c.problems)
        print("%s: %d passed, %d failed" % (corpus, len(mine) - bad, bad))
    print("%d passed, %d failed" % (len(cases) - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
