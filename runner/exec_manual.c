/* The `manual` executor: a person does something and says how it went.
 *
 * The answer comes from --answers, the terminal, or `irp answer`; the
 * engine asks and journals (job->ask).  `failed` fails the step, `skip`
 * skips it, any other choice succeeds with outputs.answer (SPEC §1.1).
 * A `timeout` bounds the wait: the engine's timer calls cancel(), which
 * takes the question back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irp/error.h"
#include "irp/exec.h"
#include "irp/value.h"

typedef struct mjob {
    char *prompt;
    bool done;
} mjob;

static int manual_prepare(irp_job *job, json_t **action, char *err, size_t errlen)
{
    const irp_manual_action *m = job->step->act.manual;
    mjob *mj = calloc(1, sizeof *mj);
    if (!mj)
        return IRP_ENOMEM;
    job->priv = mj;
    bool secret = false;
    int rc = irp_render_text(&m->prompt, job->scope, &mj->prompt, &secret, err, errlen);
    if (rc)
        return rc;
    json_t *a = json_object();
    json_object_set_new(a, "prompt", json_string(secret ? "***" : mj->prompt));
    json_t *choices = json_array();
    for (size_t i = 0; i < m->n_choices; i++)
        json_array_append_new(choices, json_string(m->choices[i]));
    json_object_set_new(a, "choices", choices);
    if (m->assignee)
        json_object_set_new(a, "assignee", json_string(m->assignee));
    *action = a;
    return 0;
}

/* The answer decides the outcome; the job ends here. */
static void finish_with(irp_job *job, const char *answer)
{
    mjob *mj = job->priv;
    mj->done = true;
    if (strcmp(answer, "failed") == 0) {
        job->outcome = IRP_JOB_FAILED;
        snprintf(job->error, sizeof job->error, "answered failed");
    } else if (strcmp(answer, "skip") == 0) {
        job->outcome = IRP_JOB_SKIPPED;
    } else {
        job->outcome = IRP_JOB_SUCCEEDED;
        job->outputs = irp_value_new_map();
        irp_value *v = irp_value_new_string(answer, strlen(answer));
        if (job->outputs && v)
            irp_value_map_set(job->outputs, "answer", 6, v);
        else
            irp_value_unref(v);
    }
    irp_job_finish(job);
}

static void answered(irp_job *job, int choice, const char *note)
{
    mjob *mj = job->priv;
    if (mj->done)
        return;
    if (choice >= 0) {
        finish_with(job, job->step->act.manual->choices[choice]);
        return;
    }
    mj->done = true;
    if (choice == -2) {
        job->outcome = IRP_JOB_CANCELLED;
    } else {
        job->outcome = IRP_JOB_FAILED;
        snprintf(job->error, sizeof job->error,
                 "needs an answer and there is no terminal to ask: give it in an --answers "
                 "file (%s: %s) or with irp answer", job->instance,
                 job->step->act.manual->choices[0]);
        fprintf(stderr, "irp: step '%s' %s\n", job->instance, job->error);
    }
    irp_job_finish(job);
}

static int manual_start(irp_job *job)
{
    mjob *mj = job->priv;
    const irp_manual_action *m = job->step->act.manual;
    if (job->preset_answer) {
        json_t *ev = json_object();
        json_object_set_new(ev, "about", json_string("manual"));
        json_object_set_new(ev, "answer", json_string(job->preset_answer));
        json_object_set_new(ev, "operator", json_string(job->operator_name));
        json_object_set_new(ev, "via", json_string(job->preset_via ? job->preset_via
                                                                   : "answers-file"));
        if (job->preset_note)
            json_object_set_new(ev, "note", json_string(job->preset_note));
        json_object_set_new(ev, "response_ms", json_integer(0));
        job->emit(job, "step.answered", ev);
        finish_with(job, job->preset_answer);
        return 0;
    }
    char q[1024];
    if (m->assignee)
        snprintf(q, sizeof q, "%s (for %s)", mj->prompt, m->assignee);
    else
        snprintf(q, sizeof q, "%s", mj->prompt);
    job->ask(job, q, m->choices, m->n_choices, answered);
    return 0;
}

/* A timeout, or a second Ctrl-C: the question is taken back; the engine
 * knows which of the two ended it. */
static void manual_cancel(irp_job *job, int sig)
{
    mjob *mj = job->priv;
    if (!mj || mj->done)
        return;
    mj->done = true;
    job->unask(job);
    job->outcome = IRP_JOB_FAILED;
    snprintf(job->error, sizeof job->error, "no answer in time");
    irp_job_finish(job);
}

static void manual_release(irp_job *job)
{
    mjob *mj = job->priv;
    if (mj)
        free(mj->prompt);
    free(mj);
    job->priv = NULL;
}

const irp_executor irp_exec_manual = {
    IRP_ACT_MANUAL, false, manual_prepare, manual_start, manual_cancel, manual_release,
};
