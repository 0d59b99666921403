/* Playbook loading: YAML nodes → model, through key tables. */
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "irp/error.h"
#include "irp/template.h"
#include "irp/timeutil.h"

/* ---- diagnostics ---------------------------------------------------- */

irp_pos build_pos(const irp_node *n)
{
    return n ? (irp_pos){ n->line, n->col } : (irp_pos){ 0, 0 };
}

static void vreport(bctx *c, irp_severity sev, irp_pos pos, const char *fmt, va_list ap)
{
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        return;
    irp_diag_add(c->diags, sev, c->file, pos.line, pos.col, "%s", msg);
    free(msg);
}

void build_error_at(bctx *c, irp_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, IRP_DIAG_ERROR, pos, fmt, ap);
    va_end(ap);
}

void build_warning_at(bctx *c, irp_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, IRP_DIAG_WARNING, pos, fmt, ap);
    va_end(ap);
}

void build_error(bctx *c, const irp_node *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, IRP_DIAG_ERROR, build_pos(n), fmt, ap);
    va_end(ap);
}

/* ---- key tables ----------------------------------------------------- */

bool build_map(bctx *c, const irp_node *map, const build_key *keys, size_t nkeys,
               void *obj, const char *what)
{
    if (!map || map->kind != IRP_NODE_MAP) {
        build_error(c, map, "%s must be a mapping, not a %s", what, irp_node_kind_name(map));
        return false;
    }
    for (size_t i = 0; i < map->count; i++) {
        const irp_node *k = map->u.map.pairs[i].key;
        const char *name = k->u.scalar.s;
        uint64_t h = ((uintptr_t)name ^ (uintptr_t)keys) * 0x9E3779B97F4A7C15ull;
        build_key_slot *slot = &c->key_cache[h >> 32 & (BUILD_KEY_CACHE_SLOTS - 1)];
        if (slot->name == name && slot->keys == keys) {
            slot->key->set(c, map->u.map.pairs[i].value, obj);
            continue;
        }
        size_t j = 0;
        while (j < nkeys && strcmp(keys[j].name, name) != 0)
            j++;
        if (j < nkeys) {
            *slot = (build_key_slot){ keys, name, &keys[j] };
            keys[j].set(c, map->u.map.pairs[i].value, obj);
            continue;
        }
        const char *cands[64];
        size_t n = nkeys < 64 ? nkeys : 64;
        for (size_t m = 0; m < n; m++)
            cands[m] = keys[m].name;
        const char *hint = irp_diag_suggest(name, cands, n);
        if (hint)
            build_error(c, k, "unknown key '%s' in %s (did you mean '%s'?)", name, what, hint);
        else
            build_error(c, k, "unknown key '%s' in %s", name, what);
    }
    return true;
}

/* ---- typed getters -------------------------------------------------- */

/* A local tag is what YAML makes of an unquoted value starting with '!'.
 * The bare '!' only says "not a special type", harmless outside `when`. */
static bool check_tag(bctx *c, const irp_node *n)
{
    const char *tag = irp_node_tag(n);
    if (!tag || (n->flags & IRP_NODE_TAG_REPORTED))
        return !tag || strcmp(tag, "!") == 0;
    ((irp_node *)n)->flags |= IRP_NODE_TAG_REPORTED;
    if (strcmp(tag, "!") == 0)
        return true;
    build_error(c, n, "unsupported tag '%s': quote the value if it starts with '!'", tag);
    return false;
}

/* Tags on nodes no setter looked at (mappings, lists, values of unknown
 * keys) are reported here, so none is silently ignored.  Only subtrees
 * the parser marked as holding a tag are walked: a generated playbook has
 * millions of nodes and usually no tag at all. */
static void report_tags(bctx *c, irp_node *n)
{
    if ((n->flags & IRP_NODE_VISITED) || !(n->flags & (IRP_NODE_HAS_TAG | IRP_NODE_TAGS_BELOW)))
        return;
    n->flags |= IRP_NODE_VISITED;
    check_tag(c, n);
    if (n->kind == IRP_NODE_SEQ)
        for (size_t i = 0; i < n->count; i++)
            report_tags(c, n->u.seq.items[i]);
    else if (n->kind == IRP_NODE_MAP)
        for (size_t i = 0; i < n->count; i++) {
            report_tags(c, n->u.map.pairs[i].key);
            report_tags(c, n->u.map.pairs[i].value);
        }
}

void build_report_tags(bctx *c, irp_node *root)
{
    report_tags(c, root);
}

static bool want_scalar(bctx *c, const irp_node *n, const char *what)
{
    if (!check_tag(c, n))
        return false;
    if (n->kind != IRP_NODE_SCALAR) {
        build_error(c, n, "expected %s, not a %s", what, irp_node_kind_name(n));
        return false;
    }
    return true;
}

bool build_string(bctx *c, const irp_node *n, const char **out)
{
    if (!want_scalar(c, n, "a string"))
        return false;
    *out = n->u.scalar.s;
    return true;
}

irp_pos build_str_pos(bctx *c, const irp_str *s, size_t off)
{
    return irp_str_pos(c->pb, s, off);
}

/* Whether s[0..len) holds `${{`. */
static bool has_template(const char *s, size_t len)
{
    const char *end = s + len;
    for (const char *p = s; end - p >= 3 && (p = memchr(p, '$', (size_t)(end - p - 2))); p++)
        if (p[1] == '{' && p[2] == '{')
            return true;
    return false;
}

static void parse_template(bctx *c, irp_str *s)
{
    build_tpl_slot *known = NULL;
    if (c->str_cache) {
        uint64_t h = (uintptr_t)s->s * 0x9E3779B97F4A7C15ull;
        known = &c->str_cache[h >> 32 & (BUILD_STR_CACHE_SLOTS - 1)];
        if (known->s == s->s && known->len == s->len) {
            s->tpl = known->tpl;
            return;
        }
    }
    /* Most strings hold no template: they need no parse and no copy. */
    if (!has_template(s->s, s->len)) {
        s->tpl = NULL;
        if (known)
            *known = (build_tpl_slot){ s->s, s->len, 0, NULL };
        return;
    }
    build_tpl_slot *slot = NULL;
    uint32_t hash = 2166136261u;   /* FNV-1a */
    if (c->tpl_cache) {
        for (size_t i = 0; i < s->len; i++)
            hash = (hash ^ (unsigned char)s->s[i]) * 16777619u;
        slot = &c->tpl_cache[hash & (BUILD_TPL_CACHE_SLOTS - 1)];
        if (slot->tpl && slot->len == s->len && slot->hash == hash &&
            (slot->s == s->s || memcmp(slot->s, s->s, s->len) == 0)) {
            s->tpl = slot->tpl;
            if (known)
                *known = (build_tpl_slot){ s->s, s->len, 0, s->tpl };
            return;
        }
    }
    irp_expr_error err = { 0 };
    /* The string lives in the playbook's arena, as long as the template. */
    int rc = irp_template_parse_borrowed(c->a, s->s, s->len, &s->tpl, &err);
    if (rc == IRP_ENOMEM) {
        c->oom = true;
    } else if (rc) {
        build_error_at(c, build_str_pos(c, s, err.offset), "%s", err.msg);
        s->tpl = NULL;
    } else {
        /* Only good parses are shared: a bad one is reported where each
         * copy stands. */
        if (slot)
            *slot = (build_tpl_slot){ s->s, s->len, hash, s->tpl };
        if (known)
            *known = (build_tpl_slot){ s->s, s->len, 0, s->tpl };
    }
}

bool build_tstr(bctx *c, const irp_node *n, irp_str *out)
{
    if (!want_scalar(c, n, "a string"))
        return false;
    out->s = n->u.scalar.s;
    out->len = n->len;
    out->pos = build_pos(n);
    out->style = n->style;
    parse_template(c, out);
    return true;
}

static const char *const yes_words[] = { "yes", "Yes", "YES", "on", "On", "ON", "y", "Y",
                                          "True", "TRUE" };
static const char *const no_words[] = { "no", "No", "NO", "off", "Off", "OFF", "n", "N",
                                         "False", "FALSE" };

bool build_is_yaml11_bool(const char *s)
{
    for (size_t i = 0; i < sizeof yes_words / sizeof *yes_words; i++)
        if (strcmp(s, yes_words[i]) == 0 || strcmp(s, no_words[i]) == 0)
            return true;
    return false;
}

bool build_bool(bctx *c, const irp_node *n, bool *out)
{
    if (!want_scalar(c, n, "true or false"))
        return false;
    const char *s = n->u.scalar.s;
    if (n->style == IRP_STYLE_PLAIN && strcmp(s, "true") == 0) {
        *out = true;
        return true;
    }
    if (n->style == IRP_STYLE_PLAIN && strcmp(s, "false") == 0) {
        *out = false;
        return true;
    }
    for (size_t i = 0; i < sizeof yes_words / sizeof *yes_words; i++) {
        if (strcmp(s, yes_words[i]) == 0) {
            build_error(c, n, "expected true or false, not '%s' (write true)", s);
            return false;
        }
        if (strcmp(s, no_words[i]) == 0) {
            build_error(c, n, "expected true or false, not '%s' (write false)", s);
            return false;
        }
    }
    build_error(c, n, "expected true or false, not '%s'", s);
    return false;
}

static build_memo_slot *memo_slot(bctx *c, const void *what, const irp_node *n)
{
    uint64_t h = ((uintptr_t)n->u.scalar.s ^ (uintptr_t)what) * 0x9E3779B97F4A7C15ull;
    return &c->memo[h >> 32 & (BUILD_MEMO_SLOTS - 1)];
}

bool build_memo_get(bctx *c, const void *what, const irp_node *n, int64_t v[2])
{
    const build_memo_slot *m = memo_slot(c, what, n);
    if (m->what != what || m->s != n->u.scalar.s || m->len != n->len)
        return false;
    v[0] = m->v[0];
    v[1] = m->v[1];
    return true;
}

void build_memo_put(bctx *c, const void *what, const irp_node *n, int64_t v0, int64_t v1)
{
    *memo_slot(c, what, n) = (build_memo_slot){ what, n->u.scalar.s, n->len, { v0, v1 } };
}

bool build_duration(bctx *c, const irp_node *n, int64_t *ms)
{
    static const char memo_what = 0;
    if (!want_scalar(c, n, "a duration"))
        return false;
    int64_t v[2];
    if (build_memo_get(c, &memo_what, n, v)) {
        *ms = v[0];
        return true;
    }
    int rc = irp_duration_parse(n->u.scalar.s, n->len, ms);
    if (rc == 0) {
        build_memo_put(c, &memo_what, n, *ms, 0);
        return true;
    }
    const char *s = n->u.scalar.s;
    size_t i = 0;
    while (isdigit((unsigned char)s[i]))
        i++;
    if (i > 0 && s[i] == '\0')
        build_error(c, n, "duration '%s' needs a unit (e.g. %ss or %sm)", s, s, s);
    else if (rc == IRP_ERANGE)
        build_error(c, n, "duration '%s' is too large", s);
    else
        build_error(c, n, "invalid duration '%s' (use e.g. 250ms, 30s, 5m, 2h, 1d, 1h30m)", s);
    return false;
}

bool build_uint(bctx *c, const irp_node *n, unsigned max, int *out)
{
    if (!want_scalar(c, n, "a whole number"))
        return false;
    const char *s = n->u.scalar.s;
    char *end;
    if (!isdigit((unsigned char)*s)) {
        build_error(c, n, "expected a whole number, not '%s'", s);
        return false;
    }
    unsigned long v = strtoul(s, &end, 10);
    if (*end || v > max) {
        build_error(c, n, *end ? "expected a whole number, not '%s'" : "'%s' is larger than %u",
                     s, max);
        return false;
    }
    *out = (int)v;
    return true;
}

bool build_number(bctx *c, const irp_node *n, double *out)
{
    if (!want_scalar(c, n, "a number"))
        return false;
    const char *s = n->u.scalar.s;
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v) || isspace((unsigned char)*s)) {
        build_error(c, n, "expected a number, not '%s'", s);
        return false;
    }
    *out = v;
    return true;
}

static bool match_id(const char *s, const char *extra)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                  (p > s && strchr(extra, *p));
        if (!ok)
            return false;
    }
    return true;
}

bool build_id(bctx *c, const irp_node *n, const char *what, const char **out)
{
    if (!build_string(c, n, out))
        return false;
    if (!match_id(*out, "_-")) {
        build_error(c, n, "invalid %s '%s': use lowercase letters, digits, '_' and '-', "
                    "starting with a letter or digit", what, *out);
        return false;
    }
    return true;
}

bool build_name(bctx *c, const irp_node *n, const char *what, const char **out)
{
    if (!build_string(c, n, out))
        return false;
    const char *s = *out;
    bool ok = (*s >= 'a' && *s <= 'z') || *s == '_';
    for (const char *p = s; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
    if (!ok) {
        build_error(c, n, "invalid %s name '%s': use lowercase letters, digits and '_', "
                    "not starting with a digit", what, s);
        return false;
    }
    return true;
}

static void *alloc_array(bctx *c, size_t n, size_t size)
{
    void *p = irp_arena_alloc(c->a, n * size);
    if (!p)
        c->oom = true;
    return p;
}

static bool want_seq(bctx *c, const irp_node *n, const char *what)
{
    if (!check_tag(c, n))
        return false;
    if (n->kind != IRP_NODE_SEQ) {
        build_error(c, n, "expected %s, not a %s", what, irp_node_kind_name(n));
        return false;
    }
    return true;
}

bool build_string_list(bctx *c, const irp_node *n, const char ***out, irp_pos **pos,
                       size_t *count)
{
    if (!want_seq(c, n, "a list"))
        return false;
    size_t m = n->count;
    const char **v = alloc_array(c, m, sizeof *v);
    irp_pos *p = pos ? alloc_array(c, m, sizeof *p) : NULL;
    if (!v || (pos && !p))
        return false;
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        const irp_node *it = n->u.seq.items[i];
        if (!build_string(c, it, &v[k]))
            continue;
        if (p)
            p[k] = build_pos(it);
        k++;
    }
    *out = v;
    if (pos)
        *pos = p;
    *count = k;
    return k == m;
}

bool build_tstr_list(bctx *c, const irp_node *n, irp_str **out, size_t *count)
{
    if (!want_seq(c, n, "a list"))
        return false;
    size_t m = n->count;
    irp_str *v = alloc_array(c, m, sizeof *v);
    if (!v)
        return false;
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        if (build_tstr(c, n->u.seq.items[i], &v[k]))
            k++;
    *out = v;
    *count = k;
    return k == m;
}

bool build_kv_map(bctx *c, const irp_node *n, irp_kv **out, size_t *count)
{
    if (!check_tag(c, n))
        return false;
    if (n->kind != IRP_NODE_MAP) {
        build_error(c, n, "expected a mapping, not a %s", irp_node_kind_name(n));
        return false;
    }
    size_t m = n->count;
    irp_kv *v = alloc_array(c, m, sizeof *v);
    if (!v)
        return false;
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        const irp_pair *p = &n->u.map.pairs[i];
        v[k].key = p->key->u.scalar.s;
        v[k].pos = build_pos(p->key);
        if (build_tstr(c, p->value, &v[k].value))
            k++;
    }
    *out = v;
    *count = k;
    return k == m;
}

bool build_enum(bctx *c, const irp_node *n, const char *const *names, size_t count,
                const char *what, int *out)
{
    const char *s;
    if (!build_string(c, n, &s))
        return false;
    int64_t v[2];
    if (build_memo_get(c, names, n, v)) {
        *out = (int)v[0];
        return true;
    }
    for (size_t i = 0; i < count; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (int)i;
            build_memo_put(c, names, n, (int64_t)i, 0);
            return true;
        }
    char list[512] = "";
    for (size_t i = 0; i < count; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, names[i], sizeof list - strlen(list) - 1);
    }
    const char *hint = irp_diag_suggest(s, names, count);
    if (hint)
        build_error(c, n, "invalid %s '%s' (did you mean '%s'?)", what, s, hint);
    else
        build_error(c, n, "invalid %s '%s': expected one of %s", what, s, list);
    return false;
}
