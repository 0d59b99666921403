/* --scenario FILE: a tabletop exercise's start and injects, checked
 * against the playbook before anything runs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "irp/error.h"
#include "irp/node.h"
#include "irp/scenario.h"
#include "irp/template.h"
#include "irp/timeutil.h"

typedef struct sctx {
    const irp_playbook *pb;
    irp_scenario *sc;
    const char *file;
    irp_diag_list *diags;
    int bad;
    int nomem;
} sctx;

#define ERR(c, n, ...) \
    ((c)->bad = 1, irp_diag_error((c)->diags, (c)->file, (n)->line, (n)->col, __VA_ARGS__))

static const char *const top_keys[] = { "scenario", "start", "injects" };
static const char *const inject_keys[] = { "at", "title", "message", "fail", "set" };

static void unknown_key(sctx *c, const irp_node *k, const char *const *keys, size_t n,
                        const char *where)
{
    const char *hint = irp_diag_suggest(k->u.scalar.s, keys, n);
    if (hint)
        ERR(c, k, "unknown key '%s' in %s (did you mean '%s'?)", k->u.scalar.s, where, hint);
    else
        ERR(c, k, "unknown key '%s' in %s", k->u.scalar.s, where);
}

/* A text value: a scalar, kept as written. */
static const char *text(sctx *c, const irp_node *v, const char *key)
{
    if (v->kind != IRP_NODE_SCALAR || irp_node_is_null(v)) {
        ERR(c, v, "'%s' takes a text, not %s", key,
            v->kind == IRP_NODE_SCALAR ? "an empty value" : irp_node_kind_name(v));
        return NULL;
    }
    return v->u.scalar.s;
}

static bool plain_id(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == strlen(s);
}

/* ---- fail: ID ---------------------------------------------------------- */

/* The instance ids a literal for_each list gives, as the engine makes
 * them (SPEC §1.3); false when some item is a template, known only at run
 * time. */
static bool literal_instances(const irp_step *st, bool *by_item)
{
    if (!st->for_each_is_list)
        return false;
    *by_item = true;
    for (size_t i = 0; i < st->rare->n_for_each_items; i++) {
        const irp_str *it = &st->rare->for_each_items[i];
        if (it->tpl && irp_template_has_exprs(it->tpl))
            return false;
        *by_item = *by_item && it->len >= 1 && it->len <= 64 && strlen(it->s) == it->len &&
                   strspn(it->s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789._:@-") == it->len;
        for (size_t k = 0; *by_item && k < i; k++)
            *by_item = strcmp(st->rare->for_each_items[k].s, it->s) != 0;
    }
    return true;
}

static void check_instance(sctx *c, const irp_node *v, const irp_step *st, const char *inner)
{
    bool by_item;
    if (!literal_instances(st, &by_item))
        return;
    size_t n = st->rare->n_for_each_items;
    const char **names = calloc(n ? n : 1, sizeof *names);
    char (*idx)[24] = calloc(n ? n : 1, sizeof *idx);
    if (!names || !idx) {
        c->nomem = 1;
        free(names);
        free(idx);
        return;
    }
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        snprintf(idx[i], sizeof idx[i], "%zu", i);
        names[i] = by_item ? st->rare->for_each_items[i].s : idx[i];
        found |= strcmp(names[i], inner) == 0;
    }
    if (!found) {
        const char *hint = irp_diag_suggest(inner, names, n);
        if (hint)
            ERR(c, v, "step '%s' has no instance '%s[%s]' (did you mean '%s[%s]'?)", st->id,
                st->id, inner, st->id, hint);
        else
            ERR(c, v, "step '%s' has no instance '%s[%s]' (its for_each has %zu item%s)",
                st->id, st->id, inner, n, n == 1 ? "" : "s");
    }
    free(names);
    free(idx);
}

static const char *fail_target(sctx *c, const irp_node *v)
{
    const char *s = text(c, v, "fail");
    if (!s)
        return NULL;
    const char *br = strchr(s, '[');
    size_t len = br ? (size_t)(br - s) : strlen(s);
    if (br && (br == s || s[strlen(s) - 1] != ']' || strlen(br) < 3)) {
        ERR(c, v, "'%s' is not a step id or an instance id such as step[item]", s);
        return NULL;
    }
    char *id = irp_arena_strndup(&c->sc->arena, s, len);
    if (!id) {
        c->nomem = 1;
        return NULL;
    }
    const irp_step *st = irp_playbook_step(c->pb, id);
    if (!st) {
        const char **ids = malloc((c->pb->n_steps ? c->pb->n_steps : 1) * sizeof *ids);
        for (size_t i = 0; ids && i < c->pb->n_steps; i++)
            ids[i] = c->pb->steps[i].id;
        const char *hint = ids ? irp_diag_suggest(id, ids, c->pb->n_steps) : NULL;
        if (hint)
            ERR(c, v, "the playbook has no step '%s' (did you mean '%s'?)", id, hint);
        else
            ERR(c, v, "the playbook has no step '%s'", id);
        free(ids);
        return NULL;
    }
    if (br && !st->has_for_each) {
        ERR(c, v, "step '%s' has no for_each, so it has no instance '%s'", id, s);
        return NULL;
    }
    if (br) {
        char *inner = irp_arena_strndup(&c->sc->arena, br + 1, strlen(br) - 2);
        if (!inner)
            c->nomem = 1;
        else
            check_instance(c, v, st, inner);
    }
    return s;
}

/* ---- set: {var: literal} ----------------------------------------------- */

static irp_value *scalar_string(const irp_node *v)
{
    return irp_value_new_string(v->u.scalar.s, v->len);
}

static bool is_bool_word(const irp_node *v, bool *b)
{
    if (v->kind != IRP_NODE_SCALAR || v->style != IRP_STYLE_PLAIN)
        return false;
    *b = strcmp(v->u.scalar.s, "true") == 0;
    return *b || strcmp(v->u.scalar.s, "false") == 0;
}

static irp_value *list_of_strings(sctx *c, const irp_node *v, const char *name)
{
    irp_value *list = irp_value_new_list();
    for (size_t i = 0; list && i < v->count; i++) {
        const irp_node *it = v->u.seq.items[i];
        if (it->kind != IRP_NODE_SCALAR) {
            ERR(c, it, "var '%s': list items are texts, not %s", name, irp_node_kind_name(it));
            irp_value_unref(list);
            return NULL;
        }
        if (irp_value_list_append(list, scalar_string(it))) {
            irp_value_unref(list);
            return NULL;
        }
    }
    return list;
}

/* A literal typed by how it is written: for a var whose type is known
 * only at run time. */
static irp_value *literal_as_written(sctx *c, const irp_node *v, const char *name)
{
    bool b;
    if (v->kind == IRP_NODE_SEQ)
        return list_of_strings(c, v, name);
    if (v->kind != IRP_NODE_SCALAR) {
        ERR(c, v, "var '%s' takes a single value or a list, not %s", name,
            irp_node_kind_name(v));
        return NULL;
    }
    if (is_bool_word(v, &b))
        return irp_value_new_bool(b);
    if (v->style == IRP_STYLE_PLAIN && v->len > 0) {
        char *end;
        double d = strtod(v->u.scalar.s, &end);
        if (*end == '\0' && isfinite(d) && strspn(v->u.scalar.s, "+-0123456789.eE") == v->len)
            return irp_value_new_number(d);
    }
    return scalar_string(v);
}

static irp_value *typed_literal(sctx *c, const irp_node *v, const irp_var *var)
{
    bool b;
    switch (var->kind) {
    case IRP_VAR_BOOL:
        if (is_bool_word(v, &b))
            return irp_value_new_bool(b);
        ERR(c, v, "var '%s' is a boolean: set it to true or false", var->name);
        return NULL;
    case IRP_VAR_LIST:
        if (v->kind == IRP_NODE_SEQ)
            return list_of_strings(c, v, var->name);
        ERR(c, v, "var '%s' is a list: set it to a list such as [a, b]", var->name);
        return NULL;
    case IRP_VAR_STR:
        if (var->str.tpl && irp_template_is_single_expr(var->str.tpl))
            return literal_as_written(c, v, var->name);
        if (v->kind == IRP_NODE_SCALAR)
            return scalar_string(v);
        ERR(c, v, "var '%s' is a text: set it to a text, not %s", var->name,
            irp_node_kind_name(v));
        return NULL;
    default:
        return literal_as_written(c, v, var->name);
    }
}

static void set_vars(sctx *c, irp_inject *in, const irp_node *v)
{
    if (v->kind != IRP_NODE_MAP || v->count == 0) {
        ERR(c, v, "'set' takes a mapping of declared vars to values, such as "
                  "{ exfiltration: true }");
        return;
    }
    in->set_names = irp_arena_alloc(&c->sc->arena, v->count * sizeof *in->set_names);
    in->set_values = calloc(v->count, sizeof *in->set_values);
    if (!in->set_names || !in->set_values) {
        c->nomem = 1;
        return;
    }
    const char **names = malloc((c->pb->n_vars ? c->pb->n_vars : 1) * sizeof *names);
    for (size_t i = 0; names && i < c->pb->n_vars; i++)
        names[i] = c->pb->vars[i].name;
    for (size_t i = 0; i < v->count; i++) {
        const irp_node *k = v->u.map.pairs[i].key, *x = v->u.map.pairs[i].value;
        const irp_var *var = irp_playbook_var(c->pb, k->u.scalar.s);
        if (!var) {
            const char *hint = names ? irp_diag_suggest(k->u.scalar.s, names, c->pb->n_vars)
                                     : NULL;
            if (hint)
                ERR(c, k, "the playbook declares no var '%s' (did you mean '%s'?)",
                    k->u.scalar.s, hint);
            else
                ERR(c, k, "the playbook declares no var '%s' (set changes only vars "
                          "declared under `vars`)", k->u.scalar.s);
            continue;
        }
        irp_value *val = typed_literal(c, x, var);
        if (!val)
            continue;
        in->set_names[in->n_set] = var->name;
        in->set_values[in->n_set++] = val;
    }
    free(names);
}

/* ---- one inject --------------------------------------------------------- */

static void inject(sctx *c, irp_inject *in, const irp_node *item)
{
    *in = (irp_inject){ .line = item->line, .col = item->col };
    if (item->kind != IRP_NODE_MAP) {
        ERR(c, item, "an inject is a mapping with at, title and one of message, fail or set");
        return;
    }
    bool has_at = false;
    const irp_node *actions[3] = { NULL };   /* message, fail, set */
    for (size_t i = 0; i < item->count; i++) {
        const irp_node *k = item->u.map.pairs[i].key, *v = item->u.map.pairs[i].value;
        const char *name = k->u.scalar.s;
        if (strcmp(name, "at") == 0) {
            has_at = true;
            const char *s = text(c, v, "at");
            int rc = s ? irp_duration_parse(s, v->len, &in->at_ms) : 0;
            if (s && rc)
                ERR(c, v, "'at' takes a duration after the start such as 30m or 1h30m, "
                          "not '%s'", s);
        } else if (strcmp(name, "title") == 0) {
            in->title = text(c, v, "title");
        } else if (strcmp(name, "message") == 0) {
            actions[0] = k;
            in->message = text(c, v, "message");
        } else if (strcmp(name, "fail") == 0) {
            actions[1] = k;
            in->fail = fail_target(c, v);
        } else if (strcmp(name, "set") == 0) {
            actions[2] = k;
            set_vars(c, in, v);
        } else {
            unknown_key(c, k, inject_keys, sizeof inject_keys / sizeof *inject_keys, "an inject");
        }
    }
    if (!has_at)
        ERR(c, item, "the inject has no 'at' (when it is delivered, e.g. at: 30m)");
    size_t nact = (actions[0] != NULL) + (actions[1] != NULL) + (actions[2] != NULL);
    if (nact == 0) {
        ERR(c, item, "the inject does nothing: give it a message, fail or set");
    } else if (nact > 1) {
        const irp_node *second = actions[2] ? actions[2] : actions[1];
        ERR(c, second, "an inject takes one of message, fail and set; split this one in two "
                       "with the same 'at'");
    }
}

/* ---- the file ----------------------------------------------------------- */

static void injects(sctx *c, const irp_node *v)
{
    if (v->kind != IRP_NODE_SEQ) {
        if (!irp_node_is_null(v))
            ERR(c, v, "'injects' takes a list of injects");
        return;
    }
    c->sc->injects = calloc(v->count ? v->count : 1, sizeof *c->sc->injects);
    if (!c->sc->injects) {
        c->nomem = 1;
        return;
    }
    for (size_t i = 0; i < v->count; i++) {
        irp_inject *in = &c->sc->injects[c->sc->n_injects++];
        inject(c, in, v->u.seq.items[i]);
        in->index = i;
    }
}

static void build(sctx *c, const irp_node *root)
{
    if (root->kind != IRP_NODE_MAP) {
        ERR(c, root, "a scenario file is a mapping with scenario, start and injects");
        return;
    }
    bool has_id = false;
    for (size_t i = 0; i < root->count; i++) {
        const irp_node *k = root->u.map.pairs[i].key, *v = root->u.map.pairs[i].value;
        const char *name = k->u.scalar.s;
        if (strcmp(name, "scenario") == 0) {
            has_id = true;
            c->sc->id = text(c, v, "scenario");
            if (c->sc->id && !plain_id(c->sc->id))
                ERR(c, v, "invalid scenario id '%s' (lowercase letters, digits, '-' and '_', "
                          "starting with a letter or digit)", c->sc->id);
        } else if (strcmp(name, "start") == 0) {
            const char *s = text(c, v, "start");
            if (s && irp_time_parse(s, v->len, &c->sc->start_ms))
                ERR(c, v, "'start' takes an RFC 3339 time with an offset, such as "
                          "2023-09-08T18:00:00Z, not '%s'", s);
            c->sc->has_start = s != NULL;
        } else if (strcmp(name, "injects") == 0) {
            injects(c, v);
        } else {
            unknown_key(c, k, top_keys, sizeof top_keys / sizeof *top_keys, "a scenario");
        }
    }
    if (!has_id)
        ERR(c, root, "the scenario has no 'scenario' (its id, e.g. scenario: icc-2023-tabletop)");
}

int irp_scenario_load(const irp_playbook *pb, const char *file, irp_diag_list *diags,
                      irp_scenario **out)
{
    *out = NULL;
    char *buf;
    size_t len;
    int rc = irp_file_read(file, IRP_YAML_MAX_BYTES, &buf, &len);
    if (rc) {
        irp_diag_error(diags, file, 0, 0, "cannot read the scenario file: %s", irp_strerror(rc));
        return rc;
    }
    irp_scenario *sc = calloc(1, sizeof *sc);
    if (!sc) {
        free(buf);
        return IRP_ENOMEM;
    }
    sc->file = file;
    irp_arena_init(&sc->arena, 0);
    irp_node *root = NULL;
    sctx c = { .pb = pb, .sc = sc, .file = file, .diags = diags };
    rc = irp_yaml_parse(&sc->arena, file, buf, len, NULL, diags, &root);
    if (rc == IRP_ENOMEM)
        c.nomem = 1;
    else if (rc)
        c.bad = 1;
    else
        build(&c, root);
    free(buf);
    rc = c.nomem ? IRP_ENOMEM : c.bad ? IRP_EINVAL : 0;
    if (rc) {
        irp_scenario_free(sc);
        return rc;
    }
    *out = sc;
    return 0;
}

void irp_scenario_free(irp_scenario *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_injects; i++) {
        for (size_t k = 0; k < s->injects[i].n_set; k++)
            irp_value_unref(s->injects[i].set_values[k]);
        free(s->injects[i].set_values);
    }
    free(s->injects);
    irp_arena_release(&s->arena);
    free(s);
}
