/* Static validation: ids, needs, cycles, deadlines, inputs. References
 * inside templates are checked in validate_refs.c. */
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "irp/error.h"
#include "irp/timeutil.h"
#include "irp/validate.h"
#include "validate_int.h"

#define NONE ((size_t)-1)

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Steps are indexed and their needs resolved in blocks: the loads of a
 * block (ids, needs arrays, their strings, index slots) are started
 * together, so that in a large playbook their cache misses overlap
 * instead of coming one after another. */
#define BLOCK 16u
/* Needs per step whose lookups are prepared with the block. */
#define BLOCK_NEEDS 4u

static inline void prefetch(const void *p)
{
    __builtin_prefetch(p);
}

static size_t find_step(const irp_playbook *pb, const char *id, uint64_t hash)
{
    size_t mask = pb->step_table_cap - 1;
    for (size_t h = hash & mask;; h = (h + 1) & mask) {
        const struct irp_step_slot *slot = &pb->step_table[h];
        if (!slot->id)
            return NONE;
        /* Ids the parser interned compare by pointer. */
        if (slot->hash == (uint32_t)(hash >> 32) && (slot->id == id || strcmp(slot->id, id) == 0))
            return slot->index;
    }
}

size_t irp_playbook_step_index(const irp_playbook *pb, const char *id)
{
    if (!pb->step_table_cap) {
        for (size_t i = 0; i < pb->n_steps; i++)
            if (strcmp(pb->steps[i].id, id) == 0)
                return i;
        return NONE;
    }
    return find_step(pb, id, hash_id(id));
}

void vctx_error(vctx *v, irp_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) >= 0)
        irp_diag_add(v->diags, IRP_DIAG_ERROR, v->pb->file, pos.line, pos.col, "%s", msg);
    va_end(ap);
    free(msg);
}

void vctx_warning(vctx *v, irp_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) >= 0)
        irp_diag_add(v->diags, IRP_DIAG_WARNING, v->pb->file, pos.line, pos.col, "%s", msg);
    va_end(ap);
    free(msg);
}

const char *vctx_suggest_step(vctx *v, const char *id)
{
    /* Suggest among at most the first 4096 ids: enough for people, and
     * bounded for generated playbooks. */
    size_t n = v->pb->n_steps < 4096 ? v->pb->n_steps : 4096;
    const char **ids = malloc(n * sizeof *ids);
    if (!ids)
        return NULL;
    for (size_t i = 0; i < n; i++)
        ids[i] = v->pb->steps[i].id;
    const char *s = irp_diag_suggest(id, ids, n);
    free(ids);
    return s;
}

/* Builds the id index and reports duplicates. */
static void index_steps(vctx *v)
{
    irp_playbook *pb = v->pb;
    /* At most 80% full: a slot is 16 bytes, and at 100,000 steps the
     * table at half full took 4 MiB, every lookup a cache miss. */
    size_t cap = 16;
    while (cap < pb->n_steps + pb->n_steps / 4)
        cap *= 2;
    pb->step_table = irp_arena_alloc(&pb->arena, cap * sizeof *pb->step_table);
    if (!pb->step_table)
        return;
    pb->step_table_cap = cap;
    uint64_t hashes[BLOCK];
    for (size_t i = 0; i < pb->n_steps; i++) {
        const irp_step *s = &pb->steps[i];
        if (i % BLOCK == 0) {
            size_t m = pb->n_steps - i < BLOCK ? pb->n_steps - i : BLOCK;
            for (size_t k = 0; k < m; k++)
                prefetch(s[k].id);
            for (size_t k = 0; k < m; k++) {
                hashes[k] = hash_id(s[k].id);
                prefetch(&pb->step_table[hashes[k] & (cap - 1)]);
            }
        }
        uint64_t hash = hashes[i % BLOCK];
        for (size_t h = hash & (cap - 1);; h = (h + 1) & (cap - 1)) {
            struct irp_step_slot *slot = &pb->step_table[h];
            if (!slot->id) {
                *slot = (struct irp_step_slot){ s->id, (uint32_t)(hash >> 32), (uint32_t)i };
                break;
            }
            if (slot->hash == (uint32_t)(hash >> 32) && strcmp(slot->id, s->id) == 0) {
                vctx_error(v, s->pos, "duplicate step id '%s' (first defined at line %u)",
                           s->id, pb->steps[slot->index].pos.line);
                break;
            }
        }
    }
}

/* Resolves the needs of `s` to indices; hashes[0..nh) are the hashes of
 * its first needs' ids, already computed.  Returns true when one of them
 * comes after `s` (or is `s`): only then can there be a cycle. */
static bool resolve_needs(vctx *v, irp_step *s, const uint64_t *hashes, size_t nh)
{
    irp_playbook *pb = v->pb;
    bool forward = false;
    if (!s->needs_given) {
        /* A playbook reads as a checklist: the step before, in its own
         * section; the first of each section has none. */
        bool first = s->index == 0 || (s->is_finally && s->index == pb->n_main);
        if (first)
            return false;
        s->deps = irp_arena_alloc(&pb->arena, sizeof *s->deps);
        if (!s->deps)
            return false;
        s->deps[0] = s->index - 1;
        s->n_deps = 1;
        return false;
    }
    s->deps = irp_arena_alloc(&pb->arena, (s->n_needs ? s->n_needs : 1) * sizeof *s->deps);
    if (!s->deps)
        return false;
    for (size_t i = 0; i < s->n_needs; i++) {
        size_t d = !pb->step_table_cap ? irp_playbook_step_index(pb, s->needs[i])
                   : find_step(pb, s->needs[i], i < nh ? hashes[i] : hash_id(s->needs[i]));
        if (d == NONE) {
            const char *hint = vctx_suggest_step(v, s->needs[i]);
            vctx_error(v, s->needs_pos[i], hint ? "needs names no step '%s' (did you mean '%s'?)"
                                                 : "needs names no step '%s'%s",
                       s->needs[i], hint ? hint : "");
        } else if (d == s->index) {
            vctx_error(v, s->needs_pos[i], "step '%s' needs itself", s->id);
        } else if (!s->is_finally && d >= pb->n_main && pb->steps[d].is_finally) {
            /* steps[0..n_main) are never finally steps: only a step
             * past them is looked at (a cache miss in a large playbook). */
            vctx_error(v, s->needs_pos[i], "step '%s' cannot need the finally step '%s': "
                       "finally runs after every step", s->id, s->needs[i]);
        } else {
            bool dup = false;
            for (size_t j = 0; j < s->n_deps; j++)
                dup |= s->deps[j] == d;
            if (!dup)
                s->deps[s->n_deps++] = d;
            forward |= d > s->index;
        }
    }
    return forward;
}

/* Resolves steps[i0..i0+m), m <= BLOCK, loading what each stage needs
 * for the whole block before the next stage reads it. */
static bool resolve_block(vctx *v, size_t i0, size_t m)
{
    irp_playbook *pb = v->pb;
    irp_step *s = &pb->steps[i0];
    uint64_t hashes[BLOCK][BLOCK_NEEDS];
    size_t nh[BLOCK];
    for (size_t k = 0; k < m; k++)
        if (s[k].needs_given && s[k].n_needs)
            prefetch(s[k].needs);
    for (size_t k = 0; k < m; k++) {
        nh[k] = !s[k].needs_given ? 0 : s[k].n_needs < BLOCK_NEEDS ? s[k].n_needs : BLOCK_NEEDS;
        for (size_t j = 0; j < nh[k]; j++)
            prefetch(s[k].needs[j]);
    }
    if (pb->step_table_cap) {
        size_t mask = pb->step_table_cap - 1;
        for (size_t k = 0; k < m; k++)
            for (size_t j = 0; j < nh[k]; j++) {
                hashes[k][j] = hash_id(s[k].needs[j]);
                prefetch(&pb->step_table[hashes[k][j] & mask]);
            }
        /* The id a slot points to is compared when it is not the very
         * string needed (the parser shares a string only while it is
         * still in its cache). */
        for (size_t k = 0; k < m; k++)
            for (size_t j = 0; j < nh[k]; j++) {
                const char *id = pb->step_table[hashes[k][j] & mask].id;
                if (id && id != s[k].needs[j])
                    prefetch(id);
            }
    }
    bool forward = false;
    for (size_t k = 0; k < m; k++)
        forward |= resolve_needs(v, &s[k], hashes[k], pb->step_table_cap ? nh[k] : 0);
    return forward;
}

/* Iterative DFS (a generated playbook may chain 100,000 steps; recursion
 * would overflow the stack).  Reports each cycle once with its path. */
static void find_cycles(vctx *v)
{
    irp_playbook *pb = v->pb;
    size_t n = pb->n_steps;
    unsigned char *color = calloc(n, 1);       /* 0 new, 1 on stack, 2 done */
    size_t *stack = malloc(n * sizeof *stack);
    size_t *edge = malloc(n * sizeof *edge);
    if (!color || !stack || !edge)
        goto out;
    for (size_t root = 0; root < n; root++) {
        if (color[root])
            continue;
        size_t sp = 0;
        stack[sp] = root;
        edge[sp] = 0;
        color[root] = 1;
        sp++;
        while (sp) {
            size_t cur = stack[sp - 1];
            const irp_step *s = &pb->steps[cur];
            if (edge[sp - 1] == s->n_deps) {
                color[cur] = 2;
                sp--;
                continue;
            }
            size_t next = s->deps[edge[sp - 1]++];
            if (color[next] == 0) {
                color[next] = 1;
                stack[sp] = next;
                edge[sp] = 0;
                sp++;
            } else if (color[next] == 1) {
                report_cycle(v, stack, sp, next);
            }
        }
    }
out:
    free(color);
    free(stack);
    free(edge);
}

void report_cycle(vctx *v, const size_t *stack, size_t sp, size_t back)
{
    size_t start = sp;
    while (start > 0 && stack[start - 1] != back)
        start--;
    start = start ? start - 1 : 0;
    size_t len = 0;
    for (size_t i = start; i < sp; i++)
        len += strlen(v->pb->steps[stack[i]].id) + 4;
    len += strlen(v->pb->steps[back].id) + 1;
    char *path = malloc(len + 1);
    if (!path)
        return;
    path[0] = '\0';
    /* The stack runs from a step to what it needs; print it the way a
     * reader follows `needs`. */
    for (size_t i = start; i < sp; i++) {
        strcat(path, v->pb->steps[stack[i]].id);
        strcat(path, " -> ");
    }
    strcat(path, v->pb->steps[back].id);
    const irp_step *s = &v->pb->steps[back];
    vctx_error(v, s->pos, "dependency cycle: %s (each step needs the next)", path);
    free(path);
}

static void check_deadlines(vctx *v)
{
    irp_playbook *pb = v->pb;
    for (size_t i = 0; i < pb->n_deadlines; i++) {
        irp_deadline *d = &pb->deadlines[i];
        d->from_idx = d->met_by_idx = NONE;
        for (size_t j = 0; j < i; j++)
            if (strcmp(pb->deadlines[j].id, d->id) == 0)
                vctx_error(v, d->pos, "duplicate deadline id '%s' (first defined at line %u)",
                           d->id, pb->deadlines[j].pos.line);
        if (d->from == IRP_FROM_STEP) {
            d->from_idx = irp_playbook_step_index(pb, d->from_step);
            if (d->from_idx == NONE) {
                const char *hint = vctx_suggest_step(v, d->from_step);
                vctx_error(v, d->from_pos, "from must be detected, start or a step id; no step "
                           "'%s'%s%s%s", d->from_step, hint ? " (did you mean '" : "",
                           hint ? hint : "", hint ? "'?)" : "");
            }
        }
        if (d->met_by) {
            d->met_by_idx = irp_playbook_step_index(pb, d->met_by);
            if (d->met_by_idx == NONE) {
                const char *hint = vctx_suggest_step(v, d->met_by);
                vctx_error(v, d->met_by_pos, "met_by names no step '%s'%s%s%s", d->met_by,
                           hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
            }
        }
        if (d->warn_before_ms > 0 && d->within_ms >= 0 && d->warn_before_ms >= d->within_ms)
            vctx_warning(v, d->pos, "deadline '%s': warn_before is not shorter than within, "
                         "so the warning fires at once", d->id);
    }
}

size_t irp_validate(irp_playbook *pb, irp_diag_list *diags)
{
    size_t before = diags->errors;
    vctx v = { pb, diags };
    index_steps(&v);
    bool forward = false;
    for (size_t i = 0; i < pb->n_steps; i += BLOCK)
        forward |= resolve_block(&v, i, pb->n_steps - i < BLOCK ? pb->n_steps - i : BLOCK);
    /* When every step needs only steps before it, the order of the steps
     * is already a topological one: there is no cycle to look for, and
     * the search (a random walk over every step) is skipped. */
    if (forward)
        find_cycles(&v);
    check_deadlines(&v);
    validate_inputs(&v);
    validate_refs(&v);
    return diags->errors - before;
}
