/* Steps and `defaults`: the step key table and one setter per action. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "build.h"
#include "irp/error.h"
#include "irp/expr.h"
#include "irp/template.h"
#include "irp/timeutil.h"

#define STEP(o) ((irp_step *)(o))

static const char *const phase_names[] = { "preparation", "detection", "analysis", "containment",
                                           "eradication", "recovery", "post-incident" };
static const char *const on_failure_names[] = { "continue", "abort", "ignore" };
static const char *const action_keys[] = { "", "run", "manual", "notify", "evidence", "wait" };

static void st_id(bctx *c, const irp_node *v, void *o)
{
    build_id(c, v, "step id", &STEP(o)->id);
}

static void st_title(bctx *c, const irp_node *v, void *o)
{
    build_string(c, v, &STEP(o)->title);
}

static void st_phase(bctx *c, const irp_node *v, void *o)
{
    int p;
    if (build_enum(c, v, phase_names, 7, "phase", &p))
        STEP(o)->phase = (irp_phase)(p + 1);
}

static void st_needs(bctx *c, const irp_node *v, void *o)
{
    irp_step *s = o;
    s->needs_given = true;
    if (v->kind == IRP_NODE_SCALAR && !irp_node_is_null(v)) {
        build_error(c, v, "needs must be a list of step ids (write [%s])", v->u.scalar.s);
        return;
    }
    if (irp_node_is_null(v)) {
        build_error(c, v, "needs must be a list of step ids; write [] for none");
        return;
    }
    build_string_list(c, v, &s->needs, &s->needs_pos, &s->n_needs);
}

/* Quoting a `when` is easy to forget; YAML then silently reads something
 * else.  Say what happened instead of reporting a confusing error. */
static bool when_mangled(bctx *c, const irp_node *v)
{
    const char *tag = irp_node_tag(v);
    if (tag) {
        /* `!a == b` arrives as the tag "!a" on the scalar "== b"; `! a`
         * as the bare tag "!" on "a".  Put the expression back together. */
        const char *rest = v->kind == IRP_NODE_SCALAR ? v->u.scalar.s : "";
        ((irp_node *)v)->flags |= IRP_NODE_TAG_REPORTED;
        build_error(c, v, "YAML read the '!' of this 'when' as a tag: quote an expression that "
                    "starts with '!' (when: \"%s%s%s\")", tag, *rest ? " " : "",
                    rest);
        return true;
    }
    if (v->kind == IRP_NODE_MAP) {
        build_error(c, v, "YAML read this 'when' as a mapping because it holds ': '; quote the "
                    "whole expression");
        return true;
    }
    if (v->kind == IRP_NODE_SEQ) {
        build_error(c, v, "'when' must be an expression or true/false, not a list");
        return true;
    }
    return false;
}

/* Whether the source line of a plain scalar goes on with a YAML comment
 * that may have cut the expression short. */
static bool comment_follows(bctx *c, const irp_node *v)
{
    if (v->style != IRP_STYLE_PLAIN)
        return false;
    const char *p = c->pb->src, *end = p + c->pb->src_len;
    for (uint32_t l = 1; l < v->line && p < end; p++)
        if (*p == '\n')
            l++;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
        eol = end;
    const char *hash = memchr(p, '#', (size_t)(eol - p));
    return hash && hash > p && (size_t)(hash - p) >= v->col - 1;
}

static void st_when(bctx *c, const irp_node *v, void *o)
{
    irp_step *s = o;
    if (when_mangled(c, v))
        return;
    s->when_pos = build_pos(v);
    const char *src = v->u.scalar.s;
    if (v->style == IRP_STYLE_PLAIN && (strcmp(src, "true") == 0 || strcmp(src, "false") == 0)) {
        s->when_kind = src[0] == 't' ? IRP_WHEN_TRUE : IRP_WHEN_FALSE;
        return;
    }
    if (v->style == IRP_STYLE_PLAIN && build_is_yaml11_bool(src)) {
        bool b;
        build_bool(c, v, &b);   /* reports it, with the spelling to use */
        return;
    }
    s->when_kind = IRP_WHEN_EXPR;
    s->when_src = src;
    s->when_style = v->style;
    irp_expr_error err = { 0 };
    int rc = irp_expr_parse_when(c->a, src, v->len, &s->when, &err);
    if (rc == IRP_ENOMEM) {
        c->oom = true;
    } else if (rc) {
        irp_str str = { .s = src, .len = v->len, .pos = s->when_pos, .style = v->style };
        build_error_at(c, build_str_pos(c, &str, err.offset), "%s%s", err.msg,
                       comment_follows(c, v)
                           ? " (' #' starts a YAML comment: quote the whole expression)" : "");
        s->when = NULL;
    }
}

/* s's own rare fields, made (in the arena) when first written; NULL when
 * out of memory (c->oom is set). */
static irp_step_rare *rare_of(bctx *c, irp_step *s)
{
    if (s->rare != &irp_step_rare_none)
        return (irp_step_rare *)s->rare;   /* its own, from the arena */
    irp_step_rare *r = irp_arena_alloc(c->a, sizeof *r);
    if (!r) {
        c->oom = true;
        return NULL;
    }
    s->rare = r;
    return r;
}

static void st_for_each(bctx *c, const irp_node *v, void *o)
{
    irp_step *s = o;
    irp_step_rare *r = rare_of(c, s);
    if (!r)
        return;
    s->has_for_each = true;
    if (v->kind == IRP_NODE_SEQ) {
        s->for_each_is_list = true;
        build_tstr_list(c, v, &r->for_each_items, &r->n_for_each_items);
    } else if (build_tstr(c, v, &r->for_each_expr) &&
               (r->for_each_expr.tpl ? !irp_template_is_single_expr(r->for_each_expr.tpl)
                                     : !memmem(v->u.scalar.s, v->len, "${{", 3))) {
        build_error(c, v, "for_each must be a list or one ${{ }} expression giving a list");
    }
}

static void st_confirm(bctx *c, const irp_node *v, void *o)
{
    irp_step *s = o;
    s->set |= IRP_SET_CONFIRM;
    if (v->kind == IRP_NODE_SCALAR && v->style == IRP_STYLE_PLAIN &&
        (strcmp(v->u.scalar.s, "true") == 0 || strcmp(v->u.scalar.s, "false") == 0 ||
         build_is_yaml11_bool(v->u.scalar.s))) {
        /* `confirm: no` must not become a prompt reading "no". */
        build_bool(c, v, &s->confirm);
        return;
    }
    irp_step_rare *r = rare_of(c, s);
    if (r && build_tstr(c, v, &r->confirm_prompt))
        s->confirm = true;
}

static void st_timeout(bctx *c, const irp_node *v, void *o)
{
    if (build_duration(c, v, &STEP(o)->timeout_ms))
        STEP(o)->set |= IRP_SET_TIMEOUT;
}

static void st_retries(bctx *c, const irp_node *v, void *o)
{
    if (build_uint(c, v, 1000, &STEP(o)->retries))
        STEP(o)->set |= IRP_SET_RETRIES;
}

static void st_retry_delay(bctx *c, const irp_node *v, void *o)
{
    if (build_duration(c, v, &STEP(o)->retry_delay_ms))
        STEP(o)->set |= IRP_SET_RETRY_DELAY;
}

static void st_retry_backoff(bctx *c, const irp_node *v, void *o)
{
    double d;
    if (!build_number(c, v, &d))
        return;
    if (d < 1.0 || d > 100.0) {
        build_error(c, v, "retry_backoff must be between 1.0 and 100");
        return;
    }
    STEP(o)->retry_backoff = d;
    STEP(o)->set |= IRP_SET_RETRY_BACKOFF;
}

static void st_on_failure(bctx *c, const irp_node *v, void *o)
{
    int f;
    if (build_enum(c, v, on_failure_names, 3, "on_failure", &f)) {
        STEP(o)->on_failure = (irp_on_failure)f;
        STEP(o)->set |= IRP_SET_ON_FAILURE;
    }
}

static void st_idempotent(bctx *c, const irp_node *v, void *o)
{
    if (build_bool(c, v, &STEP(o)->idempotent))
        STEP(o)->set |= IRP_SET_IDEMPOTENT;
}

static void st_cwd(bctx *c, const irp_node *v, void *o)
{
    irp_step_rare *r = rare_of(c, STEP(o));
    if (r && build_tstr(c, v, &r->cwd))
        STEP(o)->set |= IRP_SET_CWD;
}

static void st_env(bctx *c, const irp_node *v, void *o)
{
    irp_step *s = o;
    if (!build_kv_map(c, v, &s->env, &s->n_env))
        return;
    for (size_t i = 0; i < s->n_env; i++) {
        const char *k = s->env[i].key;
        bool ok = (*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || *k == '_';
        for (const char *p = k; ok && *p; p++)
            ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                 (*p >= '0' && *p <= '9') || *p == '_';
        if (!ok)
            build_error_at(c, s->env[i].pos, "invalid environment variable name '%s'", k);
        else if (strncmp(k, "IRP_", 4) == 0)
            build_error_at(c, s->env[i].pos, "'%s': IRP_* variables are set by irp", k);
    }
}

/* ---- simulate ------------------------------------------------------- */

static void sim_duration(bctx *c, const irp_node *v, void *o)
{
    static const char memo_range = 0;
    irp_simulate *sim = o;
    if (v->kind != IRP_NODE_SCALAR) {
        build_error(c, v, "expected a duration or a range like 30s..2m");
        return;
    }
    const char *s = v->u.scalar.s;
    sim->dur_pos = build_pos(v);
    int64_t range[2];
    if (build_memo_get(c, &memo_range, v, range)) {
        sim->dur_min_ms = range[0];
        sim->dur_max_ms = range[1];
        sim->has_duration = true;
        return;
    }
    const char *dots = strstr(s, "..");
    if (!dots) {
        if (build_duration(c, v, &sim->dur_min_ms)) {
            sim->dur_max_ms = sim->dur_min_ms;
            sim->has_duration = true;
        }
        return;
    }
    int a = irp_duration_parse(s, (size_t)(dots - s), &sim->dur_min_ms);
    int b = irp_duration_parse(dots + 2, strlen(dots + 2), &sim->dur_max_ms);
    if (a || b) {
        build_error(c, v, "invalid duration range '%s' (write e.g. 30s..2m)", s);
    } else if (sim->dur_min_ms > sim->dur_max_ms) {
        build_error(c, v, "duration range '%s' ends before it starts", s);
    } else {
        sim->has_duration = true;
        build_memo_put(c, &memo_range, v, sim->dur_min_ms, sim->dur_max_ms);
    }
}

static void sim_outcome(bctx *c, const irp_node *v, void *o)
{
    static const char *const names[] = { "succeeded", "failed" };
    int k;
    if (build_enum(c, v, names, 2, "outcome", &k))
        ((irp_simulate *)o)->outcome = k == 0 ? IRP_OUTCOME_SUCCEEDED : IRP_OUTCOME_FAILED;
}

static void sim_success_rate(bctx *c, const irp_node *v, void *o)
{
    irp_simulate *sim = o;
    if (!build_number(c, v, &sim->success_rate))
        return;
    if (sim->success_rate < 0 || sim->success_rate > 1)
        build_error(c, v, "success_rate must be between 0 and 1");
    else
        sim->has_success_rate = true;
}

static void sim_outputs(bctx *c, const irp_node *v, void *o)
{
    irp_simulate *sim = o;
    if (!build_kv_map(c, v, &sim->outputs, &sim->n_outputs))
        return;
    for (size_t i = 0; i < sim->n_outputs; i++) {
        const char *k = sim->outputs[i].key;
        bool ok = (*k >= 'a' && *k <= 'z') || *k == '_';
        for (const char *p = k; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        if (!ok)
            build_error_at(c, sim->outputs[i].pos, "invalid output name '%s'", k);
    }
}

static void sim_answer(bctx *c, const irp_node *v, void *o)
{
    build_string(c, v, &((irp_simulate *)o)->answer);
}

static const build_key sim_keys[] = {
    { "duration", sim_duration }, { "outcome", sim_outcome },
    { "success_rate", sim_success_rate }, { "outputs", sim_outputs }, { "answer", sim_answer },
};

static void st_simulate(bctx *c, const irp_node *v, void *o)
{
    irp_simulate *sim = &STEP(o)->sim;
    BUILD_MAP(c, v, sim_keys, sim, "simulate");
    if (sim->outcome && sim->has_success_rate)
        build_error(c, v, "give either outcome or success_rate, not both");
}

/* ---- actions -------------------------------------------------------- */

static bool set_action(bctx *c, irp_step *s, irp_action_kind k, const irp_node *v)
{
    if (s->action != IRP_ACT_NONE) {
        build_error(c, v, "a step has exactly one action: it already has '%s', so '%s' "
                    "cannot be added", action_keys[s->action], action_keys[k]);
        return false;
    }
    static const size_t sizes[] = { 0, sizeof(irp_run_action), sizeof(irp_manual_action),
                                    sizeof(irp_notify_action), sizeof(irp_evidence_action),
                                    sizeof(irp_wait_action) };
    s->act.any = irp_arena_alloc(c->a, sizes[k]);
    if (!s->act.any) {
        c->oom = true;
        return false;
    }
    s->action = k;
    s->action_pos = build_pos(v);
    return true;
}

static void st_run(bctx *c, const irp_node *v, void *o)
{
    irp_step *s = o;
    if (!set_action(c, s, IRP_ACT_RUN, v))
        return;
    irp_run_action *r = s->act.run;
    if (v->kind == IRP_NODE_SEQ) {
        if (v->count == 0)
            build_error(c, v, "run needs a command: the list is empty");
        build_tstr_list(c, v, &r->argv, &r->argc);
        return;
    }
    r->shell = true;
    if (build_tstr(c, v, &r->script) && r->script.len == 0)
        build_error(c, v, "run needs a command: the string is empty");
}

static void man_prompt(bctx *c, const irp_node *v, void *o)
{
    build_tstr(c, v, &((irp_manual_action *)o)->prompt);
}

static void man_choices(bctx *c, const irp_node *v, void *o)
{
    irp_manual_action *m = o;
    if (build_string_list(c, v, &m->choices, NULL, &m->n_choices) && m->n_choices == 0)
        build_error(c, v, "choices must not be empty");
}

static void man_assignee(bctx *c, const irp_node *v, void *o)
{
    build_string(c, v, &((irp_manual_action *)o)->assignee);
}

static const build_key manual_keys[] = {
    { "prompt", man_prompt }, { "choices", man_choices }, { "assignee", man_assignee },
};

static void st_manual(bctx *c, const irp_node *v, void *o)
{
    irp_step *s = o;
    if (!set_action(c, s, IRP_ACT_MANUAL, v))
        return;
    irp_manual_action *m = s->act.manual;
    if (v->kind == IRP_NODE_SCALAR) {
        build_tstr(c, v, &m->prompt);
    } else if (BUILD_MAP(c, v, manual_keys, m, "manual") && !m->prompt.s) {
        build_error(c, v, "manual needs a 'prompt'");
    }
    if (!m->n_choices) {
        static const char *const defaults[] = { "done", "failed", "skip" };
        m->choices = (const char **)defaults;
        m->n_choices = 3;
    }
}

#define NOTIFY(o) ((irp_notify_action *)(o))
static void nt_via(bctx *c, const irp_node *v, void *o)
{
    static const char *const names[] = { "webhook", "email", "file" };
    int k;
    if (build_enum(c, v, names, 3, "notify via", &k))
        NOTIFY(o)->via = (irp_notify_via)k;
}
static void nt_url(bctx *c, const irp_node *v, void *o) { build_tstr(c, v, &NOTIFY(o)->url); }
static void nt_headers(bctx *c, const irp_node *v, void *o)
{
    build_kv_map(c, v, &NOTIFY(o)->headers, &NOTIFY(o)->n_headers);
}
static void nt_ctype(bctx *c, const irp_node *v, void *o) { build_tstr(c, v, &NOTIFY(o)->content_type); }
static void nt_server(bctx *c, const irp_node *v, void *o) { build_tstr(c, v, &NOTIFY(o)->server); }
static void nt_from(bctx *c, const irp_node *v, void *o) { build_tstr(c, v, &NOTIFY(o)->from); }
static void nt_user(bctx *c, const irp_node *v, void *o) { build_tstr(c, v, &NOTIFY(o)->username); }
static void nt_pass(bctx *c, const irp_node *v, void *o) { build_tstr(c, v, &NOTIFY(o)->password); }
static void nt_subject(bctx *c, const irp_node *v, void *o) { build_tstr(c, v, &NOTIFY(o)->subject); }
static void nt_body(bctx *c, const irp_node *v, void *o) { build_tstr(c, v, &NOTIFY(o)->body); }
static void nt_ca(bctx *c, const irp_node *v, void *o) { build_tstr(c, v, &NOTIFY(o)->ca_file); }
static void nt_tls(bctx *c, const irp_node *v, void *o) { build_bool(c, v, &NOTIFY(o)->tls_verify); }
static void nt_to(bctx *c, const irp_node *v, void *o)
{
    irp_notify_action *n = o;
    if (v->kind == IRP_NODE_SEQ) {
        build_tstr_list(c, v, &n->to, &n->n_to);
        return;
    }
    n->to = irp_arena_alloc(c->a, sizeof *n->to);
    if (!n->to) {
        c->oom = true;
        return;
    }
    if (build_tstr(c, v, n->to))
        n->n_to = 1;
}
static void nt_starttls(bctx *c, const irp_node *v, void *o)
{
    static const char *const names[] = { "required", "none" };
    int k;
    if (build_enum(c, v, names, 2, "starttls", &k))
        NOTIFY(o)->starttls = (irp_starttls)k;
}

static const build_key notify_keys[] = {
    { "via", nt_via },         { "url", nt_url },       { "headers", nt_headers },
    { "content_type", nt_ctype }, { "server", nt_server }, { "from", nt_from },
    { "to", nt_to },           { "subject", nt_subject }, { "body", nt_body },
    { "username", nt_user },   { "password", nt_pass }, { "starttls", nt_starttls },
    { "tls_verify", nt_tls },  { "ca_file", nt_ca },
};

/* Which keys each `via` needs and accepts; the rest are errors, since a
 * key that does nothing is a misunderstanding about to bite. */
static void check_notify(bctx *c, const irp_node *v, const irp_notify_action *n)
{
    static const char *const webhook_only[] = { "url", "headers", "content_type" };
    static const char *const email_only[] = { "server", "from", "username", "password", "starttls" };
    static const char *const net_only[] = { "tls_verify", "ca_file" };
    static const char *const vias[] = { "webhook", "email", "file" };
    const char *via = vias[n->via];
    for (size_t i = 0; i < v->count; i++) {
        const irp_node *k = v->u.map.pairs[i].key;
        const char *name = k->u.scalar.s;
        bool bad = false;
        for (size_t j = 0; j < 3; j++)
            bad |= n->via != IRP_VIA_WEBHOOK && strcmp(name, webhook_only[j]) == 0;
        for (size_t j = 0; j < 5; j++)
            bad |= n->via != IRP_VIA_EMAIL && strcmp(name, email_only[j]) == 0;
        for (size_t j = 0; j < 2; j++)
            bad |= n->via == IRP_VIA_FILE && strcmp(name, net_only[j]) == 0;
        if (bad)
            build_error(c, k, "'%s' does not apply to notify via %s", name, via);
    }
    if (n->via == IRP_VIA_WEBHOOK && !n->url.s)
        build_error(c, v, "notify via webhook needs a 'url'");
    if (n->via == IRP_VIA_EMAIL) {
        if (!n->server.s)
            build_error(c, v, "notify via email needs a 'server' (smtp:// or smtps://)");
        if (!n->from.s)
            build_error(c, v, "notify via email needs 'from'");
        if (!irp_node_get(v, "to"))
            build_error(c, v, "notify via email needs 'to' (a list of addresses)");
    }
    if (n->via == IRP_VIA_FILE && (n->n_to != 1 || irp_node_get(v, "to")->kind != IRP_NODE_SCALAR))
        build_error(c, v, "notify via file needs 'to': the path of one file");
}

static void st_notify(bctx *c, const irp_node *v, void *o)
{
    irp_step *s = o;
    if (!set_action(c, s, IRP_ACT_NOTIFY, v))
        return;
    irp_notify_action *n = s->act.notify;
    n->tls_verify = true;
    if (!BUILD_MAP(c, v, notify_keys, n, "notify"))
        return;
    const irp_node *via = irp_node_get(v, "via");
    if (!via) {
        build_error(c, v, "notify needs 'via' (webhook, email or file)");
        return;
    }
    /* With an invalid `via` (already reported) the per-via checks would
     * only add false errors. */
    static const char *const vias[] = { "webhook", "email", "file" };
    bool known = false;
    for (size_t i = 0; i < 3 && via->kind == IRP_NODE_SCALAR; i++)
        known |= strcmp(via->u.scalar.s, vias[i]) == 0;
    if (known)
        check_notify(c, v, n);
}

/* Evidence names become file names under the run's evidence folder: one
 * path component, nothing that climbs out of it. */
static bool safe_name(const char *s)
{
    if (!*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strlen(s) > 255)
        return false;
    for (const char *p = s; *p; p++)
        if (*p == '/' || (unsigned char)*p < 0x20)
            return false;
    return true;
}

#define ITEM(o) ((irp_evidence_item *)(o))
static void ev_path(bctx *c, const irp_node *v, void *o) { build_tstr(c, v, &ITEM(o)->path); }
static void ev_run(bctx *c, const irp_node *v, void *o)
{
    if (v->kind != IRP_NODE_SEQ) {
        build_error(c, v, "evidence 'run' must be a list (argv), e.g. [ps, auxww]");
        return;
    }
    build_tstr_list(c, v, &ITEM(o)->argv, &ITEM(o)->argc);
}
static void ev_name(bctx *c, const irp_node *v, void *o)
{
    if (!build_string(c, v, &ITEM(o)->name))
        return;
    if (!safe_name(ITEM(o)->name)) {
        build_error(c, v, "evidence name '%s' must be a plain file name (no '/', not '..')",
                    ITEM(o)->name);
        ITEM(o)->name = NULL;
    }
}

static const build_key item_keys[] = {
    { "path", ev_path }, { "run", ev_run }, { "name", ev_name },
};

static void ev_collect(bctx *c, const irp_node *v, void *o)
{
    irp_evidence_action *e = o;
    if (v->kind != IRP_NODE_SEQ || v->count == 0) {
        build_error(c, v, "collect must be a non-empty list of {path: P} or {run: [argv], name: N}");
        return;
    }
    e->items = irp_arena_alloc(c->a, v->count * sizeof *e->items);
    if (!e->items) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < v->count; i++) {
        const irp_node *it = v->u.seq.items[i];
        irp_evidence_item *item = &e->items[e->n_items++];
        item->pos = build_pos(it);
        if (!BUILD_MAP(c, it, item_keys, item, "an evidence item"))
            continue;
        bool has_path = irp_node_get(it, "path"), has_run = irp_node_get(it, "run");
        if (has_path == has_run)
            build_error(c, it, has_path ? "an evidence item has either 'path' or 'run', not both"
                                        : "an evidence item needs 'path' or 'run'");
        else if (has_run && !irp_node_get(it, "name"))
            build_error(c, it, "evidence from 'run' needs a 'name' for the file it is saved as");
    }
}

static void ev_into(bctx *c, const irp_node *v, void *o)
{
    irp_evidence_action *e = o;
    if (!build_string(c, v, &e->into))
        return;
    if (!safe_name(e->into)) {
        build_error(c, v, "into '%s' must be a plain folder name under the run's evidence/",
                    e->into);
        e->into = NULL;
    }
}

static const build_key evidence_keys[] = { { "collect", ev_collect }, { "into", ev_into } };

static void st_evidence(bctx *c, const irp_node *v, void *o)
{
    irp_step *s = o;
    if (!set_action(c, s, IRP_ACT_EVIDENCE, v))
        return;
    if (BUILD_MAP(c, v, evidence_keys, s->act.evidence, "evidence") &&
        !irp_node_get(v, "collect"))
        build_error(c, v, "evidence needs 'collect'");
}

static void wait_until(bctx *c, const irp_node *v, void *o)
{
    irp_wait_action *w = o;
    if (!build_tstr(c, v, &w->until))
        return;
    int64_t ms;
    if (!memmem(v->u.scalar.s, v->len, "${{", 3) &&
        irp_time_parse(v->u.scalar.s, v->len, &ms) != 0)
        build_error(c, v, "invalid time '%s' (RFC 3339 with an offset, e.g. "
                    "2026-11-28T12:00:00Z)", v->u.scalar.s);
}

static const build_key wait_keys[] = { { "until", wait_until } };

static void st_wait(bctx *c, const irp_node *v, void *o)
{
    irp_step *s = o;
    if (!set_action(c, s, IRP_ACT_WAIT, v))
        return;
    s->act.wait->duration_ms = -1;
    if (v->kind == IRP_NODE_SCALAR) {
        build_duration(c, v, &s->act.wait->duration_ms);
    } else if (BUILD_MAP(c, v, wait_keys, s->act.wait, "wait") && !irp_node_get(v, "until")) {
        build_error(c, v, "wait needs a duration (wait: 30m) or {until: TIME}");
    }
}

/* ---- steps ---------------------------------------------------------- */

static const build_key step_keys[] = {
    { "id", st_id },           { "title", st_title },       { "phase", st_phase },
    { "needs", st_needs },     { "when", st_when },         { "for_each", st_for_each },
    { "confirm", st_confirm }, { "timeout", st_timeout },   { "retries", st_retries },
    { "retry_delay", st_retry_delay }, { "retry_backoff", st_retry_backoff },
    { "on_failure", st_on_failure }, { "idempotent", st_idempotent }, { "cwd", st_cwd },
    { "env", st_env },         { "simulate", st_simulate }, { "run", st_run },
    { "manual", st_manual },   { "notify", st_notify },     { "evidence", st_evidence },
    { "wait", st_wait },
};

const irp_step_rare irp_step_rare_none;

static void init_step(irp_step *s)
{
    s->timeout_ms = -1;
    s->retry_backoff = 1.0;
    s->rare = &irp_step_rare_none;
}

/* Room for one more step.  Steps are built while `steps` is still being
 * parsed (see irp_yaml_parse_stream), before their number is known, so
 * pb->steps is a mapping that mremap() grows without copying; new memory
 * comes zeroed, as arena memory would. */
#define STEPS_MAP_UNIT ((size_t)64 * 1024)
#define STEPS_HUGE_PAGE ((size_t)2 * 1024 * 1024)

static bool reserve_step(bctx *c)
{
    irp_playbook *pb = c->pb;
    if ((pb->n_steps + 1) * sizeof *pb->steps <= pb->steps_mapped)
        return true;
    size_t old = pb->steps_mapped;
    /* The first mapping is sized for as many steps as the file could
     * hold at 128 bytes a step: address space only, but for a large file
     * it is huge pages from the start, not 2 MiB of 4 KiB pages faulted
     * one by one before the first huge page. */
    size_t guess = pb->src_len / 128 * sizeof *pb->steps;
    size_t want = old ? old * 2 : guess > STEPS_MAP_UNIT ? guess : STEPS_MAP_UNIT;
    size_t unit = want >= STEPS_HUGE_PAGE ? STEPS_HUGE_PAGE : STEPS_MAP_UNIT;
    want = (want + unit - 1) & ~(unit - 1);
    void *p = old ? mremap(pb->steps, old, want, MREMAP_MAYMOVE)
                  : mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        c->oom = true;
        return false;
    }
    if (unit == STEPS_HUGE_PAGE)
        madvise(p, want, MADV_HUGEPAGE);
    pb->steps = p;
    pb->steps_mapped = want;
    return true;
}

void build_steps(bctx *c, const irp_node *seq, bool is_finally)
{
    const char *what = is_finally ? "finally" : "steps";
    if (seq->kind != IRP_NODE_SEQ) {
        build_error(c, seq, "%s must be a list of steps", what);
        return;
    }
    for (size_t i = 0; i < seq->count; i++)
        build_step(c, seq->u.seq.items[i], is_finally);
}

void build_step(bctx *c, const irp_node *v, bool is_finally)
{
    irp_playbook *pb = c->pb;
    if (!reserve_step(c))
        return;
    irp_step *s = &pb->steps[pb->n_steps];
    init_step(s);
    s->pos = build_pos(v);
    s->is_finally = is_finally;
    if (!BUILD_MAP(c, v, step_keys, s, "a step"))
        return;
    if (!s->id) {
        if (!irp_node_get(v, "id"))
            build_error(c, v, "step has no 'id'");
        return;
    }
    if (s->action == IRP_ACT_NONE)
        build_error(c, v, "step '%s' has no action: give it one of run, manual, notify, "
                    "evidence or wait", s->id);
    if (s->on_failure != IRP_FAIL_CONTINUE && is_finally)
        build_error(c, irp_node_get(v, "on_failure"),
                    "on_failure does not apply in finally (a finally step always continues)");
    if (!s->title)
        s->title = s->id;
    s->index = pb->n_steps++;
    if (!is_finally)
        pb->n_main = pb->n_steps;
}

/* ---- defaults ------------------------------------------------------- */

static const build_key default_keys[] = {
    { "timeout", st_timeout },   { "retries", st_retries },   { "retry_delay", st_retry_delay },
    { "retry_backoff", st_retry_backoff }, { "on_failure", st_on_failure },
    { "idempotent", st_idempotent }, { "cwd", st_cwd },     { "env", st_env },
    { "confirm", st_confirm },
};

static const build_key *find_key(const build_key *keys, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

void build_defaults(bctx *c, const irp_node *map)
{
    const size_t nd = sizeof default_keys / sizeof *default_keys;
    init_step(&c->defaults);
    if (map->kind != IRP_NODE_MAP) {
        build_error(c, map, "defaults must be a mapping");
        return;
    }
    for (size_t i = 0; i < map->count; i++) {
        const irp_pair *p = &map->u.map.pairs[i];
        const char *name = p->key->u.scalar.s;
        const build_key *k = find_key(default_keys, nd, name);
        if (k)
            k->set(c, p->value, &c->defaults);
        else if (find_key(step_keys, sizeof step_keys / sizeof *step_keys, name))
            build_error(c, p->key, "'%s' cannot be set in defaults (only timeout, retries, "
                        "retry_delay, retry_backoff, on_failure, idempotent, cwd, env and "
                        "confirm)", name);
        else
            build_map(c, &(irp_node){ .kind = IRP_NODE_MAP, .count = 1,
                                      .u.map = { (irp_pair *)p } },
                      default_keys, nd, &c->defaults, "defaults");
    }
}

static void merge_env(bctx *c, irp_step *s, const irp_step *d)
{
    if (!d->n_env)
        return;
    irp_kv *env = irp_arena_alloc(c->a, (s->n_env + d->n_env) * sizeof *env);
    if (!env) {
        c->oom = true;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < d->n_env; i++) {
        bool overridden = false;
        for (size_t j = 0; j < s->n_env; j++)
            overridden |= strcmp(s->env[j].key, d->env[i].key) == 0;
        if (!overridden)
            env[n++] = d->env[i];
    }
    if (s->n_env)
        memcpy(env + n, s->env, s->n_env * sizeof *env);
    s->env = env;
    s->n_env = n + s->n_env;
}

/* Defaults fill what a step leaves unsaid; SPEC: `timeout` only for run,
 * evidence and notify steps, `on_failure` never for finally; a notify
 * step without any timeout gets 30s. */
void build_apply_defaults(bctx *c)
{
    const irp_step *d = &c->defaults;
    for (size_t i = 0; i < c->pb->n_steps; i++) {
        irp_step *s = &c->pb->steps[i];
        unsigned unset = d->set & ~s->set;
        bool timed = s->action == IRP_ACT_RUN || s->action == IRP_ACT_EVIDENCE ||
                     s->action == IRP_ACT_NOTIFY;
        if ((unset & IRP_SET_TIMEOUT) && timed)
            s->timeout_ms = d->timeout_ms;
        if (unset & IRP_SET_RETRIES)
            s->retries = d->retries;
        if (unset & IRP_SET_RETRY_DELAY)
            s->retry_delay_ms = d->retry_delay_ms;
        if (unset & IRP_SET_RETRY_BACKOFF)
            s->retry_backoff = d->retry_backoff;
        if ((unset & IRP_SET_ON_FAILURE) && !s->is_finally)
            s->on_failure = d->on_failure;
        if (unset & IRP_SET_IDEMPOTENT)
            s->idempotent = d->idempotent;
        /* Only a value given makes a step its own rare fields. */
        irp_step_rare *r;
        if ((unset & IRP_SET_CWD) && d->rare->cwd.s && (r = rare_of(c, s)) != NULL)
            r->cwd = d->rare->cwd;
        if (unset & IRP_SET_CONFIRM) {
            s->confirm = d->confirm;
            if (d->rare->confirm_prompt.s && (r = rare_of(c, s)) != NULL)
                r->confirm_prompt = d->rare->confirm_prompt;
        }
        merge_env(c, s, d);
        if (s->action == IRP_ACT_NOTIFY && s->timeout_ms < 0)
            s->timeout_ms = 30000;
    }
}
