/* irp — the static validator.
 *
 * Everything about a playbook that can be known without running it:
 * unique ids, `needs` resolved to indices (absent = the step before, in
 * its section), cycles (reported with their path), deadlines naming real
 * steps, input specs whose default and example fit their type and pattern,
 * every template and `when` checked for references to undeclared inputs
 * or vars, unknown steps or fields, `item`/`index` outside `for_each`,
 * secrets in `run`, templates a shell would see inside quotes.
 *
 * It fills the resolved fields of the model (irp_step.deps, deadline
 * indices) and adds diagnostics; it never resolves input values or
 * secrets.  Called by irp_playbook_load().
 */
#ifndef IRP_VALIDATE_H
#define IRP_VALIDATE_H

#include "irp/diag.h"
#include "irp/model.h"

/* Returns the number of errors it added. */
size_t irp_validate(irp_playbook *pb, irp_diag_list *diags);

/* Index of the step with this id, or (size_t)-1.  O(1) after validation
 * (a hash index kept in the playbook's arena). */
size_t irp_playbook_step_index(const irp_playbook *pb, const char *id);

#endif
