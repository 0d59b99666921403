/* irp check: the static checks of the CI dry-run (SPEC §6), and the order
 * in which every check of one playbook runs.
 *
 * Templates and `when`s are evaluated against a scope holding the resolved
 * inputs and the vars.  What only a run can know -- steps' results,
 * deadlines, an item of a list that depends on them -- is "unknown": it
 * reads as null, and an error in an expression that read anything unknown
 * is not reported, since the value a real run gives may well be fine.
 * The failure paths (check_paths.c) run those expressions with simulated
 * results and catch what this pass cannot.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check_int.h"
#include "irp/error.h"
#include "irp/expr.h"
#include "irp/inputs.h"
#include "irp/template.h"
#include "irp/timeutil.h"
#include "strvec.h"

/* A secret that is not set gets this value, so its templates render. */
#define SECRET_PLACEHOLDER "irp-check-placeholder"
/* Items of a for_each list whose strings are evaluated (the rest are like
 * them as far as types go, and a long list must not cost a run's worth). */
#define ITEM_SAMPLE 16

static const char *const kind_names[IRP_CHECK_NKINDS] = {
    "validate", "inputs", "expressions", "graph", "commands", "addresses", "deadlines", "paths",
};

const char *irp_check_kind_name(irp_check_kind k)
{
    return (unsigned)k < IRP_CHECK_NKINDS ? kind_names[k] : "?";
}

void check_diag(check_ctx *c, irp_check_kind k, irp_severity sev, irp_pos pos,
                const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    irp_diag_add(&c->r->diags[k], sev, c->r->file, pos.line, pos.col, "%s", msg);
}

/* ---- the static scope ----------------------------------------------- */

typedef struct sscope {
    check_ctx *c;
    const irp_step *step;        /* whose strings; NULL for vars */
    irp_value *item;             /* the item in use; NULL: none or unknown */
    size_t index;
    bool finally;                /* run.status reads as an outcome there */
    bool quiet;                  /* report nothing (a second look at a string) */
    bool unknown;                /* something unknown was read */
} sscope;

static int member(irp_value *map, const char *key, irp_value **out)
{
    irp_value *v = map ? irp_value_map_get(map, key, strlen(key)) : NULL;
    *out = v ? irp_value_ref(v) : irp_value_new_null();
    return *out ? 0 : IRP_ENOMEM;
}

static int unknown(sscope *s, irp_value **out)
{
    s->unknown = true;
    *out = irp_value_new_null();
    return *out ? 0 : IRP_ENOMEM;
}

static int run_value(sscope *s, const char *field, irp_value **out)
{
    char now[IRP_TIME_BUFSZ];
    irp_time_format((int64_t)time(NULL) * 1000, now);
    const char *v = strcmp(field, "id") == 0 ? "check"
                    : strcmp(field, "mode") == 0 ? "check"
                    : strcmp(field, "status") == 0 ? (s->finally ? "succeeded" : "running")
                    : strcmp(field, "operator") == 0 ? "irp-check"
                    : strcmp(field, "head") == 0
                        ? "0000000000000000000000000000000000000000000000000000000000000000"
                        : now;
    *out = irp_value_new_cstring(v);
    return *out ? 0 : IRP_ENOMEM;
}

static int s_lookup(void *ctx, const char *const *seg, size_t n, irp_value **out,
                    char *err, size_t errlen)
{
    sscope *s = ctx;
    check_ctx *c = s->c;
    const char *root = seg[0];
    *out = NULL;
    if (strcmp(root, "inputs") == 0 && n >= 2)
        return member(c->inputs, seg[1], out);
    if (strcmp(root, "vars") == 0 && n >= 2) {
        if (!c->vars || !irp_value_map_get(c->vars, seg[1], strlen(seg[1])))
            return unknown(s, out);   /* a var that did not evaluate */
        return member(c->vars, seg[1], out);
    }
    if ((strcmp(root, "env") == 0 || strcmp(root, "secrets") == 0) && n >= 2) {
        const char *v = getenv(seg[1]);
        *out = v ? irp_value_new_cstring(v) : irp_value_new_null();
        if (*out && root[0] == 's')
            irp_value_taint(*out);
        return *out ? 0 : IRP_ENOMEM;
    }
    if (strcmp(root, "item") == 0 || strcmp(root, "index") == 0) {
        if (!s->item)
            return unknown(s, out);
        if (root[1] == 'n') {
            *out = irp_value_new_number((double)s->index);
            return *out ? 0 : IRP_ENOMEM;
        }
        irp_value *v = s->item;
        for (size_t i = 1; i < n && v; i++)
            v = irp_value_type_of(v) == IRP_VALUE_MAP ? irp_value_map_get(v, seg[i], strlen(seg[i]))
                                                       : NULL;
        *out = v ? irp_value_ref(v) : irp_value_new_null();
        return *out ? 0 : IRP_ENOMEM;
    }
    if (strcmp(root, "run") == 0 && n == 2)
        return run_value(s, seg[1], out);
    (void)err;
    (void)errlen;
    return unknown(s, out);   /* steps.*, deadlines.*: only a run knows */
}

/* Render one playbook string.  0 and *out (a new reference, or NULL when
 * the value is unknown); IRP_ENOMEM; or 1 after reporting an error. */
static int eval_str(check_ctx *c, sscope *s, const irp_str *str, const char *field,
                    irp_value **out)
{
    *out = NULL;
    if (!str->s)
        return 0;
    if (!str->tpl) {
        *out = irp_value_new_string(str->s, str->len);
        return *out ? 0 : IRP_ENOMEM;
    }
    irp_scope scope = { s_lookup, s };
    irp_expr_error x = { 0 };
    irp_value *v = NULL;
    s->unknown = false;
    int rc = irp_template_render(str->tpl, &scope, &v, &x);
    if (rc == IRP_ENOMEM)
        return rc;
    if (rc) {
        if (s->unknown || s->quiet)
            return 0;
        irp_pos pos = irp_str_pos(c->pb, str, x.offset);
        if (s->step)
            c->expr_bad[s->step->index] = true;
        check_diag(c, IRP_CHECK_EXPRESSIONS, IRP_DIAG_ERROR, pos, "%s: %s", field,
                   x.msg[0] ? x.msg : irp_strerror(rc));
        return 1;
    }
    if (s->unknown) {
        irp_value_unref(v);
        return 0;
    }
    *out = v;
    return 0;
}

/* ---- walking every string of a step --------------------------------- */

typedef void (*str_fn)(void *ctx, const irp_step *st, const irp_str *s, const char *field);

static void walk_kvs(const irp_step *st, const irp_kv *kv, size_t n, const char *what,
                     str_fn fn, void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        char field[160];
        snprintf(field, sizeof field, "%s.%s", what, kv[i].key);
        fn(ctx, st, &kv[i].value, field);
    }
}

static void walk_list(const irp_step *st, const irp_str *s, size_t n, const char *what,
                      str_fn fn, void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        char field[160];
        snprintf(field, sizeof field, "%s[%zu]", what, i);
        fn(ctx, st, &s[i], field);
    }
}

static void walk_notify(const irp_step *st, str_fn fn, void *ctx)
{
    const irp_notify_action *n = st->act.notify;
    const struct { const irp_str *s; const char *name; } f[] = {
        { &n->url, "url" }, { &n->content_type, "content_type" }, { &n->server, "server" },
        { &n->from, "from" }, { &n->username, "username" }, { &n->password, "password" },
        { &n->subject, "subject" }, { &n->body, "body" }, { &n->ca_file, "ca_file" },
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        fn(ctx, st, f[i].s, f[i].name);
    walk_kvs(st, n->headers, n->n_headers, "headers", fn, ctx);
    walk_list(st, n->to, n->n_to, "to", fn, ctx);
}

/* Every templated string of a step but its for_each, in file order. */
static void walk_step(const irp_step *st, str_fn fn, void *ctx)
{
    fn(ctx, st, &st->rare->confirm_prompt, "confirm");
    fn(ctx, st, &st->rare->cwd, "cwd");
    walk_kvs(st, st->env, st->n_env, "env", fn, ctx);
    switch (st->action) {
    case IRP_ACT_RUN:
        if (st->act.run->shell)
            fn(ctx, st, &st->act.run->script, "run");
        else
            walk_list(st, st->act.run->argv, st->act.run->argc, "run", fn, ctx);
        break;
    case IRP_ACT_MANUAL:
        fn(ctx, st, &st->act.manual->prompt, "manual");
        break;
    case IRP_ACT_NOTIFY:
        walk_notify(st, fn, ctx);
        break;
    case IRP_ACT_EVIDENCE:
        for (size_t i = 0; i < st->act.evidence->n_items; i++) {
            const irp_evidence_item *it = &st->act.evidence->items[i];
            fn(ctx, st, &it->path, "evidence path");
            walk_list(st, it->argv, it->argc, "evidence run", fn, ctx);
        }
        break;
    case IRP_ACT_WAIT:
        fn(ctx, st, &st->act.wait->until, "wait.until");
        break;
    default:
        break;
    }
    walk_kvs(st, st->sim.outputs, st->sim.n_outputs, "simulate.outputs", fn, ctx);
}

/* A step's `when` as a playbook string, for positions. */
static irp_str when_str(const irp_step *st)
{
    return (irp_str){ .s = st->when_src, .len = (uint32_t)strlen(st->when_src),
                      .pos = st->when_pos, .style = st->when_style };
}

/* ---- secrets -------------------------------------------------------- */

typedef struct secret_walk {
    check_ctx *c;
    const irp_str *str;
    strvec seen;                 /* names reported or found set */
    strvec *placed;              /* names given a placeholder (unset at the end) */
    int rc;
} secret_walk;

static int secret_ref(void *ctx, const char *const *seg, size_t n, size_t offset)
{
    secret_walk *w = ctx;
    if (n < 2 || strcmp(seg[0], "secrets") != 0)
        return 0;
    for (size_t i = 0; i < w->seen.n; i++)
        if (strcmp(w->seen.v[i], seg[1]) == 0)
            return 0;
    if (strvec_push(&w->seen, seg[1]))
        return w->rc = IRP_ENOMEM;
    if (getenv(seg[1]))
        return 0;
    if (setenv(seg[1], SECRET_PLACEHOLDER, 1) != 0 || strvec_push(w->placed, seg[1]))
        return w->rc = IRP_ENOMEM;
    check_diag(w->c, IRP_CHECK_EXPRESSIONS, IRP_DIAG_WARNING,
               irp_str_pos(w->c->pb, w->str, offset),
               "secret '%s' is not set: checked with a placeholder value (irp run needs it "
               "in the environment)", seg[1]);
    return 0;
}

static void secret_str(void *ctx, const irp_step *st, const irp_str *s, const char *field)
{
    secret_walk *w = ctx;
    if (!s->s || !s->tpl || w->rc)
        return;
    w->str = s;
    irp_template_walk_refs(s->tpl, secret_ref, w);
}

/* Give every secret the playbook reads a value: its own, or a placeholder
 * with a warning.  Names given a placeholder go into *placed. */
static int secrets_prepare(check_ctx *c, strvec *placed)
{
    const irp_playbook *pb = c->pb;
    secret_walk w = { .c = c, .placed = placed };
    for (size_t i = 0; i < pb->n_vars && !w.rc; i++) {
        secret_str(&w, NULL, &pb->vars[i].str, "var");
        for (size_t k = 0; k < pb->vars[i].n_items; k++)
            secret_str(&w, NULL, &pb->vars[i].items[k], "var");
    }
    for (size_t i = 0; i < pb->n_steps && !w.rc; i++) {
        const irp_step *st = &pb->steps[i];
        secret_str(&w, st, &st->rare->for_each_expr, "for_each");
        for (size_t k = 0; k < st->rare->n_for_each_items; k++)
            secret_str(&w, st, &st->rare->for_each_items[k], "for_each");
        if (st->when) {
            irp_str ws = when_str(st);
            w.str = &ws;
            irp_expr_walk_refs(st->when, secret_ref, &w);
        }
        walk_step(st, secret_str, &w);
    }
    strvec_release(&w.seen);
    return w.rc;
}

/* ---- vars and expressions ------------------------------------------- */

static int eval_var(check_ctx *c, sscope *s, const irp_var *var, irp_value **out)
{
    *out = NULL;
    if (var->kind == IRP_VAR_NULL || var->kind == IRP_VAR_BOOL) {
        *out = var->kind == IRP_VAR_NULL ? irp_value_new_null() : irp_value_new_bool(var->b);
        return *out ? 0 : IRP_ENOMEM;
    }
    if (var->kind == IRP_VAR_STR)
        return eval_str(c, s, &var->str, "var", out);
    irp_value *list = irp_value_new_list();
    if (!list)
        return IRP_ENOMEM;
    for (size_t i = 0; i < var->n_items; i++) {
        irp_value *v = NULL;
        int rc = eval_str(c, s, &var->items[i], "var", &v);
        if (!rc && !v) {
            irp_value_unref(list);   /* an unknown item: the list is unknown */
            return 0;
        }
        if (!rc)
            rc = irp_value_list_append(list, v);
        if (rc) {
            irp_value_unref(list);
            return rc;
        }
    }
    *out = list;
    return 0;
}

/* Vars in order; one that fails or reads something unknown stays out of
 * the map (and reads as unknown). */
static int eval_vars(check_ctx *c)
{
    sscope s = { .c = c };
    if (!(c->vars = irp_value_new_map()))
        return IRP_ENOMEM;
    for (size_t i = 0; i < c->pb->n_vars; i++) {
        const irp_var *var = &c->pb->vars[i];
        irp_value *v = NULL;
        int rc = eval_var(c, &s, var, &v);
        if (rc == IRP_ENOMEM)
            return rc;
        if (rc)
            c->vars_failed = true;
        if (v && irp_value_map_set(c->vars, var->name, strlen(var->name), v))
            return IRP_ENOMEM;
    }
    return 0;
}

/* The for_each list when it can be known: a new reference or NULL. */
static int eval_for_each(check_ctx *c, const irp_step *st, bool quiet, irp_value **out)
{
    sscope s = { .c = c, .step = st, .quiet = quiet };
    *out = NULL;
    if (!st->has_for_each)
        return 0;
    if (!st->for_each_is_list) {
        int rc = eval_str(c, &s, &st->rare->for_each_expr, "for_each", out);
        if (rc || !*out)
            return rc == IRP_ENOMEM ? rc : 0;
        if (irp_value_type_of(*out) != IRP_VALUE_LIST) {
            c->expr_bad[st->index] |= !quiet;
            if (!quiet)
                check_diag(c, IRP_CHECK_EXPRESSIONS, IRP_DIAG_ERROR, st->rare->for_each_expr.pos,
                           "for_each gave a %s, not a list",
                           irp_value_type_name(irp_value_type_of(*out)));
            irp_value_unref(*out);
            *out = NULL;
        }
        return 0;
    }
    irp_value *list = irp_value_new_list();
    for (size_t i = 0; list && i < st->rare->n_for_each_items; i++) {
        irp_value *v = NULL;
        int rc = eval_str(c, &s, &st->rare->for_each_items[i], "for_each", &v);
        if (rc || !v) {
            irp_value_unref(list);
            return rc == IRP_ENOMEM ? rc : 0;
        }
        if (irp_value_list_append(list, v)) {
            irp_value_unref(list);
            return IRP_ENOMEM;
        }
    }
    *out = list;
    return list ? 0 : IRP_ENOMEM;
}

/* Evaluating one step's strings, once per sampled item. */
typedef struct step_eval {
    check_ctx *c;
    irp_value *items;            /* NULL: no for_each, or an unknown list */
    const irp_step *step;
    int rc;
} step_eval;

/* Calls back for each item in use: none, unknown, or the sample. */
static size_t item_count(const step_eval *se)
{
    if (!se->items)
        return 1;
    size_t n = irp_value_list_len(se->items);
    return n < ITEM_SAMPLE ? n : ITEM_SAMPLE;
}

static void item_scope(const step_eval *se, size_t i, sscope *s)
{
    *s = (sscope){ .c = se->c, .step = se->step, .finally = se->step->is_finally, .index = i };
    s->item = se->items ? irp_value_list_at(se->items, i) : NULL;
}

static void expr_str(void *ctx, const irp_step *st, const irp_str *str, const char *field)
{
    step_eval *se = ctx;
    for (size_t i = 0; i < item_count(se) && !se->rc; i++) {
        sscope s;
        item_scope(se, i, &s);
        irp_value *v = NULL;
        int rc = eval_str(se->c, &s, str, field, &v);
        irp_value_unref(v);
        if (rc == IRP_ENOMEM)
            se->rc = rc;
        if (rc)
            return;   /* one report per string, not one per item */
    }
}

static void eval_when(step_eval *se, const irp_step *st)
{
    if (!st->when)
        return;
    irp_str w = when_str(st);
    for (size_t i = 0; i < item_count(se); i++) {
        sscope s;
        item_scope(se, i, &s);
        irp_scope scope = { s_lookup, &s };
        irp_expr_error x = { 0 };
        irp_value *v = NULL;
        int rc = irp_expr_eval(st->when, &scope, &v, &x);
        if (rc == IRP_ENOMEM) {
            se->rc = rc;
            return;
        }
        const char *got = irp_value_type_name(irp_value_type_of(v));
        bool bad = !s.unknown && (rc || irp_value_type_of(v) != IRP_VALUE_BOOL);
        irp_value_unref(v);
        if (!bad)
            continue;
        se->c->expr_bad[st->index] = true;
        if (rc)
            check_diag(se->c, IRP_CHECK_EXPRESSIONS, IRP_DIAG_ERROR,
                       irp_str_pos(se->c->pb, &w, x.offset), "when: %s",
                       x.msg[0] ? x.msg : irp_strerror(rc));
        else
            check_diag(se->c, IRP_CHECK_EXPRESSIONS, IRP_DIAG_ERROR, st->when_pos,
                       "when gave a %s, not true or false", got);
        return;
    }
}

static int check_expressions(check_ctx *c)
{
    int rc = eval_vars(c);
    for (size_t i = 0; !rc && i < c->pb->n_steps; i++) {
        const irp_step *st = &c->pb->steps[i];
        step_eval se = { .c = c, .step = st };
        rc = eval_for_each(c, st, false, &se.items);
        if (rc)
            break;
        c->n_items[i] = se.items ? irp_value_list_len(se.items) : 0;
        if (se.items && irp_value_list_len(se.items) == 0) {
            irp_value_unref(se.items);
            continue;   /* an empty list: no instance, nothing evaluated */
        }
        eval_when(&se, st);
        if (!se.rc)
            walk_step(st, expr_str, &se);
        rc = se.rc;
        irp_value_unref(se.items);
    }
    return rc;
}

/* ---- commands ------------------------------------------------------- */

/* NULL when `name` would start, else why not. */
static const char *command_problem(const char *name)
{
    struct stat sb;
    if (strchr(name, '/')) {
        if (stat(name, &sb) != 0)
            return "does not exist";
        if (!S_ISREG(sb.st_mode) || access(name, X_OK) != 0)
            return "is not executable";
        return NULL;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path; *p;) {
        size_t len = strcspn(p, ":");
        char full[4096];
        int n = snprintf(full, sizeof full, "%.*s/%s", (int)len, len ? p : ".", name);
        if (len == 0)
            n = snprintf(full, sizeof full, "./%s", name);
        if (n > 0 && (size_t)n < sizeof full && stat(full, &sb) == 0 && S_ISREG(sb.st_mode) &&
            access(full, X_OK) == 0)
            return NULL;
        p += len;
        if (*p == ':')
            p++;
    }
    return "not found on PATH";
}

static void check_argv0(check_ctx *c, const irp_str *argv0)
{
    if (!argv0->s || !*argv0->s || (argv0->tpl && irp_template_has_exprs(argv0->tpl)))
        return;   /* a templated command is known only when it runs */
    const char *why = command_problem(argv0->s);
    if (why)
        check_diag(c, IRP_CHECK_COMMANDS, c->o->strict ? IRP_DIAG_ERROR : IRP_DIAG_WARNING,
                   argv0->pos, "command '%s' %s", argv0->s, why);
}

static void check_commands(check_ctx *c)
{
    for (size_t i = 0; i < c->pb->n_steps; i++) {
        const irp_step *st = &c->pb->steps[i];
        if (st->action == IRP_ACT_RUN && !st->act.run->shell && st->act.run->argc)
            check_argv0(c, &st->act.run->argv[0]);
        for (size_t k = 0; st->action == IRP_ACT_EVIDENCE && k < st->act.evidence->n_items; k++)
            if (st->act.evidence->items[k].argc)
                check_argv0(c, &st->act.evidence->items[k].argv[0]);
    }
}

/* ---- URLs and addresses --------------------------------------------- */

/* NULL when `u` is scheme://host[:port][/...] with one of the schemes. */
static const char *url_problem(const char *u, const char *s1, const char *s2, char *buf,
                               size_t n)
{
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return "holds a space or a control character";
    const char *sep = strstr(u, "://");
    if (!sep) {
        snprintf(buf, n, "has no scheme (%s:// or %s://)", s1, s2);
        return buf;
    }
    size_t slen = (size_t)(sep - u);
    if (!((slen == strlen(s1) && strncasecmp(u, s1, slen) == 0) ||
          (slen == strlen(s2) && strncasecmp(u, s2, slen) == 0))) {
        snprintf(buf, n, "has scheme '%.*s', not %s or %s", (int)(slen > 32 ? 32 : slen), u,
                 s1, s2);
        return buf;
    }
    const char *host = sep + 3;
    size_t alen = strcspn(host, "/?#");
    const char *at = memrchr(host, '@', alen);
    if (at) {
        alen -= (size_t)(at + 1 - host);
        host = at + 1;
    }
    size_t hlen;
    if (host[0] == '[') {
        const char *close = memchr(host, ']', alen);
        if (!close || close == host + 1)
            return "has a malformed IPv6 host";
        hlen = (size_t)(close + 1 - host);
    } else {
        hlen = strcspn(host, ":/?#");
        if (hlen > alen)
            hlen = alen;
        for (size_t i = 0; i < hlen; i++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_~%",
                        host[i]))
                return "has a character a host name cannot hold";
    }
    if (hlen == 0)
        return "has no host";
    if (hlen < alen) {
        if (host[hlen] != ':')
            return "has something after its host that is not a port";
        const char *port = host + hlen + 1;
        size_t plen = alen - hlen - 1;
        long v = 0;
        for (size_t i = 0; i < plen && v <= 65535; i++)
            v = port[i] >= '0' && port[i] <= '9' ? v * 10 + (port[i] - '0') : 70000;
        if (plen == 0 || v < 1 || v > 65535)
            return "has a port that is not a number from 1 to 65535";
    }
    return NULL;
}

static bool atext(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+/=?^_`{|}~-", ch)) || (unsigned char)ch >= 0x80;
}

/* A simple addr-spec check: local@domain, dot-atoms, or `Name <addr>`. */
static bool address_ok(const char *a)
{
    const char *lt = strrchr(a, '<');
    char inner[512];
    if (lt) {
        const char *gt = strchr(lt, '>');
        if (!gt || gt[1] || (size_t)(gt - lt - 1) >= sizeof inner)
            return false;
        snprintf(inner, sizeof inner, "%.*s", (int)(gt - lt - 1), lt + 1);
        a = inner;
    }
    const char *at = strrchr(a, '@');
    if (!at || at == a || !at[1])
        return false;
    for (const char *p = a; p < at; p++)
        if (!(atext(*p) || (*p == '.' && p > a && p + 1 < at && p[1] != '.')))
            return false;
    size_t label = 0;
    for (const char *p = at + 1;; p++) {
        if (*p == '.' || !*p) {
            if (label == 0 || label > 63 || p[-1] == '-' || (p - label)[0] == '-')
                return false;
            if (!*p)
                return true;
            label = 0;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                   (*p >= '0' && *p <= '9') || *p == '-' || (unsigned char)*p >= 0x80) {
            label++;
        } else {
            return false;
        }
    }
}

/* The rendered value of a string when it can be known: with the first
 * item of a for_each list that is known, else none.  Errors were reported
 * by the expressions check: quiet here.  0, IRP_ENOMEM. */
static int render_known(check_ctx *c, const irp_step *st, const irp_str *s, irp_value **out)
{
    sscope sc = { .c = c, .step = st, .finally = st->is_finally, .quiet = true };
    irp_value *items = NULL;
    *out = NULL;
    if (!s->s || (!c->inputs && s->tpl) || (!s->tpl && strstr(s->s, "${{")))
        return 0;   /* without inputs (or a parsed template) the value is unknown */
    if (s->tpl && st->has_for_each) {
        int rc = eval_for_each(c, st, true, &items);
        if (rc || !items || !irp_value_list_len(items)) {
            irp_value_unref(items);
            return rc;
        }
        sc.item = irp_value_list_at(items, 0);
    }
    int rc = eval_str(c, &sc, s, "", out);
    irp_value_unref(items);
    return rc == IRP_ENOMEM ? rc : 0;
}

static void url_field(check_ctx *c, const irp_step *st, const irp_str *s, const char *what,
                      const char *s1, const char *s2)
{
    irp_value *v = NULL;
    if (render_known(c, st, s, &v) || !v)
        return;
    char buf[128];
    const char *why = irp_value_type_of(v) != IRP_VALUE_STRING ? "is not a string"
                      : url_problem(irp_value_string(v, NULL), s1, s2, buf, sizeof buf);
    if (why) {
        const char *shown = irp_value_is_secret(v) || irp_value_type_of(v) != IRP_VALUE_STRING
                                ? "***" : irp_value_string(v, NULL);
        check_diag(c, IRP_CHECK_ADDRESSES, IRP_DIAG_ERROR, s->pos, "%s '%s'%s %s", what, shown,
                   s->tpl ? " (as rendered with the inputs)" : "", why);
    }
    irp_value_unref(v);
}

static void address_value(check_ctx *c, const irp_str *s, const irp_value *v, const char *what)
{
    if (irp_value_type_of(v) == IRP_VALUE_LIST) {
        for (size_t i = 0; i < irp_value_list_len(v); i++)
            address_value(c, s, irp_value_list_at(v, i), what);
        return;
    }
    bool ok = irp_value_type_of(v) == IRP_VALUE_STRING && address_ok(irp_value_string(v, NULL));
    if (!ok)
        check_diag(c, IRP_CHECK_ADDRESSES, IRP_DIAG_ERROR, s->pos,
                   "%s '%s'%s is not an e-mail address (local@domain or Name <local@domain>)",
                   what, irp_value_is_secret(v) || irp_value_type_of(v) != IRP_VALUE_STRING
                             ? "***" : irp_value_string(v, NULL),
                   s->tpl ? " (as rendered with the inputs)" : "");
}

static void address_field(check_ctx *c, const irp_step *st, const irp_str *s, const char *what)
{
    irp_value *v = NULL;
    if (render_known(c, st, s, &v) || !v)
        return;
    address_value(c, s, v, what);
    irp_value_unref(v);
}

static void check_addresses(check_ctx *c)
{
    for (size_t i = 0; i < c->pb->n_steps; i++) {
        const irp_step *st = &c->pb->steps[i];
        if (st->action != IRP_ACT_NOTIFY)
            continue;
        const irp_notify_action *n = st->act.notify;
        if (n->via == IRP_VIA_WEBHOOK) {
            url_field(c, st, &n->url, "url", "http", "https");
        } else if (n->via == IRP_VIA_EMAIL) {
            url_field(c, st, &n->server, "server", "smtp", "smtps");
            address_field(c, st, &n->from, "from");
            for (size_t k = 0; k < n->n_to; k++)
                address_field(c, st, &n->to[k], "recipient");
        }
    }
}

/* ---- the graph ------------------------------------------------------ */

/* Kahn's algorithm over `needs`, then `steps` before `finally`, each in
 * dependency order.  False when a cycle is left (validate reported it). */
static bool topo_order(check_ctx *c)
{
    const irp_playbook *pb = c->pb;
    size_t n = pb->n_steps, edges = 0, head = 0, tail = 0;
    for (size_t i = 0; i < n; i++)
        edges += pb->steps[i].n_deps;
    size_t *left = calloc(n + 1, sizeof *left), *start = calloc(n + 2, sizeof *start);
    size_t *dep = malloc((edges + 1) * sizeof *dep), *queue = malloc((n + 1) * sizeof *queue);
    bool ok = left && start && dep && queue;
    for (size_t i = 0; ok && i < n; i++) {
        left[i] = pb->steps[i].n_deps;
        for (size_t k = 0; k < pb->steps[i].n_deps; k++)
            start[pb->steps[i].deps[k] + 2]++;
    }
    for (size_t i = 0; ok && i < n; i++)
        start[i + 2] += start[i + 1];
    for (size_t i = 0; ok && i < n; i++)
        for (size_t k = 0; k < pb->steps[i].n_deps; k++)
            dep[start[pb->steps[i].deps[k] + 1]++] = i;
    for (size_t i = 0; ok && i < n; i++)
        if (!left[i])
            queue[tail++] = i;
    while (ok && head < tail) {
        size_t s = queue[head++];
        for (size_t k = start[s]; k < start[s + 1]; k++)
            if (--left[dep[k]] == 0)
                queue[tail++] = dep[k];
    }
    ok = ok && tail == n;
    size_t o = 0;
    for (int pass = 0; ok && pass < 2; pass++)
        for (size_t k = 0; k < n; k++)
            if (pb->steps[queue[k]].is_finally == (pass == 1))
                c->topo[o++] = queue[k];
    free(left);
    free(start);
    free(dep);
    free(queue);
    return ok;
}

static void check_graph(check_ctx *c)
{
    if (!(c->graph_ok = topo_order(c)))
        return;
    for (size_t k = 0; k < c->pb->n_steps; k++) {
        const irp_step *st = &c->pb->steps[c->topo[k]];
        if (st->when_kind == IRP_WHEN_FALSE) {
            c->never[st->index] = true;
            check_diag(c, IRP_CHECK_GRAPH, IRP_DIAG_WARNING, st->when_pos,
                       "step '%s' can never run: its when is false", st->id);
            continue;
        }
        if (st->is_finally || st->when_kind != IRP_WHEN_DEFAULT)
            continue;   /* an explicit when decides for itself */
        for (size_t d = 0; d < st->n_deps; d++)
            if (c->never[st->deps[d]]) {
                c->never[st->index] = true;
                check_diag(c, IRP_CHECK_GRAPH, IRP_DIAG_WARNING, st->pos,
                           "step '%s' can never run: it needs '%s', which never runs", st->id,
                           c->pb->steps[st->deps[d]].id);
                break;
            }
    }
}

/* ---- one playbook --------------------------------------------------- */

int irp_check_load(irp_check_result *r, const char *file)
{
    r->file = file;
    r->load_rc = irp_playbook_load(file, &r->diags[IRP_CHECK_VALIDATE], &r->pb);
    return r->load_rc;
}

bool irp_check_unreadable(const irp_check_result *r)
{
    return r->load_rc && r->load_rc != IRP_EPARSE && r->load_rc != IRP_ELIMIT &&
           r->load_rc != IRP_ENOMEM;
}

static void skip(irp_check_result *r, irp_check_kind from, const char *why)
{
    for (int k = from; k < IRP_CHECK_NKINDS; k++)
        if (!r->skipped[k])
            r->skipped[k] = why;
}

/* Everything after the inputs resolved. */
static int check_sound(check_ctx *c)
{
    irp_check_result *r = c->r;
    int rc = check_expressions(c);
    if (rc)
        return rc;
    check_graph(c);
    check_addresses(c);
    if (!c->graph_ok)
        r->skipped[IRP_CHECK_DEADLINES] = "the steps' needs have a cycle";
    else
        check_deadlines(c);
    if (c->vars_failed)
        r->skipped[IRP_CHECK_PATHS] = "a var does not evaluate, so nothing could run";
    else if (!c->graph_ok)
        r->skipped[IRP_CHECK_PATHS] = "the steps' needs have a cycle";
    else
        rc = check_paths(c);
    return rc;
}

static int run_checks(check_ctx *c, strvec *placed)
{
    irp_check_result *r = c->r;
    const irp_check_opts *o = c->o;
    check_commands(c);
    if (r->load_rc) {
        check_addresses(c);   /* literal values only: no inputs */
        skip(r, IRP_CHECK_INPUTS, "the playbook has errors (see validate)");
        r->skipped[IRP_CHECK_COMMANDS] = r->skipped[IRP_CHECK_ADDRESSES] = NULL;
        return 0;
    }
    int rc = secrets_prepare(c, placed);
    if (rc)
        return rc;
    rc = irp_inputs_resolve(c->pb, o->iargs, o->n_iargs, o->inputs_file, true,
                            &r->diags[IRP_CHECK_INPUTS], &c->inputs);
    if (rc == IRP_ENOMEM)
        return rc;
    if (rc) {
        c->inputs = NULL;
        check_addresses(c);
        check_graph(c);
        if (c->graph_ok)
            check_deadlines(c);
        r->skipped[IRP_CHECK_EXPRESSIONS] = "the inputs have errors";
        r->skipped[IRP_CHECK_PATHS] = "the inputs have errors";
        return 0;
    }
    return check_sound(c);
}

int irp_check_run(irp_check_result *r, const irp_check_opts *o)
{
    if (!r->pb) {
        skip(r, IRP_CHECK_INPUTS, irp_check_unreadable(r) ? "the file cannot be read"
                                                          : "the playbook has errors (see validate)");
        return r->load_rc == IRP_ENOMEM ? IRP_ENOMEM : 0;
    }
    size_t n = r->pb->n_steps ? r->pb->n_steps : 1;
    check_ctx c = { .r = r, .o = o, .pb = r->pb, .jobs = o->jobs ? o->jobs : 8 };
    c.n_items = calloc(n, sizeof *c.n_items);
    c.never = calloc(n, sizeof *c.never);
    c.topo = calloc(n, sizeof *c.topo);
    c.expr_bad = calloc(n, sizeof *c.expr_bad);
    strvec placed = STRVEC_INIT;
    int rc = c.n_items && c.never && c.topo && c.expr_bad ? run_checks(&c, &placed) : IRP_ENOMEM;
    /* The placeholders were for this playbook only. */
    for (size_t i = 0; i < placed.n; i++)
        unsetenv(placed.v[i]);
    strvec_release(&placed);
    irp_value_unref(c.inputs);
    irp_value_unref(c.vars);
    free(c.n_items);
    free(c.never);
    free(c.topo);
    free(c.expr_bad);
    for (int k = 0; k < IRP_CHECK_NKINDS; k++) {
        r->errors += r->diags[k].errors;
        r->warnings += r->diags[k].warnings;
    }
    return rc;
}

void irp_check_merged(const irp_check_result *r, irp_diag_list *out)
{
    for (int k = 0; k < IRP_CHECK_NKINDS; k++)
        for (size_t i = 0; i < r->diags[k].n; i++) {
            const irp_diag *d = &r->diags[k].items[i];
            irp_diag_add(out, d->sev, d->file, d->line, d->col, "%s", d->msg);
        }
    irp_diag_sort(out);
}

void irp_check_result_release(irp_check_result *r)
{
    for (int k = 0; k < IRP_CHECK_NKINDS; k++)
        irp_diag_list_release(&r->diags[k]);
    for (size_t i = 0; i < r->n_paths; i++) {
        for (size_t k = 0; k < r->paths[i].n_problems; k++)
            free(r->paths[i].problems[k]);
        free(r->paths[i].problems);
        free(r->paths[i].failing);
    }
    free(r->paths);
    irp_playbook_free(r->pb);
    memset(r, 0, sizeof *r);
}
