/* irp check PLAYBOOK...: the CI dry-run (SPEC §6).  The checks live in
 * check.c; this is the command line around them: options, the -i values
 * each playbook gets, the diagnostics, the reports and the exit status. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irp/check.h"
#include "irp/cli.h"
#include "irp/error.h"
#include "rundir.h"
#include "strvec.h"

typedef struct check_args {
    strvec files;
    strvec iargs;
    const char *inputs_file, *junit, *json;
    unsigned jobs;
    bool strict;
} check_args;

static int parse_args(int argc, char **argv, check_args *a)
{
    a->jobs = 8;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strcmp(s, "-i") == 0 || strcmp(s, "--inputs") == 0 ||
                     strcmp(s, "--jobs") == 0 || strcmp(s, "--junit") == 0 ||
                     strcmp(s, "--json") == 0;
        if (takes && !val)
            return irp_cli_usage_error("check", "%s needs a value", s);
        if (strcmp(s, "--strict") == 0) {
            a->strict = true;
            continue;
        }
        if (!takes && s[0] == '-' && s[1])
            return irp_cli_usage_error("check", "unknown option '%s'", s);
        if (!takes) {
            if (strvec_push(&a->files, s))
                return IRP_EXIT_INTERNAL;
            continue;
        }
        i++;
        if (strcmp(s, "-i") == 0) {
            if (!strchr(val, '='))
                return irp_cli_usage_error("check", "-i takes KEY=VALUE, not '%s'", val);
            if (strvec_push(&a->iargs, val))
                return IRP_EXIT_INTERNAL;
        } else if (strcmp(s, "--inputs") == 0) {
            a->inputs_file = val;
        } else if (strcmp(s, "--junit") == 0) {
            a->junit = val;
        } else if (strcmp(s, "--json") == 0) {
            a->json = val;
        } else {
            char *end;
            long n = strtol(val, &end, 10);
            if (end == val || *end || n < 1 || n > 100000)
                return irp_cli_usage_error("check", "--jobs takes a number from 1 to 100000");
            a->jobs = (unsigned)n;
        }
    }
    if (!a->files.n)
        return irp_cli_usage_error("check", "no playbook given");
    return 0;
}

/* Does any loaded playbook declare input `key` (the text before '=')? */
static bool declared(const irp_playbook *pb, const char *arg)
{
    size_t len = strcspn(arg, "=");
    for (size_t i = 0; pb && i < pb->n_inputs; i++)
        if (strlen(pb->inputs[i].name) == len && strncmp(pb->inputs[i].name, arg, len) == 0)
            return true;
    return false;
}

/* The -i values for one playbook: those it declares, and those no
 * playbook declares (so a typo is still reported).  One command line can
 * then check several playbooks that take different inputs.  Borrowed
 * pointers into a->iargs. */
static char **iargs_for(const check_args *a, const irp_check_result *rs, size_t n, size_t me,
                        size_t *count)
{
    char **out = calloc(a->iargs.n + 1, sizeof *out);
    *count = 0;
    for (size_t i = 0; out && i < a->iargs.n; i++) {
        bool other = false;
        for (size_t k = 0; k < n && !other; k++)
            other = k != me && declared(rs[k].pb, a->iargs.v[i]);
        if (declared(rs[me].pb, a->iargs.v[i]) || !other)
            out[(*count)++] = a->iargs.v[i];
    }
    return out;
}

/* Diagnostics of one playbook, then its summary line. */
static void print_result(const irp_check_result *r, const irp_cli_common *common)
{
    irp_diag_list all = IRP_DIAG_LIST_INIT;
    irp_check_merged(r, &all);
    if (common->quiet) {
        irp_diag_list errs = IRP_DIAG_LIST_INIT;
        for (size_t i = 0; i < all.n; i++)
            if (all.items[i].sev == IRP_DIAG_ERROR)
                irp_diag_add(&errs, IRP_DIAG_ERROR, all.items[i].file, all.items[i].line,
                             all.items[i].col, "%s", all.items[i].msg);
        irp_diag_print(&errs, stderr, common->color);
        irp_diag_list_release(&errs);
    } else {
        irp_diag_print(&all, stderr, common->color);
    }
    irp_diag_list_release(&all);
    if (common->quiet)
        return;
    size_t bad = 0;
    for (size_t i = 0; i < r->n_paths; i++)
        bad += r->paths[i].n_problems > 0;
    char runs[320];
    if (r->skipped[IRP_CHECK_PATHS])
        snprintf(runs, sizeof runs, "no dry runs (%s)", r->skipped[IRP_CHECK_PATHS]);
    else
        snprintf(runs, sizeof runs, "%zu of %zu dry runs ok", r->n_paths - bad, r->n_paths);
    if (irp_check_unreadable(r))
        printf("%s: cannot be read\n", r->file);
    else
        printf("%s (%s): %s%zu error%s, %zu warning%s; %s\n", r->file,
               r->pb ? rundir_tlp_label(r->pb->tlp) : "TLP unknown", r->errors ? "" : "ok: ",
               r->errors, r->errors == 1 ? "" : "s", r->warnings, r->warnings == 1 ? "" : "s",
               runs);
}

static int write_reports(const check_args *a, const irp_check_result *rs, size_t n)
{
    char err[1024];
    int status = IRP_EXIT_OK;
    if (a->junit && irp_check_write_junit(a->junit, rs, n, err, sizeof err)) {
        fprintf(stderr, "irp check: %s\n", err);
        status = IRP_EXIT_USAGE;
    }
    if (a->json && irp_check_write_json(a->json, rs, n, err, sizeof err)) {
        fprintf(stderr, "irp check: %s\n", err);
        status = IRP_EXIT_USAGE;
    }
    return status;
}

static int worse(int a, int b)
{
    static const int order[] = { IRP_EXIT_OK, IRP_EXIT_FAILED, IRP_EXIT_USAGE,
                                 IRP_EXIT_INTERRUPTED, IRP_EXIT_JOURNAL, IRP_EXIT_INTERNAL };
    int ra = 0, rb = 0;
    for (int i = 0; i < 6; i++) {
        ra = order[i] == a ? i : ra;
        rb = order[i] == b ? i : rb;
    }
    return ra >= rb ? a : b;
}

static int check_all(const check_args *a, irp_check_result *rs, const irp_cli_common *common)
{
    size_t n = a->files.n;
    int status = IRP_EXIT_OK;
    if (a->inputs_file) {
        FILE *f = fopen(a->inputs_file, "re");
        if (!f) {
            fprintf(stderr, "irp check: cannot read --inputs %s: %s\n", a->inputs_file,
                    strerror(errno));
            status = IRP_EXIT_USAGE;
        } else {
            fclose(f);
        }
    }
    for (size_t i = 0; i < n; i++)
        irp_check_load(&rs[i], a->files.v[i]);
    for (size_t i = 0; i < n; i++) {
        size_t count = 0;
        char **iargs = iargs_for(a, rs, n, i, &count);
        irp_check_opts o = { .iargs = iargs, .n_iargs = count, .inputs_file = a->inputs_file,
                             .jobs = a->jobs, .strict = a->strict };
        int rc = iargs ? irp_check_run(&rs[i], &o) : IRP_ENOMEM;
        free(iargs);
        print_result(&rs[i], common);
        if (rc == IRP_ENOMEM || rs[i].load_rc == IRP_ENOMEM)
            status = worse(status, IRP_EXIT_INTERNAL);
        else if (irp_check_unreadable(&rs[i]))
            status = worse(status, IRP_EXIT_USAGE);
        else if (rs[i].errors)
            status = worse(status, IRP_EXIT_FAILED);
    }
    return worse(status, write_reports(a, rs, n));
}

int irp_cmd_check(int argc, char **argv, const irp_cli_common *common)
{
    check_args a = { .files = STRVEC_INIT, .iargs = STRVEC_INIT };
    int status = parse_args(argc, argv, &a);
    if (!status) {
        irp_check_result *rs = calloc(a.files.n, sizeof *rs);
        status = rs ? check_all(&a, rs, common) : IRP_EXIT_INTERNAL;
        for (size_t i = 0; rs && i < a.files.n; i++)
            irp_check_result_release(&rs[i]);
        free(rs);
    }
    strvec_release(&a.files);
    strvec_release(&a.iargs);
    return status;
}
