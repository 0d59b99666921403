/* irp resume RUN_DIR: carry on with a run that was stopped or crashed
 * (SPEC §3), from its own copy of the playbook and its journal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irp/cli.h"
#include "irp/error.h"
#include "irp/jsonutil.h"
#include "run_exec.h"
#include "rundir.h"

#define STOP_READING 1

static int parse_args(int argc, char **argv, run_args *a, const char **dir)
{
    a->jobs = 8;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strcmp(s, "--answers") == 0 || strcmp(s, "--jobs") == 0 ||
                     strcmp(s, "--operator") == 0;
        if (takes && !val)
            return irp_cli_usage_error("resume", "%s needs a value", s);
        if (strcmp(s, "--answers") == 0) {
            a->answers_file = val;
        } else if (strcmp(s, "--operator") == 0) {
            a->operator_name = val;
        } else if (strcmp(s, "--jobs") == 0) {
            char *end;
            long n = strtol(val, &end, 10);
            if (*end || n < 1 || n > 100000)
                return irp_cli_usage_error("resume", "--jobs takes a number from 1 to 100000");
            a->jobs = (unsigned)n;
        } else if (strcmp(s, "--yes") == 0 || strcmp(s, "-y") == 0) {
            a->yes = true;
            continue;
        } else if (strcmp(s, "--rerun-interrupted") == 0) {
            a->rerun_interrupted = true;
            continue;
        } else if (strcmp(s, "--no-fsync") == 0) {
            a->no_fsync = true;
            continue;
        } else if (s[0] == '-' && s[1]) {
            return irp_cli_usage_error("resume", "unknown option '%s'", s);
        } else if (*dir) {
            return irp_cli_usage_error("resume", "one run directory at a time");
        } else {
            *dir = s;
            continue;
        }
        i++;
    }
    if (!*dir)
        return irp_cli_usage_error("resume", "no run directory given");
    return 0;
}

static int first_line(void *ctx, const irp_journal_line *line)
{
    *(json_t **)ctx = json_incref(line->ev);
    return STOP_READING;
}

/* run.started: the run's id, inputs and detection time. */
static int read_start(const run_resume *rs, json_t **start)
{
    char err[512] = "";
    *start = NULL;
    int rc = irp_journal_read(rs->jpath, first_line, start, NULL, err, sizeof err);
    if (rc != STOP_READING || !*start) {
        fprintf(stderr, "irp resume: %s: %s\n", rs->jpath,
                rc == STOP_READING || rc == 0 ? "the run never started (no first line)"
                : err[0] ? err : irp_strerror(rc));
        return IRP_EXIT_USAGE;
    }
    const char *ev = json_string_value(json_object_get(*start, "event"));
    const char *mode = json_string_value(json_object_get(*start, "mode"));
    if (!ev || strcmp(ev, "run.started") != 0 || !json_is_string(json_object_get(*start, "run_id"))) {
        fprintf(stderr, "irp resume: %s: line 1 is not run.started\n", rs->jpath);
        return IRP_EXIT_USAGE;
    }
    if (!mode || strcmp(mode, "run") != 0) {
        fprintf(stderr, "irp resume: only runs of `irp run` can be resumed (this one is '%s')\n",
                mode ? mode : "?");
        return IRP_EXIT_USAGE;
    }
    return 0;
}

typedef struct check_ctx {
    const irp_playbook *pb;
    char *err;
    size_t errlen;
} check_ctx;

/* Every step the journal names must be in the playbook copy. */
static int check_line(void *ctx, const irp_journal_line *line)
{
    check_ctx *c = ctx;
    const char *id = json_string_value(json_object_get(line->ev, "step"));
    if (id && !irp_playbook_step(c->pb, id)) {
        snprintf(c->err, c->errlen, "line %llu: step '%s' is not in the run's playbook.yaml",
                 (unsigned long long)line->lineno, id);
        return IRP_ECORRUPT;
    }
    return 0;
}

int run_resume_open(const irp_playbook *pb, run_args *a, char **dir, irp_journal **j)
{
    run_resume *rs = a->resume;
    long holder = 0;
    int rc = rundir_lock(rs->dir, &holder);
    if (rc == IRP_EBUSY) {
        fprintf(stderr, "irp resume: the run is live: process %ld holds %s/lock\n", holder,
                rs->dir);
        return IRP_EXIT_USAGE;
    }
    char err[512] = "";
    if (!rc)
        rc = irp_journal_open(rs->jpath, true, j, &rs->info, err, sizeof err);
    if (!rc) {
        check_ctx c = { pb, err, sizeof err };
        rc = irp_journal_read(rs->jpath, check_line, &c, NULL, err, sizeof err);
        if (rc) {
            irp_journal_close(*j);
            *j = NULL;
        }
    }
    if (rc) {
        fprintf(stderr, "irp resume: %s: %s; not resuming\n", rs->jpath,
                err[0] ? err : irp_strerror(rc));
        return rc == IRP_ENOMEM ? IRP_EXIT_INTERNAL : IRP_EXIT_USAGE;
    }
    if (rs->info.dropped_partial)
        fprintf(stderr, "irp resume: dropped the last line of the journal, cut off mid-write "
                "(%zu bytes)\n", rs->info.dropped_bytes);
    *dir = strdup(rs->dir);
    return *dir ? 0 : IRP_EXIT_INTERNAL;
}

static int restore_line(void *ctx, const irp_journal_line *line)
{
    char err[512] = "";
    int rc = irp_engine_restore(ctx, line->ev, err, sizeof err);
    if (rc)
        fprintf(stderr, "irp resume: %s\n", err[0] ? err : irp_strerror(rc));
    return rc;
}

void run_resume_start(run_args *a, irp_engine *e)
{
    char err[512] = "";
    /* Checked by run_resume_open under the lock; what remains is memory. */
    int rc = irp_journal_read(a->resume->jpath, restore_line, e, NULL, err, sizeof err);
    json_t *fields = json_object();
    if (a->resume->info.dropped_partial)
        json_object_set_new(fields, "dropped_bytes",
                            json_integer((json_int_t)a->resume->info.dropped_bytes));
    if (rc)
        json_object_set_new(fields, "error", json_string(err[0] ? err : irp_strerror(rc)));
    irp_engine_resume(e, fields);
}

static int resume_loaded(const irp_playbook *pb, run_args *a, const json_t *start,
                         const irp_cli_common *common)
{
    irp_value *inputs = NULL;
    json_t *in = json_object_get(start, "inputs");
    in = json_is_object(in) ? json_incref(in) : json_object();
    int rc = irp_value_from_json(in, &inputs);
    json_decref(in);
    if (rc) {
        fprintf(stderr, "irp resume: the journaled inputs cannot be read back: %s\n",
                irp_strerror(rc));
        return rc == IRP_ENOMEM ? IRP_EXIT_INTERNAL : IRP_EXIT_USAGE;
    }
    a->detected_at = json_string_value(json_object_get(start, "detected_at"));
    int status = run_loaded(pb, a, inputs, common);
    irp_value_unref(inputs);
    return status;
}

int irp_cmd_resume(int argc, char **argv, const irp_cli_common *common)
{
    run_args a = { 0 };
    const char *arg_dir = NULL;
    int status = parse_args(argc, argv, &a, &arg_dir);
    if (status)
        return status;
    run_resume rs = { 0 };
    a.resume = &rs;
    rs.dir = realpath(arg_dir, NULL);
    if (!rs.dir) {
        fprintf(stderr, "irp resume: %s: no such run directory\n", arg_dir);
        return IRP_EXIT_USAGE;
    }
    char *pbpath = NULL;
    json_t *start = NULL;
    irp_playbook *pb = NULL;
    irp_diag_list diags = IRP_DIAG_LIST_INIT;
    if (asprintf(&rs.jpath, "%s/journal.jsonl", rs.dir) < 0 ||
        asprintf(&pbpath, "%s/playbook.yaml", rs.dir) < 0) {
        status = IRP_EXIT_INTERNAL;
        goto out;
    }
    status = read_start(&rs, &start);
    if (status)
        goto out;
    rs.run_id = strdup(json_string_value(json_object_get(start, "run_id")));
    /* The copy the run started with, not the file that may have changed. */
    int rc = irp_playbook_load(pbpath, &diags, &pb);
    if (!rc && a.answers_file)
        rc = irp_answers_load(pb, a.answers_file, &diags, &a.answers);
    irp_diag_sort(&diags);
    irp_diag_print(&diags, stderr, common->color);
    status = rc == IRP_ENOMEM ? IRP_EXIT_INTERNAL
             : rc || !rs.run_id ? IRP_EXIT_USAGE : resume_loaded(pb, &a, start, common);
out:
    irp_answers_free(a.answers);
    irp_playbook_free(pb);
    irp_diag_list_release(&diags);
    json_decref(start);
    free(pbpath);
    free(rs.jpath);
    free(rs.run_id);
    free(rs.dir);
    return status;
}
