/* Deadlines (SPEC §4): the legal clocks of an incident -- NIS2's 24 h
 * early warning, GDPR's 72 h -- tracked on the engine's clock.
 *
 * A deadline is due at its reference time (detection, the run's start,
 * or the finish of its `from` step) plus `within`.  It is met when every
 * instance of `met_by` has really succeeded before it is due (an ignored
 * failure does not count).  Timers fire `deadline.warning` at due −
 * warn_before and `deadline.missed` at due, each at that moment; one
 * still open when the run ends is journaled `deadline.open`.  Times are
 * wall-clock UTC (the journal's), the timers run on the engine's clock
 * (monotonic or virtual), so a deadline whose due time has already passed
 * when it starts -- detection two days ago -- is missed at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "irp/error.h"
#include "irp/timeutil.h"

static json_t *time_json(int64_t ms)
{
    char buf[IRP_TIME_BUFSZ];
    irp_time_format(ms, buf);
    return json_string(buf);
}

static void emit(irp_engine *e, dstate *d, const char *event, json_t *extra)
{
    json_t *ev = engine_event(e, event);
    json_object_set_new(ev, "deadline", json_string(d->def->id));
    json_object_set_new(ev, "title", json_string(d->def->title ? d->def->title : d->def->id));
    json_object_set_new(ev, "due", d->due ? time_json(d->due) : json_null());
    if (extra) {
        json_object_update(ev, extra);
        json_decref(extra);
    }
    engine_emit(e, ev, NULL);
}

static void missed(irp_timer *t)
{
    dstate *d = t->data;
    irp_engine *e = d->e;
    if (d->status != IRP_DL_RUNNING && d->status != IRP_DL_WARNING)
        return;
    irp_timer_stop(&d->warn_timer);
    d->status = IRP_DL_MISSED;
    emit(e, d, "deadline.missed", NULL);
}

static void warning(irp_timer *t)
{
    dstate *d = t->data;
    irp_engine *e = d->e;
    if (d->status != IRP_DL_RUNNING)
        return;
    d->status = IRP_DL_WARNING;
    json_t *x = json_object();
    json_object_set_new(x, "remaining_ms", json_integer(d->due - irp_clock_wall_ms(e->o.clock)));
    emit(e, d, "deadline.warning", x);
}

/* The reference time is known: the clock starts. */
static void arm(irp_engine *e, dstate *d, int64_t ref)
{
    if (d->status != IRP_DL_NOT_STARTED)
        return;
    d->due = ref + d->def->within_ms;
    if (d->restored_status) {
        /* irp resume: met or missed before the crash stands. */
        d->status = d->restored_status;
        if (d->status == IRP_DL_MET || d->status == IRP_DL_MISSED)
            return;
    } else {
        d->status = IRP_DL_RUNNING;
    }
    int64_t left = d->due - irp_clock_wall_ms(e->o.clock);
    d->timer.data = d->warn_timer.data = d;
    if (d->def->warn_before_ms > 0 && d->status == IRP_DL_RUNNING)
        irp_timer_start(e->o.clock, &d->warn_timer, left - d->def->warn_before_ms, warning);
    irp_timer_start(e->o.clock, &d->timer, left, missed);
}

int engine_deadlines_init(irp_engine *e)
{
    const irp_playbook *pb = e->o.pb;
    e->n_deadlines = pb->n_deadlines;
    e->deadlines = calloc(pb->n_deadlines ? pb->n_deadlines : 1, sizeof *e->deadlines);
    if (!e->deadlines)
        return IRP_ENOMEM;
    for (size_t i = 0; i < pb->n_deadlines; i++)
        e->deadlines[i] = (dstate){ .e = e, .def = &pb->deadlines[i] };
    return 0;
}

int64_t engine_detected_ms(const irp_engine *e)
{
    return e->o.detected_at_ms >= 0 ? e->o.detected_at_ms : e->started_wall;
}

/* The run started (or resumed): deadlines counted from detection or from
 * the start begin now.  Their due times go into run.started. */
void engine_deadlines_start(irp_engine *e)
{
    for (size_t i = 0; i < e->n_deadlines; i++) {
        dstate *d = &e->deadlines[i];
        if (d->def->from == IRP_FROM_DETECTED)
            arm(e, d, engine_detected_ms(e));
        else if (d->def->from == IRP_FROM_START)
            arm(e, d, e->started_wall);
    }
}

json_t *engine_deadlines_json(irp_engine *e)
{
    json_t *list = json_array();
    for (size_t i = 0; i < e->n_deadlines; i++) {
        const dstate *d = &e->deadlines[i];
        static const char *const from[] = { "detected", "start" };
        json_t *x = json_object();
        json_object_set_new(x, "id", json_string(d->def->id));
        json_object_set_new(x, "title", json_string(d->def->title ? d->def->title : d->def->id));
        json_object_set_new(x, "due", d->due ? time_json(d->due) : json_null());
        json_object_set_new(x, "from", json_string(d->def->from == IRP_FROM_STEP
                                                       ? d->def->from_step : from[d->def->from]));
        json_object_set_new(x, "within_ms", json_integer(d->def->within_ms));
        if (d->def->met_by)
            json_object_set_new(x, "met_by", json_string(d->def->met_by));
        json_array_append_new(list, x);
    }
    return list;
}

static bool really_succeeded(const sstate *st)
{
    if (st->state != IRP_ST_SUCCEEDED || st->n == 0)
        return false;
    for (size_t i = 0; i < st->n; i++)
        if (st->insts[i].state != IRP_ST_SUCCEEDED)
            return false;
    return true;
}

/* A step ended: it may start a deadline's clock, or meet one. */
void engine_deadlines_step_ended(irp_engine *e, const sstate *st)
{
    size_t idx = (size_t)(st - e->steps);
    for (size_t i = 0; i < e->n_deadlines; i++) {
        dstate *d = &e->deadlines[i];
        if (d->def->from == IRP_FROM_STEP && d->def->from_idx == idx)
            arm(e, d, st->finished_wall);
        if (d->def->met_by && d->def->met_by_idx == idx && really_succeeded(st) &&
            (d->status == IRP_DL_RUNNING || d->status == IRP_DL_WARNING)) {
            irp_timer_stop(&d->timer);
            irp_timer_stop(&d->warn_timer);
            d->status = IRP_DL_MET;
            d->met_at = st->finished_wall;
            json_t *x = json_object();
            json_object_set_new(x, "margin_ms", json_integer(d->due - d->met_at));
            emit(e, d, "deadline.met", x);
        }
    }
}

/* The run ended: what is still open is said so. */
void engine_deadlines_end(irp_engine *e)
{
    for (size_t i = 0; i < e->n_deadlines; i++) {
        dstate *d = &e->deadlines[i];
        irp_timer_stop(&d->timer);
        irp_timer_stop(&d->warn_timer);
        if (d->status == IRP_DL_MET || d->status == IRP_DL_MISSED)
            continue;
        d->status = IRP_DL_OPEN;
        emit(e, d, "deadline.open", NULL);
    }
}

void engine_deadlines_free(irp_engine *e)
{
    for (size_t i = 0; i < e->n_deadlines; i++) {
        irp_timer_stop(&e->deadlines[i].timer);
        irp_timer_stop(&e->deadlines[i].warn_timer);
    }
    free(e->deadlines);
}

/* irp resume: a deadline met or missed before stays so; a warning given
 * is not given again. */
void engine_deadlines_restore(irp_engine *e, const char *event, const json_t *ev)
{
    const char *id = json_string_value(json_object_get(ev, "deadline"));
    for (size_t i = 0; id && i < e->n_deadlines; i++) {
        dstate *d = &e->deadlines[i];
        if (strcmp(d->def->id, id) != 0)
            continue;
        if (strcmp(event, "deadline.met") == 0)
            d->restored_status = IRP_DL_MET;
        else if (strcmp(event, "deadline.missed") == 0)
            d->restored_status = IRP_DL_MISSED;
        else if (strcmp(event, "deadline.warning") == 0 && !d->restored_status)
            d->restored_status = IRP_DL_WARNING;
    }
}

static const char *const dl_names[] = {
    "not_started", "running", "warning", "met", "missed", "open",
};

int engine_deadline_value(irp_engine *e, const char *id, const char *field, irp_value **out)
{
    for (size_t i = 0; i < e->n_deadlines; i++) {
        dstate *d = &e->deadlines[i];
        if (strcmp(d->def->id, id) != 0)
            continue;
        if (strcmp(field, "status") == 0) {
            *out = irp_value_new_cstring(dl_names[d->status]);
        } else if (strcmp(field, "due") == 0) {
            char buf[IRP_TIME_BUFSZ];
            irp_time_format(d->due, buf);
            *out = d->due ? irp_value_new_cstring(buf) : irp_value_new_null();
        } else if (strcmp(field, "remaining") == 0) {
            /* Seconds until due, negative once past, frozen when met. */
            int64_t at = d->status == IRP_DL_MET ? d->met_at : irp_clock_wall_ms(e->o.clock);
            *out = d->due ? irp_value_new_number((double)(d->due - at) / 1000.0)
                          : irp_value_new_null();
        } else {
            return IRP_EUNDEF;
        }
        return *out ? 0 : IRP_ENOMEM;
    }
    return IRP_EUNDEF;
}

size_t irp_engine_ndeadlines(const irp_engine *e) { return e->n_deadlines; }

void irp_engine_deadline(const irp_engine *e, size_t i, irp_deadline_info *info)
{
    const dstate *d = &e->deadlines[i];
    *info = (irp_deadline_info){ d->def->id, d->def->title ? d->def->title : d->def->id,
                                 d->due, dl_names[d->status] };
}
