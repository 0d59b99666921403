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
    struct reach *reach;
    bool warned_budget;
} refctx;

/* strcmp() == 0, deciding most mismatches on the first byte: every
 * reference of a large playbook goes through a chain of these. */
static inline bool same(const char *a, const char *b)
{
    return a[0] == b[0] && strcmp(a, b) == 0;
}

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* "Does step `from` need step `target`, directly or through its needs?"
 *
 * One walk per question is quadratic on long chains: every step of a
 * 100,000-step chain reading `steps.first` would walk the whole chain.  So
 * a short walk is tried first, and past WALK_BUDGET visits the answer
 * comes from the set of all steps that need `target`, built once by one
 * walk forward over dependents and cached (CACHE_SLOTS targets).  Work is
 * bounded overall: past WORK_BUDGET the check stops, with one warning. */
#define WALK_BUDGET 4096u
#define CACHE_SLOTS 16u
#define WORK_BUDGET 50000000u

typedef struct reach {
    const irp_playbook *pb;
    unsigned *stamp;             /* generation stamps for walks */
    unsigned gen;
    size_t *stack;
    size_t *rstart, *rdeps;      /* dependents of each step (CSR) */
    size_t cached[CACHE_SLOTS];
    uint64_t *bits[CACHE_SLOTS]; /* bit i: step i needs cached[slot] */
    size_t next_slot;
    uint64_t work;
    bool gave_up;
} reach;

static unsigned next_gen(reach *r)
{
    if (++r->gen == 0) {
        memset(r->stamp, 0, r->pb->n_steps * sizeof *r->stamp);
        r->gen = 1;
    }
    return r->gen;
}

static bool build_rdeps(reach *r)
{
    const irp_playbook *pb = r->pb;
    size_t n = pb->n_steps, edges = 0;
    r->rstart = calloc(n + 1, sizeof *r->rstart);
    if (!r->rstart)
        return false;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < pb->steps[i].n_deps; j++) {
            r->rstart[pb->steps[i].deps[j] + 1]++;
            edges++;
        }
    for (size_t i = 0; i < n; i++)
        r->rstart[i + 1] += r->rstart[i];
    r->rdeps = malloc((edges ? edges : 1) * sizeof *r->rdeps);
    size_t *fill = calloc(n ? n : 1, sizeof *fill);
    if (!r->rdeps || !fill) {
        free(fill);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < pb->steps[i].n_deps; j++) {
            size_t d = pb->steps[i].deps[j];
            r->rdeps[r->rstart[d] + fill[d]++] = i;
        }
    free(fill);
    return true;
}

/* 1 found, 0 not found, -1 over budget. */
static int short_walk(reach *r, size_t from, size_t target)
{
    unsigned gen = next_gen(r);
    size_t sp = 0, visits = 0;
    r->stack[sp++] = from;
    r->stamp[from] = gen;
    while (sp) {
        const irp_step *s = &r->pb->steps[r->stack[--sp]];
        if (++visits > WALK_BUDGET) {
            r->work += visits;
            return -1;
        }
        for (size_t i = 0; i < s->n_deps; i++) {
            size_t d = s->deps[i];
            if (d == target) {
                r->work += visits;
                return 1;
            }
            if (r->stamp[d] != gen) {
                r->stamp[d] = gen;
                r->stack[sp++] = d;
            }
        }
    }
    r->work += visits;
    return 0;
}

static uint64_t *cached_dependents(reach *r, size_t target)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        if (r->bits[i] && r->cached[i] == target)
            return r->bits[i];
    return NULL;
}

static uint64_t *dependents_of(reach *r, size_t target)
{
    uint64_t *hit = cached_dependents(r, target);
    if (hit)
        return hit;
    if (!r->rstart && !build_rdeps(r))
        return NULL;
    size_t n = r->pb->n_steps, slot = r->next_slot++ % CACHE_SLOTS;
    if (!r->bits[slot] && !(r->bits[slot] = malloc(((n + 63) / 64) * sizeof(uint64_t))))
        return NULL;
    uint64_t *bits = r->bits[slot];
    memset(bits, 0, ((n + 63) / 64) * sizeof *bits);
    r->cached[slot] = target;
    size_t sp = 0;
    r->stack[sp++] = target;
    while (sp) {
        size_t cur = r->stack[--sp];
        r->work++;
        for (size_t k = r->rstart[cur]; k < r->rstart[cur + 1]; k++) {
            size_t dep = r->rdeps[k];
            if (!(bits[dep / 64] & (1ull << (dep % 64)))) {
                bits[dep / 64] |= 1ull << (dep % 64);
                r->stack[sp++] = dep;
            }
        }
    }
    return bits;
}

/* The walks' memory, on the first question that needs a walk: most
 * playbooks ask none, or only about direct needs. */
static bool reach_alloc(reach *r)
{
    size_t n = r->pb->n_steps ? r->pb->n_steps : 1;
    if (!r->stamp)
        r->stamp = calloc(n, sizeof *r->stamp);
    if (!r->stack)
        r->stack = malloc(n * sizeof *r->stack);
    return r->stamp && r->stack;
}

/* 1 yes, 0 no, -1 unknown (out of memory or over the work budget). */
static int reaches(reach *r, size_t from, size_t target)
{
    if (r->gave_up)
        return -1;
    if (r->work > WORK_BUDGET) {
        r->gave_up = true;
        return -1;
    }
    uint64_t *bits = cached_dependents(r, target);
    if (bits)
        return (bits[from / 64] >> (from % 64)) & 1;
    /* A step mostly reads the state of a step it needs directly: the
     * first step of the walk, taken here without the walk's memory. */
    const irp_step *s = &r->pb->steps[from];
    for (size_t i = 0; i < s->n_deps; i++)
        if (s->deps[i] == target) {
            r->work++;
            return 1;
        }
    if (!reach_alloc(r))
        return -1;
    int found = short_walk(r, from, target);
    if (found >= 0)
        return found;
    bits = dependents_of(r, target);
    if (!bits)
        return -1;
    return (bits[from / 64] >> (from % 64)) & 1;
}

static void reach_release(reach *r)
{
    free(r->stamp);
    free(r->stack);
    free(r->rstart);
    free(r->rdeps);
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        free(r->bits[i]);
}

/* Where byte `off` of the string being checked is: computed only for a
 * diagnostic, since most references are fine. */
static irp_pos ref_pos(const refctx *r, size_t off)
{
    return irp_str_pos(r->v->pb, r->str, off);
}

static void check_steps_ref(refctx *r, const char *const *seg, size_t n, size_t off)
{
    static const char *const fields[] = { "status", "ok", "outputs", "stdout", "exit_code",
                                          "started_at", "finished_at", "duration",
                                          "instances", NULL };
    vctx *v = r->v;
    if (r->var_index != NONE) {
        vctx_error(v, ref_pos(r, off),
                   "vars are evaluated before any step runs; they cannot read steps");
        return;
    }
    if (n < 3) {
        vctx_error(v, ref_pos(r, off), "incomplete reference: write steps.ID.FIELD (status, ok, "
                   "outputs.K, stdout, exit_code, started_at, finished_at, duration, "
                   "instances)");
        return;
    }
    size_t idx = irp_playbook_step_index(v->pb, seg[1]);
    if (idx == NONE) {
        const char *hint = vctx_suggest_step(v, seg[1]);
        if (hint)
            vctx_error(v, ref_pos(r, off), "no step '%s' (did you mean '%s'?)", seg[1], hint);
        else
            vctx_error(v, ref_pos(r, off), "no step '%s'", seg[1]);
        return;
    }
    if (!in_list(seg[2], fields)) {
        vctx_error(v, ref_pos(r, off), "steps.%s has no field '%s'", seg[1], seg[2]);
        return;
    }
    if ((strcmp(seg[2], "outputs") == 0) != (n == 4) || n > 4) {
        vctx_error(v, ref_pos(r, off),
                   strcmp(seg[2], "outputs") == 0 ? "write steps.%s.outputs.NAME"
                                                  : "steps.%s.%s has no fields",
                   seg[1], seg[2]);
        return;
    }
    if (!r->step)
        return;
    if (idx == r->step->index) {
        vctx_error(v, ref_pos(r, off), "step '%s' cannot read its own state", seg[1]);
        return;
    }
    /* A finally step runs after every step; other steps see another's
     * state only if it has ended, which `needs` guarantees. */
    const irp_step *target = &v->pb->steps[idx];
    if (r->step->is_finally && !target->is_finally)
        return;
    int found = reaches(r->reach, r->step->index, idx);
    if (found < 0 && !r->warned_budget) {
        r->warned_budget = true;
        vctx_warning(v, ref_pos(r, off), "too many steps.X references to check them all "
                     "against needs; the rest are not checked");
    }
    if (found == 0)
        vctx_warning(v, ref_pos(r, off), "step '%s' reads steps.%s but does not need it "
                     "(directly or through its needs), so it may not have run yet",
                     r->step->id, seg[1]);
}

static void check_named(refctx *r, const char *root, const char *const *seg, size_t n,
                        size_t off, bool declared, const char *kind)
{
    if (n != 2) {
        vctx_error(r->v, ref_pos(r, off), n < 2 ? "incomplete reference: write %s.NAME"
                                                : "%s.%s has no fields",
                   root, n < 2 ? "" : seg[1]);
        return;
    }
    if (!declared)
        vctx_error(r->v, ref_pos(r, off), "no %s '%s' is declared", kind, seg[1]);
}

static int check_ref(void *ctx, const char *const *seg, size_t n, size_t offset)
{
    refctx *r = ctx;
    vctx *v = r->v;
    const irp_playbook *pb = v->pb;
    const char *root = seg[0];
    if (same(root, "inputs")) {
        check_named(r, root, seg, n, offset, n >= 2 && irp_playbook_input(pb, seg[1]), "input");
    } else if (same(root, "vars")) {
        const irp_var *var = n >= 2 ? irp_playbook_var(pb, seg[1]) : NULL;
        check_named(r, root, seg, n, offset, var != NULL, "var");
        if (var && r->var_index != NONE && (size_t)(var - pb->vars) >= r->var_index)
            vctx_error(v, ref_pos(r, offset),
                       "vars are evaluated in order: '%s' is not yet set here", seg[1]);
    } else if (same(root, "env")) {
        check_named(r, root, seg, n, offset, true, "");
    } else if (same(root, "secrets")) {
        check_named(r, root, seg, n, offset, true, "");
        if (r->in_run)
            vctx_error(v, ref_pos(r, offset), "a secret cannot be used in run (it would show in "
                       "the process list and the journal); pass it through env");
    } else if (same(root, "item") || same(root, "index")) {
        if (!r->item_ok)
            vctx_error(v, ref_pos(r, offset), "'%s' is only defined in a step with for_each",
                       root);
        else if (same(root, "index") && n > 1)
            vctx_error(v, ref_pos(r, offset), "index is a number and has no fields");
    } else if (same(root, "steps")) {
        check_steps_ref(r, seg, n, offset);
    } else if (same(root, "run")) {
        static const char *const fields[] = { "id", "mode", "status", "started_at",
                                              "detected_at", "operator", "head", NULL };
        if (n != 2 || !in_list(seg[1], fields))
            vctx_error(v, ref_pos(r, offset), "run has the fields id, mode, status, started_at, "
                       "detected_at, operator and head");
    } else if (same(root, "deadlines")) {
        static const char *const fields[] = { "due", "remaining", "status", NULL };
        bool known = false;
        for (size_t i = 0; n >= 2 && i < pb->n_deadlines; i++)
            known |= strcmp(pb->deadlines[i].id, seg[1]) == 0;
        if (n != 3 || !in_list(seg[2], fields))
            vctx_error(v, ref_pos(r, offset), "write deadlines.ID.due, .remaining or .status");
        else if (!known)
            vctx_error(v, ref_pos(r, offset), "no deadline '%s'", seg[1]);
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
    vctx_error(r->v, ref_pos(r, offset), "%s", msg);
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
    check_str(r, &s->rare->for_each_expr);
    check_strs(r, s->rare->for_each_items, s->rare->n_for_each_items);
    r->item_ok = s->has_for_each;
    if (s->when) {
        irp_str w = { .s = s->when_src, .len = (uint32_t)strlen(s->when_src), .pos = s->when_pos,
                      .style = s->when_style };
        r->str = &w;
        irp_expr_walk_refs(s->when, check_ref, r);
    }
    check_str(r, &s->rare->confirm_prompt);
    check_str(r, &s->rare->cwd);
    check_kvs(r, s->env, s->n_env);
    check_action(r, s);
    if (s->sim.has_duration && s->timeout_ms >= 0 && s->sim.dur_max_ms > s->timeout_ms)
        vctx_warning(r->v, s->sim.dur_pos, "simulated duration is longer than the step's "
                     "timeout, so simulations end it as timed_out");
}

void validate_refs(vctx *v)
{
    irp_playbook *pb = v->pb;
    reach rc = { .pb = pb };
    refctx r = { .v = v, .var_index = NONE, .reach = &rc };
    for (size_t i = 0; i < pb->n_vars; i++) {
        r.var_index = i;
        check_str(&r, &pb->vars[i].str);
        check_strs(&r, pb->vars[i].items, pb->vars[i].n_items);
    }
    r.var_index = NONE;
    for (size_t i = 0; i < pb->n_steps; i++)
        check_step(&r, &pb->steps[i]);
    reach_release(&rc);
}
