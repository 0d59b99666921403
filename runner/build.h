/* Internal: mapping YAML nodes onto the playbook model with key tables.
 *
 * Each mapping kind (playbook, input, step, notify, ...) has a table of
 * keys with a setter; build_map() walks a mapping once, calls the setter
 * of each known key and reports unknown ones with a "did you mean".
 * Setters report their own type errors and leave the field at its
 * default, so one pass finds every problem in the file.
 */
#ifndef IRP_BUILD_H
#define IRP_BUILD_H

#include "irp/model.h"

/* Parsed templates by text: a generated playbook repeats the same few
 * (`${{ inputs.incident_id }}` in tens of thousands of steps), and a
 * template is immutable once parsed, so equal strings share one.  A
 * direct-mapped cache: a slot keeps the latest template hashed to it. */
#define BUILD_TPL_CACHE_SLOTS 4096u

typedef struct build_tpl_slot {
    const char *s;           /* the string parsed (in the playbook's arena) */
    uint32_t len;            /* a scalar's length: 32 bits (see irp_node) */
    uint32_t hash;           /* of the text: compared before the text */
    struct irp_template *tpl;
} build_tpl_slot;

/* The same by the string's address, tried first: the parser interns
 * short scalars, so `--case` or `${{ inputs.incident_id }}` is one string
 * however often it is written, and a hit costs neither a search for
 * `${{` nor a hash of the text.  A slot with tpl NULL remembers a string
 * without any template. */
#define BUILD_STR_CACHE_SLOTS 1024u

/* Values parsed from a string, by the string's address (as above): a
 * playbook spells `15m` or `preparation` thousands of times, and parses
 * them once.  Only good parses are kept; `what` says which parse (an
 * enum's names, or a marker of the setter). */
#define BUILD_MEMO_SLOTS 256u

typedef struct build_memo_slot {
    const void *what;
    const char *s;
    uint32_t len;
    int64_t v[2];
} build_memo_slot;

/* Key tables looked up by the key's string.  The parser interns short
 * scalars, so a key is mostly one pointer however often it is written,
 * and a hit here skips comparing it with the table's names one by one. */
#define BUILD_KEY_CACHE_SLOTS 256u

typedef struct build_key build_key;
typedef struct build_key_slot {
    const build_key *keys;   /* the table */
    const char *name;        /* the key as parsed */
    const build_key *key;    /* its entry */
} build_key_slot;

typedef struct bctx {
    irp_playbook *pb;
    irp_arena *a;
    irp_diag_list *diags;
    const char *file;
    bool oom;
    irp_step defaults;       /* fields `defaults` set, with .set bits */
    build_tpl_slot *tpl_cache;   /* BUILD_TPL_CACHE_SLOTS, or NULL: no sharing */
    build_tpl_slot *str_cache;   /* BUILD_STR_CACHE_SLOTS, or NULL */
    build_key_slot key_cache[BUILD_KEY_CACHE_SLOTS];
    build_memo_slot memo[BUILD_MEMO_SLOTS];
} bctx;

typedef void (*build_setter)(bctx *c, const irp_node *val, void *obj);

struct build_key {
    const char *name;
    build_setter set;
};

/* Walks `map` (reporting if it is not a mapping, naming it `what`).
 * Returns false when it was not a mapping. */
bool build_map(bctx *c, const irp_node *map, const build_key *keys, size_t nkeys,
               void *obj, const char *what);
#define BUILD_MAP(c, map, keys, obj, what) \
    build_map((c), (map), (keys), sizeof(keys) / sizeof *(keys), (obj), (what))

void build_error(bctx *c, const irp_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void build_error_at(bctx *c, irp_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void build_warning_at(bctx *c, irp_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
irp_pos build_pos(const irp_node *n);

/* Typed getters: each reports a located error and returns false when the
 * node does not hold that type.  Scalars are typed by the field, never
 * guessed: a string field takes any scalar as written. */
bool build_string(bctx *c, const irp_node *n, const char **out);
bool build_tstr(bctx *c, const irp_node *n, irp_str *out);
bool build_bool(bctx *c, const irp_node *n, bool *out);
/* YAML 1.1 spellings of booleans (yes, no, on, off, True...), which irp
 * refuses with a hint rather than reading as text. */
bool build_is_yaml11_bool(const char *s);
bool build_duration(bctx *c, const irp_node *n, int64_t *ms);
bool build_uint(bctx *c, const irp_node *n, unsigned max, int *out);
bool build_number(bctx *c, const irp_node *n, double *out);
bool build_id(bctx *c, const irp_node *n, const char *what, const char **out);
bool build_name(bctx *c, const irp_node *n, const char *what, const char **out);
bool build_string_list(bctx *c, const irp_node *n, const char ***out, irp_pos **pos,
                       size_t *count);
bool build_tstr_list(bctx *c, const irp_node *n, irp_str **out, size_t *count);
bool build_kv_map(bctx *c, const irp_node *n, irp_kv **out, size_t *count);
/* Picks one of `names` (index into it), reporting the allowed ones. */
bool build_enum(bctx *c, const irp_node *n, const char *const *names, size_t count,
                const char *what, int *out);

/* The values a parse `what` gave for the string of n (a scalar), if
 * remembered; and remembering them. */
bool build_memo_get(bctx *c, const void *what, const irp_node *n, int64_t v[2]);
void build_memo_put(bctx *c, const void *what, const irp_node *n, int64_t v0, int64_t v1);

/* Position of byte `off` of a templated string, for diagnostics inside it. */
irp_pos build_str_pos(bctx *c, const irp_str *s, size_t off);

/* Report every tag the setters did not see (after building). */
void build_report_tags(bctx *c, irp_node *root);

/* Steps, defaults and the pieces of a step (build_step.c). */
void build_steps(bctx *c, const irp_node *seq, bool is_finally);
/* One item of `steps` or `finally`, appended to pb->steps. */
void build_step(bctx *c, const irp_node *item, bool is_finally);
void build_defaults(bctx *c, const irp_node *map);
void build_apply_defaults(bctx *c);

#endif
