/* irp — executors: one action kind each, behind one table.
 *
 * The engine never knows which kind it drives.  For each attempt of a
 * step instance it fills an irp_job, calls `prepare` (render the action
 * with the job's scope and describe it for the journal), journals
 * `step.started`, waits until that is durable, then calls `start`.  The
 * executor ends the attempt exactly once, later or at once, by calling
 * irp_job_finish(); `cancel` asks a running attempt to stop (a signal
 * for processes); `release` frees what prepare/start allocated.
 */
#ifndef IRP_EXEC_H
#define IRP_EXEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "irp/clock.h"
#include "irp/expr.h"
#include "irp/model.h"
#include "irp/value.h"

typedef enum {
    IRP_JOB_SUCCEEDED, IRP_JOB_FAILED, IRP_JOB_CANCELLED,
    IRP_JOB_SKIPPED                /* a manual step answered `skip` */
} irp_job_outcome;

typedef struct irp_job irp_job;

struct irp_job {
    /* Set by the engine, read-only for executors. */
    const irp_step *step;
    const char *instance;          /* "isolate[ws-017]" */
    size_t index;                  /* for_each index (0 without for_each) */
    bool has_index;
    int attempt;                   /* from 1 */
    const irp_scope *scope;
    uv_loop_t *loop;
    irp_clock *clock;
    const char *run_id, *run_dir;
    const char *log_path;          /* absolute; logs/<step>[.<index>].<attempt>.log */
    const char *const *base_env;   /* irp's environment less secrets; NULL-terminated */
    const char *const *redact;     /* secret values to mask in logs */
    const char *operator_name;     /* who runs irp (evidence's collector) */

    /* Filled by the executor before irp_job_finish(). */
    irp_job_outcome outcome;
    int exit_code;                 /* -1 when none */
    int term_signal;               /* 0 when none */
    irp_value *outputs;            /* map of strings, or NULL; the job owns it */
    irp_value *stdout_v;           /* first 64 KiB of stdout, or NULL */
    char log_sha256[65];           /* "" when no log */
    char error[256];               /* why it failed, when not an exit status */

    void *priv;                    /* the executor's */
    void (*on_finish)(irp_job *job);           /* the engine's */
    void (*on_spawn)(irp_job *job, pid_t pid); /* the engine's; may be NULL */
    /* The engine's: append an event about this attempt (evidence.collected,
     * notify.sent).  It takes ev (a new object holding the event's own
     * fields), adds ts, wall, event, step, instance and attempt, and
     * journals it; 0 or the IRP_E* that stopped the journal.  The event
     * is not yet durable on return: it becomes so with the step.finished
     * that follows. */
    int (*emit)(irp_job *job, const char *event, json_t *ev);
    /* The engine's: ask the operator, on the terminal or through `irp
     * answer` (journaled as step.prompted / step.answered with `about`
     * "manual").  cb runs once: the index of the choice and the note
     * typed (NULL: none), or -1 (nobody to ask; maybe inside ask), or -2
     * (withdrawn by an abort).  unask() takes the question back (a
     * timeout) without calling cb. */
    void (*ask)(irp_job *job, const char *prompt, const char *const *choices, size_t n,
                void (*cb)(irp_job *job, int choice, const char *note));
    void (*unask)(irp_job *job);
    const char *preset_answer;     /* given in advance, or NULL */
    const char *preset_note;
    const char *preset_via;        /* "answers-file" or "--auto" */
    uint64_t seed;                 /* --seed of a simulation */
    bool auto_answer;              /* simulate --auto */
    /* Set by the executor: an IRP_E* when the run's own files could not
     * be written (a log, an evidence copy: a full disk).  The run then
     * starts nothing new, skips `finally`, and exits 4 (SPEC §3). */
    int storage_error;
    void *engine_data;
};

typedef struct irp_executor {
    irp_action_kind kind;
    bool takes_slot;               /* counts against --jobs */
    /* Render the action; *action (new reference) describes it for the
     * journal with secrets written as ***.  An expression error returns
     * its IRP_E* code with the message in err. */
    int (*prepare)(irp_job *job, json_t **action, char *err, size_t errlen);
    /* 0: started (irp_job_finish later) or finished at once (already
     * called).  IRP_EBUSY: out of descriptors or processes, try later. */
    int (*start)(irp_job *job);
    void (*cancel)(irp_job *job, int sig);
    void (*release)(irp_job *job);
} irp_executor;

/* Render a playbook string: the text itself when it holds no template,
 * else the template's value (a new reference).  On an expression error
 * returns its code with the message in err. */
int irp_render_str(const irp_str *s, const irp_scope *scope, irp_value **out,
                   char *err, size_t errlen);
/* The same, rendered to malloc'd text; *secret (may be NULL) says whether
 * it derives from a secret. */
int irp_render_text(const irp_str *s, const irp_scope *scope, char **out, bool *secret,
                    char *err, size_t errlen);

/* Ends the current attempt: calls job->on_finish. */
void irp_job_finish(irp_job *job);

/* The executors of real runs (run, wait), by kind; NULL for kinds this
 * build cannot run. */
const irp_executor *irp_exec_real(irp_action_kind kind);

/* The executors of `irp simulate` (exec_sim.c): every kind, nothing real
 * done -- the action is rendered and journaled as simulated, lasts a
 * virtual duration and ends with a drawn outcome (SPEC §5). */
const irp_executor *irp_exec_sim(irp_action_kind kind);

#endif
