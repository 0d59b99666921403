/* irp — answers given in advance (`--answers FILE`, SPEC §2).
 *
 * The file maps step ids or instance ids (`isolate[ws-017]`) to answers:
 *
 *     isolate[ws-017]: "yes"             # a confirmation: yes or no
 *     isolate: "no"                      # every instance not named otherwise
 *     registrar-briefed: { answer: done, note: Registrar briefed by phone }
 *     contain-fs: { confirm: "yes", answer: done }   # manual step with confirm
 *
 * A scalar value is the answer.  A mapping takes `answer`, `note` and,
 * for a `manual` step that also has `confirm`, `confirm` (the scalar or
 * `answer` of such a step answers the manual prompt).  Lookups go from
 * the instance to its step; `--yes` comes after both.
 *
 * Everything is checked when the file is loaded, against the playbook,
 * before anything runs: an id that names no step, a step that asks
 * nothing, an answer that is not yes/no or not one of the step's choices.
 * Instance ids cannot be checked further before their step expands its
 * list; one that matches no instance is reported when the run ends.
 */
#ifndef IRP_ANSWERS_H
#define IRP_ANSWERS_H

#include <stdbool.h>
#include <stddef.h>

#include "irp/diag.h"
#include "irp/model.h"

typedef struct irp_answer {
    const char *key;            /* "isolate" or "isolate[ws-017]" */
    const irp_step *step;
    bool is_instance;           /* the key names one instance */
    const char *confirm;        /* "yes", "no", or NULL: not given */
    const char *answer;         /* a manual step's choice, or NULL */
    const char *note;           /* or NULL */
    unsigned line, col;         /* of the key, for diagnostics */
    bool used;
} irp_answer;

typedef struct irp_answers irp_answers;

/* Load and check FILE against pb.  Problems go to diags with their
 * position; returns 0 and *out (free with irp_answers_free), or the error
 * of an unreadable file, or IRP_EINVAL when any problem was reported. */
int irp_answers_load(const irp_playbook *pb, const char *file, irp_diag_list *diags,
                     irp_answers **out);
void irp_answers_free(irp_answers *a);

/* The entry for an instance: its own, else its step's, else NULL.  Marks
 * what it returns as used.  `a` may be NULL. */
const irp_answer *irp_answers_find(irp_answers *a, const char *instance, const char *step);

/* Entries never used (instance ids that matched no instance); for a
 * warning when the run ends. */
size_t irp_answers_count(const irp_answers *a);
const irp_answer *irp_answers_at(const irp_answers *a, size_t i);
const char *irp_answers_file(const irp_answers *a);

#endif
