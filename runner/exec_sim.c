/* The executors of `irp simulate` (SPEC §5): nothing real happens.
 *
 * Each kind renders its action with the real executor's `prepare` -- which
 * only renders and describes, it opens no connection, copies nothing and
 * starts no process -- so the journal shows exactly what a real run would
 * have done, marked `"simulated": true`.  The attempt then lasts a virtual
 * duration on the job's clock and ends with a drawn outcome:
 *
 *   duration  `simulate.duration` (a range is sampled); without a hint 1m,
 *             but never longer than the step's timeout; a `wait` lasts its
 *             own length; a `manual` step answered in advance (--answers,
 *             --auto) takes its hint, else no time at all.  A hint longer
 *             than the timeout is cut short by the engine's own timeout
 *             timer: the attempt ends timed_out.
 *   outcome   `simulate.outcome`, else success with probability
 *             `success_rate`, else success.  A manual step's outcome is
 *             its answer, as in a real run.
 *
 * Randomness: each attempt draws from its own generator, seeded with the
 * SHA-256 of (seed, instance id, attempt), so what an attempt draws does
 * not depend on what ran before it or in which order: the same seed gives
 * the same exercise.
 *
 * A manual step with no answer given in advance is asked (job->ask) like
 * a real one: the participants answer on the terminal, or with `irp
 * answer`, while the clock runs (or stands still, at --speed max).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irp/error.h"
#include "irp/journal.h"
#include "irp/exec.h"
#include "irp/timeutil.h"

#define DEFAULT_DURATION_MS 60000

typedef struct sim_job {
    irp_timer timer;
    const irp_executor *real;    /* whose prepare described the action */
    void *real_priv;             /* what it allocated; its release frees it */
    int64_t ms;                  /* how long this attempt lasts */
    int64_t t0;                  /* now at step.started: the attempt's start */
    irp_job_outcome outcome;     /* drawn at prepare */
    char why[128];               /* the reason for a drawn failure */
    irp_value *outputs;          /* simulate.outputs, rendered; or NULL */
    char *prompt;                /* manual: the question as asked */
    bool asking;                 /* manual: a question is open */
    bool ended;                  /* irp_job_finish was called */
} sim_job;

/* ---- randomness ------------------------------------------------------ */

/* splitmix64: tiny, fast, and every seed gives a full-period sequence. */
typedef struct sim_rng { uint64_t s; } sim_rng;

static uint64_t rng_next(sim_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* In [0, 1), with 53 random bits. */
static double rng_unit(sim_rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1p-53;
}

/* Decimal digits of u then '\n' at p, as printf's "%llu\n"; returns
 * the length.  Every attempt is seeded: no printf for it. */
static size_t put_line_u64(char *p, uint64_t u)
{
    char digits[20];
    size_t n = 0, k = 0;
    do
        digits[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    while (n)
        p[k++] = digits[--n];
    p[k++] = '\n';
    return k;
}

/* As "%d\n". */
static size_t put_line_int(char *p, int d)
{
    if (d >= 0)
        return put_line_u64(p, (uint64_t)d);
    p[0] = '-';
    return 1 + put_line_u64(p + 1, (uint64_t)0 - (uint64_t)(int64_t)d);
}

/* The generator of one attempt of one instance: seeded from a hash of all
 * three, so neighbouring seeds or attempts give unrelated draws. */
static void rng_seed(sim_rng *r, uint64_t seed, const char *instance, int attempt)
{
    char small[256], *text = small;
    size_t ilen = strlen(instance);
    size_t n = put_line_u64(small, seed);
    n += put_line_int(small + n, attempt);
    unsigned char md[IRP_SHA256_LEN];
    bool ok = false;

    /* One buffer for the one-shot digest, whose algorithm is fetched once. */
    if (n + ilen > sizeof small && (text = malloc(n + ilen)) != NULL)
        memcpy(text, small, n);
    if (text) {
        memcpy(text + n, instance, ilen);
        ok = irp_sha256(text, n + ilen, md) == 0;
    }
    if (text != small)
        free(text);
    r->s = 0;
    for (unsigned i = 0; ok && i < 8; i++)
        r->s = r->s << 8 | md[i];
    if (!ok)   /* no hash: still deterministic, just less mixed */
        r->s = seed ^ ((uint64_t)attempt << 32) ^ ilen;
}

/* ---- what an attempt does ------------------------------------------ */

static bool answered_in_advance(const irp_job *job)
{
    return job->step->action == IRP_ACT_MANUAL && job->preset_answer;
}

/* Two draws per attempt, always in this order: duration, then outcome.
 * An attempt that uses neither (a fixed duration, no success_rate) need
 * not seed its generator, a SHA-256: what it would draw is unused. */
static void draw(irp_job *job, sim_job *sj)
{
    const irp_step *st = job->step;
    const irp_simulate *h = &st->sim;
    bool ranged = h->has_duration && h->dur_max_ms != h->dur_min_ms;
    bool rated = h->outcome == IRP_OUTCOME_NONE && h->has_success_rate;
    uint64_t d = 0;
    double u = 0;

    if (ranged || rated) {
        sim_rng r;
        rng_seed(&r, job->seed, job->instance, job->attempt);
        d = rng_next(&r);
        u = rng_unit(&r);
    }
    if (h->has_duration) {
        uint64_t span = (uint64_t)(h->dur_max_ms - h->dur_min_ms);
        sj->ms = h->dur_min_ms + (span ? (int64_t)(d % (span + 1)) : 0);
    } else if (answered_in_advance(job)) {
        sj->ms = 0;
    } else {
        sj->ms = DEFAULT_DURATION_MS;
        if (st->timeout_ms >= 0 && st->timeout_ms < sj->ms)
            sj->ms = st->timeout_ms;
    }

    sj->outcome = IRP_JOB_SUCCEEDED;
    if (h->outcome == IRP_OUTCOME_FAILED) {
        sj->outcome = IRP_JOB_FAILED;
        snprintf(sj->why, sizeof sj->why, "simulated: outcome failed");
    } else if (h->outcome == IRP_OUTCOME_NONE && h->has_success_rate && u >= h->success_rate) {
        sj->outcome = IRP_JOB_FAILED;
        snprintf(sj->why, sizeof sj->why, "simulated: failed (success_rate %g)",
                 h->success_rate);
    }
}

static int render_outputs(irp_job *job, sim_job *sj, char *err, size_t errlen)
{
    const irp_simulate *h = &job->step->sim;
    if (!h->n_outputs)
        return 0;
    if (!(sj->outputs = irp_value_new_map()))
        return IRP_ENOMEM;
    for (size_t i = 0; i < h->n_outputs; i++) {
        char *text = NULL;
        bool secret = false;
        int rc = irp_render_text(&h->outputs[i].value, job->scope, &text, &secret, err, errlen);
        if (rc)
            return rc;
        irp_value *v = irp_value_new_string(text, strlen(text));
        free(text);
        /* An output made from a secret stays one: shown as *** wherever
         * a later step uses it. */
        if (v && secret)
            irp_value_taint(v);
        rc = v ? irp_value_map_set(sj->outputs, h->outputs[i].key, strlen(h->outputs[i].key), v)
               : IRP_ENOMEM;
        if (rc)
            return rc;
    }
    return 0;
}

/* The rendered outputs, handed to the job (the engine takes them) when
 * the attempt ends: nothing uses them here after that.  NULL without
 * simulate.outputs: the engine shows no outputs as `{}`, as an empty map,
 * and an attempt need not allocate one. */
static irp_value *outputs_take(sim_job *sj)
{
    irp_value *m = sj->outputs;
    sj->outputs = NULL;
    return m;
}

/* How long a `wait` lasts: its length, or until its time (already
 * rendered into the action by the real prepare), on the virtual clock. */
static int wait_length(irp_job *job, const json_t *action, int64_t *ms)
{
    const irp_wait_action *w = job->step->act.wait;
    if (w->duration_ms >= 0) {
        *ms = w->duration_ms;
        return 0;
    }
    const char *until = json_string_value(json_object_get(action, "until"));
    int64_t due;
    if (!until || irp_time_parse(until, strlen(until), &due))
        return IRP_EINVAL;
    int64_t left = due - irp_clock_wall_ms(job->clock);
    *ms = left > 0 ? left : 0;
    return 0;
}

static int manual_prompt(irp_job *job, sim_job *sj, char *err, size_t errlen)
{
    const irp_manual_action *m = job->step->act.manual;
    char *text = NULL;
    int rc = irp_render_text(&m->prompt, job->scope, &text, NULL, err, errlen);
    if (rc)
        return rc;
    if (m->assignee) {
        rc = asprintf(&sj->prompt, "%s (for %s)", text, m->assignee) < 0 ? IRP_ENOMEM : 0;
        if (rc)
            sj->prompt = NULL;
        free(text);
        return rc;
    }
    sj->prompt = text;
    return 0;
}

/* ---- the table's functions ------------------------------------------ */

static int sim_prepare(irp_job *job, json_t **action, char *err, size_t errlen)
{
    sim_job *sj = calloc(1, sizeof *sj);
    if (!sj)
        return IRP_ENOMEM;
    sj->real = irp_exec_real(job->step->action);
    if (!sj->real) {
        free(sj);
        snprintf(err, errlen, "no executor for '%s' steps", irp_action_name(job->step->action));
        return IRP_EINVAL;
    }
    job->priv = NULL;
    int rc = sj->real->prepare(job, action, err, errlen);
    sj->real_priv = job->priv;
    job->priv = sj;
    if (rc)
        return rc;
    /* Nothing is sent, so there is no receiver to drop a duplicate; the
     * key, made from the run id, would only make two runs of one
     * exercise differ. */
    json_object_del(*action, "idempotency_key");
    json_object_set_new(*action, "simulated", json_true());
    sj->t0 = irp_clock_now_ms(job->clock);
    draw(job, sj);
    if (job->step->action == IRP_ACT_WAIT) {
        sj->outcome = IRP_JOB_SUCCEEDED;
        if (wait_length(job, *action, &sj->ms)) {
            snprintf(err, errlen, "wait: the time to wait until did not render");
            return IRP_EINVAL;
        }
        return 0;
    }
    if (job->step->action == IRP_ACT_MANUAL && !job->preset_answer)
        rc = manual_prompt(job, sj, err, errlen);
    return rc ? rc : render_outputs(job, sj, err, errlen);
}

/* A manual step's answer decides its outcome, as in a real run. */
static void finish_manual(irp_job *job, sim_job *sj, const char *answer)
{
    if (strcmp(answer, "failed") == 0) {
        job->outcome = IRP_JOB_FAILED;
        snprintf(job->error, sizeof job->error, "answered failed");
    } else if (strcmp(answer, "skip") == 0) {
        job->outcome = IRP_JOB_SKIPPED;
    } else {
        job->outcome = IRP_JOB_SUCCEEDED;
        job->outputs = outputs_take(sj);
        if (!job->outputs)
            job->outputs = irp_value_new_map();
        irp_value *v = irp_value_new_string(answer, strlen(answer));
        if (job->outputs && v)
            irp_value_map_set(job->outputs, "answer", 6, v);
        else
            irp_value_unref(v);
    }
    sj->ended = true;
    irp_job_finish(job);
}

/* The answer given in advance, journaled as the real executor does, when
 * the simulated work is over. */
static void answer_preset(irp_job *job, sim_job *sj)
{
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
    finish_manual(job, sj, job->preset_answer);
}

static void time_is_up(irp_timer *t)
{
    irp_job *job = t->data;
    sim_job *sj = job->priv;
    if (answered_in_advance(job)) {
        answer_preset(job, sj);
        return;
    }
    job->outcome = sj->outcome;
    if (sj->outcome == IRP_JOB_FAILED)
        snprintf(job->error, sizeof job->error, "%s", sj->why);
    /* A simulated command "exits" as its outcome says, so conditions on
     * steps.ID.exit_code take the branch they would take for real. */
    if (job->step->action == IRP_ACT_RUN)
        job->exit_code = sj->outcome == IRP_JOB_SUCCEEDED ? 0 : 1;
    if (job->step->action != IRP_ACT_WAIT)
        job->outputs = outputs_take(sj);
    sj->ended = true;
    irp_job_finish(job);
}

static void participants_answered(irp_job *job, int choice, const char *note)
{
    sim_job *sj = job->priv;
    if (sj->ended)
        return;
    sj->asking = false;
    if (choice >= 0) {
        finish_manual(job, sj, job->step->act.manual->choices[choice]);
        return;
    }
    if (choice == -2) {
        job->outcome = IRP_JOB_CANCELLED;
    } else {
        job->outcome = IRP_JOB_FAILED;
        snprintf(job->error, sizeof job->error,
                 "needs an answer and there is no terminal to ask: give it in an --answers "
                 "file (%s: %s), with --auto, or with irp answer", job->instance,
                 job->step->act.manual->choices[0]);
        fprintf(stderr, "irp: step '%s' %s\n", job->instance, job->error);
    }
    sj->ended = true;
    irp_job_finish(job);
}

static int sim_start(irp_job *job)
{
    sim_job *sj = job->priv;
    if (job->step->action == IRP_ACT_MANUAL && !job->preset_answer) {
        const irp_manual_action *m = job->step->act.manual;
        sj->asking = true;
        job->ask(job, sj->prompt, m->choices, m->n_choices, participants_answered);
        return 0;
    }
    /* Timed from step.started, not from now: at --speed X the real time
     * its fsync took has moved the clock on, and the journal's times
     * should show the duration drawn. */
    sj->timer.data = job;
    return irp_timer_start(job->clock, &sj->timer,
                           sj->ms - (irp_clock_now_ms(job->clock) - sj->t0), time_is_up);
}

/* The engine stops an attempt: its timeout, an inject's `fail`, an abort
 * (which stops only waits and questions) or a second Ctrl-C.  A wait
 * stopped ends cancelled, as a real one; anything else failed -- the
 * engine tells timed_out and cancelled apart by its own flags. */
static void sim_cancel(irp_job *job, int sig)
{
    (void)sig;
    sim_job *sj = job->priv;
    if (!sj || sj->ended)
        return;
    if (sj->asking) {
        sj->asking = false;
        job->unask(job);
        snprintf(job->error, sizeof job->error, "no answer in time");
    } else if (irp_timer_active(&sj->timer)) {
        irp_timer_stop(&sj->timer);
        snprintf(job->error, sizeof job->error, "stopped before its simulated end");
    } else {
        return;   /* not started yet */
    }
    job->outcome = job->step->action == IRP_ACT_WAIT ? IRP_JOB_CANCELLED : IRP_JOB_FAILED;
    sj->ended = true;
    irp_job_finish(job);
}

static void sim_release(irp_job *job)
{
    sim_job *sj = job->priv;
    if (!sj)
        return;
    irp_timer_stop(&sj->timer);
    job->priv = sj->real_priv;
    if (sj->real)
        sj->real->release(job);
    job->priv = NULL;
    irp_value_unref(sj->outputs);
    free(sj->prompt);
    free(sj);
}

#define SIM_EXECUTOR(kind, slot) \
    { kind, slot, sim_prepare, sim_start, sim_cancel, sim_release }

/* Slots as in a real run, so --jobs shapes the exercise as it would the
 * incident. */
static const irp_executor sim_executors[] = {
    SIM_EXECUTOR(IRP_ACT_RUN, true),     SIM_EXECUTOR(IRP_ACT_MANUAL, false),
    SIM_EXECUTOR(IRP_ACT_NOTIFY, false), SIM_EXECUTOR(IRP_ACT_EVIDENCE, true),
    SIM_EXECUTOR(IRP_ACT_WAIT, false),
};

const irp_executor *irp_exec_sim(irp_action_kind kind)
{
    for (size_t i = 0; i < sizeof sim_executors / sizeof *sim_executors; i++)
        if (sim_executors[i].kind == kind)
            return &sim_executors[i];
    return NULL;
}
