/* irp check: deadlines that cannot be met (SPEC §6).
 *
 * Two critical-path passes over `needs`, in dependency order:
 *
 *   optimistic   each step lasts its `simulate.duration` minimum, else its
 *                duration hint, else 1m (0 for a `manual` step without a
 *                hint; a `wait` lasts its length), never longer than its
 *                timeout; a for_each counts as one instance.  If even
 *                this finishes `met_by` after `within`, the deadline
 *                cannot be met: an error.
 *   pessimistic  each attempt lasts the duration maximum, else the
 *                timeout, else as above; every retry is taken, with its
 *                delay (retry_delay × retry_backoff^(n-1), at most 1h);
 *                instances of a step that takes a --jobs slot run in
 *                rounds of --jobs.  If this is late, the deadline may be
 *                missed: a warning.
 *
 * A deadline's clock starts at detection (time 0 here: `detected` and
 * `start` are the same instant for a check) or when its `from` step
 * finishes.  `finally` steps start once every step above has ended.  A
 * step that can never run (graph check) ends at once.  The diagnostic
 * names the path that makes the deadline late, located at the deadline.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_int.h"
#include "irp/timeutil.h"

#define NONE ((size_t)-1)
#define DEFAULT_MS 60000
#define MAX_DELAY_MS 3600000
/* Steps of a path written out in full; longer paths are shortened. */
#define PATH_SHOWN 12

typedef struct pass {
    int64_t *dur;                /* per step */
    int64_t *finish;             /* per step, from time 0 */
    size_t *pred;                /* the need (or step above) that ends last */
} pass;

static int64_t cap_timeout(const irp_step *st, int64_t ms)
{
    return st->timeout_ms >= 0 && ms > st->timeout_ms ? st->timeout_ms : ms;
}

static int64_t wait_ms(const irp_step *st)
{
    return st->act.wait->duration_ms >= 0 ? st->act.wait->duration_ms : 0;
}

static int64_t optimistic(const irp_step *st)
{
    if (st->action == IRP_ACT_WAIT)
        return wait_ms(st);
    if (st->sim.has_duration)
        return cap_timeout(st, st->sim.dur_min_ms);
    return st->action == IRP_ACT_MANUAL ? 0 : cap_timeout(st, DEFAULT_MS);
}

/* One attempt in the worst case. */
static int64_t worst_attempt(const irp_step *st)
{
    if (st->sim.has_duration)
        return cap_timeout(st, st->sim.dur_max_ms);
    if (st->timeout_ms >= 0)
        return st->timeout_ms;
    return st->action == IRP_ACT_MANUAL ? 0 : DEFAULT_MS;
}

static size_t rounds(const check_ctx *c, const irp_step *st)
{
    bool slot = st->action == IRP_ACT_RUN || st->action == IRP_ACT_EVIDENCE;
    size_t n = c->n_items[st->index];
    return slot && n > c->jobs ? (n + c->jobs - 1) / c->jobs : 1;
}

static int64_t pessimistic(const check_ctx *c, const irp_step *st)
{
    if (st->action == IRP_ACT_WAIT)
        return wait_ms(st);
    int64_t one = worst_attempt(st), total = one;
    double delay = (double)st->retry_delay_ms;
    for (int n = 1; n <= st->retries; n++) {
        total += one + (int64_t)fmin(delay, MAX_DELAY_MS);
        delay *= st->retry_backoff;
    }
    return total * (int64_t)rounds(c, st);
}

static void compute(const check_ctx *c, pass *p, bool worst)
{
    const irp_playbook *pb = c->pb;
    int64_t main_end = 0;
    size_t main_last = NONE;
    for (size_t k = 0; k < pb->n_steps; k++) {
        const irp_step *st = &pb->steps[c->topo[k]];
        size_t i = st->index;
        int64_t start = 0;
        p->pred[i] = NONE;
        if (st->is_finally && main_last != NONE) {
            start = main_end;
            p->pred[i] = main_last;
        }
        for (size_t d = 0; d < st->n_deps; d++)
            if (p->finish[st->deps[d]] > start || p->pred[i] == NONE) {
                start = p->finish[st->deps[d]] > start ? p->finish[st->deps[d]] : start;
                p->pred[i] = st->deps[d];
            }
        p->dur[i] = c->never[i] ? 0 : worst ? pessimistic(c, st) : optimistic(st);
        p->finish[i] = start + p->dur[i];
        if (!st->is_finally && (main_last == NONE || p->finish[i] > main_end)) {
            main_end = p->finish[i];
            main_last = i;
        }
    }
}

/* Deadlines are written in hours (`72h`, not `3d`), so durations on a
 * path read the same way: `25h`, `1h30m`, `45s`. */
static void dur_text(int64_t ms, char *buf, size_t n)
{
    int64_t h = ms / 3600000, rest = ms % 3600000;
    if (h <= 0) {
        irp_duration_format(ms, buf, n);
        return;
    }
    char tail[32] = "";
    if (rest)
        irp_duration_format(rest, tail, sizeof tail);
    snprintf(buf, n, "%lldh%s", (long long)h, tail);
}

/* One step of a path: "isolate (2h)", worst case with its retries. */
static void step_text(FILE *f, const check_ctx *c, const pass *p, size_t i, bool worst)
{
    const irp_step *st = &c->pb->steps[i];
    char d[48];
    dur_text(p->dur[i], d, sizeof d);
    fprintf(f, "%s (%s", st->id, d);
    if (worst && st->retries > 0 && st->action != IRP_ACT_WAIT && !c->never[i])
        fprintf(f, ", %d attempts", st->retries + 1);
    if (worst && rounds(c, st) > 1)
        fprintf(f, ", %zu rounds of --jobs %u", rounds(c, st), c->jobs);
    fputc(')', f);
}

/* "a (2h) → b (20h) → c (3h)": the path into `last`, back to `stop`
 * (excluded) or its start.  Sets *through when it passes `stop`. */
static void path_text(FILE *f, const check_ctx *c, const pass *p, size_t last, size_t stop,
                      bool worst, bool *through)
{
    size_t n = 0;
    *through = false;
    for (size_t i = last; i != NONE; i = p->pred[i]) {
        if (i == stop) {
            *through = true;
            break;
        }
        n++;
    }
    size_t *chain = malloc((n ? n : 1) * sizeof *chain);
    if (!chain) {
        fputs(c->pb->steps[last].id, f);
        return;
    }
    size_t k = n;
    for (size_t i = last; k > 0; i = p->pred[i])
        chain[--k] = i;
    for (size_t j = 0; j < n; j++) {
        if (n > PATH_SHOWN && j == PATH_SHOWN / 2) {
            fprintf(f, " → … (%zu more) …", n - PATH_SHOWN);
            j = n - PATH_SHOWN / 2 - 1;
            continue;
        }
        if (j)
            fputs(" → ", f);
        step_text(f, c, p, chain[j], worst);
    }
    free(chain);
}

static void late(check_ctx *c, const irp_deadline *d, const pass *p, int64_t ref, bool worst)
{
    size_t from = d->from == IRP_FROM_STEP ? d->from_idx : NONE;
    char *text = NULL, within[48], total[48], after[48];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return;
    bool through;
    dur_text(d->within_ms, within, sizeof within);
    path_text(f, c, p, d->met_by_idx, from, worst, &through);
    dur_text(p->finish[d->met_by_idx] - (through ? ref : 0), total, sizeof total);
    fprintf(f, " = %s", total);
    if (from != NONE && !through) {
        dur_text(p->finish[d->met_by_idx] - ref, after, sizeof after);
        fprintf(f, ", %s after '%s' ends", after, c->pb->steps[from].id);
    }
    fclose(f);
    char clock[300] = "";
    if (from != NONE)
        snprintf(clock, sizeof clock, " from '%s'", c->pb->steps[from].id);
    if (worst)
        check_diag(c, IRP_CHECK_DEADLINES, IRP_DIAG_WARNING, d->pos,
                   "deadline '%s' (%s%s) may be missed: in the worst case %s", d->id, within,
                   clock, text ? text : "");
    else
        check_diag(c, IRP_CHECK_DEADLINES, IRP_DIAG_ERROR, d->pos,
                   "deadline '%s' (%s%s) cannot be met: %s", d->id, within, clock,
                   text ? text : "");
    free(text);
}

static void check_one(check_ctx *c, const irp_deadline *d, const pass *best, const pass *worst)
{
    if (!d->met_by)
        return;
    if (c->never[d->met_by_idx]) {
        check_diag(c, IRP_CHECK_DEADLINES, IRP_DIAG_ERROR, d->pos,
                   "deadline '%s' can never be met: its met_by step '%s' never runs", d->id,
                   d->met_by);
        return;
    }
    bool from_step = d->from == IRP_FROM_STEP;
    if (from_step && c->never[d->from_idx]) {
        check_diag(c, IRP_CHECK_DEADLINES, IRP_DIAG_WARNING, d->pos,
                   "deadline '%s' never starts: its from step '%s' never runs", d->id,
                   d->from_step);
        return;
    }
    int64_t ref = from_step ? best->finish[d->from_idx] : 0;
    if (best->finish[d->met_by_idx] - ref > d->within_ms) {
        late(c, d, best, ref, false);
        return;
    }
    ref = from_step ? worst->finish[d->from_idx] : 0;
    if (worst->finish[d->met_by_idx] - ref > d->within_ms)
        late(c, d, worst, ref, true);
}

void check_deadlines(check_ctx *c)
{
    size_t n = c->pb->n_steps ? c->pb->n_steps : 1;
    pass p[2];
    bool ok = true;
    for (int k = 0; k < 2; k++) {
        p[k].dur = calloc(n, sizeof *p[k].dur);
        p[k].finish = calloc(n, sizeof *p[k].finish);
        p[k].pred = calloc(n, sizeof *p[k].pred);
        ok = ok && p[k].dur && p[k].finish && p[k].pred;
    }
    if (ok) {
        compute(c, &p[0], false);
        compute(c, &p[1], true);
        for (size_t i = 0; i < c->pb->n_deadlines; i++)
            check_one(c, &c->pb->deadlines[i], &p[0], &p[1]);
    } else {
        c->r->skipped[IRP_CHECK_DEADLINES] = "out of memory";
    }
    for (int k = 0; k < 2; k++) {
        free(p[k].dur);
        free(p[k].finish);
        free(p[k].pred);
    }
}
