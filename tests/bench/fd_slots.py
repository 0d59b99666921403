#!/usr/bin/env python3
"""How many children can `irp run` have at once under an open-file limit?

    fd_slots.py IRP LIMIT WORKDIR          prints: SLOTS BASE PER_CHILD WHAT
    fd_slots.py --peak JOURNAL             prints: most children running at once

Probe: runs `IRP run` (with the soft RLIMIT_NOFILE set to LIMIT, as the
benchmark does) on playbooks of one and then two independent `sleep 2`
steps.  Once that many children exist, it counts the descriptors in
/proc/PID/fd.  PER_CHILD is the difference (two pipes for the child's
stdout and stderr, plus whatever irp keeps open for it, such as its log);
BASE is what irp holds with no child (stdio, journal, lock, event loop,
signal pipes).  SLOTS = (LIMIT - BASE) // PER_CHILD: the children that fit
in the limit.  WHAT names the kinds of PER_CHILD's descriptors.

--peak reads a journal and counts the attempts between their step.spawned
and step.finished, in journal order: the concurrency the run reached.
Exit status 0, or 1 with a message when the probe could not see the
children (no /proc, irp failed).
"""

import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter


def children_of(pid):
    n = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces or ')'.
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(fields[1]) == pid:
            n += 1
    return n


def fd_targets(pid):
    d = "/proc/%d/fd" % pid
    out = {}
    for fd in os.listdir(d):
        try:
            out[fd] = os.readlink(os.path.join(d, fd))
        except OSError:
            pass
    return out


def kind(target):
    if target.startswith("pipe:"):
        return "pipe"
    if target.startswith("socket:"):
        return "socket"
    if target.startswith("anon_inode:"):
        return target[len("anon_inode:"):].strip("[]")
    return "file"


def probe(irp, limit, workdir, k):
    """Descriptors of irp while k children run: {fd: target}."""
    pb = os.path.join(workdir, "probe-%d.yaml" % k)
    with open(pb, "w") as f:
        f.write("irp: 1\nid: fd-probe\nsteps:\n")
        for i in range(k):
            f.write("  - id: p%d\n    needs: []\n    run: [sleep, \"2\"]\n" % i)

    def set_limit():
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

    runs = os.path.join(workdir, "probe-runs")
    err = open(os.path.join(workdir, "probe.stderr"), "wb")
    p = subprocess.Popen([irp, "run", "--quiet", "--runs", runs, "--jobs", str(k), pb],
                         stdout=subprocess.DEVNULL, stderr=err, preexec_fn=set_limit)
    seen = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and p.poll() is None:
        if children_of(p.pid) == k:
            # Let irp open what it opens right after the spawn (the log).
            time.sleep(0.2)
            a = fd_targets(p.pid)
            time.sleep(0.1)
            b = fd_targets(p.pid)
            if len(a) == len(b) and children_of(p.pid) == k:
                seen = b
                break
        time.sleep(0.02)
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    err.close()
    if seen is None or rc != 0:
        sys.exit("fd_slots.py: could not watch %d children of irp (exit %s; see %s)"
                 % (k, rc, err.name))
    return seen


def peak(journal):
    running = best = 0
    live = set()
    with open(journal, encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            key = (e.get("instance"), e.get("attempt"))
            if e["event"] == "step.spawned":
                live.add(key)
            elif e["event"] == "step.finished":
                live.discard(key)
            running = len(live)
            best = max(best, running)
    return best


def main(argv):
    if len(argv) == 3 and argv[1] == "--peak":
        print(peak(argv[2]))
        return 0
    if len(argv) != 4:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    irp, limit, workdir = argv[1], int(argv[2]), argv[3]
    os.makedirs(workdir, exist_ok=True)
    one = probe(irp, limit, workdir, 1)
    two = probe(irp, limit, workdir, 2)
    per_child = len(two) - len(one)
    if per_child <= 0:
        sys.exit("fd_slots.py: a second child added no descriptor to irp: cannot compute")
    base = len(one) - per_child
    # The second child's descriptors, by kind: the two probes are separate
    # processes, so compare counts, not targets.
    extra = Counter(kind(t) for t in two.values())
    extra.subtract(Counter(kind(t) for t in one.values()))
    what = ",".join("%s=%d" % (k, n) for k, n in sorted(extra.items()) if n)
    print("%d %d %d %s" % ((limit - base) // per_child, base, per_child, what or "?"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
