/* A run rebuilt from its journal: replay every event into steps,
 * instances, attempts, prompts, deadlines and the rest (runlog.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "irp/diag.h"
#include "irp/error.h"
#include "irp/event.h"
#include "irp/model.h"
#include "irp/runlog.h"
#include "irp/timeutil.h"
#include "irp/validate.h"

/* ---- small helpers -------------------------------------------------- */

static const char *str_of(const json_t *ev, const char *key)
{
    return json_string_value(json_object_get(ev, key));
}

static int64_t int_of(const json_t *ev, const char *key, int64_t dflt)
{
    const json_t *v = json_object_get(ev, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static int64_t time_of(const json_t *ev, const char *key)
{
    const char *s = str_of(ev, key);
    int64_t ms;
    return s && irp_time_parse(s, strlen(s), &ms) == 0 ? ms : -1;
}

/* Grow *arr (elements of `size` bytes) so one more fits, room for
 * `first` at first; zeroes the new element.  Returns it, or NULL when out
 * of memory. */
static void *push_n(void *arr_p, size_t *n, size_t *cap, size_t size, size_t first)
{
    void **arr = arr_p;
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : first;
        void *p = realloc(*arr, ncap * size);
        if (!p)
            return NULL;
        *arr = p;
        *cap = ncap;
    }
    void *el = (char *)*arr + (*n)++ * size;
    memset(el, 0, size);
    return el;
}

/* push_n for the many small arrays of a step (its instances, their
 * attempts), in the runlog's arena: one malloc and one free each cost a
 * long run more than the rest of its model.  Outgrown arrays stay in the
 * arena; doubling bounds them by the final size. */
static void *push_arena(irp_arena *a, void *arr_p, size_t *n, size_t *cap, size_t size,
                        size_t first)
{
    void **arr = arr_p;
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : first;
        void *p = ncap < SIZE_MAX / 2 / size ? irp_arena_alloc_uninit(a, ncap * size) : NULL;
        if (!p)
            return NULL;
        if (*n)
            memcpy(p, *arr, *n * size);
        *arr = p;
        *cap = ncap;
    }
    void *el = (char *)*arr + (*n)++ * size;
    memset(el, 0, size);
    return el;
}

static void *push(void *arr_p, size_t *n, size_t *cap, size_t size)
{
    return push_n(arr_p, n, cap, size, 8);
}

static int parse_state(const char *s, irp_state *out)
{
    for (int i = IRP_ST_PENDING; s && i <= IRP_ST_INTERRUPTED; i++)
        if (strcmp(s, irp_state_name((irp_state)i)) == 0) {
            *out = (irp_state)i;
            return 0;
        }
    return IRP_EINVAL;
}

/* A string of an event the runlog keeps, or of one it drops (a fed
 * runlog's step events): then a copy.  NULL stays NULL, and NULL also
 * when out of memory (the field is then absent, as if never journaled). */
static const char *keep_str(irp_runlog *L, const char *s)
{
    return s && L->fed ? irp_arena_strdup(&L->strings, s) : s;
}

/* ---- reading the journal -------------------------------------------- */

typedef struct reader {
    irp_runlog *log;
    size_t cap;
} reader;

static int on_line(void *ctx, const irp_journal_line *line)
{
    reader *r = ctx;
    irp_runlog *L = r->log;
    if (L->n_events >= IRP_RUNLOG_MAX_EVENTS)
        return IRP_ELIMIT;
    if (L->n_events == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 256;
        json_t **p = realloc(L->events, ncap * sizeof *p);
        if (!p)
            return IRP_ENOMEM;
        L->events = p;
        r->cap = ncap;
    }
    L->events[L->n_events++] = json_incref(line->ev);
    memcpy(L->head, line->hash, sizeof L->head);
    return 0;
}

/* ---- the model ------------------------------------------------------ */

/* id → position: a table of its own, not a jansson object, as a long
 * run indexes every step (no allocation per id, no copy of it). */
struct irp_runlog_slot {
    const char *id;                  /* NULL: empty */
    uint32_t hash;
    uint32_t pos;
};

static uint32_t id_hash(const char *id)
{
    uint32_t h = 2166136261u;    /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

static struct irp_runlog_slot *index_slot(const irp_runlog_index *x, const char *id, uint32_t h)
{
    size_t mask = x->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct irp_runlog_slot *sl = &x->slots[i];
        if (!sl->id || (sl->hash == h && strcmp(sl->id, id) == 0))
            return sl;
    }
}

/* Room for `n` ids at most half full. */
static int index_reserve(irp_runlog_index *x, size_t n)
{
    if (n * 2 <= x->cap)
        return 0;
    size_t ncap = x->cap ? x->cap : 16;
    while (ncap < n * 2)
        ncap *= 2;
    if (ncap > UINT32_MAX)
        return IRP_ELIMIT;
    irp_runlog_index nx = { calloc(ncap, sizeof *nx.slots), ncap, x->n };
    if (!nx.slots)
        return IRP_ENOMEM;
    for (size_t i = 0; i < x->cap; i++)
        if (x->slots[i].id)
            *index_slot(&nx, x->slots[i].id, x->slots[i].hash) = x->slots[i];
    free(x->slots);
    *x = nx;
    return 0;
}

/* id (borrowed: it must live as long as the index) → pos; a known id
 * moves to pos. */
static int index_put(irp_runlog_index *x, const char *id, size_t pos)
{
    int rc = index_reserve(x, x->n + 1);
    if (rc)
        return rc == IRP_ELIMIT ? IRP_ENOMEM : rc;
    uint32_t h = id_hash(id);
    struct irp_runlog_slot *sl = index_slot(x, id, h);
    x->n += !sl->id;
    *sl = (struct irp_runlog_slot){ id, h, (uint32_t)pos };
    return 0;
}

static long index_get(const irp_runlog_index *x, const char *id)
{
    if (!x->n)
        return -1;
    const struct irp_runlog_slot *sl = index_slot(x, id, id_hash(id));
    return sl->id ? (long)sl->pos : -1;
}

/* A step named `id`.  sid and title, when not NULL, are its id and title
 * borrowed (they outlive the runlog); else both are a copy of id.  Put in
 * the step index unless the playbook's finds it (see pb_indexed). */
static irp_runlog_step *add_step_as(irp_runlog *L, const char *id, const char *sid,
                                    const char *title, bool indexed)
{
    irp_runlog_step *st = push(&L->steps, &L->n_steps, &L->cap_steps, sizeof *st);
    if (!st)
        return NULL;
    st->id = sid ? sid : irp_arena_strdup(&L->strings, id);
    st->title = title ? title : st->id;
    st->phase = "";
    st->started_ms = st->finished_ms = -1;
    if (!st->id || (indexed && index_put(&L->step_index, st->id, L->n_steps - 1))) {
        L->n_steps--;
        return NULL;
    }
    return st;
}

static irp_runlog_step *add_step(irp_runlog *L, const char *id)
{
    return add_step_as(L, id, NULL, NULL, true);
}

/* Whether the playbook's own step index finds the playbook's steps: a fed
 * runlog's steps begin with them, in their order, and a long run need
 * not index them a second time. */
static bool pb_indexed(const irp_runlog *L, const irp_playbook *pb)
{
    return L->fed && pb && pb->step_table_cap;
}

static irp_runlog_step *find_step(const irp_runlog *L, const char *id)
{
    if (L->playbook_loaded && pb_indexed(L, L->pb)) {
        size_t k = irp_playbook_step_index(L->pb, id);
        if (k != (size_t)-1)
            return &L->steps[k];
    }
    long i = index_get(&L->step_index, id);
    return i >= 0 ? &L->steps[i] : NULL;
}

const irp_runlog_step *irp_runlog_step_get(const irp_runlog *log, const char *id)
{
    return id ? find_step(log, id) : NULL;
}

static irp_runlog_step *step_of(irp_runlog *L, const char *id)
{
    irp_runlog_step *st = find_step(L, id);
    return st ? st : add_step(L, id);
}

/* Up to this many instances a step's are scanned: most steps have one,
 * and a hash table for each cost a long run more memory and allocations
 * than the rest of its model. */
#define INST_SCAN 8

static long inst_find(const irp_runlog_step *st, const char *id)
{
    if (st->inst_index.n)
        return index_get(&st->inst_index, id);
    for (size_t i = 0; i < st->n_insts; i++)
        if (strcmp(st->insts[i].id, id) == 0)
            return (long)i;
    return -1;
}

/* Index the instance just added at the end, with the others once the
 * step outgrows the scan. */
static int index_last_inst(irp_runlog_step *st)
{
    size_t from = st->inst_index.n ? st->n_insts - 1 : 0;
    int rc = 0;
    if (!st->inst_index.n && st->n_insts <= INST_SCAN)
        return 0;
    for (size_t i = from; i < st->n_insts && !rc; i++)
        rc = index_put(&st->inst_index, st->insts[i].id, i);
    return rc;
}

static irp_runlog_instance *add_inst(irp_runlog *L, irp_runlog_step *st, const char *id,
                                     size_t index)
{
    /* Most steps have one instance of one attempt: room for one, so a
     * long run's model grows by what it holds. */
    irp_runlog_instance *in = push_arena(&L->strings, &st->insts, &st->n_insts, &st->cap_insts,
                                         sizeof *in, 1);
    if (!in)
        return NULL;
    /* The one instance of a step without for_each has the step's id. */
    in->id = strcmp(id, st->id) == 0 ? st->id : irp_arena_strdup(&L->strings, id);
    if (!in->id || index_last_inst(st)) {
        st->n_insts--;
        return NULL;
    }
    in->index = index;
    in->state = IRP_ST_PENDING;
    in->started_ms = in->finished_ms = -1;
    return in;
}

static irp_runlog_instance *inst_of(irp_runlog *L, irp_runlog_step *st, const char *id)
{
    long i = inst_find(st, id);
    return i >= 0 ? &st->insts[i] : add_inst(L, st, id, st->n_insts);
}

static irp_runlog_attempt *attempt_of(irp_runlog *L, irp_runlog_instance *in, int64_t number)
{
    if (number < 1 || number > 1000000)
        number = 1;
    for (size_t i = 0; i < in->n_attempts; i++)
        if (in->attempts[i].number == number)
            return &in->attempts[i];
    irp_runlog_attempt *a = push_arena(&L->strings, &in->attempts, &in->n_attempts,
                                       &in->cap_attempts, sizeof *a, 1);
    if (!a)
        return NULL;
    a->number = (int)number;
    a->started_ms = a->finished_ms = a->duration_ms = a->exit_code = -1;
    return a;
}

/* Instance ids as the engine makes them (SPEC §1.3): ID[item] when every
 * item is a distinct short plain string, else ID[index]. */
static bool ids_by_item(const json_t *items)
{
    size_t n = json_array_size(items);
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(items, i));
        size_t len = s ? strlen(s) : 0;
        if (!s || len < 1 || len > 64 ||
            strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-") != len)
            return false;
        for (size_t k = 0; k < i; k++)
            if (strcmp(s, json_string_value(json_array_get(items, k))) == 0)
                return false;
    }
    return true;
}

static int expand(irp_runlog *L, irp_runlog_step *st, const json_t *items)
{
    st->has_for_each = true;
    st->items = items;
    if (!json_is_array(items) || st->n_insts)
        return 0;
    bool by_item = ids_by_item(items);
    for (size_t i = 0; i < json_array_size(items); i++) {
        char *id = NULL;
        int n = by_item ? asprintf(&id, "%s[%s]", st->id,
                                   json_string_value(json_array_get(items, i)))
                        : asprintf(&id, "%s[%zu]", st->id, i);
        irp_runlog_instance *in = n < 0 ? NULL : add_inst(L, st, id, i);
        free(n < 0 ? NULL : id);
        if (!in)
            return IRP_ENOMEM;
        in->item = json_array_get(items, i);
    }
    return 0;
}

static int add_operator(irp_runlog *L, const char *name, unsigned role)
{
    if (!name || !*name)
        return 0;
    irp_runlog_operator *op = NULL;
    for (size_t i = 0; i < L->n_operators && !op; i++)
        if (strcmp(L->operators[i].name, name) == 0)
            op = &L->operators[i];
    if (!op) {
        op = push(&L->operators, &L->n_operators, &L->cap_operators, sizeof *op);
        if (!op)
            return IRP_ENOMEM;
        op->name = name;
    }
    op->roles |= role;
    op->answers += role == IRP_RUNLOG_ANSWERED;
    op->notes += role == IRP_RUNLOG_NOTED;
    return 0;
}

static int add_event_ref(const json_t ***arr, size_t *n, const json_t *ev)
{
    /* Capacity is implicit: 4, then doubled whenever n reaches a power
     * of two. */
    size_t k = *n;
    if (k == 0 || (k >= 4 && (k & (k - 1)) == 0)) {
        const json_t **p = realloc((void *)*arr, (k ? k * 2 : 4) * sizeof *p);
        if (!p)
            return IRP_ENOMEM;
        *arr = p;
    }
    (*arr)[(*n)++] = ev;
    return 0;
}

/* ---- deadlines ------------------------------------------------------ */

static irp_runlog_deadline *deadline_of(irp_runlog *L, const char *id)
{
    for (size_t i = 0; i < L->n_deadlines; i++)
        if (strcmp(L->deadlines[i].id, id) == 0)
            return &L->deadlines[i];
    irp_runlog_deadline *d = push(&L->deadlines, &L->n_deadlines, &L->cap_deadlines, sizeof *d);
    if (!d)
        return NULL;
    d->id = id;
    d->within_ms = d->due_ms = d->warned_ms = d->ended_ms = -1;
    d->status = "not_started";
    return d;
}

static int deadline_declared(irp_runlog *L, const json_t *spec)
{
    const char *id = str_of(spec, "id");
    if (!id)
        return 0;
    irp_runlog_deadline *d = deadline_of(L, id);
    if (!d)
        return IRP_ENOMEM;
    d->title = str_of(spec, "title");
    d->from = str_of(spec, "from");
    d->within_ms = int_of(spec, "within_ms", -1);
    d->due_ms = time_of(spec, "due");
    if (d->due_ms >= 0)
        d->status = "running";
    return 0;
}

static int deadline_event(irp_runlog *L, const char *name, const json_t *ev, int64_t ts)
{
    const char *id = str_of(ev, "deadline");
    if (!id)
        return 0;
    irp_runlog_deadline *d = deadline_of(L, id);
    if (!d)
        return IRP_ENOMEM;
    if (str_of(ev, "title"))
        d->title = str_of(ev, "title");
    if (time_of(ev, "due") >= 0)
        d->due_ms = time_of(ev, "due");
    const char *what = name + strlen("deadline.");
    if (strcmp(what, "warning") == 0) {
        d->warned_ms = ts;
        if (strcmp(d->status, "running") == 0 || strcmp(d->status, "not_started") == 0)
            d->status = "warning";
        return 0;
    }
    static const char *const ends[] = { "met", "missed", "open" };
    for (size_t i = 0; i < 3; i++)
        if (strcmp(what, ends[i]) == 0) {
            d->status = ends[i];
            d->ended_ms = ts;
            d->has_margin = json_is_integer(json_object_get(ev, "margin_ms"));
            d->margin_ms = int_of(ev, "margin_ms", 0);
        }
    return 0;
}

/* A deadline counted from a step's finish is due once that step ended. */
static void deadlines_settle(irp_runlog *L)
{
    for (size_t i = 0; i < L->n_deadlines; i++) {
        irp_runlog_deadline *d = &L->deadlines[i];
        if (d->due_ms >= 0 || d->within_ms < 0 || !d->from)
            continue;
        int64_t ref = -1;
        if (strcmp(d->from, "detected") == 0)
            ref = L->detected_ms;
        else if (strcmp(d->from, "start") == 0)
            ref = L->started_ms;
        else if (find_step(L, d->from) && irp_state_ended(find_step(L, d->from)->state))
            ref = find_step(L, d->from)->finished_ms;
        if (ref < 0)
            continue;
        d->due_ms = ref + d->within_ms;
        if (strcmp(d->status, "not_started") == 0)
            d->status = "running";
    }
}

bool irp_runlog_remaining(const irp_runlog *log, const irp_runlog_deadline *d, int64_t now_ms,
                          int64_t *ms)
{
    if (strcmp(d->status, "met") == 0 && d->has_margin) {
        *ms = d->margin_ms;
        return true;
    }
    if (d->due_ms < 0 || strcmp(d->status, "not_started") == 0)
        return false;
    int64_t ref = d->ended_ms >= 0 ? d->ended_ms : log->status ? log->finished_ms : now_ms;
    *ms = d->due_ms - ref;
    return true;
}

/* ---- replaying step events ------------------------------------------ */

static irp_runlog_prompt *open_prompt(irp_runlog *L, const char *step, const char *inst)
{
    for (size_t i = L->n_prompts; i-- > 0;) {
        irp_runlog_prompt *p = &L->prompts[i];
        if (!p->answered && strcmp(p->step, step) == 0 &&
            (p->instance == inst || (p->instance && inst && strcmp(p->instance, inst) == 0)))
            return p;
    }
    return NULL;
}

static int on_prompt(irp_runlog *L, irp_runlog_step *st, irp_runlog_instance *in,
                     const irp_runlog_event *e)
{
    const char *inst = e->instance;
    if (e->kind == IRP_RUNLOG_EV_STEP_PROMPTED) {
        irp_runlog_prompt *p = push(&L->prompts, &L->n_prompts, &L->cap_prompts, sizeof *p);
        if (!p)
            return IRP_ENOMEM;
        p->step = st->id;
        p->instance = inst;
        p->asked = e->line;
        p->asked_ms = e->ts_ms;
        p->answered_ms = -1;
        if (in)
            in->state = IRP_ST_AWAITING_INPUT;
        else
            st->state = IRP_ST_AWAITING_INPUT;
        return 0;
    }
    irp_runlog_prompt *p = open_prompt(L, st->id, inst);
    if (p) {
        p->answered = e->line;
        p->answered_ms = e->ts_ms;
    }
    /* A manual step's question is asked inside its attempt: answered, the
     * attempt goes on until its step.finished. */
    bool in_attempt = in && in->n_attempts && in->attempts[in->n_attempts - 1].began &&
                      !in->attempts[in->n_attempts - 1].ended;
    if (in && in->state == IRP_ST_AWAITING_INPUT)
        in->state = in_attempt ? IRP_ST_RUNNING : IRP_ST_WAITING;
    else if (!in && st->state == IRP_ST_AWAITING_INPUT)
        st->state = IRP_ST_WAITING;
    return add_operator(L, e->op, IRP_RUNLOG_ANSWERED);
}

static int64_t int_or(irp_runlog_int v, int64_t dflt)
{
    return v.set ? v.v : dflt;
}

static int on_attempt(irp_runlog *L, irp_runlog_instance *in, const irp_runlog_event *e)
{
    irp_runlog_attempt *a = attempt_of(L, in, int_or(e->attempt, 1));
    int64_t ts = e->ts_ms;
    if (!a)
        return IRP_ENOMEM;
    if (e->kind == IRP_RUNLOG_EV_STEP_STARTED) {
        a->began = true;
        a->started = L->fed ? NULL : e->line;
        a->started_ms = ts;
        in->state = IRP_ST_RUNNING;
        if (in->started_ms < 0)
            in->started_ms = ts;
        in->finished_ms = -1;
    } else if (e->kind == IRP_RUNLOG_EV_STEP_SPAWNED) {
        a->pid = int_or(e->pid, 0);
    } else {   /* step.finished */
        a->ended = true;
        a->finished = L->fed ? NULL : e->line;
        a->finished_ms = ts;
        a->status = e->status;
        a->duration_ms = int_or(e->duration_ms, -1);
        a->exit_code = int_or(e->exit_code, -1);
        a->signal = int_or(e->signal, 0);
        a->error = keep_str(L, e->error);
        if (parse_state(a->status, &in->state) == 0) {
            a->status = irp_state_name(in->state);   /* the same text, static */
        } else {
            in->state = IRP_ST_FAILED;
            a->status = keep_str(L, a->status);
        }
        in->finished_ms = ts;
    }
    return 0;
}

static int on_step_event(irp_runlog *L, const irp_runlog_event *e)
{
    const char *sid = e->step;
    irp_runlog_kind k = e->kind;
    int64_t ts = e->ts_ms;
    if (!sid)
        return 0;
    /* The engine says which step it is: checked, as a hint should be. */
    long hint = e->step_index;
    irp_runlog_step *st = hint >= 0 && (size_t)hint < L->n_steps &&
                                  strcmp(L->steps[hint].id, sid) == 0
                              ? &L->steps[hint]
                              : step_of(L, sid);
    if (!st)
        return IRP_ENOMEM;
    if (k == IRP_RUNLOG_EV_STEP_EXPANDED)
        return expand(L, st, json_object_get(e->line, "items"));
    const char *iid = e->instance;
    irp_runlog_instance *in = iid ? inst_of(L, st, iid) : NULL;
    if (iid && !in)
        return IRP_ENOMEM;
    if (k == IRP_RUNLOG_EV_STEP_PROMPTED || k == IRP_RUNLOG_EV_STEP_ANSWERED)
        return on_prompt(L, st, in, e);
    bool skipped = k == IRP_RUNLOG_EV_STEP_SKIPPED;
    bool cancelled = k == IRP_RUNLOG_EV_STEP_CANCELLED;
    if (in) {
        if (k == IRP_RUNLOG_EV_STEP_STARTED || k == IRP_RUNLOG_EV_STEP_SPAWNED ||
            k == IRP_RUNLOG_EV_STEP_FINISHED) {
            if (on_attempt(L, in, e))
                return IRP_ENOMEM;
        } else if (k == IRP_RUNLOG_EV_STEP_RETRYING || k == IRP_RUNLOG_EV_STEP_WAITING) {
            in->state = IRP_ST_WAITING;
            in->finished_ms = -1;
        } else if (skipped || cancelled) {
            in->state = skipped ? IRP_ST_SKIPPED : IRP_ST_CANCELLED;
            in->reason = keep_str(L, e->reason);
            in->finished_ms = ts;
        }
        if (st->started_ms < 0 && k == IRP_RUNLOG_EV_STEP_STARTED)
            st->started_ms = ts;
        return 0;
    }
    /* An event for the whole step: it ended without (more) instances. */
    if (skipped || cancelled || k == IRP_RUNLOG_EV_STEP_FINISHED) {
        irp_state s = IRP_ST_FAILED;
        if (skipped || cancelled)
            s = skipped ? IRP_ST_SKIPPED : IRP_ST_CANCELLED;
        else
            parse_state(e->status, &s);
        st->state = s;
        st->reason = keep_str(L, skipped || cancelled ? e->reason : e->error);
        st->finished_ms = ts;
        st->ended_as_whole = true;
    } else if (k == IRP_RUNLOG_EV_STEP_WAITING && !irp_state_ended(st->state)) {
        st->state = IRP_ST_WAITING;
    }
    return 0;
}

/* A step's state from its instances, as the engine aggregates them. */
static void settle_step(irp_runlog_step *st)
{
    if (st->ended_as_whole || st->n_insts == 0)
        return;
    bool all_ended = true, any_run = false, any_ask = false, any_wait = false;
    bool any_fail = false, any_ok = false, any_cancel = false, any_int = false;
    int64_t last = -1;
    for (size_t i = 0; i < st->n_insts; i++) {
        const irp_runlog_instance *in = &st->insts[i];
        irp_state s = in->state;
        all_ended &= irp_state_ended(s);
        any_run |= s == IRP_ST_RUNNING;
        any_ask |= s == IRP_ST_AWAITING_INPUT;
        any_wait |= s == IRP_ST_WAITING || irp_state_ended(s);
        any_fail |= s == IRP_ST_FAILED || s == IRP_ST_TIMED_OUT;
        any_ok |= s == IRP_ST_SUCCEEDED;
        any_cancel |= s == IRP_ST_CANCELLED;
        any_int |= s == IRP_ST_INTERRUPTED;
        if (in->finished_ms > last)
            last = in->finished_ms;
    }
    if (!all_ended) {
        st->state = any_run ? IRP_ST_RUNNING : any_ask ? IRP_ST_AWAITING_INPUT
                    : any_wait ? IRP_ST_WAITING : st->state;
        return;
    }
    st->finished_ms = last;
    if (!st->has_for_each)
        st->state = st->insts[0].state;
    else
        st->state = any_fail ? IRP_ST_FAILED : any_int ? IRP_ST_INTERRUPTED
                    : any_ok ? IRP_ST_SUCCEEDED : any_cancel ? IRP_ST_CANCELLED
                    : IRP_ST_SKIPPED;
}

/* run.resumed: instances started without a finish are interrupted; those
 * resume runs again wait for their new attempt. */
static void on_resumed(irp_runlog *L, const json_t *ev)
{
    static const char *const keys[] = { "interrupted", "rerun" };
    for (size_t k = 0; k < 2; k++) {
        const json_t *list = json_object_get(ev, keys[k]);
        for (size_t i = 0; i < json_array_size(list); i++) {
            const char *id = json_string_value(json_array_get(list, i));
            if (!id)
                continue;
            /* The step's id is the instance's up to its '['. */
            char sid[512];
            snprintf(sid, sizeof sid, "%.*s", (int)strcspn(id, "["), id);
            irp_runlog_step *st = find_step(L, sid);
            long n = st ? inst_find(st, id) : -1;
            if (n >= 0)
                st->insts[n].state = k ? IRP_ST_WAITING : IRP_ST_INTERRUPTED;
        }
    }
    L->status = NULL;
    L->finished_ms = -1;
    L->counts = NULL;
}

static void set_tlp_label(irp_runlog *L, const char *tlp)
{
    snprintf(L->tlp_label, sizeof L->tlp_label, "TLP:AMBER");
    if (!tlp || !*tlp || strlen(tlp) > 20)
        return;
    char up[24];
    size_t i = 0;
    for (; tlp[i]; i++)
        up[i] = (tlp[i] >= 'a' && tlp[i] <= 'z') ? (char)(tlp[i] - 32) : tlp[i];
    up[i] = '\0';
    snprintf(L->tlp_label, sizeof L->tlp_label, "TLP:%s", up);
}

static int on_run_started(irp_runlog *L, const json_t *ev, int64_t ts)
{
    if (L->started)
        return 0;
    L->started = ev;
    L->run_id = str_of(ev, "run_id");
    L->mode = str_of(ev, "mode");
    L->operator_name = str_of(ev, "operator");
    L->host = str_of(ev, "host");
    L->irp_version = str_of(ev, "irp_version");
    const json_t *pb = json_object_get(ev, "playbook");
    L->pb_id = str_of(pb, "id");
    L->pb_title = str_of(pb, "title");
    L->pb_tlp = str_of(pb, "tlp");
    L->pb_sha256 = str_of(pb, "sha256");
    set_tlp_label(L, L->pb_tlp);
    L->inputs = json_object_get(ev, "inputs");
    L->started_ms = ts;
    L->detected_ms = time_of(ev, "detected_at");
    const json_t *dl = json_object_get(ev, "deadlines");
    for (size_t i = 0; i < json_array_size(dl); i++)
        if (deadline_declared(L, json_array_get(dl, i)))
            return IRP_ENOMEM;
    return add_operator(L, L->operator_name, IRP_RUNLOG_STARTED);
}

static irp_runlog_kind kind_of(const char *name)
{
    static const struct { const char *name; irp_runlog_kind kind; } step[] = {
        { "started", IRP_RUNLOG_EV_STEP_STARTED },     { "finished", IRP_RUNLOG_EV_STEP_FINISHED },
        { "spawned", IRP_RUNLOG_EV_STEP_SPAWNED },     { "skipped", IRP_RUNLOG_EV_STEP_SKIPPED },
        { "cancelled", IRP_RUNLOG_EV_STEP_CANCELLED }, { "retrying", IRP_RUNLOG_EV_STEP_RETRYING },
        { "waiting", IRP_RUNLOG_EV_STEP_WAITING },     { "expanded", IRP_RUNLOG_EV_STEP_EXPANDED },
        { "prompted", IRP_RUNLOG_EV_STEP_PROMPTED },   { "answered", IRP_RUNLOG_EV_STEP_ANSWERED },
    };
    if (!name)
        return IRP_RUNLOG_EV_NONE;
    if (strncmp(name, "step.", 5) == 0) {
        for (size_t i = 0; i < sizeof step / sizeof *step; i++)
            if (strcmp(name + 5, step[i].name) == 0)
                return step[i].kind;
        return IRP_RUNLOG_EV_STEP_OTHER;
    }
    if (strncmp(name, "deadline.", 9) == 0)
        return IRP_RUNLOG_EV_DEADLINE;
    if (strncmp(name, "run.", 4) == 0) {
        return strcmp(name, "run.started") == 0       ? IRP_RUNLOG_EV_RUN_STARTED
               : strcmp(name, "run.finished") == 0    ? IRP_RUNLOG_EV_RUN_FINISHED
               : strcmp(name, "run.resumed") == 0     ? IRP_RUNLOG_EV_RUN_RESUMED
               : strcmp(name, "run.interrupted") == 0 ? IRP_RUNLOG_EV_RUN_INTERRUPTED
                                                      : IRP_RUNLOG_EV_RUN_OTHER;
    }
    return strcmp(name, "note") == 0                 ? IRP_RUNLOG_EV_NOTE
           : strcmp(name, "evidence.collected") == 0 ? IRP_RUNLOG_EV_EVIDENCE
           : strcmp(name, "notify.sent") == 0        ? IRP_RUNLOG_EV_NOTIFY
                                                     : IRP_RUNLOG_EV_OTHER;
}

/* Whether key k of n bytes is the literal (a constant-size compare the
 * compiler inlines: every field of every line is matched). */
#define KEY_IS(k, n, lit) ((n) == sizeof(lit) - 1 && memcmp((k), (lit), sizeof(lit) - 1) == 0)

/* A member's value, from a JSON object or from fields. */
typedef struct fval {
    irp_event_ftype type;
    const char *s;
    int64_t i;
    const json_t *j;
} fval;

static const char *fv_str(const fval *v)
{
    return v->type == IRP_EVF_STR ? v->s : v->type == IRP_EVF_JSON ? json_string_value(v->j)
                                                                   : NULL;
}

static irp_runlog_int fv_int(const fval *v)
{
    if (v->type == IRP_EVF_INT)
        return (irp_runlog_int){ true, v->i };
    if (v->type == IRP_EVF_JSON && json_is_integer(v->j))
        return (irp_runlog_int){ true, (int64_t)json_integer_value(v->j) };
    return (irp_runlog_int){ false, 0 };
}

/* One field of a line into *e, if it is one irp_runlog_event holds. */
static void read_field(irp_runlog_event *e, const char *k, size_t n, const fval *v)
{
    switch (k[0]) {
    case 'a':
        if (KEY_IS(k, n, "attempt"))
            e->attempt = fv_int(v);
        else if (KEY_IS(k, n, "action"))
            e->action = v->type == IRP_EVF_JSON ? v->j : NULL;
        break;
    case 'c':
        if (KEY_IS(k, n, "collector"))
            e->collector = fv_str(v);
        break;
    case 'd':
        if (KEY_IS(k, n, "duration_ms"))
            e->duration_ms = fv_int(v);
        else if (KEY_IS(k, n, "delay_ms"))
            e->delay_ms = fv_int(v);
        break;
    case 'e':
        if (KEY_IS(k, n, "event"))
            e->name = fv_str(v);
        else if (KEY_IS(k, n, "error"))
            e->error = fv_str(v);
        else if (KEY_IS(k, n, "exit_code"))
            e->exit_code = fv_int(v);
        break;
    case 'i':
        if (KEY_IS(k, n, "instance"))
            e->instance = fv_str(v);
        break;
    case 'n':
        if (KEY_IS(k, n, "next_attempt"))
            e->next_attempt = fv_int(v);
        break;
    case 'o':
        if (KEY_IS(k, n, "operator"))
            e->op = fv_str(v);
        break;
    case 'p':
        if (KEY_IS(k, n, "pid"))
            e->pid = fv_int(v);
        break;
    case 'r':
        if (KEY_IS(k, n, "reason"))
            e->reason = fv_str(v);
        break;
    case 's':
        if (KEY_IS(k, n, "step"))
            e->step = fv_str(v);
        else if (KEY_IS(k, n, "status"))
            e->status = fv_str(v);
        else if (KEY_IS(k, n, "signal"))
            e->signal = fv_int(v);
        break;
    case 't':
        if (KEY_IS(k, n, "ts"))
            e->ts = fv_str(v);
        break;
    default:
        break;
    }
}

/* The kind, and ts in ms (parsed once for a burst of lines at one time). */
static void read_done(irp_runlog_ts_memo *memo, irp_runlog_event *e)
{
    e->kind = kind_of(e->name);
    if (!e->ts)
        return;
    if (memo && strcmp(e->ts, memo->text) == 0) {
        e->ts_ms = memo->ms;
        return;
    }
    size_t len = strlen(e->ts);
    int64_t ms;
    e->ts_ms = irp_time_parse(e->ts, len, &ms) == 0 ? ms : -1;
    if (memo && len < sizeof memo->text) {
        memcpy(memo->text, e->ts, len + 1);
        memo->ms = e->ts_ms;
    }
}

void irp_runlog_event_read(const json_t *line, irp_runlog_ts_memo *memo, irp_runlog_event *e)
{
    json_t *o = (json_t *)line;
    *e = (irp_runlog_event){ .line = line, .ts_ms = -1, .step_index = -1 };
    /* One pass over the fields: a lookup by key for each costs more. */
    for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
        fval v = { .type = IRP_EVF_JSON, .j = json_object_iter_value(it) };
        read_field(e, json_object_iter_key(it), json_object_iter_key_len(it), &v);
    }
    read_done(memo, e);
}

void irp_runlog_event_read_fields(const irp_event *ev, irp_runlog_ts_memo *memo,
                                  irp_runlog_event *e)
{
    *e = (irp_runlog_event){ .ts_ms = -1, .step_index = -1 };
    for (size_t i = 0; i < ev->n; i++) {
        const irp_event_field *f = &ev->f[i];
        fval v = { .type = f->type, .s = f->s, .i = f->i, .j = f->j };
        read_field(e, f->key, f->klen ? f->klen : strlen(f->key), &v);
    }
    e->step_index = ev->step_index;
    read_done(memo, e);
}

bool irp_runlog_event_fast(irp_runlog_kind k)
{
    return k == IRP_RUNLOG_EV_STEP_STARTED || k == IRP_RUNLOG_EV_STEP_SPAWNED ||
           k == IRP_RUNLOG_EV_STEP_FINISHED || k == IRP_RUNLOG_EV_STEP_SKIPPED ||
           k == IRP_RUNLOG_EV_STEP_CANCELLED || k == IRP_RUNLOG_EV_STEP_RETRYING;
}

static int replay(irp_runlog *L, const irp_runlog_event *e)
{
    const json_t *ev = e->line;
    int64_t ts = e->ts_ms;
    if (!e->name)
        return 0;
    if (ts >= 0)
        L->last_ms = ts;
    switch (e->kind) {
    case IRP_RUNLOG_EV_STEP_STARTED: case IRP_RUNLOG_EV_STEP_SPAWNED:
    case IRP_RUNLOG_EV_STEP_FINISHED: case IRP_RUNLOG_EV_STEP_SKIPPED:
    case IRP_RUNLOG_EV_STEP_CANCELLED: case IRP_RUNLOG_EV_STEP_RETRYING:
    case IRP_RUNLOG_EV_STEP_WAITING: case IRP_RUNLOG_EV_STEP_EXPANDED:
    case IRP_RUNLOG_EV_STEP_PROMPTED: case IRP_RUNLOG_EV_STEP_ANSWERED:
    case IRP_RUNLOG_EV_STEP_OTHER:
        return on_step_event(L, e);
    case IRP_RUNLOG_EV_DEADLINE:
        return deadline_event(L, e->name, ev, ts);
    case IRP_RUNLOG_EV_RUN_STARTED:
        return on_run_started(L, ev, ts);
    case IRP_RUNLOG_EV_RUN_FINISHED:
        L->status = str_of(ev, "status");
        L->finished_ms = ts;
        L->counts = json_object_get(ev, "steps");
        return 0;
    case IRP_RUNLOG_EV_RUN_RESUMED:
        on_resumed(L, ev);
        if (add_operator(L, e->op, IRP_RUNLOG_RESUMED))
            return IRP_ENOMEM;
        return add_event_ref(&L->resumes, &L->n_resumes, ev);
    case IRP_RUNLOG_EV_RUN_INTERRUPTED:
        return add_event_ref(&L->interrupts, &L->n_interrupts, ev);
    case IRP_RUNLOG_EV_NOTE:
        if (add_operator(L, e->op, IRP_RUNLOG_NOTED))
            return IRP_ENOMEM;
        return add_event_ref(&L->notes, &L->n_notes, ev);
    case IRP_RUNLOG_EV_EVIDENCE:
        return add_event_ref(&L->evidence, &L->n_evidence, ev);
    case IRP_RUNLOG_EV_NOTIFY:
        return add_event_ref(&L->notifications, &L->n_notifications, ev);
    default:
        return 0;
    }
}

/* Steps in the playbook's order, with titles and phases, from the copy in
 * the run directory -- only when it is the file the journal names. */
static int steps_from_playbook(irp_runlog *L, const char *dir, const irp_playbook *given)
{
    char path[4096];
    irp_diag_list diags = IRP_DIAG_LIST_INIT;
    irp_playbook *loaded = NULL;
    int rc = 0;
    if (!given) {
        snprintf(path, sizeof path, "%s/playbook.yaml", dir);
        rc = irp_playbook_load(path, &diags, &loaded);
    }
    const irp_playbook *pb = given ? given : loaded;
    irp_diag_list_release(&diags);
    if (rc == IRP_ENOMEM) {
        irp_playbook_free(loaded);
        return rc;
    }
    /* A fed runlog is given the very playbook the run executes. */
    char sha[IRP_SHA256_HEX] = "";
    if (!rc && pb && !L->fed)
        irp_sha256_hex(pb->src, pb->src_len, sha);
    if (rc || !pb || (!L->fed && (!L->pb_sha256 || strcmp(sha, L->pb_sha256) != 0))) {
        irp_playbook_free(loaded);
        return 0;
    }
    bool indexed = !pb_indexed(L, pb);
    rc = indexed ? index_reserve(&L->step_index, L->n_steps + pb->n_steps) : 0;
    if (!rc && L->cap_steps < L->n_steps + pb->n_steps) {
        irp_runlog_step *p = realloc(L->steps, (L->n_steps + pb->n_steps) * sizeof *p);
        L->steps = p ? p : L->steps;
        L->cap_steps = p ? L->n_steps + pb->n_steps : L->cap_steps;
        rc = p ? 0 : IRP_ENOMEM;
    }
    for (size_t i = 0; i < pb->n_steps && !rc; i++) {
        const irp_step *s = &pb->steps[i];
        /* A fed runlog's playbook outlives it: its ids and titles serve. */
        const char *id = L->fed ? s->id : irp_arena_strdup(&L->strings, s->id);
        const char *title = L->fed ? s->title : irp_arena_strdup(&L->strings, s->title);
        irp_runlog_step *st = id && title ? add_step_as(L, s->id, id, title, indexed) : NULL;
        if (!st) {
            rc = IRP_ENOMEM;
            break;
        }
        st->phase = irp_phase_name(s->phase);
        st->is_finally = s->is_finally;
    }
    L->playbook_loaded = rc == 0;
    irp_playbook_free(loaded);
    return rc;
}

static void settle_prompts(irp_runlog *L)
{
    for (size_t i = 0; i < L->n_prompts; i++) {
        irp_runlog_prompt *p = &L->prompts[i];
        const irp_runlog_step *st = find_step(L, p->step);
        if (!p->answered && st && irp_state_ended(st->state))
            p->withdrawn = true;
    }
}

static int read_dir(const char *dir, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        int rc = irp_err_from_errno(errno);
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return rc;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a run directory", dir);
        return IRP_EINVAL;
    }
    return 0;
}

int irp_runlog_load(const char *run_dir, irp_runlog **out, char *err, size_t errlen)
{
    return irp_runlog_load_pb(run_dir, NULL, out, err, errlen);
}

int irp_runlog_load_pb(const char *run_dir, const irp_playbook *pb, irp_runlog **out,
                       char *err, size_t errlen)
{
    *out = NULL;
    err[0] = '\0';
    int rc = read_dir(run_dir, err, errlen);
    if (rc)
        return rc;
    char path[4096];
    snprintf(path, sizeof path, "%s/journal.jsonl", run_dir);
    if (access(path, F_OK) != 0) {
        snprintf(err, errlen, "%s: no journal.jsonl: not a run directory", run_dir);
        return IRP_ENOENT;
    }
    irp_runlog *L = calloc(1, sizeof *L);
    if (!L)
        return IRP_ENOMEM;
    memset(L->head, '0', 64);
    L->head[64] = '\0';
    L->started_ms = L->detected_ms = L->finished_ms = L->last_ms = L->ts_memo.ms = -1;
    set_tlp_label(L, NULL);
    irp_arena_init(&L->strings, 0);
    reader r = { .log = L };
    char jerr[480] = "";
    rc = irp_journal_read(path, on_line, &r, &L->partial, jerr, sizeof jerr);
    if (rc == IRP_ECORRUPT) {
        snprintf(L->damage, sizeof L->damage, "%s", jerr);
        snprintf(err, errlen, "%s: %s", path, jerr);
    } else if (rc) {
        if (rc == IRP_ELIMIT && !jerr[0])
            snprintf(jerr, sizeof jerr, "more than %zu lines", IRP_RUNLOG_MAX_EVENTS);
        snprintf(err, errlen, "%s: %s", path, jerr[0] ? jerr : irp_strerror(rc));
        irp_runlog_free(L);
        return rc;
    }
    /* run.started first: the playbook copy is checked against its hash. */
    int mrc = 0;
    if (L->n_events && strcmp(str_of(L->events[0], "event") ? str_of(L->events[0], "event") : "",
                              "run.started") == 0)
        mrc = on_run_started(L, L->events[0], time_of(L->events[0], "ts"));
    if (!mrc)
        mrc = steps_from_playbook(L, run_dir, pb);
    for (size_t i = 0; i < L->n_events && !mrc; i++) {
        irp_runlog_event e;
        irp_runlog_event_read(L->events[i], &L->ts_memo, &e);
        mrc = replay(L, &e);
    }
    for (size_t i = 0; i < L->n_steps; i++)
        settle_step(&L->steps[i]);
    settle_prompts(L);
    deadlines_settle(L);
    if (mrc) {
        snprintf(err, errlen, "%s: %s", path, irp_strerror(mrc));
        irp_runlog_free(L);
        return mrc;
    }
    *out = L;
    return rc;
}

/* ---- a runlog fed as the journal is written ------------------------- */

int irp_runlog_new_fed(const irp_playbook *pb, irp_runlog **out)
{
    irp_runlog *L = calloc(1, sizeof *L);

    *out = NULL;
    if (!L)
        return IRP_ENOMEM;
    memset(L->head, '0', 64);
    L->head[64] = '\0';
    L->started_ms = L->detected_ms = L->finished_ms = L->last_ms = L->ts_memo.ms = -1;
    set_tlp_label(L, NULL);
    L->fed = true;
    L->pb = pb;
    irp_arena_init(&L->strings, 0);
    *out = L;
    return 0;
}

/* The step events a fed runlog does not keep: one or more per attempt,
 * so most of a journal.  Every other kind is rare and kept whole. */
static bool dropped_kind(irp_runlog_kind k)
{
    return k >= IRP_RUNLOG_EV_STEP_STARTED && k <= IRP_RUNLOG_EV_STEP_WAITING;
}

static int keep_event(irp_runlog *L, json_t *ev)
{
    if (L->n_kept == L->cap_kept) {
        size_t ncap = L->cap_kept ? L->cap_kept * 2 : 64;
        json_t **p = realloc(L->kept, ncap * sizeof *p);
        if (!p)
            return IRP_ENOMEM;
        L->kept = p;
        L->cap_kept = ncap;
    }
    L->kept[L->n_kept++] = json_incref(ev);
    return 0;
}

int irp_runlog_feed(irp_runlog *L, json_t *line)
{
    irp_runlog_event e;
    irp_runlog_event_read(line, &L->ts_memo, &e);
    return irp_runlog_feed_event(L, line, &e);
}

int irp_runlog_feed_event(irp_runlog *L, json_t *line, const irp_runlog_event *e)
{
    if (L->n_events >= IRP_RUNLOG_MAX_EVENTS)
        return IRP_ELIMIT;
    int rc = dropped_kind(e->kind) ? 0 : keep_event(L, line);
    /* run.started first: steps in the playbook's order, as
     * irp_runlog_load does with the copy in the run directory. */
    if (!rc && L->n_events == 0 && e->kind == IRP_RUNLOG_EV_RUN_STARTED) {
        rc = on_run_started(L, line, e->ts_ms);
        if (!rc)
            rc = steps_from_playbook(L, NULL, L->pb);
    }
    if (!rc)
        rc = replay(L, e);
    L->n_events++;
    return rc;
}

void irp_runlog_settle(irp_runlog *L, const char *head)
{
    snprintf(L->head, sizeof L->head, "%s", head);
    for (size_t i = 0; i < L->n_steps; i++)
        settle_step(&L->steps[i]);
    settle_prompts(L);
    deadlines_settle(L);
}

void irp_runlog_free(irp_runlog *L)
{
    if (!L)
        return;
    /* Instances, attempts and strings are in the arena. */
    for (size_t i = 0; i < L->n_steps; i++)
        if (L->steps[i].inst_index.slots)
            free(L->steps[i].inst_index.slots);
    free(L->steps);
    free(L->step_index.slots);
    free(L->prompts);
    free(L->deadlines);
    free(L->operators);
    free((void *)L->notes);
    free((void *)L->evidence);
    free((void *)L->notifications);
    free((void *)L->resumes);
    free((void *)L->interrupts);
    for (size_t i = 0; L->events && i < L->n_events; i++)
        json_decref(L->events[i]);
    free(L->events);
    for (size_t i = 0; i < L->n_kept; i++)
        json_decref(L->kept[i]);
    free(L->kept);
    irp_arena_release(&L->strings);
    free(L);
}

int irp_runlog_live(const char *run_dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/lock", run_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -1;
    int live = -1;
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        flock(fd, LOCK_UN);
        live = 0;
    } else if (errno == EWOULDBLOCK) {
        live = 1;
    }
    close(fd);
    return live;
}

void irp_runlog_offset(int64_t ms, char *buf, size_t n)
{
    char sign = ms < 0 ? '-' : '+';
    uint64_t a = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
    /* Every timeline row has one: the usual size without snprintf. */
    if (a < 100ull * 3600000 && n >= 16) {
        unsigned f[] = { (unsigned)(a / 3600000), (unsigned)(a / 60000 % 60),
                         (unsigned)(a / 1000 % 60) };
        char *p = buf;
        *p++ = 'T';
        *p++ = sign;
        for (int i = 0; i < 3; i++) {
            *p++ = (char)('0' + f[i] / 10);
            *p++ = (char)('0' + f[i] % 10);
            *p++ = i < 2 ? ':' : '.';
        }
        unsigned m = (unsigned)(a % 1000);
        *p++ = (char)('0' + m / 100);
        *p++ = (char)('0' + m / 10 % 10);
        *p++ = (char)('0' + m % 10);
        *p = '\0';
        return;
    }
    snprintf(buf, n, "T%c%02llu:%02u:%02u.%03u", sign, (unsigned long long)(a / 3600000),
             (unsigned)(a / 60000 % 60), (unsigned)(a / 1000 % 60), (unsigned)(a % 1000));
}
