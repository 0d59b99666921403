/* YAML → located node tree, straight from libyaml's parser events. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "irp/error.h"
#include "irp/node.h"

/* An open collection: its node, where its children start on the pending
 * stack, and how many nodes its subtree expands to so far. */
typedef struct frame {
    irp_node *node;
    size_t start;
    char *anchor;          /* malloc'd copy, defined when the node ends */
} frame;

typedef struct anchor {
    const char *name;      /* arena copy; NULL = empty slot */
    irp_node *node;
    uint64_t weight;       /* nodes the anchored subtree expands to */
} anchor;

typedef struct builder {
    irp_arena *arena;
    const char *file;
    const char *buf;
    size_t len;
    irp_diag_list *diags;
    irp_yaml_limits lim;

    frame *frames;           /* open collections, at most max_depth */
    unsigned depth;

    irp_node **pending;      /* children of the open collections, in order */
    uint64_t *weights;       /* expanded size of each pending child */
    size_t npending, cappending;

    anchor *anchors;         /* open-addressing hash table */
    size_t nanchors, capanchors;

    uint64_t nodes;          /* total, counting alias expansion */
    unsigned documents;
    irp_node *root;
    uint64_t root_weight;
    bool failed;             /* a non-fatal error was reported; keep going */
} builder;

typedef enum { ENC_UTF8, ENC_UTF16LE, ENC_UTF16BE } encoding;

/* libyaml reads UTF-8 and, after a byte-order mark, UTF-16. */
static encoding detect_encoding(const char *buf, size_t len)
{
    const unsigned char *u = (const unsigned char *)buf;
    if (len >= 2 && u[0] == 0xFF && u[1] == 0xFE)
        return ENC_UTF16LE;
    if (len >= 2 && u[0] == 0xFE && u[1] == 0xFF)
        return ENC_UTF16BE;
    return ENC_UTF8;
}

static void utf16_pos(const unsigned char *u, size_t off, bool le, uint32_t *line, uint32_t *col)
{
    uint32_t l = 1, c = 1;
    for (size_t i = 2; i + 2 <= off; i += 2) {
        unsigned unit = le ? (unsigned)(u[i] | u[i + 1] << 8) : (unsigned)(u[i] << 8 | u[i + 1]);
        if (unit == '\n') {
            l++;
            c = 1;
        } else if (unit < 0xDC00 || unit > 0xDFFF) {
            c++;     /* a low surrogate ends a character already counted */
        }
    }
    *line = l;
    *col = c;
}

/* libyaml's reader errors carry only a byte offset; turn it into the
 * line and column (in characters) a person finds in an editor, which
 * neither counts a byte-order mark nor the bytes inside a character. */
static void offset_to_pos(const char *buf, size_t len, size_t off, uint32_t *line, uint32_t *col)
{
    const unsigned char *u = (const unsigned char *)buf;
    if (off > len)
        off = len;
    encoding enc = detect_encoding(buf, len);
    if (enc != ENC_UTF8) {
        utf16_pos(u, off, enc == ENC_UTF16LE, line, col);
        return;
    }
    size_t i = len >= 3 && u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF ? 3 : 0;
    uint32_t l = 1, c = 1;
    for (; i < off; i++) {
        if (u[i] == '\n') {
            l++;
            c = 1;
        } else if ((u[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* For a bad continuation byte libyaml gives the offset of that byte; the
 * character a person sees as wrong starts at the lead byte before it. */
static size_t lead_byte(const char *buf, size_t off)
{
    const unsigned char *u = (const unsigned char *)buf;
    size_t i = off;
    while (i > 0 && i + 4 > off && (u[i - 1] & 0xC0) == 0x80)
        i--;
    if (i > 0 && (u[i - 1] & 0xC0) == 0xC0)
        return i - 1;
    return off;
}

/* The byte at 1-based (line, col) of UTF-8 text, or 0. */
static char char_at(const char *buf, size_t len, uint32_t line, uint32_t col)
{
    size_t i = 0;
    for (uint32_t l = 1; l < line && i < len; i++)
        if (buf[i] == '\n')
            l++;
    for (uint32_t c = 1; c < col && i < len && buf[i] != '\n'; i++)
        if (((unsigned char)buf[i + 1] & 0xC0) != 0x80)
            c++;
    return i < len ? buf[i] : 0;
}

static void report_parser_error(builder *b, const yaml_parser_t *p)
{
    uint32_t line, col;
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->error == YAML_READER_ERROR) {
        size_t off = p->problem_offset;
        bool utf8 = strstr(problem, "UTF-8") != NULL;
        if (utf8 && strstr(problem, "trailing"))
            off = lead_byte(b->buf, off);
        offset_to_pos(b->buf, b->len, off, &line, &col);
        irp_diag_error(b->diags, b->file, line, col, utf8 ? "invalid UTF-8: %s" : "%s", problem);
        return;
    }
    line = (uint32_t)p->problem_mark.line + 1;
    col = (uint32_t)p->problem_mark.column + 1;
    const char *hint = "";
    if (strstr(problem, "cannot start any token") && detect_encoding(b->buf, b->len) == ENC_UTF8 &&
        char_at(b->buf, b->len, line, col) == '\t')
        hint = " (a tab: YAML indents with spaces only)";
    if (p->context)
        irp_diag_error(b->diags, b->file, line, col, "%s %s, which started at line %zu%s",
                       problem, p->context, p->context_mark.line + 1, hint);
    else
        irp_diag_error(b->diags, b->file, line, col, "%s%s", problem, hint);
}

static int push_pending(builder *b, irp_node *n, uint64_t weight)
{
    if (b->npending == b->cappending) {
        size_t cap = b->cappending ? b->cappending * 2 : 256;
        irp_node **p = realloc(b->pending, cap * sizeof *p);
        if (!p)
            return IRP_ENOMEM;
        b->pending = p;
        uint64_t *w = realloc(b->weights, cap * sizeof *w);
        if (!w)
            return IRP_ENOMEM;
        b->weights = w;
        b->cappending = cap;
    }
    b->pending[b->npending] = n;
    b->weights[b->npending] = weight;
    b->npending++;
    return 0;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static anchor *anchor_slot(builder *b, const char *name)
{
    size_t mask = b->capanchors - 1;
    for (size_t i = hash_str(name) & mask;; i = (i + 1) & mask)
        if (!b->anchors[i].name || strcmp(b->anchors[i].name, name) == 0)
            return &b->anchors[i];
}

static int anchor_grow(builder *b)
{
    size_t cap = b->capanchors ? b->capanchors * 2 : 64;
    anchor *old = b->anchors;
    size_t oldcap = b->capanchors;
    b->anchors = calloc(cap, sizeof *b->anchors);
    if (!b->anchors) {
        b->anchors = old;
        return IRP_ENOMEM;
    }
    b->capanchors = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].name)
            *anchor_slot(b, old[i].name) = old[i];
    free(old);
    return 0;
}

/* YAML lets a later anchor reuse a name; the latest definition wins. */
static int anchor_define(builder *b, const char *name, irp_node *n, uint64_t weight)
{
    if ((b->nanchors + 1) * 2 > b->capanchors) {
        int rc = anchor_grow(b);
        if (rc)
            return rc;
    }
    anchor *slot = anchor_slot(b, name);
    if (!slot->name) {
        slot->name = irp_arena_strdup(b->arena, name);
        if (!slot->name)
            return IRP_ENOMEM;
        b->nanchors++;
    }
    slot->node = n;
    slot->weight = weight;
    return 0;
}

static const anchor *anchor_find(builder *b, const char *name)
{
    if (!b->capanchors)
        return NULL;
    anchor *slot = anchor_slot(b, name);
    return slot->name ? slot : NULL;
}

/* Core-schema tags say nothing irp does not already know from the field
 * that holds the value, so they are accepted and dropped.  Everything
 * else -- language-specific tags above all -- is refused. */
static const char core_prefix[] = "tag:yaml.org,2002:";

/* The node kind a core tag names, or -1 when the tag is not a core one. */
static int core_tag_kind(const char *tag)
{
    static const char *const scalars[] = { "str", "int", "float", "bool", "null" };
    if (strncmp(tag, core_prefix, sizeof core_prefix - 1) != 0)
        return -1;
    const char *name = tag + sizeof core_prefix - 1;
    for (size_t i = 0; i < sizeof scalars / sizeof *scalars; i++)
        if (strcmp(name, scalars[i]) == 0)
            return IRP_NODE_SCALAR;
    if (strcmp(name, "seq") == 0)
        return IRP_NODE_SEQ;
    if (strcmp(name, "map") == 0)
        return IRP_NODE_MAP;
    return -1;
}

static int check_tag(builder *b, irp_node *n, const yaml_char_t *tag)
{
    if (!tag)
        return 0;
    const char *t = (const char *)tag;
    int kind = core_tag_kind(t);
    if (kind == (int)n->kind)
        return 0;
    if (kind >= 0) {
        irp_diag_error(b->diags, b->file, n->line, n->col, "tag '!!%s' does not fit a %s",
                       t + sizeof core_prefix - 1, irp_node_kind_name(n));
        return IRP_EPARSE;
    }
    if (t[0] == '!' && t[1] != '!') {
        /* A local tag -- or the bare '!' -- is most often an unquoted
         * value starting with '!'; the model reports it knowing which
         * field it is in, and accepts the bare '!' outside a `when`. */
        n->tag = irp_arena_strdup(b->arena, t);
        return n->tag ? 0 : IRP_ENOMEM;
    }
    if (strncmp(t, "tag:yaml.org,2002:", 18) == 0)
        irp_diag_error(b->diags, b->file, n->line, n->col, "unsupported tag '!!%s'", t + 18);
    else
        irp_diag_error(b->diags, b->file, n->line, n->col, "unsupported tag '%s'", t);
    return IRP_EPARSE;
}

static irp_node *new_node(builder *b, irp_node_kind kind, const yaml_mark_t *m)
{
    irp_node *n = irp_arena_alloc(b->arena, sizeof *n);
    if (!n)
        return NULL;
    n->kind = kind;
    n->line = (uint32_t)m->line + 1;
    n->col = (uint32_t)m->column + 1;
    return n;
}

static int count_node(builder *b, const irp_node *n, uint64_t weight)
{
    b->nodes += weight;
    if (b->nodes > b->lim.max_nodes) {
        irp_diag_error(b->diags, b->file, n->line, n->col,
                       "document expands to more than %llu nodes (alias expansion counted)",
                       (unsigned long long)b->lim.max_nodes);
        return IRP_ELIMIT;
    }
    return 0;
}

/* A finished node goes to its parent's pending children, or becomes the
 * root. */
static int attach(builder *b, irp_node *n, uint64_t weight)
{
    if (b->depth == 0) {
        b->root = n;
        b->root_weight = weight;
        return 0;
    }
    return push_pending(b, n, weight);
}

static int on_scalar(builder *b, const yaml_event_t *ev)
{
    irp_node *n = new_node(b, IRP_NODE_SCALAR, &ev->start_mark);
    if (!n)
        return IRP_ENOMEM;
    switch (ev->data.scalar.style) {
    case YAML_SINGLE_QUOTED_SCALAR_STYLE: n->style = IRP_STYLE_SINGLE; break;
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE: n->style = IRP_STYLE_DOUBLE; break;
    case YAML_LITERAL_SCALAR_STYLE: n->style = IRP_STYLE_LITERAL; break;
    case YAML_FOLDED_SCALAR_STYLE: n->style = IRP_STYLE_FOLDED; break;
    default: n->style = IRP_STYLE_PLAIN; break;
    }
    n->u.scalar.len = ev->data.scalar.length;
    n->u.scalar.s = irp_arena_strndup(b->arena, (const char *)ev->data.scalar.value,
                                      ev->data.scalar.length);
    if (!n->u.scalar.s)
        return IRP_ENOMEM;
    if (check_tag(b, n, ev->data.scalar.tag))
        b->failed = true;
    int rc = count_node(b, n, 1);
    if (!rc && ev->data.scalar.anchor)
        rc = anchor_define(b, (const char *)ev->data.scalar.anchor, n, 1);
    return rc ? rc : attach(b, n, 1);
}

static int on_start(builder *b, const yaml_event_t *ev, irp_node_kind kind)
{
    irp_node *n = new_node(b, kind, &ev->start_mark);
    if (!n)
        return IRP_ENOMEM;
    const yaml_char_t *tag;
    bool flow;
    if (kind == IRP_NODE_SEQ) {
        tag = ev->data.sequence_start.tag;
        flow = ev->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE;
    } else {
        tag = ev->data.mapping_start.tag;
        flow = ev->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
    }
    n->style = flow ? IRP_STYLE_FLOW : IRP_STYLE_BLOCK;
    if (check_tag(b, n, tag))
        b->failed = true;
    int rc;
    if (b->depth >= b->lim.max_depth) {
        irp_diag_error(b->diags, b->file, n->line, n->col,
                       "nesting deeper than %u levels", b->lim.max_depth);
        return IRP_ELIMIT;
    }
    rc = count_node(b, n, 1);
    if (rc)
        return rc;
    const yaml_char_t *anch = kind == IRP_NODE_SEQ ? ev->data.sequence_start.anchor
                                                   : ev->data.mapping_start.anchor;
    char *copy = NULL;
    if (anch && !(copy = strdup((const char *)anch)))
        return IRP_ENOMEM;
    b->frames[b->depth++] = (frame){ n, b->npending, copy };
    return 0;
}

static bool scalar_equal(const irp_node *a, const irp_node *c)
{
    return a->u.scalar.len == c->u.scalar.len &&
           memcmp(a->u.scalar.s, c->u.scalar.s, a->u.scalar.len) == 0;
}

static int key_cmp(const void *pa, const void *pb)
{
    const irp_pair *a = *(irp_pair *const *)pa, *c = *(irp_pair *const *)pb;
    size_t la = a->key->u.scalar.len, lc = c->key->u.scalar.len;
    int r = memcmp(a->key->u.scalar.s, c->key->u.scalar.s, la < lc ? la : lc);
    if (r)
        return r;
    if (la != lc)
        return la < lc ? -1 : 1;
    /* Equal keys: keep document order so the later one is reported. */
    return a < c ? -1 : a > c;
}

static void report_duplicate(builder *b, const irp_pair *first, const irp_pair *dup)
{
    irp_diag_error(b->diags, b->file, dup->key->line, dup->key->col,
                   "duplicate key '%s' (first defined at line %u)",
                   dup->key->u.scalar.s, first->key->line);
}

/* libyaml does not detect duplicate keys; a playbook where the second
 * `timeout:` silently wins is a bug waiting for an incident.  Small
 * mappings are checked pairwise, large ones by sorting. */
static int check_keys(builder *b, irp_node *map)
{
    irp_pair *p = map->u.map.pairs;
    size_t n = map->u.map.n;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const irp_node *k = p[i].key;
        if (k->kind != IRP_NODE_SCALAR) {
            irp_diag_error(b->diags, b->file, k->line, k->col, "a mapping key must be a scalar, not a %s",
                           irp_node_kind_name(k));
            rc = IRP_EPARSE;
        } else if (strlen(k->u.scalar.s) != k->u.scalar.len) {
            irp_diag_error(b->diags, b->file, k->line, k->col, "a key may not hold a NUL byte");
            rc = IRP_EPARSE;
        } else if (k->style == IRP_STYLE_PLAIN && strcmp(k->u.scalar.s, "<<") == 0) {
            irp_diag_error(b->diags, b->file, k->line, k->col,
                           "merge keys ('<<') are not supported; write the keys out");
            rc = IRP_EPARSE;
        }
    }
    if (rc)
        return rc;
    if (n <= 16) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (scalar_equal(p[i].key, p[j].key)) {
                    report_duplicate(b, &p[j], &p[i]);
                    rc = IRP_EPARSE;
                    break;
                }
        return rc;
    }
    irp_pair **sorted = malloc(n * sizeof *sorted);
    if (!sorted)
        return IRP_ENOMEM;
    for (size_t i = 0; i < n; i++)
        sorted[i] = &p[i];
    qsort(sorted, n, sizeof *sorted, key_cmp);
    for (size_t i = 1; i < n; i++)
        if (scalar_equal(sorted[i]->key, sorted[i - 1]->key)) {
            size_t first = i - 1;
            while (first > 0 && scalar_equal(sorted[first - 1]->key, sorted[i]->key))
                first--;
            report_duplicate(b, sorted[first], sorted[i]);
            rc = IRP_EPARSE;
        }
    free(sorted);
    return rc;
}

static int on_end(builder *b)
{
    frame f = b->frames[--b->depth];
    irp_node *n = f.node;
    size_t count = b->npending - f.start;
    uint64_t weight = 1;
    for (size_t i = f.start; i < b->npending; i++)
        weight += b->weights[i];
    if (n->kind == IRP_NODE_SEQ) {
        n->u.seq.n = count;
        n->u.seq.items = irp_arena_alloc(b->arena, count * sizeof *n->u.seq.items);
        if (!n->u.seq.items)
            return IRP_ENOMEM;
        if (count)   /* pending may still be NULL: nothing pushed yet */
            memcpy(n->u.seq.items, b->pending + f.start, count * sizeof *n->u.seq.items);
    } else {
        n->u.map.n = count / 2;
        n->u.map.pairs = irp_arena_alloc(b->arena, (count / 2) * sizeof *n->u.map.pairs);
        if (!n->u.map.pairs)
            return IRP_ENOMEM;
        for (size_t i = 0; i < count / 2; i++) {
            n->u.map.pairs[i].key = b->pending[f.start + 2 * i];
            n->u.map.pairs[i].value = b->pending[f.start + 2 * i + 1];
        }
    }
    b->npending = f.start;
    /* A key error is reported but does not stop the parse: other errors in
     * the file are still found in this pass. */
    int rc = n->kind == IRP_NODE_MAP ? check_keys(b, n) : 0;
    if (rc == IRP_EPARSE)
        b->failed = true;
    else if (rc)
        return rc;
    if (f.anchor) {
        rc = anchor_define(b, f.anchor, n, weight);
        free(f.anchor);
        if (rc)
            return rc;
    }
    return attach(b, n, weight);
}

static int on_alias(builder *b, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    const anchor *a = anchor_find(b, name);
    if (!a) {
        irp_diag_error(b->diags, b->file, (uint32_t)ev->start_mark.line + 1,
                       (uint32_t)ev->start_mark.column + 1,
                       "alias '*%s' names no anchor defined before it", name);
        b->failed = true;
        /* Stand in an empty scalar so the parse can go on. */
        irp_node *n = new_node(b, IRP_NODE_SCALAR, &ev->start_mark);
        if (!n)
            return IRP_ENOMEM;
        n->u.scalar.s = "";
        return attach(b, n, 1);
    }
    int rc = count_node(b, a->node, a->weight);
    if (rc)
        return rc;
    if (a->node->kind != IRP_NODE_SCALAR)
        return attach(b, a->node, a->weight);
    /* A scalar is cheap to copy, and the copy can say where the alias
     * stands (a duplicate key written as an alias is reported there). */
    irp_node *n = new_node(b, IRP_NODE_SCALAR, &ev->start_mark);
    if (!n)
        return IRP_ENOMEM;
    uint32_t line = n->line, col = n->col;
    *n = *a->node;
    n->line = line;
    n->col = col;
    return attach(b, n, 1);
}

static int on_event(builder *b, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++b->documents > 1) {
            irp_diag_error(b->diags, b->file, (uint32_t)ev->start_mark.line + 1,
                           (uint32_t)ev->start_mark.column + 1,
                           "a playbook is one YAML document; found a second one here");
            return IRP_EPARSE;
        }
        return 0;
    case YAML_SCALAR_EVENT:
        return on_scalar(b, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(b, ev, IRP_NODE_SEQ);
    case YAML_MAPPING_START_EVENT:
        return on_start(b, ev, IRP_NODE_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return on_end(b);
    case YAML_ALIAS_EVENT:
        return on_alias(b, ev);
    default:
        return 0;
    }
}

static void builder_release(builder *b)
{
    while (b->depth > 0)
        free(b->frames[--b->depth].anchor);
    free(b->frames);
    free(b->pending);
    free(b->weights);
    free(b->anchors);
}

int irp_yaml_parse(irp_arena *arena, const char *file, const char *buf, size_t len,
                   const irp_yaml_limits *lim, irp_diag_list *diags, irp_node **root)
{
    builder b = { .arena = arena, .file = file, .buf = buf, .len = len, .diags = diags };
    b.lim.max_bytes = lim && lim->max_bytes ? lim->max_bytes : IRP_YAML_MAX_BYTES;
    b.lim.max_depth = lim && lim->max_depth ? lim->max_depth : IRP_YAML_MAX_DEPTH;
    b.lim.max_nodes = lim && lim->max_nodes ? lim->max_nodes : IRP_YAML_MAX_NODES;
    *root = NULL;
    if (len > b.lim.max_bytes) {
        irp_diag_error(diags, file, 0, 0, "file is larger than the %zu MiB limit",
                       b.lim.max_bytes >> 20);
        return IRP_ELIMIT;
    }
    b.frames = malloc((b.lim.max_depth + 1) * sizeof *b.frames);
    if (!b.frames)
        return IRP_ENOMEM;

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        builder_release(&b);
        return IRP_ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    int rc = 0;
    for (bool done = false; !done && rc == 0;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            if (parser.error == YAML_MEMORY_ERROR) {
                rc = IRP_ENOMEM;
            } else {
                report_parser_error(&b, &parser);
                rc = IRP_EPARSE;
            }
            break;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        rc = on_event(&b, &ev);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    builder_release(&b);
    if (rc == 0 && !b.root) {
        irp_diag_error(diags, file, 1, 1, "empty document: a playbook is a YAML mapping");
        rc = IRP_EPARSE;
    }
    if (rc == 0 && detect_encoding(buf, len) != ENC_UTF8) {
        /* Positions in diagnostics and templates are computed on UTF-8
         * text; a UTF-16 file would have them all wrong. */
        irp_diag_error(diags, file, 1, 1, "the file is UTF-16; irp reads UTF-8 only");
        rc = IRP_EPARSE;
    }
    if (rc == 0 && b.failed)
        rc = IRP_EPARSE;
    if (rc == 0)
        *root = b.root;
    return rc;
}

int irp_file_read(const char *path, size_t max_bytes, char **bufp, size_t *lenp)
{
    *bufp = NULL;
    *lenp = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return irp_err_from_errno(errno);
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        int err = S_ISDIR(st.st_mode) ? IRP_EINVAL : irp_err_from_errno(errno);
        close(fd);
        return err;
    }
    /* Read in chunks rather than trusting st_size: pipes and /proc files
     * report 0, and a file may grow while it is read. */
    size_t cap = S_ISREG(st.st_mode) && (size_t)st.st_size < max_bytes ? (size_t)st.st_size + 1 : 65536;
    size_t len = 0;
    char *buf = malloc(cap + 1);
    int rc = buf ? 0 : IRP_ENOMEM;
    while (rc == 0) {
        if (len == cap) {
            if (cap > max_bytes) {
                rc = IRP_ELIMIT;
                break;
            }
            size_t ncap = cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                rc = IRP_ENOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = irp_err_from_errno(errno);
        } else if (r == 0) {
            break;
        } else {
            len += (size_t)r;
        }
    }
    close(fd);
    if (rc == 0 && len > max_bytes)
        rc = IRP_ELIMIT;
    if (rc) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *bufp = buf;
    *lenp = len;
    return 0;
}

irp_node *irp_node_get(const irp_node *map, const char *key)
{
    if (!map || map->kind != IRP_NODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->u.map.n; i++) {
        const irp_node *k = map->u.map.pairs[i].key;
        if (k->kind == IRP_NODE_SCALAR && strcmp(k->u.scalar.s, key) == 0)
            return map->u.map.pairs[i].value;
    }
    return NULL;
}

bool irp_node_is_null(const irp_node *n)
{
    if (!n || n->kind != IRP_NODE_SCALAR || n->style != IRP_STYLE_PLAIN)
        return false;
    const char *s = n->u.scalar.s;
    return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

const char *irp_node_kind_name(const irp_node *n)
{
    if (!n)
        return "nothing";
    switch (n->kind) {
    case IRP_NODE_SCALAR: return "scalar";
    case IRP_NODE_SEQ: return "list";
    default: return "mapping";
    }
}
