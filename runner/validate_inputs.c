/* Input specs: a default or example must fit the declared type and
 * pattern, or every run would start with a wrong value. */
#include "irp/inputs.h"
#include "validate_int.h"

static void check_value(vctx *v, const irp_input_spec *in, const irp_node *n, const char *what)
{
    char err[512];
    irp_value *val = NULL;
    int rc = irp_input_from_node(in, n, &val, err, sizeof err);
    if (rc == 0)
        rc = irp_input_check_pattern(in, val, err, sizeof err);
    if (rc)
        vctx_error(v, (irp_pos){ n->line, n->col }, "%s of input '%s': %s", what, in->name, err);
    irp_value_unref(val);
}

void validate_inputs(vctx *v)
{
    for (size_t i = 0; i < v->pb->n_inputs; i++) {
        const irp_input_spec *in = &v->pb->inputs[i];
        if (in->def)
            check_value(v, in, in->def, "default");
        if (in->example)
            check_value(v, in, in->example, "example");
        if (in->required && in->def)
            vctx_warning(v, in->pos, "input '%s' is required and has a default; the default "
                         "is never used", in->name);
    }
}
