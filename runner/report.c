/* Reports of a run from its journal: Markdown for people, JSON for
 * machines, JUnit for CI (report.h, docs/reports.md). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "irp/error.h"
#include "irp/event.h"
#include "irp/report.h"
#include "irp/timeutil.h"
#include "rundir.h"
#include "thread.h"

/* Longest event detail in the Markdown timeline; the journal has it all. */
#define DETAIL_MAX 400

static const char *str_of(const json_t *ev, const char *key)
{
    return json_string_value(json_object_get(ev, key));
}

static int64_t int_of(const json_t *ev, const char *key, int64_t dflt)
{
    const json_t *v = json_object_get(ev, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

/* Text built without stdio, or passed on to a stream in big pieces: a
 * row of a table is a dozen short pieces, and a stdio call each cost more
 * than its bytes. */
typedef struct obuf {
    FILE *f;                 /* non-NULL: the text goes to f, through p[cap]
                                (the caller's; cap 0: none) and ob_flush() */
    char *p;                 /* else here: malloc'd, len of cap used */
    size_t len, cap;
    bool failed;             /* out of memory: the text is incomplete */
} obuf;

#define OB_FILE(f, buf) ((obuf){ .f = (f), .p = (buf), .cap = sizeof(buf) })

static void ob_flush(obuf *o)
{
    if (o->f && o->len) {
        fwrite(o->p, 1, o->len, o->f);
        o->len = 0;
    }
}

static bool ob_room_slow(obuf *o, size_t n)
{
    size_t ncap = o->cap ? o->cap : 4096;
    while (ncap - o->len < n && ncap < SIZE_MAX / 4)
        ncap *= 2;
    char *p = !o->failed && ncap - o->len >= n ? realloc(o->p, ncap) : NULL;
    if (!p) {
        o->failed = true;
        return false;
    }
    o->p = p;
    o->cap = ncap;
    return true;
}

static void ob_put_slow(obuf *o, const void *s, size_t n)
{
    if (o->f) {
        ob_flush(o);
        if (n < o->cap) {
            memcpy(o->p, s, n);
            o->len = n;
        } else {
            fwrite(s, 1, n, o->f);
        }
    } else if (ob_room_slow(o, n)) {
        memcpy(o->p + o->len, s, n);
        o->len += n;
    }
}

static inline void ob_put(obuf *o, const void *s, size_t n)
{
    if (!n)
        return;   /* p may be NULL */
    if (o->cap - o->len >= n) {
        memcpy(o->p + o->len, s, n);
        o->len += n;
    } else {
        ob_put_slow(o, s, n);
    }
}

static void ob_puts(obuf *o, const char *s)
{
    ob_put(o, s, strlen(s));
}

#define OB_LIT(o, lit) ob_put((o), (lit), sizeof(lit) - 1)

static void ob_int(obuf *o, long long v)
{
    char d[24], *p = d + sizeof d;
    unsigned long long m = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    do
        *--p = (char)('0' + m % 10);
    while ((m /= 10) != 0);
    if (v < 0)
        *--p = '-';
    ob_put(o, p, (size_t)(d + sizeof d - p));
}

static void time_text(int64_t ms, char buf[IRP_TIME_BUFSZ])
{
    if (ms < 0)
        snprintf(buf, IRP_TIME_BUFSZ, "%s", "");
    else
        irp_time_format(ms, buf);
}

/* A duration with its sign: "+1h30m", "-45s". */
static void signed_duration(int64_t ms, char *buf, size_t n)
{
    char d[24];
    irp_duration_format(ms < 0 ? -ms : ms, d, sizeof d);
    snprintf(buf, n, "%c%s", ms < 0 ? '-' : '+', d);
}

/* Any JSON value as short text: strings as they are, the rest compact. */
static char *value_text(const json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (!v || json_is_null(v))
        return strdup("");
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
}

/* Strings of a JSON list joined by spaces (argv) or ", ". */
static void ob_join_list(obuf *o, const json_t *list, const char *sep)
{
    size_t n = json_array_size(list), seplen = strlen(sep);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(list, i);
        if (i)
            ob_put(o, sep, seplen);
        if (json_is_string(v)) {    /* most are: no copy */
            ob_puts(o, json_string_value(v));
            continue;
        }
        char *t = value_text(v);
        ob_puts(o, t ? t : "");
        free(t);
    }
}

static void join_list(FILE *f, const json_t *list, const char *sep)
{
    obuf o = { .f = f };
    ob_join_list(&o, list, sep);
}

/* ---- what each event says, in a few words --------------------------- */

static int64_t ev_int(irp_runlog_int v, int64_t dflt)
{
    return v.set ? v.v : dflt;
}

static void describe_started(obuf *o, const irp_runlog_event *e)
{
    const json_t *a = e->action;
    const json_t *argv = json_object_get(a, "argv");
    OB_LIT(o, "attempt ");
    ob_int(o, (long long)ev_int(e->attempt, 1));
    if (argv) {
        OB_LIT(o, ": ");
        ob_join_list(o, argv, " ");
    } else if (str_of(a, "wait")) {
        OB_LIT(o, ": wait ");
        ob_puts(o, str_of(a, "wait"));
    } else if (str_of(a, "until")) {
        OB_LIT(o, ": wait until ");
        ob_puts(o, str_of(a, "until"));
    } else if (json_is_integer(json_object_get(a, "wait"))) {
        char d[24];
        irp_duration_format(int_of(a, "wait", 0), d, sizeof d);
        OB_LIT(o, ": wait ");
        ob_puts(o, d);
    }
}

static void describe_finished(obuf *o, const irp_runlog_event *e)
{
    int64_t exit_code = ev_int(e->exit_code, -1), sig = ev_int(e->signal, 0);
    int64_t duration = ev_int(e->duration_ms, -1);
    ob_puts(o, e->status ? e->status : "ended");
    if (exit_code >= 0) {
        OB_LIT(o, ", exit ");
        ob_int(o, (long long)exit_code);
    }
    if (sig) {
        OB_LIT(o, ", signal ");
        ob_int(o, (long long)sig);
    }
    if (duration >= 0) {
        char d[24];
        irp_duration_format(duration, d, sizeof d);
        OB_LIT(o, ", after ");
        ob_puts(o, d);
    }
    if (e->error) {
        OB_LIT(o, ": ");
        ob_puts(o, e->error);
    }
}

/* The step events most lines are, described from the fields read once;
 * false for the other kinds. */
static bool describe_fast(obuf *o, const irp_runlog_event *e)
{
    char d[24];
    switch (e->kind) {
    case IRP_RUNLOG_EV_STEP_STARTED:
        describe_started(o, e);
        return true;
    case IRP_RUNLOG_EV_STEP_FINISHED:
        describe_finished(o, e);
        return true;
    case IRP_RUNLOG_EV_STEP_SPAWNED:
        OB_LIT(o, "pid ");
        ob_int(o, (long long)ev_int(e->pid, 0));
        return true;
    case IRP_RUNLOG_EV_STEP_RETRYING:
        irp_duration_format(ev_int(e->delay_ms, 0), d, sizeof d);
        OB_LIT(o, "attempt ");
        ob_int(o, (long long)ev_int(e->next_attempt, 0));
        OB_LIT(o, " in ");
        ob_puts(o, d);
        return true;
    case IRP_RUNLOG_EV_STEP_SKIPPED:
    case IRP_RUNLOG_EV_STEP_CANCELLED:
        ob_puts(o, e->reason ? e->reason : "");
        return true;
    default:
        return false;
    }
}

static void describe_deadline(FILE *f, const json_t *ev)
{
    fprintf(f, "%s", str_of(ev, "deadline") ? str_of(ev, "deadline") : "?");
    if (str_of(ev, "title"))
        fprintf(f, " (%s)", str_of(ev, "title"));
    if (str_of(ev, "due"))
        fprintf(f, ", due %s", str_of(ev, "due"));
    if (json_is_integer(json_object_get(ev, "margin_ms"))) {
        char d[32];
        signed_duration(int_of(ev, "margin_ms", 0), d, sizeof d);
        fprintf(f, ", margin %s", d);
    }
}

static void describe_source(FILE *f, const json_t *src)
{
    if (str_of(src, "path")) {
        fputs(str_of(src, "path"), f);
    } else if (json_object_get(src, "argv")) {
        fputs("output of: ", f);
        join_list(f, json_object_get(src, "argv"), " ");
    }
}

static void describe_target(FILE *f, const json_t *t)
{
    if (json_is_array(t))
        join_list(f, t, ", ");
    else if (json_is_string(t))
        fputs(json_string_value(t), f);
}

static void describe_notify(FILE *f, const json_t *ev)
{
    fprintf(f, "%s to ", str_of(ev, "via") ? str_of(ev, "via") : "?");
    describe_target(f, json_object_get(ev, "target"));
    fputs(json_is_true(json_object_get(ev, "ok")) ? ": ok" : ": failed", f);
    if (json_object_get(ev, "status")) {
        char *s = value_text(json_object_get(ev, "status"));
        fprintf(f, " (status %s)", s ? s : "");
        free(s);
    }
    if (str_of(ev, "error"))
        fprintf(f, ": %s", str_of(ev, "error"));
}

/* The event's own fields, less those every line has. */
static void describe_other(FILE *f, const json_t *ev)
{
    static const char *const common[] = { "seq", "ts", "wall", "event", "prev", "step",
                                          "instance", "attempt", "operator" };
    json_t *rest = json_copy((json_t *)ev);
    if (!rest)
        return;
    for (size_t i = 0; i < sizeof common / sizeof *common; i++)
        json_object_del(rest, common[i]);
    if (json_object_size(rest)) {
        char *t = json_dumps(rest, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fputs(t ? t : "", f);
        free(t);
    }
    json_decref(rest);
}

static void describe_run(FILE *f, const char *name, const json_t *ev)
{
    if (strcmp(name, "run.started") == 0) {
        const json_t *pb = json_object_get(ev, "playbook");
        fprintf(f, "playbook %s, mode %s, host %s, irp %s", str_of(pb, "id") ? str_of(pb, "id") : "?",
                str_of(ev, "mode") ? str_of(ev, "mode") : "?",
                str_of(ev, "host") ? str_of(ev, "host") : "?",
                str_of(ev, "irp_version") ? str_of(ev, "irp_version") : "?");
    } else if (strcmp(name, "run.finished") == 0) {
        fputs(str_of(ev, "status") ? str_of(ev, "status") : "?", f);
        const char *k;
        const json_t *v;
        const char *sep = ": ";
        json_object_foreach((json_t *)json_object_get(ev, "steps"), k, v) {
            fprintf(f, "%s%lld %s", sep, (long long)json_integer_value(v), k);
            sep = ", ";
        }
    } else if (strcmp(name, "run.interrupted") == 0) {
        fputs(str_of(ev, "how") ? str_of(ev, "how") : "", f);
    } else if (strcmp(name, "run.resumed") == 0) {
        fputs("interrupted: ", f);
        join_list(f, json_object_get(ev, "interrupted"), ", ");
        fputs("; run again: ", f);
        join_list(f, json_object_get(ev, "rerun"), ", ");
        if (int_of(ev, "dropped_bytes", 0))
            fprintf(f, "; dropped a cut-off last line of %lld bytes",
                    (long long)int_of(ev, "dropped_bytes", 0));
    } else {
        describe_other(f, ev);
    }
}

static void describe_step(FILE *f, const char *name, const json_t *ev)
{
    /* started, spawned, finished, retrying, skipped, cancelled: see
     * describe_fast. */
    if (strcmp(name, "step.expanded") == 0) {
        fprintf(f, "%zu items: ", json_array_size(json_object_get(ev, "items")));
        join_list(f, json_object_get(ev, "items"), ", ");
    } else if (strcmp(name, "step.prompted") == 0) {
        fprintf(f, "%s (", str_of(ev, "prompt") ? str_of(ev, "prompt") : "");
        join_list(f, json_object_get(ev, "choices"), ", ");
        fputs(")", f);
    } else if (strcmp(name, "step.answered") == 0) {
        char d[24];
        irp_duration_format(int_of(ev, "response_ms", 0), d, sizeof d);
        fprintf(f, "%s via %s after %s", str_of(ev, "answer") ? str_of(ev, "answer") : "",
                str_of(ev, "via") ? str_of(ev, "via") : "?", d);
        if (str_of(ev, "note"))
            fprintf(f, "; note: %s", str_of(ev, "note"));
    } else {
        describe_other(f, ev);
    }
}

/* A buffer the timeline describes each event in, reused from row to row:
 * a stream opened per row was the biggest cost of a long timeline. */
typedef struct scratch {
    FILE *f;
    char *buf;
    size_t len;
} scratch;

static int scratch_open(scratch *sc)
{
    *sc = (scratch){ 0 };
    sc->f = open_memstream(&sc->buf, &sc->len);
    if (!sc->f)
        return IRP_ENOMEM;
    __fsetlocking(sc->f, FSETLOCKING_BYCALLER);   /* one thread: a lock per call is waste */
    return 0;
}

static void scratch_close(scratch *sc)
{
    if (sc->f)
        fclose(sc->f);
    free(sc->buf);
    *sc = (scratch){ 0 };
}

/* A few words on what an event says, in sc (valid until the next call;
 * NULL when out of memory); name is its `event`. */
static const char *describe(scratch *sc, const json_t *ev, const char *name)
{
    FILE *f = sc->f;
    if (!f || fseek(f, 0, SEEK_SET) != 0)
        return NULL;
    name = name ? name : "";
    if (strncmp(name, "step.", 5) == 0) {
        describe_step(f, name, ev);
    } else if (strncmp(name, "deadline.", 9) == 0) {
        describe_deadline(f, ev);
    } else if (strcmp(name, "note") == 0) {
        fputs(str_of(ev, "text") ? str_of(ev, "text") : "", f);
        if (str_of(ev, "at"))
            fprintf(f, " (happened at %s)", str_of(ev, "at"));
    } else if (strcmp(name, "evidence.collected") == 0) {
        fprintf(f, "%s from ", str_of(ev, "item") ? str_of(ev, "item") : "?");
        describe_source(f, json_object_get(ev, "source"));
        fprintf(f, ", %lld bytes, SHA-256 %s", (long long)int_of(ev, "size", 0),
                str_of(ev, "sha256") ? str_of(ev, "sha256") : "?");
    } else if (strcmp(name, "notify.sent") == 0) {
        describe_notify(f, ev);
    } else if (strncmp(name, "run.", 4) == 0) {
        describe_run(f, name, ev);
    } else {
        describe_other(f, ev);
    }
    fputc('\0', f);
    return fflush(f) == 0 && !ferror(f) ? sc->buf : NULL;
}

/* ---- Markdown ------------------------------------------------------- */

/* Text in a table cell or heading: characters Markdown or HTML would
 * read as syntax are escaped, so a title cannot break the table or inject
 * markup; a newline becomes <br> in a cell and a space in a heading;
 * other control characters become U+FFFD.  Cut at `max` bytes (0: no
 * limit), on a character boundary, with an ellipsis. */
static const bool md_syntax[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,   /* control characters */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['\\'] = 1, ['`'] = 1, ['*'] = 1, ['_'] = 1, ['['] = 1, [']'] = 1, ['|'] = 1, ['~'] = 1,
    ['#'] = 1, ['<'] = 1, ['>'] = 1, ['&'] = 1, [0x7f] = 1,
};

/* A table: every byte of every row goes through it. */
static inline bool md_plain(unsigned char c)
{
    return !md_syntax[c];
}

static void ob_md_char(obuf *o, unsigned char c, bool cell)
{
    switch (c) {
    case '<': OB_LIT(o, "&lt;"); break;
    case '>': OB_LIT(o, "&gt;"); break;
    case '&': OB_LIT(o, "&amp;"); break;
    case '\n':
        if (cell)
            OB_LIT(o, "<br>");
        else
            OB_LIT(o, " ");
        break;
    case '\r': break;
    case '\t': OB_LIT(o, " "); break;
    default:
        if (c < 0x20 || c == 0x7f) {
            OB_LIT(o, "\xef\xbf\xbd");
        } else {
            char esc[2] = { '\\', (char)c };
            ob_put(o, esc, 2);
        }
    }
}

static void ob_text_len(obuf *o, const char *s, size_t len, bool cell, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t cut = len;
    if (max && len > max) {
        cut = max;
        while (cut < len && (p[cut] & 0xC0) == 0x80)
            cut++;
    }
    /* Plain runs go out whole: a timeline has a row per journal line. */
    for (size_t i = 0; i < cut;) {
        size_t run = i;
        while (run < cut && md_plain(p[run]))
            run++;
        if (run > i)
            ob_put(o, p + i, run - i);
        if (run < cut)
            ob_md_char(o, p[run++], cell);
        i = run;
    }
    if (cut < len)
        OB_LIT(o, "…");
}

static void ob_text_n(obuf *o, const char *s, bool cell, size_t max)
{
    s = s ? s : "";
    ob_text_len(o, s, strlen(s), cell, max);
}

static void md_text_n(FILE *f, const char *s, bool cell, size_t max)
{
    obuf o = { .f = f };
    ob_text_n(&o, s, cell, max);
}

static void md_text(FILE *f, const char *s)
{
    md_text_n(f, s, true, 0);
}

/* The characters of an identifier written as code (strspn with a set
 * builds a table on every call). */
static bool code_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("_.:@-[]+/=", c));
}

/* An identifier in a code span when it is plain (ids, hashes), else as
 * escaped text. */
static void ob_code(obuf *o, const char *s)
{
    size_t n = 0;
    while (s && code_char((unsigned char)s[n]))
        n++;
    if (n && !s[n]) {
        OB_LIT(o, "`");
        ob_put(o, s, n);
        OB_LIT(o, "`");
    } else {
        ob_text_n(o, s, true, 0);
    }
}

static void md_code(FILE *f, const char *s)
{
    obuf o = { .f = f };
    ob_code(&o, s);
}

static void md_time(FILE *f, int64_t ms)
{
    char t[IRP_TIME_BUFSZ];
    time_text(ms, t);
    fputs(t, f);
}

static void md_row_kv(FILE *f, const char *key, const char *value, bool code)
{
    fprintf(f, "| %s | ", key);
    if (code)
        md_code(f, value);
    else
        md_text(f, value);
    fputs(" |\n", f);
}

static void md_header(FILE *f, const irp_runlog *L)
{
    fprintf(f, "**%s**\n\n# ", L->tlp_label);
    md_text_n(f, L->pb_title ? L->pb_title : L->pb_id ? L->pb_id : "irp run", false, 0);
    fputs("\n\n| | |\n|---|---|\n", f);
    md_row_kv(f, "run", L->run_id, true);
    md_row_kv(f, "playbook", L->pb_id, true);
    md_row_kv(f, "playbook SHA-256", L->pb_sha256, true);
    md_row_kv(f, "mode", L->mode, false);
    md_row_kv(f, "status", L->status ? L->status : "not finished", false);
    char t[IRP_TIME_BUFSZ];
    time_text(L->started_ms, t);
    md_row_kv(f, "started (UTC)", t, false);
    time_text(L->status ? L->finished_ms : -1, t);
    md_row_kv(f, "finished (UTC)", t, false);
    if (L->status && L->finished_ms >= 0 && L->started_ms >= 0) {
        char d[24];
        irp_duration_format(L->finished_ms - L->started_ms, d, sizeof d);
        md_row_kv(f, "duration", d, false);
    }
    time_text(L->detected_ms, t);
    md_row_kv(f, "detected at (UTC)", t, false);
    md_row_kv(f, "operator", L->operator_name, false);
    md_row_kv(f, "host", L->host, false);
    md_row_kv(f, "irp version", L->irp_version, false);
    fprintf(f, "| journal | %zu lines |\n", L->n_events);
    md_row_kv(f, "journal head", L->head, true);
    fputs("\n", f);
    if (L->damage[0]) {
        fputs("**Warning: the journal is damaged (", f);
        md_text(f, L->damage);
        fputs("). This report covers only the lines before the damage.**\n\n", f);
    }
}

static void md_inputs(FILE *f, const irp_runlog *L)
{
    fputs("## Inputs\n\n", f);
    if (!json_object_size(L->inputs)) {
        fputs("None.\n\n", f);
        return;
    }
    fputs("| input | value |\n|---|---|\n", f);
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)L->inputs, k, v) {
        char *t = value_text(v);
        fputs("| ", f);
        md_code(f, k);
        fputs(" | ", f);
        md_text(f, t);
        fputs(" |\n", f);
        free(t);
    }
    fputs("\n", f);
}

static void md_operators(FILE *f, const irp_runlog *L)
{
    fputs("## Operators\n\n", f);
    if (!L->n_operators)
        fputs("None recorded.\n", f);
    for (size_t i = 0; i < L->n_operators; i++) {
        const irp_runlog_operator *op = &L->operators[i];
        fputs("- ", f);
        md_text(f, op->name);
        const char *sep = ": ";
        if (op->roles & IRP_RUNLOG_STARTED) {
            fprintf(f, "%sstarted the run", sep);
            sep = ", ";
        }
        if (op->answers) {
            fprintf(f, "%sanswered %zu question%s", sep, op->answers, op->answers == 1 ? "" : "s");
            sep = ", ";
        }
        if (op->notes) {
            fprintf(f, "%sadded %zu note%s", sep, op->notes, op->notes == 1 ? "" : "s");
            sep = ", ";
        }
        if (op->roles & IRP_RUNLOG_RESUMED)
            fprintf(f, "%sresumed the run", sep);
        fputs("\n", f);
    }
    fputs("\n", f);
}

static void ob_time(obuf *o, int64_t ms)
{
    char t[IRP_TIME_BUFSZ];
    time_text(ms, t);
    ob_puts(o, t);
}

static void ob_duration_cell(obuf *o, int64_t start, int64_t end)
{
    char d[24] = "";
    if (start >= 0 && end >= start)
        irp_duration_format(end - start, d, sizeof d);
    OB_LIT(o, " ");
    ob_puts(o, d);
    OB_LIT(o, " |");
}

/* Why an instance ended as it did: its last attempt's error or exit. */
static void ob_inst_detail(obuf *o, const irp_runlog_instance *in)
{
    if (in->reason) {
        ob_text_n(o, in->reason, true, 0);
        return;
    }
    if (!in->n_attempts)
        return;
    const irp_runlog_attempt *a = &in->attempts[in->n_attempts - 1];
    if (a->error) {
        ob_text_n(o, a->error, true, 0);
    } else if (a->signal) {
        OB_LIT(o, "signal ");
        ob_int(o, (long long)a->signal);
    } else if (a->exit_code > 0 || (a->exit_code == 0 && in->state != IRP_ST_SUCCEEDED)) {
        OB_LIT(o, "exit ");
        ob_int(o, (long long)a->exit_code);
    }
}

/* An id as the outcome table writes it: as it is when plain. */
static void ob_outcome_id(obuf *o, const char *id)
{
    size_t n = 0;
    for (unsigned char c; (c = (unsigned char)id[n]) != 0 &&
                          ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');)
        n++;
    if (!id[n])
        ob_put(o, id, n);
    else
        ob_text_n(o, id, true, 0);
}

static void ob_steps(obuf *o, const irp_runlog *L)
{
    /* The outcome table keeps to two columns: scripts read it. */
    OB_LIT(o, "## Outcome\n\n| step | status |\n|---|---|\n");
    for (size_t i = 0; i < L->n_steps; i++) {
        OB_LIT(o, "| ");
        ob_outcome_id(o, L->steps[i].id);
        OB_LIT(o, " | ");
        ob_puts(o, irp_state_name(L->steps[i].state));
        OB_LIT(o, " |\n");
    }
    OB_LIT(o, "\n## Steps\n\n| step / instance | title | phase | status | attempts | started (UTC) "
              "| finished (UTC) | duration | detail |\n|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < L->n_steps; i++) {
        const irp_runlog_step *st = &L->steps[i];
        bool single = !st->has_for_each && st->n_insts == 1;
        int64_t end = irp_state_ended(st->state) ? st->finished_ms : -1;
        OB_LIT(o, "| ");
        ob_code(o, st->id);
        OB_LIT(o, " | ");
        ob_text_n(o, st->title, true, 0);
        OB_LIT(o, " | ");
        ob_puts(o, st->phase);
        ob_puts(o, st->is_finally ? (*st->phase ? ", finally" : "finally") : "");
        OB_LIT(o, " | ");
        ob_puts(o, irp_state_name(st->state));
        OB_LIT(o, " | ");
        if (single)
            ob_int(o, (long long)st->insts[0].n_attempts);
        OB_LIT(o, " | ");
        ob_time(o, st->started_ms);
        OB_LIT(o, " | ");
        ob_time(o, end);
        OB_LIT(o, " |");
        ob_duration_cell(o, st->started_ms, end);
        OB_LIT(o, " ");
        if (st->reason)
            ob_text_n(o, st->reason, true, 0);
        else if (single)
            ob_inst_detail(o, &st->insts[0]);
        OB_LIT(o, " |\n");
        for (size_t k = 0; !single && k < st->n_insts; k++) {
            const irp_runlog_instance *in = &st->insts[k];
            int64_t iend = irp_state_ended(in->state) ? in->finished_ms : -1;
            OB_LIT(o, "| ↳ ");
            ob_code(o, in->id);
            OB_LIT(o, " | | | ");
            ob_puts(o, irp_state_name(in->state));
            OB_LIT(o, " | ");
            ob_int(o, (long long)in->n_attempts);
            OB_LIT(o, " | ");
            ob_time(o, in->started_ms);
            OB_LIT(o, " | ");
            ob_time(o, iend);
            OB_LIT(o, " |");
            ob_duration_cell(o, in->started_ms, iend);
            OB_LIT(o, " ");
            ob_inst_detail(o, in);
            OB_LIT(o, " |\n");
        }
    }
    OB_LIT(o, "\n");
}

/* A row per step and instance: the biggest part after the timeline. */
static void md_steps(FILE *f, const irp_runlog *L)
{
    char buf[16384];
    obuf o = OB_FILE(f, buf);
    ob_steps(&o, L);
    ob_flush(&o);
}

/* What a timeline row needs besides its line: the describe() buffer for
 * the rare events, and one for the others. */
typedef struct row_scratch {
    scratch sc;
    obuf detail;
} row_scratch;

static int row_scratch_open(row_scratch *rs)
{
    rs->detail = (obuf){ 0 };
    return scratch_open(&rs->sc);
}

static void row_scratch_close(row_scratch *rs)
{
    scratch_close(&rs->sc);
    free(rs->detail.p);
    rs->detail = (obuf){ 0 };
}

/* A row's cells before its detail; run_start_ms is the ts of run.started
 * (-1 when unknown). */
static void row_head(obuf *o, int64_t run_start_ms, const irp_runlog_event *e)
{
    char off[40] = "";
    if (e->ts_ms >= 0 && run_start_ms >= 0)
        irp_runlog_offset(e->ts_ms - run_start_ms, off, sizeof off);
    const char *who = e->instance ? e->instance : e->step;
    OB_LIT(o, "| ");
    ob_text_n(o, e->ts, true, 0);
    OB_LIT(o, " | ");
    ob_puts(o, off);
    OB_LIT(o, " | ");
    if (who)
        ob_code(o, who);
    OB_LIT(o, " | ");
    ob_text_n(o, e->name, true, 0);
    OB_LIT(o, " | ");
    ob_text_n(o, e->op ? e->op : e->collector, true, 0);
    OB_LIT(o, " | ");
}

/* The detail cell from describe_fast's text, and the row's end. */
static void row_end(obuf *o, const char *detail, size_t len, bool failed)
{
    if (failed)
        o->failed = true;   /* a row without its detail is no row */
    else
        ob_text_len(o, detail, len, true, DETAIL_MAX);
    OB_LIT(o, " |\n");
}

/* One journal line as a row of the timeline. */
static void md_timeline_row(obuf *o, row_scratch *rs, int64_t run_start_ms,
                            const irp_runlog_event *e)
{
    row_head(o, run_start_ms, e);
    obuf *d = &rs->detail;
    d->len = 0;
    if (describe_fast(d, e)) {
        row_end(o, d->p, d->len, d->failed);
    } else {
        ob_text_n(o, describe(&rs->sc, e->line, e->name), true, DETAIL_MAX);
        OB_LIT(o, " |\n");
    }
}

static const char timeline_head[] = "## Timeline\n\n| time (UTC) | T+ | step / instance | event "
                                    "| who | detail |\n|---|---|---|---|---|---|\n";

static void md_timeline(FILE *f, const irp_runlog *L)
{
    row_scratch rs;
    char buf[16384];
    obuf o = OB_FILE(f, buf);
    irp_runlog_ts_memo memo = IRP_RUNLOG_TS_MEMO_INIT;
    row_scratch_open(&rs);
    fputs(timeline_head, f);
    for (size_t i = 0; i < L->n_events; i++) {
        irp_runlog_event e;
        irp_runlog_event_read(L->events[i], &memo, &e);
        md_timeline_row(&o, &rs, L->started_ms, &e);
    }
    ob_flush(&o);
    fputs("\n", f);
    row_scratch_close(&rs);
}

static void md_deadlines(FILE *f, const irp_runlog *L)
{
    if (!L->n_deadlines)
        return;
    fputs("## Deadlines\n\n| deadline | title | from | due (UTC) | status | margin |\n"
          "|---|---|---|---|---|---|\n", f);
    for (size_t i = 0; i < L->n_deadlines; i++) {
        const irp_runlog_deadline *d = &L->deadlines[i];
        fputs("| ", f);
        md_code(f, d->id);
        fputs(" | ", f);
        md_text(f, d->title);
        fputs(" | ", f);
        md_text(f, d->from);
        fputs(" | ", f);
        md_time(f, d->due_ms);
        fprintf(f, " | %s | ", d->status);
        int64_t ms;
        /* "now" is the journal's last line, so the text stays the same
         * however late it is made. */
        if (irp_runlog_remaining(L, d, L->last_ms, &ms)) {
            char m[32];
            signed_duration(ms, m, sizeof m);
            fputs(m, f);
            if (strcmp(d->status, "met") == 0)
                fputs(ms >= 0 ? " before due" : " late", f);
            else if (strcmp(d->status, "missed") == 0 || ms < 0)
                fputs(" (past due)", f);
            else
                fputs(" left", f);
        }
        fputs(" |\n", f);
    }
    fputs("\n", f);
}

static void md_decisions(FILE *f, const irp_runlog *L)
{
    if (!L->n_prompts)
        return;
    fputs("## Decisions\n\n| asked (UTC) | step / instance | question | answer | by | via "
          "| response time | note |\n|---|---|---|---|---|---|---|---|\n", f);
    for (size_t i = 0; i < L->n_prompts; i++) {
        const irp_runlog_prompt *p = &L->prompts[i];
        fputs("| ", f);
        md_time(f, p->asked_ms);
        fputs(" | ", f);
        md_code(f, p->instance ? p->instance : p->step);
        fputs(" | ", f);
        md_text(f, str_of(p->asked, "prompt"));
        fputs(" | ", f);
        if (p->answered) {
            md_text(f, str_of(p->answered, "answer"));
            fputs(" | ", f);
            md_text(f, str_of(p->answered, "operator"));
            fputs(" | ", f);
            md_text(f, str_of(p->answered, "via"));
            char d[24] = "";
            if (json_is_integer(json_object_get(p->answered, "response_ms")))
                irp_duration_format(int_of(p->answered, "response_ms", 0), d, sizeof d);
            fprintf(f, " | %s | ", d);
            md_text(f, str_of(p->answered, "note"));
        } else {
            fprintf(f, "(%s) | | | | ", p->withdrawn ? "withdrawn" : "open");
        }
        fputs(" |\n", f);
    }
    fputs("\n", f);
}

static void md_notes(FILE *f, const irp_runlog *L)
{
    if (!L->n_notes)
        return;
    fputs("## Notes\n\n| recorded (UTC) | happened (UTC) | by | note |\n|---|---|---|---|\n", f);
    for (size_t i = 0; i < L->n_notes; i++) {
        const json_t *n = L->notes[i];
        fputs("| ", f);
        md_text(f, str_of(n, "ts"));
        fputs(" | ", f);
        md_text(f, str_of(n, "at"));
        fputs(" | ", f);
        md_text(f, str_of(n, "operator"));
        fputs(" | ", f);
        md_text(f, str_of(n, "text"));
        fputs(" |\n", f);
    }
    fputs("\n", f);
}

static void md_evidence(FILE *f, const irp_runlog *L)
{
    if (!L->n_evidence)
        return;
    fputs("## Evidence (chain of custody)\n\n| item | source | SHA-256 | size (bytes) "
          "| source mtime (UTC) | collected (UTC) | by | step / instance | file |\n"
          "|---|---|---|---|---|---|---|---|---|\n", f);
    for (size_t i = 0; i < L->n_evidence; i++) {
        const json_t *e = L->evidence[i];
        char *src = NULL;
        size_t len = 0;
        FILE *s = open_memstream(&src, &len);
        if (s) {
            describe_source(s, json_object_get(e, "source"));
            fclose(s);
        }
        fputs("| ", f);
        md_text(f, str_of(e, "item"));
        fputs(" | ", f);
        md_text(f, src);
        free(src);
        fputs(" | ", f);
        md_code(f, str_of(e, "sha256"));
        fprintf(f, " | %lld | ", (long long)int_of(e, "size", 0));
        md_text(f, str_of(e, "mtime"));
        fputs(" | ", f);
        md_text(f, str_of(e, "ts"));
        fputs(" | ", f);
        md_text(f, str_of(e, "collector"));
        fputs(" | ", f);
        md_code(f, str_of(e, "instance") ? str_of(e, "instance") : str_of(e, "step"));
        fputs(" | ", f);
        md_code(f, str_of(e, "path"));
        fputs(" |\n", f);
    }
    fputs("\n", f);
}

static void md_notifications(FILE *f, const irp_runlog *L)
{
    if (!L->n_notifications)
        return;
    fputs("## Notifications\n\n| sent (UTC) | step / instance | attempt | via | to | result "
          "| idempotency key | response |\n|---|---|---|---|---|---|---|---|\n", f);
    for (size_t i = 0; i < L->n_notifications; i++) {
        const json_t *e = L->notifications[i];
        char *to = NULL, *res = value_text(json_object_get(e, "status"));
        size_t len = 0;
        FILE *s = open_memstream(&to, &len);
        if (s) {
            describe_target(s, json_object_get(e, "target"));
            fclose(s);
        }
        fputs("| ", f);
        md_text(f, str_of(e, "ts"));
        fputs(" | ", f);
        md_code(f, str_of(e, "instance") ? str_of(e, "instance") : str_of(e, "step"));
        fprintf(f, " | %lld | ", (long long)int_of(e, "attempt", 1));
        md_text(f, str_of(e, "via"));
        fputs(" | ", f);
        md_text(f, to);
        fprintf(f, " | %s", json_is_true(json_object_get(e, "ok")) ? "ok" : "failed");
        if (res && *res) {
            fputs(" (status ", f);
            md_text(f, res);
            fputs(")", f);
        }
        if (str_of(e, "error")) {
            fputs(": ", f);
            md_text(f, str_of(e, "error"));
        }
        fputs(" | ", f);
        md_code(f, str_of(e, "idempotency_key"));
        fputs(" | ", f);
        md_text_n(f, str_of(e, "response"), true, DETAIL_MAX);
        fputs(" |\n", f);
        free(to);
        free(res);
    }
    fputs("\n", f);
}

/* Everything up to the timeline. */
static void render_md_top(FILE *f, const irp_runlog *L)
{
    md_header(f, L);
    md_inputs(f, L);
    md_operators(f, L);
    md_steps(f, L);
    md_deadlines(f, L);
    md_decisions(f, L);
    md_notes(f, L);
    md_evidence(f, L);
    md_notifications(f, L);
}

static void render_md_end(FILE *f, const irp_runlog *L)
{
    fprintf(f, "---\n\n%s. Journal head `%s` after %zu lines: write it down elsewhere; "
               "`irp verify RUN_DIR --head %s` proves the record up to it was not changed.\n",
            L->tlp_label, L->head, L->n_events, L->head);
}

static void render_md(FILE *f, const irp_runlog *L)
{
    render_md_top(f, L);
    md_timeline(f, L);
    render_md_end(f, L);
}

/* ---- JSON ----------------------------------------------------------- */

static json_t *jtime(int64_t ms)
{
    char t[IRP_TIME_BUFSZ];
    if (ms < 0)
        return json_null();
    irp_time_format(ms, t);
    return json_string(t);
}

static json_t *jstr(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *jcopy(const json_t *v)
{
    return v ? json_deep_copy(v) : json_null();
}

static json_t *jduration(int64_t start, int64_t end)
{
    return start >= 0 && end >= start ? json_integer(end - start) : json_null();
}

static json_t *json_attempt(const irp_runlog_attempt *a)
{
    json_t *o = json_object();
    json_object_set_new(o, "attempt", json_integer(a->number));
    json_object_set_new(o, "status", jstr(a->status ? a->status : a->started ? "running" : NULL));
    json_object_set_new(o, "started_at", jtime(a->started_ms));
    json_object_set_new(o, "finished_at", jtime(a->finished_ms));
    json_object_set_new(o, "duration_ms", a->duration_ms >= 0 ? json_integer(a->duration_ms)
                                                              : json_null());
    json_object_set_new(o, "exit_code", a->exit_code >= 0 ? json_integer(a->exit_code)
                                                          : json_null());
    json_object_set_new(o, "signal", a->signal ? json_integer(a->signal) : json_null());
    json_object_set_new(o, "pid", a->pid ? json_integer(a->pid) : json_null());
    json_object_set_new(o, "error", jstr(a->error));
    json_object_set_new(o, "action", jcopy(json_object_get(a->started, "action")));
    json_object_set_new(o, "outputs", jcopy(json_object_get(a->finished, "outputs")));
    json_object_set_new(o, "log_sha256", jstr(str_of(a->finished, "log_sha256")));
    return o;
}

static json_t *json_instance(const irp_runlog_instance *in)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(in->id));
    json_object_set_new(o, "index", json_integer((json_int_t)in->index));
    json_object_set_new(o, "item", jcopy(in->item));
    json_object_set_new(o, "status", json_string(irp_state_name(in->state)));
    json_object_set_new(o, "reason", jstr(in->reason));
    json_object_set_new(o, "started_at", jtime(in->started_ms));
    int64_t end = irp_state_ended(in->state) ? in->finished_ms : -1;
    json_object_set_new(o, "finished_at", jtime(end));
    json_object_set_new(o, "duration_ms", jduration(in->started_ms, end));
    json_t *atts = json_array();
    for (size_t i = 0; i < in->n_attempts; i++)
        json_array_append_new(atts, json_attempt(&in->attempts[i]));
    json_object_set_new(o, "attempts", atts);
    return o;
}

static json_t *json_step(const irp_runlog_step *st)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(st->id));
    json_object_set_new(o, "title", json_string(st->title));
    json_object_set_new(o, "phase", *st->phase ? json_string(st->phase) : json_null());
    json_object_set_new(o, "finally", json_boolean(st->is_finally));
    json_object_set_new(o, "status", json_string(irp_state_name(st->state)));
    json_object_set_new(o, "reason", jstr(st->reason));
    json_object_set_new(o, "started_at", jtime(st->started_ms));
    int64_t end = irp_state_ended(st->state) ? st->finished_ms : -1;
    json_object_set_new(o, "finished_at", jtime(end));
    json_object_set_new(o, "duration_ms", jduration(st->started_ms, end));
    json_object_set_new(o, "items", jcopy(st->items));
    json_t *insts = json_array();
    for (size_t i = 0; i < st->n_insts; i++)
        json_array_append_new(insts, json_instance(&st->insts[i]));
    json_object_set_new(o, "instances", insts);
    return o;
}

static json_t *json_deadline(const irp_runlog *L, const irp_runlog_deadline *d)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(d->id));
    json_object_set_new(o, "title", jstr(d->title));
    json_object_set_new(o, "from", jstr(d->from));
    json_object_set_new(o, "within_ms", d->within_ms >= 0 ? json_integer(d->within_ms)
                                                          : json_null());
    json_object_set_new(o, "due", jtime(d->due_ms));
    json_object_set_new(o, "status", json_string(d->status));
    json_object_set_new(o, "margin_ms", d->has_margin ? json_integer(d->margin_ms) : json_null());
    int64_t ms;
    json_object_set_new(o, "remaining_ms", irp_runlog_remaining(L, d, L->last_ms, &ms)
                                               ? json_integer(ms) : json_null());
    json_object_set_new(o, "warned_at", jtime(d->warned_ms));
    json_object_set_new(o, "ended_at", jtime(d->ended_ms));
    return o;
}

static json_t *json_prompt(const irp_runlog_prompt *p)
{
    json_t *o = json_object();
    const json_t *a = p->answered;
    json_object_set_new(o, "step", json_string(p->step));
    json_object_set_new(o, "instance", jstr(p->instance));
    json_object_set_new(o, "prompt", jstr(str_of(p->asked, "prompt")));
    json_object_set_new(o, "choices", jcopy(json_object_get(p->asked, "choices")));
    json_object_set_new(o, "status", json_string(a ? "answered" : p->withdrawn ? "withdrawn"
                                                                                : "open"));
    json_object_set_new(o, "asked_at", jtime(p->asked_ms));
    json_object_set_new(o, "answered_at", jtime(a ? p->answered_ms : -1));
    json_object_set_new(o, "answer", jstr(str_of(a, "answer")));
    json_object_set_new(o, "note", jstr(str_of(a, "note")));
    json_object_set_new(o, "operator", jstr(str_of(a, "operator")));
    json_object_set_new(o, "via", jstr(str_of(a, "via")));
    json_object_set_new(o, "response_ms", jcopy(json_object_get(a, "response_ms")));
    return o;
}

static json_t *json_events(const json_t *const *evs, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_deep_copy(evs[i]));
    return arr;
}

static json_t *json_operators(const irp_runlog *L)
{
    static const char *const roles[] = { "started", "answered", "noted", "resumed" };
    json_t *arr = json_array();
    for (size_t i = 0; i < L->n_operators; i++) {
        const irp_runlog_operator *op = &L->operators[i];
        json_t *r = json_array();
        for (unsigned k = 0; k < 4; k++)
            if (op->roles & (1u << k))
                json_array_append_new(r, json_string(roles[k]));
        json_array_append_new(arr, json_pack("{s:s, s:o, s:I, s:I}", "name", op->name, "roles", r,
                                             "answers", (json_int_t)op->answers, "notes",
                                             (json_int_t)op->notes));
    }
    return arr;
}

static json_t *json_report(const irp_runlog *L)
{
    json_t *o = json_object();
    json_object_set_new(o, "format", json_integer(1));
    json_object_set_new(o, "tlp", jstr(L->pb_tlp));
    json_object_set_new(o, "tlp_label", json_string(L->tlp_label));
    json_t *run = json_object();
    json_object_set_new(run, "id", jstr(L->run_id));
    json_object_set_new(run, "mode", jstr(L->mode));
    json_object_set_new(run, "status", jstr(L->status));
    json_object_set_new(run, "started_at", jtime(L->started_ms));
    json_object_set_new(run, "finished_at", jtime(L->status ? L->finished_ms : -1));
    json_object_set_new(run, "detected_at", jtime(L->detected_ms));
    json_object_set_new(run, "operator", jstr(L->operator_name));
    json_object_set_new(run, "host", jstr(L->host));
    json_object_set_new(run, "irp_version", jstr(L->irp_version));
    json_object_set_new(run, "jobs", jcopy(json_object_get(L->started, "jobs")));
    json_object_set_new(run, "counts", jcopy(L->counts));
    json_object_set_new(o, "run", run);
    json_object_set_new(o, "playbook", jcopy(json_object_get(L->started, "playbook")));
    json_object_set_new(o, "inputs", jcopy(L->inputs));
    json_object_set_new(o, "operators", json_operators(L));
    json_t *steps = json_array();
    for (size_t i = 0; i < L->n_steps; i++)
        json_array_append_new(steps, json_step(&L->steps[i]));
    json_object_set_new(o, "steps", steps);
    json_t *dl = json_array();
    for (size_t i = 0; i < L->n_deadlines; i++)
        json_array_append_new(dl, json_deadline(L, &L->deadlines[i]));
    json_object_set_new(o, "deadlines", dl);
    json_t *pr = json_array();
    for (size_t i = 0; i < L->n_prompts; i++)
        json_array_append_new(pr, json_prompt(&L->prompts[i]));
    json_object_set_new(o, "decisions", pr);
    json_object_set_new(o, "notes", json_events(L->notes, L->n_notes));
    json_object_set_new(o, "evidence", json_events(L->evidence, L->n_evidence));
    json_object_set_new(o, "notifications", json_events(L->notifications, L->n_notifications));
    json_object_set_new(o, "events", json_events((const json_t *const *)L->events, L->n_events));
    json_object_set_new(o, "head", json_string(L->head));
    json_object_set_new(o, "lines", json_integer((json_int_t)L->n_events));
    json_object_set_new(o, "damage", L->damage[0] ? json_string(L->damage) : json_null());
    return o;
}

/* ---- JUnit ---------------------------------------------------------- */

/* XML 1.0 text or attribute value: markup characters as entities, line
 * breaks and tabs as character references (attribute values would fold
 * them), and characters XML forbids (C0 controls, U+FFFE, U+FFFF) as
 * U+FFFD.  Input is UTF-8 (jansson guarantees it). */
static void xml_text(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        case '\n': fputs("&#10;", f); break;
        case '\r': fputs("&#13;", f); break;
        case '\t': fputs("&#9;", f); break;
        default:
            if (*p < 0x20) {
                fputs("\xef\xbf\xbd", f);
            } else if (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)) {
                fputs("\xef\xbf\xbd", f);
                p += 2;
            } else {
                fputc(*p, f);
            }
        }
    }
}

static void xml_attr(FILE *f, const char *name, const char *value)
{
    fprintf(f, " %s=\"", name);
    xml_text(f, value);
    fputs("\"", f);
}

static void xml_property(FILE *f, const char *name, const char *value)
{
    fputs("    <property", f);
    xml_attr(f, "name", name);
    xml_attr(f, "value", value ? value : "");
    fputs("/>\n", f);
}

typedef struct junit_case {
    const char *name;
    irp_state state;
    int64_t started_ms, finished_ms;
    const char *detail;          /* reason or error */
    const irp_runlog_instance *in;
} junit_case;

/* c: tests, failures, errors, skipped */
static void junit_case_write(FILE *f, const irp_runlog *L, const junit_case *c, size_t counts[4])
{
    bool failed = c->state == IRP_ST_FAILED || c->state == IRP_ST_TIMED_OUT;
    bool error = c->state == IRP_ST_INTERRUPTED;
    bool skipped = c->state == IRP_ST_SKIPPED || c->state == IRP_ST_CANCELLED ||
                   !irp_state_ended(c->state);
    counts[0]++;
    counts[1] += failed;
    counts[2] += error;
    counts[3] += skipped;
    fputs("  <testcase", f);
    xml_attr(f, "classname", L->pb_id ? L->pb_id : "");
    xml_attr(f, "name", c->name);
    int64_t end = irp_state_ended(c->state) ? c->finished_ms : -1;
    int64_t ms = c->started_ms >= 0 && end >= c->started_ms ? end - c->started_ms : 0;
    fprintf(f, " time=\"%lld.%03lld\"", (long long)(ms / 1000), (long long)(ms % 1000));
    if (!failed && !error && !skipped) {
        fputs("/>\n", f);
        return;
    }
    const char *state = irp_state_name(c->state);
    const irp_runlog_attempt *last = c->in && c->in->n_attempts
                                         ? &c->in->attempts[c->in->n_attempts - 1] : NULL;
    char msg[600];
    if (skipped)
        snprintf(msg, sizeof msg, "%s%s%s%s", irp_state_ended(c->state) ? "" : "not finished: ",
                 state, c->detail ? ": " : "", c->detail ? c->detail : "");
    else if (c->detail)
        snprintf(msg, sizeof msg, "%s: %s", state, c->detail);
    else if (last && last->exit_code >= 0)
        snprintf(msg, sizeof msg, "%s: exit %lld", state, (long long)last->exit_code);
    else
        snprintf(msg, sizeof msg, "%s", state);
    const char *el = failed ? "failure" : error ? "error" : "skipped";
    fprintf(f, ">\n    <%s", el);
    xml_attr(f, "message", msg);
    if (!skipped)
        xml_attr(f, "type", state);
    fputs(">", f);
    if (last)
        fprintf(f, "%s after %zu attempt%s", state, c->in->n_attempts,
                c->in->n_attempts == 1 ? "" : "s");
    else
        fputs(state, f);
    if (c->detail) {
        fputs(": ", f);
        xml_text(f, c->detail);
    }
    fprintf(f, "</%s>\n  </testcase>\n", el);
}

static void junit_cases(FILE *f, const irp_runlog *L, size_t counts[4])
{
    for (size_t i = 0; i < L->n_steps; i++) {
        const irp_runlog_step *st = &L->steps[i];
        if (!st->n_insts) {
            junit_case jc = { st->id, st->state, st->started_ms, st->finished_ms, st->reason, NULL };
            junit_case_write(f, L, &jc, counts);
        }
        for (size_t k = 0; k < st->n_insts; k++) {
            const irp_runlog_instance *in = &st->insts[k];
            const char *why = in->reason;
            if (!why && in->n_attempts)
                why = in->attempts[in->n_attempts - 1].error;
            if (!why && st->ended_as_whole)
                why = st->reason;
            irp_state s = in->state;
            /* An instance the step's end overtook (a whole-step event)
             * takes the step's state. */
            if (!irp_state_ended(s) && st->ended_as_whole)
                s = st->state;
            junit_case jc = { in->id, s, in->started_ms,
                              irp_state_ended(in->state) ? in->finished_ms : st->finished_ms, why,
                              in };
            junit_case_write(f, L, &jc, counts);
        }
    }
}

static int render_junit(FILE *f, const irp_runlog *L)
{
    /* The cases first, so the suite's counts are those of what is written. */
    size_t c[4] = { 0, 0, 0, 0 }, len = 0;
    char *cases = NULL;
    FILE *cf = open_memstream(&cases, &len);
    if (!cf)
        return IRP_ENOMEM;
    junit_cases(cf, L, c);
    if (fclose(cf) != 0) {
        free(cases);
        return IRP_ENOMEM;
    }
    int64_t end = L->status ? L->finished_ms : L->last_ms;
    int64_t ms = L->started_ms >= 0 && end >= L->started_ms ? end - L->started_ms : 0;
    char ts[IRP_TIME_BUFSZ] = "";
    time_text(L->started_ms, ts);
    ts[19] = '\0';   /* JUnit's timestamp: no fraction, no zone (UTC) */
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite", f);
    xml_attr(f, "name", L->run_id ? L->run_id : "");
    fprintf(f, " tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" skipped=\"%zu\"", c[0], c[1],
            c[2], c[3]);
    fprintf(f, " time=\"%lld.%03lld\"", (long long)(ms / 1000), (long long)(ms % 1000));
    if (ts[0])
        xml_attr(f, "timestamp", ts);
    xml_attr(f, "hostname", L->host ? L->host : "");
    fputs(">\n  <properties>\n", f);
    xml_property(f, "tlp", L->tlp_label);
    xml_property(f, "run_id", L->run_id);
    xml_property(f, "mode", L->mode);
    xml_property(f, "status", L->status ? L->status : "not finished");
    xml_property(f, "playbook_id", L->pb_id);
    xml_property(f, "playbook_title", L->pb_title);
    xml_property(f, "playbook_sha256", L->pb_sha256);
    xml_property(f, "operator", L->operator_name);
    xml_property(f, "journal_head", L->head);
    char n[32];
    snprintf(n, sizeof n, "%zu", L->n_events);
    xml_property(f, "journal_lines", n);
    fputs("  </properties>\n", f);
    fwrite(cases, 1, len, f);
    free(cases);
    fputs("</testsuite>\n", f);
    return 0;
}

/* ---- entry points --------------------------------------------------- */

int irp_report_format_parse(const char *name, irp_report_format *out)
{
    static const char *const names[] = { "md", "json", "junit" };
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, names[i]) == 0) {
            *out = (irp_report_format)i;
            return 0;
        }
    if (name && strcmp(name, "markdown") == 0) {
        *out = IRP_REPORT_MD;
        return 0;
    }
    return IRP_EINVAL;
}

int irp_report_render(const irp_runlog *log, irp_report_format fmt, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (log->fed)
        return IRP_EINVAL;   /* its events are gone: see irp_report_stream */
    if (fmt == IRP_REPORT_JSON) {
        json_t *o = json_report(log);
        char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (!text)
            return IRP_ENOMEM;
        /* A newline at the end, as for every text file. */
        size_t n = strlen(text);
        char *t = realloc(text, n + 2);
        if (!t) {
            free(text);
            return IRP_ENOMEM;
        }
        t[n] = '\n';
        t[n + 1] = '\0';
        *out = t;
        *len = n + 1;
        return 0;
    }
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return IRP_ENOMEM;
    int rc = 0;
    if (fmt == IRP_REPORT_JUNIT)
        rc = render_junit(f, log);
    else
        render_md(f, log);
    bool bad = rc || ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        free(buf);
        return IRP_ENOMEM;
    }
    *out = buf;
    *len = n;
    return 0;
}

int irp_report_save(const char *run_dir, char *err, size_t errlen)
{
    return irp_report_save_pb(run_dir, NULL, err, errlen);
}

int irp_report_save_pb(const char *run_dir, const irp_playbook *pb, char *err, size_t errlen)
{
    irp_runlog *log = NULL;
    int rc = irp_runlog_load_pb(run_dir, pb, &log, err, errlen);
    if (rc && !log)
        return rc;
    char *md = NULL;
    size_t len = 0;
    rc = irp_report_render(log, IRP_REPORT_MD, &md, &len);
    irp_runlog_free(log);
    if (!rc)
        rc = rundir_write(run_dir, "report.md", md, len, true);
    if (rc)
        snprintf(err, errlen, "cannot write %s/report.md: %s", run_dir, irp_strerror(rc));
    free(md);
    return rc;
}

/* ---- the report of a run as it is written ------------------------- */

/* A run's lines are handed to a thread of the stream's own in batches:
 * the model and the timeline are most of what the report costs, and the
 * run's thread need not wait for them.  An event made of fields travels
 * as a copy of what the report reads of it, with its row's detail
 * already described (its action is the run's, and stays on the run's
 * thread); any other line as its object, which is never changed once
 * journaled. */
typedef struct srec {
    irp_runlog_event e;      /* strings: offsets + 1 into the batch's text
                                (0: NULL) until the thread takes it */
    json_t *line;            /* an object's line (a reference), or NULL */
    size_t detail, detail_len;
    bool detail_failed;
} srec;

typedef struct sbatch {
    struct sbatch *next;
    srec *recs;
    size_t n, cap;
    char *text;
    size_t len, text_cap;
} sbatch;

/* Lines per batch: one hand-over, and one wake-up of the thread, for
 * this many.  At most BATCH_QUEUED batches wait for the thread: a run
 * that makes lines faster than the report takes them in waits for it
 * rather than keep them all. */
#define BATCH_RECS 2048
#define BATCH_QUEUED 8

struct irp_report_stream {
    irp_runlog *log;
    int fd;                  /* the rows written so far: an unlinked file in
                                the run directory, or -1: all in `rows` */
    off_t written;           /* bytes of rows in fd */
    obuf rows;               /* rows not yet in fd */
    row_scratch rs;
    _Atomic int err;         /* first failure; the report is then not saved */
    irp_runlog_ts_memo memo; /* the feeding thread's (the log's is the other's) */

    /* The thread: everything above but err and memo is its own while it
     * runs; the run's thread has `fill` and `detail`. */
    bool threaded;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* a batch or closing, for the thread */
    pthread_cond_t room;           /* fewer than BATCH_QUEUED queued */
    size_t queued;
    sbatch *queue, **queue_tail;   /* for the thread, in order */
    sbatch *spare;                 /* done with, for the next */
    bool closing;
    sbatch *fill;                  /* being filled */
    obuf detail;
};

/* Rows go to the file in pieces this big: the timeline of a long run is
 * its biggest text, and need not stay in memory until the end. */
#define ROWS_FLUSH ((size_t)256 * 1024)

/* A file nobody else sees, for the rows: O_TMPFILE, else a name unlinked
 * at once. */
static int rows_file(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/.report-rows.XXXXXX", dir) >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0)
        unlink(path);
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return irp_err_from_errno(w < 0 ? errno : EIO);
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int rows_flush(irp_report_stream *s)
{
    if (s->rows.failed)
        return IRP_ENOMEM;
    if (s->fd < 0 || !s->rows.len)
        return 0;
    int rc = write_all(s->fd, s->rows.p, s->rows.len);
    s->written += (off_t)s->rows.len;
    s->rows.len = 0;
    return rc;
}

static void set_err(irp_report_stream *s, int rc)
{
    int none = 0;
    if (rc)
        atomic_compare_exchange_strong(&s->err, &none, rc);
}

/* One line into the model and the timeline: on the stream's thread when
 * it has one. */
static void feed_line(irp_report_stream *s, const irp_runlog_event *e, const char *detail,
                      size_t detail_len, bool detail_failed)
{
    int rc = irp_runlog_feed_event(s->log, (json_t *)e->line, e);
    if (!rc) {
        if (detail) {
            row_head(&s->rows, s->log->started_ms, e);
            row_end(&s->rows, detail, detail_len, detail_failed);
        } else {
            md_timeline_row(&s->rows, &s->rs, s->log->started_ms, e);
        }
        if (s->rows.failed)
            rc = IRP_ENOMEM;
        else if (s->rows.len >= ROWS_FLUSH)
            rc = rows_flush(s);
    }
    set_err(s, rc);
}

static const char *text_at(const sbatch *b, const char *off)
{
    return off ? b->text + ((uintptr_t)off - 1) : NULL;
}

static void run_batch(irp_report_stream *s, sbatch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        srec *r = &b->recs[i];
        if (!atomic_load(&s->err)) {
            if (r->line) {
                irp_runlog_event e;
                irp_runlog_event_read(r->line, &s->log->ts_memo, &e);
                feed_line(s, &e, NULL, 0, false);
            } else {
                irp_runlog_event *e = &r->e;
                const char **str[] = { &e->name, &e->ts, &e->step, &e->instance, &e->op,
                                       &e->collector, &e->status, &e->error, &e->reason };
                for (size_t k = 0; k < sizeof str / sizeof str[0]; k++)
                    *str[k] = text_at(b, *str[k]);
                feed_line(s, e, b->text + r->detail, r->detail_len, r->detail_failed);
            }
        }
        json_decref(r->line);
    }
    b->n = b->len = 0;
}

static void *stream_thread(void *arg)
{
    irp_report_stream *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->queue && !s->closing)
            pthread_cond_wait(&s->cv, &s->mu);
        sbatch *b = s->queue;
        if (!b)
            break;
        if (!(s->queue = b->next))
            s->queue_tail = &s->queue;
        if (s->queued-- == BATCH_QUEUED)
            pthread_cond_signal(&s->room);
        pthread_mutex_unlock(&s->mu);
        run_batch(s, b);
        pthread_mutex_lock(&s->mu);
        b->next = s->spare;
        s->spare = b;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* The thread, with every signal blocked: they are the loop's to handle. */
static bool start_thread(irp_report_stream *s)
{
    if (pthread_mutex_init(&s->mu, NULL) != 0)
        return false;
    if (pthread_cond_init(&s->cv, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        return false;
    }
    if (pthread_cond_init(&s->room, NULL) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        return false;
    }
    s->queue_tail = &s->queue;
    s->threaded = irp_thread_start(&s->thread, stream_thread, s);
    if (!s->threaded) {
        pthread_cond_destroy(&s->room);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
    }
    return s->threaded;
}

/* Hand the batch being filled to the thread, and take another. */
static void submit(irp_report_stream *s)
{
    sbatch *b = s->fill;
    pthread_mutex_lock(&s->mu);
    if (b && b->n) {
        while (s->queued >= BATCH_QUEUED)
            pthread_cond_wait(&s->room, &s->mu);
        s->queued++;
        b->next = NULL;
        *s->queue_tail = b;
        s->queue_tail = &b->next;
        pthread_cond_signal(&s->cv);
        b = s->spare;
        if (b) {
            s->spare = b->next;
            b->next = NULL;
        }
    }
    pthread_mutex_unlock(&s->mu);
    s->fill = b;
}

/* Wait for the thread to take in every line handed over. */
static void stop_thread(irp_report_stream *s)
{
    if (!s->threaded)
        return;
    submit(s);
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->threaded = false;
    pthread_cond_destroy(&s->room);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

static void batch_free(sbatch *b)
{
    while (b) {
        sbatch *next = b->next;
        for (size_t i = 0; i < b->n; i++)
            json_decref(b->recs[i].line);
        free(b->recs);
        free(b->text);
        free(b);
        b = next;
    }
}

/* Room in the batch being filled for one more line and `text` bytes. */
static srec *batch_rec(irp_report_stream *s, size_t text)
{
    sbatch *b = s->fill;
    if (!b && !(b = s->fill = calloc(1, sizeof *b)))
        return NULL;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : BATCH_RECS;
        srec *r = realloc(b->recs, cap * sizeof *r);
        if (!r)
            return NULL;
        b->recs = r;
        b->cap = cap;
    }
    if (b->len + text > b->text_cap) {
        size_t cap = b->text_cap ? b->text_cap : 64 * 1024;
        while (cap < b->len + text)
            cap *= 2;
        char *t = realloc(b->text, cap);
        if (!t)
            return NULL;
        b->text = t;
        b->text_cap = cap;
    }
    return &b->recs[b->n];
}

static const char *keep_text(sbatch *b, const char *str)
{
    if (!str)
        return NULL;
    size_t n = strlen(str) + 1, at = b->len;
    memcpy(b->text + at, str, n);
    b->len += n;
    return (const char *)(uintptr_t)(at + 1);
}

/* An event made of fields, as its copy and its row's detail. */
static int queue_fields(irp_report_stream *s, const irp_runlog_event *e)
{
    obuf *d = &s->detail;
    d->len = 0;
    describe_fast(d, e);
    const char *str[] = { e->name, e->ts, e->step, e->instance, e->op,
                          e->collector, e->status, e->error, e->reason };
    size_t text = d->len;
    for (size_t k = 0; k < sizeof str / sizeof str[0]; k++)
        text += str[k] ? strlen(str[k]) + 1 : 0;
    srec *r = batch_rec(s, text);
    if (!r)
        return IRP_ENOMEM;
    sbatch *b = s->fill;
    *r = (srec){ .e = *e, .detail_failed = d->failed };
    r->e.action = NULL;
    r->e.name = keep_text(b, e->name);
    r->e.ts = keep_text(b, e->ts);
    r->e.step = keep_text(b, e->step);
    r->e.instance = keep_text(b, e->instance);
    r->e.op = keep_text(b, e->op);
    r->e.collector = keep_text(b, e->collector);
    r->e.status = keep_text(b, e->status);
    r->e.error = keep_text(b, e->error);
    r->e.reason = keep_text(b, e->reason);
    r->detail = b->len;
    r->detail_len = d->len;
    if (d->len)
        memcpy(b->text + b->len, d->p, d->len);
    b->len += d->len;
    b->n++;
    return 0;
}

static int queue_object(irp_report_stream *s, json_t *line)
{
    srec *r = batch_rec(s, 0);
    if (!r)
        return IRP_ENOMEM;
    *r = (srec){ .line = json_incref(line) };
    s->fill->n++;
    return 0;
}

int irp_report_stream_new(const irp_playbook *pb, const char *run_dir, irp_report_stream **out)
{
    irp_report_stream *s = calloc(1, sizeof *s);

    *out = NULL;
    if (!s)
        return IRP_ENOMEM;
    s->fd = -1;
    s->memo = (irp_runlog_ts_memo)IRP_RUNLOG_TS_MEMO_INIT;
    int rc = irp_runlog_new_fed(pb, &s->log);
    if (!rc && run_dir && (s->fd = rows_file(run_dir)) < 0)
        rc = irp_err_from_errno(errno);
    if (!rc)
        rc = row_scratch_open(&s->rs);
    if (rc) {
        irp_report_stream_free(s);
        return rc;
    }
    /* Without a thread, the lines are taken in as they come. */
    if (run_dir)
        start_thread(s);
    *out = s;
    return 0;
}

int irp_report_stream_feed(void *ctx, irp_event *line)
{
    irp_report_stream *s = ctx;
    int rc = atomic_load(&s->err);

    if (rc)
        return rc;
    if (s->threaded) {
        irp_runlog_event e;
        if (line->f && !line->json) {
            irp_runlog_event_read_fields(line, &s->memo, &e);
            if (irp_runlog_event_fast(e.kind))
                rc = queue_fields(s, &e);
            else
                rc = irp_event_json(line) ? queue_object(s, line->json) : IRP_ENOMEM;
        } else {
            rc = queue_object(s, line->json);
        }
        if (!rc && s->fill->n == BATCH_RECS)
            submit(s);
        set_err(s, rc);
        return atomic_load(&s->err);
    }
    /* The line's fields are read once, for the model and the row.  An
     * event made of fields becomes an object only if it is of a kind
     * that needs more than they hold. */
    irp_runlog_event e;
    if (line->f && !line->json) {
        irp_runlog_event_read_fields(line, &s->memo, &e);
        if (!irp_runlog_event_fast(e.kind) && !(e.line = irp_event_json(line))) {
            set_err(s, IRP_ENOMEM);
            return IRP_ENOMEM;
        }
    } else {
        irp_runlog_event_read(line->json, &s->memo, &e);
    }
    feed_line(s, &e, NULL, 0, false);
    return atomic_load(&s->err);
}

/* The rows from the file into out_fd at its offset: in the kernel when it
 * can, else through a buffer. */
#define ROWS_CHUNK ((size_t)8 << 20)
static int rows_copy(irp_report_stream *s, int out_fd)
{
    off_t off = 0;
    while (off < s->written) {
        size_t want = (size_t)(s->written - off) < ROWS_CHUNK ? (size_t)(s->written - off)
                                                              : ROWS_CHUNK;
        off_t at = lseek(out_fd, 0, SEEK_CUR);
        ssize_t n = copy_file_range(s->fd, &off, out_fd, NULL, want, 0);
        if (n > 0) {
            /* The report is synced next: its writeback starts chunk by
             * chunk, while the rest is copied. */
            if (at >= 0)
                (void)sync_file_range(out_fd, at, n, SYNC_FILE_RANGE_WRITE);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EXDEV && errno != EINVAL && errno != ENOSYS &&
            errno != EOPNOTSUPP && errno != EBADF)
            return irp_err_from_errno(errno);
        break;
    }
    char buf[65536];
    while (off < s->written) {
        size_t want = (size_t)(s->written - off) < sizeof buf ? (size_t)(s->written - off)
                                                              : sizeof buf;
        ssize_t n = pread(s->fd, buf, want, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return irp_err_from_errno(n < 0 ? errno : EIO);
        int rc = write_all(out_fd, buf, (size_t)n);
        if (rc)
            return rc;
        off += n;
    }
    return 0;
}

/* f writes to fd (report_file). */
static int write_stream(irp_report_stream *s, FILE *f, int fd)
{
    int rc = rows_flush(s);
    if (rc)
        return rc;
    render_md_top(f, s->log);
    fputs(timeline_head, f);
    if (s->fd >= 0) {
        /* stdio's buffer out first, then the rows behind it; stdio goes
         * on from fd's offset, where the copy ended. */
        if (fflush(f) != 0)
            return irp_err_from_errno(errno ? errno : EIO);
        rc = rows_copy(s, fd);
        if (rc)
            return rc;
    } else {
        fwrite(s->rows.p ? s->rows.p : "", 1, s->rows.len, f);
    }
    fputs("\n", f);
    render_md_end(f, s->log);
    return fflush(f) != 0 || ferror(f) ? irp_err_from_errno(errno ? errno : EIO) : 0;
}

int irp_report_stream_finish(irp_report_stream *s)
{
    stop_thread(s);
    return atomic_load(&s->err);
}

#define REPORT_STDIO_BUF ((size_t)1 << 20)

/* stdio's writes to the report: each starts the writeback of what it
 * wrote, so the fsync at the end waits for the last of 46 MB (100,000
 * steps) rather than all of it. */
static ssize_t report_write(void *cookie, const char *p, size_t n)
{
    int fd = *(const int *)cookie;
    off_t at = lseek(fd, 0, SEEK_CUR);
    if (write_all(fd, p, n) != 0)
        return -1;
    if (at >= 0)
        (void)sync_file_range(fd, at, (off_t)n, SYNC_FILE_RANGE_WRITE);
    return (ssize_t)n;
}

/* A stream over *fd (which it does not close), buffered in `buf`. */
static FILE *report_file(int *fd, char *buf)
{
    FILE *f = fopencookie(fd, "w", (cookie_io_functions_t){ .write = report_write });
    if (f) {
        __fsetlocking(f, FSETLOCKING_BYCALLER);
        /* The steps table of a long run is tens of MB: stdio's own 4 KiB
         * buffer would write it in thousands of write() calls. */
        if (buf)
            setvbuf(f, buf, _IOFBF, REPORT_STDIO_BUF);
    }
    return f;
}

int irp_report_stream_save(irp_report_stream *s, const char *run_dir, const char *head,
                           char *err, size_t errlen)
{
    char path[4096];
    int rc = irp_report_stream_finish(s);

    snprintf(path, sizeof path, "%s/report.md", run_dir);
    irp_runlog_settle(s->log, head);
    int fd = rc ? -1 : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    char *big = fd < 0 ? NULL : malloc(REPORT_STDIO_BUF);
    FILE *f = fd < 0 ? NULL : report_file(&fd, big);
    if (!rc && !f)
        rc = irp_err_from_errno(fd < 0 ? errno : ENOMEM);
    if (!rc)
        rc = write_stream(s, f, fd);
    if (f && fclose(f) != 0 && !rc)
        rc = irp_err_from_errno(errno ? errno : EIO);
    if (!rc && fsync(fd) != 0)
        rc = irp_err_from_errno(errno);
    if (fd >= 0)
        close(fd);
    free(big);
    if (rc)
        snprintf(err, errlen, "cannot write %s: %s", path, irp_strerror(rc));
    return rc;
}

void irp_report_stream_free(irp_report_stream *s)
{
    if (!s)
        return;
    stop_thread(s);
    batch_free(s->fill);
    batch_free(s->spare);
    free(s->detail.p);
    if (s->fd >= 0)
        close(s->fd);
    free(s->rows.p);
    row_scratch_close(&s->rs);
    irp_runlog_free(s->log);
    free(s);
}
