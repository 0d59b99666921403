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
        for (size_t i = 0; i < n->u.seq.n; i++) {
            const irp_node *it = n->u.seq.items[i];
            if (it->kind != IRP_NODE_SCALAR) {
                snprintf(err, errlen, "list items must be scalars, not a %s",
                         irp_node_kind_name(it));
                irp_value_unref(list);
                return IRP_ETYPE;
            }
            irp_value *s = irp_value_new_string(it->u.scalar.s, it->u.scalar.len);
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
    int rc = scalar_value(in->type, n->u.scalar.s, n->u.scalar.len,
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
