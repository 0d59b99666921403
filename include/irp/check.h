/* irp — `irp check`: the CI dry-run (SPEC §6, docs/ci.md).
 *
 * Checks one playbook at a time and executes nothing: no command runs,
 * nothing is sent, no run directory or journal is written.  Every problem
 * is a located diagnostic (diag.h), filed under the kind of check that
 * found it, so the reports can give one test case per kind:
 *
 *   validate     everything `irp validate` finds (the loader's diagnostics)
 *   inputs       inputs resolved from -i, --inputs, `default` or `example`
 *   expressions  every template and `when` evaluated with those inputs and
 *                the vars, steps' results unknown; secrets not set (a
 *                placeholder value and a warning)
 *   graph        steps that can never run
 *   commands     `run` commands not on PATH (warnings; errors with strict)
 *   addresses    webhook URLs, SMTP servers and e-mail addresses
 *   deadlines    deadlines that cannot be met (error) or may be missed in
 *                the worst case (warning)
 *   paths        failure paths: one dry run per step failing in turn, on a
 *                virtual clock with the simulated executors
 *
 * A playbook with `validate` errors gets only the checks that do not need
 * a sound model (commands, addresses); the others are marked skipped.
 */
#ifndef IRP_CHECK_H
#define IRP_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "irp/diag.h"
#include "irp/model.h"

typedef enum {
    IRP_CHECK_VALIDATE, IRP_CHECK_INPUTS, IRP_CHECK_EXPRESSIONS, IRP_CHECK_GRAPH,
    IRP_CHECK_COMMANDS, IRP_CHECK_ADDRESSES, IRP_CHECK_DEADLINES, IRP_CHECK_PATHS,
    IRP_CHECK_NKINDS
} irp_check_kind;

/* "validate", "inputs", ...; never NULL. */
const char *irp_check_kind_name(irp_check_kind k);

/* Most failure paths run per playbook (SPEC §6). */
#define IRP_CHECK_MAX_PATHS 1000

typedef struct irp_check_opts {
    char *const *iargs;          /* -i KEY=VALUE, borrowed */
    size_t n_iargs;
    const char *inputs_file;     /* --inputs, or NULL */
    unsigned jobs;               /* --jobs; 0 means 8 */
    bool strict;                 /* missing commands are errors */
    size_t max_paths;            /* 0 means IRP_CHECK_MAX_PATHS */
} irp_check_opts;

/* One dry run.  `failing` names the step or instance forced to fail, or
 * is NULL for the run in which nothing is forced to fail. */
typedef struct irp_check_path {
    char *failing;               /* malloc'd, or NULL */
    bool instance;               /* one instance of a for_each step */
    bool took_effect;            /* the forced failure happened (it started) */
    char **problems;             /* malloc'd messages, each naming the path */
    size_t n_problems;
} irp_check_path;

typedef struct irp_check_result {
    const char *file;            /* borrowed: must outlive the result */
    int load_rc;                 /* of irp_playbook_load */
    irp_playbook *pb;            /* NULL when no model could be built */
    irp_diag_list diags[IRP_CHECK_NKINDS];
    const char *skipped[IRP_CHECK_NKINDS];  /* why a check did not run; static text */
    irp_check_path *paths;
    size_t n_paths;
    size_t paths_possible;       /* failure paths before the cap */
    size_t errors, warnings;     /* over every kind, after irp_check_run */
} irp_check_result;

/* Load `file` into a zeroed result: its validate diagnostics and, when
 * one could be built, the model.  Returns irp_playbook_load's code:
 * 0, IRP_EPARSE or IRP_ELIMIT (errors in the playbook), IRP_ENOMEM, or
 * the error of a file that cannot be read. */
int irp_check_load(irp_check_result *r, const char *file);

/* True when the file could not be read (bad usage class: exit 2). */
bool irp_check_unreadable(const irp_check_result *r);

/* Run every other check on a loaded result.  Returns 0, or IRP_ENOMEM. */
int irp_check_run(irp_check_result *r, const irp_check_opts *o);

/* Every diagnostic of the result, of every kind, into `out` (an
 * initialised list), sorted by position. */
void irp_check_merged(const irp_check_result *r, irp_diag_list *out);

void irp_check_result_release(irp_check_result *r);

/* The reports (check_report.c).  Each writes the whole file (mode 0644)
 * or returns an IRP_E* code with the reason in err. */
int irp_check_write_junit(const char *path, const irp_check_result *rs, size_t n,
                          char *err, size_t errlen);
int irp_check_write_json(const char *path, const irp_check_result *rs, size_t n,
                         char *err, size_t errlen);

#endif
