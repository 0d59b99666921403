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

/* The report of a run built while the run writes its journal: fed every
 * line through irp_journal_set_tap() from run.started on, it writes the
 * same report.md as irp_report_save() would at the end, without reading
 * the journal back.  Its memory grows with the steps (see
 * irp_runlog_feed); the timeline's text, the biggest part, goes to an
 * unlinked file in the run directory as it is made.  A run that resumes
 * an earlier one uses irp_report_save_pb() instead: its journal began
 * before this process.
 *
 * irp_report_stream_new: run_dir is where the timeline's file is made
 * (NULL: the timeline stays in memory); IRP_ENOMEM, or the error of
 * making the file.  irp_report_stream_feed has the signature of an
 * irp_journal_tap_fn (ctx is the stream; the line is borrowed); after a
 * failure (IRP_ENOMEM, IRP_ELIMIT, an error writing the timeline's file)
 * it ignores further lines and irp_report_stream_save returns the failure
 * without writing.  pb is borrowed and must outlive the stream. */
typedef struct irp_report_stream irp_report_stream;
int irp_report_stream_new(const irp_playbook *pb, const char *run_dir,
                          irp_report_stream **out);
struct irp_event;
int irp_report_stream_feed(void *ctx, struct irp_event *line);
/* Take in every line fed so far (the stream may do so on a thread of its
 * own, made by irp_report_stream_new when it has a run directory); then
 * the stream's first failure, or 0.  irp_report_stream_save and _free
 * call it. */
int irp_report_stream_finish(irp_report_stream *s);
/* Write RUN_DIR/report.md (0600, fsynced) for a journal that ended with
 * `head`.  On failure err says why. */
int irp_report_stream_save(irp_report_stream *s, const char *run_dir, const char *head,
                           char *err, size_t errlen);
void irp_report_stream_free(irp_report_stream *s);

#endif
