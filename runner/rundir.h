/* Internal: creating a run directory (SPEC §3). */
#ifndef IRP_RUNDIR_H
#define IRP_RUNDIR_H

#include <stddef.h>

#include "irp/model.h"
#include "irp/value.h"

/* "<UTC yyyymmddThhmmssZ>-<playbook-id>-<4 hex>" into buf. */
void rundir_make_id(const char *playbook_id, char *buf, size_t len);
/* Creates RUNS (if missing) and RUNS/<id> (0700) with logs/, the exact
 * playbook copy and inputs.json (0600).  *path is malloc'd. */
int rundir_create(const char *runs, const char *run_id, const irp_playbook *pb,
                  const irp_value *inputs, char **path, char *err, size_t errlen);
/* "TLP:AMBER+STRICT": the marking as FIRST's TLP 2.0 writes it. */
const char *rundir_tlp_label(irp_tlp t);
/* Writes `bytes` to dir/name (0600), fsynced. */
int rundir_write(const char *dir, const char *name, const char *bytes, size_t len);

#endif
