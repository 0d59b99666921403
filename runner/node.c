/* YAML → located node tree, straight from libyaml's parser events. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
    bool streamed;         /* its items go to the stream (irp_yaml_stream) */
} frame;

typedef struct anchor {
    const char *name;      /* arena copy; NULL = empty slot */
    irp_node *node;
    uint64_t weight;       /* nodes the anchored subtree expands to */
} anchor;

/* Short scalars repeat: every step spells `id`, `title`, `run`, and a
 * generated playbook the same values (`true`, `10m`, one template) tens
 * of thousands of times.  One arena copy serves all of them.  The table
 * is a cache, not a set: a slot holds the latest string hashed to it, so
 * it stays small and costs one probe, and the hot strings stay in it.
 * A slot holds the string itself, so a probe is one cache line: looking
 * up millions of scalars in a table bigger than the L1 cache, or through
 * a pointer to each copy, cost more than the copies it saved. */
#define INTERN_MAX_LEN 32u
#define INTERN_BITS 10u
#define INTERN_SLOTS (1u << INTERN_BITS)

typedef struct interned {
    uint64_t key[4];         /* see intern_key() */
    uint64_t len;
    const char *copy;        /* arena copy; NULL = empty slot */
} interned;

/* Batches kept out of the scratch arena before streaming stops reusing
 * it: each keeps the scratch blocks (up to about STREAM_BATCH_BYTES) for
 * the document's life. */
#define STREAM_ADOPT_MAX 16u

/* Streamed items go to the stream in batches of up to this many (or this
 * much scratch memory): the parser's code and the stream's then each run
 * for many items in a row and stay in the instruction cache, where taking
 * turns for every item evicted both, in libyaml as much as here. */
#define STREAM_BATCH 64u
#define STREAM_BATCH_BYTES ((size_t)256 * 1024)

typedef struct stream_item {
    irp_node *node;
    bool kept;
} stream_item;

typedef struct builder {
    irp_arena *arena;        /* strings, tags, anchor names: the caller's */
    irp_arena *tree;         /* nodes and their child arrays: `arena`, or
                                `scratch` while a streamed item is open */
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

    interned *intern;        /* INTERN_SLOTS */

    anchor *anchors;         /* open-addressing hash table */
    size_t nanchors, capanchors;

    const irp_yaml_stream *stream;   /* NULL: keep every node */
    irp_arena scratch;       /* the nodes of the batch's items */
    unsigned adopted;        /* batches whose scratch blocks were kept */
    bool item_kept;          /* the open streamed item must stay in the tree */
    stream_item batch[STREAM_BATCH];   /* complete items not yet handed over */
    unsigned nbatch;
    bool batch_kept;         /* an item of the batch must stay */

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

static int grow_pending(builder *b)
{
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
    return 0;
}

/* Every node passes here: the growth is kept out of line. */
static inline int push_pending(builder *b, irp_node *n, uint64_t weight)
{
    if (b->npending == b->cappending) {
        int rc = grow_pending(b);
        if (rc)
            return rc;
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

/* Inside a streamed item (a child of the streamed sequence, or deeper). */
static bool in_stream_item(const builder *b)
{
    return b->depth >= 2 && b->frames[1].streamed;
}

/* YAML lets a later anchor reuse a name; the latest definition wins. */
static int anchor_define(builder *b, const char *name, irp_node *n, uint64_t weight)
{
    /* An alias later in the document may point into the item. */
    if (in_stream_item(b))
        b->item_kept = true;
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

/* Checks the tag of a node of `kind` starting at `m`.  A local tag to
 * keep is copied to the arena and returned in *local (else NULL). */
static int check_tag_slow(builder *b, irp_node_kind kind, const yaml_mark_t *m,
                          const yaml_char_t *tag, const char **local)
{
    const char *t = (const char *)tag;
    int tkind = core_tag_kind(t);
    if (tkind == (int)kind)
        return 0;
    uint32_t line = (uint32_t)m->line + 1, col = (uint32_t)m->column + 1;
    if (tkind >= 0) {
        irp_diag_error(b->diags, b->file, line, col, "tag '!!%s' does not fit a %s",
                       t + sizeof core_prefix - 1, irp_node_kind_name(&(irp_node){ .kind = kind }));
        return IRP_EPARSE;
    }
    if (t[0] == '!' && t[1] != '!') {
        /* A local tag -- or the bare '!' -- is most often an unquoted
         * value starting with '!'; the model reports it knowing which
         * field it is in, and accepts the bare '!' outside a `when`. */
        *local = irp_arena_strdup(b->arena, t);
        return *local ? 0 : IRP_ENOMEM;
    }
    if (strncmp(t, "tag:yaml.org,2002:", 18) == 0)
        irp_diag_error(b->diags, b->file, line, col, "unsupported tag '!!%s'", t + 18);
    else
        irp_diag_error(b->diags, b->file, line, col, "unsupported tag '%s'", t);
    return IRP_EPARSE;
}

/* Nearly every node has no tag: that case stays inline. */
static inline int check_tag(builder *b, irp_node_kind kind, const yaml_mark_t *m,
                            const yaml_char_t *tag, const char **local)
{
    *local = NULL;
    return tag ? check_tag_slow(b, kind, m, tag, local) : 0;
}

/* A node with a local tag gets the pointer to it just before the node
 * (see irp_node_tag). */
static inline irp_node *new_node(builder *b, irp_node_kind kind, const yaml_mark_t *m,
                                 const char *tag)
{
    irp_node *n;
    if (tag) {
        const char **p = irp_arena_alloc_uninit(b->tree, sizeof *p + sizeof *n);
        if (!p)
            return NULL;
        *p = tag;
        n = (irp_node *)(void *)(p + 1);
    } else {
        n = irp_arena_alloc_uninit(b->tree, sizeof *n);
        if (!n)
            return NULL;
    }
    *n = (irp_node){ .kind = kind, .flags = tag ? IRP_NODE_HAS_TAG : 0,
                     .line = (uint32_t)m->line + 1, .col = (uint32_t)m->column + 1 };
    return n;
}

static inline int count_node(builder *b, const irp_node *n, uint64_t weight)
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

/* Hands the batch's items to the stream, in order.  Unless one of them
 * must stay (batch_kept), the memory of their nodes serves the next
 * batch. */
static int flush_batch(builder *b)
{
    int rc = 0;
    /* After an error the document is refused: building it is waste. */
    for (unsigned i = 0; i < b->nbatch && rc == 0 && !b->failed; i++)
        rc = b->stream->item(b->stream->ctx, b->batch[i].node, b->batch[i].kept);
    b->nbatch = 0;
    if (b->scratch.used) {
        if (b->batch_kept) {
            irp_arena_adopt(b->arena, &b->scratch);
            b->adopted++;
        } else {
            irp_arena_reset(&b->scratch);
        }
    }
    b->batch_kept = false;
    return rc;
}

/* A complete item of the streamed sequence goes to the stream (with the
 * next batch) instead of its parent. */
static int hand_over(builder *b, irp_node *n, uint64_t weight)
{
    bool kept = b->item_kept;
    b->item_kept = false;
    b->tree = b->arena;
    b->batch[b->nbatch++] = (stream_item){ n, kept };
    b->batch_kept |= kept;
    int rc = 0;
    if (b->nbatch == STREAM_BATCH || b->scratch.used >= STREAM_BATCH_BYTES)
        rc = flush_batch(b);
    if (rc || !kept)
        return rc;
    if (n->flags & (IRP_NODE_HAS_TAG | IRP_NODE_TAGS_BELOW))
        b->frames[1].node->flags |= IRP_NODE_TAGS_BELOW;
    return push_pending(b, n, weight);
}

/* A finished node goes to its parent's pending children, or becomes the
 * root.  The parent learns whether a tag lies below it, so a walk looking
 * for tags can skip the rest. */
static inline int attach(builder *b, irp_node *n, uint64_t weight)
{
    if (b->depth == 0) {
        b->root = n;
        b->root_weight = weight;
        return 0;
    }
    if (b->depth == 2 && b->frames[1].streamed)
        return hand_over(b, n, weight);
    if (n->flags & (IRP_NODE_HAS_TAG | IRP_NODE_TAGS_BELOW))
        b->frames[b->depth - 1].node->flags |= IRP_NODE_TAGS_BELOW;
    return push_pending(b, n, weight);
}

/* Whether a sequence starting now is the value of the root mapping's key
 * named by the stream. */
static bool stream_starts(const builder *b)
{
    if (!b->stream || b->depth != 1 || b->frames[0].node->kind != IRP_NODE_MAP ||
        (b->npending - b->frames[0].start) % 2 == 0)
        return false;
    const irp_node *key = b->pending[b->npending - 1];
    size_t len = strlen(b->stream->key);
    return key->kind == IRP_NODE_SCALAR && key->len == len &&
           memcmp(key->u.scalar.s, b->stream->key, len) == 0;
}

static uint64_t load64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint64_t load32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Four words that, with the length, tell apart every string of at most
 * 32 bytes: overlapping loads from both ends cover every byte, and never
 * read past the string (loading it into a zeroed buffer instead stalls
 * on the stores just made). */
static void intern_key(const char *s, uint32_t len, uint64_t key[4])
{
    key[1] = key[2] = key[3] = 0;
    if (len > 16) {
        key[0] = load64(s);
        key[1] = load64(s + 8);
        key[2] = load64(s + len - 16);
        key[3] = load64(s + len - 8);
    } else if (len >= 8) {
        key[0] = load64(s);
        key[1] = load64(s + len - 8);
    } else if (len >= 4) {
        key[0] = load32(s) | load32(s + len - 4) << 32;
    } else {
        const unsigned char *u = (const unsigned char *)s;
        key[0] = len ? (uint64_t)u[0] | (uint64_t)u[len / 2] << 8 | (uint64_t)u[len - 1] << 16 : 0;
    }
}

/* The arena copy of a scalar's text, shared with earlier equal scalars
 * when it is short. */
static const char *scalar_copy(builder *b, const char *s, uint32_t len)
{
    if (len > INTERN_MAX_LEN)
        return irp_arena_strndup(b->arena, s, len);
    uint64_t key[4];
    intern_key(s, len, key);
    /* Multiplicative hashing: the top bits mix every bit of the key. */
    uint64_t h = (key[0] * 0x9E3779B97F4A7C15ull ^ key[1] * 0xC2B2AE3D27D4EB4Full ^
                  key[2] * 0x165667B19E3779F9ull ^ key[3] * 0x27D4EB2F165667C5ull ^ len) *
                 0x9E3779B97F4A7C15ull;
    interned *slot = &b->intern[h >> (64 - INTERN_BITS)];
    if (slot->copy && slot->len == len && slot->key[0] == key[0] && slot->key[1] == key[1] &&
        slot->key[2] == key[2] && slot->key[3] == key[3])
        return slot->copy;
    const char *copy = irp_arena_strndup(b->arena, s, len);
    if (copy)
        *slot = (interned){ { key[0], key[1], key[2], key[3] }, len, copy };
    return copy;
}

static int on_scalar(builder *b, const yaml_event_t *ev)
{
    const char *tag;
    int rc = check_tag(b, IRP_NODE_SCALAR, &ev->start_mark, ev->data.scalar.tag, &tag);
    if (rc == IRP_ENOMEM)
        return rc;
    if (rc)
        b->failed = true;
    irp_node *n = new_node(b, IRP_NODE_SCALAR, &ev->start_mark, tag);
    if (!n)
        return IRP_ENOMEM;
    switch (ev->data.scalar.style) {
    case YAML_SINGLE_QUOTED_SCALAR_STYLE: n->style = IRP_STYLE_SINGLE; break;
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE: n->style = IRP_STYLE_DOUBLE; break;
    case YAML_LITERAL_SCALAR_STYLE: n->style = IRP_STYLE_LITERAL; break;
    case YAML_FOLDED_SCALAR_STYLE: n->style = IRP_STYLE_FOLDED; break;
    default: n->style = IRP_STYLE_PLAIN; break;
    }
    /* The input is under 4 GiB (irp_yaml_parse), so is every scalar. */
    n->len = (uint32_t)ev->data.scalar.length;
    n->u.scalar.s = scalar_copy(b, (const char *)ev->data.scalar.value, n->len);
    if (!n->u.scalar.s)
        return IRP_ENOMEM;
    rc = count_node(b, n, 1);
    if (!rc && ev->data.scalar.anchor)
        rc = anchor_define(b, (const char *)ev->data.scalar.anchor, n, 1);
    return rc ? rc : attach(b, n, 1);
}

static int on_start(builder *b, const yaml_event_t *ev, irp_node_kind kind)
{
    const yaml_char_t *ytag;
    bool flow;
    if (kind == IRP_NODE_SEQ) {
        ytag = ev->data.sequence_start.tag;
        flow = ev->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE;
    } else {
        ytag = ev->data.mapping_start.tag;
        flow = ev->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
    }
    const char *tag;
    int rc = check_tag(b, kind, &ev->start_mark, ytag, &tag);
    if (rc == IRP_ENOMEM)
        return rc;
    if (rc)
        b->failed = true;
    /* A streamed item: its nodes go to scratch memory, reused for the
     * next item once this one is handed over. */
    if (b->depth == 2 && b->frames[1].streamed && b->adopted < STREAM_ADOPT_MAX)
        b->tree = &b->scratch;
    irp_node *n = new_node(b, kind, &ev->start_mark, tag);
    if (!n)
        return IRP_ENOMEM;
    n->style = flow ? IRP_STYLE_FLOW : IRP_STYLE_BLOCK;
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
    /* An anchored sequence is not streamed: an alias must find it whole. */
    bool streamed = kind == IRP_NODE_SEQ && !anch && stream_starts(b);
    if (streamed)
        n->flags |= IRP_NODE_STREAMED;
    b->frames[b->depth++] = (frame){ n, b->npending, copy, streamed };
    return 0;
}

static inline bool scalar_equal(const irp_node *a, const irp_node *c)
{
    /* Interned keys are mostly one string, and keys of one length mostly
     * differ in their first byte: memcmp is the rare case. */
    if (a->len != c->len)
        return false;
    if (a->u.scalar.s == c->u.scalar.s)
        return true;
    return a->len == 0 || (a->u.scalar.s[0] == c->u.scalar.s[0] &&
                           memcmp(a->u.scalar.s, c->u.scalar.s, a->len) == 0);
}

static int key_cmp(const void *pa, const void *pb)
{
    const irp_pair *a = *(irp_pair *const *)pa, *c = *(irp_pair *const *)pb;
    size_t la = a->key->len, lc = c->key->len;
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
    size_t n = map->count;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const irp_node *k = p[i].key;
        if (k->kind != IRP_NODE_SCALAR) {
            irp_diag_error(b->diags, b->file, k->line, k->col, "a mapping key must be a scalar, not a %s",
                           irp_node_kind_name(k));
            rc = IRP_EPARSE;
        } else if (k->style == IRP_STYLE_DOUBLE && strlen(k->u.scalar.s) != k->len) {
            /* Only an escape (\0, \x00, \u0000) makes a NUL: libyaml
             * refuses the byte itself in the input. */
            irp_diag_error(b->diags, b->file, k->line, k->col, "a key may not hold a NUL byte");
            rc = IRP_EPARSE;
        } else if (k->style == IRP_STYLE_PLAIN && k->len == 2 && k->u.scalar.s[0] == '<' &&
                   k->u.scalar.s[1] == '<') {
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
    if (f.streamed) {
        int rc = flush_batch(b);
        if (rc)
            return rc;
    }
    size_t count = b->npending - f.start;
    uint64_t weight = 1;
    for (size_t i = f.start; i < b->npending; i++)
        weight += b->weights[i];
    /* Fewer children than input bytes: 32 bits hold the count. */
    n->count = (uint32_t)(n->kind == IRP_NODE_SEQ ? count : count / 2);
    if (n->kind == IRP_NODE_SEQ) {
        n->u.seq.items = irp_arena_alloc_uninit(b->tree, count * sizeof *n->u.seq.items);
        if (!n->u.seq.items)
            return IRP_ENOMEM;
        if (count)   /* pending may still be NULL: nothing pushed yet */
            memcpy(n->u.seq.items, b->pending + f.start, count * sizeof *n->u.seq.items);
    } else {
        n->u.map.pairs = irp_arena_alloc_uninit(b->tree, (count / 2) * sizeof *n->u.map.pairs);
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
        irp_node *n = new_node(b, IRP_NODE_SCALAR, &ev->start_mark, NULL);
        if (!n)
            return IRP_ENOMEM;
        n->u.scalar.s = "";
        return attach(b, n, 1);
    }
    int rc = count_node(b, a->node, a->weight);
    if (rc)
        return rc;
    if (a->node->kind != IRP_NODE_SCALAR) {
        /* The item would share tagged nodes with the rest of the
         * document: their tags are reported in one walk of the whole tree
         * after building, as if nothing were streamed. */
        if (in_stream_item(b) && (a->node->flags & (IRP_NODE_HAS_TAG | IRP_NODE_TAGS_BELOW)))
            b->item_kept = true;
        return attach(b, a->node, a->weight);
    }
    /* A scalar is cheap to copy, and the copy can say where the alias
     * stands (a duplicate key written as an alias is reported there). */
    irp_node *n = new_node(b, IRP_NODE_SCALAR, &ev->start_mark, irp_node_tag(a->node));
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
    free(b->intern);
    irp_arena_release(&b->scratch);
}

int irp_yaml_parse(irp_arena *arena, const char *file, const char *buf, size_t len,
                   const irp_yaml_limits *lim, irp_diag_list *diags, irp_node **root)
{
    return irp_yaml_parse_stream(arena, file, buf, len, -1, lim, NULL, diags, root);
}

/* The document read from a file descriptor, never past the `left` bytes
 * the caller's buffer holds. */
typedef struct fd_input {
    int fd;
    size_t left;
} fd_input;

static int read_input(void *data, unsigned char *buf, size_t size, size_t *got)
{
    fd_input *in = data;
    if (size > in->left)
        size = in->left;
    ssize_t r;
    do
        r = size ? read(in->fd, buf, size) : 0;
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return 0;   /* libyaml reports an input error */
    in->left -= (size_t)r;
    *got = (size_t)r;
    return 1;
}

int irp_yaml_parse_stream(irp_arena *arena, const char *file, const char *buf, size_t len, int fd,
                          const irp_yaml_limits *lim, const irp_yaml_stream *stream,
                          irp_diag_list *diags, irp_node **root)
{
    builder b = { .arena = arena, .tree = arena, .file = file, .buf = buf, .len = len,
                  .diags = diags, .stream = stream };
    irp_arena_init(&b.scratch, 0);
    b.lim.max_bytes = lim && lim->max_bytes ? lim->max_bytes : IRP_YAML_MAX_BYTES;
    if (b.lim.max_bytes > UINT32_MAX)   /* node lengths and counts are 32-bit */
        b.lim.max_bytes = UINT32_MAX;
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
    b.intern = calloc(INTERN_SLOTS, sizeof *b.intern);
    if (!b.intern) {
        builder_release(&b);
        return IRP_ENOMEM;
    }

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        builder_release(&b);
        return IRP_ENOMEM;
    }
    fd_input in = { fd, len };
    if (fd >= 0)
        yaml_parser_set_input(&parser, read_input, &in);
    else
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

/* Reads fd to its end into a malloc'd, NUL-terminated buffer. */
static int read_fd(int fd, const struct stat *st, size_t max_bytes, char **bufp, size_t *lenp)
{
    /* Read in chunks rather than trusting st_size: pipes and /proc files
     * report 0, and a file may grow while it is read. */
    size_t cap = S_ISREG(st->st_mode) && (size_t)st->st_size < max_bytes
                     ? (size_t)st->st_size + 1 : 65536;
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

static int open_file(const char *path, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return irp_err_from_errno(errno);
    if (fstat(fd, st) != 0 || S_ISDIR(st->st_mode)) {
        int err = S_ISDIR(st->st_mode) ? IRP_EINVAL : irp_err_from_errno(errno);
        close(fd);
        return err;
    }
    return fd;
}

int irp_file_read(const char *path, size_t max_bytes, char **bufp, size_t *lenp)
{
    *bufp = NULL;
    *lenp = 0;
    struct stat st;
    int fd = open_file(path, &st);
    if (fd < 0)
        return fd;
    int rc = read_fd(fd, &st, max_bytes, bufp, lenp);
    close(fd);
    return rc;
}

int irp_file_map(const char *path, size_t max_bytes, const char **bufp, size_t *lenp,
                 size_t *mappedp, int *fdp)
{
    *bufp = NULL;
    *lenp = 0;
    *mappedp = 0;
    *fdp = -1;
    struct stat st;
    int fd = open_file(path, &st);
    if (fd < 0)
        return fd;
    /* An empty file cannot be mapped; pipes and /proc files say nothing
     * true about their size.  Those are read. */
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
        if ((uintmax_t)st.st_size > max_bytes) {
            close(fd);
            return IRP_ELIMIT;
        }
        size_t len = (size_t)st.st_size;
        void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            *bufp = p;
            *lenp = len;
            *mappedp = len;
            *fdp = fd;
            return 0;
        }
    }
    char *buf = NULL;
    int rc = read_fd(fd, &st, max_bytes, &buf, lenp);
    close(fd);
    *bufp = buf;
    return rc;
}

void irp_file_unmap(const char *buf, size_t mapped)
{
    if (mapped)
        munmap((void *)buf, mapped);
    else
        free((void *)buf);
}

irp_node *irp_node_get(const irp_node *map, const char *key)
{
    if (!map || map->kind != IRP_NODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->count; i++) {
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
