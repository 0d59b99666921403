/* irp — YAML documents as a tree of located nodes.
 *
 * The loader pulls libyaml's parser events and builds this tree directly
 * (libyaml's document API is slower and loses nothing we need), keeping
 * the 1-based line and column of every node.  The whole tree lives in the
 * caller's arena and is freed with it.
 *
 * Everything that makes YAML dangerous or surprising is refused here, with
 * a located diagnostic: syntax errors, invalid UTF-8, several documents,
 * duplicate keys, non-scalar keys, merge keys, tags outside YAML's core
 * schema, and the limits below (size, depth, nodes counting alias
 * expansion -- so an alias bomb fails in bounded time).  Local tags
 * (`!foo`) are kept with the node so the model can say what was probably
 * meant (`when: !steps.x.ok` is a YAML tag, not a negation).
 *
 * An alias of a collection is not copied: it points to the anchored node,
 * so the tree may be a DAG and readers must not assume a node has one
 * parent.  An alias of a scalar is a copy positioned at the alias, so a
 * diagnostic about it (a duplicate key, say) points where it is used.
 */
#ifndef IRP_NODE_H
#define IRP_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "irp/arena.h"
#include "irp/diag.h"

typedef enum { IRP_NODE_SCALAR, IRP_NODE_SEQ, IRP_NODE_MAP } irp_node_kind;

typedef enum {
    IRP_STYLE_PLAIN,      /* scalars */
    IRP_STYLE_SINGLE,
    IRP_STYLE_DOUBLE,
    IRP_STYLE_LITERAL,
    IRP_STYLE_FOLDED,
    IRP_STYLE_BLOCK,      /* collections */
    IRP_STYLE_FLOW
} irp_node_style;

typedef struct irp_node irp_node;
typedef struct irp_pair { irp_node *key, *value; } irp_pair;

/* irp_node.flags: bookkeeping for whoever walks the tree.  The parser
 * sets the others: HAS_TAG, the node has a local tag (see irp_node_tag);
 * TAGS_BELOW, some node under it has one; STREAMED, a sequence whose items
 * went to an irp_yaml_stream (see irp_yaml_parse_stream). */
enum {
    IRP_NODE_TAG_REPORTED = 1u << 0,
    IRP_NODE_VISITED = 1u << 1,
    IRP_NODE_HAS_TAG = 1u << 2,
    IRP_NODE_TAGS_BELOW = 1u << 3,
    IRP_NODE_STREAMED = 1u << 4,
};

/* 24 bytes: a 100,000-step playbook has millions of nodes, and their
 * memory (first touched page by page) costs more than the parse.  The
 * rare local tag lives outside the node (irp_node_tag); lengths and counts
 * fit 32 bits because irp_yaml_parse refuses input of 4 GiB or more. */
struct irp_node {
    uint8_t kind;              /* irp_node_kind */
    uint8_t style;             /* irp_node_style */
    uint8_t flags;             /* IRP_NODE_* */
    uint32_t line, col;        /* 1-based position of the node's start */
    union {
        uint32_t len;          /* scalar: bytes in u.scalar.s */
        uint32_t count;        /* sequence: items; mapping: pairs */
    };
    union {
        struct { const char *s; } scalar;   /* NUL-terminated too */
        struct { irp_node **items; } seq;
        struct { irp_pair *pairs; } map;
    } u;
};

/* The node's local tag ("!foo", or the bare "!"), or NULL; core tags are
 * checked and dropped.  A tagged node is allocated just after a pointer
 * to its tag, so every copy made with its flag must be too. */
static inline const char *irp_node_tag(const irp_node *n)
{
    if (!(n->flags & IRP_NODE_HAS_TAG))
        return NULL;
    return ((const char *const *)(const void *)n)[-1];
}

typedef struct irp_yaml_limits {
    size_t max_bytes;          /* default 64 MiB; at most 4 GiB - 1 */
    unsigned max_depth;        /* default 64 */
    uint64_t max_nodes;        /* default 10,000,000, counting alias expansion */
} irp_yaml_limits;

#define IRP_YAML_MAX_BYTES  ((size_t)64 * 1024 * 1024)
#define IRP_YAML_MAX_DEPTH  64u
#define IRP_YAML_MAX_NODES  10000000u

/* Parse buf[0..len) (the whole file, already read) into a tree allocated
 * in `arena`.  `file` names the source in diagnostics and must outlive
 * `diags`.  On success returns 0 and sets *root (never NULL: an empty
 * document is an error).  On failure returns IRP_EPARSE or IRP_ELIMIT
 * (diagnostics added) or IRP_ENOMEM; *root is NULL.  `lim` may be NULL
 * for the defaults. */
int irp_yaml_parse(irp_arena *arena, const char *file, const char *buf, size_t len,
                   const irp_yaml_limits *lim, irp_diag_list *diags, irp_node **root);

/* The same, handing over the items of one sequence as they are parsed
 * (stream may be NULL), and reading the text from `fd` when it is not -1:
 * `len` bytes from its current offset, the bytes of `buf`, which is then
 * read only to quote the text in diagnostics.  A file is parsed faster
 * through read() into a small buffer than through a mapping of all of
 * it, page by page (irp_file_map gives both).  With stream NULL and fd
 * -1, this is irp_yaml_parse.
 *
 * When the root is a mapping whose key `stream->key` holds a sequence
 * without an anchor, each item of that sequence goes to item() soon after
 * it is parsed -- in order, in batches of a few dozen, so that parsing
 * and the stream each keep their code in cache -- and the memory of the
 * batch's nodes serves the next batch: a document of 100,000 steps never
 * holds more than one batch's nodes.
 * That sequence gets IRP_NODE_STREAMED and keeps only the items passed
 * with `kept` true -- those sharing nodes with the rest of the document
 * (an anchor inside, or an alias of a collection with a tag under it),
 * which stay valid as any node.  Any other item and the nodes under it
 * are valid only during the call; their strings (u.scalar.s, tags) live
 * in `arena` as always.  item() is not called once the parse has found an
 * error, and if the parse fails, items already passed were part of a
 * document that is refused.  A non-zero return from item() stops the
 * parse and is returned. */
typedef struct irp_yaml_stream {
    const char *key;
    int (*item)(void *ctx, irp_node *item, bool kept);
    void *ctx;
} irp_yaml_stream;

int irp_yaml_parse_stream(irp_arena *arena, const char *file, const char *buf, size_t len, int fd,
                          const irp_yaml_limits *lim, const irp_yaml_stream *stream,
                          irp_diag_list *diags, irp_node **root);

/* Read a whole file into a malloc'd buffer (caller frees), refusing files
 * over max_bytes (IRP_ELIMIT).  *len excludes the NUL terminator added. */
int irp_file_read(const char *path, size_t max_bytes, char **buf, size_t *len);

/* The same for a file that is only read: a regular file is mapped
 * read-only instead of copied (for a 30 MB playbook the copy, in memory
 * never touched before, cost more than parsing it), anything else (a
 * pipe, a /proc file, an empty file) is read as above.  *mapped is the
 * length mapped, or 0 when *buf is a malloc'd copy; only the copy is
 * NUL-terminated.  A mapped file also gives *fd, open on it at offset 0,
 * for reading it through once (see irp_yaml_parse_stream); the caller
 * closes it.  Otherwise *fd is -1.  A mapped file is not a snapshot: the
 * bytes change if the file is rewritten in place, and reading past a
 * point where it was truncated raises SIGBUS.  Release with
 * irp_file_unmap(). */
int irp_file_map(const char *path, size_t max_bytes, const char **buf, size_t *len,
                 size_t *mapped, int *fd);
void irp_file_unmap(const char *buf, size_t mapped);

/* Lookup in a mapping node by key; NULL when absent or not a mapping. */
irp_node *irp_node_get(const irp_node *map, const char *key);
/* True when the node is a plain scalar spelled `null`, `~` or empty. */
bool irp_node_is_null(const irp_node *n);
const char *irp_node_kind_name(const irp_node *n);

#endif
