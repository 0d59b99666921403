/* irp — tabletop scenarios (`irp simulate --scenario FILE`, SPEC §1.5, §5).
 *
 *     scenario: icc-2023-tabletop
 *     start: 2023-09-08T18:00:00Z        # virtual start (default: now)
 *     injects:
 *       - at: 30m                        # after the start, on the virtual clock
 *         title: Press inquiry
 *         message: A journalist asks whether court records were accessed.
 *       - at: 2h
 *         fail: isolate[fs-02]           # a step or instance of the playbook
 *       - at: 90m
 *         set: { exfiltration: true }    # declared vars, each a literal of its type
 *
 * Each inject has exactly one action: `message`, `fail` or `set`; `title`
 * goes with any of them.  Everything is checked against the playbook when
 * the file is loaded, before anything runs, and every problem is reported
 * with its position in one pass: unknown keys (with a suggestion), bad
 * times and durations, ids that name no step or instance, undeclared
 * vars, literals of the wrong type, an inject with no action or two.
 *
 * The type of a `set` literal is the var's: `true`/`false` for a boolean
 * var, a list for a list var, the text as written for a string var.  A
 * var computed by one expression (`x: ${{ inputs.flag }}`) has no type
 * before the run, so its literal keeps the type it is written in:
 * `true`/`false`, a number, a list, else text.
 */
#ifndef IRP_SCENARIO_H
#define IRP_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "irp/arena.h"
#include "irp/diag.h"
#include "irp/model.h"
#include "irp/value.h"

typedef struct irp_inject {
    size_t index;                /* in the file's list, from 0 */
    uint32_t line, col;          /* of the list item */
    int64_t at_ms;               /* after the scenario's start */
    const char *title;           /* NULL: none */
    const char *message;         /* exactly one of message, fail, set */
    const char *fail;            /* a step id or an instance id (step[item]) */
    const char **set_names;      /* declared vars ... */
    irp_value **set_values;      /* ... and their new values (owned) */
    size_t n_set;
} irp_inject;

typedef struct irp_scenario {
    irp_arena arena;             /* the parsed file: strings point into it */
    const char *file;            /* borrowed */
    const char *id;
    bool has_start;
    int64_t start_ms;            /* UTC ms, when has_start */
    irp_inject *injects;         /* in file order (delivered in time order) */
    size_t n_injects;
} irp_scenario;

/* Load FILE and check it against pb.  Problems go to diags with their
 * position; returns 0 and *out (free with irp_scenario_free), the error of
 * an unreadable file, IRP_ENOMEM, or IRP_EINVAL when any problem was
 * reported.  `file` is borrowed by the scenario and the diagnostics. */
int irp_scenario_load(const irp_playbook *pb, const char *file, irp_diag_list *diags,
                      irp_scenario **out);
/* NULL is fine. */
void irp_scenario_free(irp_scenario *s);

#endif
