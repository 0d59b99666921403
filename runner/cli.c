/* Subcommand dispatch and the options every command shares. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "irp/cli.h"
#include "irp/diag.h"

static const irp_cli_command commands[] = {
    { "validate", "check playbooks' format and references (fast lint)",
      "usage: irp validate PLAYBOOK...\n"
      "\n"
      "Check each playbook's YAML, schema, ids, needs, deadlines, inputs,\n"
      "templates and expressions, without resolving inputs or secrets and\n"
      "without running anything.  Every problem is printed as\n"
      "FILE:LINE:COL: error: message (or warning:).\n"
      "\n"
      "exit status: 0 no errors (warnings allowed), 1 errors found,\n"
      "             2 bad usage or an unreadable file\n",
      irp_cmd_validate },
    { "check", "dry-run playbooks for CI: every check, failure paths, JUnit/JSON",
      "usage: irp check PLAYBOOK... [-i KEY=VALUE]... [--inputs FILE] [--jobs N]\n"
      "                 [--junit FILE] [--json FILE] [--strict]\n"
      "\n"
      "Check each playbook without executing anything and without writing a run\n"
      "directory: everything irp validate finds; templates and conditions evaluated\n"
      "with the inputs (from -i, --inputs, default or example; an unset secret\n"
      "gets a placeholder and a warning); steps that can never run; run commands\n"
      "not on PATH; malformed webhook URLs, SMTP servers and e-mail addresses;\n"
      "deadlines that cannot be met (error) or may be missed in the worst case\n"
      "(warning), naming the path that makes them late; and failure paths: one\n"
      "simulated run per step failing in turn (and per for_each step with its\n"
      "first instance failing), each of which must end, finally included, with\n"
      "no expression error and every deadline met, missed or open.\n"
      "\n"
      "  -i KEY=VALUE   an input (as for irp run); with several playbooks, each\n"
      "                 gets the -i values of the inputs it declares\n"
      "  --inputs FILE  inputs from a YAML or JSON mapping (-i overrides it)\n"
      "  --jobs N       --jobs of the dry runs and the deadline estimate (default 8)\n"
      "  --junit FILE   write a JUnit report: a testsuite per playbook, a testcase\n"
      "                 per check and per failure path\n"
      "  --json FILE    write the results as JSON\n"
      "  --strict       a run command not found on PATH is an error, not a warning\n"
      "\n"
      "exit status: 0 no errors (warnings allowed), 1 errors found, 2 bad usage\n"
      "             or a file that cannot be read (the reports still cover the\n"
      "             other playbooks)\n",
      irp_cmd_check },
    { "run", "run a playbook for real, journaling every step",
      "usage: irp run PLAYBOOK [-i KEY=VALUE]... [--inputs FILE] [--jobs N] [--runs DIR]\n"
      "               [--operator NAME] [--answers FILE] [--yes] [--detected-at TIME]\n"
      "\n"
      "Execute the playbook's steps in dependency order, at most N child processes\n"
      "at once (default 8), recording every state change in a hash-chained journal\n"
      "under RUNS/<run-id>/ (default ./irp-runs).  The journal head printed at the\n"
      "end lets anyone check later that the record was not changed.\n"
      "\n"
      "  -i KEY=VALUE        an input (repeat for a list: -i hosts=a -i hosts=b,\n"
      "                      or -i hosts=[a,b])\n"
      "  --inputs FILE       inputs from a YAML or JSON mapping (-i overrides it)\n"
      "  --jobs N            child processes at once (default 8)\n"
      "  --runs DIR          where run directories go (default ./irp-runs)\n"
      "  --operator NAME     who runs it (default: the login name)\n"
      "  --answers FILE      answers given in advance: a YAML mapping of step or\n"
      "                      instance ids to answers (isolate[ws-017]: \"yes\")\n"
      "  --yes               answer yes to every confirmation --answers leaves\n"
      "                      open (otherwise each is asked on the terminal)\n"
      "  --detected-at TIME  when the incident was detected (RFC 3339)\n"
      "\n"
      "Ctrl-C once stops starting steps (finally still runs); twice also\n"
      "terminates running commands.  SIGHUP does not stop a run.\n"
      "\n"
      "Every step kind runs: commands (`run`), `wait`, `manual` (asked on the\n"
      "terminal, or answered with --answers or irp answer), `notify` (webhook,\n"
      "e-mail, file) and `evidence` (copied into the run directory, hashed).\n"
      "Deadlines are tracked and counted down.\n"
      "\n"
      "exit status: 0 succeeded, 1 a step failed, 2 bad usage or invalid\n"
      "             playbook, inputs or answers (nothing ran), 3 interrupted,\n"
      "             4 the journal, a log or an evidence copy could not be written\n",
      irp_cmd_run },
    { "simulate", "run a tabletop exercise on a virtual clock; nothing is executed",
      "usage: irp simulate PLAYBOOK [-i KEY=VALUE]... [--inputs FILE] [--speed X|max]\n"
      "                    [--seed N] [--scenario FILE] [--answers FILE] [--auto]\n"
      "                    [--runs DIR] [--jobs N] [--operator NAME]\n"
      "\n"
      "Play the playbook through on a virtual clock, as a tabletop exercise.\n"
      "Nothing real happens: no command runs, nothing is sent, no evidence is\n"
      "copied; each action is rendered and journaled as simulated.  A step lasts\n"
      "its simulate.duration (a range is sampled; default 1m, never longer than\n"
      "its timeout) and ends as simulate.outcome, or succeeds with probability\n"
      "simulate.success_rate.  Confirmations and manual steps go to the\n"
      "participants on the terminal.  The run directory, journal and report are\n"
      "those of irp run, with virtual times.\n"
      "\n"
      "  -i KEY=VALUE     an input (as for irp run)\n"
      "  --inputs FILE    inputs from a YAML or JSON mapping (-i overrides it)\n"
      "  --speed X|max    X virtual seconds per real second (default 60; the clock\n"
      "                   runs while prompts are open), or max: jump from event to\n"
      "                   event, the clock standing still while a prompt is open\n"
      "  --seed N         seed of the random draws (default 0): the same seed,\n"
      "                   scenario (with start) and answers give the same journal\n"
      "  --scenario FILE  start time and injects (messages, forced failures, var\n"
      "                   changes) delivered at their virtual time\n"
      "  --answers FILE   answers given in advance (as for irp run)\n"
      "  --auto           answer everything: simulate.answer, else yes to a\n"
      "                   confirmation and a manual step's first choice\n"
      "  --runs DIR       where run directories go (default ./irp-runs)\n"
      "  --jobs N         simulated commands at once (default 8)\n"
      "  --operator NAME  who facilitates (default: the login name)\n"
      "\n"
      "Ctrl-C once stops starting steps (finally still runs); twice also stops\n"
      "what is under way.\n"
      "\n"
      "exit status: 0 succeeded, 1 a step failed, 2 bad usage or invalid\n"
      "             playbook, inputs, scenario or answers (nothing ran),\n"
      "             3 interrupted, 4 the journal could not be written\n",
      irp_cmd_simulate },
    { "resume", "carry on with a run that was stopped or crashed",
      "usage: irp resume RUN_DIR [--rerun-interrupted] [--answers FILE] [--yes]\n"
      "                  [--operator NAME] [--jobs N]\n"
      "\n"
      "Continue the run in RUN_DIR from its journal, with the playbook copy and\n"
      "inputs it started with.  No step instance with a journaled finish runs\n"
      "again.  An instance that started and never finished is `interrupted`:\n"
      "if its processes are still running, irp waits for them; then it runs\n"
      "again if its step is idempotent, or with --rerun-interrupted, or when the\n"
      "operator says so on the terminal; otherwise it stays interrupted.\n"
      "Confirmations already answered stand; open ones are asked again.  A last\n"
      "journal line cut off mid-write is dropped (and recorded); any other damage\n"
      "refuses the resume.\n"
      "\n"
      "  --rerun-interrupted  run interrupted instances again without asking\n"
      "  --answers FILE       answers given in advance (as for irp run)\n"
      "  --yes                answer yes to every confirmation left open\n"
      "  --operator NAME      who resumes it (default: the login name)\n"
      "  --jobs N             child processes at once (default 8)\n"
      "\n"
      "exit status: as irp run; 2 also when the run is live in another process\n"
      "             or its journal is damaged (nothing ran)\n",
      irp_cmd_resume },
    { "answer", "answer a live run's question from another terminal",
      "usage: irp answer RUN_DIR INSTANCE ANSWER [--note TEXT] [--operator NAME]\n"
      "\n"
      "Answer the open question of step or instance INSTANCE (a confirmation, a\n"
      "manual step, whether to re-run an interrupted instance) in the run that\n"
      "is live in RUN_DIR -- for instance after its terminal was lost (SIGHUP).\n"
      "ANSWER is one of the question's choices (y and n stand for yes and no).\n"
      "The answer is journaled with who gave it; the run takes it within a\n"
      "fraction of a second.  The first answer journaled wins.\n"
      "\n"
      "  --note TEXT       a note kept with the answer\n"
      "  --operator NAME   who answers (default: the login name)\n"
      "\n"
      "exit status: 0 answered; 2 bad usage, no live run, no such open question,\n"
      "             or not one of its choices; 4 the journal could not be written\n",
      irp_cmd_answer },
    { "verify", "check a run's journal chain and evidence hashes",
      "usage: irp verify RUN_DIR [--head HASH]\n"
      "\n"
      "Recompute the run's journal hash chain and re-hash every evidence copy\n"
      "against its evidence.collected event.  The first damaged journal line is\n"
      "named as RUN_DIR/journal.jsonl:LINE: error: what is wrong; so is each\n"
      "evidence file that is missing, changed or resized, and each file under\n"
      "evidence/ that no event accounts for.  A last line without a newline\n"
      "(cut off by a crash) is not damage.\n"
      "\n"
      "  --head HASH   a journal head written down earlier (64 hex digits): it must\n"
      "                be the hash of some line, so lines removed or replaced after\n"
      "                it was recorded are caught (the journal may have grown)\n"
      "\n"
      "exit status: 0 no damage, 1 damage found, 2 bad usage, no such run\n"
      "             directory or journal, or a file that cannot be read\n",
      irp_cmd_verify },
    { "note", "add an observation to a run's timeline",
      "usage: irp note RUN_DIR TEXT [--at TIME] [--operator NAME]\n"
      "\n"
      "Append a `note` event to the run's journal: the text, who wrote it and\n"
      "when.  Safe while the run is live.  Prints the new journal head.  A text\n"
      "that begins with '-' goes after --.\n"
      "\n"
      "  --at TIME         when the observed event happened (RFC 3339 with an\n"
      "                    offset, e.g. 2026-11-28T09:15:00+01:00)\n"
      "  --operator NAME   who notes it (default: $USER, else the login name)\n"
      "\n"
      "exit status: 0 added, 1 the journal is damaged (nothing added), 2 bad\n"
      "             usage, a text that is empty or not UTF-8, or no such run\n"
      "             directory or journal, 4 the journal could not be written\n",
      irp_cmd_note },
    { "status", "show where a run stands: steps, deadlines, prompts, journal head",
      "usage: irp status RUN_DIR\n"
      "\n"
      "Read the run's journal (without locking it, so a live run is fine) and\n"
      "show the TLP marking, the run's status and whether a process still runs\n"
      "it, every step and instance with its state, attempts, start and end\n"
      "times and elapsed time, the deadlines with their due time and time left,\n"
      "the prompts waiting for an answer, and the journal's line count and head.\n"
      "\n"
      "exit status: 0 shown, 1 the journal is damaged (what comes before the\n"
      "             damage is shown, and the line named), 2 bad usage or no\n"
      "             such run directory or journal\n",
      irp_cmd_status },
    { "report", "write a run's after-action report (Markdown, JSON or JUnit)",
      "usage: irp report RUN_DIR [--format md|json|junit] [-o FILE]\n"
      "\n"
      "Rebuild the run from its journal and write a report: the TLP marking,\n"
      "run and playbook (with its SHA-256), inputs as journaled, operators,\n"
      "every step and instance, deadlines with their margins, decisions and\n"
      "notes, the evidence's chain of custody, notifications, a timeline of\n"
      "every event, and the journal head.  `irp run` writes the same Markdown\n"
      "to RUN_DIR/report.md when the run ends.\n"
      "\n"
      "  --format md     the after-action report for people (default)\n"
      "  --format json   one JSON object for tools\n"
      "  --format junit  one JUnit <testsuite>, a <testcase> per step instance\n"
      "  -o FILE         write to FILE (mode 0600) instead of stdout\n"
      "\n"
      "exit status: 0 written, 1 the journal is damaged (the report covers the\n"
      "             lines before the damage and says so), 2 bad usage, no such\n"
      "             run directory or journal, or FILE cannot be written\n",
      irp_cmd_report },
};

static const size_t ncommands = sizeof commands / sizeof *commands;

static void print_help(FILE *out)
{
    fprintf(out, "usage: irp COMMAND [OPTIONS] [ARGS]\n\n"
                 "irp runs incident-response playbooks and keeps a tamper-evident journal.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < ncommands; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\ncommon options:\n"
                 "  --help       show help (irp COMMAND --help for a command)\n"
                 "  --version    print the version\n"
                 "  --no-color   no colors (also when NO_COLOR is set)\n"
                 "  --quiet      print only errors\n"
                 "  --verbose    print more detail\n");
}

int irp_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "irp%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'irp %s%s--help')\n", cmd ? cmd : "", cmd ? " " : "");
    return IRP_EXIT_USAGE;
}

/* Removes the common options from argv (in place), wherever they are. */
static int take_common(int *argc, char **argv, irp_cli_common *c, bool *help)
{
    const char *nc = getenv("NO_COLOR");
    c->color = isatty(STDERR_FILENO) && !(nc && *nc);
    int out = 0;
    bool dashdash = false;
    for (int i = 0; i < *argc; i++) {
        const char *a = argv[i];
        if (!dashdash && strcmp(a, "--") == 0) {
            dashdash = true;
        } else if (!dashdash && strcmp(a, "--no-color") == 0) {
            c->color = false;
            continue;
        } else if (!dashdash && (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0)) {
            c->quiet = true;
            continue;
        } else if (!dashdash && (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0)) {
            c->verbose = true;
            continue;
        } else if (!dashdash && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            *help = true;
            continue;
        }
        argv[out++] = argv[i];
    }
    *argc = out;
    return 0;
}

int irp_cli_main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("irp %s\n", IRP_VERSION);
        return IRP_EXIT_OK;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (argc >= 3 && strcmp(argv[1], "help") == 0) {
            for (size_t i = 0; i < ncommands; i++)
                if (strcmp(argv[2], commands[i].name) == 0) {
                    fputs(commands[i].usage, stdout);
                    return IRP_EXIT_OK;
                }
        }
        print_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? IRP_EXIT_USAGE : IRP_EXIT_OK;
    }
    const irp_cli_command *cmd = NULL;
    for (size_t i = 0; i < ncommands; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            cmd = &commands[i];
    if (!cmd) {
        const char *names[16];
        for (size_t i = 0; i < ncommands && i < 16; i++)
            names[i] = commands[i].name;
        const char *hint = irp_diag_suggest(argv[1], names, ncommands < 16 ? ncommands : 16);
        if (hint)
            return irp_cli_usage_error(NULL, "unknown command '%s' (did you mean '%s'?)",
                                       argv[1], hint);
        return irp_cli_usage_error(NULL, "unknown command '%s'", argv[1]);
    }
    irp_cli_common common = { 0 };
    bool help = false;
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;
    take_common(&sub_argc, sub_argv, &common, &help);
    if (help) {
        fputs(cmd->usage, stdout);
        return IRP_EXIT_OK;
    }
    return cmd->main(sub_argc, sub_argv, &common);
}
