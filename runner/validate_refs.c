/* References inside templates and `when`: every name must exist where the
 * expression will be evaluated. */
#include <stdlib.h>
#include <string.h>

#include "irp/expr.h"
#include "irp/template.h"
#include "irp/validate.h"
#include "validate_int.h"

#define NONE ((size_t)-1)

typedef struct refctx {
    vctx *v;
    const irp_str *str;          /* the string being checked (positions) */
    const irp_step *step;        /* NULL outside steps */
    size_t var_index;            /* checking vars[var_index]; NONE otherwise */
    bool in_run;                 /* argv or script of `run`: no secrets */
    bool item_ok;                /* inside a for_each step */
    const char *field;           /* for messages */
    unsigned *reach;             /* generation stamps for the needs walk */
    unsigned gen;
    size_t *stack;
} refctx;

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* Is step `target` among the transitive needs of `from`? */
static bool reaches(refctx *r, size_t from, size_t target)
{
    const irp_playbook *pb = r->v->pb;
    if (++r->gen == 0) {
        memset(r->reach, 0, pb->n_steps * sizeof *r->reach);
        r->gen = 1;
    }
    size_t sp = 0;
    r->stack[sp++] = from;
    r->reach[from] = r->gen;
    while (sp) {
        const irp_step *s = &pb->steps[r->stack[--sp]];
        for (size_t i = 0; i < s->n_deps; i++) {
            size_t d = s->deps[i];
            if (d == target)
                return true;
            if (r->reach[d] != r->gen) {
                r->reach[d] = r->gen;
                r->stack[sp++] = d;
            }
        }
    }
    return false;
}

static void check_steps_ref(refctx *r, const char *const *seg, size_t n, irp_pos pos)
{
    static const char *const fields[] = { "status", "ok", "outputs", "stdout", "exit_code",
                                          "started_at", "finished_at", "duration",
                                          "instances", NULL };
    vctx *v = r->v;
    if (r->var_index != NONE) {
        vctx_error(v, pos, "vars are evaluated before any step runs; they cannot read steps");
        return;
    }
    if (n < 3) {
        vctx_error(v, pos, "incomplete reference: write steps.ID.FIELD (status, ok, outputs.K, "
                   "stdout, exit_code, started_at, finished_at, duration, instances)");
        return;
    }
    size_t idx = irp_playbook_step_index(v->pb, seg[1]);
    if (idx == NONE) {
        const char *hint = vctx_suggest_step(v, seg[1]);
        if (hint)
            vctx_error(v, pos, "no step '%s' (did you mean '%s'?)", seg[1], hint);
        else
            vctx_error(v, pos, "no step '%s'", seg[1]);
        return;
    }
    if (!in_list(seg[2], fields)) {
        vctx_error(v, pos, "steps.%s has no field '%s'", seg[1], seg[2]);
        return;
    }
    if ((strcmp(seg[2], "outputs") == 0) != (n == 4) || n > 4) {
        vctx_error(v, pos, strcmp(seg[2], "outputs") == 0 ? "write steps.%s.outputs.NAME"
                                                         : "steps.%s.%s has no fields",
                   seg[1], seg[2]);
        return;
    }
    if (!r->step)
        return;
    if (idx == r->step->index) {
        vctx_error(v, pos, "step '%s' cannot read its own state", seg[1]);
        return;
    }
    /* A finally step runs after every step; other steps see another's
     * state only if it has ended, which `needs` guarantees. */
    const irp_step *target = &v->pb->steps[idx];
    if (r->step->is_finally && !target->is_finally)
        return;
    if (!reaches(r, r->step->index, idx))
        vctx_warning(v, pos, "step '%s' reads steps.%s but does not need it (directly or "
                     "through its needs), so it may not have run yet", r->step->id, seg[1]);
}

static void check_named(refctx *r, const char *root, const char *const *seg, size_t n,
                        irp_pos pos, bool declared, const char *kind)
{
    if (n != 2) {
        vctx_error(r->v, pos, n < 2 ? "incomplete reference: write %s.NAME"
                                    : "%s.%s has no fields", root, n < 2 ? "" : seg[1]);
        return;
    }
    if (!declared)
        vctx_error(r->v, pos, "no %s '%s' is declared", kind, seg[1]);
}

static int check_ref(void *ctx, const char *const *seg, size_t n, size_t offset)
{
    refctx *r = ctx;
    vctx *v = r->v;
    const irp_playbook *pb = v->pb;
    irp_pos pos = irp_str_pos(pb, r->str, offset);
    const char *root = seg[0];
    if (strcmp(root, "inputs") == 0) {
        check_named(r, root, seg, n, pos, n >= 2 && irp_playbook_input(pb, seg[1]), "input");
    } else if (strcmp(root, "vars") == 0) {
        const irp_var *var = n >= 2 ? irp_playbook_var(pb, seg[1]) : NULL;
        check_named(r, root, seg, n, pos, var != NULL, "var");
        if (var && r->var_index != NONE && (size_t)(var - pb->vars) >= r->var_index)
            vctx_error(v, pos, "vars are evaluated in order: '%s' is not yet set here", seg[1]);
    } else if (strcmp(root, "env") == 0) {
        check_named(r, root, seg, n, pos, true, "");
    } else if (strcmp(root, "secrets") == 0) {
        check_named(r, root, seg, n, pos, true, "");
        if (r->in_run)
            vctx_error(v, pos, "a secret cannot be used in run (it would show in the process "
                       "list and the journal); pass it through env");
    } else if (strcmp(root, "item") == 0 || strcmp(root, "index") == 0) {
        if (!r->item_ok)
            vctx_error(v, pos, "'%s' is only defined in a step with for_each", root);
        else if (strcmp(root, "index") == 0 && n > 1)
            vctx_error(v, pos, "index is a number and has no fields");
    } else if (strcmp(root, "steps") == 0) {
        check_steps_ref(r, seg, n, pos);
    } else if (strcmp(root, "run") == 0) {
        static const char *const fields[] = { "id", "mode", "status", "started_at",
                                              "detected_at", "operator", "head", NULL };
        if (n != 2 || !in_list(seg[1], fields))
            vctx_error(v, pos, "run has the fields id, mode, status, started_at, detected_at, "
                       "operator and head");
    } else if (strcmp(root, "deadlines") == 0) {
        static const char *const fields[] = { "due", "remaining", "status", NULL };
        bool known = false;
        for (size_t i = 0; n >= 2 && i < pb->n_deadlines; i++)
            known |= strcmp(pb->deadlines[i].id, seg[1]) == 0;
        if (n != 3 || !in_list(seg[2], fields))
            vctx_error(v, pos, "write deadlines.ID.due, .remaining or .status");
        else if (!known)
            vctx_error(v, pos, "no deadline '%s'", seg[1]);
    }
    return 0;
}

static void check_str(refctx *r, const irp_str *s)
{
    if (!s->s || !s->tpl)
        return;
    r->str = s;
    irp_template_walk_refs(s->tpl, check_ref, r);
}

static void check_strs(refctx *r, const irp_str *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_str(r, &s[i]);
}

static void check_kvs(refctx *r, const irp_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_str(r, &kv[i].value);
}

static void shell_problem(void *ctx, size_t offset, const char *msg)
{
    refctx *r = ctx;
    vctx_error(r->v, irp_str_pos(r->v->pb, r->str, offset), "%s", msg);
}

static void check_run(refctx *r, const irp_run_action *run)
{
    r->in_run = true;
    if (run->shell) {
        check_str(r, &run->script);
        if (run->script.tpl)
            irp_template_shell_check(run->script.tpl, shell_problem, r);
    } else {
        check_strs(r, run->argv, run->argc);
    }
    r->in_run = false;
}

/* A password in the playbook's text would end up in every copy of it. */
static void check_password(refctx *r, const irp_str *pw)
{
    if (!pw->s)
        return;
    const char *const *seg;
    size_t n;
    const irp_expr *e = pw->tpl ? irp_template_single_expr(pw->tpl) : NULL;
    if (!e || !irp_expr_as_ref(e, &seg, &n) || n != 2 || strcmp(seg[0], "secrets") != 0)
        vctx_error(r->v, pw->pos, "password must be a secret: write ${{ secrets.NAME }}");
}

static void check_action(refctx *r, const irp_step *s)
{
    switch (s->action) {
    case IRP_ACT_RUN:
        check_run(r, s->act.run);
        break;
    case IRP_ACT_MANUAL:
        check_str(r, &s->act.manual->prompt);
        break;
    case IRP_ACT_NOTIFY: {
        const irp_notify_action *n = s->act.notify;
        const irp_str *fields[] = { &n->url, &n->content_type, &n->server, &n->from,
                                    &n->username, &n->password, &n->subject, &n->body,
                                    &n->ca_file };
        for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
            check_str(r, fields[i]);
        check_kvs(r, n->headers, n->n_headers);
        check_strs(r, n->to, n->n_to);
        check_password(r, &n->password);
        break;
    }
    case IRP_ACT_EVIDENCE:
        for (size_t i = 0; i < s->act.evidence->n_items; i++) {
            const irp_evidence_item *it = &s->act.evidence->items[i];
            check_str(r, &it->path);
            r->in_run = true;
            check_strs(r, it->argv, it->argc);
            r->in_run = false;
        }
        break;
    case IRP_ACT_WAIT:
        check_str(r, &s->act.wait->until);
        break;
    default:
        break;
    }
}

static void check_step(refctx *r, const irp_step *s)
{
    r->step = s;
    r->item_ok = false;
    /* The for_each list is evaluated before there is an item. */
    check_str(r, &s->for_each_expr);
    check_strs(r, s->for_each_items, s->n_for_each_items);
    r->item_ok = s->has_for_each;
    if (s->when) {
        irp_str w = { s->when_src, strlen(s->when_src), s->when_pos, s->when_style, NULL };
        r->str = &w;
        irp_expr_walk_refs(s->when, check_ref, r);
    }
    check_str(r, &s->confirm_prompt);
    check_str(r, &s->cwd);
    check_kvs(r, s->env, s->n_env);
    check_action(r, s);
    if (s->sim.has_duration && s->timeout_ms >= 0 && s->sim.dur_max_ms > s->timeout_ms)
        vctx_warning(r->v, s->sim.dur_pos, "simulated duration is longer than the step's "
                     "timeout, so simulations end it as timed_out");
}

void validate_refs(vctx *v)
{
    irp_playbook *pb = v->pb;
    refctx r = { .v = v, .var_index = NONE };
    r.reach = calloc(pb->n_steps ? pb->n_steps : 1, sizeof *r.reach);
    r.stack = malloc((pb->n_steps ? pb->n_steps : 1) * sizeof *r.stack);
    if (!r.reach || !r.stack)
        goto out;
    for (size_t i = 0; i < pb->n_vars; i++) {
        r.var_index = i;
        check_str(&r, &pb->vars[i].str);
        check_strs(&r, pb->vars[i].items, pb->vars[i].n_items);
    }
    r.var_index = NONE;
    for (size_t i = 0; i < pb->n_steps; i++)
        check_step(&r, &pb->steps[i]);
out:
    free(r.reach);
    free(r.stack);
}
