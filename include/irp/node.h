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
 * (`!foo`) are kept on the node so the model can say what was probably
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

/* irp_node.flags: bookkeeping for whoever walks the tree. */
enum { IRP_NODE_TAG_REPORTED = 1u << 0, IRP_NODE_VISITED = 1u << 1 };

struct irp_node {
    uint8_t kind;              /* irp_node_kind */
    uint8_t style;             /* irp_node_style */
    uint8_t flags;             /* IRP_NODE_* */
    uint32_t line, col;        /* 1-based position of the node's start */
    const char *tag;           /* local tag ("!foo", or the bare "!") or NULL;
                                  core tags are checked and dropped */
    union {
        struct { const char *s; size_t len; } scalar;  /* NUL-terminated too */
        struct { irp_node **items; size_t n; } seq;
        struct { irp_pair *pairs; size_t n; } map;
    } u;
};

typedef struct irp_yaml_limits {
    size_t max_bytes;          /* default 64 MiB */
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

/* Read a whole file into a malloc'd buffer (caller frees), refusing files
 * over max_bytes (IRP_ELIMIT).  *len excludes the NUL terminator added. */
int irp_file_read(const char *path, size_t max_bytes, char **buf, size_t *len);

/* Lookup in a mapping node by key; NULL when absent or not a mapping. */
irp_node *irp_node_get(const irp_node *map, const char *key);
/* True when the node is a plain scalar spelled `null`, `~` or empty. */
bool irp_node_is_null(const irp_node *n);
const char *irp_node_kind_name(const irp_node *n);

#endif
