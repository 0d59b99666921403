/* Internal to `irp check` (check.c, check_deadlines.c, check_paths.c):
 * what the static checks learn and the later ones use. */
#ifndef IRP_CHECK_INT_H
#define IRP_CHECK_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "irp/check.h"
#include "irp/value.h"

typedef struct check_ctx {
    irp_check_result *r;
    const irp_check_opts *o;
    const irp_playbook *pb;
    unsigned jobs;
    irp_value *inputs;           /* resolved map; NULL when the inputs had errors */
    irp_value *vars;             /* evaluated statically; NULL when inputs is */
    bool vars_failed;            /* a var did not evaluate: nothing could run */
    size_t *n_items;             /* per step: for_each list length, 0 when unknown */
    bool *never;                 /* per step: can never run */
    bool *expr_bad;              /* per step: the expressions check found an error */
    size_t *topo;                /* every step, needs first; `steps` before `finally` */
    bool graph_ok;               /* topo and never are filled */
} check_ctx;

/* Add a diagnostic of kind k at pos of the playbook. */
void check_diag(check_ctx *c, irp_check_kind k, irp_severity sev, irp_pos pos,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* check_deadlines.c: deadlines that cannot be met, or may be missed. */
void check_deadlines(check_ctx *c);

/* check_paths.c: the failure paths.  IRP_ENOMEM or 0. */
int check_paths(check_ctx *c);

#endif
