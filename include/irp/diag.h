/* irp — located diagnostics.
 *
 * Every problem a user can fix is reported as
 *     FILE:LINE:COL: error: message
 * (or "warning:"), with a 1-based line and column.  Diagnostics are
 * collected in a list while a file is checked -- all of them, not just the
 * first -- and printed together, sorted by position, at the end.
 *
 * Messages are short, lowercase, and say what is wrong first
 * ("unknown key 'tiemout' (did you mean 'timeout'?)").
 */
#ifndef IRP_DIAG_H
#define IRP_DIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { IRP_DIAG_ERROR, IRP_DIAG_WARNING, IRP_DIAG_NOTE } irp_severity;

typedef struct irp_diag {
    const char *file;     /* borrowed: must outlive the list */
    uint32_t line, col;   /* 1-based; 0 = no position (whole file) */
    irp_severity sev;
    char *msg;            /* owned by the list */
    size_t seq;           /* insertion order, breaks ties when sorting */
    size_t file_rank;     /* order in which its file was first seen */
} irp_diag;

typedef struct irp_diag_list {
    irp_diag *items;
    size_t n, cap;
    size_t errors, warnings;
    size_t max;           /* stop storing after this many (0 = 10000) */
    const char **files;   /* distinct files, first-seen order */
    size_t nfiles;
    bool truncated;
} irp_diag_list;

#define IRP_DIAG_LIST_INIT { 0 }

void irp_diag_list_init(irp_diag_list *l);
/* Frees every message and the array. */
void irp_diag_list_release(irp_diag_list *l);

/* Add one diagnostic.  Out of memory is counted but otherwise silent: a
 * diagnostic is never the reason irp fails. */
void irp_diag_add(irp_diag_list *l, irp_severity sev, const char *file,
                  uint32_t line, uint32_t col, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
#define irp_diag_error(l, file, line, col, ...) \
    irp_diag_add((l), IRP_DIAG_ERROR, (file), (line), (col), __VA_ARGS__)
#define irp_diag_warning(l, file, line, col, ...) \
    irp_diag_add((l), IRP_DIAG_WARNING, (file), (line), (col), __VA_ARGS__)

/* Sort by file (first-seen order), line, column, then insertion order. */
void irp_diag_sort(irp_diag_list *l);

/* Print every diagnostic, one per line.  With color, severity words are
 * colored (the caller decides: TTY, NO_COLOR, --no-color). */
void irp_diag_print(const irp_diag_list *l, FILE *out, bool color);

/* The candidate closest to `word` by edit distance, if close enough to
 * be a plausible typo; NULL otherwise.  For "did you mean" hints. */
const char *irp_diag_suggest(const char *word, const char *const *cands,
                             size_t n);

#endif
