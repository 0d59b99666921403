/* Internal to the validator. */
#ifndef IRP_VALIDATE_INT_H
#define IRP_VALIDATE_INT_H

#include <stdarg.h>

#include "irp/model.h"

typedef struct vctx {
    irp_playbook *pb;
    irp_diag_list *diags;
} vctx;

void vctx_error(vctx *v, irp_pos pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void vctx_warning(vctx *v, irp_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *vctx_suggest_step(vctx *v, const char *id);
void report_cycle(vctx *v, const size_t *stack, size_t sp, size_t back);

/* validate_inputs.c: default and example fit type and pattern. */
void validate_inputs(vctx *v);
/* validate_refs.c: every template and `when` of the playbook. */
void validate_refs(vctx *v);

#endif
