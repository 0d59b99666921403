/* Internal to the engine. */
#ifndef IRP_ENGINE_INT_H
#define IRP_ENGINE_INT_H

#include "irp/arena.h"
#include "irp/engine.h"
#include "irp/timeutil.h"

/* inst.decision: nobody could be asked (no terminal, no answer). */
#define DECIDE_NOBODY (-2)
/* inst.decision: the question was withdrawn (abort, Ctrl-C). */
#define DECIDE_CANCELLED (-3)

/* What the journal of an earlier run of the same run directory says about
 * one instance (irp resume). */
typedef struct restored {
    int attempt;                 /* last attempt started; 0: none */
    bool in_flight;              /* started, and no finish after it */
    bool ended;                  /* a finish (or skip) that stands */
    irp_state state;             /* when ended */
    signed char decision;        /* its own confirm answer: 1, -1, 0 none */
    int exit_code;
    long pgid;                   /* of the in-flight attempt's process group */
    json_t *outputs;
    int64_t started_wall, finished_wall;
} restored;

typedef struct sstate sstate;
typedef struct inst inst;
typedef struct equestion equestion;

typedef enum {
    IRP_DL_NOT_STARTED, IRP_DL_RUNNING, IRP_DL_WARNING, IRP_DL_MET, IRP_DL_MISSED, IRP_DL_OPEN
} dl_status;

/* A deadline's clock. */
typedef struct dstate {
    irp_engine *e;
    const irp_deadline *def;
    dl_status status;
    dl_status restored_status;   /* irp resume: what the journal says, or 0 */
    int64_t due, met_at;         /* UTC ms; 0: not known yet */
    irp_timer timer, warn_timer;
} dstate;

struct scope_ctx {
    irp_engine *e;
    inst *in;                    /* NULL outside an instance */
};

/* An attempt's job, taken from the engine's free list when the attempt
 * begins and given back when it has finished: only the few live attempts
 * carry an irp_job (most of it the executor's result buffers), so a
 * 100,000-instance run keeps none of it per instance and the live ones
 * stay in cache. */
typedef struct ejob {
    irp_job job;                 /* first: an irp_job * is an ejob * */
    struct ejob *next_free;
    char *log_path;              /* this attempt's log; malloc'd, kept for the next */
    size_t log_cap;
    bool on_stack;               /* an attempt failed before it began */
    struct scope_ctx sctx;       /* job.scope: templates see the instance */
    irp_scope scope;
} ejob;

/* One per instance of every step that got as far as having instances:
 * 100,000 of them in a long playbook, so what only an attempt needs is
 * in its ejob, and what can be worked out (the index, the engine) is. */
struct inst {
    sstate *st;
    const char *id;              /* "step[item]" / "step[3]" in e->mem; without
                                    for_each, the step's own id */
    irp_value *item;             /* NULL without for_each */
    irp_state state;
    int attempt;
    int64_t started_mono, started_wall, finished_wall;
    irp_job *job;                /* the live attempt's (an ejob), or NULL */
    equestion *question;         /* a manual step's open question */
    void (*answer_cb)(irp_job *job, int choice, const char *note);
    irp_timer timer;             /* timeout, retry delay */
    irp_timer *kill_timer;       /* SIGKILL some seconds after SIGTERM; made
                                    when first needed (engine_kill_later) */
    bool job_live;               /* prepare ran; release pending */
    bool timed_out;
    bool has_slot;               /* counts against --jobs */
    bool no_retry;               /* this failure is not retried (expression, journal) */
    bool force_fail;             /* an inject failed it (simulate) */
    bool stopped_by_user;        /* a second Ctrl-C terminated it */
    signed char decision;        /* confirm: 0 not yet, 1 yes, -1 no, DECIDE_NOBODY */
    int exit_code;
    irp_value *outputs, *stdout_v;
    inst *next;                  /* in the slot queue */
};

/* Fields in order of use, small ones together: a 100,000-step run keeps
 * one per step. */
struct sstate {
    const irp_step *def;
    irp_state state;
    bool ready;                  /* became ready (expanded or skipped) */
    bool force_fail;             /* an inject failed the step before it started */
    signed char restored_decision;
    bool restored_end;
    irp_engine *engine;
    size_t *dependents;          /* in e->dependents */
    size_t n_dependents;
    inst *insts;
    size_t n, n_ended;
    json_t *id_json;             /* def->id as a json string, while it runs */
    int64_t started_wall, finished_wall;
    int64_t prompted_wall;
    size_t asking;               /* instances asked one by one, not yet answered */
    /* irp resume: what the journal says about the step as a whole (with
     * restored_decision and restored_end above). */
    irp_state restored_state;
    json_t *items_restored;      /* its step.expanded list */
    int64_t restored_finish;     /* latest finish of its journaled instances */
    size_t n_restored;           /* instances ended from the journal */
};

static inline irp_engine *inst_engine(const inst *in)
{
    return in->st->engine;
}

/* Its index in its step's instances (for_each's order). */
static inline size_t inst_index(const inst *in)
{
    return (size_t)(in - in->st->insts);
}

/* A time as journal text, and the time it was made for ("" when none);
 * json is that text as a json string, shared by the events of that time
 * (or NULL). */
typedef struct time_text {
    int64_t ms;
    char text[IRP_TIME_BUFSZ];
    json_t *json;
} time_text;

/* Event names the engine journals once or twice per instance, as json
 * strings made once. */
#define ENGINE_N_HOT_NAMES 8
/* Small integers (attempts, exit codes) as json numbers, made once. */
#define ENGINE_N_SMALL_INTS 16

struct irp_engine {
    irp_engine_opts o;
    irp_arena mem;               /* instances and their ids */
    sstate *steps;
    size_t *dependents;          /* every step's dependents, in one block */
    /* Per step, its needs not ended yet: apart from the steps, so that
     * counting down a step's dependents touches one small array. */
    size_t *deps_left;
    size_t n_steps, n_main, main_ended, total_ended;
    irp_value *vars;             /* map */
    inst *queue_head, *queue_tail;
    unsigned open_prompts;       /* questions asked, not yet answered */
    equestion *questions;
    uv_timer_t *poll;            /* reads answers others journal, while asking */
    inst *busy, *busy_tail;      /* journaled, waiting for a descriptor; in order */
    size_t n_busy;
    unsigned running_slots;
    bool aborting, interrupted, kill_sent, finished, finally_started;
    int journal_err;
    int storage_err;             /* a log or evidence copy could not be written */
    json_t *force_fail_ids;      /* instances an inject failed before they existed */
    dstate *deadlines;
    size_t n_deadlines;
    int64_t started_wall;
    int64_t last_event_wall;     /* ts of the last event made */
    /* The last text made for each of an event's two times: at full speed
     * many events share a millisecond, and formatting one costs more
     * than the comparison. */
    time_text ts_text, wall_text;
    json_t *hot_names[ENGINE_N_HOT_NAMES];
    json_t *small_ints[ENGINE_N_SMALL_INTS];
    json_t *empty_object;        /* {}, shared by the events that have one */
    irp_run_status final_status; /* as run.finished said */
    /* irp resume */
    json_t *restored_ix;         /* instance id → index in recs */
    restored *recs;
    size_t n_recs, cap_recs;
    json_t *rs_interrupted, *rs_rerun;  /* for run.resumed */
    ejob *free_jobs;             /* jobs of finished attempts, for the next */
    struct scope_ctx run_sctx;
    irp_scope run_scope;
};

/* engine.c: call cb (SIGKILL) on in after ms, with a timer in->kill_timer
 * made when first needed: few instances ever need one.  False when
 * there was no memory for it; the caller kills at once then. */
bool engine_kill_later(irp_engine *e, inst *in, int64_t ms, irp_timer_cb cb);
void engine_kill_cancel(inst *in);

/* engine_scope.c */
int engine_lookup(void *ctx, const char *const *seg, size_t n, irp_value **out,
                  char *errbuf, size_t errlen);
int engine_eval_vars(irp_engine *e, char *err, size_t errlen);
irp_value *engine_step_value(irp_engine *e, const sstate *st, const char *field, const char *key);

/* engine_ask.c: ask the operator (journaled both ways).  fn gets the
 * index of the choice, or -1 (nobody to ask) or -2 (withdrawn by an
 * abort); it may run inside engine_ask when nobody can be asked. */
typedef void (*engine_answer_fn)(irp_engine *e, void *arg, int choice, const char *note);
equestion *engine_ask(irp_engine *e, const char *step, const char *instance, const char *about,
                      const char *prompt, const char *const *choices, size_t n, bool want_note,
                      engine_answer_fn fn, void *arg);
/* Take a question back without an answer (a manual step's timeout). */
void engine_unask(irp_engine *e, equestion *q);
void engine_ask_close(irp_engine *e);

/* engine_deadline.c */
int engine_deadlines_init(irp_engine *e);
void engine_deadlines_start(irp_engine *e);
json_t *engine_deadlines_json(irp_engine *e);
void engine_deadlines_step_ended(irp_engine *e, const sstate *st);
void engine_deadlines_end(irp_engine *e);
void engine_deadlines_free(irp_engine *e);
void engine_deadlines_restore(irp_engine *e, const char *event, const json_t *ev);
int engine_deadline_value(irp_engine *e, const char *id, const char *field, irp_value **out);
int64_t engine_detected_ms(const irp_engine *e);

/* engine_resume.c */
restored *engine_restored(irp_engine *e, const char *instance);
/* An instance the journal knows: end it as it ended, or run it again
 * (retry due, interrupted and allowed), or wait or ask first.  false:
 * nothing is known, start it as usual. */
bool engine_resume_inst(irp_engine *e, inst *in);
void engine_resume_free(irp_engine *e);
/* Fill rs_interrupted and rs_rerun (the instances resume re-runs unasked). */
void engine_resume_lists(irp_engine *e);

/* engine.c */
void engine_enqueue(irp_engine *e, inst *in);
void engine_inst_end(irp_engine *e, inst *in, irp_state state);
int engine_emit(irp_engine *e, json_t *ev, uint64_t *seq);
json_t *engine_event(irp_engine *e, const char *name);

#endif
