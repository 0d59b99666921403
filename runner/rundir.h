/* Internal: creating a run directory (SPEC §3). */
#ifndef IRP_RUNDIR_H
#define IRP_RUNDIR_H

#include <stdbool.h>
#include <stddef.h>

#include "irp/journal.h"
#include "irp/model.h"
#include "irp/value.h"

/* "<UTC yyyymmddThhmmssZ>-<playbook-id>-<4 hex>" into buf. */
void rundir_make_id(const char *playbook_id, char *buf, size_t len);
/* Creates RUNS (if missing) and RUNS/<id> (0700) with logs/, the exact
 * playbook copy and inputs.json (0600), fsynced unless `sync` is false
 * (a simulation, which syncs inputs.json when it ends: rundir_sync_inputs;
 * and leaves the copy to rundir_copy_start).
 * *path is malloc'd. */
int rundir_create(const char *runs, const char *run_id, const irp_playbook *pb,
                  const irp_value *inputs, bool sync, char **path, char *err,
                  size_t errlen);
/* The playbook copy of a simulation, hashed and written on a thread of
 * its own while the run gets ready and goes on (28 MB took the run's
 * thread 100 ms): to DIR/playbook.yaml once complete and fsynced, under
 * a temporary name until then.  src must stay valid until rundir_copy_finish, which
 * waits for the thread and returns its error (0 for a NULL copy).
 * rundir_copy_sha256 waits for the SHA-256 of src, made first. */
typedef struct rundir_copy rundir_copy;
int rundir_copy_start(const char *dir, const char *src, size_t len, rundir_copy **out);
void rundir_copy_sha256(rundir_copy *c, char out[IRP_SHA256_HEX]);
int rundir_copy_finish(rundir_copy *c);
/* fsync inputs.json of run directory DIR (a simulation's, created
 * unsynced; its playbook copy is synced by rundir_copy_start's thread). */
int rundir_sync_inputs(const char *dir);
/* Take the run's lock: an exclusive flock() on DIR/lock (created 0600),
 * held by the process that writes the journal for as long as it lives
 * (the descriptor is close-on-exec: children never hold it).  The file
 * holds the holder's pid, for messages.  Returns 0, IRP_EBUSY when
 * another process holds it (*holder is its pid, or 0 when unknown), or
 * an IRP_E* for a directory that cannot be used. */
int rundir_lock(const char *dir, long *holder);

/* "TLP:AMBER+STRICT": the marking as FIRST's TLP 2.0 writes it. */
const char *rundir_tlp_label(irp_tlp t);
/* Writes `bytes` to dir/name (0600), fsynced if `sync`. */
int rundir_write(const char *dir, const char *name, const char *bytes, size_t len, bool sync);

#endif
