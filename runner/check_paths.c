/* irp check: failure paths (SPEC §6).
 *
 * Each path is one dry run of the whole playbook: the engine itself, with
 * no journal (events go only to on_event), the simulated executors of
 * `irp simulate` (nothing is executed or sent), a virtual clock at max
 * speed, and --auto answers.  Randomness is that of `simulate --seed 0`,
 * so every check of the same playbook and inputs runs the same paths.
 *
 * The paths, in this order, at most IRP_CHECK_MAX_PATHS besides the first
 * (fewer on a very large playbook, see plan(); a cut picks evenly):
 *   1. nothing forced to fail;
 *   2. for each step in file order (`steps`, then `finally`): that step
 *      forced to fail as soon as it starts (irp_engine_inject_fail, no
 *      retries), then, for a for_each step whose list had two or more
 *      items in run 1, its first instance alone forced to fail.  The
 *      instance's id is the one the engine gives it (ID[item] or
 *      ID[index], SPEC §1.3), computed from the list run 1 expanded.
 *
 * Each run must show: run.finished (the virtual time and the number of
 * events are bounded, so a bug cannot hang the check), every `finally`
 * step in an end state, no step.finished with an `expression` error (nor
 * a for_each that did not expand), and every deadline ended met, missed
 * or open.  A failed property is a problem of the path, and a diagnostic
 * (once per distinct problem, however many paths show it).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_int.h"
#include "irp/clock.h"
#include "irp/engine.h"
#include "irp/error.h"
#include "irp/exec.h"

/* Bounds of one dry run: a run that has not ended by then never will. */
#define EVENT_LIMIT 2000000u
#define VIRTUAL_LIMIT_MS (400LL * 24 * 3600 * 1000)
/* Problems kept per path, and distinct problems reported. */
#define PATH_PROBLEMS 100
#define DISTINCT_PROBLEMS 1000
/* Step runs all failure paths of one playbook may take together (each
 * dry run runs about every step): some tens of seconds at most. */
#define STEP_BUDGET 2000000u

typedef struct distinct {
    irp_pos pos;
    char *key;                   /* what went wrong, without the path */
    char *first;                 /* the full text on the first path */
    size_t more;                 /* other paths that showed it */
} distinct;

typedef struct dry {
    check_ctx *c;
    irp_check_path *path;
    const char *prefix;          /* "when 'isolate' fails" */
    uv_loop_t *loop;
    irp_engine *e;
    irp_timer bound;
    size_t events;
    bool finished, overflow, overtime;
    bool *deadline_ended;
    json_t *expanded;            /* run 1: step id → the for_each list */
    distinct **seen;             /* the check's distinct problems */
    size_t *n_seen;
    int rc;                      /* IRP_ENOMEM */
} dry;

/* ---- problems ------------------------------------------------------- */

static void remember(dry *d, irp_pos pos, const char *key, const char *full)
{
    for (size_t i = 0; i < *d->n_seen; i++) {
        distinct *x = &(*d->seen)[i];
        if (x->pos.line == pos.line && x->pos.col == pos.col && strcmp(x->key, key) == 0) {
            if (strcmp(x->first, full) != 0)
                x->more++;
            return;
        }
    }
    if (*d->n_seen >= DISTINCT_PROBLEMS)
        return;
    distinct *grown = realloc(*d->seen, (*d->n_seen + 1) * sizeof *grown);
    if (!grown) {
        d->rc = IRP_ENOMEM;
        return;
    }
    *d->seen = grown;
    distinct *x = &grown[(*d->n_seen)++];
    *x = (distinct){ .pos = pos, .key = strdup(key), .first = strdup(full) };
    if (!x->key || !x->first)
        d->rc = IRP_ENOMEM;
}

static void problem(dry *d, irp_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(dry *d, irp_pos pos, const char *fmt, ...)
{
    char key[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof key, fmt, ap);
    va_end(ap);
    char *full = NULL;
    if (asprintf(&full, "%s: %s", d->prefix, key) < 0) {
        d->rc = IRP_ENOMEM;
        return;
    }
    remember(d, pos, key, full);
    irp_check_path *p = d->path;
    if (p->n_problems >= PATH_PROBLEMS) {
        free(full);
        return;
    }
    char **grown = realloc(p->problems, (p->n_problems + 1) * sizeof *grown);
    if (!grown) {
        free(full);
        d->rc = IRP_ENOMEM;
        return;
    }
    p->problems = grown;
    p->problems[p->n_problems++] = full;
}

/* ---- watching the run ----------------------------------------------- */

static const irp_step *step_of(const dry *d, const json_t *ev)
{
    const char *id = json_string_value(json_object_get(ev, "step"));
    return id ? irp_playbook_step(d->c->pb, id) : NULL;
}

static void step_finished(dry *d, const json_t *ev)
{
    const irp_step *st = step_of(d, ev);
    const char *err = json_string_value(json_object_get(ev, "error"));
    const char *inst = json_string_value(json_object_get(ev, "instance"));
    if (!st || !err)
        return;
    const char *what = st->is_finally ? "finally step" : "step";
    if (strncmp(err, "inject:", 7) == 0) {
        d->path->took_effect = true;
    } else if (strncmp(err, "expression:", 11) == 0 && !d->c->expr_bad[st->index]) {
        /* (a step the expressions check already named is not named again) */
        problem(d, st->pos, "%s '%s' failed: %s", what, inst ? inst : st->id, err);
    } else if (!inst) {
        /* A whole step fails only when its for_each did not expand. */
        problem(d, st->pos, "%s '%s' failed: for_each: %s", what, st->id, err);
    }
}

static void deadline_ended(dry *d, const json_t *ev)
{
    const char *id = json_string_value(json_object_get(ev, "deadline"));
    for (size_t i = 0; id && i < d->c->pb->n_deadlines; i++)
        if (strcmp(d->c->pb->deadlines[i].id, id) == 0)
            d->deadline_ended[i] = true;
}

static void on_event(void *ctx, const json_t *ev)
{
    dry *d = ctx;
    const char *name = json_string_value(json_object_get(ev, "event"));
    if (++d->events > EVENT_LIMIT && !d->overflow) {
        d->overflow = true;
        uv_stop(d->loop);
    }
    if (!name)
        return;
    if (strcmp(name, "run.finished") == 0) {
        d->finished = true;
    } else if (strcmp(name, "step.finished") == 0) {
        step_finished(d, ev);
    } else if (strcmp(name, "deadline.met") == 0 || strcmp(name, "deadline.missed") == 0 ||
               strcmp(name, "deadline.open") == 0) {
        deadline_ended(d, ev);
    } else if (strcmp(name, "run.failed_to_start") == 0) {
        const char *err = json_string_value(json_object_get(ev, "error"));
        problem(d, d->c->pb->id_pos, "the run could not start: %s", err ? err : "?");
    } else if (strcmp(name, "step.expanded") == 0 && d->expanded) {
        const char *id = json_string_value(json_object_get(ev, "step"));
        json_t *items = json_object_get(ev, "items");
        if (id && items && !json_object_get(d->expanded, id))
            json_object_set(d->expanded, id, items);
    }
}

static void out_of_time(irp_timer *t)
{
    dry *d = t->data;
    d->overtime = true;
    irp_engine_interrupt(d->e);   /* as Ctrl-C twice: stop everything */
    irp_engine_interrupt(d->e);
}

/* ---- one dry run ---------------------------------------------------- */

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void judge(dry *d, irp_pos where)
{
    const irp_playbook *pb = d->c->pb;
    if (!d->finished)
        problem(d, where, "the run did not end%s",
                d->overtime ? " within 400 days of virtual time"
                : d->overflow ? " within its bound of events" : ": steps wait for nothing");
    for (size_t i = pb->n_main; i < pb->n_steps; i++) {
        irp_state s = irp_engine_step_state(d->e, i);
        if (!irp_state_ended(s))
            problem(d, pb->steps[i].pos, "finally step '%s' did not end (it is %s)",
                    pb->steps[i].id, irp_state_name(s));
    }
    for (size_t i = 0; i < pb->n_deadlines; i++)
        if (!d->deadline_ended[i])
            problem(d, pb->deadlines[i].pos, "deadline '%s' did not end met, missed or open",
                    pb->deadlines[i].id);
}

static int dry_run(dry *d, irp_pos where)
{
    check_ctx *c = d->c;
    static const char *const none[] = { NULL };
    uv_loop_t loop;
    irp_clock *clock = NULL;
    int rc = uv_loop_init(&loop) ? IRP_EIO : 0;
    if (rc)
        return rc;
    d->loop = &loop;
    rc = irp_clock_create_virtual(&loop, (int64_t)time(NULL) * 1000, IRP_CLOCK_SPEED_MAX, &clock);
    irp_engine_opts o = {
        .pb = c->pb, .loop = &loop, .clock = clock, .mode = "check", .run_id = "check",
        .run_dir = "/nonexistent/irp-check", .operator_name = "irp-check",
        .playbook_sha256 = "", .inputs = c->inputs, .detected_at_ms = -1, .jobs = c->jobs,
        .auto_answer = true, .base_env = none, .redact = none, .executor = irp_exec_sim,
        .on_event = on_event, .ctx = d,
    };
    if (!rc)
        rc = irp_engine_new(&o, &d->e);
    if (!rc && d->path->failing)
        irp_engine_inject_fail(d->e, d->path->failing);
    d->bound.data = d;
    if (!rc)
        rc = irp_timer_start(clock, &d->bound, VIRTUAL_LIMIT_MS, out_of_time);
    if (!rc)
        rc = irp_engine_start(d->e);
    while (!rc && !irp_engine_done(d->e) && !d->overflow && uv_run(&loop, UV_RUN_DEFAULT) != 0)
        ;
    if (!rc && !irp_engine_done(d->e)) {
        irp_engine_interrupt(d->e);
        irp_engine_interrupt(d->e);
        for (int i = 0; i < 1000 && !irp_engine_done(d->e); i++)
            uv_run(&loop, UV_RUN_NOWAIT);
    }
    irp_timer_stop(&d->bound);
    if (!rc)
        judge(d, where);
    irp_engine_free(d->e);
    d->e = NULL;
    uv_run(&loop, UV_RUN_NOWAIT);
    irp_clock_close(clock);
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc ? rc : d->rc;
}

/* ---- which paths ---------------------------------------------------- */

/* The id the engine gives the first instance of a list (SPEC §1.3). */
static char *first_instance(const char *step, const json_t *items)
{
    bool by_item = true;
    for (size_t i = 0; i < json_array_size(items) && by_item; i++) {
        const json_t *v = json_array_get(items, i);
        const char *s = json_string_value(v);
        size_t len = s ? json_string_length(v) : 0;
        by_item = s && len >= 1 && len <= 64 &&
                  strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                            "0123456789._:@-") == len;
        for (size_t k = 0; by_item && k < i; k++)
            by_item = !json_equal(v, json_array_get(items, k));
    }
    char *id = NULL;
    int n = by_item ? asprintf(&id, "%s[%s]", step, json_string_value(json_array_get(items, 0)))
                    : asprintf(&id, "%s[0]", step);
    return n < 0 ? NULL : id;
}

static int add_path(irp_check_result *r, const char *failing, bool instance)
{
    irp_check_path *grown = realloc(r->paths, (r->n_paths + 1) * sizeof *grown);
    if (!grown)
        return IRP_ENOMEM;
    r->paths = grown;
    irp_check_path *p = &grown[r->n_paths++];
    *p = (irp_check_path){ .instance = instance };
    if (failing && !(p->failing = strdup(failing)))
        return IRP_ENOMEM;
    return 0;
}

/* Candidate k (0-based, in the order of the header comment) is kept
 * when it is one of `cap` picked evenly from `total`: the same playbook
 * always gets the same paths, and a cut spreads over the whole playbook,
 * `finally` included, rather than dropping its end. */
static bool picked(size_t k, size_t total, size_t cap)
{
    if (total <= cap)
        return true;
    /* j-th pick: floor(j * total / cap); k is picked when some j maps to it. */
    size_t j = (size_t)(((unsigned __int128)k * cap + total - 1) / total);
    return j < cap && (size_t)((unsigned __int128)j * total / cap) == k;
}

/* Walk the candidates once to count them (count_only) or to add those
 * picked. */
static int candidates(check_ctx *c, const json_t *expanded, size_t cap, size_t total,
                      bool count_only, size_t *n)
{
    *n = 0;
    for (size_t i = 0; i < c->pb->n_steps; i++) {
        const irp_step *st = &c->pb->steps[i];
        if (!count_only && picked((*n), total, cap) && add_path(c->r, st->id, false))
            return IRP_ENOMEM;
        (*n)++;
        const json_t *items = json_object_get(expanded, st->id);
        if (!st->has_for_each || json_array_size(items) < 2)
            continue;
        if (!count_only && picked(*n, total, cap)) {
            char *id = first_instance(st->id, items);
            int rc = id ? add_path(c->r, id, true) : IRP_ENOMEM;
            free(id);
            if (rc)
                return rc;
        }
        (*n)++;
    }
    return 0;
}

/* The paths after the first.  At most `cap`, and fewer on a large
 * playbook: each dry run costs about as much as the playbook has steps,
 * so the paths together stay within STEP_BUDGET step runs. */
static int plan(check_ctx *c, const json_t *expanded, size_t cap)
{
    size_t total = 0, n;
    candidates(c, expanded, 0, 0, true, &total);
    size_t afford = STEP_BUDGET / (c->pb->n_steps ? c->pb->n_steps : 1);
    if (cap > afford)
        cap = afford ? afford : 1;
    c->r->paths_possible = total;
    int rc = candidates(c, expanded, cap, total, false, &n);
    if (!rc && total > cap)
        check_diag(c, IRP_CHECK_PATHS, IRP_DIAG_WARNING, c->pb->id_pos,
                   "only %zu of %zu failure paths were run, picked evenly over the steps",
                   c->r->n_paths - 1, total);
    return rc;
}

static int run_path(check_ctx *c, size_t i, json_t *expanded, distinct **seen, size_t *n_seen)
{
    irp_check_path *p = &c->r->paths[i];
    char prefix[600];
    if (p->failing)
        snprintf(prefix, sizeof prefix, "when '%s' fails", p->failing);
    else
        snprintf(prefix, sizeof prefix, "when nothing is forced to fail");
    dry d = { .c = c, .path = p, .prefix = prefix, .expanded = expanded, .seen = seen,
              .n_seen = n_seen };
    d.deadline_ended = calloc(c->pb->n_deadlines + 1, sizeof *d.deadline_ended);
    if (!d.deadline_ended)
        return IRP_ENOMEM;
    irp_pos where = c->pb->id_pos;
    if (p->failing) {
        char step[256];
        snprintf(step, sizeof step, "%.*s", (int)strcspn(p->failing, "["), p->failing);
        const irp_step *st = irp_playbook_step(c->pb, step);
        where = st ? st->pos : where;
    }
    int rc = dry_run(&d, where);
    free(d.deadline_ended);
    return rc;
}

int check_paths(check_ctx *c)
{
    irp_check_result *r = c->r;
    size_t cap = c->o->max_paths ? c->o->max_paths : IRP_CHECK_MAX_PATHS;
    json_t *expanded = json_object();
    distinct *seen = NULL;
    size_t n_seen = 0;
    int rc = expanded ? add_path(r, NULL, false) : IRP_ENOMEM;
    if (!rc)
        rc = run_path(c, 0, expanded, &seen, &n_seen);
    if (!rc)
        rc = plan(c, expanded, cap);
    for (size_t i = 1; !rc && i < r->n_paths; i++)
        rc = run_path(c, i, NULL, &seen, &n_seen);
    for (size_t i = 0; i < n_seen; i++) {
        if (!rc && seen[i].more)
            check_diag(c, IRP_CHECK_PATHS, IRP_DIAG_ERROR, seen[i].pos,
                       "%s (and on %zu other path%s)", seen[i].first, seen[i].more,
                       seen[i].more == 1 ? "" : "s");
        else if (!rc)
            check_diag(c, IRP_CHECK_PATHS, IRP_DIAG_ERROR, seen[i].pos, "%s", seen[i].first);
        free(seen[i].key);
        free(seen[i].first);
    }
    free(seen);
    json_decref(expanded);
    return rc;
}
