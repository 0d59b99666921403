/* The engine: ready → waiting → running → ended, for every instance of
 * every step, with each transition journaled before it takes effect. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"
#include "irp/error.h"
#include "irp/event.h"
#include "irp/jsonutil.h"
#include "irp/template.h"
#include "irp/timeutil.h"

#define KILL_GRACE_MS 5000
#define MAX_RETRY_DELAY_MS (3600 * 1000)

static const char *const state_names[] = {
    "pending", "waiting", "awaiting_input", "running", "succeeded", "failed", "timed_out",
    "skipped", "cancelled", "interrupted",
};

const char *irp_state_name(irp_state s) { return state_names[s]; }
bool irp_state_ended(irp_state s) { return s >= IRP_ST_SUCCEEDED; }

static void step_ready(irp_engine *e, sstate *st);
static void retry_busy(irp_engine *e);
static void start_instances(irp_engine *e, sstate *st);
static void inst_end(irp_engine *e, inst *in, irp_state state);
static void enqueue(irp_engine *e, inst *in);
static void start_attempt(irp_engine *e, inst *in);

/* ---- events --------------------------------------------------------- */

static json_t *time_json(int64_t ms)
{
    char buf[IRP_TIME_BUFSZ];
    irp_time_format(ms, buf);
    return json_string(buf);
}

/* ms as a journal text json string (a new reference), made again only
 * when it changed since the last call with c: at full speed many events
 * share a millisecond.  The text is ASCII, so jansson need not check it. */
static const char *time_text_of(int64_t ms, time_text *c)
{
    if (c->ms != ms || !c->text[0]) {
        irp_time_format(ms, c->text);
        c->ms = ms;
        json_decref(c->json);
        c->json = NULL;
    }
    return c->text;
}

static json_t *time_json_cached(int64_t ms, time_text *c)
{
    time_text_of(ms, c);
    if (!c->json)
        c->json = json_string_nocheck(c->text);
    return json_incref(c->json);
}

static int64_t real_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *const hot_names[ENGINE_N_HOT_NAMES] = {
    "step.started", "step.finished", "step.skipped", "step.cancelled", "step.retrying",
    "step.spawned", "step.expanded", "step.answered",
};

/* name as a json string (a new reference); the frequent ones are made
 * once per engine. */
static json_t *event_name_json(irp_engine *e, const char *name)
{
    for (size_t i = 0; i < ENGINE_N_HOT_NAMES; i++)
        if (strcmp(name, hot_names[i]) == 0) {
            if (!e->hot_names[i])
                e->hot_names[i] = json_string_nocheck(hot_names[i]);
            return json_incref(e->hot_names[i]);
        }
    return json_string(name);
}

/* n as a json number (a new reference); shared when small, as attempt
 * numbers and exit codes mostly are.  Nothing changes a journaled
 * event's values, so sharing them is safe. */
static json_t *int_json(irp_engine *e, json_int_t n)
{
    if (n < 0 || n >= ENGINE_N_SMALL_INTS)
        return json_integer(n);
    if (!e->small_ints[n])
        e->small_ints[n] = json_integer(n);
    return json_incref(e->small_ints[n]);
}

json_t *engine_event(irp_engine *e, const char *name)
{
    json_t *ev = json_object();
    /* Ends recorded in the engine take this same time (deadlines counted
     * from a step's finish start at its journaled `ts`). */
    e->last_event_wall = irp_clock_wall_ms(e->o.clock);
    json_object_set_new_nocheck(ev, "ts", time_json_cached(e->last_event_wall, &e->ts_text));
    json_object_set_new_nocheck(ev, "wall", time_json_cached(real_wall_ms(), &e->wall_text));
    json_object_set_new_nocheck(ev, "event", event_name_json(e, name));
    return ev;
}

/* The step's id as a json string (a new reference), made once while the
 * step runs: every event of the step names it.  Ids are ASCII (the
 * playbook's id rule). */
static json_t *step_id_json(sstate *st)
{
    if (!st->id_json)
        st->id_json = json_string_nocheck(st->def->id);
    return json_incref(st->id_json);
}

/* Instance ids are ASCII too: a step id, then an index or an item the
 * rule in make_instances allowed; without for_each, the step's id. */
static json_t *inst_id_json(const inst *in)
{
    return in->st->def->has_for_each ? json_string_nocheck(in->id) : step_id_json(in->st);
}

static json_t *inst_event(irp_engine *e, const char *name, const inst *in)
{
    json_t *ev = engine_event(e, name);
    json_object_set_new_nocheck(ev, "step", step_id_json(in->st));
    json_object_set_new_nocheck(ev, "instance", inst_id_json(in));
    json_object_set_new_nocheck(ev, "attempt", int_json(e, in->attempt ? in->attempt : 1));
    return ev;
}

/* Appends ev.  A journal that cannot be written stops the run from
 * starting anything new, `finally` included (exit 4). */
static int emit_event(irp_engine *e, irp_event *ev, uint64_t *seq)
{
    uint64_t s = 0;
    int rc = e->journal_err ? e->journal_err
             : e->o.journal ? irp_journal_append_event(e->o.journal, ev, &s) : 0;
    if (rc && !e->journal_err) {
        e->journal_err = rc;
        e->aborting = true;
        fprintf(stderr, "irp: cannot write the journal: %s; starting nothing new\n",
                irp_strerror(rc));
    }
    json_t *obj = !rc && e->o.on_event ? irp_event_json(ev) : NULL;
    if (obj)
        e->o.on_event(e->o.ctx, obj);
    if (seq)
        *seq = s;
    return rc;
}

/* Appends and frees ev. */
int engine_emit(irp_engine *e, json_t *ev, uint64_t *seq)
{
    irp_event x = IRP_EVENT_OF(ev);
    int rc = emit_event(e, &x, seq);
    json_decref(ev);
    return rc;
}

/* The frequent events of an instance are made as fields, not objects
 * (irp/event.h): ts, wall, event, step, instance and attempt, as
 * inst_event makes them, then up to INST_MORE of the event's own. */
enum { INST_HEAD = 6, INST_MORE = 8 };
typedef struct inst_fields {
    irp_event_field f[INST_HEAD + INST_MORE];
    size_t n;
} inst_fields;

static void field_text(inst_fields *x, const char *key, const char *s)
{
    x->f[x->n++] = IRP_EVF_TEXT(key, s, strlen(s));
}

static void field_num(inst_fields *x, const char *key, int64_t v)
{
    x->f[x->n++] = IRP_EVF_NUM(key, v);
}

static void field_value(inst_fields *x, const char *key, const json_t *v)
{
    x->f[x->n++] = IRP_EVF_VALUE(key, v);
}

/* ts, wall, event and step, as engine_event and step_id_json make them. */
static void step_head(irp_engine *e, inst_fields *x, const char *name, const sstate *st)
{
    e->last_event_wall = irp_clock_wall_ms(e->o.clock);
    x->n = 0;
    field_text(x, "ts", time_text_of(e->last_event_wall, &e->ts_text));
    field_text(x, "wall", time_text_of(real_wall_ms(), &e->wall_text));
    field_text(x, "event", name);
    field_text(x, "step", st->def->id);
}

static void inst_head(irp_engine *e, inst_fields *x, const char *name, const inst *in)
{
    step_head(e, x, name, in->st);
    field_text(x, "instance", in->st->def->has_for_each ? in->id : in->st->def->id);
    field_num(x, "attempt", in->attempt ? in->attempt : 1);
}

static int emit_fields(irp_engine *e, const inst *in, inst_fields *x, uint64_t *seq)
{
    irp_event ev = IRP_EVENT_FIELDS(x->f, x->n);
    ev.step_index = (long)(in->st - e->steps);
    int rc = emit_event(e, &ev, seq);
    irp_event_done(&ev);
    return rc;
}

static const json_t *empty_object(irp_engine *e)
{
    if (!e->empty_object)
        e->empty_object = json_object();
    return e->empty_object;
}

/* ---- helpers -------------------------------------------------------- */

static const irp_executor *executor_of(irp_engine *e, const sstate *st);

/* ---- injects -------------------------------------------------------- */

int irp_engine_emit(irp_engine *e, const char *event, json_t *fields)
{
    json_t *ev = engine_event(e, event);
    json_object_update(ev, fields);
    json_decref(fields);
    return engine_emit(e, ev, NULL);
}

int irp_engine_set_var(irp_engine *e, const char *name, irp_value *v)
{
    if (!e->vars) {
        irp_value_unref(v);
        return IRP_EINVAL;
    }
    return irp_value_map_set(e->vars, name, strlen(name), v);
}

static int force_fail(irp_engine *e, inst *in)
{
    if (irp_state_ended(in->state))
        return 1;
    in->force_fail = true;
    if (in->state == IRP_ST_RUNNING || in->state == IRP_ST_AWAITING_INPUT) {
        in->no_retry = true;
        if (in->job_live)
            executor_of(e, in->st)->cancel(in->job, SIGTERM);
    }
    return 0;
}

int irp_engine_inject_fail(irp_engine *e, const char *id)
{
    char step[256];
    snprintf(step, sizeof step, "%.*s", (int)strcspn(id, "["), id);
    const irp_step *def = irp_playbook_step(e->o.pb, step);
    if (!def)
        return IRP_EINVAL;
    sstate *st = &e->steps[def->index];
    bool whole = strcmp(step, id) == 0;
    if (!st->ready) {
        /* Not started yet: it fails as soon as it starts. */
        if (whole)
            st->force_fail = true;
        else if (!json_object_get(e->force_fail_ids, id))
            json_object_set_new(e->force_fail_ids, id, json_true());
        return 0;
    }
    if (irp_state_ended(st->state))
        return 1;
    int ended = 1;
    for (size_t i = 0; i < st->n; i++)
        if (whole || strcmp(st->insts[i].id, id) == 0)
            ended &= force_fail(e, &st->insts[i]);
    return ended;
}

static const irp_executor *executor_of(irp_engine *e, const sstate *st)
{
    return e->o.executor(st->def->action);
}

static bool is_ok(const sstate *st)
{
    return st->state == IRP_ST_SUCCEEDED ||
           ((st->state == IRP_ST_FAILED || st->state == IRP_ST_TIMED_OUT) &&
            st->def->on_failure == IRP_FAIL_IGNORE);
}

static void queue_push(irp_engine *e, inst *in, bool front)
{
    in->next = NULL;
    if (!e->queue_head) {
        e->queue_head = e->queue_tail = in;
    } else if (front) {
        in->next = e->queue_head;
        e->queue_head = in;
    } else {
        e->queue_tail->next = in;
        e->queue_tail = in;
    }
}

static inst *queue_pop(irp_engine *e)
{
    inst *in = e->queue_head;
    if (in) {
        e->queue_head = in->next;
        if (!e->queue_head)
            e->queue_tail = NULL;
    }
    return in;
}

static void pump(irp_engine *e)
{
    while (e->queue_head && e->running_slots < e->o.jobs) {
        inst *in = queue_pop(e);
        e->running_slots++;
        in->has_slot = true;
        start_attempt(e, in);
    }
}

/* ---- ending --------------------------------------------------------- */

static irp_run_status compute_status(const irp_engine *e)
{
    if (e->interrupted)
        return IRP_RUN_INTERRUPTED;
    /* Stopped because its own record could not be written: not a success,
     * whatever the steps that ran. */
    bool failed = e->storage_err || e->journal_err;
    for (size_t i = 0; i < e->n_steps; i++) {
        const sstate *st = &e->steps[i];
        for (size_t k = 0; k < st->n; k++)
            if (st->insts[k].state == IRP_ST_INTERRUPTED)
                return IRP_RUN_INTERRUPTED;
        if ((st->state == IRP_ST_FAILED || st->state == IRP_ST_TIMED_OUT) &&
            st->def->on_failure != IRP_FAIL_IGNORE)
            failed = true;
    }
    return failed ? IRP_RUN_FAILED : IRP_RUN_SUCCEEDED;
}

irp_run_status irp_engine_status(const irp_engine *e)
{
    if (!e->finished || e->interrupted)
        return compute_status(e);
    /* Its steps no longer change once the run has finished (a walk over
     * all of them is a cache miss each): only a record that could not be
     * written since can still make it fail. */
    if (e->final_status == IRP_RUN_SUCCEEDED && (e->storage_err || e->journal_err))
        return IRP_RUN_FAILED;
    return e->final_status;
}

static void run_end(irp_engine *e)
{
    static const char *const names[] = { "succeeded", "failed", "interrupted" };
    if (e->finished)
        return;
    e->finished = true;
    engine_deadlines_end(e);
    json_t *ev = engine_event(e, "run.finished");
    e->final_status = compute_status(e);
    json_object_set_new_nocheck(ev, "status", json_string(names[e->final_status]));
    /* Steps by state, the states in the order they first occur. */
    enum { N_STATES = sizeof state_names / sizeof *state_names };
    size_t n_in[N_STATES] = { 0 }, n_seen = 0;
    irp_state seen[N_STATES];
    for (size_t i = 0; i < e->n_steps; i++)
        if (n_in[e->steps[i].state]++ == 0)
            seen[n_seen++] = e->steps[i].state;
    json_t *counts = json_object();
    for (size_t i = 0; i < n_seen; i++)
        json_object_set_new_nocheck(counts, irp_state_name(seen[i]),
                                    json_integer((json_int_t)n_in[seen[i]]));
    json_object_set_new_nocheck(ev, "steps", counts);
    engine_emit(e, ev, NULL);
    if (!e->journal_err && e->o.journal) {
        int rc = irp_journal_sync(e->o.journal);
        if (rc)
            e->journal_err = rc;
    }
    uv_stop(e->o.loop);
}

static void start_finally(irp_engine *e)
{
    e->finally_started = true;
    for (size_t i = e->n_main; i < e->n_steps; i++)
        if (e->deps_left[i] == 0 && !e->steps[i].ready)
            step_ready(e, &e->steps[i]);
}

static irp_state aggregate(const sstate *st)
{
    if (!st->def->has_for_each)
        return st->n ? st->insts[0].state : IRP_ST_SKIPPED;
    bool any_ok = false, any_cancel = false, any_int = false;
    for (size_t i = 0; i < st->n; i++) {
        irp_state s = st->insts[i].state;
        if (s == IRP_ST_FAILED || s == IRP_ST_TIMED_OUT)
            return IRP_ST_FAILED;
        any_ok |= s == IRP_ST_SUCCEEDED;
        any_cancel |= s == IRP_ST_CANCELLED;
        any_int |= s == IRP_ST_INTERRUPTED;
    }
    return any_int ? IRP_ST_INTERRUPTED : any_ok ? IRP_ST_SUCCEEDED
           : any_cancel ? IRP_ST_CANCELLED : IRP_ST_SKIPPED;
}

static void abort_run(irp_engine *e);

static void step_end(irp_engine *e, sstate *st, irp_state state)
{
    st->state = state;
    /* Its events are made: a 100,000-step run need not keep every id. */
    json_decref(st->id_json);
    st->id_json = NULL;
    /* A step the journal ended before a resume keeps its own time. */
    st->finished_wall = st->n && st->n_restored == st->n ? st->restored_finish
                                                         : e->last_event_wall;
    engine_deadlines_step_ended(e, st);
    e->total_ended++;
    bool is_main = !st->def->is_finally;
    if (is_main)
        e->main_ended++;
    if ((state == IRP_ST_FAILED || state == IRP_ST_TIMED_OUT) && is_main &&
        st->def->on_failure == IRP_FAIL_ABORT)
        abort_run(e);
    for (size_t i = 0; i < st->n_dependents; i++) {
        size_t k = st->dependents[i];
        if (--e->deps_left[k] == 0 && (!e->steps[k].def->is_finally || e->finally_started))
            step_ready(e, &e->steps[k]);
    }
    if (e->main_ended == e->n_main && !e->finally_started)
        start_finally(e);
    if (e->total_ended == e->n_steps)
        run_end(e);
}

static void inst_end(irp_engine *e, inst *in, irp_state state)
{
    in->state = state;
    in->finished_wall = e->last_event_wall;   /* the ts of its end event */
    sstate *st = in->st;
    if (++st->n_ended == st->n)
        step_end(e, st, aggregate(st));
}

/* ---- skipping and cancelling --------------------------------------- */

/* A whole step that will not run: journal why, then end it. */
/* Made as fields: a run that skips 98,000 steps makes 98,000 of these.
 * A reason that is not UTF-8 is left out, as json_string() would. */
static void end_unrun(irp_engine *e, sstate *st, const char *event, const char *reason,
                      irp_state state)
{
    inst_fields x;
    step_head(e, &x, event, st);
    if (reason && irp_utf8_valid(reason, strlen(reason)))
        field_text(&x, "reason", reason);
    irp_event ev = IRP_EVENT_FIELDS(x.f, x.n);
    ev.step_index = (long)(st - e->steps);
    (void)emit_event(e, &ev, NULL);
    irp_event_done(&ev);
    step_end(e, st, state);
}

static void skip_step(irp_engine *e, sstate *st, const char *reason)
{
    end_unrun(e, st, "step.skipped", reason, IRP_ST_SKIPPED);
}

static void cancel_step(irp_engine *e, sstate *st, const char *reason)
{
    end_unrun(e, st, "step.cancelled", reason, IRP_ST_CANCELLED);
}

static void cancel_inst(irp_engine *e, inst *in, const char *reason)
{
    irp_timer_stop(&in->timer);
    json_t *ev = inst_event(e, "step.cancelled", in);
    json_object_set_new_nocheck(ev, "reason", json_string(reason));
    engine_emit(e, ev, NULL);
    inst_end(e, in, IRP_ST_CANCELLED);
}

/* on_failure: abort (or Ctrl-C): start nothing new but `finally`; queued
 * instances, pending retries and waits are cancelled; processes already
 * running finish. */
static void abort_run(irp_engine *e)
{
    if (e->aborting && !e->interrupted && e->queue_head == NULL)
        return;
    e->aborting = true;
    if (e->open_prompts && e->o.prompter.cancel_all)
        e->o.prompter.cancel_all(e->o.prompter.ctx);
    inst *in;
    while ((in = queue_pop(e)))
        cancel_inst(e, in, "aborted");
    for (size_t i = 0; i < e->n_main; i++) {
        sstate *st = &e->steps[i];
        for (size_t k = 0; k < st->n; k++) {
            inst *x = &st->insts[k];
            if (x->state == IRP_ST_WAITING && irp_timer_active(&x->timer))
                cancel_inst(e, x, "aborted");
            else if (x->state == IRP_ST_RUNNING && st->def->action == IRP_ACT_WAIT &&
                     x->job_live)
                executor_of(e, st)->cancel(x->job, SIGTERM);
        }
    }
}

/* ---- attempts ------------------------------------------------------- */

bool engine_kill_later(irp_engine *e, inst *in, int64_t ms, irp_timer_cb cb)
{
    if (!in->kill_timer && !(in->kill_timer = calloc(1, sizeof *in->kill_timer)))
        return false;
    in->kill_timer->data = in;
    irp_timer_start(e->o.clock, in->kill_timer, ms, cb);
    return true;
}

void engine_kill_cancel(inst *in)
{
    if (in->kill_timer)
        irp_timer_stop(in->kill_timer);
}

static void kill_timeout(irp_timer *t)
{
    inst *in = t->data;
    if (in->job_live)
        executor_of(inst_engine(in), in->st)->cancel(in->job, SIGKILL);
}

/* SIGTERM now, SIGKILL after the grace period (at once if no timer). */
static void terminate(irp_engine *e, inst *in)
{
    executor_of(e, in->st)->cancel(in->job, SIGTERM);
    if (!engine_kill_later(e, in, KILL_GRACE_MS, kill_timeout))
        executor_of(e, in->st)->cancel(in->job, SIGKILL);
}

/* A timeout sends SIGTERM to the process group, then SIGKILL 5 s later. */
static void attempt_timeout(irp_timer *t)
{
    inst *in = t->data;
    irp_engine *e = inst_engine(in);
    in->timed_out = true;
    if (in->job_live)
        terminate(e, in);
}

static void retry_due(irp_timer *t)
{
    inst *in = t->data;
    irp_engine *e = inst_engine(in);
    if (executor_of(e, in->st)->takes_slot) {
        queue_push(e, in, false);
        pump(e);
    } else {
        start_attempt(e, in);
    }
}

static int64_t retry_delay(const irp_step *s, int attempt)
{
    double d = (double)s->retry_delay_ms;
    for (int i = 1; i < attempt && d < MAX_RETRY_DELAY_MS; i++)
        d *= s->retry_backoff;
    return d > MAX_RETRY_DELAY_MS ? MAX_RETRY_DELAY_MS : (int64_t)d;
}

static void release_job(irp_engine *e, inst *in)
{
    if (in->job_live)
        executor_of(e, in->st)->release(in->job);
    in->job_live = false;
}

/* A job for a new attempt, zeroed; NULL when out of memory. */
static ejob *job_get(irp_engine *e)
{
    ejob *j = e->free_jobs;
    if (j)
        e->free_jobs = j->next_free;
    else if (!(j = calloc(1, sizeof *j)))
        return NULL;
    memset(&j->job, 0, sizeof j->job);
    j->next_free = NULL;
    return j;
}

/* Back to the free list, once its attempt has ended and nothing reads it. */
static void job_put(irp_engine *e, ejob *j)
{
    if (j->on_stack)
        return;
    j->next_free = e->free_jobs;
    e->free_jobs = j;
}

/* Appends "." and n in decimal at p; returns the end. */
static char *put_dot_num(char *p, size_t n)
{
    char digits[24];
    size_t k = 0;
    do {
        digits[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    *p++ = '.';
    while (k)
        *p++ = digits[--k];
    return p;
}

/* The attempt's log path, logs/<step>[.<index>].<attempt>.log, in the
 * job's own buffer: kept for the job's next attempt, so a path costs no
 * allocation (nor a printf) per attempt.  false: out of memory. */
static bool job_log_path(irp_engine *e, const inst *in, ejob *j)
{
    static const char logs[] = "/logs/", ext[] = ".log";
    const irp_step *def = in->st->def;
    size_t dir = strlen(e->o.run_dir), id = strlen(def->id);
    size_t need = dir + sizeof logs + id + 2 * 22 + sizeof ext;
    if (need > j->log_cap) {
        char *p = realloc(j->log_path, need);
        if (!p)
            return false;
        j->log_path = p;
        j->log_cap = need;
    }
    char *p = j->log_path;
    memcpy(p, e->o.run_dir, dir);
    p += dir;
    memcpy(p, logs, sizeof logs - 1);
    p += sizeof logs - 1;
    memcpy(p, def->id, id);
    p += id;
    if (def->has_for_each)
        p = put_dot_num(p, inst_index(in));
    p = put_dot_num(p, (size_t)in->attempt);
    memcpy(p, ext, sizeof ext);
    return true;
}

static void attempt_finished(irp_job *job)
{
    inst *in = job->engine_data;
    ejob *ej = (ejob *)job;
    irp_engine *e = inst_engine(in);
    irp_timer_stop(&in->timer);
    engine_kill_cancel(in);
    /* Stopped by a second Ctrl-C: cancelled, not failed (SPEC §1.4). */
    bool stopped = in->stopped_by_user && job->outcome != IRP_JOB_SUCCEEDED;
    irp_state state = job->outcome == IRP_JOB_CANCELLED || stopped ? IRP_ST_CANCELLED
                      : in->timed_out                   ? IRP_ST_TIMED_OUT
                      : job->outcome == IRP_JOB_SUCCEEDED ? IRP_ST_SUCCEEDED
                      : job->outcome == IRP_JOB_SKIPPED   ? IRP_ST_SKIPPED
                                                          : IRP_ST_FAILED;
    irp_value_unref(in->outputs);
    irp_value_unref(in->stdout_v);
    in->outputs = job->outputs;
    in->stdout_v = job->stdout_v;
    job->outputs = job->stdout_v = NULL;
    in->exit_code = job->exit_code;
    if (job->storage_error && !e->storage_err) {
        e->storage_err = job->storage_error;
        e->aborting = true;
        fprintf(stderr, "irp: %s: cannot write the run's files: %s; starting nothing new\n",
                in->id, irp_strerror(job->storage_error));
    }
    inst_fields x;
    inst_head(e, &x, "step.finished", in);
    field_text(&x, "status", irp_state_name(state));
    if (job->exit_code >= 0)
        field_num(&x, "exit_code", job->exit_code);
    if (job->term_signal)
        field_num(&x, "signal", job->term_signal);
    field_num(&x, "duration_ms", irp_clock_now_ms(e->o.clock) - in->started_mono);
    json_t *outputs = in->outputs ? irp_json_map_b64(in->outputs) : NULL;
    field_value(&x, "outputs", outputs ? outputs : empty_object(e));
    if (job->log_sha256[0])
        field_text(&x, "log_sha256", job->log_sha256);
    /* Text that is not UTF-8 has no place in JSON: left out, as a json
     * string would have refused it. */
    if (job->error[0] && irp_utf8_valid(job->error, strlen(job->error)))
        field_text(&x, "error", job->error);
    emit_fields(e, in, &x, NULL);
    json_decref(outputs);
    release_job(e, in);
    if (in->job == job)
        in->job = NULL;
    if (in->has_slot) {
        in->has_slot = false;
        e->running_slots--;
    }
    bool again = (state == IRP_ST_FAILED || state == IRP_ST_TIMED_OUT) && !in->no_retry &&
                 in->attempt <= in->st->def->retries && !e->aborting;
    in->no_retry = false;
    if (again) {
        int64_t delay = retry_delay(in->st->def, in->attempt);
        inst_head(e, &x, "step.retrying", in);
        field_num(&x, "next_attempt", in->attempt + 1);
        field_num(&x, "delay_ms", delay);
        emit_fields(e, in, &x, NULL);
        in->state = IRP_ST_WAITING;
        in->timer.data = in;
        irp_timer_start(e->o.clock, &in->timer, delay, retry_due);
    } else {
        inst_end(e, in, state);
    }
    if (e->busy) {
        retry_busy(e);
    }
    pump(e);
    /* Only now: an attempt started above must not be given this job
     * while the executor that finished it may still be returning. */
    job_put(e, ej);
}

static int attempt_emit(irp_job *job, const char *event, json_t *fields)
{
    inst *in = job->engine_data;
    json_t *ev = inst_event(inst_engine(in), event, in);
    json_object_update(ev, fields);
    json_decref(fields);
    return engine_emit(inst_engine(in), ev, NULL);
}

/* A manual step's answer given in advance: --answers, else --auto. */
static void preset_manual(irp_engine *e, inst *in, irp_job *j)
{
    const irp_step *def = in->st->def;
    const irp_answer *a = irp_answers_find(e->o.answers, in->id, def->id);
    if (a && a->answer) {
        j->preset_answer = a->answer;
        j->preset_note = a->note;
        j->preset_via = "answers-file";
    } else if (e->o.auto_answer) {
        j->preset_answer = def->sim.answer ? def->sim.answer : def->act.manual->choices[0];
        j->preset_via = "--auto";
    }
}

static void job_answered(irp_engine *e, void *arg, int choice, const char *note)
{
    inst *in = arg;
    in->question = NULL;
    if (!in->job)
        return;                   /* its attempt is over */
    if (in->state == IRP_ST_AWAITING_INPUT)
        in->state = IRP_ST_RUNNING;
    in->answer_cb(in->job, choice, note);
}

static void job_ask(irp_job *job, const char *prompt, const char *const *choices, size_t n,
                    void (*cb)(irp_job *job, int choice, const char *note))
{
    inst *in = job->engine_data;
    in->answer_cb = cb;
    in->state = IRP_ST_AWAITING_INPUT;
    in->question = engine_ask(inst_engine(in), in->st->def->id, in->id, "manual", prompt, choices,
                              n, true, job_answered, in);
}

static void job_unask(irp_job *job)
{
    inst *in = job->engine_data;
    engine_unask(inst_engine(in), in->question);
    in->question = NULL;
    if (in->state == IRP_ST_AWAITING_INPUT)
        in->state = IRP_ST_RUNNING;
}

static void attempt_spawned(irp_job *job, pid_t pid)
{
    inst *in = job->engine_data;
    json_t *ev = inst_event(inst_engine(in), "step.spawned", in);
    json_object_set_new_nocheck(ev, "pid", json_integer(pid));
    json_object_set_new_nocheck(ev, "pgid", json_integer(pid));
    engine_emit(inst_engine(in), ev, NULL);
}

/* An attempt that could not even begin (expression error, no slot, a
 * journal that cannot be written) ends at once as failed. */
static void fail_attempt(irp_engine *e, inst *in, const char *reason, const char *msg)
{
    /* Before an attempt has a job, one on the stack carries the failure:
     * failing cannot itself run out of memory. */
    ejob local;
    if (!in->job) {
        /* Nothing started: the attempt took no time (not the clock's
         * whole reading, or the time since an earlier attempt). */
        in->started_mono = irp_clock_now_ms(e->o.clock);
        memset(&local, 0, sizeof local);
        local.on_stack = true;
        in->job = &local.job;
        in->job_live = false;
    }
    in->no_retry = true;
    in->job->engine_data = in;
    in->job->outcome = IRP_JOB_FAILED;
    in->job->exit_code = -1;
    char *err = in->job->error;
    size_t cap = sizeof in->job->error;
    /* A message too long is cut short; cut inside a UTF-8 sequence, the
     * journal would leave the whole error out, so that is cut too. */
    if (snprintf(err, cap, "%s: %s", reason, msg) >= (int)cap)
        for (size_t len = cap - 1; len > cap - 4 && !irp_utf8_valid(err, len); len--)
            err[len - 1] = '\0';
    attempt_finished(in->job);
}

static bool start_prepared(irp_engine *e, inst *in, bool retrying);

static void started_durable(void *arg, int status)
{
    inst *in = arg;
    irp_engine *e = inst_engine(in);
    irp_clock_release(e->o.clock);
    if (status) {
        e->journal_err = status;
        e->aborting = true;
        fail_attempt(e, in, "journal", irp_strerror(status));
        return;
    }
    /* An abort or Ctrl-C that came while step.started was being written:
     * a wait is cancelled before it begins (a process already promised in
     * the journal still starts, and a second Ctrl-C stops it below). */
    if (e->aborting && !in->st->def->is_finally && in->st->def->action == IRP_ACT_WAIT) {
        in->job->outcome = IRP_JOB_CANCELLED;
        attempt_finished(in->job);
        return;
    }
    start_prepared(e, in, false);
}

/* Out of descriptors or processes: the attempt, already journaled, waits
 * for another child to end and is started then, without a second
 * step.started. */
static void busy_add(irp_engine *e, inst *in, bool front)
{
    in->next = NULL;
    if (!e->busy) {
        e->busy = e->busy_tail = in;
    } else if (front) {
        in->next = e->busy;
        e->busy = in;
    } else {
        e->busy_tail->next = in;
        e->busy_tail = in;
    }
    e->n_busy++;
}

/* A child ended, so descriptors came back: start the waiting attempts in
 * the order they came, until one finds none again (the rest would too:
 * trying them all at every end would cost a system call per waiting
 * attempt per end). */
static void retry_busy(irp_engine *e)
{
    while (e->busy) {
        inst *in = e->busy;
        e->busy = in->next;
        if (!e->busy)
            e->busy_tail = NULL;
        e->n_busy--;
        if (start_prepared(e, in, true))
            break;
    }
}

/* true: out of descriptors again, and it waits (first in line when it
 * was already waiting). */
static bool start_prepared(irp_engine *e, inst *in, bool retrying)
{
    const irp_executor *x = executor_of(e, in->st);
    int rc = x->start(in->job);
    if (rc == IRP_EBUSY && e->running_slots > e->n_busy + 1) {
        busy_add(e, in, retrying);
        return true;
    }
    if (rc) {
        fail_attempt(e, in, "start", rc == IRP_EBUSY ? "out of file descriptors or processes"
                                                     : irp_strerror(rc));
        return false;
    }
    if (e->kill_sent && in->job_live) {
        in->stopped_by_user = true;
        x->cancel(in->job, SIGTERM);
    }
    if (in->st->def->timeout_ms >= 0 && in->st->def->action != IRP_ACT_WAIT &&
        (in->state == IRP_ST_RUNNING || in->state == IRP_ST_AWAITING_INPUT) && in->job_live) {
        in->timer.data = in;
        irp_timer_start(e->o.clock, &in->timer, in->st->def->timeout_ms, attempt_timeout);
    }
    return false;
}

static void start_attempt(irp_engine *e, inst *in)
{
    const irp_step *def = in->st->def;
    if (in->force_fail || in->st->force_fail ||
        (json_object_size(e->force_fail_ids) && json_object_get(e->force_fail_ids, in->id))) {
        in->attempt++;
        in->state = IRP_ST_RUNNING;
        in->job_live = false;
        fail_attempt(e, in, "inject", "failed by the scenario");
        return;
    }
    in->attempt++;
    in->timed_out = false;
    in->state = IRP_ST_RUNNING;
    in->st->state = IRP_ST_RUNNING;
    if (!in->st->started_wall)
        in->st->started_wall = irp_clock_wall_ms(e->o.clock);
    in->started_wall = irp_clock_wall_ms(e->o.clock);
    in->started_mono = irp_clock_now_ms(e->o.clock);
    ejob *ej = job_get(e);
    if (!ej || !job_log_path(e, in, ej)) {
        if (ej)
            job_put(e, ej);
        fail_attempt(e, in, "internal", "out of memory");
        return;
    }
    in->job = &ej->job;
    ej->sctx = (struct scope_ctx){ e, in };
    ej->scope = (irp_scope){ engine_lookup, &ej->sctx };
    irp_job *j = &ej->job;
    *j = (irp_job){
        .step = def, .instance = in->id, .index = inst_index(in), .has_index = def->has_for_each,
        .attempt = in->attempt, .scope = &ej->scope, .loop = e->o.loop, .clock = e->o.clock,
        .run_id = e->o.run_id, .run_dir = e->o.run_dir, .log_path = ej->log_path,
        .base_env = e->o.base_env, .redact = e->o.redact, .exit_code = -1,
        .operator_name = e->o.operator_name, .on_finish = attempt_finished,
        .on_spawn = attempt_spawned, .emit = attempt_emit, .ask = job_ask,
        .unask = job_unask, .engine_data = in,
    };
    j->seed = e->o.seed;
    j->auto_answer = e->o.auto_answer;
    if (def->action == IRP_ACT_MANUAL)
        preset_manual(e, in, j);
    const irp_executor *x = executor_of(e, in->st);
    json_t *action = NULL;
    char err[256] = "";
    in->job_live = true;
    int rc = x->prepare(j, &action, err, sizeof err);
    if (rc) {
        json_decref(action);
        fail_attempt(e, in, "expression", err[0] ? err : irp_strerror(rc));
        return;
    }
    inst_fields f;
    inst_head(e, &f, "step.started", in);
    field_value(&f, "action", action ? action : empty_object(e));
    uint64_t seq = 0;
    int erc = emit_fields(e, in, &f, &seq);
    json_decref(action);
    if (erc) {
        fail_attempt(e, in, "journal", irp_strerror(e->journal_err));
        return;
    }
    /* The action starts only once step.started is on disk. */
    irp_clock_hold(e->o.clock);
    /* irp check writes no journal, and with fsync off (a simulation,
     * --no-fsync) a written line is as durable as it gets: nothing to
     * wait for, and a trip through the thread pool would cost more than
     * a simulated step. */
    if (!e->o.journal || irp_journal_is_durable(e->o.journal, seq)) {
        started_durable(in, 0);
        return;
    }
    /* A command alone -- no other child running, none waiting to start
     * -- leaves the loop nothing to do while the fsync runs: run it here.
     * The pool's two thread hand-offs took longer than the fsync itself
     * on a busy 2-CPU machine, once per step of a chain.  With others
     * about, the pool lets their output flow and their step.started
     * share the fsync; other actions keep the order they always had. */
    if (in->has_slot && e->running_slots == 1 && !e->queue_head) {
        int src = irp_journal_sync(e->o.journal);
        uv_update_time(e->o.loop);   /* timers set from here count from after it */
        started_durable(in, src);
        return;
    }
    rc = irp_journal_sync_async(e->o.journal, e->o.loop, seq, started_durable, in);
    if (rc)
        started_durable(in, rc);     /* which releases the clock */
}

/* ---- readiness ------------------------------------------------------ */

static const char *unmet_need(irp_engine *e, const sstate *st, char *buf, size_t len)
{
    for (size_t i = 0; i < st->def->n_deps; i++) {
        const sstate *d = &e->steps[st->def->deps[i]];
        if (!is_ok(d)) {
            snprintf(buf, len, "needs %s, which %s", d->def->id,
                     d->state == IRP_ST_SKIPPED ? "was skipped" : irp_state_name(d->state));
            return buf;
        }
    }
    return NULL;
}

static int make_instances(irp_engine *e, sstate *st, irp_value *items)
{
    size_t n = items ? irp_value_list_len(items) : 1;
    /* From the engine's arena: instances live as long as the engine, and
     * a malloc per step among the many small frees of a run's events
     * made glibc consolidate its free lists over and over. */
    st->insts = irp_arena_alloc(&e->mem, (n ? n : 1) * sizeof *st->insts);
    if (!st->insts)
        return IRP_ENOMEM;
    st->n = n;
    /* ID[item] when every item is a distinct short plain string, else
     * ID[index] (SPEC §1.3). */
    bool by_item = items != NULL;
    for (size_t i = 0; items && i < n && by_item; i++) {
        const irp_value *v = irp_value_list_at(items, i);
        size_t len;
        const char *s = irp_value_type_of(v) == IRP_VALUE_STRING ? irp_value_string(v, &len) : NULL;
        by_item = s && len >= 1 && len <= 64 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                  "abcdefghijklmnopqrstuvwxyz0123456789._:@-") == len;
        for (size_t k = 0; by_item && k < i; k++)
            by_item = !irp_value_equal(v, irp_value_list_at(items, k));
    }
    for (size_t i = 0; i < n; i++) {
        inst *in = &st->insts[i];
        in->st = st;
        in->exit_code = -1;
        if (!items) {
            in->id = st->def->id;
        } else {
            in->item = irp_value_ref(irp_value_list_at(items, i));
            if (by_item)
                in->id = irp_arena_printf(&e->mem, "%s[%s]", st->def->id,
                                          irp_value_string(in->item, NULL));
            else
                in->id = irp_arena_printf(&e->mem, "%s[%zu]", st->def->id, i);
        }
        if (!in->id)
            return IRP_ENOMEM;
    }
    return 0;
}

/* The for_each list, journaled as step.expanded. */
static int expand(irp_engine *e, sstate *st, irp_value **items, char *err, size_t errlen)
{
    const irp_step *def = st->def;
    *items = NULL;
    if (!def->has_for_each)
        return 0;
    irp_value *list = NULL;
    int rc;
    if (st->items_restored) {
        /* irp resume: the list as journaled, not evaluated again. */
        rc = irp_value_from_json(st->items_restored, items);
        if (rc)
            snprintf(err, errlen, "the journaled for_each list: %s", irp_strerror(rc));
        return rc;
    }
    if (def->for_each_is_list) {
        list = irp_value_new_list();
        rc = list ? 0 : IRP_ENOMEM;
        for (size_t i = 0; !rc && i < def->rare->n_for_each_items; i++) {
            irp_value *v = NULL;
            rc = irp_render_str(&def->rare->for_each_items[i], &e->run_scope, &v, err, errlen);
            if (!rc)
                rc = irp_value_list_append(list, v);
        }
    } else {
        rc = irp_render_str(&def->rare->for_each_expr, &e->run_scope, &list, err, errlen);
        if (!rc && irp_value_type_of(list) != IRP_VALUE_LIST) {
            snprintf(err, errlen, "for_each gave a %s, not a list",
                     irp_value_type_name(irp_value_type_of(list)));
            rc = IRP_ETYPE;
        }
    }
    if (rc) {
        irp_value_unref(list);
        return rc;
    }
    json_t *ev = engine_event(e, "step.expanded");
    json_object_set_new_nocheck(ev, "step", step_id_json(st));
    json_object_set_new_nocheck(ev, "items", irp_value_to_json(list, IRP_VALUE_JSON_REDACT));
    engine_emit(e, ev, NULL);
    *items = list;
    return 0;
}

/* 1 run it, 0 skip it, <0 expression error (message in err). */
static int when_true(irp_engine *e, inst *in, char *err, size_t errlen)
{
    const irp_step *def = in->st->def;
    if (def->when_kind == IRP_WHEN_TRUE || def->when_kind == IRP_WHEN_DEFAULT)
        return 1;
    if (def->when_kind == IRP_WHEN_FALSE)
        return 0;
    irp_value *v = NULL;
    irp_expr_error x = { 0 };
    struct scope_ctx sc = { e, in };
    irp_scope scope = { engine_lookup, &sc };
    int rc = irp_expr_eval(def->when, &scope, &v, &x);
    if (!rc && irp_value_type_of(v) != IRP_VALUE_BOOL) {
        snprintf(x.msg, sizeof x.msg, "when gave a %s, not true or false",
                 irp_value_type_name(irp_value_type_of(v)));
        rc = IRP_ETYPE;
    }
    if (rc) {
        snprintf(err, errlen, "%s", x.msg[0] ? x.msg : irp_strerror(rc));
        irp_value_unref(v);
        return rc;
    }
    rc = irp_value_bool(v);
    irp_value_unref(v);
    return rc;
}

void engine_inst_end(irp_engine *e, inst *in, irp_state state)
{
    inst_end(e, in, state);
}

void engine_enqueue(irp_engine *e, inst *in)
{
    enqueue(e, in);
}

static void enqueue(irp_engine *e, inst *in)
{
    in->state = IRP_ST_WAITING;
    if (in->st->state == IRP_ST_PENDING)
        in->st->state = IRP_ST_WAITING;
    if (executor_of(e, in->st)->takes_slot) {
        queue_push(e, in, false);
        pump(e);
    } else {
        start_attempt(e, in);
    }
}

static void journal_answer(irp_engine *e, sstate *st, const inst *in, bool yes,
                           const char *via, const char *note, int64_t ms)
{
    json_t *ev = engine_event(e, "step.answered");
    json_object_set_new_nocheck(ev, "step", step_id_json(st));
    if (in)
        json_object_set_new_nocheck(ev, "instance", inst_id_json(in));
    json_object_set_new_nocheck(ev, "answer", json_string(yes ? "yes" : "no"));
    json_object_set_new_nocheck(ev, "operator", json_string(e->o.operator_name));
    json_object_set_new_nocheck(ev, "via", json_string(via));
    if (note)
        json_object_set_new_nocheck(ev, "note", json_string(note));
    json_object_set_new_nocheck(ev, "response_ms", json_integer(ms));
    engine_emit(e, ev, NULL);
}

#define NO_OPERATOR_MSG "needs a confirmation and there is no terminal to ask: " \
                        "run with --yes, or answer it in an --answers file"

/* Every instance still undecided gets `decision`; returns how many. */
static size_t decide_rest(sstate *st, int decision)
{
    size_t n = 0;
    for (size_t i = 0; i < st->n; i++)
        if (st->insts[i].decision == 0) {
            st->insts[i].decision = (signed char)decision;
            n++;
        }
    return n;
}

static const char *const YES_NO[] = { "yes", "no", "one by one" };

static void confirm_text(irp_engine *e, const sstate *st, char *q, size_t len)
{
    const irp_step *def = st->def;
    if (def->rare->confirm_prompt.s) {
        char *text = NULL, err[256];
        if (irp_render_text(&def->rare->confirm_prompt, &e->run_scope, &text, NULL, err, sizeof err))
            snprintf(q, len, "%s", def->rare->confirm_prompt.s);
        else
            snprintf(q, len, "%s", text);
        free(text);
    } else {
        snprintf(q, len, "Run step '%s' (%s)?", def->id, def->title);
    }
}

static void fail_unasked(irp_engine *e, sstate *st)
{
    /* No terminal and no answer: fail at once, saying how to answer. */
    json_t *ev = engine_event(e, "step.finished");
    json_object_set_new_nocheck(ev, "step", step_id_json(st));
    json_object_set_new_nocheck(ev, "status", json_string_nocheck("failed"));
    json_object_set_new_nocheck(ev, "error", json_string(NO_OPERATOR_MSG));
    engine_emit(e, ev, NULL);
    fprintf(stderr, "irp: step '%s' " NO_OPERATOR_MSG "\n", st->def->id);
    step_end(e, st, IRP_ST_FAILED);
}

/* One instance's own answer, when the operator chose "one by one". */
static void instance_answered(irp_engine *e, void *arg, int choice, const char *note)
{
    inst *in = arg;
    sstate *st = in->st;
    in->decision = choice == 0 ? 1 : choice == 1 ? -1 : choice == -1 ? DECIDE_NOBODY
                   : DECIDE_CANCELLED;
    if (--st->asking == 0)
        start_instances(e, st);
}

static void ask_one_by_one(irp_engine *e, sstate *st)
{
    char q[512];
    confirm_text(e, st, q, sizeof q);
    st->asking = 1;     /* held until every question is out */
    for (size_t i = 0; i < st->n; i++) {
        inst *in = &st->insts[i];
        if (in->decision)
            continue;
        st->asking++;
        engine_ask(e, st->def->id, in->id, NULL, q, YES_NO, 2, false, instance_answered, in);
    }
    if (--st->asking == 0)
        start_instances(e, st);
}

static void confirm_answered(irp_engine *e, void *arg, int choice, const char *note)
{
    sstate *st = arg;
    if (choice == -2 || e->journal_err || (e->aborting && !st->def->is_finally)) {
        cancel_step(e, st, e->interrupted ? "interrupted" : "aborted");
        return;
    }
    if (choice == -1 && decide_rest(st, DECIDE_NOBODY) == st->n) {
        fail_unasked(e, st);
        return;
    }
    if (choice == 2) {
        ask_one_by_one(e, st);
        return;
    }
    if (choice >= 0)
        decide_rest(st, choice == 0 ? 1 : -1);
    start_instances(e, st);
}

/* One question for every instance of the step still undecided: yes, no,
 * or (for several instances) one by one. */
static void ask_confirm(irp_engine *e, sstate *st, size_t undecided)
{
    char q[512];
    confirm_text(e, st, q, sizeof q);
    st->state = IRP_ST_AWAITING_INPUT;
    engine_ask(e, st->def->id, NULL, NULL, q, YES_NO, undecided > 1 ? 3 : 2, false,
               confirm_answered, st);
}

/* Answers from the --answers file first (an instance's own, else its
 * step's), then --yes, then the operator for whatever is left. */
static void decide_confirm(irp_engine *e, sstate *st)
{
    const irp_step *def = st->def;
    const irp_answer *for_step = NULL;
    size_t undecided = 0;
    for (size_t i = 0; i < st->n; i++) {
        inst *in = &st->insts[i];
        /* irp resume: answers journaled before stand; an instance that
         * had started had been confirmed. */
        const restored *r = e->recs ? engine_restored(e, in->id) : NULL;
        in->decision = r && (r->attempt || r->ended) ? 1 : r && r->decision ? r->decision
                       : st->restored_decision;
        if (in->decision)
            continue;
        const irp_answer *a = irp_answers_find(e->o.answers, in->id, def->id);
        if (!a || !a->confirm) {
            undecided++;
            continue;
        }
        bool yes = a->confirm[0] == 'y';
        in->decision = yes ? 1 : -1;
        if (a->is_instance)
            journal_answer(e, st, in, yes, "answers-file", a->note, 0);
        else
            for_step = a;
    }
    if (for_step)
        journal_answer(e, st, NULL, for_step->confirm[0] == 'y', "answers-file",
                       for_step->note, 0);
    if (undecided && e->o.auto_answer) {
        bool yes = !def->sim.answer || strcmp(def->sim.answer, "no") != 0;
        decide_rest(st, yes ? 1 : -1);
        journal_answer(e, st, NULL, yes, "--auto", NULL, 0);
    } else if (undecided && e->o.yes) {
        decide_rest(st, 1);
        journal_answer(e, st, NULL, true, "--yes", NULL, 0);
    } else if (undecided) {
        ask_confirm(e, st, undecided);
        return;
    }
    start_instances(e, st);
}

static void step_ready(irp_engine *e, sstate *st)
{
    const irp_step *def = st->def;
    char buf[512];
    st->ready = true;
    if (e->storage_err) {
        cancel_step(e, st, "the run's files cannot be written");
        return;
    }
    if (st->restored_end) {
        /* irp resume: the journal already ended it; that stands. */
        step_end(e, st, st->restored_state);
        return;
    }
    /* After a second Ctrl-C even `finally` would only be started to be
     * terminated: it is cancelled instead. */
    if (e->journal_err || (e->aborting && (!def->is_finally || e->kill_sent))) {
        cancel_step(e, st, e->interrupted ? "interrupted" : "aborted");
        return;
    }
    const char *why = !def->is_finally && def->when_kind == IRP_WHEN_DEFAULT
                          ? unmet_need(e, st, buf, sizeof buf) : NULL;
    if (why) {
        skip_step(e, st, why);
        return;
    }
    if (def->when_kind == IRP_WHEN_FALSE) {
        skip_step(e, st, "when is false");
        return;
    }
    irp_value *items = NULL;
    char err[256] = "";
    int rc = expand(e, st, &items, err, sizeof err);
    if (!rc)
        rc = make_instances(e, st, items);
    irp_value_unref(items);
    if (rc) {
        /* No instance to fail: the step fails as a whole. */
        json_t *ev = engine_event(e, "step.finished");
        json_object_set_new_nocheck(ev, "step", step_id_json(st));
        json_object_set_new_nocheck(ev, "status", json_string_nocheck("failed"));
        json_object_set_new_nocheck(ev, "error", json_string(err[0] ? err : irp_strerror(rc)));
        engine_emit(e, ev, NULL);
        step_end(e, st, IRP_ST_FAILED);
        return;
    }
    if (st->n == 0) {
        skip_step(e, st, "the for_each list is empty");
        return;
    }
    if (def->confirm)
        decide_confirm(e, st);
    else
        start_instances(e, st);
}

static bool all_declined(const sstate *st)
{
    for (size_t i = 0; i < st->n; i++)
        if (st->insts[i].decision != -1)
            return false;
    return true;
}

/* Decide each instance (`when`) and queue those that run. */
static void start_instances(irp_engine *e, sstate *st)
{
    if (st->def->confirm && all_declined(st)) {
        char why[300];
        snprintf(why, sizeof why, "declined by %s", e->o.operator_name);
        skip_step(e, st, why);
        return;
    }
    /* Decide every instance before starting any, so a finish that comes
     * at once cannot end the step while instances are still undecided.
     * Most steps have one instance: no allocation for it. */
    int go1;
    char msgs1[1][256];
    int *go = st->n == 1 ? &go1 : calloc(st->n, sizeof *go);
    char (*msgs)[256] = st->n == 1 ? msgs1 : calloc(st->n, sizeof *msgs);
    if (st->n == 1)
        msgs1[0][0] = '\0';
    for (size_t i = 0; go && msgs && i < st->n; i++)
        go[i] = when_true(e, &st->insts[i], msgs[i], sizeof msgs[i]);
    for (size_t i = 0; i < st->n; i++) {
        inst *in = &st->insts[i];
        if (e->recs && engine_resume_inst(e, in)) {
            continue;
        } else if (in->decision == -1) {
            inst_fields x;
            char why[300];
            snprintf(why, sizeof why, "declined by %s", e->o.operator_name);
            inst_head(e, &x, "step.skipped", in);
            if (irp_utf8_valid(why, strlen(why)))
                field_text(&x, "reason", why);
            emit_fields(e, in, &x, NULL);
            inst_end(e, in, IRP_ST_SKIPPED);
        } else if (in->decision == DECIDE_CANCELLED) {
            cancel_inst(e, in, e->interrupted ? "interrupted" : "aborted");
        } else if (in->decision == DECIDE_NOBODY) {
            fprintf(stderr, "irp: step '%s' " NO_OPERATOR_MSG "\n", in->id);
            fail_attempt(e, in, "confirm", NO_OPERATOR_MSG);
        } else if (!go || !msgs) {
            fail_attempt(e, in, "internal", "out of memory");
        } else if (go[i] < 0) {
            in->job_live = false;
            fail_attempt(e, in, "expression", msgs[i]);
        } else if (go[i] == 0) {
            inst_fields x;
            inst_head(e, &x, "step.skipped", in);
            field_text(&x, "reason", "when is false");
            emit_fields(e, in, &x, NULL);
            inst_end(e, in, IRP_ST_SKIPPED);
        } else {
            enqueue(e, in);
        }
    }
    if (st->n != 1) {
        free(go);
        free(msgs);
    }
}

/* ---- life cycle ----------------------------------------------------- */

int irp_engine_new(const irp_engine_opts *opts, irp_engine **out)
{
    *out = NULL;
    irp_engine *e = calloc(1, sizeof *e);
    if (!e)
        return IRP_ENOMEM;
    e->o = *opts;
    if (!e->o.jobs)
        e->o.jobs = 8;
    const irp_playbook *pb = opts->pb;
    e->n_steps = pb->n_steps;
    e->n_main = pb->n_main;
    /* The per-step arrays and, later, the instances come from one arena
     * sized for them at once: in huge pages, where 100,000 steps' worth
     * of calloc() was 4 KiB page faults costing as long as the run of
     * the first thousand steps. */
    irp_arena_hint(&e->mem, pb->n_steps * (sizeof *e->steps + sizeof *e->deps_left +
                                           sizeof(inst) + 32 + 2 * sizeof *e->dependents));
    size_t n_alloc = pb->n_steps ? pb->n_steps : 1;
    e->steps = irp_arena_alloc(&e->mem, n_alloc * sizeof *e->steps);
    e->deps_left = irp_arena_alloc(&e->mem, n_alloc * sizeof *e->deps_left);
    if (!e->steps || !e->deps_left) {
        irp_arena_release(&e->mem);
        free(e);
        return IRP_ENOMEM;
    }
    /* Dependents: the reverse of needs, so an ending step tells exactly
     * the steps waiting for it.  Counted in the same pass over the steps
     * (each a cache miss in a long playbook). */
    size_t n_edges = 0;
    for (size_t i = 0; i < pb->n_steps; i++) {
        const irp_step *def = &pb->steps[i];
        e->steps[i].def = def;
        e->steps[i].engine = e;
        e->deps_left[i] = def->n_deps;
        for (size_t k = 0; k < def->n_deps; k++)
            e->steps[def->deps[k]].n_dependents++;
        n_edges += def->n_deps;
    }
    e->dependents = irp_arena_alloc(&e->mem, (n_edges ? n_edges : 1) * sizeof *e->dependents);
    if (!e->dependents) {
        irp_arena_release(&e->mem);
        free(e);
        return IRP_ENOMEM;
    }
    for (size_t i = 0, at = 0; i < pb->n_steps; i++) {
        sstate *st = &e->steps[i];
        st->dependents = e->dependents + at;
        at += st->n_dependents;
        st->n_dependents = 0;
    }
    for (size_t i = 0; i < pb->n_steps; i++)
        for (size_t k = 0; k < pb->steps[i].n_deps; k++) {
            sstate *d = &e->steps[pb->steps[i].deps[k]];
            d->dependents[d->n_dependents++] = i;
        }
    e->run_sctx.e = e;
    e->run_scope = (irp_scope){ engine_lookup, &e->run_sctx };
    e->force_fail_ids = json_object();
    if (engine_deadlines_init(e)) {
        irp_engine_free(e);
        return IRP_ENOMEM;
    }
    *out = e;
    return 0;
}

/* ev is the run.started event, made first so the run's start is its ts. */
static json_t *run_started_event(irp_engine *e, json_t *ev)
{
    const irp_playbook *pb = e->o.pb;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    json_object_set_new(ev, "format", json_integer(1));
    json_object_set_new(ev, "irp_version", json_string(IRP_VERSION));
    json_object_set_new(ev, "run_id", json_string(e->o.run_id));
    json_object_set_new(ev, "mode", json_string(e->o.mode));
    json_t *p = json_object();
    json_object_set_new(p, "id", json_string(pb->id));
    json_object_set_new(p, "title", json_string(pb->title));
    json_object_set_new(p, "tlp", json_string(irp_tlp_name(pb->tlp)));
    json_object_set_new(p, "sha256", json_string(e->o.playbook_sha256));
    json_object_set_new(ev, "playbook", p);
    json_object_set_new(ev, "operator", json_string(e->o.operator_name));
    json_object_set_new(ev, "host", json_string(host));
    json_object_set_new(ev, "inputs", irp_json_map_b64(e->o.inputs));
    json_object_set_new(ev, "detected_at", time_json(e->o.detected_at_ms >= 0
                                                        ? e->o.detected_at_ms : e->started_wall));
    json_object_set_new(ev, "jobs", json_integer(e->o.jobs));
    if (pb->n_deadlines)
        json_object_set_new(ev, "deadlines", engine_deadlines_json(e));
    return ev;
}

/* Evaluate vars and start what is ready: a new run and a resumed one. */
static int begin(irp_engine *e)
{
    char err[512] = "";
    int rc = engine_eval_vars(e, err, sizeof err);
    if (rc) {
        /* Nothing can run with a var that does not evaluate. */
        fprintf(stderr, "irp: %s\n", err);
        json_t *ev = engine_event(e, "run.failed_to_start");
        json_object_set_new(ev, "error", json_string(err));
        engine_emit(e, ev, NULL);
        e->aborting = true;
    }
    if (e->n_steps == 0) {
        run_end(e);
        return 0;
    }
    for (size_t i = 0; i < e->n_main && !e->finished; i++)
        if (e->deps_left[i] == 0 && !e->steps[i].ready)
            step_ready(e, &e->steps[i]);
    if (e->n_main == 0 && !e->finally_started)
        start_finally(e);
    return 0;
}

void irp_engine_interrupt(irp_engine *e)
{
    if (!e->interrupted) {
        e->interrupted = true;
        json_t *ev = engine_event(e, "run.interrupted");
        json_object_set_new(ev, "how", json_string("abort"));
        engine_emit(e, ev, NULL);
        abort_run(e);
        return;
    }
    if (e->kill_sent)
        return;
    e->kill_sent = true;
    json_t *ev = engine_event(e, "run.interrupted");
    json_object_set_new(ev, "how", json_string("terminate"));
    engine_emit(e, ev, NULL);
    /* Twice: also stop what runs, `finally` included. */
    for (size_t i = 0; i < e->n_steps; i++) {
        sstate *st = &e->steps[i];
        for (size_t k = 0; k < st->n; k++) {
            inst *in = &st->insts[k];
            if (in->state == IRP_ST_RUNNING && in->job_live &&
                !(in->kill_timer && irp_timer_active(in->kill_timer))) {
                in->stopped_by_user = true;
                terminate(e, in);
            }
        }
    }
}

int irp_engine_start(irp_engine *e)
{
    json_t *ev = engine_event(e, "run.started");
    /* The journaled start, to the millisecond: deadlines from `start`
     * are due exactly `within` after it. */
    e->started_wall = e->last_event_wall;
    engine_deadlines_start(e);
    int rc = engine_emit(e, run_started_event(e, ev), NULL);
    return rc ? rc : begin(e);
}

int irp_engine_resume(irp_engine *e, json_t *fields)
{
    json_t *ev = engine_event(e, "run.resumed");
    json_object_set_new(ev, "operator", json_string(e->o.operator_name));
    json_object_update(ev, fields);
    json_decref(fields);
    engine_resume_lists(e);
    json_object_set(ev, "interrupted", e->rs_interrupted);
    json_object_set(ev, "rerun", e->rs_rerun);
    if (!e->started_wall)
        e->started_wall = irp_clock_wall_ms(e->o.clock);
    engine_deadlines_start(e);
    int rc = engine_emit(e, ev, NULL);
    return rc ? rc : begin(e);
}

bool irp_engine_done(const irp_engine *e) { return e->finished; }
int irp_engine_journal_error(const irp_engine *e)
{
    return e->journal_err ? e->journal_err : e->storage_err;
}
size_t irp_engine_nsteps(const irp_engine *e) { return e->n_steps; }
irp_state irp_engine_step_state(const irp_engine *e, size_t i) { return e->steps[i].state; }

void irp_engine_step_times(const irp_engine *e, size_t i, int64_t *started, int64_t *finished)
{
    *started = e->steps[i].started_wall;
    *finished = e->steps[i].finished_wall;
}

void irp_engine_free(irp_engine *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_steps; i++) {
        sstate *st = &e->steps[i];
        for (size_t k = 0; k < st->n; k++) {
            inst *in = &st->insts[k];
            irp_timer_stop(&in->timer);
            engine_kill_cancel(in);
            free(in->kill_timer);
            if (in->job_live)
                executor_of(e, st)->release(in->job);
            if (in->job)
                job_put(e, (ejob *)in->job);
            irp_value_unref(in->item);
            irp_value_unref(in->outputs);
            irp_value_unref(in->stdout_v);
        }
        json_decref(st->id_json);
    }
    for (ejob *j = e->free_jobs, *next; j; j = next) {
        next = j->next_free;
        free(j->log_path);
        free(j);
    }
    engine_resume_free(e);
    engine_ask_close(e);
    json_decref(e->force_fail_ids);
    json_decref(e->ts_text.json);
    json_decref(e->wall_text.json);
    for (size_t i = 0; i < ENGINE_N_HOT_NAMES; i++)
        json_decref(e->hot_names[i]);
    for (size_t i = 0; i < ENGINE_N_SMALL_INTS; i++)
        json_decref(e->small_ints[i]);
    json_decref(e->empty_object);
    engine_deadlines_free(e);
    irp_value_unref(e->vars);
    irp_arena_release(&e->mem);
    free(e);
}

