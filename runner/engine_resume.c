/* irp resume: the engine rebuilt from the journal of an earlier process.
 *
 * The journal is replayed event by event into what each step and each
 * instance had reached; the engine then runs as usual, and wherever it is
 * about to decide or start something the journal already settled, it
 * takes the journal's word instead:
 *   - a step.finished (or a skip for a reason that still holds) ends the
 *     instance as it ended, silently: no instance with a journaled finish
 *     runs again (a failed attempt with retries left is not a finish);
 *   - a for_each list is the one journaled (step.expanded), and answers
 *     given stand;
 *   - a step.started with no finish after it is `interrupted`: its
 *     process group, if still alive, is waited for; then it runs again
 *     if the step is idempotent or with --rerun-interrupted, else only if
 *     the operator says so, else it stays interrupted.
 * Skips because of a need, and cancellations, are not kept: they are
 * decided again from the needs as they now end. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "irp/error.h"
#include "irp/timeutil.h"

#define PROCESS_POLL_MS 100
#define KILL_AFTER_MS 5000

static int64_t ev_time(const json_t *ev, const char *key)
{
    const char *s = json_string_value(json_object_get(ev, key));
    int64_t ms = 0;
    if (s)
        irp_time_parse(s, strlen(s), &ms);
    return ms;
}

static bool state_from(const char *status, irp_state *out)
{
    for (irp_state s = IRP_ST_SUCCEEDED; s <= IRP_ST_INTERRUPTED; s++)
        if (status && strcmp(status, irp_state_name(s)) == 0) {
            *out = s;
            return true;
        }
    return false;
}

restored *engine_restored(irp_engine *e, const char *instance)
{
    json_t *ix = e->restored_ix ? json_object_get(e->restored_ix, instance) : NULL;
    return ix ? &e->recs[json_integer_value(ix)] : NULL;
}

static restored *rec_for(irp_engine *e, const char *instance)
{
    restored *r = engine_restored(e, instance);
    if (r)
        return r;
    if (!e->restored_ix && !(e->restored_ix = json_object()))
        return NULL;
    if (e->n_recs == e->cap_recs) {
        size_t cap = e->cap_recs ? e->cap_recs * 2 : 64;
        restored *v = realloc(e->recs, cap * sizeof *v);
        if (!v)
            return NULL;
        e->recs = v;
        e->cap_recs = cap;
    }
    r = &e->recs[e->n_recs];
    *r = (restored){ .exit_code = -1 };
    if (json_object_set_new(e->restored_ix, instance, json_integer((json_int_t)e->n_recs)))
        return NULL;
    e->n_recs++;
    return r;
}

/* A failed attempt the engine would have retried: not the instance's end. */
static bool retry_due(const irp_step *def, const json_t *ev, int attempt)
{
    const char *err = json_string_value(json_object_get(ev, "error"));
    bool no_retry = err && (strncmp(err, "expression:", 11) == 0 ||
                            strncmp(err, "journal:", 8) == 0 || strncmp(err, "confirm:", 8) == 0);
    return !no_retry && attempt <= def->retries;
}

static void restore_finish(irp_engine *e, const irp_step *def, restored *r, const json_t *ev)
{
    irp_state s = IRP_ST_FAILED;
    state_from(json_string_value(json_object_get(ev, "status")), &s);
    r->in_flight = false;
    r->state = s;
    r->ended = !((s == IRP_ST_FAILED || s == IRP_ST_TIMED_OUT) && retry_due(def, ev, r->attempt));
    json_t *code = json_object_get(ev, "exit_code");
    r->exit_code = json_is_integer(code) ? (int)json_integer_value(code) : -1;
    json_decref(r->outputs);
    r->outputs = json_incref(json_object_get(ev, "outputs"));
    r->finished_wall = ev_time(ev, "ts");
}

/* An event about one instance. */
static int restore_inst(irp_engine *e, const irp_step *def, const char *name,
                        const char *instance, const json_t *ev)
{
    restored *r = rec_for(e, instance);
    if (!r)
        return IRP_ENOMEM;
    int attempt = (int)json_integer_value(json_object_get(ev, "attempt"));
    if (strcmp(name, "step.started") == 0) {
        *r = (restored){ .attempt = attempt, .in_flight = true, .exit_code = -1,
                         .decision = r->decision, .started_wall = ev_time(ev, "ts") };
    } else if (strcmp(name, "step.spawned") == 0) {
        r->pgid = (long)json_integer_value(json_object_get(ev, "pgid"));
    } else if (strcmp(name, "step.finished") == 0) {
        restore_finish(e, def, r, ev);
    } else if (strcmp(name, "step.retrying") == 0) {
        r->ended = false;
    } else if (strcmp(name, "step.skipped") == 0) {
        r->ended = true;
        r->state = IRP_ST_SKIPPED;
    } else if (strcmp(name, "step.cancelled") == 0 && !r->in_flight) {
        r->ended = false;        /* never started: it runs now */
    } else if (strcmp(name, "step.answered") == 0) {
        const char *a = json_string_value(json_object_get(ev, "answer"));
        if (a && (strcmp(a, "yes") == 0 || strcmp(a, "no") == 0))
            r->decision = a[0] == 'y' ? 1 : -1;
    }
    return 0;
}

/* An event about the step as a whole. */
static void restore_step(sstate *st, const char *name, const json_t *ev)
{
    const char *reason = json_string_value(json_object_get(ev, "reason"));
    if (strcmp(name, "step.expanded") == 0) {
        json_decref(st->items_restored);
        st->items_restored = json_incref(json_object_get(ev, "items"));
    } else if (strcmp(name, "step.answered") == 0) {
        const char *a = json_string_value(json_object_get(ev, "answer"));
        if (a && (strcmp(a, "yes") == 0 || strcmp(a, "no") == 0))
            st->restored_decision = a[0] == 'y' ? 1 : -1;
    } else if (strcmp(name, "step.finished") == 0) {
        st->restored_end = true;
        st->restored_state = IRP_ST_FAILED;
    } else if (strcmp(name, "step.skipped") == 0 && reason && strncmp(reason, "needs ", 6) != 0) {
        st->restored_end = true;
        st->restored_state = IRP_ST_SKIPPED;
    }
}

int irp_engine_restore(irp_engine *e, const json_t *ev, char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(ev, "event"));
    if (!name)
        return 0;
    if (strcmp(name, "run.started") == 0) {
        e->started_wall = ev_time(ev, "ts");
        return 0;
    }
    if (strncmp(name, "deadline.", 9) == 0) {
        engine_deadlines_restore(e, name, ev);
        return 0;
    }
    const char *id = json_string_value(json_object_get(ev, "step"));
    if (!id || strncmp(name, "step.", 5) != 0)
        return 0;
    const irp_step *def = irp_playbook_step(e->o.pb, id);
    if (!def) {
        snprintf(err, errlen, "line %lld: step '%s' is not in the run's playbook",
                 (long long)json_integer_value(json_object_get(ev, "seq")), id);
        return IRP_ECORRUPT;
    }
    /* The question whether to re-run an interrupted instance is not a
     * confirmation of the step. */
    if (json_object_get(ev, "about"))
        return 0;
    const char *instance = json_string_value(json_object_get(ev, "instance"));
    if (instance)
        return restore_inst(e, def, name, instance, ev);
    restore_step(&e->steps[def->index], name, ev);
    return 0;
}

static bool rerun_unasked(const irp_engine *e, const irp_step *def)
{
    return def->idempotent || e->o.rerun_interrupted;
}

void engine_resume_lists(irp_engine *e)
{
    e->rs_interrupted = json_array();
    e->rs_rerun = json_array();
    const char *id;
    json_t *ix;
    json_object_foreach(e->restored_ix, id, ix) {
        const restored *r = &e->recs[json_integer_value(ix)];
        if (!r->in_flight)
            continue;
        json_array_append_new(e->rs_interrupted, json_string(id));
        char step[256];
        snprintf(step, sizeof step, "%.*s", (int)strcspn(id, "["), id);
        const irp_step *def = irp_playbook_step(e->o.pb, step);
        if (def && rerun_unasked(e, def))
            json_array_append_new(e->rs_rerun, json_string(id));
    }
}

/* ---- interrupted instances ------------------------------------------- */

static void rerun(irp_engine *e, inst *in, const restored *r)
{
    in->attempt = r->attempt;           /* the next attempt is the one after */
    engine_enqueue(e, in);
}

static void rerun_answered(irp_engine *e, void *arg, int choice, const char *note)
{
    inst *in = arg;
    const restored *r = engine_restored(e, in->id);
    if (choice == 0 && !e->aborting) {
        rerun(e, in, r);
        return;
    }
    if (choice == -1)
        fprintf(stderr, "irp: %s was interrupted and is not idempotent; it was not run again "
                "(irp resume --rerun-interrupted runs it)\n", in->id);
    engine_inst_end(e, in, IRP_ST_INTERRUPTED);
}

static void decide_interrupted(irp_engine *e, inst *in, const restored *r)
{
    static const char *const yes_no[] = { "yes", "no" };
    if (rerun_unasked(e, in->st->def) && !e->aborting) {
        rerun(e, in, r);
        return;
    }
    if (e->aborting) {
        rerun_answered(e, in, -2, NULL);
        return;
    }
    char q[512];
    snprintf(q, sizeof q, "%s was interrupted (started, never finished). Run it again?", in->id);
    in->state = IRP_ST_AWAITING_INPUT;
    engine_ask(e, in->st->def->id, in->id, "rerun", q, yes_no, 2, false, rerun_answered, in);
}

static bool group_alive(long pgid)
{
    return pgid > 0 && (kill((pid_t)-pgid, 0) == 0 || errno == EPERM);
}

/* The interrupted run's process may still be running: wait for its whole
 * group to end before deciding, so an instance never runs twice at once. */
static void poll_group(irp_timer *t)
{
    inst *in = t->data;
    irp_engine *e = inst_engine(in);
    const restored *r = engine_restored(e, in->id);
    if (group_alive(r->pgid)) {
        irp_timer_start(e->o.clock, &in->timer, PROCESS_POLL_MS, poll_group);
        return;
    }
    engine_kill_cancel(in);
    engine_unask(e, in->question);    /* gone by itself: nothing to ask */
    in->question = NULL;
    decide_interrupted(e, in, r);
}

static void kill_group(irp_timer *t)
{
    inst *in = t->data;
    const restored *r = engine_restored(inst_engine(in), in->id);
    kill((pid_t)-r->pgid, SIGKILL);
}

/* The operator may end the old process instead of waiting for it:
 * SIGTERM to its group, SIGKILL 5 s later (as a timeout does). */
static void terminate_answered(irp_engine *e, void *arg, int choice, const char *note)
{
    inst *in = arg;
    in->question = NULL;
    if (choice != 0)
        return;                         /* no, or nobody to ask: wait */
    const restored *r = engine_restored(e, in->id);
    kill((pid_t)-r->pgid, SIGTERM);
    if (!engine_kill_later(e, in, KILL_AFTER_MS, kill_group))
        kill((pid_t)-r->pgid, SIGKILL);     /* no memory to wait with */
}

bool engine_resume_inst(irp_engine *e, inst *in)
{
    restored *r = engine_restored(e, in->id);
    if (!r || (!r->ended && !r->in_flight && !r->attempt))
        return false;
    if (r->started_wall && (!in->st->started_wall || r->started_wall < in->st->started_wall))
        in->st->started_wall = r->started_wall;
    if (r->ended) {
        in->st->n_restored++;
        if (r->finished_wall > in->st->restored_finish)
            in->st->restored_finish = r->finished_wall;
        in->attempt = r->attempt;
        in->exit_code = r->exit_code;
        in->started_wall = r->started_wall;
        if (r->outputs && json_object_size(r->outputs))
            irp_value_from_json(r->outputs, &in->outputs);
        engine_inst_end(e, in, r->state);
        in->finished_wall = r->finished_wall ? r->finished_wall : in->finished_wall;
        return true;
    }
    if (!r->in_flight) {
        rerun(e, in, r);                /* a retry was due */
        return true;
    }
    in->state = IRP_ST_WAITING;
    if (group_alive(r->pgid)) {
        static const char *const yes_no[] = { "yes", "no" };
        fprintf(stderr, "irp: waiting for process group %ld of %s, still running from the "
                "interrupted run\n", r->pgid, in->id);
        in->timer.data = in;
        irp_timer_start(e->o.clock, &in->timer, PROCESS_POLL_MS, poll_group);
        char q[512];
        snprintf(q, sizeof q, "Process group %ld of %s is still running from the interrupted "
                 "run. Terminate it (otherwise irp waits for it)?", r->pgid, in->id);
        in->question = engine_ask(e, in->st->def->id, in->id, "terminate", q, yes_no, 2, false,
                                  terminate_answered, in);
        return true;
    }
    decide_interrupted(e, in, r);
    return true;
}

void engine_resume_free(irp_engine *e)
{
    for (size_t i = 0; i < e->n_recs; i++)
        json_decref(e->recs[i].outputs);
    free(e->recs);
    json_decref(e->restored_ix);
    json_decref(e->rs_interrupted);
    json_decref(e->rs_rerun);
    for (size_t i = 0; i < e->n_steps; i++)
        json_decref(e->steps[i].items_restored);
}
