/* Input values from YAML nodes and from the command line. */
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irp/error.h"
#include "irp/inputs.h"
#include "irp/timeutil.h"
#include "irp/error.h"

static int scalar_value(irp_input_type type, const char *s, size_t len, bool plain,
                        irp_value **out, char *err, size_t errlen)
{
    switch (type) {
    case IRP_TYPE_NUMBER: {
        char *end;
        double d = strtod(s, &end);
        if (!len || isspace((unsigned char)s[0]) || (size_t)(end - s) != len || !isfinite(d)) {
            snprintf(err, errlen, "expected a number, not '%s'", s);
            return IRP_ETYPE;
        }
        *out = irp_value_new_number(d);
        break;
    }
    case IRP_TYPE_BOOLEAN:
        if (!plain || (strcmp(s, "true") != 0 && strcmp(s, "false") != 0)) {
            snprintf(err, errlen, "expected true or false, not '%s'", s);
            return IRP_ETYPE;
        }
        *out = irp_value_new_bool(s[0] == 't');
        break;
    case IRP_TYPE_TIME: {
        int64_t ms;
        if (irp_time_parse(s, len, &ms) != 0) {
            snprintf(err, errlen, "expected a time in RFC 3339 with an offset "
                     "(e.g. 2026-11-28T12:00:00Z), not '%s'", s);
            return IRP_ETYPE;
        }
        char buf[IRP_TIME_BUFSZ];
        irp_time_format(ms, buf);
        *out = irp_value_new_cstring(buf);
        break;
    }
    default:
        *out = irp_value_new_string(s, len);
        break;
    }
    return *out ? 0 : IRP_ENOMEM;
}

static int list_of(irp_value *item, irp_value **out)
{
    irp_value *list = irp_value_new_list();
    if (!list) {
        irp_value_unref(item);
        return IRP_ENOMEM;
    }
    int rc = irp_value_list_append(list, item);
    if (rc) {
        irp_value_unref(list);
        return rc;
    }
    *out = list;
    return 0;
}

int irp_input_from_node(const irp_input_spec *in, const irp_node *n, irp_value **out,
                        char *err, size_t errlen)
{
    *out = NULL;
    if (in->type == IRP_TYPE_LIST && n->kind == IRP_NODE_SEQ) {
        irp_value *list = irp_value_new_list();
        if (!list)
            return IRP_ENOMEM;
        for (size_t i = 0; i < n->count; i++) {
            const irp_node *it = n->u.seq.items[i];
            if (it->kind != IRP_NODE_SCALAR) {
                snprintf(err, errlen, "list items must be scalars, not a %s",
                         irp_node_kind_name(it));
                irp_value_unref(list);
                return IRP_ETYPE;
            }
            irp_value *s = irp_value_new_string(it->u.scalar.s, it->len);
            int rc = s ? irp_value_list_append(list, s) : IRP_ENOMEM;
            if (rc) {
                irp_value_unref(list);
                return rc;
            }
        }
        *out = list;
        return 0;
    }
    if (n->kind != IRP_NODE_SCALAR) {
        snprintf(err, errlen, "expected a %s, not a %s", irp_input_type_name(in->type),
                 irp_node_kind_name(n));
        return IRP_ETYPE;
    }
    irp_value *v;
    int rc = scalar_value(in->type, n->u.scalar.s, n->len,
                          n->style == IRP_STYLE_PLAIN, &v, err, errlen);
    if (rc)
        return rc;
    if (in->type == IRP_TYPE_LIST)
        return list_of(v, out);
    *out = v;
    return 0;
}

/* `[a, b, "c d"]`: split a flow sequence the way a person typing it on a
 * command line expects; quotes keep commas. */
static int parse_flow_list(const char *text, irp_value **out, char *err, size_t errlen)
{
    size_t len = strlen(text);
    irp_value *list = irp_value_new_list();
    if (!list)
        return IRP_ENOMEM;
    const char *p = text + 1, *end = text + len - 1;
    while (p < end) {
        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p == end)
            break;
        const char *start = p, *stop;
        if (*p == '"' || *p == '\'') {
            char q = *p++;
            start = p;
            while (p < end && *p != q)
                p++;
            if (p == end) {
                snprintf(err, errlen, "unterminated quote in list '%s'", text);
                irp_value_unref(list);
                return IRP_EINVAL;
            }
            stop = p++;
            while (p < end && isspace((unsigned char)*p))
                p++;
        } else {
            while (p < end && *p != ',')
                p++;
            stop = p;
            while (stop > start && isspace((unsigned char)stop[-1]))
                stop--;
        }
        if (p < end && *p != ',') {
            snprintf(err, errlen, "expected ',' in list '%s'", text);
            irp_value_unref(list);
            return IRP_EINVAL;
        }
        if (p < end)
            p++;
        irp_value *s = irp_value_new_string(start, (size_t)(stop - start));
        int rc = s ? irp_value_list_append(list, s) : IRP_ENOMEM;
        if (rc) {
            irp_value_unref(list);
            return rc;
        }
    }
    *out = list;
    return 0;
}

int irp_input_from_text(const irp_input_spec *in, const char *text, irp_value **out,
                        char *err, size_t errlen)
{
    *out = NULL;
    size_t len = strlen(text);
    if (in->type == IRP_TYPE_LIST) {
        if (len >= 2 && text[0] == '[' && text[len - 1] == ']')
            return parse_flow_list(text, out, err, errlen);
        irp_value *v = irp_value_new_string(text, len);
        return v ? list_of(v, out) : IRP_ENOMEM;
    }
    return scalar_value(in->type, text, len, true, out, err, errlen);
}

static int match_one(const regex_t *re, const irp_input_spec *in, const irp_value *v,
                     char *err, size_t errlen)
{
    size_t len;
    const char *s = irp_value_string(v, &len);
    regmatch_t m;
    /* The whole value must match, not a part of it; NUL bytes never do. */
    if (strlen(s) == len && regexec(re, s, 1, &m, 0) == 0 && m.rm_so == 0 &&
        (size_t)m.rm_eo == len)
        return 0;
    snprintf(err, errlen, "'%s' does not match the pattern %s of input '%s'", s, in->pattern,
             in->name);
    return IRP_EINVAL;
}

int irp_input_check_pattern(const irp_input_spec *in, const irp_value *v, char *err,
                            size_t errlen)
{
    if (!in->pattern)
        return 0;
    regex_t re;
    if (regcomp(&re, in->pattern, REG_EXTENDED) != 0) {
        snprintf(err, errlen, "pattern of input '%s' does not compile", in->name);
        return IRP_EINVAL;
    }
    int rc = 0;
    if (irp_value_type_of(v) == IRP_VALUE_LIST) {
        for (size_t i = 0; i < irp_value_list_len(v) && !rc; i++) {
            const irp_value *it = irp_value_list_at(v, i);
            if (irp_value_type_of(it) == IRP_VALUE_STRING)
                rc = match_one(&re, in, it, err, errlen);
        }
    } else if (irp_value_type_of(v) == IRP_VALUE_STRING) {
        rc = match_one(&re, in, v, err, errlen);
    }
    regfree(&re);
    return rc;
}

/* ---- resolution ----------------------------------------------------- */

static const char *const CMDLINE = "command line";

static int from_args(const irp_playbook *pb, char *const *args, size_t nargs,
                     irp_value **vals, irp_diag_list *diags)
{
    int bad = 0;
    for (size_t i = 0; i < nargs; i++) {
        const char *eq = strchr(args[i], '=');
        if (!eq || eq == args[i]) {
            irp_diag_error(diags, CMDLINE, 0, 0, "-i %s: write -i KEY=VALUE", args[i]);
            bad = 1;
            continue;
        }
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(eq - args[i]), args[i]);
        const irp_input_spec *in = irp_playbook_input(pb, name);
        if (!in) {
            irp_diag_error(diags, CMDLINE, 0, 0, "-i %s: the playbook declares no input '%s'",
                           args[i], name);
            bad = 1;
            continue;
        }
        size_t k = (size_t)(in - pb->inputs);
        char err[512];
        irp_value *v = NULL;
        if (irp_input_from_text(in, eq + 1, &v, err, sizeof err)) {
            irp_diag_error(diags, CMDLINE, 0, 0, "-i %s: %s", name, err);
            bad = 1;
            continue;
        }
        /* A list given item by item: -i hosts=a -i hosts=b. */
        if (vals[k] && in->type == IRP_TYPE_LIST && eq[1] != '[') {
            irp_value_list_append(vals[k], irp_value_ref(irp_value_list_at(v, 0)));
            irp_value_unref(v);
        } else {
            irp_value_unref(vals[k]);
            vals[k] = v;
        }
    }
    return bad;
}

static int from_file(const irp_playbook *pb, const char *file, irp_value **vals,
                     irp_diag_list *diags)
{
    char *buf;
    size_t len;
    int rc = irp_file_read(file, IRP_YAML_MAX_BYTES, &buf, &len);
    if (rc) {
        irp_diag_error(diags, file, 0, 0, "cannot read: %s", irp_strerror(rc));
        return 1;
    }
    irp_arena a;
    irp_arena_init(&a, 0);
    irp_node *root = NULL;
    int bad = 0;
    if (irp_yaml_parse(&a, file, buf, len, NULL, diags, &root) != 0) {
        bad = 1;
    } else if (root->kind != IRP_NODE_MAP) {
        irp_diag_error(diags, file, root->line, root->col, "inputs must be a mapping of names to values");
        bad = 1;
    }
    for (size_t i = 0; !bad && i < root->count; i++) {
        const irp_pair *p = &root->u.map.pairs[i];
        const irp_input_spec *in = irp_playbook_input(pb, p->key->u.scalar.s);
        char err[512];
        irp_value *v = NULL;
        if (!in) {
            irp_diag_error(diags, file, p->key->line, p->key->col,
                           "the playbook declares no input '%s'", p->key->u.scalar.s);
            bad = 1;
        } else if (irp_input_from_node(in, p->value, &v, err, sizeof err)) {
            irp_diag_error(diags, file, p->value->line, p->value->col, "input '%s': %s",
                           in->name, err);
            bad = 1;
        } else {
            size_t k = (size_t)(in - pb->inputs);
            irp_value_unref(vals[k]);
            vals[k] = v;
        }
    }
    irp_arena_release(&a);
    free(buf);
    return bad;
}

int irp_inputs_resolve(const irp_playbook *pb, char *const *args, size_t nargs,
                       const char *inputs_file, bool use_example, irp_diag_list *diags,
                       irp_value **out)
{
    *out = NULL;
    irp_value **vals = calloc(pb->n_inputs ? pb->n_inputs : 1, sizeof *vals);
    irp_value *map = irp_value_new_map();
    if (!vals || !map) {
        free(vals);
        irp_value_unref(map);
        return IRP_ENOMEM;
    }
    int bad = inputs_file ? from_file(pb, inputs_file, vals, diags) : 0;
    /* -i overrides --inputs: applied second, replacing. */
    irp_value **over = calloc(pb->n_inputs ? pb->n_inputs : 1, sizeof *over);
    bad |= over ? from_args(pb, args, nargs, over, diags) : 1;
    for (size_t k = 0; over && k < pb->n_inputs; k++)
        if (over[k]) {
            irp_value_unref(vals[k]);
            vals[k] = over[k];
        }
    free(over);
    for (size_t k = 0; k < pb->n_inputs; k++) {
        const irp_input_spec *in = &pb->inputs[k];
        const irp_node *fallback = in->def ? in->def : use_example ? in->example : NULL;
        char err[512];
        if (!vals[k] && fallback)
            irp_input_from_node(in, fallback, &vals[k], err, sizeof err);
        if (!vals[k] && in->required) {
            irp_diag_error(diags, CMDLINE, 0, 0, "input '%s' is required: give -i %s=VALUE",
                           in->name, in->name);
            bad = 1;
        }
        if (vals[k] && irp_input_check_pattern(in, vals[k], err, sizeof err)) {
            irp_diag_error(diags, CMDLINE, 0, 0, "%s", err);
            bad = 1;
        }
        irp_value_map_set(map, in->name, strlen(in->name),
                          vals[k] ? vals[k] : irp_value_new_null());
    }
    free(vals);
    if (bad) {
        irp_value_unref(map);
        return IRP_EINVAL;
    }
    *out = map;
    return 0;
}
