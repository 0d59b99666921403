/* Internal: what `irp run` and `irp resume` share -- one way to execute a
 * loaded playbook, whether its run directory is new or resumed. */
#ifndef IRP_RUN_EXEC_H
#define IRP_RUN_EXEC_H

#include <stdbool.h>

#include "irp/answers.h"
#include "irp/cli.h"
#include "irp/engine.h"
#include "irp/journal.h"
#include "irp/model.h"
#include "irp/value.h"
#include "strvec.h"

/* A run directory being resumed (cmd_resume.c). */
typedef struct run_resume {
    char *dir;                   /* absolute */
    char *run_id;
    char *jpath;
    irp_journal_open_info info;  /* what opening the journal found */
} run_resume;

/* irp simulate: what differs from a real run (SPEC §5). */
typedef struct run_sim {
    int64_t start_ms;            /* the virtual clock's start, UTC ms */
    double speed;                /* IRP_CLOCK_SPEED_MAX, or virtual s per real s */
    uint64_t seed;
    bool auto_answer;
    const irp_executor *(*executor)(irp_action_kind kind);
    /* Called once the engine has started (schedule injects on the clock),
     * and once the run has ended, before the clock closes. */
    void (*started)(void *ctx, irp_engine *e, irp_clock *clock);
    void (*ended)(void *ctx);
    void *ctx;
    struct liveview *view;       /* set before started(): the live view, or NULL */
} run_sim;

typedef struct run_args {
    const char *playbook, *inputs_file, *runs, *operator_name, *detected_at, *answers_file;
    strvec iargs;
    irp_answers *answers;        /* --answers, loaded and checked */
    unsigned jobs;
    bool yes, no_fsync, rerun_interrupted;
    run_resume *resume;          /* NULL: a new run */
    run_sim *sim;                /* NULL: a real run */
} run_args;

/* Collect the secrets the playbook reads, then execute it; an exit status. */
int run_loaded(const irp_playbook *pb, run_args *a, irp_value *inputs,
               const irp_cli_common *common);

/* cmd_resume.c: take the run's lock and open its journal (a last line cut
 * off mid-write is dropped); an exit status on failure. */
int run_resume_open(const irp_playbook *pb, run_args *a, char **dir, irp_journal **j);
/* Replay the journal into the engine and carry on. */
void run_resume_start(run_args *a, irp_engine *e);

#endif
