/* irp status RUN_DIR: where a run stands, read from its journal.  Works
 * on a live run: it reads without locking and writes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "irp/cli.h"
#include "irp/error.h"
#include "irp/runlog.h"
#include "irp/timeutil.h"

#define ID_WIDTH_MAX 40

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Text from the journal on a terminal: control characters (C0, DEL, C1)
 * could move the cursor or retitle the window, so they print as '?', and
 * line breaks as spaces. */
static void term_text(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r')
            fputc(' ', f);
        else if (*p < 0x20 || *p == 0x7f)
            fputc('?', f);
        else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            fputc('?', f);
            p++;
        } else
            fputc(*p, f);
    }
}

static void time_cell(int64_t ms, char buf[IRP_TIME_BUFSZ])
{
    if (ms < 0)
        snprintf(buf, IRP_TIME_BUFSZ, "-");
    else
        irp_time_format(ms, buf);
}

static void elapsed_cell(int64_t start, int64_t end, char *buf, size_t n)
{
    if (start < 0 || end < start)
        snprintf(buf, n, "-");
    else
        irp_duration_format(end - start, buf, n);
}

static void print_row(const char *indent, const char *id, int width, irp_state state,
                      size_t attempts, bool show_attempts, int64_t start, int64_t end,
                      int64_t now, const char *detail)
{
    char s[IRP_TIME_BUFSZ], e[IRP_TIME_BUFSZ], el[24];
    bool ended = irp_state_ended(state);
    time_cell(start, s);
    time_cell(ended ? end : -1, e);
    elapsed_cell(start, ended ? end : start >= 0 ? now : -1, el, sizeof el);
    int pad = width - (int)strlen(indent) - (int)strlen(id);
    printf("%s", indent);
    term_text(stdout, id);
    printf("%*s  %-14s  ", pad > 0 ? pad : 0, "", irp_state_name(state));
    if (show_attempts)
        printf("%8zu", attempts);
    else
        printf("%8s", "");
    printf("  %-24s  %-24s  %s", s, e, el);
    if (detail) {
        fputs("  ", stdout);
        term_text(stdout, detail);
    }
    fputc('\n', stdout);
}

static const char *inst_detail(const irp_runlog_instance *in)
{
    if (in->reason)
        return in->reason;
    return in->n_attempts ? in->attempts[in->n_attempts - 1].error : NULL;
}

static void print_steps(const irp_runlog *L, int64_t now)
{
    int width = 4;
    for (size_t i = 0; i < L->n_steps; i++) {
        const irp_runlog_step *st = &L->steps[i];
        if ((int)strlen(st->id) > width)
            width = (int)strlen(st->id);
        for (size_t k = 0; k < st->n_insts; k++)
            if ((int)strlen(st->insts[k].id) + 2 > width)
                width = (int)strlen(st->insts[k].id) + 2;
    }
    if (width > ID_WIDTH_MAX)
        width = ID_WIDTH_MAX;
    printf("\n%-*s  %-14s  %8s  %-24s  %-24s  %s\n", width, "STEP", "STATE", "ATTEMPTS",
           "STARTED", "FINISHED", "ELAPSED");
    for (size_t i = 0; i < L->n_steps; i++) {
        const irp_runlog_step *st = &L->steps[i];
        bool single = !st->has_for_each && st->n_insts == 1;
        const char *detail = st->reason ? st->reason : single ? inst_detail(&st->insts[0]) : NULL;
        print_row("", st->id, width, st->state, single ? st->insts[0].n_attempts : 0, single,
                  st->started_ms, st->finished_ms, now, detail);
        for (size_t k = 0; !single && k < st->n_insts; k++) {
            const irp_runlog_instance *in = &st->insts[k];
            print_row("  ", in->id, width, in->state, in->n_attempts, true, in->started_ms,
                      in->finished_ms, now, inst_detail(in));
        }
    }
}

static void print_deadlines(const irp_runlog *L, int64_t now)
{
    if (!L->n_deadlines)
        return;
    printf("\n%-24s  %-11s  %-24s  %s\n", "DEADLINE", "STATUS", "DUE", "REMAINING");
    for (size_t i = 0; i < L->n_deadlines; i++) {
        const irp_runlog_deadline *d = &L->deadlines[i];
        char due[IRP_TIME_BUFSZ], rem[40] = "-";
        time_cell(d->due_ms, due);
        int64_t ms;
        if (irp_runlog_remaining(L, d, now, &ms)) {
            irp_duration_format(ms, rem, sizeof rem);
            if (strcmp(d->status, "met") == 0)
                snprintf(rem + strlen(rem), sizeof rem - strlen(rem), " margin");
            else if (ms < 0)
                snprintf(rem + strlen(rem), sizeof rem - strlen(rem), " (past due)");
        }
        term_text(stdout, d->id);
        int pad = 24 - (int)strlen(d->id);
        printf("%*s  %-11s  %-24s  %s", pad > 0 ? pad : 0, "", d->status, due, rem);
        if (d->title) {
            fputs("  ", stdout);
            term_text(stdout, d->title);
        }
        fputc('\n', stdout);
    }
}

static void print_prompts(const irp_runlog *L, int64_t now)
{
    size_t open = 0;
    for (size_t i = 0; i < L->n_prompts; i++) {
        const irp_runlog_prompt *p = &L->prompts[i];
        if (p->answered || p->withdrawn)
            continue;
        if (!open++)
            printf("\nOPEN PROMPTS\n");
        char asked[IRP_TIME_BUFSZ], waited[24];
        time_cell(p->asked_ms, asked);
        elapsed_cell(p->asked_ms, now, waited, sizeof waited);
        fputs("  ", stdout);
        term_text(stdout, p->instance ? p->instance : p->step);
        fputs(": ", stdout);
        term_text(stdout, json_string_value(json_object_get(p->asked, "prompt")));
        const json_t *ch = json_object_get(p->asked, "choices");
        for (size_t k = 0; k < json_array_size(ch); k++) {
            fputs(k ? ", " : " [", stdout);
            term_text(stdout, json_string_value(json_array_get(ch, k)));
        }
        printf("%s  asked %s, open %s\n", json_array_size(ch) ? "]" : "", asked, waited);
    }
}

static void print_header(const irp_runlog *L, const char *dir, int live, int64_t now)
{
    printf("%s  ", L->tlp_label);
    term_text(stdout, L->pb_title ? L->pb_title : L->pb_id ? L->pb_id : "(no run.started)");
    printf("\nrun        ");
    term_text(stdout, L->run_id ? L->run_id : "?");
    printf("  (mode ");
    term_text(stdout, L->mode ? L->mode : "?");
    printf(", operator ");
    term_text(stdout, L->operator_name ? L->operator_name : "?");
    printf(", host ");
    term_text(stdout, L->host ? L->host : "?");
    printf(")\nplaybook   ");
    term_text(stdout, L->pb_id ? L->pb_id : "?");
    printf("  sha256 ");
    term_text(stdout, L->pb_sha256 ? L->pb_sha256 : "?");
    printf("\nstatus     ");
    if (L->status)
        term_text(stdout, L->status);
    else if (live == 1)
        printf("running: live (a process holds the run's lock)");
    else if (live == 0)
        printf("stopped without finishing: no process holds the run's lock "
               "(irp resume %s continues it)", dir);
    else
        printf("running: no run.finished yet (no lock file tells whether a process "
               "still writes it)");
    char s[IRP_TIME_BUFSZ], d[IRP_TIME_BUFSZ], el[24];
    time_cell(L->started_ms, s);
    time_cell(L->detected_ms, d);
    printf("\nstarted    %s  detected %s\n", s, d);
    if (L->status) {
        time_cell(L->finished_ms, s);
        elapsed_cell(L->started_ms, L->finished_ms, el, sizeof el);
        printf("finished   %s  after %s\n", s, el);
    } else {
        elapsed_cell(L->started_ms, now, el, sizeof el);
        printf("elapsed    %s\n", el);
    }
    printf("journal    %zu lines, head %s%s\n", L->n_events, L->head,
           L->partial ? " (a line being written is not counted yet)" : "");
}

int irp_cmd_status(int argc, char **argv, const irp_cli_common *common)
{
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1])
            return irp_cli_usage_error("status", "unknown option '%s'", argv[i]);
        if (dir)
            return irp_cli_usage_error("status", "one run directory at a time ('%s' and '%s')",
                                       dir, argv[i]);
        dir = argv[i];
    }
    if (!dir)
        return irp_cli_usage_error("status", "no run directory given");
    irp_runlog *L = NULL;
    char err[1024];
    int rc = irp_runlog_load(dir, &L, err, sizeof err);
    if (rc && !L) {
        fprintf(stderr, "irp status: %s\n", err);
        return rc == IRP_ENOMEM ? IRP_EXIT_INTERNAL
               : rc == IRP_ELIMIT ? IRP_EXIT_FAILED : IRP_EXIT_USAGE;
    }
    int64_t now = now_ms();
    int live = irp_runlog_live(dir);
    print_header(L, dir, live, now);
    print_steps(L, now);
    print_deadlines(L, now);
    print_prompts(L, now);
    fflush(stdout);
    irp_runlog_free(L);
    if (rc == IRP_ECORRUPT) {
        fprintf(stderr, "irp status: the journal is damaged: %s; what is shown comes from the "
                "lines before it (irp verify %s names the damage)\n", err, dir);
        return IRP_EXIT_FAILED;
    }
    return IRP_EXIT_OK;
}
