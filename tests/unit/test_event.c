/* Events made of fields: the same text, object and model fields as the
 * object they stand for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "irp/error.h"
#include "irp/event.h"
#include "irp/journal.h"
#include "irp/jsonutil.h"
#include "irp/runlog.h"

/* "{" members "}" as irp_event_dump_members writes them; NULL on error. */
static char *dumped(const irp_event *ev, int *rc)
{
    irp_json_buf b = { 0 };
    *rc = irp_json_buf_put(&b, "{", 1);
    if (!*rc)
        *rc = irp_event_dump_members(ev, &b);
    if (!*rc)
        *rc = irp_json_buf_put(&b, "}", 2);   /* with its NUL */
    if (*rc) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* Fields and the object made of them write the same text, which is what
 * jansson writes for that object. */
static void assert_same_text(irp_event *ev)
{
    int rc;
    char *text = dumped(ev, &rc);
    assert_int_equal(rc, 0);
    json_t *o = irp_event_json(ev);
    assert_non_null(o);
    char *want = json_dumps(o, JSON_COMPACT);
    assert_non_null(want);
    assert_string_equal(text, want);
    irp_event as_object = IRP_EVENT_OF(o);
    char *again = dumped(&as_object, &rc);
    assert_string_equal(again, want);
    free(text);
    free(want);
    free(again);
}

static void test_fields_write_what_jansson_writes(void **state)
{
    (void)state;
    char every[128];
    for (int c = 1; c < 128; c++)
        every[c - 1] = (char)c;
    every[127] = '\0';
    json_t *nested = json_pack("{s:[i,s,b,n],s:{s:f}}", "argv", 1, "tab\there", 1, "inner",
                               "x", 0.5);
    irp_event_field f[] = {
        IRP_EVF_TEXT("ts", "2026-11-30T12:00:00.000Z", 24),
        IRP_EVF_TEXT("every_ascii", every, 127),
        IRP_EVF_TEXT("utf8", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92", 14),
        IRP_EVF_TEXT("empty", "", 0),
        IRP_EVF_NUM("min", INT64_MIN),
        IRP_EVF_NUM("minus_one", -1),
        IRP_EVF_NUM("zero", 0),
        IRP_EVF_NUM("max", INT64_MAX),
        IRP_EVF_VALUE("action", nested),
        IRP_EVF_VALUE("empty_object", json_object()),
    };
    irp_event ev = IRP_EVENT_FIELDS(f, sizeof f / sizeof f[0]);
    assert_same_text(&ev);
    /* Keys in the order given. */
    const char *k;
    json_t *v;
    size_t i = 0;
    json_object_foreach(irp_event_json(&ev), k, v)
        assert_string_equal(k, f[i++].key);
    assert_int_equal(i, sizeof f / sizeof f[0]);
    irp_event_done(&ev);
    json_decref((json_t *)f[9].j);
    json_decref(nested);
}

static void test_fields_not_utf8_are_refused(void **state)
{
    (void)state;
    irp_event_field f[] = {
        IRP_EVF_TEXT("event", "note", 4),
        IRP_EVF_TEXT("text", "bad \xff byte", 10),
    };
    irp_event ev = IRP_EVENT_FIELDS(f, 2);
    irp_json_buf b = { 0 };
    assert_int_equal(irp_json_buf_put(&b, "[", 1), 0);
    assert_int_equal(irp_event_dump_members(&ev, &b), IRP_EINVAL);
    assert_int_equal(b.len, 1);                 /* nothing half-written */
    assert_null(irp_event_json(&ev));           /* jansson refuses it too */
    free(b.p);
    irp_event_done(&ev);
}

static void test_event_str_reads_both_forms(void **state)
{
    (void)state;
    irp_event_field f[] = {
        IRP_EVF_TEXT("event", "step.finished", 13),
        IRP_EVF_NUM("attempt", 2),
    };
    irp_event ev = IRP_EVENT_FIELDS(f, 2);
    assert_string_equal(irp_event_str(&ev, "event"), "step.finished");
    assert_null(irp_event_str(&ev, "attempt"));   /* not a string */
    assert_null(irp_event_str(&ev, "status"));    /* absent */
    json_t *o = json_pack("{s:s,s:i}", "event", "note", "attempt", 1);
    irp_event obj = IRP_EVENT_OF(o);
    assert_string_equal(irp_event_str(&obj, "event"), "note");
    assert_null(irp_event_str(&obj, "attempt"));
    irp_event_done(&obj);                         /* borrowed: not freed here */
    assert_int_equal(o->refcount, 1);
    json_decref(o);
    irp_event_done(&ev);
}

/* The report's reading of fields is its reading of the object. */
static void assert_same_read(irp_event *ev)
{
    irp_runlog_event a, b;
    irp_runlog_event_read_fields(ev, NULL, &a);
    irp_runlog_event_read(irp_event_json(ev), NULL, &b);
    assert_null(a.line);
    assert_ptr_equal(b.line, ev->json);
    assert_int_equal(a.kind, b.kind);
    assert_int_equal(a.ts_ms, b.ts_ms);
    const char *const *sa[] = { &a.name, &a.ts, &a.step, &a.instance, &a.op, &a.collector,
                                &a.status, &a.error, &a.reason };
    const char *const *sb[] = { &b.name, &b.ts, &b.step, &b.instance, &b.op, &b.collector,
                                &b.status, &b.error, &b.reason };
    for (size_t i = 0; i < sizeof sa / sizeof sa[0]; i++) {
        if (!*sa[i] || !*sb[i])
            assert_ptr_equal(*sa[i], *sb[i]);
        else
            assert_string_equal(*sa[i], *sb[i]);
    }
    const irp_runlog_int *ia[] = { &a.attempt, &a.pid, &a.exit_code, &a.signal,
                                   &a.duration_ms, &a.delay_ms, &a.next_attempt };
    const irp_runlog_int *ib[] = { &b.attempt, &b.pid, &b.exit_code, &b.signal,
                                   &b.duration_ms, &b.delay_ms, &b.next_attempt };
    for (size_t i = 0; i < sizeof ia / sizeof ia[0]; i++) {
        assert_int_equal(ia[i]->set, ib[i]->set);
        assert_int_equal(ia[i]->v, ib[i]->v);
    }
    assert_true(json_equal((json_t *)a.action, (json_t *)b.action) ||
                (!a.action && !b.action));
}

static void test_runlog_reads_fields_as_the_object(void **state)
{
    (void)state;
    json_t *action = json_pack("{s:[s,s]}", "argv", "true", "--x");
    json_t *seven = json_integer(7);
    irp_event_field finished[] = {
        IRP_EVF_TEXT("ts", "2026-11-30T12:00:01.250Z", 24),
        IRP_EVF_TEXT("event", "step.finished", 13),
        IRP_EVF_TEXT("step", "isolate", 7),
        IRP_EVF_TEXT("instance", "isolate[web1]", 13),
        IRP_EVF_NUM("attempt", 3),
        IRP_EVF_TEXT("status", "failed", 6),
        IRP_EVF_VALUE("exit_code", seven),           /* an integer as a value */
        IRP_EVF_NUM("signal", 9),
        IRP_EVF_NUM("duration_ms", 1250),
        IRP_EVF_TEXT("error", "exit 7", 6),
    };
    irp_event ev = IRP_EVENT_FIELDS(finished, sizeof finished / sizeof finished[0]);
    assert_same_read(&ev);
    irp_runlog_event r;
    irp_runlog_event_read_fields(&ev, NULL, &r);
    assert_int_equal(r.kind, IRP_RUNLOG_EV_STEP_FINISHED);
    assert_true(r.exit_code.set && r.exit_code.v == 7);
    assert_true(r.attempt.set && r.attempt.v == 3);
    assert_false(r.pid.set);
    assert_true(irp_runlog_event_fast(r.kind));
    irp_event_done(&ev);

    irp_event_field started[] = {
        IRP_EVF_TEXT("ts", "not a time", 10),
        IRP_EVF_TEXT("event", "step.started", 12),
        IRP_EVF_TEXT("step", "isolate", 7),
        IRP_EVF_TEXT("attempt", "1", 1),                /* not an integer */
        IRP_EVF_VALUE("action", action),
    };
    ev = (irp_event)IRP_EVENT_FIELDS(started, sizeof started / sizeof started[0]);
    assert_same_read(&ev);
    irp_runlog_event_read_fields(&ev, NULL, &r);
    assert_int_equal(r.ts_ms, -1);
    assert_false(r.attempt.set);
    assert_ptr_equal(r.action, action);
    irp_event_done(&ev);
    assert_false(irp_runlog_event_fast(IRP_RUNLOG_EV_STEP_PROMPTED));
    json_decref(action);
    json_decref(seven);
}

/* ---- the journal ------------------------------------------------------- */

typedef struct seen {
    int n, as_fields;
} seen;

static int on_tap(void *ctx, irp_event *ev)
{
    seen *s = ctx;
    s->n++;
    s->as_fields += ev->f != NULL && ev->json == NULL;
    return 0;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

/* The same events appended as fields and as objects make the same file,
 * chain included; the tap is handed the fields themselves. */
static void test_journal_writes_fields_as_objects(void **state)
{
    (void)state;
    char dir[] = "/tmp/irp-event-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char pa[64], pb[64];
    snprintf(pa, sizeof pa, "%s/a.jsonl", dir);
    snprintf(pb, sizeof pb, "%s/b.jsonl", dir);
    irp_journal *a, *b;
    assert_int_equal(irp_journal_create(pa, &a), 0);
    assert_int_equal(irp_journal_create(pb, &b), 0);
    seen s = { 0 };
    irp_journal_set_tap(a, on_tap, &s);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "s%03d", i);
        irp_event_field f[] = {
            IRP_EVF_TEXT("ts", "2026-11-30T12:00:00.000Z", 24),
            IRP_EVF_TEXT("event", "step.finished", 13),
            IRP_EVF_TEXT("step", id, strlen(id)),
            IRP_EVF_TEXT("detail", "quote \" backslash \\ newline \n", 29),
            IRP_EVF_NUM("duration_ms", (int64_t)i * 1000),
        };
        irp_event ev = IRP_EVENT_FIELDS(f, sizeof f / sizeof f[0]);
        uint64_t seq = 0;
        assert_int_equal(irp_journal_append_event(a, &ev, &seq), 0);
        assert_int_equal(seq, (uint64_t)i + 1);
        json_t *o = json_deep_copy(irp_event_json(&ev));
        assert_int_equal(irp_journal_append(b, o, NULL), 0);
        json_decref(o);
        irp_event_done(&ev);
    }
    assert_int_equal(s.n, 5);
    assert_int_equal(s.as_fields, 5);
    assert_string_equal(irp_journal_head(a), irp_journal_head(b));
    irp_journal_close(a);
    irp_journal_close(b);
    char *ta = slurp(pa), *tb = slurp(pb);
    assert_string_equal(ta, tb);
    assert_non_null(strstr(ta, "\"detail\":\"quote \\\" backslash \\\\ newline \\n\""));
    free(ta);
    free(tb);
    unlink(pa);
    unlink(pb);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_write_what_jansson_writes),
        cmocka_unit_test(test_fields_not_utf8_are_refused),
        cmocka_unit_test(test_event_str_reads_both_forms),
        cmocka_unit_test(test_runlog_reads_fields_as_the_object),
        cmocka_unit_test(test_journal_writes_fields_as_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
