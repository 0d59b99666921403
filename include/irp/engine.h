/* irp — the engine: steps' state machine, scheduling, retries, timeouts,
 * failure policy, `finally`, and the journal events that record it all.
 *
 * One engine serves every mode: the caller chooses the clock and the
 * executors.  The engine drives executors through their table (exec.h)
 * and never knows which kind it runs.  Every event is appended to the
 * journal before the engine acts on it; an action starts only once its
 * `step.started` is durable.
 */
#ifndef IRP_ENGINE_H
#define IRP_ENGINE_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "irp/answers.h"
#include "irp/clock.h"
#include "irp/exec.h"
#include "irp/journal.h"
#include "irp/model.h"
#include "irp/value.h"

typedef enum {
    IRP_ST_PENDING, IRP_ST_WAITING, IRP_ST_AWAITING_INPUT, IRP_ST_RUNNING,
    IRP_ST_SUCCEEDED, IRP_ST_FAILED, IRP_ST_TIMED_OUT, IRP_ST_SKIPPED,
    IRP_ST_CANCELLED, IRP_ST_INTERRUPTED
} irp_state;

const char *irp_state_name(irp_state s);
bool irp_state_ended(irp_state s);

typedef enum { IRP_RUN_SUCCEEDED, IRP_RUN_FAILED, IRP_RUN_INTERRUPTED } irp_run_status;

typedef struct irp_engine irp_engine;

/* Asking the operator.  ask() queues a question with its choices; the
 * prompter calls cb exactly once, later (never inside ask): with the
 * index of the choice made and the note typed (NULL for none; borrowed
 * for the call), -1 when there is no operator to ask (no terminal), or -2
 * when the question is withdrawn by cancel_all().  A terminal lost after
 * questions were asked (SIGHUP) keeps them open: `irp answer` answers
 * them, and withdraw() then takes each back without calling cb. */
typedef void (*irp_answer_cb)(void *arg, int choice, const char *note);
typedef struct irp_prompter {
    void (*ask)(void *ctx, const char *key, const char *question, const char *const *choices,
                size_t n, bool want_note, irp_answer_cb cb, void *arg);
    void (*withdraw)(void *ctx, void *arg);   /* the question asked with arg */
    void (*cancel_all)(void *ctx);
    void *ctx;
} irp_prompter;

typedef struct irp_engine_opts {
    const irp_playbook *pb;          /* validated; borrowed */
    uv_loop_t *loop;
    irp_clock *clock;
    irp_journal *journal;            /* created; the engine appends run.started on.
                                        NULL: events go only to on_event (irp check's
                                        dry runs, which write nothing) */
    const char *mode;                /* "run" */
    const char *run_id, *run_dir;
    const char *operator_name;
    const char *playbook_sha256;
    irp_value *inputs;               /* map, resolved; borrowed */
    int64_t detected_at_ms;          /* UTC ms; the run's start when < 0 */
    unsigned jobs;                   /* child processes at once */
    bool yes;                        /* --yes: every confirmation answered yes */
    irp_answers *answers;            /* --answers, or NULL; borrowed (marks use) */
    bool rerun_interrupted;          /* resume: re-run interrupted instances unasked */
    bool auto_answer;                /* simulate --auto: confirmations take simulate.answer,
                                        else yes; manual steps simulate.answer, else their
                                        first choice (SPEC §5) */
    uint64_t seed;                   /* simulate --seed, handed to executors */
    irp_prompter prompter;           /* ask == NULL: nobody to ask */
    const char *const *base_env;     /* children's environment less secrets */
    const char *const *redact;       /* secret values */
    const irp_executor *(*executor)(irp_action_kind kind);
    /* Called after each event is appended (for the terminal); may be NULL. */
    void (*on_event)(void *ctx, const json_t *ev);
    void *ctx;
} irp_engine_opts;

int irp_engine_new(const irp_engine_opts *opts, irp_engine **out);
/* Start: journal run.started, evaluate vars, start what is ready.  Then
 * run the loop; the engine stops it when the run has ended. */
int irp_engine_start(irp_engine *e);
/* irp resume (SPEC §3): before irp_engine_resume, feed every event of
 * the run's journal, in order.  IRP_ECORRUPT (message in err) when an
 * event does not fit the playbook. */
int irp_engine_restore(irp_engine *e, const json_t *ev, char *err, size_t errlen);
/* Journal run.resumed (its own fields in `fields`, taken; the engine adds
 * `interrupted` and `rerun`) and carry on from where the journal ended:
 * no instance with a journaled finish runs again. */
int irp_engine_resume(irp_engine *e, json_t *fields);

/* Tabletop injects (SPEC §5).  irp_engine_inject_fail: fail step or
 * instance `id` now, without retries -- a running attempt is stopped and
 * fails, one not yet started fails as soon as it starts.  Returns 1 when
 * it had already ended (the caller journals inject.ignored), 0, or
 * IRP_EINVAL for an id that names no step. */
int irp_engine_inject_fail(irp_engine *e, const char *id);
/* Give declared var `name` a new value (steals v); later `when`s see it. */
int irp_engine_set_var(irp_engine *e, const char *name, irp_value *v);
/* Journal an event of the caller's (inject.delivered, inject.ignored):
 * the engine adds ts, wall and event to `fields` (taken). */
int irp_engine_emit(irp_engine *e, const char *event, json_t *fields);

/* Ctrl-C / SIGTERM: the first acts as on_failure abort (finally still
 * runs); the second also terminates running process groups. */
void irp_engine_interrupt(irp_engine *e);
bool irp_engine_done(const irp_engine *e);
irp_run_status irp_engine_status(const irp_engine *e);
/* 0, or the IRP_E* that stopped the journal (the run then exits 4). */
int irp_engine_journal_error(const irp_engine *e);
void irp_engine_free(irp_engine *e);

/* Deadlines, for the terminal: due is UTC ms (0: its clock has not
 * started); status as `deadlines.ID.status` (SPEC §4).  Borrowed. */
typedef struct irp_deadline_info {
    const char *id, *title;
    int64_t due;
    const char *status;
} irp_deadline_info;
size_t irp_engine_ndeadlines(const irp_engine *e);
void irp_engine_deadline(const irp_engine *e, size_t i, irp_deadline_info *info);

/* Step states, for the report written at the end. */
size_t irp_engine_nsteps(const irp_engine *e);
irp_state irp_engine_step_state(const irp_engine *e, size_t i);
/* UTC ms when step i first started and when it ended (0: not yet). */
void irp_engine_step_times(const irp_engine *e, size_t i, int64_t *started, int64_t *finished);

#endif
