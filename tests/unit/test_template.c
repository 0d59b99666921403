#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "irp/error.h"
#include "irp/template.h"

/* ---------------------------------------------------------------- */
/* Fixtures                                                          */

/* A scope over one JSON object; values under "secrets" are tainted. */
static int json_lookup(void *ctx, const char *const *seg, size_t n, irp_value **out,
                       char *errbuf, size_t errlen)
{
    json_t *j = ctx;
    for (size_t i = 0; i < n && j; i++)
        j = json_object_get(j, seg[i]);
    if (!j) {
        snprintf(errbuf, errlen, "'%s...' is not defined", seg[0]);
        return IRP_EUNDEF;
    }
    int rc = irp_value_from_json(j, out);
    if (rc == 0 && strcmp(seg[0], "secrets") == 0)
        irp_value_taint(*out);
    return rc;
}

struct fixture {
    irp_arena arena;
    json_t *data;
    irp_scope scope;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    json_error_t jerr;
    f->data = json_loads("{\"inputs\": {\"hosts\": [\"ws-017\", \"fs-02\"], \"n\": 3, "
                         "\"tenth\": 0.1, \"none\": null, \"name\": \"Ana\"},"
                         " \"run\": {\"id\": \"r1\"},"
                         " \"secrets\": {\"TOKEN\": \"s3cr3t\"}}", 0, &jerr);
    assert_non_null(f->data);
    f->scope.lookup = json_lookup;
    f->scope.ctx = f->data;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    irp_arena_release(&f->arena);
    json_decref(f->data);
    free(f);
    return 0;
}

static irp_template *parse_ok(struct fixture *f, const char *s)
{
    irp_template *t = NULL;
    irp_expr_error err = { 0 };
    int rc = irp_template_parse(&f->arena, s, strlen(s), &t, &err);
    if (rc != 0)
        fail_msg("'%s' refused at %zu: %s", s, err.offset, err.msg);
    return t;
}

/* Render to a string value and compare; returns the taint. */
static bool renders_as(struct fixture *f, const char *s, const char *want)
{
    irp_template *t = parse_ok(f, s);
    irp_value *v = NULL;
    irp_expr_error err = { 0 };
    int rc = irp_template_render(t, &f->scope, &v, &err);
    if (rc != 0)
        fail_msg("'%s' failed to render: %s", s, err.msg);
    assert_int_equal(irp_value_type_of(v), IRP_VALUE_STRING);
    assert_string_equal(irp_value_string(v, NULL), want);
    bool secret = irp_value_is_secret(v);
    irp_value_unref(v);
    return secret;
}

/* ---------------------------------------------------------------- */
/* Parsing and rendering                                             */

static void test_template_plain_string_is_one_text_part(void **state)
{
    struct fixture *f = *state;
    irp_template *t = parse_ok(f, "just text, with } and $ and {{ braces }}");
    assert_false(irp_template_has_exprs(t));
    assert_false(irp_template_is_single_expr(t));
    assert_null(irp_template_single_expr(t));
    assert_int_equal(irp_template_nexprs(t), 0);
    size_t len;
    assert_string_equal(irp_template_text(t, &len), "just text, with } and $ and {{ braces }}");
    assert_int_equal(len, 40);
    assert_false(renders_as(f, "just text", "just text"));
    assert_false(renders_as(f, "", ""));
}

static void test_template_keeps_its_own_copy(void **state)
{
    struct fixture *f = *state;
    char buf[64];
    strcpy(buf, "Run ${{ run.id }}");
    irp_template *t = parse_ok(f, buf);
    memset(buf, 'x', sizeof buf - 1);
    irp_value *v = NULL;
    assert_int_equal(irp_template_render(t, &f->scope, &v, NULL), 0);
    assert_string_equal(irp_value_string(v, NULL), "Run r1");
    irp_value_unref(v);
}

static void test_template_single_expr_keeps_type(void **state)
{
    struct fixture *f = *state;
    irp_template *t = parse_ok(f, "${{ inputs.hosts }}");
    assert_true(irp_template_is_single_expr(t));
    assert_non_null(irp_template_single_expr(t));
    irp_value *v = NULL;
    assert_int_equal(irp_template_render(t, &f->scope, &v, NULL), 0);
    assert_int_equal(irp_value_type_of(v), IRP_VALUE_LIST);
    assert_int_equal(irp_value_list_len(v), 2);
    irp_value_unref(v);

    t = parse_ok(f, "${{inputs.n}}");
    assert_int_equal(irp_template_render(t, &f->scope, &v, NULL), 0);
    assert_int_equal(irp_value_type_of(v), IRP_VALUE_NUMBER);
    irp_value_unref(v);

    /* Anything around it, even a space, makes it a string. */
    t = parse_ok(f, " ${{ inputs.n }}");
    assert_false(irp_template_is_single_expr(t));
    assert_false(renders_as(f, " ${{ inputs.n }}", " 3"));
    t = parse_ok(f, "${{ inputs.n }}${{ inputs.n }}");
    assert_false(irp_template_is_single_expr(t));
}

static void test_template_renders_values_as_text(void **state)
{
    struct fixture *f = *state;
    renders_as(f, "Run ${{ run.id }}: ${{ inputs.n }} hosts", "Run r1: 3 hosts");
    renders_as(f, "[${{ inputs.none }}]", "[]");
    renders_as(f, "${{ inputs.tenth }}!", "0.1!");
    renders_as(f, "${{ 1e21 }} ${{ 2.5 }} ${{ -0 }}", "1e+21 2.5 0");
    renders_as(f, "${{ true }}/${{ 1 > 2 }}", "true/false");
    renders_as(f, "hosts: ${{ inputs.hosts }}", "hosts: [\"ws-017\",\"fs-02\"]");
    renders_as(f, "${{ join(inputs.hosts, ' ') }}.", "ws-017 fs-02.");
    renders_as(f, "${{ '}}' }} and ${{ \"${{\" }}", "}} and ${{");
    renders_as(f, "a${{1}}b${{2}}c", "a1b2c");
}

static void test_template_secret_taint_propagates(void **state)
{
    struct fixture *f = *state;
    assert_true(renders_as(f, "Bearer ${{ secrets.TOKEN }}", "Bearer s3cr3t"));
    assert_true(renders_as(f, "${{ len(secrets.TOKEN) }} chars", "6 chars"));
    assert_true(renders_as(f, "${{ upper(secrets.TOKEN) }}", "S3CR3T"));
    assert_false(renders_as(f, "Hello ${{ inputs.name }}", "Hello Ana"));
    /* Single expression: the value itself carries the taint. */
    irp_template *t = parse_ok(f, "${{ secrets.TOKEN }}");
    irp_value *v = NULL;
    assert_int_equal(irp_template_render(t, &f->scope, &v, NULL), 0);
    assert_true(irp_value_is_secret(v));
    irp_value_unref(v);
}

static void test_template_parse_errors_have_string_offsets(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *src;
        size_t offset;
        const char *msg;
    } cases[] = {
        { "abc ${{ inputs.a", 4, "unterminated '${{' (missing '}}')" },
        { "x ${{ 'open }}", 6, "unterminated string" },
        { "echo ${{ bogus }}", 9, "unknown name 'bogus'" },
        { "ok ${{ 1 }} then ${{ len() }}", 21, "'len' takes 1 argument, got 0" },
        { "${{ }}", 3, "empty expression" },
        { "${{ a b }}", 4, "unknown name 'a'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        irp_template *t = NULL;
        irp_expr_error err = { 0 };
        int rc = irp_template_parse(&f->arena, cases[i].src, strlen(cases[i].src), &t, &err);
        assert_int_equal(rc, IRP_EPARSE);
        assert_string_equal(err.msg, cases[i].msg);
        assert_int_equal(err.offset, cases[i].offset);
    }
}

static void test_template_render_errors_propagate(void **state)
{
    struct fixture *f = *state;
    irp_template *t = parse_ok(f, "n=${{ inputs.n < 'x' }}");
    irp_value *v = NULL;
    irp_expr_error err = { 0 };
    assert_int_equal(irp_template_render(t, &f->scope, &v, &err), IRP_ETYPE);
    assert_int_equal(err.offset, 15);   /* the '<', counted in the string */
    assert_null(v);
}

struct walk {
    size_t offsets[8];
    size_t n;
};

static int on_expr(void *ctx, const irp_expr *e, size_t index, size_t offset)
{
    struct walk *w = ctx;
    assert_int_equal(index, w->n);
    assert_non_null(e);
    w->offsets[w->n++] = offset;
    return 0;
}

static int on_ref(void *ctx, const char *const *seg, size_t n, size_t offset)
{
    struct walk *w = ctx;
    assert_true(n >= 1);
    (void)seg;
    w->offsets[w->n++] = offset;
    return 0;
}

static void test_template_walks_exprs_and_refs(void **state)
{
    struct fixture *f = *state;
    const char *s = "to ${{ vars.dir }}/x-${{ len(inputs.a) == index }}";
    irp_template *t = parse_ok(f, s);
    struct walk w = { { 0 }, 0 };
    assert_int_equal(irp_template_walk_exprs(t, on_expr, &w), 0);
    assert_int_equal(w.n, 2);
    assert_int_equal(w.offsets[0], 3);
    assert_int_equal(w.offsets[1], 21);
    struct walk r = { { 0 }, 0 };
    assert_int_equal(irp_template_walk_refs(t, on_ref, &r), 0);
    assert_int_equal(r.n, 3);
    assert_memory_equal(s + r.offsets[0], "vars.dir", 8);
    assert_memory_equal(s + r.offsets[1], "inputs.a", 8);
    assert_memory_equal(s + r.offsets[2], "index", 5);
}

static void test_template_many_plain_strings_are_cheap(void **state)
{
    (void)state;
    /* The loader parses every string; 500,000 of them must be quick and
     * cost little more than their text. */
    irp_arena a = IRP_ARENA_INIT;
    char s[64];
    size_t text = 0;
    for (int i = 0; i < 500000; i++) {
        int n = snprintf(s, sizeof s, "step-%d title text", i);
        irp_template *t = NULL;
        assert_int_equal(irp_template_parse(&a, s, (size_t)n, &t, NULL), 0);
        text += (size_t)n;
    }
    assert_true(a.used < text + 500000 * (size_t)96);
    irp_arena_release(&a);
}

/* ---------------------------------------------------------------- */
/* Shell scripts                                                     */

static char *script_of(struct fixture *f, const char *s)
{
    irp_template *t = parse_ok(f, s);
    irp_shell_script sc;
    irp_expr_error err = { 0 };
    int rc = irp_template_shell_script(t, NULL, &sc, &err);
    if (rc != 0)
        fail_msg("'%s' refused: %s", s, err.msg);
    assert_null(sc.values);
    assert_null(sc.env);
    char *text = strdup(sc.text);
    assert_int_equal(sc.len, strlen(text));
    irp_shell_script_release(&sc);
    return text;
}

static void assert_script(struct fixture *f, const char *s, const char *want)
{
    char *got = script_of(f, s);
    if (strcmp(got, want) != 0)
        fail_msg("script of '%s'\n  got:  %s\n  want: %s", s, got, want);
    free(got);
}

static void test_template_shell_script_quotes_by_context(void **state)
{
    struct fixture *f = *state;
    assert_script(f, "echo ${{ inputs.a }} > \"${{ vars.f }}\"",
                  "echo \"${IRP_V1}\" > \"${IRP_V2}\"");
    assert_script(f, "echo \"host: ${{ item }}!\"", "echo \"host: ${IRP_V1}!\"");
    assert_script(f, "cp ${{ inputs.a }}/${{ inputs.b }} /tmp",
                  "cp \"${IRP_V1}\"/\"${IRP_V2}\" /tmp");
    assert_script(f, "echo \"$(cat \"${{ item }}\")\"", "echo \"$(cat \"${IRP_V1}\")\"");
    assert_script(f, "echo \"$(cat ${{ item }})\"", "echo \"$(cat \"${IRP_V1}\")\"");
    assert_script(f, "echo \"${X:-${{ item }}}\" ${{ item }}",
                  "echo \"${X:-${IRP_V1}}\" \"${IRP_V2}\"");
    assert_script(f, "echo 'it''s' ${{ item }}", "echo 'it''s' \"${IRP_V1}\"");
    assert_script(f, "echo \"it's ${{ item }}\"", "echo \"it's ${IRP_V1}\"");
    assert_script(f, "echo '\"'${{ item }}", "echo '\"'\"${IRP_V1}\"");
    assert_script(f, "echo \\\" ${{ item }}", "echo \\\" \"${IRP_V1}\"");
    assert_script(f, "echo $(( 1 << 2 )) ${{ item }}", "echo $(( 1 << 2 )) \"${IRP_V1}\"");
    assert_script(f, "cat <<< ${{ item }}", "cat <<< \"${IRP_V1}\"");
    /* A comment swallows its quote characters. */
    assert_script(f, "# don't\necho ${{ item }}", "# don't\necho \"${IRP_V1}\"");
    assert_script(f, "echo x#y ${{ item }} # ${{ item }}",
                  "echo x#y \"${IRP_V1}\" # \"${IRP_V2}\"");
    /* After a here-document ends, templates are ordinary again. */
    assert_script(f, "cat <<EOF\nit's\nEOF\necho ${{ item }}",
                  "cat <<EOF\nit's\nEOF\necho \"${IRP_V1}\"");
    assert_script(f, "cat <<-'END' | wc\n\tx\n\tEND\necho ${{ item }}",
                  "cat <<-'END' | wc\n\tx\n\tEND\necho \"${IRP_V1}\"");
    assert_script(f, "no templates at all", "no templates at all");
}

/* Run `sh -c script` with the given environment; returns its stdout. */
static char *run_sh(const char *script, char **env)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        char *argv[] = { "/bin/sh", "-c", (char *)script, NULL };
        execve("/bin/sh", argv, env);
        _exit(127);
    }
    close(fd[1]);
    char *out = calloc(1, 8192);
    size_t len = 0;
    ssize_t n;
    while ((n = read(fd[0], out + len, 8191 - len)) > 0)
        len += (size_t)n;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return out;
}

static void test_template_shell_values_never_become_syntax(void **state)
{
    struct fixture *f = *state;
    static const char *const evil[] = {
        "plain",
        "$(touch /tmp/irp-pwned)",
        "`id`",
        "\"; echo pwned; \"",
        "' ; echo pwned ; '",
        "a b\tc\nd",
        "${IFS}*",
        "-n",
        "\\",
        "",
    };
    const char *src = "printf '%s|' ${{ inputs.v }} \"x${{ inputs.v }}y\" \"$(printf %s "
                      "\"${{ inputs.v }}\")\"";
    irp_template *t = parse_ok(f, src);
    char *first_text = NULL;
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        json_t *data = json_pack("{s:{s:s}}", "inputs", "v", evil[i]);
        irp_scope scope = { json_lookup, data };
        irp_shell_script sc;
        irp_expr_error err = { 0 };
        assert_int_equal(irp_template_shell_script(t, &scope, &sc, &err), 0);
        assert_int_equal(sc.nvalues, 3);
        /* The script text does not depend on the values. */
        if (!first_text)
            first_text = strdup(sc.text);
        assert_string_equal(sc.text, first_text);
        char want_env[256];
        snprintf(want_env, sizeof want_env, "IRP_V2=%s", evil[i]);
        assert_string_equal(sc.env[1], want_env);
        assert_string_equal(irp_value_string(sc.values[0], NULL), evil[i]);

        char *out = run_sh(sc.text, sc.env);
        char want[512];
        snprintf(want, sizeof want, "%s|x%sy|%s|", evil[i], evil[i], evil[i]);
        assert_string_equal(out, want);
        free(out);
        irp_shell_script_release(&sc);
        json_decref(data);
    }
    assert_string_equal(first_text,
                        "printf '%s|' \"${IRP_V1}\" \"x${IRP_V2}y\" \"$(printf %s "
                        "\"${IRP_V3}\")\"");
    free(first_text);
    assert_int_equal(access("/tmp/irp-pwned", F_OK), -1);
}

static void test_template_shell_values_keep_taint(void **state)
{
    struct fixture *f = *state;
    irp_template *t = parse_ok(f, "curl -H ${{ secrets.TOKEN }} ${{ inputs.name }}");
    irp_shell_script sc;
    assert_int_equal(irp_template_shell_script(t, &f->scope, &sc, NULL), 0);
    assert_true(irp_value_is_secret(sc.values[0]));
    assert_false(irp_value_is_secret(sc.values[1]));
    assert_string_equal(sc.env[0], "IRP_V1=s3cr3t");
    assert_string_equal(sc.env[1], "IRP_V2=Ana");
    irp_shell_script_release(&sc);
}

static void test_template_shell_script_refuses_nul_and_errors(void **state)
{
    struct fixture *f = *state;
    irp_shell_script sc;
    irp_expr_error err = { 0 };
    json_t *data = json_loads("{\"inputs\": {\"v\": \"a\\u0000b\"}}", JSON_ALLOW_NUL, NULL);
    assert_non_null(data);
    irp_scope scope = { json_lookup, data };
    irp_template *t = parse_ok(f, "echo ${{ inputs.n }} ${{ inputs.v }}");
    assert_int_equal(irp_template_shell_script(t, &scope, &sc, &err), IRP_EUNDEF);
    json_object_set_new(json_object_get(data, "inputs"), "n", json_integer(1));
    assert_int_equal(irp_template_shell_script(t, &scope, &sc, &err), IRP_EINVAL);
    assert_string_equal(err.msg,
                        "value of template 2 holds a NUL byte, which no environment variable can");
    assert_int_equal(err.offset, 21);
    assert_null(sc.text);
    json_decref(data);

    t = parse_ok(f, "echo '${{ inputs.n }}' `${{ inputs.n }}`");
    assert_int_equal(irp_template_shell_script(t, &f->scope, &sc, &err), IRP_EPARSE);
    assert_int_equal(err.offset, 6);
    assert_string_equal(err.msg, "template inside single quotes: its value would not be expanded");
}

struct problems {
    size_t offsets[8];
    char msgs[8][128];
    size_t n;
};

static void on_problem(void *ctx, size_t offset, const char *msg)
{
    struct problems *p = ctx;
    if (p->n < 8) {
        p->offsets[p->n] = offset;
        snprintf(p->msgs[p->n], sizeof p->msgs[0], "%s", msg);
    }
    p->n++;
}

/* Expect exactly one problem, at the `${{` that `at` marks in s. */
static void assert_one_problem(struct fixture *f, const char *s, const char *msg_start)
{
    irp_template *t = parse_ok(f, s);
    struct problems p = { .n = 0 };
    size_t n = irp_template_shell_check(t, on_problem, &p);
    if (n != 1)
        fail_msg("'%s': %zu problems, want 1", s, n);
    assert_int_equal(p.n, 1);
    const char *at = strstr(s, "${{");
    assert_int_equal(p.offsets[0], (size_t)(at - s));
    if (strncmp(p.msgs[0], msg_start, strlen(msg_start)) != 0)
        fail_msg("'%s': message '%s', want '%s...'", s, p.msgs[0], msg_start);
}

static void test_template_shell_check_single_quotes(void **state)
{
    struct fixture *f = *state;
    const char *m = "template inside single quotes";
    assert_one_problem(f, "echo '${{ item }}'", m);
    assert_one_problem(f, "echo 'a b ${{ item }} c'", m);
    assert_one_problem(f, "echo \"ok\" 'no ${{ item }}'", m);
    assert_one_problem(f, "echo $'\\'${{ item }}'", m);
    assert_one_problem(f, "echo \"$(echo '${{ item }}')\"", m);
}

static void test_template_shell_check_backquotes(void **state)
{
    struct fixture *f = *state;
    const char *m = "template inside backquotes";
    assert_one_problem(f, "echo `cat ${{ item }}`", m);
    assert_one_problem(f, "echo \"`cat \"${{ item }}\"`\"", m);
    assert_one_problem(f, "x=`echo $(cat ${{ item }})`", m);
}

static void test_template_shell_check_heredocs(void **state)
{
    struct fixture *f = *state;
    const char *m = "template inside a here-document";
    assert_one_problem(f, "cat <<EOF\nhello ${{ item }}\nEOF\n", m);
    assert_one_problem(f, "cat << EOF > out\n${{ item }}\nEOF", m);
    assert_one_problem(f, "cat <<'EOF'\n${{ item }}\nEOF\n", m);
    assert_one_problem(f, "cat <<\"EOF\"\n${{ item }}\nEOF\n", m);
    assert_one_problem(f, "cat <<-EOF\n\tx\n\t${{ item }}\n\tEOF\n", m);
    /* Two here-documents on one line: the second body is checked too. */
    assert_one_problem(f, "cat <<A <<B\na\nA\n${{ item }}\nB\n", m);
    /* "EOF " is not the delimiter line; the body goes on. */
    assert_one_problem(f, "cat <<EOF\nEOF \n${{ item }}\nEOF\n", m);
    /* Without <<-, an indented delimiter does not end the body. */
    assert_one_problem(f, "cat <<EOF\n\tEOF\n${{ item }}\nEOF\n", m);
    assert_one_problem(f, "cat <<${{ item }}\nx\n", "template in a here-document delimiter");
    /* Inside $(...) too. */
    assert_one_problem(f, "x=$(cat <<EOF\n${{ item }}\nEOF\n)", m);
}

static void test_template_shell_check_other_places(void **state)
{
    struct fixture *f = *state;
    assert_one_problem(f, "echo $(( ${{ item }} + 1 ))", "template inside an arithmetic");
    assert_one_problem(f, "echo \\${{ item }}", "template right after a backslash");
    assert_one_problem(f, "echo \"\\${{ item }}\"", "template right after a backslash");
}

static void test_template_shell_check_counts_every_problem(void **state)
{
    struct fixture *f = *state;
    const char *s = "echo '${{ item }}' ${{ item }} `${{ item }}`\ncat <<E\n${{ item }}\nE\n"
                    "echo \"${{ item }}\"";
    irp_template *t = parse_ok(f, s);
    struct problems p = { .n = 0 };
    assert_int_equal(irp_template_shell_check(t, on_problem, &p), 3);
    assert_int_equal(p.offsets[0], 6);    /* single quotes */
    assert_int_equal(p.offsets[1], 32);   /* backquotes */
    assert_int_equal(p.offsets[2], 53);   /* here-document */
    /* No callback: still counted. */
    assert_int_equal(irp_template_shell_check(t, NULL, NULL), 3);
    assert_int_equal(irp_template_shell_check(parse_ok(f, "echo ok"), on_problem, &p), 0);
}

static void test_template_shell_check_accepts_safe_places(void **state)
{
    struct fixture *f = *state;
    static const char *const ok[] = {
        "echo ${{ item }}",
        "echo \"${{ item }}\"",
        "echo \"a 'quoted' ${{ item }}\"",
        "echo 'single' \"${{ item }}\" 'again'",
        "echo $(basename ${{ item }})",
        "echo \"$(basename \"${{ item }}\")\"",
        "if [ -n ${{ item }} ]; then echo yes; fi",
        "cat <<EOF\nbody\nEOF\necho ${{ item }}",
        "cat <<-EOF\n\tbody\n\tEOF\necho ${{ item }}",
        "echo $(( 2 << 1 )) ${{ item }}",
        "echo ${X:-${{ item }}}",
        "case ${{ item }} in a) echo a;; esac",
        "# comment with ' and ` and <<EOF\necho ${{ item }}",
        "echo a\\'b ${{ item }}",
        "echo \"\\\"\" ${{ item }}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        irp_template *t = parse_ok(f, ok[i]);
        struct problems p = { .n = 0 };
        size_t n = irp_template_shell_check(t, on_problem, &p);
        if (n != 0)
            fail_msg("'%s': unexpected problem: %s", ok[i], p.msgs[0]);
    }
}

/* irp_template_render_text() writes what irp_value_render() would write
 * of irp_template_render()'s value, with the same taint. */
static void test_template_render_text_matches_render(void **state)
{
    struct fixture *f = *state;
    static const char *const cases[] = {
        "plain", "", "${{ inputs.name }}", "${{ inputs.n }}", "${{ inputs.tenth }}",
        "${{ inputs.none }}", "${{ inputs.hosts }}", "${{ inputs }}", "${{ 1 == 1 }}",
        "Hi ${{ inputs.name }}, ${{ inputs.n }} of ${{ inputs.hosts }}${{ inputs.none }}!",
        "${{ secrets.TOKEN }}", "t=${{ secrets.TOKEN }}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        irp_template *t = parse_ok(f, cases[i]);
        irp_value *v = NULL;
        char *want = NULL, *got = NULL;
        size_t want_len, got_len;
        bool secret = false;
        assert_int_equal(irp_template_render(t, &f->scope, &v, NULL), 0);
        assert_int_equal(irp_value_render(v, &want, &want_len), 0);
        assert_int_equal(irp_template_render_text(t, &f->scope, &got, &got_len, &secret, NULL), 0);
        assert_int_equal(got_len, want_len);
        assert_memory_equal(got, want, want_len + 1);
        assert_int_equal(secret, irp_value_is_secret(v));
        free(want);
        free(got);
        irp_value_unref(v);
    }
    irp_template *t = parse_ok(f, "x${{ inputs.missing }}");
    char *out = NULL;
    irp_expr_error err = { 0 };
    assert_int_equal(irp_template_render_text(t, &f->scope, &out, NULL, NULL, &err), IRP_EUNDEF);
    assert_null(out);
    assert_true(err.msg[0] != '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_template_plain_string_is_one_text_part),
        T(test_template_keeps_its_own_copy),
        T(test_template_single_expr_keeps_type),
        T(test_template_renders_values_as_text),
        T(test_template_secret_taint_propagates),
        T(test_template_parse_errors_have_string_offsets),
        T(test_template_render_errors_propagate),
        T(test_template_render_text_matches_render),
        T(test_template_walks_exprs_and_refs),
        T(test_template_many_plain_strings_are_cheap),
        T(test_template_shell_script_quotes_by_context),
        T(test_template_shell_values_never_become_syntax),
        T(test_template_shell_values_keep_taint),
        T(test_template_shell_script_refuses_nul_and_errors),
        T(test_template_shell_check_single_quotes),
        T(test_template_shell_check_backquotes),
        T(test_template_shell_check_heredocs),
        T(test_template_shell_check_other_places),
        T(test_template_shell_check_counts_every_problem),
        T(test_template_shell_check_accepts_safe_places),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
