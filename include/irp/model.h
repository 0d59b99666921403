/* irp — the playbook model.
 *
 * A loaded playbook is plain data: structs and arrays in one arena, freed
 * once with irp_playbook_free().  Strings borrowed from the model live as
 * long as the playbook.  Every element keeps the position it came from so
 * any later check -- validation, `irp check`, an expression error at run
 * time -- can point at the line a person must fix.
 *
 * Loading (irp_playbook_load) reads the file, parses YAML into nodes,
 * maps the nodes onto these structs with a key table per mapping (unknown
 * keys, wrong types, bad durations are reported there), parses every
 * template and expression, applies `defaults`, and then runs the static
 * validator (validate.h).  All diagnostics of one file come out of one
 * pass.
 */
#ifndef IRP_MODEL_H
#define IRP_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "irp/arena.h"
#include "irp/diag.h"
#include "irp/node.h"

struct irp_template;
struct irp_expr;

typedef struct irp_pos { uint32_t line, col; } irp_pos;

/* A string from the playbook that may hold `${{ }}` templates. */
typedef struct irp_str {
    const char *s;               /* as written (NUL-terminated); NULL = absent */
    uint32_t len;                /* 32 bits, as in a node: 32 bytes a string, not 40 */
    irp_pos pos;                 /* of the scalar */
    irp_node_style style;        /* plain, quoted, block: for locating columns */
    struct irp_template *tpl;    /* parsed; NULL when the string holds no
                                    template (s is the text as is), when
                                    absent, or when it did not parse (an
                                    error was reported) */
} irp_str;

typedef struct irp_kv {
    const char *key;
    irp_pos pos;
    irp_str value;
} irp_kv;

typedef enum {
    IRP_TYPE_STRING, IRP_TYPE_LIST, IRP_TYPE_NUMBER, IRP_TYPE_BOOLEAN, IRP_TYPE_TIME
} irp_input_type;

typedef struct irp_input_spec {
    const char *name;
    irp_pos pos;
    irp_input_type type;
    bool required;
    const char *pattern;         /* POSIX ERE or NULL */
    irp_pos pattern_pos;
    const irp_node *def;         /* `default`, or NULL */
    const irp_node *example;     /* `example`, or NULL */
    const char *description;
} irp_input_spec;

/* A derived value.  Plain `true`/`false`/`null` are typed; every other
 * scalar is a templated string (a string that is exactly one template
 * keeps the expression's type); lists hold templated items. */
typedef enum { IRP_VAR_NULL, IRP_VAR_BOOL, IRP_VAR_STR, IRP_VAR_LIST } irp_var_kind;

typedef struct irp_var {
    const char *name;
    irp_pos pos;
    irp_var_kind kind;
    bool b;
    irp_str str;
    irp_str *items;
    size_t n_items;
} irp_var;

typedef enum {
    IRP_PHASE_NONE, IRP_PHASE_PREPARATION, IRP_PHASE_DETECTION, IRP_PHASE_ANALYSIS,
    IRP_PHASE_CONTAINMENT, IRP_PHASE_ERADICATION, IRP_PHASE_RECOVERY, IRP_PHASE_POST_INCIDENT
} irp_phase;

typedef enum { IRP_TLP_CLEAR, IRP_TLP_GREEN, IRP_TLP_AMBER, IRP_TLP_AMBER_STRICT, IRP_TLP_RED } irp_tlp;

typedef enum { IRP_FAIL_CONTINUE, IRP_FAIL_ABORT, IRP_FAIL_IGNORE } irp_on_failure;

typedef enum {
    IRP_ACT_NONE, IRP_ACT_RUN, IRP_ACT_MANUAL, IRP_ACT_NOTIFY, IRP_ACT_EVIDENCE, IRP_ACT_WAIT
} irp_action_kind;

typedef enum { IRP_WHEN_DEFAULT, IRP_WHEN_TRUE, IRP_WHEN_FALSE, IRP_WHEN_EXPR } irp_when_kind;

typedef enum { IRP_OUTCOME_NONE, IRP_OUTCOME_SUCCEEDED, IRP_OUTCOME_FAILED } irp_sim_outcome;

typedef struct irp_simulate {
    int64_t dur_min_ms, dur_max_ms;      /* equal unless a range was given */
    irp_pos dur_pos;
    double success_rate;                 /* 0..1 */
    irp_kv *outputs;
    size_t n_outputs;
    const char *answer;                  /* NULL = none */
    irp_sim_outcome outcome;
    bool has_duration;
    bool has_success_rate;
} irp_simulate;

typedef struct irp_run_action {
    bool shell;                          /* `run: "string"` through /bin/sh -c */
    irp_str script;                      /* shell form */
    irp_str *argv;                       /* argv form */
    size_t argc;
} irp_run_action;

typedef struct irp_manual_action {
    irp_str prompt;
    const char **choices;                /* default: done, failed, skip */
    size_t n_choices;
    const char *assignee;
} irp_manual_action;

typedef enum { IRP_VIA_WEBHOOK, IRP_VIA_EMAIL, IRP_VIA_FILE } irp_notify_via;
typedef enum { IRP_STARTTLS_REQUIRED, IRP_STARTTLS_NONE } irp_starttls;

typedef struct irp_notify_action {
    irp_notify_via via;
    irp_str url;                         /* webhook */
    irp_kv *headers;
    size_t n_headers;
    irp_str content_type;
    irp_str server, from, username, password;   /* email */
    irp_str *to;                         /* email: recipients; file: one path */
    size_t n_to;
    irp_starttls starttls;
    irp_str subject, body;
    bool tls_verify;                     /* default true */
    irp_str ca_file;
} irp_notify_action;

typedef struct irp_evidence_item {
    irp_pos pos;
    irp_str path;                        /* {path: P}, or .s == NULL */
    irp_str *argv;                       /* {run: [argv], name: N} */
    size_t argc;
    const char *name;
} irp_evidence_item;

typedef struct irp_evidence_action {
    irp_evidence_item *items;
    size_t n_items;
    const char *into;                    /* NULL = the step id */
} irp_evidence_action;

typedef struct irp_wait_action {
    int64_t duration_ms;                 /* `wait: 30m`; -1 with `until` */
    irp_str until;
} irp_wait_action;

/* Bits of irp_step.set: which fields the step (or `defaults`) wrote, so
 * defaults apply only where the step is silent. */
enum {
    IRP_SET_TIMEOUT = 1u << 0, IRP_SET_RETRIES = 1u << 1, IRP_SET_RETRY_DELAY = 1u << 2,
    IRP_SET_RETRY_BACKOFF = 1u << 3, IRP_SET_ON_FAILURE = 1u << 4, IRP_SET_IDEMPOTENT = 1u << 5,
    IRP_SET_CWD = 1u << 6, IRP_SET_CONFIRM = 1u << 7
};

/* What few steps say, apart so that a step stays small (a third of it
 * before): every step points to one, most to irp_step_rare_none. */
typedef struct irp_step_rare {
    irp_str for_each_expr;               /* `for_each: ${{ … }}` */
    irp_str *for_each_items;             /* `for_each: [a, b]` */
    size_t n_for_each_items;
    irp_str confirm_prompt;              /* .s NULL: a default prompt */
    irp_str cwd;
} irp_step_rare;

/* All empty: the rare fields of a step that has none of them. */
extern const irp_step_rare irp_step_rare_none;

typedef struct irp_step {
    /* What the passes over every step after building (defaults, needs,
     * cycles) read comes first, so each touches one or two cache lines of
     * a step, not all six: a 100,000-step playbook holds 100,000 steps. */
    const char *id;
    irp_pos pos;
    size_t index;                        /* in playbook->steps */
    const char *title;                   /* never NULL: defaults to the id */
    irp_phase phase;
    unsigned set;                        /* IRP_SET_* */
    irp_action_kind action;
    bool is_finally;
    bool needs_given;                    /* false: the step listed before */
    bool has_for_each;
    bool for_each_is_list;
    bool confirm;
    bool idempotent;
    irp_when_kind when_kind;

    const char **needs;
    irp_pos *needs_pos;
    size_t n_needs;
    size_t *deps;                        /* resolved indices (validate) */
    size_t n_deps;

    struct irp_expr *when;
    irp_pos when_pos;
    const char *when_src;
    irp_node_style when_style;

    const irp_step_rare *rare;           /* never NULL */
    int64_t timeout_ms;                  /* -1: none */
    int retries;
    irp_on_failure on_failure;
    int64_t retry_delay_ms;
    double retry_backoff;
    irp_kv *env;
    size_t n_env;
    irp_simulate sim;

    irp_pos action_pos;
    /* The action's data, allocated apart so a step stays small.  Never
     * NULL once `action` is set. */
    union {
        irp_run_action *run;
        irp_manual_action *manual;
        irp_notify_action *notify;
        irp_evidence_action *evidence;
        irp_wait_action *wait;
        void *any;
    } act;
} irp_step;

typedef enum { IRP_FROM_DETECTED, IRP_FROM_START, IRP_FROM_STEP } irp_deadline_from;

typedef struct irp_deadline {
    const char *id;
    irp_pos pos;
    const char *title;
    int64_t within_ms;
    irp_deadline_from from;
    const char *from_step;
    irp_pos from_pos;
    size_t from_idx;                     /* resolved (validate) */
    const char *met_by;                  /* NULL = none */
    irp_pos met_by_pos;
    size_t met_by_idx;
    int64_t warn_before_ms;              /* 0 = none */
} irp_deadline;

/* An entry of the step index: the id and its hash are copied in, so a
 * lookup touches the steps themselves only for the step it finds. */
struct irp_step_slot {
    const char *id;                      /* NULL: empty */
    uint32_t hash;
    uint32_t index;
};

typedef struct irp_playbook {
    irp_arena arena;
    const char *file;                    /* as named by the user; borrowed */
    const char *src;                     /* exact bytes as read (for hash and copy) */
    size_t src_len;
    size_t src_mapped;                   /* see irp_file_map(); 0: malloc'd */
    const irp_node *root;

    const char *id;
    irp_pos id_pos;
    const char *title;
    const char *description;
    irp_tlp tlp;

    irp_input_spec *inputs;
    size_t n_inputs;
    irp_var *vars;
    size_t n_vars;
    irp_deadline *deadlines;
    size_t n_deadlines;
    irp_step *steps;                     /* `steps`, then `finally` */
    size_t steps_mapped;                 /* bytes mapped for steps (they are
                                            built before their number is
                                            known, and grow in place) */
    size_t n_steps;
    size_t n_main;                       /* steps[0..n_main) are `steps` */
    struct irp_step_slot *step_table;    /* id hash → step (validate) */
    size_t step_table_cap;               /* a power of two, or 0 */
} irp_playbook;

/* Read, parse, build and validate a playbook.  Returns 0 and *out when it
 * is free of errors (warnings allowed).  On an unreadable file returns
 * that error (IRP_ENOENT, IRP_EACCES, IRP_ELIMIT...) with a diagnostic;
 * on errors in the playbook returns IRP_EPARSE and still sets *out when a
 * model could be built, so callers such as `check` can go on reporting.
 * Caller frees *out with irp_playbook_free().  `path` is borrowed by the
 * playbook and the diagnostics: it must outlive both. */
int irp_playbook_load(const char *path, irp_diag_list *diags, irp_playbook **out);

/* The same from bytes already in memory (copied); `name` is borrowed. */
int irp_playbook_load_mem(const char *name, const char *buf, size_t len,
                          irp_diag_list *diags, irp_playbook **out);

void irp_playbook_free(irp_playbook *pb);

/* Where byte `off` of a playbook string is in the file, for diagnostics
 * about a part of it (an expression inside a template). */
irp_pos irp_str_pos(const irp_playbook *pb, const irp_str *s, size_t off);

/* Find a step by id; NULL when there is none. */
const irp_step *irp_playbook_step(const irp_playbook *pb, const char *id);
const irp_input_spec *irp_playbook_input(const irp_playbook *pb, const char *name);
const irp_var *irp_playbook_var(const irp_playbook *pb, const char *name);

const char *irp_phase_name(irp_phase p);
const char *irp_tlp_name(irp_tlp t);
const char *irp_action_name(irp_action_kind k);
const char *irp_input_type_name(irp_input_type t);

#endif
