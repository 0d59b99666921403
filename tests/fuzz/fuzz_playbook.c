/* Fuzz target: the playbook loader, the way `irp validate` and `irp run`
 * reach it -- YAML parse, model build, templates and expressions, static
 * validation -- from memory (irp_playbook_load_mem) and from a file
 * (irp_playbook_load, which reads through a descriptor and a mapping).
 *
 * Invariants checked beyond "no crash, no leak, no hang":
 *   - both entry points give the same result and the same diagnostics;
 *   - a result of 0 means no errors, IRP_EPARSE means some;
 *   - every diagnostic has a message and, when positioned, a line inside
 *     the file;
 *   - on a valid playbook, the step, input and var indexes find what the
 *     arrays hold, resolved indices are in range, inputs resolve from
 *     `default` and `example` (as `irp check` does) and every shell
 *     script builds its text.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "irp/error.h"
#include "irp/inputs.h"
#include "irp/model.h"
#include "irp/template.h"
#include "irp/validate.h"

/* Everything a diagnostic list says, printed: two lists are equal when
 * these texts are. */
static char *diag_text(irp_diag_list *l, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        fuzz_fail("open_memstream failed");
    irp_diag_sort(l);
    irp_diag_print(l, f, false);
    fprintf(f, "errors=%zu warnings=%zu truncated=%d\n", l->errors, l->warnings,
            (int)l->truncated);
    fclose(f);
    return buf;
}

static void check_diags(const irp_diag_list *l, const char *name, size_t lines)
{
    for (size_t i = 0; i < l->n; i++) {
        const irp_diag *d = &l->items[i];
        FUZZ_CHECK(d->msg && d->msg[0], "diagnostic %zu has no message", i);
        FUZZ_CHECK(d->file && strcmp(d->file, name) == 0, "diagnostic %zu names another file", i);
        /* libyaml places the end of input after a last line without a
         * newline on the line after it. */
        FUZZ_CHECK(d->line <= lines + 1, "diagnostic at line %u of a %zu-line file: %s",
                   d->line, lines, d->msg);
        FUZZ_CHECK(d->line != 0 || d->col == 0, "column %u without a line: %s", d->col,
                   d->msg);
    }
}

static void check_indexes(const irp_playbook *pb)
{
    for (size_t i = 0; i < pb->n_steps; i++) {
        const irp_step *st = &pb->steps[i];
        FUZZ_CHECK(st->index == i, "step %zu has index %zu", i, st->index);
        FUZZ_CHECK(st->id && irp_playbook_step(pb, st->id) == st,
                   "step '%s' is not found by its id", st->id ? st->id : "(null)");
        FUZZ_CHECK(irp_playbook_step_index(pb, st->id) == i, "step '%s': wrong index", st->id);
        for (size_t k = 0; k < st->n_deps; k++)
            FUZZ_CHECK(st->deps[k] < pb->n_steps, "step '%s' needs step %zu of %zu", st->id,
                       st->deps[k], pb->n_steps);
    }
    for (size_t i = 0; i < pb->n_inputs; i++)
        FUZZ_CHECK(irp_playbook_input(pb, pb->inputs[i].name) == &pb->inputs[i],
                   "input '%s' is not found by its name", pb->inputs[i].name);
    for (size_t i = 0; i < pb->n_vars; i++)
        FUZZ_CHECK(irp_playbook_var(pb, pb->vars[i].name) == &pb->vars[i],
                   "var '%s' is not found by its name", pb->vars[i].name);
    for (size_t i = 0; i < pb->n_deadlines; i++) {
        const irp_deadline *d = &pb->deadlines[i];
        FUZZ_CHECK(d->from != IRP_FROM_STEP || d->from_idx < pb->n_steps,
                   "deadline '%s' starts from step %zu of %zu", d->id, d->from_idx,
                   pb->n_steps);
        FUZZ_CHECK(!d->met_by || d->met_by_idx < pb->n_steps,
                   "deadline '%s' is met by step %zu of %zu", d->id, d->met_by_idx,
                   pb->n_steps);
    }
}

/* What `irp check` and `irp run` do next with a valid playbook, short of
 * running anything. */
static void use_valid(const irp_playbook *pb)
{
    irp_diag_list diags = IRP_DIAG_LIST_INIT;
    irp_value *inputs = NULL;
    int rc = irp_inputs_resolve(pb, NULL, 0, NULL, true, &diags, &inputs);
    FUZZ_CHECK((rc == 0) == (diags.errors == 0), "inputs: rc %d with %zu errors", rc,
               diags.errors);
    FUZZ_CHECK(rc != 0 || irp_value_type_of(inputs) == IRP_VALUE_MAP, "inputs: not a map");
    check_diags(&diags, "command line", 0);
    irp_value_unref(inputs);
    irp_diag_list_release(&diags);

    for (size_t i = 0; i < pb->n_steps; i++) {
        const irp_step *st = &pb->steps[i];
        if (st->action != IRP_ACT_RUN || !st->act.run->shell || !st->act.run->script.tpl)
            continue;
        irp_shell_script script;
        irp_expr_error err;
        rc = irp_template_shell_script(st->act.run->script.tpl, NULL, &script, &err);
        FUZZ_CHECK(rc == 0, "step '%s': the script of a valid playbook does not build: %s",
                   st->id, err.msg);
        FUZZ_CHECK(script.text && strlen(script.text) == script.len,
                   "step '%s': script length", st->id);
        irp_shell_script_release(&script);
    }
}

/* Lines as YAML counts them: LF, CR LF, a lone CR, and NEL, LS, PS in
 * UTF-8 each end one. */
static size_t count_lines(const uint8_t *d, size_t size)
{
    size_t n = 1;
    for (size_t i = 0; i < size; i++) {
        if (d[i] == '\n' || (d[i] == '\r' && (i + 1 == size || d[i + 1] != '\n')))
            n++;
        else if (d[i] == 0xC2 && i + 1 < size && d[i + 1] == 0x85)
            n++;
        else if (d[i] == 0xE2 && i + 2 < size && d[i + 1] == 0x80 &&
                 (d[i + 2] == 0xA8 || d[i + 2] == 0xA9))
            n++;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[4200];
    fuzz_write_file("playbook.yaml", data, size, path, sizeof path);

    irp_diag_list dm = IRP_DIAG_LIST_INIT, df = IRP_DIAG_LIST_INIT;
    irp_playbook *pm = NULL, *pf = NULL;
    int rm = irp_playbook_load_mem(path, (const char *)data, size, &dm, &pm);
    int rf = irp_playbook_load(path, &df, &pf);

    FUZZ_CHECK(rm == rf, "load_mem gave %d, load %d", rm, rf);
    FUZZ_CHECK(rm == 0 || rm == IRP_EPARSE, "load gave %d (%s)", rm, irp_strerror(rm));
    FUZZ_CHECK((rm == 0) == (dm.errors == 0), "load gave %d with %zu errors", rm, dm.errors);
    FUZZ_CHECK(rm != 0 || pm, "load gave 0 and no playbook");
    FUZZ_CHECK(!pm == !pf, "one load built a playbook, the other not");

    size_t lm, lf;
    char *tm = diag_text(&dm, &lm), *tf = diag_text(&df, &lf);
    FUZZ_CHECK(lm == lf && memcmp(tm, tf, lm) == 0,
               "load_mem and load disagree:\n--- load_mem\n%s--- load\n%s", tm, tf);
    free(tm);
    free(tf);
    check_diags(&dm, path, count_lines(data, size));
    irp_diag_print(&dm, fuzz_devnull(), true);

    if (pm) {
        FUZZ_CHECK(pm->src_len == size, "playbook holds %zu bytes of %zu", pm->src_len, size);
        if (rm == 0) {
            check_indexes(pm);
            use_valid(pm);
        }
    }
    irp_playbook_free(pm);
    irp_playbook_free(pf);
    irp_diag_list_release(&dm);
    irp_diag_list_release(&df);
    return 0;
}
