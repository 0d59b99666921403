#!/usr/bin/env python3
"""Write the inputs of the process-spawning benchmarks (tests/bench/README.md).

    gen_spawn.py DIR --steps N [--shape independent|chain] [--form argv|shell]
                 [--cmd "true"] [--skipped M] [--ansible]

Writes into DIR, for N steps that each run CMD (default `true`) once
(N may be 0 with M skipped steps: then only irp.yaml is written):

  irp.yaml      an irp playbook: `run: [true]` (argv, exec'd directly) or
                `run: "true"` (shell, through /bin/sh -c); independent
                steps have `needs: []`, chained ones wait for the step
                before (`needs` absent).  With --skipped M, M more steps
                follow with `needs: []` and `when: false`: each is ready at
                the start, its constant condition is false, so it is
                journaled `step.skipped` and never takes a job slot or
                spawns anything.  They cost their share of the load and one
                skip each, and make the parent process large.
  build.ninja   the same N commands for ninja, which always runs them with
                /bin/sh -c; chained edges have an order-only dependency on
                the edge before.  No command writes its output, so every
                edge is dirty on every run.  With --skipped M, M more
                edges that are not default targets: ninja loads them and
                builds none, so its process is as large for its kind.
  Makefile      the same for GNU make, with phony targets (and with
                --skipped M, M more that `all` does not need).  For argv,
                make's fast path execs a recipe without shell
                metacharacters directly, as irp does; for shell, SHELL is
                /bin/dash (the same shell by another name), which turns
                the fast path off and runs every recipe as `dash -c CMD`.
  ansible.yaml  with --ansible: one play on localhost with connection:
                local and N `command` tasks, which ansible runs one after
                the other (so compare it with a chain).

The generated files depend only on the arguments.
"""

import argparse
import os
import shlex
import sys


def yaml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_irp(path, args, argv):
    with open(path, "w") as f:
        w = f.write
        w("irp: 1\nid: bench-spawn\n")
        w("title: %d no-op steps (%s, %s)\n" % (args.steps, args.shape, args.form))
        w("steps:\n")
        if args.form == "argv":
            run = "[%s]" % ", ".join(yaml_str(a) for a in argv)
        else:
            run = yaml_str(args.cmd)
        needs = "    needs: []\n" if args.shape == "independent" else ""
        for i in range(args.steps):
            w("  - id: s%d\n%s    run: %s\n" % (i, needs, run))
        for i in range(args.skipped):
            w("  - id: k%d\n    needs: []\n    when: false\n    run: %s\n" % (i, run))


def write_ninja(path, args):
    with open(path, "w") as f:
        f.write("rule t\n  command = %s\n" % args.cmd.replace("$", "$$"))
        for i in range(args.steps):
            dep = " || o%d" % (i - 1) if args.shape == "chain" and i else ""
            f.write("build o%d: t%s\n" % (i, dep))
        for i in range(args.skipped):
            f.write("build k%d: t\n" % i)
        f.write("default %s\n" % " ".join("o%d" % i for i in range(args.steps)))


def write_make(path, args):
    with open(path, "w") as f:
        if args.form == "shell":
            f.write("SHELL := /bin/dash\n")
        targets = " ".join("o%d" % i for i in range(args.steps))
        recipe = args.cmd.replace("$", "$$")
        f.write(".PHONY: all %s\nall: %s\n" % (targets, targets))
        for i in range(args.steps):
            dep = " o%d" % (i - 1) if args.shape == "chain" and i else ""
            f.write("o%d:%s\n\t%s\n" % (i, dep, recipe))
        for i in range(args.skipped):
            f.write("k%d:\n\t%s\n" % (i, recipe))


def write_ansible(path, args, argv):
    with open(path, "w") as f:
        f.write("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n")
        for i in range(args.steps):
            f.write("    - name: s%d\n      command:\n        argv: [%s]\n"
                    % (i, ", ".join(yaml_str(a) for a in argv)))


def main():
    ap = argparse.ArgumentParser(description="Write spawn benchmark inputs.")
    ap.add_argument("dir")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--shape", choices=("independent", "chain"), default="independent")
    ap.add_argument("--form", choices=("argv", "shell"), default="argv")
    ap.add_argument("--cmd", default="true",
                    help="the command, split like a shell would for argv (default true)")
    ap.add_argument("--skipped", type=int, default=0,
                    help="extra `when: false` steps in irp.yaml (default 0)")
    ap.add_argument("--ansible", action="store_true", help="also write ansible.yaml")
    args = ap.parse_args()
    if args.steps < 0 or args.skipped < 0 or args.steps + args.skipped < 1:
        ap.error("--steps and --skipped must not be negative, and not both 0")
    argv = shlex.split(args.cmd)
    if not argv:
        ap.error("--cmd must not be empty")
    os.makedirs(args.dir, exist_ok=True)
    write_irp(os.path.join(args.dir, "irp.yaml"), args, argv)
    if args.steps:
        write_ninja(os.path.join(args.dir, "build.ninja"), args)
        write_make(os.path.join(args.dir, "Makefile"), args)
    if args.ansible and args.steps:
        write_ansible(os.path.join(args.dir, "ansible.yaml"), args, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
