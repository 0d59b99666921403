/* The playbook's top level: identity, inputs, vars, deadlines; and the
 * load entry points that tie reading, parsing, building and validating. */
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "build.h"
#include "irp/error.h"
#include "irp/validate.h"

static const char *const tlp_names[] = { "clear", "green", "amber", "amber+strict", "red" };
static const char *const phase_names[] = { "", "preparation", "detection", "analysis",
                                           "containment", "eradication", "recovery",
                                           "post-incident" };
static const char *const type_names[] = { "string", "list", "number", "boolean", "time" };

const char *irp_tlp_name(irp_tlp t) { return tlp_names[t]; }
const char *irp_phase_name(irp_phase p) { return phase_names[p]; }
const char *irp_input_type_name(irp_input_type t) { return type_names[t]; }

const char *irp_action_name(irp_action_kind k)
{
    static const char *const names[] = { "none", "run", "manual", "notify", "evidence", "wait" };
    return names[k];
}

/* Columns inside a scalar: exact for one-line plain and quoted scalars
 * (escapes aside), the content's indentation for block scalars. */
irp_pos irp_str_pos(const irp_playbook *pb, const irp_str *s, size_t off)
{
    irp_pos p = s->pos;
    size_t lines = 0, col = 0;
    for (size_t i = 0; i < off && i < s->len; i++) {
        if (s->s[i] == '\n') {
            lines++;
            col = 0;
        } else if (((unsigned char)s->s[i] & 0xC0) != 0x80) {
            col++;
        }
    }
    if (s->style == IRP_STYLE_LITERAL || s->style == IRP_STYLE_FOLDED) {
        /* Block content starts on the next line, indented; find the
         * indentation in the source. */
        uint32_t line = p.line + 1 + (uint32_t)lines;
        const char *src = pb->src;
        const char *end = src + pb->src_len;
        for (uint32_t l = 1; l < line && src < end; src++)
            if (*src == '\n')
                l++;
        uint32_t indent = 0;
        while (src + indent < end && src[indent] == ' ')
            indent++;
        return (irp_pos){ line, indent + 1 + (uint32_t)col };
    }
    uint32_t quote = s->style == IRP_STYLE_SINGLE || s->style == IRP_STYLE_DOUBLE;
    if (lines == 0)
        return (irp_pos){ p.line, p.col + quote + (uint32_t)col };
    return (irp_pos){ p.line + (uint32_t)lines, (uint32_t)col + 1 };
}

/* ---- inputs --------------------------------------------------------- */

static void in_required(bctx *c, const irp_node *v, void *o)
{
    build_bool(c, v, &((irp_input_spec *)o)->required);
}

static void in_type(bctx *c, const irp_node *v, void *o)
{
    int t;
    if (build_enum(c, v, type_names, 5, "input type", &t))
        ((irp_input_spec *)o)->type = (irp_input_type)t;
}

static void in_pattern(bctx *c, const irp_node *v, void *o)
{
    irp_input_spec *in = o;
    if (!build_string(c, v, &in->pattern))
        return;
    in->pattern_pos = build_pos(v);
    regex_t re;
    int rc = regcomp(&re, in->pattern, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char msg[256];
        regerror(rc, &re, msg, sizeof msg);
        build_error(c, v, "pattern does not compile as a POSIX extended regex: %s", msg);
        in->pattern = NULL;
        return;
    }
    regfree(&re);
}

static void in_default(bctx *c, const irp_node *v, void *o) { ((irp_input_spec *)o)->def = v; }
static void in_example(bctx *c, const irp_node *v, void *o) { ((irp_input_spec *)o)->example = v; }

static void in_description(bctx *c, const irp_node *v, void *o)
{
    build_string(c, v, &((irp_input_spec *)o)->description);
}

static const build_key input_keys[] = {
    { "required", in_required }, { "type", in_type }, { "pattern", in_pattern },
    { "default", in_default },   { "example", in_example }, { "description", in_description },
};

static void top_inputs(bctx *c, const irp_node *v, void *o)
{
    irp_playbook *pb = o;
    if (v->kind != IRP_NODE_MAP) {
        build_error(c, v, "inputs must be a mapping of input names to their specs");
        return;
    }
    pb->inputs = irp_arena_alloc(c->a, v->count * sizeof *pb->inputs);
    if (!pb->inputs) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < v->count; i++) {
        const irp_pair *p = &v->u.map.pairs[i];
        irp_input_spec *in = &pb->inputs[pb->n_inputs];
        if (!build_name(c, p->key, "input", &in->name))
            continue;
        in->pos = build_pos(p->key);
        pb->n_inputs++;
        /* `name:` with nothing after it is a plain string input. */
        if (!irp_node_is_null(p->value))
            BUILD_MAP(c, p->value, input_keys, in, "an input");
    }
}

/* ---- vars ----------------------------------------------------------- */

static void build_var(bctx *c, const irp_node *v, irp_var *var)
{
    if (v->kind == IRP_NODE_SEQ) {
        var->kind = IRP_VAR_LIST;
        build_tstr_list(c, v, &var->items, &var->n_items);
    } else if (v->kind == IRP_NODE_MAP) {
        build_error(c, v, "a var must be a string, boolean, null or list, not a mapping");
    } else if (v->style == IRP_STYLE_PLAIN && !irp_node_tag(v) &&
               (strcmp(v->u.scalar.s, "true") == 0 || strcmp(v->u.scalar.s, "false") == 0)) {
        var->kind = IRP_VAR_BOOL;
        var->b = v->u.scalar.s[0] == 't';
    } else if (irp_node_is_null(v) && !irp_node_tag(v)) {
        var->kind = IRP_VAR_NULL;
    } else {
        var->kind = IRP_VAR_STR;
        build_tstr(c, v, &var->str);
    }
}

static void top_vars(bctx *c, const irp_node *v, void *o)
{
    irp_playbook *pb = o;
    if (v->kind != IRP_NODE_MAP) {
        build_error(c, v, "vars must be a mapping of names to values");
        return;
    }
    pb->vars = irp_arena_alloc(c->a, v->count * sizeof *pb->vars);
    if (!pb->vars) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < v->count; i++) {
        const irp_pair *p = &v->u.map.pairs[i];
        irp_var *var = &pb->vars[pb->n_vars];
        if (!build_name(c, p->key, "var", &var->name))
            continue;
        var->pos = build_pos(p->key);
        pb->n_vars++;
        build_var(c, p->value, var);
    }
}

/* ---- deadlines ------------------------------------------------------ */

static void dl_id(bctx *c, const irp_node *v, void *o)
{
    irp_deadline *d = o;
    if (build_id(c, v, "deadline id", &d->id))
        d->pos = build_pos(v);
}

static void dl_title(bctx *c, const irp_node *v, void *o)
{
    build_string(c, v, &((irp_deadline *)o)->title);
}

static void dl_within(bctx *c, const irp_node *v, void *o)
{
    build_duration(c, v, &((irp_deadline *)o)->within_ms);
}

static void dl_warn(bctx *c, const irp_node *v, void *o)
{
    build_duration(c, v, &((irp_deadline *)o)->warn_before_ms);
}

static void dl_from(bctx *c, const irp_node *v, void *o)
{
    irp_deadline *d = o;
    const char *s;
    if (!build_string(c, v, &s))
        return;
    d->from_pos = build_pos(v);
    if (strcmp(s, "detected") == 0) {
        d->from = IRP_FROM_DETECTED;
    } else if (strcmp(s, "start") == 0) {
        d->from = IRP_FROM_START;
    } else {
        d->from = IRP_FROM_STEP;
        d->from_step = s;
    }
}

static void dl_met_by(bctx *c, const irp_node *v, void *o)
{
    irp_deadline *d = o;
    if (build_string(c, v, &d->met_by))
        d->met_by_pos = build_pos(v);
}

static const build_key deadline_keys[] = {
    { "id", dl_id }, { "title", dl_title }, { "within", dl_within }, { "from", dl_from },
    { "met_by", dl_met_by }, { "warn_before", dl_warn },
};

static void top_deadlines(bctx *c, const irp_node *v, void *o)
{
    irp_playbook *pb = o;
    if (v->kind != IRP_NODE_SEQ) {
        build_error(c, v, "deadlines must be a list");
        return;
    }
    pb->deadlines = irp_arena_alloc(c->a, v->count * sizeof *pb->deadlines);
    if (!pb->deadlines) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < v->count; i++) {
        const irp_node *item = v->u.seq.items[i];
        irp_deadline *d = &pb->deadlines[pb->n_deadlines];
        d->within_ms = -1;
        d->pos = build_pos(item);
        if (!BUILD_MAP(c, item, deadline_keys, d, "a deadline"))
            continue;
        if (!irp_node_get(item, "id"))
            build_error(c, item, "deadline has no 'id'");
        if (!irp_node_get(item, "within"))
            build_error(c, item, "deadline '%s' has no 'within' (e.g. within: 24h)",
                        d->id ? d->id : "?");
        if (d->id)
            pb->n_deadlines++;
    }
}

/* ---- top level ------------------------------------------------------ */

static void top_irp(bctx *c, const irp_node *v, void *o)
{
    if (v->kind != IRP_NODE_SCALAR || strcmp(v->u.scalar.s, "1") != 0)
        build_error(c, v, "unsupported format version: this irp reads 'irp: 1'");
}

static void top_id(bctx *c, const irp_node *v, void *o)
{
    irp_playbook *pb = o;
    if (build_id(c, v, "playbook id", &pb->id))
        pb->id_pos = build_pos(v);
}

static void top_title(bctx *c, const irp_node *v, void *o)
{
    build_string(c, v, &((irp_playbook *)o)->title);
}

static void top_description(bctx *c, const irp_node *v, void *o)
{
    build_string(c, v, &((irp_playbook *)o)->description);
}

static void top_tlp(bctx *c, const irp_node *v, void *o)
{
    int t;
    if (build_enum(c, v, tlp_names, 5, "tlp", &t))
        ((irp_playbook *)o)->tlp = (irp_tlp)t;
}

/* `steps` and `defaults` are built before the other keys (see below). */
static void top_built_first(bctx *c, const irp_node *v, void *o) { }
static void top_finally(bctx *c, const irp_node *v, void *o) { build_steps(c, v, true); }

static const build_key top_keys[] = {
    { "irp", top_irp },         { "id", top_id },         { "title", top_title },
    { "description", top_description }, { "tlp", top_tlp }, { "inputs", top_inputs },
    { "vars", top_vars },       { "defaults", top_built_first }, { "deadlines", top_deadlines },
    { "steps", top_built_first },     { "finally", top_finally },
};

static void build_playbook(bctx *c, const irp_node *root)
{
    irp_playbook *pb = c->pb;
    pb->tlp = IRP_TLP_AMBER;
    if (root->kind != IRP_NODE_MAP) {
        build_error(c, root, "a playbook must be a mapping (irp: 1, id, steps, ...), not a %s",
                    irp_node_kind_name(root));
        return;
    }
    /* `steps` before `finally` whatever the order in the file, so indices
     * of main steps come first. */
    const irp_node *steps = irp_node_get(root, "steps");
    if (steps && !(steps->flags & IRP_NODE_STREAMED))   /* else built while parsed */
        build_steps(c, steps, false);
    const irp_node *defaults = irp_node_get(root, "defaults");
    if (defaults)
        build_defaults(c, defaults);
    BUILD_MAP(c, root, top_keys, pb, "the playbook");
    if (!irp_node_get(root, "irp"))
        build_error(c, root, "missing 'irp: 1' (the format version)");
    if (!irp_node_get(root, "id"))
        build_error(c, root, "missing 'id' (the playbook's identifier)");
    if (!steps)
        build_error(c, root, "missing 'steps'");
    if (!pb->title)
        pb->title = pb->id ? pb->id : "";
    build_apply_defaults(c);
}

static int build_streamed_step(void *ctx, irp_node *item, bool kept)
{
    bctx *c = ctx;
    build_step(c, item, false);
    /* Its nodes are about to go: report their tags now.  A kept item is
     * walked with the whole tree. */
    if (!kept)
        build_report_tags(c, item);
    return c->oom ? IRP_ENOMEM : 0;
}

/* Appends `from` to `to` in order, counting what `from` had no room to
 * keep as `to` would have. */
static void merge_diags(irp_diag_list *to, const irp_diag_list *from)
{
    size_t errors = 0, warnings = 0;
    for (size_t i = 0; i < from->n; i++) {
        const irp_diag *d = &from->items[i];
        errors += d->sev == IRP_DIAG_ERROR;
        warnings += d->sev == IRP_DIAG_WARNING;
        irp_diag_add(to, d->sev, d->file, d->line, d->col, "%s", d->msg);
    }
    to->errors += from->errors - errors;
    to->warnings += from->warnings - warnings;
    if (from->truncated)
        to->truncated = true;
}

/* Takes ownership of buf and fd, as irp_file_map() gives them. */
static int load_owned(const char *name, const char *buf, size_t len, size_t mapped, int fd,
                      irp_diag_list *diags, irp_playbook **out)
{
    *out = NULL;
    irp_playbook *pb = calloc(1, sizeof *pb);
    if (!pb) {
        if (fd >= 0)
            close(fd);
        irp_file_unmap(buf, mapped);
        return IRP_ENOMEM;
    }
    irp_arena_init(&pb->arena, 0);
    /* The model and its strings take about 1.6 bytes per byte of YAML:
     * reserving that at once saves the small blocks a large playbook
     * would grow through, whose pages are faulted in one at a time. */
    irp_arena_hint(&pb->arena, len * 2);
    pb->src = buf;
    pb->src_len = len;
    pb->src_mapped = mapped;
    /* Borrowed: diagnostics name the file after a failed load has freed
     * the playbook. */
    pb->file = name;
    /* Steps are built as the parser completes each one (their nodes are
     * then dropped), with diagnostics set aside: they count only if the
     * whole document parses, as when building follows parsing. */
    irp_diag_list streamed = IRP_DIAG_LIST_INIT;
    streamed.max = diags->max;
    bctx c = { .pb = pb, .a = &pb->arena, .diags = &streamed, .file = pb->file };
    /* Without the cache every template is parsed apart: slower, and
     * nothing else changes. */
    c.tpl_cache = calloc(BUILD_TPL_CACHE_SLOTS, sizeof *c.tpl_cache);
    c.str_cache = calloc(BUILD_STR_CACHE_SLOTS, sizeof *c.str_cache);
    irp_yaml_stream stream = { "steps", build_streamed_step, &c };
    irp_node *root = NULL;
    int rc = irp_yaml_parse_stream(&pb->arena, pb->file, pb->src, len, fd, NULL, &stream,
                                   diags, &root);
    if (fd >= 0)
        close(fd);
    if (rc) {
        free(c.tpl_cache);
        free(c.str_cache);
        irp_diag_list_release(&streamed);
        irp_playbook_free(pb);
        return rc == IRP_ELIMIT ? IRP_EPARSE : rc;
    }
    pb->root = root;
    size_t errors = diags->errors;
    c.diags = diags;
    merge_diags(diags, &streamed);
    irp_diag_list_release(&streamed);
    build_playbook(&c, root);
    build_report_tags(&c, root);
    free(c.tpl_cache);
    free(c.str_cache);
    if (c.oom) {
        irp_playbook_free(pb);
        return IRP_ENOMEM;
    }
    irp_validate(pb, diags);
    *out = pb;
    return diags->errors > errors ? IRP_EPARSE : 0;
}

int irp_playbook_load_mem(const char *name, const char *buf, size_t len,
                          irp_diag_list *diags, irp_playbook **out)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return IRP_ENOMEM;
    memcpy(copy, buf, len);
    copy[len] = '\0';
    return load_owned(name, copy, len, 0, -1, diags, out);
}

int irp_playbook_load(const char *path, irp_diag_list *diags, irp_playbook **out)
{
    const char *buf;
    size_t len, mapped;
    int fd;
    *out = NULL;
    int rc = irp_file_map(path, IRP_YAML_MAX_BYTES, &buf, &len, &mapped, &fd);
    if (rc == IRP_ELIMIT) {
        irp_diag_error(diags, path, 0, 0, "file is larger than the %zu MiB limit",
                       IRP_YAML_MAX_BYTES >> 20);
        return rc;
    }
    if (rc) {
        irp_diag_error(diags, path, 0, 0, "cannot read: %s", irp_strerror(rc));
        return rc;
    }
    return load_owned(path, buf, len, mapped, fd, diags, out);
}

void irp_playbook_free(irp_playbook *pb)
{
    if (!pb)
        return;
    irp_arena_release(&pb->arena);
    if (pb->steps_mapped)
        munmap(pb->steps, pb->steps_mapped);
    irp_file_unmap(pb->src, pb->src_mapped);
    free(pb);
}

const irp_step *irp_playbook_step(const irp_playbook *pb, const char *id)
{
    size_t i = irp_playbook_step_index(pb, id);
    return i == (size_t)-1 ? NULL : &pb->steps[i];
}

const irp_input_spec *irp_playbook_input(const irp_playbook *pb, const char *name)
{
    /* Every inputs.X of every template comes here: most names differ
     * from the one sought in their first byte. */
    for (size_t i = 0; i < pb->n_inputs; i++)
        if (pb->inputs[i].name[0] == name[0] && strcmp(pb->inputs[i].name, name) == 0)
            return &pb->inputs[i];
    return NULL;
}

const irp_var *irp_playbook_var(const irp_playbook *pb, const char *name)
{
    for (size_t i = 0; i < pb->n_vars; i++)
        if (pb->vars[i].name[0] == name[0] && strcmp(pb->vars[i].name, name) == 0)
            return &pb->vars[i];
    return NULL;
}
