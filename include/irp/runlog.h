/* irp — a run rebuilt from its journal (status, report).
 *
 * irp_runlog_load() replays RUN_DIR/journal.jsonl into a read-only model:
 * the run's metadata, every step and instance with its state, times and
 * attempts, the prompts and answers, notes, evidence, notifications and
 * deadlines, and the journal head.  The journal is the only source of
 * truth; RUN_DIR/playbook.yaml (the exact copy that was run) adds what the
 * journal does not carry: step titles and phases, their order, and the
 * steps that have not journaled anything yet.
 *
 * Reading takes no lock and writes nothing, so it works on a live run: a
 * last line still being written (no newline yet) is left out.
 *
 * Everything in the model is owned by the irp_runlog and lives until
 * irp_runlog_free(): strings and `const json_t *` are borrowed from the
 * journal's events, which the runlog keeps, or from its arena.
 */
#ifndef IRP_RUNLOG_H
#define IRP_RUNLOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "irp/arena.h"
#include "irp/engine.h"
#include "irp/journal.h"

/* At most this many journal lines are loaded (IRP_ELIMIT beyond). */
#define IRP_RUNLOG_MAX_EVENTS ((size_t)10 * 1000 * 1000)

/* One attempt of an instance: step.started .. step.finished. */
typedef struct irp_runlog_attempt {
    int number;                      /* from 1 */
    bool began, ended;               /* step.started, step.finished seen */
    int64_t started_ms, finished_ms; /* UTC ms; -1 when not (yet) journaled */
    const char *status;              /* step.finished status; NULL while it runs */
    int64_t duration_ms;             /* -1 when absent */
    int64_t exit_code;               /* -1 when absent */
    int64_t signal;                  /* 0 when absent */
    int64_t pid;                     /* step.spawned; 0 when absent */
    const char *error;               /* NULL when absent */
    const json_t *started;           /* the step.started event, or NULL
                                        (always NULL in a fed runlog) */
    const json_t *finished;          /* the step.finished event, or NULL
                                        (always NULL in a fed runlog) */
} irp_runlog_attempt;

/* internal: id → position in an array, by open addressing; the ids are
 * borrowed from the array's elements. */
struct irp_runlog_slot;
typedef struct irp_runlog_index {
    struct irp_runlog_slot *slots;   /* cap of them (a power of two), or NULL */
    size_t cap, n;
} irp_runlog_index;

typedef struct irp_runlog_instance {
    const char *id;                  /* `ID`, `ID[item]` or `ID[index]` */
    size_t index;                    /* in the for_each list (0 without one) */
    const json_t *item;              /* the for_each item, or NULL */
    irp_state state;
    const char *reason;              /* why skipped or cancelled, or NULL */
    int64_t started_ms, finished_ms; /* first start, end; -1 when absent */
    irp_runlog_attempt *attempts;
    size_t n_attempts;
    size_t cap_attempts;
} irp_runlog_instance;

typedef struct irp_runlog_step {
    const char *id;
    const char *title;               /* from playbook.yaml; else the id */
    const char *phase;               /* "" when none or unknown; static */
    bool is_finally;
    bool has_for_each;               /* a step.expanded was journaled */
    bool ended_as_whole;             /* an event without `instance` ended it */
    irp_state state;
    const char *reason;              /* why the whole step was skipped,
                                        cancelled or failed, or NULL */
    int64_t started_ms, finished_ms; /* -1 when absent */
    const json_t *items;             /* step.expanded items, or NULL */
    irp_runlog_instance *insts;
    size_t n_insts;
    size_t cap_insts;
    irp_runlog_index inst_index;     /* internal: instance id → index, once
                                        there are more than a few */
} irp_runlog_step;

/* A question to the operator and its answer. */
typedef struct irp_runlog_prompt {
    const char *step, *instance;     /* instance NULL: the whole step */
    const json_t *asked;             /* step.prompted */
    const json_t *answered;          /* step.answered, or NULL: still open
                                        (or withdrawn, see below) */
    int64_t asked_ms, answered_ms;
    bool withdrawn;                  /* the step ended without an answer */
} irp_runlog_prompt;

typedef struct irp_runlog_deadline {
    const char *id, *title, *from;   /* title, from: NULL when unknown */
    int64_t within_ms;               /* -1 when unknown */
    int64_t due_ms;                  /* -1 when not known yet */
    const char *status;              /* not_started running warning met
                                        missed open (SPEC §4); static */
    bool has_margin;
    int64_t margin_ms;               /* met: due minus met time */
    int64_t warned_ms, ended_ms;     /* -1 when absent */
} irp_runlog_deadline;

/* Who took part, and how. */
enum {
    IRP_RUNLOG_STARTED = 1u << 0, IRP_RUNLOG_ANSWERED = 1u << 1, IRP_RUNLOG_NOTED = 1u << 2,
    IRP_RUNLOG_RESUMED = 1u << 3
};
typedef struct irp_runlog_operator {
    const char *name;
    unsigned roles;                  /* IRP_RUNLOG_* */
    size_t answers, notes;
} irp_runlog_operator;

typedef struct irp_runlog {
    /* the journal */
    json_t **events;                 /* every whole line, in order; owned
                                        (empty in a fed runlog) */
    size_t n_events;                 /* lines replayed */
    char head[IRP_SHA256_HEX];       /* SHA-256 of the last line; 64 zeros
                                        when empty */
    bool partial;                    /* a last line without newline was left out */
    char damage[512];                /* "" or "line N: what is wrong": lines
                                        before N are in the model */

    /* run.started (NULLs and -1 when the journal lacks it) */
    const json_t *started;
    const char *run_id, *mode, *operator_name, *host, *irp_version;
    const char *pb_id, *pb_title, *pb_tlp, *pb_sha256;
    char tlp_label[40];              /* "TLP:AMBER"; AMBER when unknown */
    const json_t *inputs;
    int64_t started_ms, detected_ms, last_ms;   /* last_ms: ts of the last line */

    /* run.finished: the last one after the last run.resumed */
    const char *status;              /* NULL: not finished */
    int64_t finished_ms;
    const json_t *counts;

    irp_runlog_step *steps;          /* playbook order, then any others */
    size_t n_steps, cap_steps;
    irp_runlog_index step_index;     /* internal: step id → index, so a
                                        replay is linear in the journal */
    bool playbook_loaded;            /* titles and phases came from playbook.yaml */

    irp_runlog_prompt *prompts;
    size_t n_prompts, cap_prompts;
    irp_runlog_deadline *deadlines;
    size_t n_deadlines, cap_deadlines;
    irp_runlog_operator *operators;
    size_t n_operators, cap_operators;

    /* events by kind, in journal order; borrowed from events[] */
    const json_t **notes, **evidence, **notifications, **resumes, **interrupts;
    size_t n_notes, n_evidence, n_notifications, n_resumes, n_interrupts;

    irp_arena strings;               /* instances, attempts and the copies
                                        of strings the model keeps */
    struct irp_runlog_ts_memo {      /* internal: the last `ts` parsed and
                                        its time (see irp_runlog_event_read) */
        char text[40];
        int64_t ms;
    } ts_memo;

    /* a fed runlog (irp_runlog_feed) */
    bool fed;
    const irp_playbook *pb;          /* borrowed, for titles, ids and order */
    json_t **kept;                   /* the other events, owned */
    size_t n_kept, cap_kept;
} irp_runlog;

/* Load RUN_DIR's journal.  Returns 0 with *out set; the caller frees it
 * with irp_runlog_free().  IRP_ENOENT / IRP_EACCES / IRP_EIO when the
 * directory or journal cannot be read (*out NULL, err says which).  A
 * damaged journal is IRP_ECORRUPT: *out is still set, with the lines
 * before the damage, and (*out)->damage and err name the line.
 * IRP_ELIMIT for a line or a journal over the limits, IRP_ENOMEM. */
int irp_runlog_load(const char *run_dir, irp_runlog **out, char *err, size_t errlen);
/* The same, with the run's playbook already loaded (borrowed; used only if
 * its SHA-256 is the journal's): the run that just ended need not parse
 * its playbook a second time for the titles. */
int irp_runlog_load_pb(const char *run_dir, const irp_playbook *pb, irp_runlog **out,
                       char *err, size_t errlen);

/* A runlog built while a run writes its journal, line by line, so the
 * report at the run's end needs no second read of the journal (and no
 * second parse and hash of every line).  It keeps the rare events whole
 * but of the step events (started, spawned, finished, skipped, cancelled,
 * retrying, waiting) only what the model holds, so its size grows with
 * the steps, not with the journal.  events[] stays empty and attempts'
 * `started` and `finished` stay NULL: it renders as Markdown only, with
 * the timeline written as the lines come (see irp_report_stream).
 *
 * irp_runlog_new_fed: pb (borrowed, must outlive the runlog) is the
 * playbook the run executes.  irp_runlog_feed: one line of the journal,
 * in order from the first (borrowed; taken with json_incref when kept).
 * irp_runlog_settle: the journal ended with `head`; aggregate step states
 * and deadlines as irp_runlog_load does.  Returns IRP_ENOMEM or
 * IRP_ELIMIT; the runlog is then no longer complete. */
int irp_runlog_new_fed(const irp_playbook *pb, irp_runlog **out);
int irp_runlog_feed(irp_runlog *log, json_t *line);
void irp_runlog_settle(irp_runlog *log, const char *head);

/* The kinds of journal lines the model tells apart. */
typedef enum irp_runlog_kind {
    IRP_RUNLOG_EV_NONE,              /* no `event` */
    IRP_RUNLOG_EV_OTHER,
    IRP_RUNLOG_EV_STEP_STARTED, IRP_RUNLOG_EV_STEP_SPAWNED, IRP_RUNLOG_EV_STEP_FINISHED,
    IRP_RUNLOG_EV_STEP_SKIPPED, IRP_RUNLOG_EV_STEP_CANCELLED, IRP_RUNLOG_EV_STEP_RETRYING,
    IRP_RUNLOG_EV_STEP_WAITING, IRP_RUNLOG_EV_STEP_EXPANDED, IRP_RUNLOG_EV_STEP_PROMPTED,
    IRP_RUNLOG_EV_STEP_ANSWERED, IRP_RUNLOG_EV_STEP_OTHER,   /* another step.* */
    IRP_RUNLOG_EV_DEADLINE,          /* deadline.* */
    IRP_RUNLOG_EV_RUN_STARTED, IRP_RUNLOG_EV_RUN_FINISHED, IRP_RUNLOG_EV_RUN_RESUMED,
    IRP_RUNLOG_EV_RUN_INTERRUPTED, IRP_RUNLOG_EV_RUN_OTHER,  /* another run.* */
    IRP_RUNLOG_EV_NOTE, IRP_RUNLOG_EV_EVIDENCE, IRP_RUNLOG_EV_NOTIFY
} irp_runlog_kind;

/* An integer member: set false when absent or not an integer. */
typedef struct irp_runlog_int {
    bool set;
    int64_t v;
} irp_runlog_int;

/* The fields of a journal line that the model and the timeline read for
 * every step event, found in one pass over the line; the others are
 * looked up in `line` when needed.  Strings and values are borrowed from
 * the line; NULL when absent (strings: also when not a string).  `line`
 * is NULL for an event read from fields (irp_runlog_event_read_fields):
 * the step events irp_runlog_event_fast() says need no more. */
typedef struct irp_runlog_event {
    const json_t *line;
    const char *name;                /* `event` */
    irp_runlog_kind kind;
    const char *ts;
    int64_t ts_ms;                   /* -1 when absent or not a time */
    const char *step, *instance, *op, *collector;   /* op: `operator` */
    const char *status, *error, *reason;
    const json_t *action;
    irp_runlog_int attempt, pid, exit_code, signal, duration_ms, delay_ms, next_attempt;
    long step_index;                 /* irp_event's hint, or -1 */
} irp_runlog_event;

/* Read `line` into *ev.  memo (or NULL) keeps the last time parsed, so a
 * burst of lines with the same time parses it once: start it as
 * IRP_RUNLOG_TS_MEMO_INIT. */
typedef struct irp_runlog_ts_memo irp_runlog_ts_memo;
#define IRP_RUNLOG_TS_MEMO_INIT { "", -1 }
void irp_runlog_event_read(const json_t *line, irp_runlog_ts_memo *memo, irp_runlog_event *ev);
/* The same for an event made of fields (irp/event.h), which *ev then
 * borrows; ev->line is NULL. */
struct irp_event;
void irp_runlog_event_read_fields(const struct irp_event *fields, irp_runlog_ts_memo *memo,
                                  irp_runlog_event *ev);
/* Whether the model and the timeline need nothing of an event of kind k
 * but what irp_runlog_event holds (no `line`). */
bool irp_runlog_event_fast(irp_runlog_kind k);
/* irp_runlog_feed for a line already read with irp_runlog_event_read. */
int irp_runlog_feed_event(irp_runlog *log, json_t *line, const irp_runlog_event *ev);

void irp_runlog_free(irp_runlog *log);

/* Whether a process holds RUN_DIR/lock (SPEC §3): 1 yes (the run is live),
 * 0 no, -1 there is no lock file or it cannot be opened. */
int irp_runlog_live(const char *run_dir);

/* A deadline's remaining time at `now_ms` (UTC): due − now for a deadline
 * whose clock runs, the margin for one met, due − end for one open, and
 * false when there is nothing to say (not started, no due time). */
bool irp_runlog_remaining(const irp_runlog *log, const irp_runlog_deadline *d,
                          int64_t now_ms, int64_t *ms);

/* Look-ups; NULL when absent. */
const irp_runlog_step *irp_runlog_step_get(const irp_runlog *log, const char *id);

/* "T+01:02:03.456": ms after the run's start (T- before it). */
void irp_runlog_offset(int64_t ms, char *buf, size_t n);

#endif
