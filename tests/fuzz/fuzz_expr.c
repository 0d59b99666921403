/* Fuzz target: the expression language and templates -- parsing
 * (irp_expr_parse, irp_expr_parse_when, irp_template_parse), evaluation
 * and rendering against a scope, the shell-script checks and builder.
 *
 * Input: the source text, optionally followed by a NUL byte and a JSON
 * object to use as the scope (the golden cases' form: keys are reference
 * roots; everything read under `secrets` is secret).  Without it, a fixed
 * scope with a value of every type is used.
 *
 * Invariants checked beyond "no crash, no leak, no hang":
 *   - error offsets lie inside the source, messages are not empty;
 *   - each reference a walk reports is spelled at its offset, segment by
 *     segment, as expr.h promises;
 *   - a template keeps its text byte for byte;
 *   - a value derived from a secret stays secret through rendering.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz_common.h"
#include "irp/error.h"
#include "irp/expr.h"
#include "irp/template.h"

static const char DEFAULT_SCOPE[] =
    "{\"inputs\": {\"host\": \"ws-017\", \"hosts\": [\"ws-017\", \"ws-018\"], \"count\": 3,"
    "  \"flag\": true, \"at\": \"2026-11-28T12:00:00.000Z\", \"nothing\": null,"
    "  \"map\": {\"a\": 1, \"b\": [1, 2, {\"c\": \"d\"}]}},"
    " \"vars\": {\"ticket\": \"INC-42\", \"n\": \"  17 \\n\", \"empty\": \"\", \"nul\": \"a\\u0000b\"},"
    " \"env\": {\"HOME\": \"/root\"},"
    " \"secrets\": {\"token\": \"s3cr3t-token\", \"list\": [\"x\", \"y\"]},"
    " \"item\": \"ws-017\", \"index\": 0,"
    " \"steps\": {\"scan\": {\"status\": \"succeeded\", \"ok\": true,"
    "   \"outputs\": {\"stdout\": \"42\\n\", \"answer\": \"done\"}}},"
    " \"run\": {\"id\": \"20261128T120000Z-fuzz-0001\", \"dir\": \"/tmp/run\"},"
    " \"deadlines\": {\"gdpr\": {\"remaining\": 3600, \"missed\": false}}}";

struct ctx {
    const char *src;
    size_t len;
};

static int lookup(void *vctx, const char *const *seg, size_t n, irp_value **out, char *errbuf,
                  size_t errlen)
{
    json_t *j = vctx;
    for (size_t i = 0; i < n && j; i++)
        j = json_is_object(j) ? json_object_get(j, seg[i]) : NULL;
    if (!j) {
        snprintf(errbuf, errlen, "'%s' is not defined", seg[0]);
        return IRP_EUNDEF;
    }
    int rc = irp_value_from_json(j, out);
    if (rc)
        snprintf(errbuf, errlen, "'%s' cannot be converted", seg[0]);
    else if (strcmp(seg[0], "secrets") == 0)
        irp_value_taint(*out);
    return rc;
}

/* An error record no call has filled: check_error() then sees an
 * unterminated message. */
static void unfilled(irp_expr_error *err)
{
    memset(err, 'x', sizeof *err);
}

static void check_error(const irp_expr_error *err, int rc, size_t len, const char *what)
{
    FUZZ_CHECK(rc < 0, "%s: positive result %d", what, rc);
    FUZZ_CHECK(err->code == rc || rc == IRP_ENOMEM, "%s: returned %d, error says %d", what, rc,
               err->code);
    FUZZ_CHECK(err->offset <= len, "%s: error at %zu of %zu bytes", what, err->offset, len);
    FUZZ_CHECK(memchr(err->msg, '\0', sizeof err->msg) != NULL, "%s: message not terminated",
               what);
    FUZZ_CHECK(rc == IRP_ENOMEM || err->msg[0], "%s: empty message", what);
}

/* Every reference is spelled at its offset: root, then `.segment`s. */
static int check_ref(void *vctx, const char *const *seg, size_t n, size_t offset)
{
    const struct ctx *c = vctx;
    FUZZ_CHECK(n >= 1, "reference without segments");
    size_t at = offset;
    for (size_t i = 0; i < n; i++) {
        size_t sl = strlen(seg[i]);
        FUZZ_CHECK(sl > 0, "empty segment %zu", i);
        if (i > 0) {
            FUZZ_CHECK(at < c->len && c->src[at] == '.', "no dot before segment %zu", i);
            at++;
        }
        FUZZ_CHECK(at + sl <= c->len && memcmp(c->src + at, seg[i], sl) == 0,
                   "segment %zu ('%s') is not at offset %zu", i, seg[i], at);
        at += sl;
    }
    return 0;
}

/* Look at a result the way the journal and the terminal do. */
static void use_value(irp_value *v)
{
    char *text = NULL;
    size_t len = 0;
    FUZZ_CHECK(irp_value_render(v, &text, &len) == 0, "render failed");
    free(text);
    json_t *j = irp_value_to_json(v, IRP_VALUE_JSON_REDACT);
    FUZZ_CHECK(j, "to_json failed");
    if (irp_value_is_secret(v))
        FUZZ_CHECK(json_is_string(j) && strcmp(json_string_value(j), "***") == 0,
                   "a secret value is not redacted");
    json_decref(j);
    FUZZ_CHECK(irp_value_equal(v, v), "a value differs from itself");
}

static void fuzz_expr(const char *src, size_t len, json_t *scope_json)
{
    irp_scope scope = { lookup, scope_json };
    struct ctx c = { src, len };
    irp_arena a = IRP_ARENA_INIT;
    irp_expr *e = NULL;
    irp_expr_error err;
    irp_value *v = NULL;

    unfilled(&err);
    int rc = irp_expr_parse(&a, src, len, &e, &err);
    if (rc) {
        check_error(&err, rc, len, "parse");
    } else {
        FUZZ_CHECK(irp_expr_offset(e) <= len, "expression starts past its end");
        irp_expr_walk_refs(e, check_ref, &c);
        const char *const *seg;
        size_t n;
        if (irp_expr_as_ref(e, &seg, &n))
            FUZZ_CHECK(n >= 1, "as_ref: no segments");
        unfilled(&err);
        rc = irp_expr_eval(e, &scope, &v, &err);
        if (rc)
            check_error(&err, rc, len, "eval");
        else
            use_value(v);
        irp_value_unref(v);
        v = NULL;
    }

    irp_arena_reset(&a);
    unfilled(&err);
    rc = irp_expr_parse_when(&a, src, len, &e, &err);
    if (rc)
        check_error(&err, rc, len, "parse_when");
    else
        irp_expr_walk_refs(e, check_ref, &c);
    FUZZ_CHECK(irp_expr_find_close(src, 0, len) <= len, "find_close past the end");
    irp_arena_release(&a);
}

static int count_expr(void *vctx, const irp_expr *e, size_t index, size_t offset)
{
    size_t *n = vctx;
    FUZZ_CHECK(index == *n, "template walk: index %zu, expected %zu", index, *n);
    (*n)++;
    return 0;
}

static void fuzz_template(const char *src, size_t len, json_t *scope_json)
{
    irp_scope scope = { lookup, scope_json };
    struct ctx c = { src, len };
    irp_arena a = IRP_ARENA_INIT;
    irp_template *t = NULL;
    irp_expr_error err;

    unfilled(&err);
    int rc = irp_template_parse(&a, src, len, &t, &err);
    if (rc) {
        check_error(&err, rc, len, "template parse");
        irp_arena_release(&a);
        return;
    }
    size_t tlen;
    const char *text = irp_template_text(t, &tlen);
    FUZZ_CHECK(tlen == len && memcmp(text, src, len) == 0, "template text differs");
    size_t n = 0;
    irp_template_walk_exprs(t, count_expr, &n);
    FUZZ_CHECK(n == irp_template_nexprs(t), "walk saw %zu of %zu expressions", n,
               irp_template_nexprs(t));
    FUZZ_CHECK(irp_template_has_exprs(t) == (n > 0), "has_exprs disagrees");
    FUZZ_CHECK(!irp_template_is_single_expr(t) || irp_template_single_expr(t),
               "single expression without its expression");
    irp_template_walk_refs(t, check_ref, &c);

    irp_value *v = NULL;
    unfilled(&err);
    rc = irp_template_render(t, &scope, &v, &err);
    if (rc)
        check_error(&err, rc, len, "render");
    else
        use_value(v);
    irp_value_unref(v);

    size_t problems = irp_template_shell_check(t, NULL, NULL);
    irp_shell_script script;
    rc = irp_template_shell_script(t, NULL, &script, &err);
    FUZZ_CHECK((rc == IRP_EPARSE) == (problems > 0),
               "shell_check found %zu problems, shell_script gave %d", problems, rc);
    if (rc == 0) {
        FUZZ_CHECK(script.nvalues == n, "script of %zu values for %zu templates", script.nvalues,
                   n);
        irp_shell_script_release(&script);
    }
    rc = irp_template_shell_script(t, &scope, &script, &err);
    if (rc == 0) {
        for (size_t i = 0; i < script.nvalues; i++)
            FUZZ_CHECK(script.env[i] && strncmp(script.env[i], "IRP_V", 5) == 0,
                       "env[%zu] is not IRP_V...", i);
        FUZZ_CHECK(script.env[script.nvalues] == NULL, "env not terminated");
        irp_shell_script_release(&script);
    }
    irp_arena_release(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *default_scope;
    if (!default_scope && !(default_scope = json_loads(DEFAULT_SCOPE, JSON_ALLOW_NUL, NULL)))
        fuzz_fail("the default scope does not parse");

    const char *src = (const char *)data;
    size_t len = size;
    json_t *scope = NULL;
    const uint8_t *nul = memchr(data, '\0', size);
    if (nul) {
        len = (size_t)(nul - data);
        scope = json_loadb((const char *)nul + 1, size - len - 1, JSON_ALLOW_NUL, NULL);
        if (!json_is_object(scope)) {
            json_decref(scope);
            scope = NULL;
        }
    }
    /* Exactly len bytes, so reading past the source is caught. */
    char *copy = malloc(len ? len : 1);
    if (!copy)
        fuzz_fail("out of memory");
    if (len)
        memcpy(copy, src, len);
    fuzz_expr(copy, len, scope ? scope : default_scope);
    fuzz_template(copy, len, scope ? scope : default_scope);
    free(copy);
    json_decref(scope);
    return 0;
}
