#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irp/diag.h"

#define DIAG_DEFAULT_MAX 10000

void irp_diag_list_init(irp_diag_list *l)
{
    memset(l, 0, sizeof *l);
}

void irp_diag_list_release(irp_diag_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].msg);
    free(l->items);
    free(l->files);
    memset(l, 0, sizeof *l);
}

/* Files sort in the order they were first mentioned, which is the order
 * the user named them on the command line.  There are few distinct files,
 * so a linear list is enough. */
static size_t file_rank(irp_diag_list *l, const char *file)
{
    for (size_t i = 0; i < l->nfiles; i++)
        if (l->files[i] == file || (l->files[i] && file && strcmp(l->files[i], file) == 0))
            return i;
    const char **files = realloc(l->files, (l->nfiles + 1) * sizeof *files);
    if (!files)
        return l->nfiles;
    l->files = files;
    l->files[l->nfiles] = file;
    return l->nfiles++;
}

/* One diagnostic is one line, whatever the message quotes: a YAML key
 * may hold a newline, and a raw one would split the line that tools (and
 * editors) parse as FILE:LINE:COL.  Control bytes are written as escapes.
 * Takes ownership of msg; returns the escaped message or NULL. */
static char *escape_controls(char *msg)
{
    size_t extra = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            extra += 3;
    if (!extra)
        return msg;
    char *out = malloc(strlen(msg) + extra + 1), *o = out;
    if (out) {
        for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
            if (*p == '\n' || *p == '\r' || *p == '\t') {
                *o++ = '\\';
                *o++ = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
            } else if (*p < 0x20 || *p == 0x7f) {
                o += sprintf(o, "\\x%02x", *p);
            } else {
                *o++ = (char)*p;
            }
        }
        *o = '\0';
    }
    free(msg);
    return out;
}

void irp_diag_add(irp_diag_list *l, irp_severity sev, const char *file,
                  uint32_t line, uint32_t col, const char *fmt, ...)
{
    if (sev == IRP_DIAG_ERROR)
        l->errors++;
    else if (sev == IRP_DIAG_WARNING)
        l->warnings++;
    size_t max = l->max ? l->max : DIAG_DEFAULT_MAX;
    if (l->n >= max) {
        l->truncated = true;
        return;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        irp_diag *items = realloc(l->items, cap * sizeof *items);
        if (!items)
            return;
        l->items = items;
        l->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    msg = escape_controls(msg);
    if (!msg)
        return;
    l->items[l->n] = (irp_diag){ file, line, col, sev, msg, l->n, file_rank(l, file) };
    l->n++;
}

static int diag_cmp(const void *pa, const void *pb)
{
    const irp_diag *a = pa, *b = pb;
    if (a->file_rank != b->file_rank)
        return a->file_rank < b->file_rank ? -1 : 1;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->col != b->col)
        return a->col < b->col ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

void irp_diag_sort(irp_diag_list *l)
{
    if (l->n > 1)
        qsort(l->items, l->n, sizeof *l->items, diag_cmp);
}

static const char *sev_word(irp_severity s)
{
    return s == IRP_DIAG_ERROR ? "error" : s == IRP_DIAG_WARNING ? "warning" : "note";
}

static const char *sev_color(irp_severity s)
{
    return s == IRP_DIAG_ERROR ? "\033[1;31m" : s == IRP_DIAG_WARNING ? "\033[1;35m" : "\033[1;36m";
}

void irp_diag_print(const irp_diag_list *l, FILE *out, bool color)
{
    for (size_t i = 0; i < l->n; i++) {
        const irp_diag *d = &l->items[i];
        const char *file = d->file ? d->file : "<input>";
        if (d->line)
            fprintf(out, "%s:%u:%u: ", file, d->line, d->col ? d->col : 1);
        else
            fprintf(out, "%s: ", file);
        if (color)
            fprintf(out, "%s%s:\033[0m %s\n", sev_color(d->sev), sev_word(d->sev), d->msg);
        else
            fprintf(out, "%s: %s\n", sev_word(d->sev), d->msg);
    }
    if (l->truncated)
        fprintf(out, "irp: too many diagnostics; only the first %zu are shown\n", l->n);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return (size_t)-1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *irp_diag_suggest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    size_t len = strlen(word);
    /* A typo is at most a third of the word, and never more than 3 edits. */
    size_t limit = len / 3 + 1;
    if (limit > 3)
        limit = 3;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, cands[i]);
        if (d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    return best_d <= limit ? best : NULL;
}
