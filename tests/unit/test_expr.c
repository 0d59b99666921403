#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "irp/error.h"
#include "irp/expr.h"

#define GOLDEN_DIR IRP_SOURCE_DIR "/tests/expr"

/* ---------------------------------------------------------------- */
/* A scope backed by a JSON object, as the golden files describe it.  */

struct json_scope {
    json_t *root;
    size_t lookups;
};

static int json_lookup(void *ctx, const char *const *seg, size_t n, irp_value **out,
                       char *errbuf, size_t errlen)
{
    struct json_scope *s = ctx;
    json_t *j = s->root;
    s->lookups++;
    for (size_t i = 0; i < n && j; i++)
        j = json_is_object(j) ? json_object_get(j, seg[i]) : NULL;
    if (!j) {
        char path[256] = "";
        for (size_t i = 0; i < n; i++) {
            strncat(path, i ? "." : "", sizeof path - strlen(path) - 1);
            strncat(path, seg[i], sizeof path - strlen(path) - 1);
        }
        snprintf(errbuf, errlen, "'%s' is not defined", path);
        return IRP_EUNDEF;
    }
    int rc = irp_value_from_json(j, out);
    if (rc == 0 && strcmp(seg[0], "secrets") == 0)
        irp_value_taint(*out);
    return rc;
}

/* ---------------------------------------------------------------- */
/* Golden files                                                      */

struct golden {
    const char *file;
    size_t cases, failures;
};

static void golden_fail(struct golden *g, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void golden_fail(struct golden *g, size_t line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%zu: ", g->file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    g->failures++;
}

static char *render_json(const irp_value *v)
{
    json_t *j = irp_value_to_json(v, 0);
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    return s;
}

/* Run one case; `lines` are the case's 3 lines after any %%FAIL. */
static void run_case(struct golden *g, size_t line, bool must_fail, char **lines)
{
    const char *src = lines[0];
    json_error_t jerr;
    json_t *scope_json = json_loads(lines[1], 0, &jerr);
    if (!json_is_object(scope_json)) {
        golden_fail(g, line + 1, "scope is not a JSON object: %s", jerr.text);
        json_decref(scope_json);
        return;
    }
    struct json_scope js = { scope_json, 0 };
    irp_scope scope = { json_lookup, &js };
    irp_arena a = IRP_ARENA_INIT;
    irp_expr *e = NULL;
    irp_value *v = NULL;
    irp_expr_error err = { 0 };
    int rc = irp_expr_parse(&a, src, strlen(src), &e, &err);
    if (rc == 0)
        rc = irp_expr_eval(e, &scope, &v, &err);
    g->cases++;

    if (must_fail) {
        char got[IRP_EXPR_ERRMAX + 32];
        if (rc == 0) {
            char *text = render_json(v);
            golden_fail(g, line, "expected an error, got %s", text);
            free(text);
        } else {
            snprintf(got, sizeof got, "%zu: %s", err.offset + 1, err.msg);
            if (strcmp(got, lines[2]) != 0)
                golden_fail(g, line, "error\n  got:  %s\n  want: %s", got, lines[2]);
        }
    } else if (rc != 0) {
        golden_fail(g, line, "unexpected error at column %zu: %s", err.offset + 1, err.msg);
    } else {
        const char *want_text = lines[2];
        bool want_secret = strncmp(want_text, "%%SECRET ", 9) == 0;
        if (want_secret)
            want_text += 9;
        json_t *wj = json_loads(want_text, JSON_DECODE_ANY, &jerr);
        irp_value *want = NULL;
        if (!wj || irp_value_from_json(wj, &want) != 0) {
            golden_fail(g, line + 2, "expected value is not JSON: %s", jerr.text);
        } else if (!irp_value_equal(v, want)) {
            char *text = render_json(v);
            golden_fail(g, line, "value\n  got:  %s\n  want: %s", text, want_text);
            free(text);
        } else if (irp_value_is_secret(v) != want_secret) {
            golden_fail(g, line, "result is %ssecret", want_secret ? "not " : "");
        }
        irp_value_unref(want);
        json_decref(wj);
    }
    irp_value_unref(v);
    irp_arena_release(&a);
    json_decref(scope_json);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* Split into lines in place; returns the count. */
static size_t split_lines(char *text, char ***out)
{
    size_t n = 0, cap = 256;
    char **lines = malloc(cap * sizeof *lines);
    for (char *p = text; lines && *p;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        if (n == cap) {
            cap *= 2;
            lines = realloc(lines, cap * sizeof *lines);
            if (!lines)
                break;
        }
        lines[n++] = p;
        if (!nl)
            break;
        p = nl + 1;
    }
    *out = lines;
    return lines ? n : 0;
}

static void run_golden_file(struct golden *g, const char *path)
{
    char *text = read_file(path);
    assert_non_null(text);
    char **lines;
    size_t n = split_lines(text, &lines);
    size_t i = 0;
    while (i < n) {
        if (lines[i][0] == '\0' || lines[i][0] == '#') {
            i++;
            continue;
        }
        size_t start = i;
        bool must_fail = strcmp(lines[i], "%%FAIL") == 0;
        if (must_fail)
            i++;
        if (i + 3 > n || !lines[i + 1][0] || !lines[i + 2][0]) {
            golden_fail(g, start + 1, "incomplete case: expression, scope and result expected");
            break;
        }
        run_case(g, i + 1, must_fail, &lines[i]);
        i += 3;
        if (i < n && lines[i][0] != '\0')
            golden_fail(g, i + 1, "a blank line must end a case");
    }
    free(lines);
    free(text);
}

static int is_test_file(const struct dirent *d)
{
    size_t len = strlen(d->d_name);
    return len > 5 && strcmp(d->d_name + len - 5, ".test") == 0;
}

static void test_expr_golden_files(void **state)
{
    (void)state;
    struct dirent **names;
    int n = scandir(GOLDEN_DIR, &names, is_test_file, alphasort);
    assert_true(n > 0);
    size_t cases = 0, failures = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", GOLDEN_DIR, names[i]->d_name);
        struct golden g = { names[i]->d_name, 0, 0 };
        run_golden_file(&g, path);
        cases += g.cases;
        failures += g.failures;
        free(names[i]);
    }
    free(names);
    printf("expression golden cases: %zu, failed: %zu\n", cases, failures);
    assert_int_equal(failures, 0);
    assert_true(cases >= 80);
}

/* ---------------------------------------------------------------- */
/* Unit tests                                                        */

struct refs_seen {
    char text[8][64];
    size_t offset[8];
    size_t n;
    size_t stop_after;   /* 0 = never */
};

static int record_ref(void *ctx, const char *const *seg, size_t n, size_t offset)
{
    struct refs_seen *r = ctx;
    char *t = r->text[r->n];
    t[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strcat(t, i ? "." : "");
        strcat(t, seg[i]);
    }
    r->offset[r->n++] = offset;
    return r->stop_after && r->n == r->stop_after ? 7 : 0;
}

static irp_expr *parse_ok(irp_arena *a, const char *src)
{
    irp_expr *e = NULL;
    irp_expr_error err = { 0 };
    int rc = irp_expr_parse(a, src, strlen(src), &e, &err);
    if (rc != 0)
        fail_msg("'%s' refused at %zu: %s", src, err.offset, err.msg);
    return e;
}

static void test_expr_walk_refs_in_source_order(void **state)
{
    (void)state;
    irp_arena a = IRP_ARENA_INIT;
    const char *src = "steps.brief-registrar.outputs.answer == inputs.x && "
                      "contains([env.LIST], item) || !run.id";
    irp_expr *e = parse_ok(&a, src);
    struct refs_seen r = { 0 };
    assert_int_equal(irp_expr_walk_refs(e, record_ref, &r), 0);
    assert_int_equal(r.n, 5);
    const char *want[] = {
        "steps.brief-registrar.outputs.answer", "inputs.x", "env.LIST", "item", "run.id",
    };
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(r.text[i], want[i]);
        /* The offset points at the reference's text in the source. */
        assert_memory_equal(src + r.offset[i], want[i], strlen(want[i]));
    }
    irp_arena_release(&a);
}

static void test_expr_walk_refs_stops_on_nonzero(void **state)
{
    (void)state;
    irp_arena a = IRP_ARENA_INIT;
    irp_expr *e = parse_ok(&a, "[inputs.a, inputs.b, inputs.c]");
    struct refs_seen r = { .stop_after = 2 };
    assert_int_equal(irp_expr_walk_refs(e, record_ref, &r), 7);
    assert_int_equal(r.n, 2);
    irp_arena_release(&a);
}

static void test_expr_parse_range_offsets_count_from_string(void **state)
{
    (void)state;
    irp_arena a = IRP_ARENA_INIT;
    const char *s = "echo ${{ inputs.a == bogus }}";
    irp_expr *e = NULL;
    irp_expr_error err = { 0 };
    assert_int_equal(irp_expr_parse_range(&a, s, 8, 27, &e, &err), IRP_EPARSE);
    assert_int_equal(err.offset, 21);
    assert_string_equal(err.msg, "unknown name 'bogus'");

    assert_int_equal(irp_expr_parse_range(&a, s, 8, 17, &e, &err), 0);
    assert_int_equal(irp_expr_offset(e), 9);
    struct refs_seen r = { 0 };
    irp_expr_walk_refs(e, record_ref, &r);
    assert_int_equal(r.offset[0], 9);
    irp_arena_release(&a);
}

static void test_expr_parse_empty_is_an_error(void **state)
{
    (void)state;
    irp_arena a = IRP_ARENA_INIT;
    irp_expr *e = NULL;
    irp_expr_error err = { 0 };
    assert_int_equal(irp_expr_parse(&a, "", 0, &e, &err), IRP_EPARSE);
    assert_string_equal(err.msg, "empty expression");
    assert_int_equal(irp_expr_parse(&a, "  \n ", 4, &e, &err), IRP_EPARSE);
    assert_string_equal(err.msg, "empty expression");
    /* No error struct: still refused, no crash. */
    assert_int_equal(irp_expr_parse(&a, "(", 1, &e, NULL), IRP_EPARSE);
    irp_arena_release(&a);
}

static void test_expr_parse_honours_length(void **state)
{
    (void)state;
    irp_arena a = IRP_ARENA_INIT;
    irp_expr *e = NULL;
    irp_value *v = NULL;
    /* Not NUL-terminated where the expression ends. */
    assert_int_equal(irp_expr_parse(&a, "12h and more", 3, &e, NULL), 0);
    assert_int_equal(irp_expr_eval(e, NULL, &v, NULL), 0);
    assert_true(irp_value_number(v) == 43200);
    irp_value_unref(v);
    assert_int_equal(irp_expr_parse(&a, "'abc' junk", 4, &e, NULL), IRP_EPARSE);
    assert_int_equal(irp_expr_parse(&a, "1.5e10", 3, &e, NULL), 0);
    assert_int_equal(irp_expr_eval(e, NULL, &v, NULL), 0);
    assert_true(irp_value_number(v) == 1.5);
    irp_value_unref(v);
    irp_arena_release(&a);
}

static int when_ok(irp_arena *a, const char *src, bool *result)
{
    irp_expr *e = NULL;
    irp_value *v = NULL;
    irp_expr_error err = { 0 };
    int rc = irp_expr_parse_when(a, src, strlen(src), &e, &err);
    if (rc == 0)
        rc = irp_expr_eval(e, NULL, &v, &err);
    if (rc == 0) {
        *result = irp_value_bool(v);
        irp_value_unref(v);
    }
    return rc;
}

static void test_expr_parse_when_bare_or_wrapped(void **state)
{
    (void)state;
    irp_arena a = IRP_ARENA_INIT;
    bool b = false;
    assert_int_equal(when_ok(&a, "1 < 2", &b), 0);
    assert_true(b);
    assert_int_equal(when_ok(&a, "${{ 1 > 2 }}", &b), 0);
    assert_false(b);
    assert_int_equal(when_ok(&a, "  ${{ true }}\n", &b), 0);
    assert_true(b);
    assert_int_equal(when_ok(&a, "${{ '}}' == '}}' }}", &b), 0);
    assert_true(b);
    /* A `${{` inside a string of a bare condition is just text. */
    assert_int_equal(when_ok(&a, "'${{' != '}}'", &b), 0);
    assert_true(b);
    irp_arena_release(&a);
}

static void when_fails(const char *src, size_t offset, const char *msg)
{
    irp_arena a = IRP_ARENA_INIT;
    irp_expr *e = NULL;
    irp_expr_error err = { 0 };
    assert_int_equal(irp_expr_parse_when(&a, src, strlen(src), &e, &err), IRP_EPARSE);
    assert_string_equal(err.msg, msg);
    assert_int_equal(err.offset, offset);
    irp_arena_release(&a);
}

static void test_expr_parse_when_rejects_partial_templates(void **state)
{
    (void)state;
    const char *one = "a condition is one expression: write it bare or wrap all of it in '${{ }}'";
    when_fails("${{ true }} && ${{ false }}", 12, one);
    when_fails("true && ${{ false }}", 8, one);
    when_fails("${{ true", 0, "unterminated '${{' (missing '}}')");
    when_fails("${{ 'x }}", 4, "unterminated string");
    when_fails("${{ bogus }}", 4, "unknown name 'bogus'");
}

static void test_expr_nesting_limit_is_exact(void **state)
{
    (void)state;
    char src[512];
    const char *open[] = { "(", "!", "[", "len(" };
    for (size_t k = 0; k < 4; k++) {
        for (int depth = 63; depth <= 66; depth++) {
            size_t n = 0;
            for (int i = 0; i < depth; i++)
                n += (size_t)snprintf(src + n, sizeof src - n, "%s", open[k]);
            n += (size_t)snprintf(src + n, sizeof src - n, "%s", k == 1 ? "true" : "'x'");
            for (int i = 0; i < depth && k != 1; i++)
                n += (size_t)snprintf(src + n, sizeof src - n, "%s", k == 2 ? "]" : ")");
            irp_arena a = IRP_ARENA_INIT;
            irp_expr *e = NULL;
            irp_expr_error err = { 0 };
            int rc = irp_expr_parse(&a, src, n, &e, &err);
            if (depth <= IRP_EXPR_MAX_NESTING) {
                assert_int_equal(rc, 0);
            } else {
                assert_int_equal(rc, IRP_ELIMIT);
                assert_string_equal(err.msg, "expression nested too deeply (limit 64)");
            }
            irp_arena_release(&a);
        }
    }
}

static void test_expr_long_chains_are_flat(void **state)
{
    (void)state;
    /* 200,000 operands: must parse and evaluate without deep recursion. */
    size_t terms = 200000;
    size_t cap = terms * 12 + 16;
    char *src = malloc(cap);
    size_t n = 0;
    for (size_t i = 0; i < terms; i++)
        n += (size_t)snprintf(src + n, cap - n, "%s1 == 1", i ? " && " : "");
    irp_arena a = IRP_ARENA_INIT;
    irp_expr *e = parse_ok(&a, src);
    irp_value *v = NULL;
    assert_int_equal(irp_expr_eval(e, NULL, &v, NULL), 0);
    assert_true(irp_value_bool(v));
    irp_value_unref(v);
    irp_arena_release(&a);
    free(src);
}

static void test_expr_short_circuit_skips_lookups(void **state)
{
    (void)state;
    json_t *root = json_pack("{s:{s:b,s:i}}", "inputs", "off", 0, "n", 5);
    struct json_scope js = { root, 0 };
    irp_scope scope = { json_lookup, &js };
    irp_arena a = IRP_ARENA_INIT;
    irp_value *v = NULL;
    irp_expr *e = parse_ok(&a, "inputs.off && inputs.n > 1 && inputs.missing");
    assert_int_equal(irp_expr_eval(e, &scope, &v, NULL), 0);
    assert_false(irp_value_bool(v));
    assert_int_equal(js.lookups, 1);
    irp_value_unref(v);

    js.lookups = 0;
    e = parse_ok(&a, "!inputs.off || inputs.missing");
    assert_int_equal(irp_expr_eval(e, &scope, &v, NULL), 0);
    assert_true(irp_value_bool(v));
    assert_int_equal(js.lookups, 1);
    irp_value_unref(v);
    irp_arena_release(&a);
    json_decref(root);
}

static int failing_lookup(void *ctx, const char *const *seg, size_t n, irp_value **out,
                          char *errbuf, size_t errlen)
{
    (void)ctx;
    (void)seg;
    (void)n;
    (void)out;
    (void)errbuf;
    (void)errlen;
    return IRP_EACCES;   /* and no message */
}

static void test_expr_eval_scope_errors_propagate(void **state)
{
    (void)state;
    irp_arena a = IRP_ARENA_INIT;
    irp_expr *e = parse_ok(&a, "1 == steps.a.outputs.k");
    irp_value *v = NULL;
    irp_expr_error err = { 0 };
    irp_scope scope = { failing_lookup, NULL };
    assert_int_equal(irp_expr_eval(e, &scope, &v, &err), IRP_EACCES);
    assert_int_equal(err.code, IRP_EACCES);
    assert_int_equal(err.offset, 5);
    assert_string_equal(err.msg, "cannot resolve 'steps.a.outputs.k': permission denied");
    assert_null(v);

    assert_int_equal(irp_expr_eval(e, NULL, &v, &err), IRP_EUNDEF);
    assert_string_equal(err.msg, "'steps.a.outputs.k' is not available here");
    irp_arena_release(&a);
}

static void test_expr_eval_error_codes(void **state)
{
    (void)state;
    irp_arena a = IRP_ARENA_INIT;
    irp_value *v = NULL;
    irp_expr_error err = { 0 };
    assert_int_equal(irp_expr_eval(parse_ok(&a, "1 < 'a'"), NULL, &v, &err), IRP_ETYPE);
    assert_int_equal(err.code, IRP_ETYPE);
    assert_int_equal(irp_expr_eval(parse_ok(&a, "number('x')"), NULL, &v, &err), IRP_EINVAL);
    assert_int_equal(err.code, IRP_EINVAL);
    irp_arena_release(&a);
}

static void test_expr_as_ref(void **state)
{
    (void)state;
    irp_arena a = IRP_ARENA_INIT;
    const char *const *seg;
    size_t n;
    assert_int_equal(irp_expr_as_ref(parse_ok(&a, "inputs.hosts"), &seg, &n), 1);
    assert_int_equal(n, 2);
    assert_string_equal(seg[0], "inputs");
    assert_string_equal(seg[1], "hosts");
    assert_int_equal(irp_expr_as_ref(parse_ok(&a, "len(inputs.hosts)"), &seg, &n), 0);
    assert_int_equal(irp_expr_as_ref(parse_ok(&a, "'inputs.hosts'"), &seg, &n), 0);
    irp_arena_release(&a);
}

static void test_expr_find_close_skips_strings(void **state)
{
    (void)state;
    const char *s = "${{ '}}' == \"}}\" && 'it\\'s}}' }} tail }}";
    size_t len = strlen(s);
    size_t close = irp_expr_find_close(s, 3, len);
    assert_memory_equal(s + close, "}} tail", 7);
    assert_int_equal(irp_expr_find_close("${{ 'open }}", 3, 12), 12);
    assert_int_equal(irp_expr_find_close("${{ a }", 3, 7), 7);
}

static void test_expr_out_of_memory_is_reported(void **state)
{
    (void)state;
    /* An arena with a tiny cap: every size of cap fails cleanly or parses. */
    const char *src = "contains(['a', 'b', inputs.x], lower(steps.s-1.outputs.k)) && !false";
    for (size_t cap = 1; cap < 2048; cap += 7) {
        irp_arena a;
        irp_arena_init(&a, cap);
        irp_expr *e = NULL;
        irp_expr_error err = { 0 };
        int rc = irp_expr_parse(&a, src, strlen(src), &e, &err);
        assert_true(rc == 0 || rc == IRP_ENOMEM);
        if (rc == IRP_ENOMEM)
            assert_string_equal(err.msg, "out of memory");
        irp_arena_release(&a);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expr_golden_files),
        cmocka_unit_test(test_expr_walk_refs_in_source_order),
        cmocka_unit_test(test_expr_walk_refs_stops_on_nonzero),
        cmocka_unit_test(test_expr_parse_range_offsets_count_from_string),
        cmocka_unit_test(test_expr_parse_empty_is_an_error),
        cmocka_unit_test(test_expr_parse_honours_length),
        cmocka_unit_test(test_expr_parse_when_bare_or_wrapped),
        cmocka_unit_test(test_expr_parse_when_rejects_partial_templates),
        cmocka_unit_test(test_expr_nesting_limit_is_exact),
        cmocka_unit_test(test_expr_long_chains_are_flat),
        cmocka_unit_test(test_expr_short_circuit_skips_lookups),
        cmocka_unit_test(test_expr_eval_scope_errors_propagate),
        cmocka_unit_test(test_expr_eval_error_codes),
        cmocka_unit_test(test_expr_as_ref),
        cmocka_unit_test(test_expr_find_close_skips_strings),
        cmocka_unit_test(test_expr_out_of_memory_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
