/* Tests of include/irp/node.h: YAML → located node tree, and everything
 * the loader refuses (duplicate keys, merge keys, tags, limits, bad
 * bytes).  A few tests at the end load whole playbooks, where the loader
 * leaves a check to the model (local tags, NUL bytes in keys). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "irp/error.h"
#include "irp/model.h"
#include "irp/node.h"

/* ---- fixture and helpers -------------------------------------------- */

typedef struct fx {
    irp_arena arena;
    irp_diag_list diags;
    irp_node *root;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    irp_arena_init(&f->arena, 0);
    irp_diag_list_init(&f->diags);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    irp_diag_list_release(&f->diags);
    irp_arena_release(&f->arena);
    free(f);
    return 0;
}

/* Forget earlier diagnostics, for a test that parses several inputs. */
static void reset(fx *f)
{
    irp_diag_list_release(&f->diags);
    irp_diag_list_init(&f->diags);
    f->root = NULL;
}

static int parse_lim(fx *f, const char *s, size_t len, const irp_yaml_limits *lim)
{
    f->root = (irp_node *)f;   /* must be reset by the parser */
    int rc = irp_yaml_parse(&f->arena, "t.yaml", s, len, lim, &f->diags, &f->root);
    irp_diag_sort(&f->diags);
    if (rc)
        assert_null(f->root);
    else
        assert_non_null(f->root);
    return rc;
}

static int parse(fx *f, const char *s)
{
    return parse_lim(f, s, strlen(s), NULL);
}

/* The diagnostic at line:col whose message holds `part`, or NULL. */
static const irp_diag *diag_at(const irp_diag_list *l, uint32_t line, uint32_t col,
                               const char *part)
{
    for (size_t i = 0; i < l->n; i++) {
        const irp_diag *d = &l->items[i];
        if (d->line == line && d->col == col && strstr(d->msg, part))
            return d;
    }
    return NULL;
}

static void print_diags(const irp_diag_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        print_message("  have %u:%u: %s\n", l->items[i].line, l->items[i].col, l->items[i].msg);
}

/* Exactly one diagnostic, an error at line:col holding `part`. */
#define assert_only_error(f, line, col, part)                                      \
    do {                                                                           \
        if ((f)->diags.n != 1 || !diag_at(&(f)->diags, (line), (col), (part))) {   \
            print_message("want one error %u:%u '%s'\n", (unsigned)(line),         \
                          (unsigned)(col), (part));                                \
            print_diags(&(f)->diags);                                              \
        }                                                                          \
        assert_int_equal((f)->diags.n, 1);                                         \
        assert_int_equal((f)->diags.errors, 1);                                    \
        assert_non_null(diag_at(&(f)->diags, (line), (col), (part)));              \
    } while (0)

#define assert_has_error(f, line, col, part)                                       \
    do {                                                                           \
        if (!diag_at(&(f)->diags, (line), (col), (part))) {                        \
            print_message("want error %u:%u '%s'\n", (unsigned)(line),             \
                          (unsigned)(col), (part));                                \
            print_diags(&(f)->diags);                                              \
        }                                                                          \
        assert_non_null(diag_at(&(f)->diags, (line), (col), (part)));              \
    } while (0)

#define assert_pos(n, l, c)                                                        \
    do {                                                                           \
        assert_non_null(n);                                                        \
        assert_int_equal((n)->line, (l));                                          \
        assert_int_equal((n)->col, (c));                                           \
    } while (0)

static void assert_scalar(const irp_node *n, const char *s)
{
    assert_non_null(n);
    assert_int_equal(n->kind, IRP_NODE_SCALAR);
    assert_string_equal(n->u.scalar.s, s);
    assert_int_equal(n->len, strlen(s));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A growable string for generated inputs. */
typedef struct sbuf { char *s; size_t len, cap; } sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        assert_non_null(b->s);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ---- positions ------------------------------------------------------ */

static void test_parse_positions_block(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "id: demo\n"
                              "steps:\n"
                              "  - id: a\n"
                              "    run: [x, 'y']\n"
                              "    when: |\n"
                              "      a\n"),
                     0);
    irp_node *root = f->root;
    assert_int_equal(root->kind, IRP_NODE_MAP);
    assert_int_equal(root->style, IRP_STYLE_BLOCK);
    assert_pos(root, 1, 1);
    assert_int_equal(root->count, 2);
    assert_pos(root->u.map.pairs[0].key, 1, 1);
    assert_pos(root->u.map.pairs[1].key, 2, 1);

    irp_node *id = irp_node_get(root, "id");
    assert_scalar(id, "demo");
    assert_pos(id, 1, 5);
    assert_int_equal(id->style, IRP_STYLE_PLAIN);
    assert_null(irp_node_tag(id));

    irp_node *steps = irp_node_get(root, "steps");
    assert_int_equal(steps->kind, IRP_NODE_SEQ);
    assert_int_equal(steps->style, IRP_STYLE_BLOCK);
    assert_pos(steps, 3, 3);
    assert_int_equal(steps->count, 1);

    irp_node *step = steps->u.seq.items[0];
    assert_int_equal(step->kind, IRP_NODE_MAP);
    assert_pos(step, 3, 5);
    assert_pos(irp_node_get(step, "id"), 3, 9);

    irp_node *run = irp_node_get(step, "run");
    assert_int_equal(run->kind, IRP_NODE_SEQ);
    assert_int_equal(run->style, IRP_STYLE_FLOW);
    assert_pos(run, 4, 10);
    assert_int_equal(run->count, 2);
    assert_scalar(run->u.seq.items[0], "x");
    assert_pos(run->u.seq.items[0], 4, 11);
    assert_scalar(run->u.seq.items[1], "y");
    assert_pos(run->u.seq.items[1], 4, 14);
    assert_int_equal(run->u.seq.items[1]->style, IRP_STYLE_SINGLE);

    irp_node *when = irp_node_get(step, "when");
    assert_scalar(when, "a\n");
    assert_int_equal(when->style, IRP_STYLE_LITERAL);
    assert_pos(when, 5, 11);
    assert_int_equal(f->diags.n, 0);
}

static void test_parse_positions_flow(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "k: {a: [b, c], d: \"e\"}\n"), 0);
    irp_node *k = irp_node_get(f->root, "k");
    assert_int_equal(k->kind, IRP_NODE_MAP);
    assert_int_equal(k->style, IRP_STYLE_FLOW);
    assert_pos(k, 1, 4);
    irp_node *a = irp_node_get(k, "a");
    assert_pos(a, 1, 8);
    assert_pos(a->u.seq.items[0], 1, 9);
    assert_pos(a->u.seq.items[1], 1, 12);
    irp_node *d = irp_node_get(k, "d");
    assert_scalar(d, "e");
    assert_int_equal(d->style, IRP_STYLE_DOUBLE);
    assert_pos(d, 1, 19);
}

/* Columns count characters, not bytes: what an editor shows. */
static void test_parse_positions_count_characters(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "k\xc3\xa9: \xc3\xbc\xc3\xbc\n"
                              "x: [\xe2\x82\xac, y]\n"),
                     0);
    assert_pos(irp_node_get(f->root, "k\xc3\xa9"), 1, 5);
    irp_node *x = irp_node_get(f->root, "x");
    assert_pos(x->u.seq.items[0], 2, 5);
    assert_pos(x->u.seq.items[1], 2, 8);
}

static void test_parse_scalars_keep_exact_bytes(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "a: \"x\\ty\"\n"
                              "b: \"\\u00e9\"\n"
                              "c: '1.0'\n"
                              "d: 1.0\n"
                              "e: >\n  one\n  two\n"),
                     0);
    assert_scalar(irp_node_get(f->root, "a"), "x\ty");
    assert_scalar(irp_node_get(f->root, "b"), "\xc3\xa9");
    assert_scalar(irp_node_get(f->root, "c"), "1.0");
    assert_scalar(irp_node_get(f->root, "d"), "1.0");
    irp_node *e = irp_node_get(f->root, "e");
    assert_scalar(e, "one two\n");
    assert_int_equal(e->style, IRP_STYLE_FOLDED);
}

/* ---- duplicate keys ------------------------------------------------- */

static void test_parse_duplicate_key_at_second_occurrence(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "a: 1\nb: 2\na: 3\n"), IRP_EPARSE);
    assert_only_error(f, 3, 1, "duplicate key 'a' (first defined at line 1)");
}

static void test_parse_duplicate_key_nested_and_quoted(void **state)
{
    fx *f = *state;
    /* 'k' and k are the same key; so are "k" written with an escape. */
    assert_int_equal(parse(f, "steps:\n"
                              "  - id: a\n"
                              "    timeout: 2m\n"
                              "    run: [x]\n"
                              "    'timeout': 5m\n"),
                     IRP_EPARSE);
    assert_only_error(f, 5, 5, "duplicate key 'timeout' (first defined at line 3)");

    reset(f);
    assert_int_equal(parse(f, "x: {k: 1, \"\\x6b\": 2}\n"), IRP_EPARSE);
    assert_only_error(f, 1, 11, "duplicate key 'k' (first defined at line 1)");
}

/* A key written through an alias is still the same key, and the error
 * belongs where the alias is (line 3).  Aliases share the anchored node,
 * so its position is the anchor's: "1:1: duplicate key 'name' (first
 * defined at line 1)" points at the first definition instead. */
static void test_parse_duplicate_key_through_alias(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "&k name: 1\nother: 2\n*k : 3\n"), IRP_EPARSE);
    assert_only_error(f, 3, 1, "duplicate key 'name' (first defined at line 1)");
}

/* Every duplicate of a mapping is reported, not only the first, and each
 * names the first definition. */
static void test_parse_duplicate_keys_all_reported(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "a: 1\nb: 2\na: 3\nb: 4\na: 5\n"), IRP_EPARSE);
    assert_int_equal(f->diags.errors, 3);
    assert_has_error(f, 3, 1, "duplicate key 'a' (first defined at line 1)");
    assert_has_error(f, 4, 1, "duplicate key 'b' (first defined at line 2)");
    assert_has_error(f, 5, 1, "duplicate key 'a' (first defined at line 1)");
}

static void check_large_mapping(fx *f, size_t nkeys)
{
    sbuf b = { 0 };
    for (size_t i = 0; i < nkeys; i++)
        sb_add(&b, "k%04zu: v\n", i);
    size_t half = nkeys / 2;
    sb_add(&b, "k%04zu: dup\n", half);      /* line nkeys+1 */
    sb_add(&b, "k%04d: again\n", 7);        /* line nkeys+2 */
    sb_add(&b, "k%04zu: third\n", half);    /* line nkeys+3 */
    assert_int_equal(parse_lim(f, b.s, b.len, NULL), IRP_EPARSE);
    free(b.s);
    if (f->diags.n != 3)
        print_diags(&f->diags);
    assert_int_equal(f->diags.n, 3);
    char want[128];
    snprintf(want, sizeof want, "duplicate key 'k%04zu' (first defined at line %zu)", half,
             half + 1);
    /* Sorted by position: the order of the file. */
    assert_int_equal(f->diags.items[0].line, nkeys + 1);
    assert_string_equal(f->diags.items[0].msg, want);
    assert_int_equal(f->diags.items[1].line, nkeys + 2);
    assert_string_equal(f->diags.items[1].msg, "duplicate key 'k0007' (first defined at line 8)");
    assert_int_equal(f->diags.items[2].line, nkeys + 3);
    assert_string_equal(f->diags.items[2].msg, want);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(f->diags.items[i].col, 1);
}

/* Small mappings are checked pairwise, large ones by sorting: both paths
 * must find the same duplicates. */
static void test_parse_duplicate_keys_in_large_mapping(void **state)
{
    fx *f = *state;
    check_large_mapping(f, 1000);
    reset(f);
    check_large_mapping(f, 14);   /* 17 keys: just past the pairwise check */
    reset(f);
    check_large_mapping(f, 13);   /* 16 keys: pairwise */
}

static void test_parse_similar_keys_are_distinct(void **state)
{
    fx *f = *state;
    sbuf b = { 0 };
    for (size_t i = 0; i < 1000; i++)
        sb_add(&b, "k%zu: v\n", i);   /* k1, k10, k100: prefixes of each other */
    sb_add(&b, "'k1 ': v\nK1: v\n\"\": v\n");
    assert_int_equal(parse_lim(f, b.s, b.len, NULL), 0);
    free(b.s);
    assert_int_equal(f->root->count, 1003);
    assert_int_equal(f->diags.n, 0);
}

/* ---- keys and merge keys -------------------------------------------- */

static void test_parse_non_scalar_keys_rejected(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "? [a, b]\n: c\n"), IRP_EPARSE);
    assert_only_error(f, 1, 3, "a mapping key must be a scalar, not a list");

    reset(f);
    assert_int_equal(parse(f, "x: 1\n{y: 2}: z\n"), IRP_EPARSE);
    assert_only_error(f, 2, 1, "a mapping key must be a scalar, not a mapping");

    reset(f);
    assert_int_equal(parse(f, "base: &b {k: v}\nm:\n  *b : 1\n"), IRP_EPARSE);
    assert_only_error(f, 1, 7, "a mapping key must be a scalar, not a mapping");
}

static void test_parse_merge_key_rejected(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "base: &b {timeout: 2m}\n"
                              "step:\n"
                              "  <<: *b\n"
                              "  id: a\n"),
                     IRP_EPARSE);
    assert_only_error(f, 3, 3, "merge keys ('<<') are not supported");

    reset(f);
    assert_int_equal(parse(f, "a: &a {x: 1}\nb: &b {y: 2}\nc: {<<: [*a, *b]}\n"), IRP_EPARSE);
    assert_only_error(f, 3, 5, "merge keys ('<<') are not supported");

    /* A quoted '<<' is an ordinary key. */
    reset(f);
    assert_int_equal(parse(f, "'<<': 1\n\"<<x\": 2\n"), 0);
    assert_scalar(irp_node_get(f->root, "<<"), "1");
}

/* ---- tags ----------------------------------------------------------- */

static void test_parse_unsupported_tags_rejected(void **state)
{
    static const struct { const char *src, *msg; uint32_t line, col; } cases[] = {
        { "run: !!python/name:os.system ''\n", "unsupported tag '!!python/name:os.system'", 1, 6 },
        { "a: !!python/object/apply:os.system [ls]\n",
          "unsupported tag '!!python/object/apply:os.system'", 1, 4 },
        { "data: !!binary aGVsbG8=\n", "unsupported tag '!!binary'", 1, 7 },
        { "o: !!omap\n  - a: 1\n  - b: 2\n", "unsupported tag '!!omap'", 1, 4 },
        { "p: !!pairs [ {a: 1} ]\n", "unsupported tag '!!pairs'", 1, 4 },
        { "s: !!set {a, b}\n", "unsupported tag '!!set'", 1, 4 },
        { "t: !!timestamp 2001-12-14\n", "unsupported tag '!!timestamp'", 1, 4 },
        { "u: !<tag:example.com,2000:app/foo> x\n",
          "unsupported tag 'tag:example.com,2000:app/foo'", 1, 4 },
        { "%TAG !e! tag:example.com,2000:app/\n---\nx: !e!foo bar\n",
          "unsupported tag 'tag:example.com,2000:app/foo'", 3, 4 },
    };
    fx *f = *state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        reset(f);
        assert_int_equal(parse(f, cases[i].src), IRP_EPARSE);
        assert_only_error(f, cases[i].line, cases[i].col, cases[i].msg);
    }
}

/* The core schema's tags add nothing the field does not know: accepted
 * and dropped. */
static void test_parse_core_tags_dropped(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "a: !!str 1\nb: !!int 2\nc: !!map {x: y}\nd: !!seq [z]\n"
                              "e: !!null ''\nf: !!bool true\ng: !!float 1.5\n"),
                     0);
    for (size_t i = 0; i < f->root->count; i++)
        assert_null(irp_node_tag(f->root->u.map.pairs[i].value));
    assert_scalar(irp_node_get(f->root, "a"), "1");
    assert_int_equal(irp_node_get(f->root, "c")->kind, IRP_NODE_MAP);
    assert_int_equal(irp_node_get(f->root, "d")->kind, IRP_NODE_SEQ);
}

/* A core tag that contradicts its node is not "nothing new": `!!str
 * [rm, x]` says a string and gives a list.  Every constructing YAML
 * loader refuses these (PyYAML's expected-scalar, expected-mapping,
 * expected-sequence cases); dropping the tag silently runs the list. */
static void test_parse_core_tag_kind_mismatch_rejected(void **state)
{
    static const char *const cases[] = {
        "a: !!str [rm, x]\n", "a: !!int {k: v}\n", "a: !!map [x]\n",
        "a: !!seq {k: v}\n",  "a: !!seq x\n",      "a: !!map x\n",
    };
    fx *f = *state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        reset(f);
        print_message("input: %s", cases[i]);
        assert_int_equal(parse(f, cases[i]), IRP_EPARSE);
        assert_has_error(f, 1, 4, "tag");
    }
}

/* A local tag is most often an unquoted value starting with '!': kept so
 * the model can say so in context. */
static void test_parse_local_tag_kept(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "when: !steps.x.ok\nb: !foo [1]\nc: !bar {k: v}\nd: !baz qux\n"),
                     0);
    irp_node *when = irp_node_get(f->root, "when");
    assert_non_null(irp_node_tag(when));
    assert_string_equal(irp_node_tag(when), "!steps.x.ok");
    assert_scalar(when, "");
    assert_string_equal(irp_node_tag(irp_node_get(f->root, "b")), "!foo");
    assert_string_equal(irp_node_tag(irp_node_get(f->root, "c")), "!bar");
    irp_node *d = irp_node_get(f->root, "d");
    assert_string_equal(irp_node_tag(d), "!baz");
    assert_scalar(d, "qux");
    assert_int_equal(f->diags.n, 0);
}

/* ---- anchors and aliases -------------------------------------------- */

static void test_parse_alias_shares_anchored_node(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "a: &x {k: v}\nb: *x\nc: &s text\nd: [*s, *x]\n"), 0);
    irp_node *a = irp_node_get(f->root, "a");
    assert_ptr_equal(irp_node_get(f->root, "b"), a);
    irp_node *d = irp_node_get(f->root, "d");
    assert_ptr_equal(d->u.seq.items[1], a);
    /* The shared collection keeps the position of its definition. */
    assert_pos(irp_node_get(f->root, "b"), 1, 4);
    /* An aliased scalar is a copy standing where the alias stands. */
    assert_scalar(d->u.seq.items[0], "text");
    assert_pos(d->u.seq.items[0], 4, 5);
}

/* YAML lets a later anchor reuse a name: the latest definition wins. */
static void test_parse_anchor_redefined_latest_wins(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "a: &x one\nb: *x\nc: &x two\nd: *x\n"), 0);
    assert_scalar(irp_node_get(f->root, "b"), "one");
    assert_scalar(irp_node_get(f->root, "d"), "two");
}

/* An undefined alias is located, and the parse goes on to find the other
 * problems of the file in the same pass. */
static void test_parse_undefined_alias_located(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "a: *nope\nb: {x: 1, x: 2}\n"), IRP_EPARSE);
    assert_int_equal(f->diags.errors, 2);
    assert_has_error(f, 1, 4, "alias '*nope' names no anchor");
    assert_has_error(f, 2, 11, "duplicate key 'x'");

    /* An anchor is defined when its node ends: a node cannot hold itself. */
    reset(f);
    assert_int_equal(parse(f, "a: &r [1, *r]\n"), IRP_EPARSE);
    assert_only_error(f, 1, 11, "alias '*r' names no anchor");
}

/* Many anchors (the anchor table grows) each resolve to their own node. */
static void test_parse_many_anchors(void **state)
{
    fx *f = *state;
    sbuf b = { 0 };
    sb_add(&b, "defs:\n");
    for (int i = 0; i < 3000; i++)
        sb_add(&b, "  - &a%d v%d\n", i, i);
    sb_add(&b, "uses: [");
    for (int i = 2999; i >= 0; i--)
        sb_add(&b, "*a%d%s", i, i ? ", " : "]\n");
    assert_int_equal(parse_lim(f, b.s, b.len, NULL), 0);
    free(b.s);
    irp_node *defs = irp_node_get(f->root, "defs"), *uses = irp_node_get(f->root, "uses");
    assert_int_equal(uses->count, 3000);
    for (size_t i = 0; i < 3000; i++)
        assert_string_equal(uses->u.seq.items[2999 - i]->u.scalar.s,
                            defs->u.seq.items[i]->u.scalar.s);
}

/* ---- limits --------------------------------------------------------- */

static char *billion_laughs(int levels)
{
    sbuf b = { 0 };
    sb_add(&b, "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (int i = 1; i < levels; i++) {
        sb_add(&b, "a%d: &a%d [", i, i);
        for (int j = 0; j < 10; j++)
            sb_add(&b, "*a%d%s", i - 1, j < 9 ? ", " : "]\n");
    }
    return b.s;
}

static void test_parse_alias_bomb_bounded(void **state)
{
    fx *f = *state;
    for (int levels = 9; levels <= 10; levels++) {
        reset(f);
        char *src = billion_laughs(levels);
        double t0 = now_s();
        assert_int_equal(parse(f, src), IRP_ELIMIT);
        double dt = now_s() - t0;
        free(src);
        print_message("%d levels: %.3f s\n", levels, dt);
        assert_true(dt < 2.0);
        assert_int_equal(f->diags.errors, 1);
        const irp_diag *d = &f->diags.items[0];
        assert_non_null(strstr(d->msg, "document expands to more than 10000000 nodes"));
        assert_true(d->line >= 1 && d->col >= 1);
    }
}

/* The node count is exact, aliases counted with their whole subtree:
 * root 1 + a 1 + [1,2,3] 4 + b 1 + *x 4 + c 1 + *x 4 = 16. */
static void test_parse_node_limit_exact(void **state)
{
    fx *f = *state;
    const char *src = "a: &x [1, 2, 3]\nb: *x\nc: *x\n";
    irp_yaml_limits lim = { .max_nodes = 16 };
    assert_int_equal(parse_lim(f, src, strlen(src), &lim), 0);
    lim.max_nodes = 15;
    assert_int_equal(parse_lim(f, src, strlen(src), &lim), IRP_ELIMIT);
    assert_int_equal(f->diags.errors, 1);
    assert_non_null(strstr(f->diags.items[0].msg, "more than 15 nodes"));
}

static char *nested_flow(unsigned depth)
{
    char *s = malloc(2 * depth + 2);
    assert_non_null(s);
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    s[2 * depth] = '\n';
    s[2 * depth + 1] = '\0';
    return s;
}

/* Block mappings nested `depth` deep: "a:\n  a:\n    ... a: x". */
static char *nested_block(unsigned depth)
{
    sbuf b = { 0 };
    for (unsigned i = 0; i < depth; i++)
        sb_add(&b, "%*sa:%s", (int)(2 * i), "", i + 1 < depth ? "\n" : " x\n");
    return b.s;
}

static void test_parse_depth_64_ok_65_rejected(void **state)
{
    fx *f = *state;
    char *s = nested_flow(64);
    assert_int_equal(parse(f, s), 0);
    free(s);
    s = nested_flow(65);
    assert_int_equal(parse(f, s), IRP_ELIMIT);
    free(s);
    assert_only_error(f, 1, 65, "nesting deeper than 64 levels");

    reset(f);
    s = nested_block(64);
    assert_int_equal(parse(f, s), 0);
    free(s);
    s = nested_block(65);
    assert_int_equal(parse(f, s), IRP_ELIMIT);
    free(s);
    assert_only_error(f, 65, 129, "nesting deeper than 64 levels");

    /* Far deeper input fails the same way, at the first level too deep. */
    reset(f);
    s = nested_flow(100000);
    assert_int_equal(parse(f, s), IRP_ELIMIT);
    free(s);
    assert_only_error(f, 1, 65, "nesting deeper than 64 levels");
}

static void test_parse_custom_limits(void **state)
{
    fx *f = *state;
    irp_yaml_limits lim = { .max_depth = 2 };
    const char *ok = "a: {b: 1}\n", *deep = "a: {b: [1]}\n";
    assert_int_equal(parse_lim(f, ok, strlen(ok), &lim), 0);
    assert_int_equal(parse_lim(f, deep, strlen(deep), &lim), IRP_ELIMIT);
    assert_only_error(f, 1, 8, "nesting deeper than 2 levels");

    /* The size limit is checked before parsing: a whole-file diagnostic. */
    reset(f);
    irp_yaml_limits small = { .max_bytes = 16 };
    const char *sixteen = "abcdefgh: ijklm\n";
    assert_int_equal(strlen(sixteen), 16);
    assert_int_equal(parse_lim(f, sixteen, 16, &small), 0);
    const char *seventeen = "abcdefgh: ijklmn\n";
    assert_int_equal(parse_lim(f, seventeen, 17, &small), IRP_ELIMIT);
    assert_int_equal(f->diags.n, 1);
    assert_int_equal(f->diags.items[0].line, 0);
    assert_non_null(strstr(f->diags.items[0].msg, "larger than"));
}

/* ---- bytes ---------------------------------------------------------- */

static void test_parse_invalid_utf8_located(void **state)
{
    static const struct { const char *src; size_t len; uint32_t line, col; } cases[] = {
        { "a: b\nc: \xff\n", 10, 2, 4 },               /* byte that starts nothing */
        { "a: b\nc: x\x80y\n", 12, 2, 5 },             /* stray continuation byte */
        { "a: \xc0\xaf\n", 6, 1, 4 },                   /* overlong '/' */
        { "a: \xed\xa0\x80\n", 7, 1, 4 },               /* UTF-16 surrogate */
        { "a: \xf4\x90\x80\x80\n", 8, 1, 4 },           /* past U+10FFFF */
        { "a: b\nc: \xc3", 9, 2, 4 },                   /* cut at the end of the file */
    };
    fx *f = *state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        reset(f);
        print_message("case %zu\n", i);
        assert_int_equal(parse_lim(f, cases[i].src, cases[i].len, NULL), IRP_EPARSE);
        assert_int_equal(f->diags.errors, 1);
        assert_int_equal(f->diags.items[0].line, cases[i].line);
        assert_int_equal(f->diags.items[0].col, cases[i].col);
    }
}

/* A Latin-1 'é' (0xE9) is a lead byte followed by no continuation: the
 * error belongs where the 0xE9 is (column 7), the character an editor
 * shows as wrong -- not on the byte after it (here the newline). */
static void test_parse_invalid_utf8_points_at_bad_sequence(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "a: ok\nb: caf\xe9\nc: d\n"), IRP_EPARSE);
    assert_only_error(f, 2, 7, "UTF-8");
}

/* A byte-order mark is not a column: an error on line 1 of a file that
 * starts with one is where an editor shows it. */
static void test_parse_invalid_utf8_after_bom(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "\xef\xbb\xbf" "a: \xff\n"), IRP_EPARSE);
    assert_only_error(f, 1, 4, "UTF-8");
}

static void test_parse_bom_is_not_content(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "\xef\xbb\xbf" "a: b\nc: d\n"), 0);
    assert_pos(f->root->u.map.pairs[0].key, 1, 1);
    assert_pos(irp_node_get(f->root, "a"), 1, 4);
    assert_scalar(irp_node_get(f->root, "a"), "b");
}

static void test_parse_empty_input(void **state)
{
    static const char *const empty[] = { "", "\n\n", "# only a comment\n", "\xef\xbb\xbf" };
    fx *f = *state;
    for (size_t i = 0; i < sizeof empty / sizeof *empty; i++) {
        reset(f);
        assert_int_equal(parse(f, empty[i]), IRP_EPARSE);
        assert_only_error(f, 1, 1, "empty document");
    }
    /* An explicit empty document is a null scalar: the model says what
     * it should have been. */
    reset(f);
    assert_int_equal(parse(f, "---\n"), 0);
    assert_int_equal(f->root->kind, IRP_NODE_SCALAR);
    assert_true(irp_node_is_null(f->root));
}

static void test_parse_two_documents_rejected(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "a: 1\n---\nb: 2\n"), IRP_EPARSE);
    assert_only_error(f, 2, 1, "a playbook is one YAML document");

    reset(f);
    assert_int_equal(parse(f, "--- a\n--- b\n"), IRP_EPARSE);
    assert_only_error(f, 2, 1, "one YAML document");

    /* A document end marker alone is still one document. */
    reset(f);
    assert_int_equal(parse(f, "---\na: 1\n...\n"), 0);
}

static void test_parse_nul_bytes(void **state)
{
    fx *f = *state;
    /* A raw NUL byte is not allowed in YAML: located. */
    assert_int_equal(parse_lim(f, "a: b\0c\n", 7, NULL), IRP_EPARSE);
    assert_only_error(f, 1, 5, "control characters are not allowed");

    /* An escaped one is a valid character of a double-quoted scalar: the
     * node keeps every byte and its length. */
    reset(f);
    assert_int_equal(parse(f, "a: \"x\\0y\"\n"), 0);
    irp_node *a = irp_node_get(f->root, "a");
    assert_int_equal(a->len, 3);
    assert_memory_equal(a->u.scalar.s, "x\0y", 4);
}

static void test_parse_syntax_errors_located(void **state)
{
    static const struct { const char *src, *msg; uint32_t line, col; } cases[] = {
        { "a: b: c\n", "mapping values are not allowed in this context", 1, 5 },
        { "a: [b, c\nd: e\n", "did not find expected ',' or ']'", 2, 2 },
        { "a: \"open\n", "found unexpected end of stream", 2, 1 },
        { "a:\n  - b\n c: d\n", "did not find expected key", 3, 2 },
        { "a: b\n\tc: d\n", "found a tab character that violates indentation", 2, 1 },
        { "a: *\n", "did not find expected alphabetic or numeric character", 1, 5 },
    };
    fx *f = *state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        reset(f);
        assert_int_equal(parse(f, cases[i].src), IRP_EPARSE);
        assert_only_error(f, cases[i].line, cases[i].col, cases[i].msg);
    }
}

/* Problems that do not stop the parser all come out of one pass. */
static void test_parse_reports_every_problem_in_one_pass(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "a: 1\n"
                              "b: !!python/name:os.system x\n"
                              "a: 2\n"
                              "c:\n"
                              "  <<: {x: 1}\n"
                              "d: *missing\n"),
                     IRP_EPARSE);
    assert_int_equal(f->diags.errors, 4);
    assert_has_error(f, 2, 4, "unsupported tag");
    assert_has_error(f, 3, 1, "duplicate key 'a'");
    assert_has_error(f, 5, 3, "merge keys");
    assert_has_error(f, 6, 4, "names no anchor");
}

/* ---- helpers of node.h ---------------------------------------------- */

static void test_node_get_is_null_kind_name(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "a: \nb: ~\nc: null\nd: Null\ne: NULL\nf: 'null'\ng: nul\n"
                              "h: [x]\ni: {j: k}\n"),
                     0);
    const char *nulls = "abcde";
    for (const char *k = nulls; *k; k++) {
        char key[2] = { *k, 0 };
        assert_true(irp_node_is_null(irp_node_get(f->root, key)));
    }
    assert_false(irp_node_is_null(irp_node_get(f->root, "f")));
    assert_false(irp_node_is_null(irp_node_get(f->root, "g")));
    assert_false(irp_node_is_null(irp_node_get(f->root, "h")));
    assert_false(irp_node_is_null(NULL));
    assert_null(irp_node_get(f->root, "missing"));
    assert_null(irp_node_get(irp_node_get(f->root, "h"), "x"));
    assert_null(irp_node_get(NULL, "a"));
    assert_string_equal(irp_node_kind_name(irp_node_get(f->root, "g")), "scalar");
    assert_string_equal(irp_node_kind_name(irp_node_get(f->root, "h")), "list");
    assert_string_equal(irp_node_kind_name(irp_node_get(f->root, "i")), "mapping");
    assert_string_equal(irp_node_kind_name(NULL), "nothing");
}

static char *temp_file(const char *content, size_t len)
{
    char *path = strdup("/tmp/irp-test-node-XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
    return path;
}

static void test_file_read(void **state)
{
    char data[100];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)('a' + i % 26);
    char *path = temp_file(data, sizeof data);
    char *buf;
    size_t len;
    assert_int_equal(irp_file_read(path, 1000, &buf, &len), 0);
    assert_int_equal(len, 100);
    assert_memory_equal(buf, data, 100);
    assert_int_equal(buf[100], '\0');
    free(buf);
    assert_int_equal(irp_file_read(path, 100, &buf, &len), 0);
    free(buf);
    assert_int_equal(irp_file_read(path, 99, &buf, &len), IRP_ELIMIT);
    assert_null(buf);
    unlink(path);
    free(path);

    assert_int_equal(irp_file_read("/nonexistent/irp/playbook.yaml", 1000, &buf, &len),
                     IRP_ENOENT);
    assert_null(buf);
    assert_int_equal(irp_file_read("/tmp", 1000, &buf, &len), IRP_EINVAL);
    assert_int_equal(irp_file_read("/dev/null", 1000, &buf, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(buf[0], '\0');
    free(buf);
}

static void test_file_map(void **state)
{
    static const char data[] = "irp: 1\nid: demo\n";
    char *path = temp_file(data, sizeof data - 1);
    const char *buf;
    size_t len, mapped;
    int fd;
    /* A regular file is mapped, and open for reading it through once. */
    assert_int_equal(irp_file_map(path, 1000, &buf, &len, &mapped, &fd), 0);
    assert_int_equal(len, sizeof data - 1);
    assert_int_equal(mapped, len);
    assert_memory_equal(buf, data, len);
    assert_true(fd >= 0);
    char head[4];
    assert_int_equal(read(fd, head, sizeof head), (ssize_t)sizeof head);
    assert_memory_equal(head, data, sizeof head);
    close(fd);
    irp_file_unmap(buf, mapped);
    assert_int_equal(irp_file_map(path, len - 1, &buf, &len, &mapped, &fd), IRP_ELIMIT);
    assert_null(buf);
    assert_int_equal(fd, -1);
    unlink(path);
    free(path);

    /* What cannot be mapped is read, NUL-terminated, with no fd. */
    path = temp_file("", 0);
    assert_int_equal(irp_file_map(path, 1000, &buf, &len, &mapped, &fd), 0);
    assert_int_equal(len, 0);
    assert_int_equal(mapped, 0);
    assert_int_equal(fd, -1);
    assert_int_equal(buf[0], '\0');
    irp_file_unmap(buf, mapped);
    unlink(path);
    free(path);
    assert_int_equal(irp_file_map("/dev/null", 1000, &buf, &len, &mapped, &fd), 0);
    assert_int_equal(mapped, 0);
    irp_file_unmap(buf, mapped);
    assert_int_equal(irp_file_map("/tmp", 1000, &buf, &len, &mapped, &fd), IRP_EINVAL);
    assert_int_equal(irp_file_map("/nonexistent/irp/x.yaml", 1000, &buf, &len, &mapped, &fd),
                     IRP_ENOENT);
}

/* ---- memory --------------------------------------------------------- */

/* Millions of nodes: the size of one is the size of the tree. */
static void test_node_size(void **state)
{
    assert_true(sizeof(irp_node) <= 16 + sizeof(void *));
}

static void test_parse_short_scalars_share_one_copy(void **state)
{
    fx *f = *state;
    assert_int_equal(parse(f, "a: [true, true, '10m', \"10m\"]\nb: true\n"
                              "c: [a value of more than thirty-two bytes, "
                              "a value of more than thirty-two bytes]\n"),
                     0);
    const irp_node *a = irp_node_get(f->root, "a");
    assert_ptr_equal(a->u.seq.items[0]->u.scalar.s, a->u.seq.items[1]->u.scalar.s);
    assert_ptr_equal(a->u.seq.items[0]->u.scalar.s, irp_node_get(f->root, "b")->u.scalar.s);
    /* Shared text, own node: the style is the node's. */
    assert_ptr_equal(a->u.seq.items[2]->u.scalar.s, a->u.seq.items[3]->u.scalar.s);
    assert_int_equal(a->u.seq.items[2]->style, IRP_STYLE_SINGLE);
    assert_int_equal(a->u.seq.items[3]->style, IRP_STYLE_DOUBLE);
    const irp_node *c = irp_node_get(f->root, "c");
    assert_scalar(c->u.seq.items[0], "a value of more than thirty-two bytes");
    assert_scalar(c->u.seq.items[1], "a value of more than thirty-two bytes");
    /* Strings that differ only past the first bytes, or in length, stay
     * apart. */
    reset(f);
    static const char *const want[] = {
        "abcdefgh", "abcdefgha", "aaaaaaaa", "aaaaaaaaa", "ab", "abb", "abcdefghijklmnop",
        "abcdefghijklmnoq", "", "", "abcdefghijklmnopqrstuvwxyz012345",
        "abcdefghijklmnopXrstuvwxyz012345", "aaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaa",
    };
    const size_t n = sizeof want / sizeof *want;
    sbuf b = { 0 };
    for (size_t i = 0; i < n; i++)
        sb_add(&b, "- '%s'\n", want[i]);
    assert_int_equal(parse(f, b.s), 0);
    free(b.s);
    assert_int_equal(f->root->count, n);
    for (size_t i = 0; i < n; i++)
        assert_scalar(f->root->u.seq.items[i], want[i]);
}

/* ---- streaming ------------------------------------------------------ */

typedef struct got_items {
    size_t n;
    const char *first[16];   /* text of each item's first scalar, or its own */
    bool kept[16];
    const irp_node *node[16];
    int fail_at;             /* return IRP_ENOMEM for this item (1-based), or 0 */
} got_items;

static int record_item(void *ctx, irp_node *item, bool kept)
{
    got_items *g = ctx;
    assert_true(g->n < 16);
    const irp_node *n = item;
    while (n->kind == IRP_NODE_MAP && n->count)
        n = n->u.map.pairs[0].value;
    while (n->kind == IRP_NODE_SEQ && n->count)
        n = n->u.seq.items[0];
    g->first[g->n] = n->kind == IRP_NODE_SCALAR ? n->u.scalar.s : NULL;
    g->kept[g->n] = kept;
    g->node[g->n] = item;
    g->n++;
    return g->fail_at && g->n == (size_t)g->fail_at ? IRP_ENOMEM : 0;
}

static int count_item(void *ctx, irp_node *item, bool kept)
{
    ((got_items *)ctx)->n++;
    return 0;
}

static int parse_stream(fx *f, const char *s, got_items *g)
{
    irp_yaml_stream st = { "steps", record_item, g };
    f->root = (irp_node *)f;
    int rc = irp_yaml_parse_stream(&f->arena, "t.yaml", s, strlen(s), -1, NULL, &st, &f->diags,
                                   &f->root);
    irp_diag_sort(&f->diags);
    if (rc)
        assert_null(f->root);
    return rc;
}

static void test_stream_items_in_order(void **state)
{
    fx *f = *state;
    got_items g = { 0 };
    assert_int_equal(parse_stream(f, "id: x\nsteps:\n  - id: a\n    run: [x]\n  - {id: b}\n"
                                     "  - c\nafter: [1]\n", &g),
                     0);
    assert_int_equal(g.n, 3);
    /* Strings outlive the items. */
    assert_string_equal(g.first[0], "a");
    assert_string_equal(g.first[1], "b");
    assert_string_equal(g.first[2], "c");
    assert_false(g.kept[0] || g.kept[1] || g.kept[2]);
    const irp_node *steps = irp_node_get(f->root, "steps");
    assert_int_equal(steps->kind, IRP_NODE_SEQ);
    assert_true(steps->flags & IRP_NODE_STREAMED);
    assert_int_equal(steps->count, 0);
    assert_pos(steps, 3, 3);
    assert_int_equal(irp_node_get(f->root, "after")->count, 1);
    assert_int_equal(f->diags.n, 0);
}

/* Items other nodes point into, or that point to tagged nodes elsewhere,
 * stay in the tree. */
static void test_stream_keeps_shared_items(void **state)
{
    fx *f = *state;
    got_items g = { 0 };
    assert_int_equal(parse_stream(f, "t: &t !tag {k: v}\n"
                                     "p: &p {k: v}\n"
                                     "steps:\n"
                                     "  - {a: *t}\n"
                                     "  - &s {id: s}\n"
                                     "  - {id: x, env: &e {A: b}}\n"
                                     "  - {a: *p}\n"
                                     "  - *t\n"
                                     "use: [*s, *e]\n", &g),
                     0);
    assert_int_equal(g.n, 5);
    assert_true(g.kept[0]);
    assert_true(g.kept[1]);
    assert_true(g.kept[2]);
    assert_false(g.kept[3]);   /* no tag under *p: nothing to report later */
    assert_true(g.kept[4]);
    const irp_node *steps = irp_node_get(f->root, "steps");
    assert_true(steps->flags & IRP_NODE_STREAMED);
    assert_true(steps->flags & IRP_NODE_TAGS_BELOW);
    assert_int_equal(steps->count, 4);
    assert_ptr_equal(steps->u.seq.items[0], g.node[0]);
    assert_ptr_equal(steps->u.seq.items[3], irp_node_get(f->root, "t"));
    const irp_node *use = irp_node_get(f->root, "use");
    assert_ptr_equal(use->u.seq.items[0], g.node[1]);
    assert_ptr_equal(use->u.seq.items[1], irp_node_get(g.node[2], "env"));
    assert_scalar(irp_node_get(use->u.seq.items[1], "A"), "b");
}

static void test_stream_only_top_level_unanchored(void **state)
{
    fx *f = *state;
    static const char *const docs[] = {
        "steps: &S [a, b]\nx: *S\n",
        "vars: {steps: [a, b]}\n",
        "- steps: [a, b]\n",
        "steps: {a: b}\n",
        "stepsx: [a, b]\n",
    };
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        got_items g = { 0 };
        reset(f);
        assert_int_equal(parse_stream(f, docs[i], &g), 0);
        assert_int_equal(g.n, 0);
    }
}

/* Once the document is known to be refused, items are not handed over;
 * an error from the callback stops the parse. */
static void test_stream_errors(void **state)
{
    fx *f = *state;
    got_items g = { 0 };
    assert_int_equal(parse_stream(f, "steps:\n  - {id: a, id: b}\n  - {id: c}\n", &g),
                     IRP_EPARSE);
    assert_int_equal(g.n, 0);
    assert_only_error(f, 2, 13, "duplicate key 'id'");

    reset(f);
    got_items h = { .fail_at = 2 };
    assert_int_equal(parse_stream(f, "steps: [a, b, c]\n", &h), IRP_ENOMEM);
    assert_int_equal(h.n, 2);
}

/* The nodes of one item serve the next: many items cost the memory of
 * one, plus the strings. */
static void test_stream_reuses_item_memory(void **state)
{
    fx *f = *state;
    sbuf b = { 0 };
    sb_add(&b, "steps:\n");
    for (int i = 0; i < 20000; i++)
        sb_add(&b, "  - {id: s%d, run: [a, b, c, d], timeout: 5m, retries: 3}\n", i);
    irp_arena whole;
    irp_arena_init(&whole, 0);
    irp_node *root;
    assert_int_equal(irp_yaml_parse(&whole, "t.yaml", b.s, b.len, NULL, &f->diags, &root), 0);
    got_items g = { 0 };
    irp_yaml_stream st = { "steps", count_item, &g };
    assert_int_equal(irp_yaml_parse_stream(&f->arena, "t.yaml", b.s, b.len, -1, NULL, &st,
                                           &f->diags, &root), 0);
    assert_int_equal(g.n, 20000);
    print_message("whole tree %zu bytes, streamed %zu\n", whole.used, f->arena.used);
    assert_true(f->arena.used * 4 < whole.used);
    irp_arena_release(&whole);
    free(b.s);
}

/* Read from a file descriptor, the document is the same. */
static void test_stream_reads_fd(void **state)
{
    fx *f = *state;
    static const char doc[] = "a: [1, 'two', {b: c}]\nd: &x e\nf: *x\n";
    char *path = temp_file(doc, sizeof doc - 1);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    irp_node *root;
    assert_int_equal(irp_yaml_parse_stream(&f->arena, "t.yaml", doc, sizeof doc - 1, fd, NULL,
                                           NULL, &f->diags, &root), 0);
    close(fd);
    unlink(path);
    free(path);
    assert_scalar(irp_node_get(root, "a")->u.seq.items[1], "two");
    assert_pos(irp_node_get(root, "a")->u.seq.items[2], 1, 15);
    assert_scalar(irp_node_get(root, "f"), "e");
    assert_pos(irp_node_get(root, "f"), 3, 4);
}

/* ---- what the loader leaves to the model ---------------------------- */

static int load(const char *src, size_t len, irp_diag_list *d)
{
    irp_playbook *pb = NULL;
    int rc = irp_playbook_load_mem("t.yaml", src, len, d, &pb);
    irp_diag_sort(d);
    irp_playbook_free(pb);
    return rc;
}

/* "id\0" is a different key from id for the duplicate check (its length
 * differs) but the same key for the model, which compares C strings: the
 * second one silently replaces the playbook's id. */
static void test_load_nul_in_key_is_not_a_second_id(void **state)
{
    static const char src[] = "irp: 1\n"
                              "id: demo\n"
                              "\"id\\0\": evil\n"
                              "steps:\n"
                              "  - id: a\n"
                              "    run: [x]\n";
    irp_diag_list d = IRP_DIAG_LIST_INIT;
    int rc = load(src, sizeof src - 1, &d);
    bool located = false;
    for (size_t i = 0; i < d.n; i++) {
        print_message("  have %u:%u: %s\n", d.items[i].line, d.items[i].col, d.items[i].msg);
        located |= d.items[i].line == 3 && d.items[i].col == 1;
    }
    assert_int_not_equal(rc, 0);
    assert_true(located);
    irp_diag_list_release(&d);
}

/* node.h keeps local tags "so the model can say what was probably meant";
 * on a mapping or a list the model must still refuse them, as it does on
 * scalars. */
static void test_load_local_tag_on_collection_rejected(void **state)
{
    static const struct { const char *src; uint32_t line, col; } cases[] = {
        { "--- !playbook\nirp: 1\nid: demo\nsteps:\n  - id: a\n    run: [x]\n", 1, 5 },
        { "irp: 1\nid: demo\nsteps: !list\n  - id: a\n    run: [x]\n", 3, 8 },
        { "irp: 1\nid: demo\nsteps:\n  - !step\n    id: a\n    run: [x]\n", 4, 5 },
        { "irp: 1\nid: demo\nsteps:\n  - id: a\n    notify: !n {via: file, to: /x, body: y}\n",
          5, 13 },
        { "irp: 1\nid: demo\ninputs: !in\n  host:\nsteps:\n  - id: a\n    run: [x]\n", 3, 9 },
        { "irp: 1\nid: demo\nsteps:\n  - id: a\n    run: [x]\n    simulate: !s {duration: 1s}\n",
          6, 15 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        irp_diag_list d = IRP_DIAG_LIST_INIT;
        int rc = load(cases[i].src, strlen(cases[i].src), &d);
        bool found = false;
        for (size_t j = 0; j < d.n; j++)
            found |= d.items[j].line == cases[i].line && d.items[j].col == cases[i].col &&
                     strstr(d.items[j].msg, "tag") != NULL;
        if (!found)
            print_message("case %zu: want a tag error at %u:%u\n", i, cases[i].line,
                          cases[i].col);
        assert_int_not_equal(rc, 0);
        assert_true(found);
        irp_diag_list_release(&d);
    }
}

/* libyaml also reads UTF-16; then a diagnostic inside a block scalar
 * (found by scanning the source bytes) must land where it does in the
 * same playbook written in UTF-8 -- or the file must be refused as not
 * UTF-8. */
static void test_load_utf16_positions(void **state)
{
    static const char utf8[] = "irp: 1\nid: demo\nsteps:\n  - id: a\n    run: |\n"
                               "      echo '${{ inputs.x }}'\n";
    char utf16[2 + 2 * sizeof utf8];
    utf16[0] = (char)0xff;
    utf16[1] = (char)0xfe;
    for (size_t i = 0; i < sizeof utf8 - 1; i++) {
        utf16[2 + 2 * i] = utf8[i];
        utf16[3 + 2 * i] = 0;
    }
    irp_diag_list d8 = IRP_DIAG_LIST_INIT, d16 = IRP_DIAG_LIST_INIT;
    assert_int_not_equal(load(utf8, sizeof utf8 - 1, &d8), 0);
    assert_int_not_equal(load(utf16, 2 + 2 * (sizeof utf8 - 1), &d16), 0);
    bool refused = d16.n == 1 && (strstr(d16.items[0].msg, "UTF-8") || strstr(d16.items[0].msg, "UTF-16"));
    if (!refused) {
        assert_int_equal(d16.n, d8.n);
        for (size_t i = 0; i < d8.n; i++) {
            print_message("utf-8 %u:%u %s / utf-16 %u:%u %s\n", d8.items[i].line,
                          d8.items[i].col, d8.items[i].msg, d16.items[i].line,
                          d16.items[i].col, d16.items[i].msg);
            assert_int_equal(d16.items[i].line, d8.items[i].line);
            assert_int_equal(d16.items[i].col, d8.items[i].col);
        }
    }
    irp_diag_list_release(&d8);
    irp_diag_list_release(&d16);
}

/* Steps are built while the file is parsed; a document refused later
 * (here by a syntax error after the steps) reports only that. */
static void test_load_streamed_steps_silent_when_refused(void **state)
{
    static const char src[] = "irp: 1\nid: demo\nsteps:\n  - id: a\n    run: [x]\n"
                              "    bogus: 1\nvars: [\n";
    irp_diag_list d = IRP_DIAG_LIST_INIT;
    assert_int_not_equal(load(src, sizeof src - 1, &d), 0);
    for (size_t i = 0; i < d.n; i++)
        print_message("  have %u:%u: %s\n", d.items[i].line, d.items[i].col, d.items[i].msg);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.items[0].line, 8);
    irp_diag_list_release(&d);
}

/* Diagnostics of streamed steps count and truncate as any others. */
static void test_load_streamed_steps_diagnostics_capped(void **state)
{
    sbuf b = { 0 };
    sb_add(&b, "irp: 1\nid: demo\nbogus: 1\nsteps:\n");
    for (int i = 0; i < 30; i++)
        sb_add(&b, "  - id: s%d\n    run: [x]\n    tiemout: 1m\n", i);
    irp_diag_list d = IRP_DIAG_LIST_INIT;
    d.max = 20;
    irp_playbook *pb = NULL;
    assert_int_equal(irp_playbook_load_mem("t.yaml", b.s, b.len, &d, &pb), IRP_EPARSE);
    assert_non_null(pb);
    assert_int_equal(pb->n_steps, 30);
    assert_int_equal(d.errors, 31);
    assert_int_equal(d.n, 20);
    assert_true(d.truncated);
    /* Kept in the order they were found: the steps first. */
    assert_non_null(strstr(d.items[0].msg, "did you mean 'timeout'"));
    assert_int_equal(d.items[0].line, 7);
    irp_playbook_free(pb);
    irp_diag_list_release(&d);
    free(b.s);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_parse_positions_block),
        T(test_parse_positions_flow),
        T(test_parse_positions_count_characters),
        T(test_parse_scalars_keep_exact_bytes),
        T(test_parse_duplicate_key_at_second_occurrence),
        T(test_parse_duplicate_key_nested_and_quoted),
        T(test_parse_duplicate_key_through_alias),
        T(test_parse_duplicate_keys_all_reported),
        T(test_parse_duplicate_keys_in_large_mapping),
        T(test_parse_similar_keys_are_distinct),
        T(test_parse_non_scalar_keys_rejected),
        T(test_parse_merge_key_rejected),
        T(test_parse_unsupported_tags_rejected),
        T(test_parse_core_tags_dropped),
        T(test_parse_core_tag_kind_mismatch_rejected),
        T(test_parse_local_tag_kept),
        T(test_parse_alias_shares_anchored_node),
        T(test_parse_anchor_redefined_latest_wins),
        T(test_parse_undefined_alias_located),
        T(test_parse_many_anchors),
        T(test_parse_alias_bomb_bounded),
        T(test_parse_node_limit_exact),
        T(test_parse_depth_64_ok_65_rejected),
        T(test_parse_custom_limits),
        T(test_parse_invalid_utf8_located),
        T(test_parse_invalid_utf8_points_at_bad_sequence),
        T(test_parse_invalid_utf8_after_bom),
        T(test_parse_bom_is_not_content),
        T(test_parse_empty_input),
        T(test_parse_two_documents_rejected),
        T(test_parse_nul_bytes),
        T(test_parse_syntax_errors_located),
        T(test_parse_reports_every_problem_in_one_pass),
        T(test_node_get_is_null_kind_name),
        T(test_file_read),
        T(test_file_map),
        T(test_node_size),
        T(test_parse_short_scalars_share_one_copy),
        T(test_stream_items_in_order),
        T(test_stream_keeps_shared_items),
        T(test_stream_only_top_level_unanchored),
        T(test_stream_errors),
        T(test_stream_reuses_item_memory),
        T(test_stream_reads_fd),
        T(test_load_streamed_steps_silent_when_refused),
        T(test_load_streamed_steps_diagnostics_capped),
        T(test_load_nul_in_key_is_not_a_second_id),
        T(test_load_local_tag_on_collection_rejected),
        T(test_load_utf16_positions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
