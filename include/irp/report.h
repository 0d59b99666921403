/* irp — reports of a run: Markdown, JSON and JUnit, made from the model
 * irp_runlog_load() rebuilds from the journal (runlog.h).
 *
 * Every format states the playbook's TLP marking.  A report depends only
 * on the run directory's contents (the journal and the playbook copy), never
 * on the clock or on who asks, so the report.md a run writes when it ends
 * and `irp report RUN_DIR` afterwards are the same text until someone adds
 * to the journal (`irp note`, `irp resume`).  docs/reports.md describes the
 * formats.
 */
#ifndef IRP_REPORT_H
#define IRP_REPORT_H

#include <stddef.h>

#include "irp/runlog.h"

typedef enum { IRP_REPORT_MD, IRP_REPORT_JSON, IRP_REPORT_JUNIT } irp_report_format;

/* "md", "json" or "junit" → *out; IRP_EINVAL otherwise. */
int irp_report_format_parse(const char *name, irp_report_format *out);

/* Render the report.  *out is malloc'd (NUL-terminated, caller frees),
 * *len its length.  IRP_ENOMEM is the only failure. */
int irp_report_render(const irp_runlog *log, irp_report_format fmt, char **out, size_t *len);

/* Write RUN_DIR/report.md (0600, fsynced) from the journal as it is now:
 * what `irp run` does when the run ends.  On failure err says why. */
int irp_report_save(const char *run_dir, char *err, size_t errlen);
/* The same with the run's playbook in hand (see irp_runlog_load_pb). */
int irp_report_save_pb(const char *run_dir, const irp_playbook *pb, char *err,
                       size_t errlen);

#endif
