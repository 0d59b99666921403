#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irp/diag.h"
#include "irp/error.h"
#include "irp/expr.h"
#include "irp/timeutil.h"

/* ---------------------------------------------------------------- */
/* The tree                                                          */

enum node_kind {
    N_LITERAL,
    N_LIST,
    N_REF,
    N_NOT,
    N_AND,
    N_OR,
    N_CMP,
    N_CALL,
};

enum cmp_op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };

struct func;

/* 32 bytes: a large playbook holds tens of thousands of expressions.
 * Offsets, lengths and counts fit 32 bits, as irp_expr_parse_range()
 * refuses longer text. */
struct irp_expr {
    uint8_t kind;                  /* enum node_kind */
    uint32_t offset;               /* where the node's text starts */
    union {
        struct {
            double n;
            const char *s;             /* arena; NUL-terminated */
            uint32_t len;
            uint8_t type;              /* irp_value_type */
            bool b;
        } lit;
        struct {
            const char **seg;          /* arena */
            size_t n;
        } ref;
        struct {                       /* N_LIST, N_AND, N_OR, N_CALL */
            irp_expr **items;
            const struct func *fn;     /* N_CALL only */
            uint32_t n;
        } list;
        struct {
            irp_expr *operand;
        } not_;
        struct {
            irp_expr *l, *r;
            uint32_t op_offset;
            uint8_t op;                /* enum cmp_op */
        } cmp;
    } u;
};

static const char *const roots[] = {
    "inputs", "vars", "env", "secrets", "item", "index", "steps", "run", "deadlines",
};
#define N_ROOTS (sizeof roots / sizeof roots[0])

static const char *const cmp_names[] = { "==", "!=", "<", "<=", ">", ">=" };

/* ---------------------------------------------------------------- */
/* Errors                                                            */

static int set_error(irp_expr_error *err, int code, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int set_error(irp_expr_error *err, int code, size_t offset, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->offset = offset;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int oom(irp_expr_error *err, size_t offset)
{
    return set_error(err, IRP_ENOMEM, offset, "out of memory");
}

/* ---------------------------------------------------------------- */
/* Tokens                                                            */

enum tok_kind {
    T_EOF, T_NUM, T_STR, T_NAME,
    T_LPAREN, T_RPAREN, T_LBRACKET, T_RBRACKET, T_COMMA,
    T_NOT, T_AND, T_OR,
    T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE,
};

struct token {
    enum tok_kind kind;
    size_t start, end;   /* offsets in src */
    double num;          /* T_NUM */
    char *str;           /* T_STR, decoded, in the arena */
    size_t len;
};

struct parser {
    irp_arena *a;
    const char *src;
    size_t pos, end;
    struct token tok;
    unsigned nesting;
    irp_expr_error *err;
    int rc;              /* first error; parsing stops at it */
};

static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || is_digit(c) || c == '-';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void *fail(struct parser *p, int code, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void *fail(struct parser *p, int code, size_t offset, const char *fmt, ...)
{
    if (p->rc)
        return NULL;
    p->rc = code;
    if (p->err) {
        va_list ap;
        p->err->code = code;
        p->err->offset = offset;
        va_start(ap, fmt);
        vsnprintf(p->err->msg, sizeof p->err->msg, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

static void *fail_oom(struct parser *p)
{
    return fail(p, IRP_ENOMEM, p->tok.start, "out of memory");
}

/* How a token reads in a message: 'text' (cut short) or the end. */
static const char *tok_text(const struct parser *p, const struct token *t, char *buf, size_t n)
{
    if (t->kind == T_EOF)
        return "end of expression";
    size_t len = t->end - t->start;
    if (len > 24)
        snprintf(buf, n, "'%.24s...'", p->src + t->start);
    else
        snprintf(buf, n, "'%.*s'", (int)len, p->src + t->start);
    return buf;
}

static bool lex_string(struct parser *p, struct token *t)
{
    char q = p->src[p->pos];
    size_t i = p->pos + 1;
    /* Decoded text is never longer than the source. */
    char *out = irp_arena_alloc(p->a, p->end - i + 1);
    size_t n = 0;
    if (!out)
        return fail_oom(p), false;
    for (; i < p->end && p->src[i] != q; i++) {
        char c = p->src[i];
        if (c == '\\') {
            if (++i >= p->end)
                break;
            switch (p->src[i]) {
            case '\\': case '\'': case '"': c = p->src[i]; break;
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            default:
                if ((unsigned char)p->src[i] > 0x20 && (unsigned char)p->src[i] < 0x7f)
                    fail(p, IRP_EPARSE, i - 1, "unknown escape '\\%c' in string", p->src[i]);
                else
                    fail(p, IRP_EPARSE, i - 1, "unknown escape in string");
                return false;
            }
        }
        out[n++] = c;
    }
    if (i >= p->end) {
        fail(p, IRP_EPARSE, t->start, "unterminated string");
        return false;
    }
    t->kind = T_STR;
    t->str = out;
    t->len = n;
    p->pos = i + 1;
    return true;
}

/* A number or a duration, at a digit or at '-' before a digit. */
static bool lex_number(struct parser *p, struct token *t)
{
    const char *s = p->src;
    size_t i = p->pos + (s[p->pos] == '-');
    size_t digits_start = i;
    bool plain = true;   /* no fraction, no exponent: may be a duration */

    while (i < p->end && is_digit(s[i]))
        i++;
    if (i + 1 < p->end && s[i] == '.' && is_digit(s[i + 1])) {
        plain = false;
        for (i++; i < p->end && is_digit(s[i]); i++)
            ;
    }
    if (i < p->end && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < p->end && (s[j] == '+' || s[j] == '-'))
            j++;
        if (j < p->end && is_digit(s[j])) {
            plain = false;
            for (i = j; i < p->end && is_digit(s[i]); i++)
                ;
        }
    }
    if (i < p->end && (is_name_start(s[i]) || is_digit(s[i]))) {
        size_t j = i;
        while (j < p->end && (is_name_start(s[j]) || is_digit(s[j])))
            j++;
        int64_t ms = 0;
        int rc = plain ? irp_duration_parse(s + digits_start, j - digits_start, &ms) : IRP_EINVAL;
        if (rc == IRP_ERANGE) {
            fail(p, IRP_EPARSE, t->start, "duration '%.*s' is out of range",
                 (int)(j - t->start), s + t->start);
            return false;
        }
        if (rc < 0) {
            fail(p, IRP_EPARSE, t->start, "invalid number or duration '%.*s'",
                 (int)(j - t->start), s + t->start);
            return false;
        }
        t->num = (double)ms / 1000.0;
        if (s[p->pos] == '-')
            t->num = -t->num;
        p->pos = j;
        t->kind = T_NUM;
        return true;
    }
    /* The source is not NUL-terminated at `end`: convert a copy. */
    char buf[64];
    char *copy = i - p->pos < sizeof buf ? buf : irp_arena_alloc(p->a, i - p->pos + 1);
    if (!copy)
        return fail_oom(p), false;
    memcpy(copy, s + p->pos, i - p->pos);
    copy[i - p->pos] = '\0';
    t->num = strtod(copy, NULL);
    if (isinf(t->num)) {
        fail(p, IRP_EPARSE, t->start, "number '%s' is out of range", copy);
        return false;
    }
    t->kind = T_NUM;
    p->pos = i;
    return true;
}

/* A reference or a bare name: name ( '.' segment )*. */
static bool lex_name(struct parser *p, struct token *t)
{
    const char *s = p->src;
    size_t i = p->pos + 1;
    for (;;) {
        while (i < p->end && is_name_char(s[i]))
            i++;
        if (i >= p->end || s[i] != '.')
            break;
        if (i + 1 >= p->end || !(is_name_start(s[i + 1]) || is_digit(s[i + 1]))) {
            fail(p, IRP_EPARSE, i + 1, "expected a name after '.'");
            return false;
        }
        i += 2;
    }
    t->kind = T_NAME;
    p->pos = i;
    return true;
}

/* One- and two-character operators and punctuation. */
static bool lex_punct(struct parser *p, struct token *t)
{
    const char *s = p->src;
    char c = s[p->pos];
    char d = p->pos + 1 < p->end ? s[p->pos + 1] : '\0';
    size_t len = 1;
    switch (c) {
    case '(': t->kind = T_LPAREN; break;
    case ')': t->kind = T_RPAREN; break;
    case '[': t->kind = T_LBRACKET; break;
    case ']': t->kind = T_RBRACKET; break;
    case ',': t->kind = T_COMMA; break;
    case '!': if (d == '=') { t->kind = T_NE; len = 2; } else t->kind = T_NOT; break;
    case '<': if (d == '=') { t->kind = T_LE; len = 2; } else t->kind = T_LT; break;
    case '>': if (d == '=') { t->kind = T_GE; len = 2; } else t->kind = T_GT; break;
    case '=':
        if (d != '=')
            return fail(p, IRP_EPARSE, p->pos, "unknown operator '=' (did you mean '=='?)"), false;
        t->kind = T_EQ;
        len = 2;
        break;
    case '&':
        if (d != '&')
            return fail(p, IRP_EPARSE, p->pos, "unknown operator '&' (did you mean '&&'?)"), false;
        t->kind = T_AND;
        len = 2;
        break;
    case '|':
        if (d != '|')
            return fail(p, IRP_EPARSE, p->pos, "unknown operator '|' (did you mean '||'?)"), false;
        t->kind = T_OR;
        len = 2;
        break;
    case '+': case '-': case '*': case '/': case '%':
        return fail(p, IRP_EPARSE, p->pos, "unexpected '%c' (there is no arithmetic)", c), false;
    default:
        if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
            return fail(p, IRP_EPARSE, p->pos, "unexpected character '%c'", c), false;
        return fail(p, IRP_EPARSE, p->pos, "unexpected byte 0x%02x", (unsigned char)c), false;
    }
    p->pos += len;
    return true;
}

/* Read the next token into p->tok; false on a lexical error. */
static bool next(struct parser *p)
{
    struct token *t = &p->tok;
    while (p->pos < p->end && is_space(p->src[p->pos]))
        p->pos++;
    memset(t, 0, sizeof *t);
    t->start = p->pos;
    bool ok;
    if (p->pos >= p->end) {
        t->kind = T_EOF;
        ok = true;
    } else {
        char c = p->src[p->pos];
        char d = p->pos + 1 < p->end ? p->src[p->pos + 1] : '\0';
        if (c == '\'' || c == '"')
            ok = lex_string(p, t);
        else if (is_digit(c) || (c == '-' && is_digit(d)))
            ok = lex_number(p, t);
        else if (is_name_start(c))
            ok = lex_name(p, t);
        else
            ok = lex_punct(p, t);
    }
    t->end = p->pos;
    return ok;
}

/* ---------------------------------------------------------------- */
/* Parser                                                            */

typedef int (*func_impl)(irp_value *const *args, size_t n, const irp_expr *call,
                         irp_value **out, irp_expr_error *err);

struct func {
    const char *name;
    unsigned min, max;
    func_impl impl;
};

static const struct func *find_func(const char *name, size_t len);
static void func_names(const char **names, size_t *n);

static irp_expr *parse_or(struct parser *p);

static irp_expr *new_node(struct parser *p, enum node_kind kind, size_t offset)
{
    irp_expr *e = irp_arena_alloc(p->a, sizeof *e);
    if (!e)
        return fail_oom(p);
    e->kind = kind;
    e->offset = offset;
    return e;
}

/* A growing array of children in the arena (doubling, so the waste
 * stays within a factor of two). */
struct nodevec {
    irp_expr **items;
    size_t n, cap;
};

static bool vec_push(struct parser *p, struct nodevec *v, irp_expr *e)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        irp_expr **items = irp_arena_alloc(p->a, cap * sizeof *items);
        if (!items)
            return fail_oom(p), false;
        if (v->n)
            memcpy(items, v->items, v->n * sizeof *items);
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = e;
    return true;
}

static bool expect(struct parser *p, enum tok_kind kind, const char *what)
{
    char buf[40];
    if (p->tok.kind != kind) {
        fail(p, IRP_EPARSE, p->tok.start, "expected %s, got %s", what,
             tok_text(p, &p->tok, buf, sizeof buf));
        return false;
    }
    return next(p);
}

/* Parentheses, lists, calls and `!` each open one level of nesting; the
 * limit bounds the recursion of parsing, evaluation and walks.  `at` is
 * where the construct starts. */
static bool enter(struct parser *p, size_t at)
{
    if (p->nesting >= IRP_EXPR_MAX_NESTING) {
        fail(p, IRP_ELIMIT, at, "expression nested too deeply (limit %d)",
             IRP_EXPR_MAX_NESTING);
        return false;
    }
    p->nesting++;
    return true;
}

static void leave(struct parser *p)
{
    p->nesting--;
}

/* Items up to `close`, comma-separated, after the opening token. */
static bool parse_items(struct parser *p, enum tok_kind close, const char *what,
                        struct nodevec *v)
{
    if (p->tok.kind == close)
        return next(p);
    for (;;) {
        irp_expr *e = parse_or(p);
        if (!e || !vec_push(p, v, e))
            return false;
        if (p->tok.kind != T_COMMA)
            return expect(p, close, what);
        if (!next(p))
            return false;
    }
}

static irp_expr *parse_literal(struct parser *p, irp_value_type type)
{
    irp_expr *e = new_node(p, N_LITERAL, p->tok.start);
    if (!e)
        return NULL;
    e->u.lit.type = type;
    if (type == IRP_VALUE_NUMBER) {
        e->u.lit.n = p->tok.num;
    } else if (type == IRP_VALUE_STRING) {
        e->u.lit.s = p->tok.str;
        e->u.lit.len = p->tok.len;
    } else if (type == IRP_VALUE_BOOL) {
        e->u.lit.b = p->src[p->tok.start] == 't';
    }
    return next(p) ? e : NULL;
}

static irp_expr *parse_list(struct parser *p)
{
    irp_expr *e = new_node(p, N_LIST, p->tok.start);
    struct nodevec v = { 0 };
    if (!e || !enter(p, e->offset))
        return NULL;
    bool ok = next(p) && parse_items(p, T_RBRACKET, "',' or ']'", &v);
    leave(p);
    if (!ok)
        return NULL;
    e->u.list.items = v.items;
    e->u.list.n = v.n;
    return e;
}

static irp_expr *parse_call(struct parser *p, size_t name_start, size_t name_len)
{
    const char *name = p->src + name_start;
    const struct func *fn = find_func(name, name_len);
    if (!fn) {
        const char *cands[16];
        size_t ncands;
        char word[64];
        func_names(cands, &ncands);
        snprintf(word, sizeof word, "%.*s", (int)name_len, name);
        const char *hint = irp_diag_suggest(word, cands, ncands);
        if (hint)
            return fail(p, IRP_EPARSE, name_start, "unknown function '%.*s' (did you mean '%s'?)",
                        (int)name_len, name, hint);
        return fail(p, IRP_EPARSE, name_start, "unknown function '%.*s'", (int)name_len, name);
    }
    irp_expr *e = new_node(p, N_CALL, name_start);
    struct nodevec v = { 0 };
    if (!e || !enter(p, name_start))
        return NULL;
    bool ok = next(p) && parse_items(p, T_RPAREN, "',' or ')'", &v);
    leave(p);
    if (!ok)
        return NULL;
    if (v.n < fn->min || v.n > fn->max) {
        if (fn->min == fn->max)
            return fail(p, IRP_EPARSE, name_start, "'%s' takes %u argument%s, got %zu",
                        fn->name, fn->min, fn->min == 1 ? "" : "s", v.n);
        return fail(p, IRP_EPARSE, name_start, "'%s' takes %u or %u arguments, got %zu",
                    fn->name, fn->min, fn->max, v.n);
    }
    e->u.list.items = v.items;
    e->u.list.n = v.n;
    e->u.list.fn = fn;
    return e;
}

static bool name_is(const char *s, size_t len, const char *word)
{
    return len && s[0] == word[0] && strlen(word) == len && memcmp(s, word, len) == 0;
}

static irp_expr *unknown_root(struct parser *p, size_t start, size_t len)
{
    const char *name = p->src + start;
    char word[64];
    if (find_func(name, len))
        return fail(p, IRP_EPARSE, start, "'%.*s' is a function: call it as %.*s(...)",
                    (int)len, name, (int)len, name);
    snprintf(word, sizeof word, "%.*s", (int)len, name);
    const char *hint = irp_diag_suggest(word, roots, N_ROOTS);
    if (hint)
        return fail(p, IRP_EPARSE, start, "unknown name '%.*s' (did you mean '%s'?)",
                    (int)len, name, hint);
    return fail(p, IRP_EPARSE, start, "unknown name '%.*s'", (int)len, name);
}

/* Split the reference token at its dots into arena strings; the first,
 * `root`, is one of roots[] and is not copied. */
static irp_expr *make_ref(struct parser *p, size_t start, size_t end, const char *root)
{
    size_t n = 1;
    for (size_t i = start; i < end; i++)
        n += p->src[i] == '.';
    irp_expr *e = new_node(p, N_REF, start);
    const char **seg = irp_arena_alloc(p->a, n * sizeof *seg);
    if (!e || !seg)
        return fail_oom(p);
    size_t k = 0, from = start;
    for (size_t i = start; i <= end; i++) {
        if (i < end && p->src[i] != '.')
            continue;
        seg[k] = k ? irp_arena_strndup(p->a, p->src + from, i - from) : root;
        if (!seg[k++])
            return fail_oom(p);
        from = i + 1;
    }
    e->u.ref.seg = seg;
    e->u.ref.n = n;
    return e;
}

static irp_expr *parse_name(struct parser *p)
{
    size_t start = p->tok.start, end = p->tok.end;
    const char *dot = memchr(p->src + start, '.', end - start);
    size_t root_len = dot ? (size_t)(dot - (p->src + start)) : end - start;

    if (!next(p))
        return NULL;
    if (p->tok.kind == T_LPAREN)
        return parse_call(p, start, end - start);
    static const char *const keywords[] = { "true", "false", "null" };
    for (size_t i = 0; i < 3; i++) {
        if (!name_is(p->src + start, root_len, keywords[i]))
            continue;
        if (dot)
            return fail(p, IRP_EPARSE, (size_t)(dot - p->src), "unexpected '.' after '%s'",
                        keywords[i]);
        irp_expr *e = new_node(p, N_LITERAL, start);
        if (e) {
            e->u.lit.type = i == 2 ? IRP_VALUE_NULL : IRP_VALUE_BOOL;
            e->u.lit.b = i == 0;
        }
        return e;
    }
    for (size_t i = 0; i < N_ROOTS; i++)
        if (name_is(p->src + start, root_len, roots[i]))
            return make_ref(p, start, end, roots[i]);
    return unknown_root(p, start, root_len);
}

static irp_expr *parse_primary(struct parser *p)
{
    char buf[40];
    switch (p->tok.kind) {
    case T_NUM:
        return parse_literal(p, IRP_VALUE_NUMBER);
    case T_STR:
        return parse_literal(p, IRP_VALUE_STRING);
    case T_NAME:
        return parse_name(p);
    case T_LBRACKET:
        return parse_list(p);
    case T_LPAREN: {
        if (!enter(p, p->tok.start))
            return NULL;
        irp_expr *e = next(p) ? parse_or(p) : NULL;
        leave(p);
        if (!e || !expect(p, T_RPAREN, "')'"))
            return NULL;
        return e;
    }
    default:
        return fail(p, IRP_EPARSE, p->tok.start, "expected a value, got %s",
                    tok_text(p, &p->tok, buf, sizeof buf));
    }
}

static irp_expr *parse_unary(struct parser *p)
{
    if (p->tok.kind != T_NOT)
        return parse_primary(p);
    irp_expr *e = new_node(p, N_NOT, p->tok.start);
    if (!e || !enter(p, e->offset))
        return NULL;
    e->u.not_.operand = next(p) ? parse_unary(p) : NULL;
    leave(p);
    return e->u.not_.operand ? e : NULL;
}

static bool is_cmp(enum tok_kind k)
{
    return k >= T_EQ && k <= T_GE;
}

static irp_expr *parse_cmp(struct parser *p)
{
    irp_expr *l = parse_unary(p);
    if (!l || !is_cmp(p->tok.kind))
        return l;
    irp_expr *e = new_node(p, N_CMP, l->offset);
    if (!e)
        return NULL;
    e->u.cmp.op = (enum cmp_op)(p->tok.kind - T_EQ);
    e->u.cmp.op_offset = p->tok.start;
    e->u.cmp.l = l;
    if (!next(p) || !(e->u.cmp.r = parse_unary(p)))
        return NULL;
    if (is_cmp(p->tok.kind))
        return fail(p, IRP_EPARSE, p->tok.start,
                    "comparisons do not chain: use '&&' or parentheses");
    return e;
}

/* `and` and `or` chains become one node with every operand, so a long
 * chain costs no recursion depth. */
static irp_expr *parse_chain(struct parser *p, enum tok_kind op, enum node_kind kind,
                             irp_expr *(*operand)(struct parser *))
{
    irp_expr *first = operand(p);
    if (!first || p->tok.kind != op)
        return first;
    irp_expr *e = new_node(p, kind, first->offset);
    struct nodevec v = { 0 };
    if (!e || !vec_push(p, &v, first))
        return NULL;
    while (p->tok.kind == op) {
        if (!next(p))
            return NULL;
        irp_expr *x = operand(p);
        if (!x || !vec_push(p, &v, x))
            return NULL;
    }
    e->u.list.items = v.items;
    e->u.list.n = v.n;
    return e;
}

static irp_expr *parse_and(struct parser *p)
{
    return parse_chain(p, T_AND, N_AND, parse_cmp);
}

static irp_expr *parse_or(struct parser *p)
{
    return parse_chain(p, T_OR, N_OR, parse_and);
}

int irp_expr_parse_range(irp_arena *a, const char *src, size_t begin, size_t end,
                         irp_expr **out, irp_expr_error *err)
{
    struct parser p = { .a = a, .src = src, .pos = begin, .end = end, .err = err };
    char buf[40];
    if (end > UINT32_MAX)   /* offsets in the tree are 32-bit */
        return set_error(err, IRP_ELIMIT, begin, "expression text too long");
    if (!next(&p))
        return p.rc;
    if (p.tok.kind == T_EOF)
        return set_error(err, IRP_EPARSE, begin, "empty expression");
    irp_expr *e = parse_or(&p);
    if (e && p.tok.kind != T_EOF)
        fail(&p, IRP_EPARSE, p.tok.start, "unexpected %s after the expression",
             tok_text(&p, &p.tok, buf, sizeof buf));
    if (p.rc)
        return p.rc;
    *out = e;
    return 0;
}

int irp_expr_parse(irp_arena *a, const char *src, size_t len, irp_expr **out,
                   irp_expr_error *err)
{
    return irp_expr_parse_range(a, src, 0, len, out, err);
}

size_t irp_expr_find_close(const char *s, size_t begin, size_t end)
{
    for (size_t i = begin; i < end; i++) {
        char c = s[i];
        if (c == '\'' || c == '"') {
            for (i++; i < end && s[i] != c; i++)
                if (s[i] == '\\')
                    i++;
            if (i >= end)
                return end;
        } else if (c == '}' && i + 1 < end && s[i + 1] == '}') {
            return i;
        }
    }
    return end;
}

static const char *find_open(const char *s, size_t begin, size_t end)
{
    for (size_t i = begin; i + 3 <= end; i++)
        if (s[i] == '$' && s[i + 1] == '{' && s[i + 2] == '{')
            return s + i;
    return NULL;
}

static const char one_expr_msg[] =
    "a condition is one expression: write it bare or wrap all of it in '${{ }}'";

/* A bare condition.  If it fails right at a `${{`, as in
 * `${{ a }} && ${{ b }}` or `a && ${{ b }}`, say what the rule is. */
static int parse_bare_when(irp_arena *a, const char *src, size_t len, irp_expr **out,
                           irp_expr_error *err)
{
    irp_expr_error e = { 0 };
    int rc = irp_expr_parse_range(a, src, 0, len, out, &e);
    const char *open = rc == IRP_EPARSE ? find_open(src, e.offset, len) : NULL;
    if (open && (size_t)(open - src) == e.offset)
        return set_error(err, IRP_EPARSE, e.offset, "%s", one_expr_msg);
    if (rc < 0 && err)
        *err = e;
    return rc;
}

int irp_expr_parse_when(irp_arena *a, const char *src, size_t len, irp_expr **out,
                        irp_expr_error *err)
{
    size_t b = 0, e = len;
    while (b < e && is_space(src[b]))
        b++;
    while (e > b && is_space(src[e - 1]))
        e--;
    if (e - b < 3 || memcmp(src + b, "${{", 3) != 0)
        return parse_bare_when(a, src, len, out, err);
    size_t close = irp_expr_find_close(src, b + 3, e);
    if (close >= e) {
        /* Parse what there is first: an unterminated string inside says
         * more than a missing '}}'. */
        int rc = irp_expr_parse_range(a, src, b + 3, e, out, err);
        if (rc < 0)
            return rc;
        return set_error(err, IRP_EPARSE, b, "unterminated '${{' (missing '}}')");
    }
    size_t after = close + 2;
    while (after < e && is_space(src[after]))
        after++;
    if (after != e)
        return set_error(err, IRP_EPARSE, after, "%s", one_expr_msg);
    return irp_expr_parse_range(a, src, b + 3, close, out, err);
}

/* ---------------------------------------------------------------- */
/* Walking                                                           */

int irp_expr_walk_refs(const irp_expr *e, irp_expr_ref_fn fn, void *ctx)
{
    int rc = 0;
    switch (e->kind) {
    case N_LITERAL:
        break;
    case N_REF:
        rc = fn(ctx, e->u.ref.seg, e->u.ref.n, e->offset);
        break;
    case N_NOT:
        rc = irp_expr_walk_refs(e->u.not_.operand, fn, ctx);
        break;
    case N_CMP:
        rc = irp_expr_walk_refs(e->u.cmp.l, fn, ctx);
        if (!rc)
            rc = irp_expr_walk_refs(e->u.cmp.r, fn, ctx);
        break;
    case N_LIST: case N_AND: case N_OR: case N_CALL:
        for (size_t i = 0; !rc && i < e->u.list.n; i++)
            rc = irp_expr_walk_refs(e->u.list.items[i], fn, ctx);
        break;
    }
    return rc;
}

size_t irp_expr_offset(const irp_expr *e)
{
    return e->offset;
}

int irp_expr_as_ref(const irp_expr *e, const char *const **seg, size_t *n)
{
    if (e->kind != N_REF)
        return 0;
    *seg = e->u.ref.seg;
    *n = e->u.ref.n;
    return 1;
}

/* ---------------------------------------------------------------- */
/* Evaluation                                                        */

static const char *tname(const irp_value *v)
{
    return irp_value_type_name(irp_value_type_of(v));
}

/* Taint `v` when `secret`; passes v through. */
static irp_value *taint_if(irp_value *v, bool secret)
{
    if (secret)
        irp_value_taint(v);
    return v;
}

static int eval(const irp_expr *e, const irp_scope *sc, irp_value **out, irp_expr_error *err);

static int eval_literal(const irp_expr *e, irp_value **out, irp_expr_error *err)
{
    irp_value *v = NULL;
    switch (e->u.lit.type) {
    case IRP_VALUE_NULL: v = irp_value_new_null(); break;
    case IRP_VALUE_BOOL: v = irp_value_new_bool(e->u.lit.b); break;
    case IRP_VALUE_NUMBER: v = irp_value_new_number(e->u.lit.n); break;
    case IRP_VALUE_STRING: v = irp_value_new_string(e->u.lit.s, e->u.lit.len); break;
    default: break;
    }
    if (!v)
        return oom(err, e->offset);
    *out = v;
    return 0;
}

static int eval_list(const irp_expr *e, const irp_scope *sc, irp_value **out, irp_expr_error *err)
{
    irp_value *list = irp_value_new_list();
    if (!list)
        return oom(err, e->offset);
    for (size_t i = 0; i < e->u.list.n; i++) {
        irp_value *item;
        int rc = eval(e->u.list.items[i], sc, &item, err);
        if (rc == 0 && (rc = irp_value_list_append(list, item)) < 0)
            rc = oom(err, e->u.list.items[i]->offset);
        if (rc < 0) {
            irp_value_unref(list);
            return rc;
        }
    }
    *out = list;
    return 0;
}

static size_t ref_text(const irp_expr *e, char *buf, size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < e->u.ref.n && off < n; i++) {
        int w = snprintf(buf + off, n - off, "%s%s", i ? "." : "", e->u.ref.seg[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    return off;
}

/* The reference's dotted name is written only for an error: a lookup
 * that succeeds, the usual case, needs no text. */
static int eval_ref(const irp_expr *e, const irp_scope *sc, irp_value **out, irp_expr_error *err)
{
    char name[80];
    char msg[IRP_EXPR_ERRMAX];
    if (!sc || !sc->lookup) {
        ref_text(e, name, sizeof name);
        return set_error(err, IRP_EUNDEF, e->offset, "'%s' is not available here", name);
    }
    msg[0] = '\0';
    irp_value *v = NULL;
    int rc = sc->lookup(sc->ctx, e->u.ref.seg, e->u.ref.n, &v, msg, sizeof msg);
    if (rc < 0) {
        irp_value_unref(v);
        if (msg[0])
            return set_error(err, rc, e->offset, "%s", msg);
        ref_text(e, name, sizeof name);
        return set_error(err, rc, e->offset, "cannot resolve '%s': %s", name, irp_strerror(rc));
    }
    if (!v && !(v = irp_value_new_null()))
        return oom(err, e->offset);
    *out = v;
    return 0;
}

/* Evaluate an operand that must be a boolean; `op` names the operator. */
static int eval_bool(const irp_expr *e, const irp_scope *sc, const char *op, bool *b,
                     bool *secret, irp_expr_error *err)
{
    irp_value *v;
    int rc = eval(e, sc, &v, err);
    if (rc < 0)
        return rc;
    if (irp_value_type_of(v) != IRP_VALUE_BOOL) {
        rc = set_error(err, IRP_ETYPE, e->offset, "'%s' needs booleans, got %s", op, tname(v));
        irp_value_unref(v);
        return rc;
    }
    *b = irp_value_bool(v);
    *secret = *secret || irp_value_is_secret(v);
    irp_value_unref(v);
    return 0;
}

static int new_bool(bool b, bool secret, size_t offset, irp_value **out, irp_expr_error *err)
{
    irp_value *v = irp_value_new_bool(b);
    if (!v)
        return oom(err, offset);
    *out = taint_if(v, secret);
    return 0;
}

static int eval_not(const irp_expr *e, const irp_scope *sc, irp_value **out, irp_expr_error *err)
{
    bool b, secret = false;
    irp_value *v;
    int rc = eval(e->u.not_.operand, sc, &v, err);
    if (rc < 0)
        return rc;
    if (irp_value_type_of(v) != IRP_VALUE_BOOL) {
        rc = set_error(err, IRP_ETYPE, e->u.not_.operand->offset, "'!' needs a boolean, got %s",
                       tname(v));
        irp_value_unref(v);
        return rc;
    }
    b = irp_value_bool(v);
    secret = irp_value_is_secret(v);
    irp_value_unref(v);
    return new_bool(!b, secret, e->offset, out, err);
}

/* `&&` stops at the first false, `||` at the first true. */
static int eval_logic(const irp_expr *e, const irp_scope *sc, irp_value **out, irp_expr_error *err)
{
    bool is_and = e->kind == N_AND;
    bool b = is_and, secret = false;
    for (size_t i = 0; i < e->u.list.n && b == is_and; i++) {
        int rc = eval_bool(e->u.list.items[i], sc, is_and ? "&&" : "||", &b, &secret, err);
        if (rc < 0)
            return rc;
    }
    return new_bool(b, secret, e->offset, out, err);
}

static int compare(const irp_expr *e, const irp_value *l, const irp_value *r, bool *res,
                   irp_expr_error *err)
{
    enum cmp_op op = e->u.cmp.op;
    const char *name = cmp_names[op];
    int c;
    if (op == OP_EQ || op == OP_NE) {
        *res = irp_value_equal(l, r) == (op == OP_EQ);
        return 0;
    }
    if (irp_value_type_of(l) != irp_value_type_of(r))
        return set_error(err, IRP_ETYPE, e->u.cmp.op_offset,
                         "'%s' needs two values of the same type, got %s and %s",
                         name, tname(l), tname(r));
    if (irp_value_compare(l, r, &c) < 0)
        return set_error(err, IRP_ETYPE, e->u.cmp.op_offset,
                         "'%s' needs numbers, strings or booleans, got %s", name, tname(l));
    switch (op) {
    case OP_LT: *res = c < 0; break;
    case OP_LE: *res = c <= 0; break;
    case OP_GT: *res = c > 0; break;
    default: *res = c >= 0; break;
    }
    return 0;
}

static int eval_cmp(const irp_expr *e, const irp_scope *sc, irp_value **out, irp_expr_error *err)
{
    irp_value *l, *r;
    bool res = false;
    int rc = eval(e->u.cmp.l, sc, &l, err);
    if (rc < 0)
        return rc;
    rc = eval(e->u.cmp.r, sc, &r, err);
    if (rc < 0) {
        irp_value_unref(l);
        return rc;
    }
    rc = compare(e, l, r, &res, err);
    bool secret = irp_value_is_secret(l) || irp_value_is_secret(r);
    irp_value_unref(l);
    irp_value_unref(r);
    if (rc < 0)
        return rc;
    return new_bool(res, secret, e->offset, out, err);
}

static int eval_call(const irp_expr *e, const irp_scope *sc, irp_value **out, irp_expr_error *err)
{
    irp_value *args[4] = { NULL };   /* every function takes at most 2 */
    size_t n = e->u.list.n;
    bool secret = false;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = eval(e->u.list.items[i], sc, &args[i], err);
        if (rc == 0)
            secret = secret || irp_value_is_secret(args[i]);
    }
    irp_value *v = NULL;
    if (rc == 0)
        rc = e->u.list.fn->impl(args, n, e, &v, err);
    for (size_t i = 0; i < n; i++)
        irp_value_unref(args[i]);
    if (rc < 0)
        return rc;
    *out = taint_if(v, secret);
    return 0;
}

static int eval(const irp_expr *e, const irp_scope *sc, irp_value **out, irp_expr_error *err)
{
    switch (e->kind) {
    case N_LITERAL: return eval_literal(e, out, err);
    case N_LIST: return eval_list(e, sc, out, err);
    case N_REF: return eval_ref(e, sc, out, err);
    case N_NOT: return eval_not(e, sc, out, err);
    case N_AND: case N_OR: return eval_logic(e, sc, out, err);
    case N_CMP: return eval_cmp(e, sc, out, err);
    case N_CALL: return eval_call(e, sc, out, err);
    }
    return set_error(err, IRP_EINTERNAL, e->offset, "unknown expression node");
}

int irp_expr_eval(const irp_expr *e, const irp_scope *scope, irp_value **out,
                  irp_expr_error *err)
{
    return eval(e, scope, out, err);
}

/* ---------------------------------------------------------------- */
/* Functions                                                         */

static size_t arg_offset(const irp_expr *call, size_t i)
{
    return call->u.list.items[i]->offset;
}

static int arg_type_error(const irp_expr *call, size_t i, const char *need, const irp_value *got,
                          irp_expr_error *err)
{
    return set_error(err, IRP_ETYPE, arg_offset(call, i), "'%s' needs %s, got %s",
                     call->u.list.fn->name, need, tname(got));
}

static int ret_bool(bool b, const irp_expr *call, irp_value **out, irp_expr_error *err)
{
    return new_bool(b, false, call->offset, out, err);
}

static int ret_number(double d, const irp_expr *call, irp_value **out, irp_expr_error *err)
{
    irp_value *v = irp_value_new_number(d);
    if (!v)
        return oom(err, call->offset);
    *out = v;
    return 0;
}

static bool is_string(const irp_value *v)
{
    return irp_value_type_of(v) == IRP_VALUE_STRING;
}

static bool has_substring(const irp_value *hay, const irp_value *needle)
{
    size_t hl, nl;
    const char *h = irp_value_string(hay, &hl);
    const char *n = irp_value_string(needle, &nl);
    if (nl == 0)
        return true;
    for (size_t i = 0; i + nl <= hl; i++)
        if (h[i] == n[0] && memcmp(h + i, n, nl) == 0)
            return true;
    return false;
}

static int fn_contains(irp_value *const *args, size_t n, const irp_expr *call,
                       irp_value **out, irp_expr_error *err)
{
    const irp_value *hay = args[0], *x = args[1];
    size_t len;
    const char *key;
    switch (irp_value_type_of(hay)) {
    case IRP_VALUE_LIST:
        for (size_t i = 0; i < irp_value_list_len(hay); i++)
            if (irp_value_equal(irp_value_list_at(hay, i), x))
                return ret_bool(true, call, out, err);
        return ret_bool(false, call, out, err);
    case IRP_VALUE_STRING:
        if (!is_string(x))
            return arg_type_error(call, 1, "a string to look for in a string", x, err);
        return ret_bool(has_substring(hay, x), call, out, err);
    case IRP_VALUE_MAP:
        if (!is_string(x))
            return arg_type_error(call, 1, "a string key to look for in a map", x, err);
        key = irp_value_string(x, &len);
        return ret_bool(irp_value_map_get(hay, key, len) != NULL, call, out, err);
    default:
        return arg_type_error(call, 0, "a list, string or map", hay, err);
    }
}

static int fn_len(irp_value *const *args, size_t n, const irp_expr *call,
                  irp_value **out, irp_expr_error *err)
{
    size_t len;
    switch (irp_value_type_of(args[0])) {
    case IRP_VALUE_STRING: irp_value_string(args[0], &len); break;
    case IRP_VALUE_LIST: len = irp_value_list_len(args[0]); break;
    case IRP_VALUE_MAP: len = irp_value_map_len(args[0]); break;
    default: return arg_type_error(call, 0, "a string, list or map", args[0], err);
    }
    return ret_number((double)len, call, out, err);
}

/* A capped byte buffer for join(). */
struct strbuf {
    char *p;
    size_t len, cap;
};

#define JOIN_MAX ((size_t)64 << 20)

static int sb_add(struct strbuf *b, const char *s, size_t n)
{
    if (n > JOIN_MAX - b->len)
        return IRP_ELIMIT;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return IRP_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* Append the items of `list`, rendered, with `sep` between them. */
static int join_items(struct strbuf *b, const irp_value *list, const char *sep, size_t seplen)
{
    int rc = sb_add(b, "", 0);
    for (size_t i = 0; rc == 0 && i < irp_value_list_len(list); i++) {
        char *text;
        size_t len;
        if (i && (rc = sb_add(b, sep, seplen)) < 0)
            break;
        if ((rc = irp_value_render(irp_value_list_at(list, i), &text, &len)) < 0)
            break;
        rc = sb_add(b, text, len);
        free(text);
    }
    return rc;
}

static int fn_join(irp_value *const *args, size_t n, const irp_expr *call,
                   irp_value **out, irp_expr_error *err)
{
    const char *sep = ",";
    size_t seplen = 1;
    if (irp_value_type_of(args[0]) != IRP_VALUE_LIST)
        return arg_type_error(call, 0, "a list to join", args[0], err);
    if (n > 1) {
        if (!is_string(args[1]))
            return arg_type_error(call, 1, "a string separator", args[1], err);
        sep = irp_value_string(args[1], &seplen);
    }
    struct strbuf b = { 0 };
    int rc = join_items(&b, args[0], sep, seplen);
    irp_value *v = rc == 0 ? irp_value_new_string(b.p, b.len) : NULL;
    free(b.p);
    if (rc == IRP_ELIMIT)
        return set_error(err, rc, call->offset, "'join' would make more than %zu MiB",
                         JOIN_MAX >> 20);
    if (!v)
        return oom(err, call->offset);
    *out = v;
    return 0;
}

static int map_case(irp_value *const *args, const irp_expr *call, int (*conv)(int),
                    irp_value **out, irp_expr_error *err)
{
    size_t len;
    if (!is_string(args[0]))
        return arg_type_error(call, 0, "a string", args[0], err);
    const char *s = irp_value_string(args[0], &len);
    char *d = malloc(len + 1);
    if (!d)
        return oom(err, call->offset);
    /* Only ASCII letters change, so UTF-8 text keeps its other bytes. */
    for (size_t i = 0; i < len; i++)
        d[i] = (unsigned char)s[i] < 0x80 ? (char)conv((unsigned char)s[i]) : s[i];
    irp_value *v = irp_value_new_string(d, len);
    free(d);
    if (!v)
        return oom(err, call->offset);
    *out = v;
    return 0;
}

static int ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int ascii_upper(int c)
{
    return c >= 'a' && c <= 'z' ? c - 32 : c;
}

static int fn_lower(irp_value *const *args, size_t n, const irp_expr *call,
                    irp_value **out, irp_expr_error *err)
{
    return map_case(args, call, ascii_lower, out, err);
}

static int fn_upper(irp_value *const *args, size_t n, const irp_expr *call,
                    irp_value **out, irp_expr_error *err)
{
    return map_case(args, call, ascii_upper, out, err);
}

static int affix(irp_value *const *args, const irp_expr *call, bool at_end,
                 irp_value **out, irp_expr_error *err)
{
    size_t sl, pl;
    for (size_t i = 0; i < 2; i++)
        if (!is_string(args[i]))
            return arg_type_error(call, i, "strings", args[i], err);
    const char *s = irp_value_string(args[0], &sl);
    const char *pre = irp_value_string(args[1], &pl);
    bool yes = pl <= sl && memcmp(at_end ? s + sl - pl : s, pre, pl) == 0;
    return ret_bool(yes, call, out, err);
}

static int fn_starts_with(irp_value *const *args, size_t n, const irp_expr *call,
                          irp_value **out, irp_expr_error *err)
{
    return affix(args, call, false, out, err);
}

static int fn_ends_with(irp_value *const *args, size_t n, const irp_expr *call,
                        irp_value **out, irp_expr_error *err)
{
    return affix(args, call, true, out, err);
}

/* Whether s[0..len) is exactly one decimal number (no hex, inf or nan,
 * which strtod would also take). */
static bool is_decimal(const char *s, size_t len)
{
    size_t i = 0, digits = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    for (; i < len && is_digit(s[i]); i++)
        digits++;
    if (i < len && s[i] == '.')
        for (i++; i < len && is_digit(s[i]); i++)
            digits++;
    if (digits == 0)
        return false;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t exp = 0;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        for (; i < len && is_digit(s[i]); i++)
            exp++;
        if (exp == 0)
            return false;
    }
    return i == len;
}

static int string_to_number(const irp_value *v, const irp_expr *call, irp_value **out,
                            irp_expr_error *err)
{
    size_t len;
    const char *s = irp_value_string(v, &len);
    size_t b = 0, e = len;
    while (b < e && is_space(s[b]))
        b++;
    while (e > b && is_space(s[e - 1]))
        e--;
    if (!is_decimal(s + b, e - b)) {
        /* Never quote a secret in a message: messages reach the journal. */
        if (irp_value_is_secret(v) || len > 40)
            return set_error(err, IRP_EINVAL, arg_offset(call, 0),
                             "'number' cannot convert this string: it is not a decimal number");
        return set_error(err, IRP_EINVAL, arg_offset(call, 0),
                         "'number' cannot convert '%.*s': it is not a decimal number",
                         (int)len, s);
    }
    /* The string is NUL-terminated after `len` and strtod stops at the
     * trailing whitespace, so it reads exactly the checked digits. */
    double d = strtod(s + b, NULL);
    if (isinf(d))
        return set_error(err, IRP_EINVAL, arg_offset(call, 0),
                         "'number' cannot convert this string: it is out of range");
    return ret_number(d, call, out, err);
}

static int fn_number(irp_value *const *args, size_t n, const irp_expr *call,
                     irp_value **out, irp_expr_error *err)
{
    switch (irp_value_type_of(args[0])) {
    case IRP_VALUE_NUMBER:
        *out = irp_value_ref(args[0]);
        return 0;
    case IRP_VALUE_BOOL:
        return ret_number(irp_value_bool(args[0]) ? 1 : 0, call, out, err);
    case IRP_VALUE_STRING:
        return string_to_number(args[0], call, out, err);
    default:
        return arg_type_error(call, 0, "a string, number or boolean", args[0], err);
    }
}

static const struct func funcs[] = {
    { "contains", 2, 2, fn_contains },
    { "len", 1, 1, fn_len },
    { "join", 1, 2, fn_join },
    { "lower", 1, 1, fn_lower },
    { "upper", 1, 1, fn_upper },
    { "starts_with", 2, 2, fn_starts_with },
    { "ends_with", 2, 2, fn_ends_with },
    { "number", 1, 1, fn_number },
};
#define N_FUNCS (sizeof funcs / sizeof funcs[0])

static const struct func *find_func(const char *name, size_t len)
{
    for (size_t i = 0; i < N_FUNCS; i++)
        if (name_is(name, len, funcs[i].name))
            return &funcs[i];
    return NULL;
}

static void func_names(const char **names, size_t *n)
{
    for (size_t i = 0; i < N_FUNCS; i++)
        names[i] = funcs[i].name;
    *n = N_FUNCS;
}
