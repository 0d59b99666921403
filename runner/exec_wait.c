/* The `wait` executor, and the table of real executors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irp/error.h"
#include "irp/exec.h"
#include "irp/timeutil.h"

extern const irp_executor irp_exec_run;
extern const irp_executor irp_exec_manual;
extern const irp_executor irp_exec_notify;
extern const irp_executor irp_exec_evidence;

typedef struct wait_job {
    irp_timer timer;
    int64_t ms;
} wait_job;

static int wait_prepare(irp_job *job, json_t **action, char *err, size_t errlen)
{
    const irp_wait_action *w = job->step->act.wait;
    wait_job *wj = calloc(1, sizeof *wj);
    if (!wj)
        return IRP_ENOMEM;
    job->priv = wj;
    *action = json_object();
    if (w->duration_ms >= 0) {
        wj->ms = w->duration_ms;
        char buf[32];
        irp_duration_format(wj->ms, buf, sizeof buf);
        json_object_set_new(*action, "wait", json_string(buf));
        return 0;
    }
    char *until = NULL;
    int rc = irp_render_text(&w->until, job->scope, &until, NULL, err, errlen);
    if (rc)
        return rc;
    int64_t due;
    rc = irp_time_parse(until, strlen(until), &due);
    if (rc)
        snprintf(err, errlen, "wait until '%s': not a time in RFC 3339 with an offset", until);
    else
        json_object_set_new(*action, "until", json_string(until));
    free(until);
    if (rc)
        return IRP_EINVAL;
    /* A time already past waits not at all. */
    int64_t left = due - irp_clock_wall_ms(job->clock);
    wj->ms = left > 0 ? left : 0;
    return 0;
}

static void wait_done(irp_timer *t)
{
    irp_job *job = t->data;
    job->outcome = IRP_JOB_SUCCEEDED;
    irp_job_finish(job);
}

static int wait_start(irp_job *job)
{
    wait_job *wj = job->priv;
    wj->timer.data = job;
    return irp_timer_start(job->clock, &wj->timer, wj->ms, wait_done);
}

static void wait_cancel(irp_job *job, int sig)
{
    wait_job *wj = job->priv;
    if (!wj || !irp_timer_active(&wj->timer))
        return;
    irp_timer_stop(&wj->timer);
    job->outcome = IRP_JOB_CANCELLED;
    irp_job_finish(job);
}

static void wait_release(irp_job *job)
{
    wait_job *wj = job->priv;
    if (wj)
        irp_timer_stop(&wj->timer);
    free(wj);
    job->priv = NULL;
}

static const irp_executor exec_wait = {
    IRP_ACT_WAIT, false, wait_prepare, wait_start, wait_cancel, wait_release,
};

const irp_executor *irp_exec_real(irp_action_kind kind)
{
    switch (kind) {
    case IRP_ACT_RUN: return &irp_exec_run;
    case IRP_ACT_WAIT: return &exec_wait;
    case IRP_ACT_MANUAL: return &irp_exec_manual;
    case IRP_ACT_NOTIFY: return &irp_exec_notify;
    case IRP_ACT_EVIDENCE: return &irp_exec_evidence;
    default: return NULL;
    }
}

void irp_job_finish(irp_job *job)
{
    job->on_finish(job);
}
