#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irp/error.h"
#include "irp/template.h"

/* A rendered template is built in memory; past this it is refused. */
#define TEMPLATE_MAX ((size_t)64 << 20)

struct tpl_part {
    size_t start, end;      /* text: the text; expression: `${{` to `}}` inclusive */
    const irp_expr *expr;   /* NULL for text */
};

struct irp_template {
    const char *src;        /* NUL-terminated: a copy in the same allocation,
                               or the caller's (irp_template_parse_borrowed) */
    size_t len;
    size_t nparts, nexprs;
    struct tpl_part parts[];
};

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

/* Offset of the next `${{` at or after `from`, or len. */
static size_t find_open(const char *s, size_t from, size_t len)
{
    while (from + 3 <= len) {
        const char *d = memchr(s + from, '$', len - from - 2);
        if (!d)
            return len;
        size_t i = (size_t)(d - s);
        if (s[i + 1] == '{' && s[i + 2] == '{')
            return i;
        from = i + 1;
    }
    return len;
}

/* One allocation holds the struct, its parts and, unless borrowed, the
 * text.  `nopen` (the number of `${{`) bounds the parts at 2 * nopen + 1. */
static irp_template *tpl_alloc(irp_arena *a, const char *s, size_t len, size_t nopen,
                               bool borrow)
{
    size_t maxparts = 2 * nopen + 1;
    size_t head = sizeof(irp_template) + maxparts * sizeof(struct tpl_part);
    if (len > SIZE_MAX - head - 1)
        return NULL;
    irp_template *t = irp_arena_alloc(a, head + (borrow ? 0 : len + 1));
    if (!t)
        return NULL;
    t->src = s;
    t->len = len;
    if (borrow)
        return t;
    char *copy = (char *)t + head;
    if (len)
        memcpy(copy, s, len);
    copy[len] = '\0';
    t->src = copy;
    return t;
}

static void add_part(irp_template *t, size_t start, size_t end, const irp_expr *e)
{
    if (!e && start == end)
        return;   /* no empty text parts */
    t->parts[t->nparts++] = (struct tpl_part){ start, end, e };
    if (e)
        t->nexprs++;
}

/* The expression of the `${{` at `open`; sets *close to the `}}`. */
static int parse_one(irp_arena *a, const irp_template *t, size_t open, size_t *close,
                     const irp_expr **out, irp_expr_error *err)
{
    irp_expr *e = NULL;
    size_t c = irp_expr_find_close(t->src, open + 3, t->len);
    if (c >= t->len) {
        /* Parse what there is first: an unterminated string inside says
         * more than a missing '}}'. */
        int rc = irp_expr_parse_range(a, t->src, open + 3, t->len, &e, err);
        if (rc < 0)
            return rc;
        return set_error(err, IRP_EPARSE, open, "unterminated '${{' (missing '}}')");
    }
    int rc = irp_expr_parse_range(a, t->src, open + 3, c, &e, err);
    if (rc < 0)
        return rc;
    *close = c;
    *out = e;
    return 0;
}

static int parse(irp_arena *a, const char *s, size_t len, bool borrow, irp_template **out,
                 irp_expr_error *err)
{
    size_t nopen = 0;
    for (size_t i = find_open(s, 0, len); i < len; i = find_open(s, i + 3, len))
        nopen++;
    irp_template *t = tpl_alloc(a, s, len, nopen, borrow);
    if (!t)
        return set_error(err, IRP_ENOMEM, 0, "out of memory");
    size_t pos = 0;
    for (size_t open = find_open(t->src, 0, len); open < len; open = find_open(t->src, pos, len)) {
        size_t close = 0;
        const irp_expr *e = NULL;
        int rc = parse_one(a, t, open, &close, &e, err);
        if (rc < 0)
            return rc;
        add_part(t, pos, open, NULL);
        add_part(t, open, close + 2, e);
        pos = close + 2;
    }
    add_part(t, pos, len, NULL);
    *out = t;
    return 0;
}

int irp_template_parse(irp_arena *a, const char *s, size_t len, irp_template **out,
                       irp_expr_error *err)
{
    return parse(a, s, len, false, out, err);
}

int irp_template_parse_borrowed(irp_arena *a, const char *s, size_t len, irp_template **out,
                                irp_expr_error *err)
{
    return parse(a, s, len, true, out, err);
}

const char *irp_template_text(const irp_template *t, size_t *len)
{
    if (len)
        *len = t->len;
    return t->src;
}

bool irp_template_has_exprs(const irp_template *t)
{
    return t->nexprs > 0;
}

bool irp_template_is_single_expr(const irp_template *t)
{
    return t->nparts == 1 && t->nexprs == 1;
}

const irp_expr *irp_template_single_expr(const irp_template *t)
{
    return irp_template_is_single_expr(t) ? t->parts[0].expr : NULL;
}

size_t irp_template_nexprs(const irp_template *t)
{
    return t->nexprs;
}

int irp_template_walk_exprs(const irp_template *t, irp_template_expr_fn fn, void *ctx)
{
    size_t index = 0;
    for (size_t i = 0; i < t->nparts; i++) {
        if (!t->parts[i].expr)
            continue;
        int rc = fn(ctx, t->parts[i].expr, index++, t->parts[i].start);
        if (rc)
            return rc;
    }
    return 0;
}

int irp_template_walk_refs(const irp_template *t, irp_expr_ref_fn fn, void *ctx)
{
    for (size_t i = 0; i < t->nparts; i++) {
        if (!t->parts[i].expr)
            continue;
        int rc = irp_expr_walk_refs(t->parts[i].expr, fn, ctx);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- */
/* Rendering                                                         */

struct buf {
    char *p;
    size_t len, cap;
};

static int buf_add(struct buf *b, const char *s, size_t n)
{
    if (n > TEMPLATE_MAX - b->len)
        return IRP_ELIMIT;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
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
    b->p[b->len] = '\0';
    return 0;
}

/* Evaluate the expression of part i and append its text. */
static int render_part(const struct tpl_part *part, const irp_scope *scope, struct buf *b,
                       bool *secret, irp_expr_error *err)
{
    irp_value *v;
    char num[IRP_NUMBER_BUFSZ], *owned;
    size_t len;
    int rc = irp_expr_eval(part->expr, scope, &v, err);
    if (rc < 0)
        return rc;
    *secret = *secret || irp_value_is_secret(v);
    const char *text = irp_value_text(v, num, &len, &owned);
    rc = text ? buf_add(b, text, len) : IRP_ENOMEM;
    free(owned);
    irp_value_unref(v);
    if (rc == IRP_ELIMIT)
        return set_error(err, rc, part->start, "rendered text is larger than %zu MiB",
                         TEMPLATE_MAX >> 20);
    if (rc < 0)
        return set_error(err, rc, part->start, "%s", irp_strerror(rc));
    return 0;
}

/* Literal text plus each expression's text, into b. */
static int render_parts(const irp_template *t, const irp_scope *scope, struct buf *b,
                        bool *secret, irp_expr_error *err)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < t->nparts; i++) {
        const struct tpl_part *part = &t->parts[i];
        if (part->expr)
            rc = render_part(part, scope, b, secret, err);
        else if ((rc = buf_add(b, t->src + part->start, part->end - part->start)) < 0)
            set_error(err, rc, part->start, "%s", irp_strerror(rc));
    }
    return rc;
}

int irp_template_render(const irp_template *t, const irp_scope *scope, irp_value **out,
                        irp_expr_error *err)
{
    if (irp_template_is_single_expr(t))
        return irp_expr_eval(t->parts[0].expr, scope, out, err);
    if (!t->nexprs) {
        *out = irp_value_new_string(t->src, t->len);
        return *out ? 0 : set_error(err, IRP_ENOMEM, 0, "out of memory");
    }
    struct buf b = { 0 };
    bool secret = false;
    int rc = render_parts(t, scope, &b, &secret, err);
    irp_value *v = NULL;
    if (rc == 0 && !(v = irp_value_new_string(b.p, b.len)))
        rc = set_error(err, IRP_ENOMEM, 0, "out of memory");
    free(b.p);
    if (rc < 0)
        return rc;
    if (secret)
        irp_value_taint(v);
    *out = v;
    return 0;
}

/* The text of one expression's value, copied once at its size. */
static int single_text(const irp_expr *e, const irp_scope *scope, char **out, size_t *len,
                       bool *secret, irp_expr_error *err)
{
    irp_value *v;
    char num[IRP_NUMBER_BUFSZ], *owned;
    size_t n;
    int rc = irp_expr_eval(e, scope, &v, err);
    if (rc < 0)
        return rc;
    const char *text = irp_value_text(v, num, &n, &owned);
    char *copy = owned;
    if (text && !owned && (copy = malloc(n + 1)) != NULL)
        memcpy(copy, text, n + 1);
    if (copy) {
        *out = copy;
        if (len)
            *len = n;
        if (secret)
            *secret = irp_value_is_secret(v);
    }
    irp_value_unref(v);
    return copy ? 0 : set_error(err, IRP_ENOMEM, 0, "out of memory");
}

int irp_template_render_text(const irp_template *t, const irp_scope *scope, char **out,
                             size_t *len, bool *secret, irp_expr_error *err)
{
    if (irp_template_is_single_expr(t))
        return single_text(t->parts[0].expr, scope, out, len, secret, err);
    struct buf b = { 0 };
    bool sec = false;
    int rc = buf_add(&b, "", 0);
    if (rc == 0)
        rc = render_parts(t, scope, &b, &sec, err);
    else
        set_error(err, rc, 0, "%s", irp_strerror(rc));
    if (rc < 0) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    if (len)
        *len = b.len;
    if (secret)
        *secret = sec;
    return 0;
}

/* ---------------------------------------------------------------- */
/* The shell lexer                                                   */

/* Where the lexer is within a nesting frame. */
enum sh_mode {
    M_NORMAL,      /* unquoted or double-quoted, per the frame's `dq` */
    M_SQUOTE,      /* '...' */
    M_ANSI,        /* $'...' */
    M_COMMENT,     /* # to end of line */
    M_DELIM,       /* reading a here-document's delimiter word */
    M_HEREDOC,     /* inside a here-document body */
};

enum sh_frame_kind { F_TOP, F_CMDSUB, F_ARITH, F_BRACE, F_BACKQ };

struct sh_frame {
    enum sh_frame_kind kind;
    bool dq;            /* inside double quotes, in this frame */
    bool dq_at_open;    /* F_BRACE: the quoting its `}` closes back to */
    unsigned parens;    /* F_CMDSUB, F_ARITH: open '(' inside */
};

#define SH_MAX_FRAMES 32
#define SH_MAX_HEREDOCS 16
#define SH_MAX_DELIM 128

struct sh_heredoc {
    char delim[SH_MAX_DELIM];
    size_t len;
    bool strip_tabs;
};

struct sh_lexer {
    struct sh_frame frames[SH_MAX_FRAMES];
    size_t depth;                       /* frames[depth - 1] is current */
    enum sh_mode mode;
    bool escaped;                       /* the last character was a backslash */
    bool word_start;                    /* `#` here starts a comment */

    /* Here-documents announced on the current line, read after it. */
    struct sh_heredoc pending[SH_MAX_HEREDOCS];
    size_t npending, cur;

    /* M_DELIM */
    bool delim_started, delim_sq, delim_dq, delim_esc;

    /* M_HEREDOC: how much of the current line matches the delimiter. */
    size_t line_pos;
    bool line_ok, line_leading;

    irp_template_problem_fn report;
    void *report_ctx;
    size_t problems;
};

static void sh_problem(struct sh_lexer *lx, size_t offset, const char *msg)
{
    lx->problems++;
    if (lx->report)
        lx->report(lx->report_ctx, offset, msg);
}

static struct sh_frame *sh_top(struct sh_lexer *lx)
{
    return &lx->frames[lx->depth - 1];
}

static void sh_push(struct sh_lexer *lx, enum sh_frame_kind kind, bool dq, size_t offset)
{
    if (lx->depth == SH_MAX_FRAMES) {
        sh_problem(lx, offset, "shell substitutions nested too deeply to check");
        return;
    }
    lx->frames[lx->depth++] = (struct sh_frame){ kind, dq, dq, 0 };
}

static void sh_pop(struct sh_lexer *lx)
{
    if (lx->depth > 1)
        lx->depth--;
}

static bool sh_in(const struct sh_lexer *lx, enum sh_frame_kind kind)
{
    for (size_t i = 0; i < lx->depth; i++)
        if (lx->frames[i].kind == kind)
            return true;
    return false;
}

static void heredoc_line_reset(struct sh_lexer *lx)
{
    lx->line_pos = 0;
    lx->line_ok = true;
    lx->line_leading = true;
}

/* An unquoted newline: the bodies of pending here-documents start. */
static void sh_newline(struct sh_lexer *lx)
{
    lx->word_start = true;
    lx->mode = M_NORMAL;
    if (lx->cur < lx->npending) {
        lx->mode = M_HEREDOC;
        heredoc_line_reset(lx);
    }
}

static void heredoc_char(struct sh_lexer *lx, char c)
{
    const struct sh_heredoc *h = &lx->pending[lx->cur];
    if (c == '\n') {
        if (lx->line_ok && lx->line_pos == h->len) {
            if (++lx->cur == lx->npending) {
                lx->cur = lx->npending = 0;
                lx->mode = M_NORMAL;
                lx->word_start = true;
                return;
            }
        }
        heredoc_line_reset(lx);
        return;
    }
    if (lx->line_leading && h->strip_tabs && c == '\t')
        return;
    lx->line_leading = false;
    if (lx->line_ok && lx->line_pos < h->len && h->delim[lx->line_pos] == c)
        lx->line_pos++;
    else
        lx->line_ok = false;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Ends a word outside quotes. */
static bool is_meta(char c)
{
    return is_blank(c) || c == '\n' || c == ';' || c == '&' || c == '|' || c == '<'
           || c == '>' || c == '(' || c == ')';
}

static void delim_finish(struct sh_lexer *lx)
{
    lx->mode = M_NORMAL;
    if (!lx->delim_started)
        return;   /* `<<` with no word: a shell syntax error, not ours */
    lx->npending++;
}

/* One character of a here-document delimiter word; returns false when
 * the character ends the word and must be lexed again as normal text. */
static bool delim_char(struct sh_lexer *lx, char c, size_t offset)
{
    struct sh_heredoc *h = &lx->pending[lx->npending];
    if (lx->delim_esc) {
        lx->delim_esc = false;
    } else if (lx->delim_sq) {
        if (c == '\'') {
            lx->delim_sq = false;
            return true;
        }
    } else if (c == '\\') {
        lx->delim_esc = lx->delim_started = true;
        return true;
    } else if (c == '\'' && !lx->delim_dq) {
        lx->delim_sq = lx->delim_started = true;
        return true;
    } else if (c == '"') {
        lx->delim_dq = !lx->delim_dq;
        lx->delim_started = true;
        return true;
    } else if (!lx->delim_dq && is_meta(c)) {
        if (is_blank(c) && !lx->delim_started)
            return true;   /* blanks between `<<` and the word */
        delim_finish(lx);
        return false;
    }
    lx->delim_started = true;
    if (h->len < SH_MAX_DELIM)
        h->delim[h->len++] = c;
    else
        sh_problem(lx, offset, "here-document delimiter too long to check");
    return true;
}

/* `<<` seen at s[i] outside quotes: a here-document, or `<<<`.
 * Returns how many characters it used. */
static size_t sh_heredoc_op(struct sh_lexer *lx, const char *s, size_t i, size_t end)
{
    if (i + 2 < end && s[i + 2] == '<')
        return 3;   /* a here-string: its word is an ordinary word */
    if (lx->npending == SH_MAX_HEREDOCS) {
        sh_problem(lx, i, "too many here-documents on one line to check");
        return 2;
    }
    struct sh_heredoc *h = &lx->pending[lx->npending];
    memset(h, 0, sizeof *h);
    h->strip_tabs = i + 2 < end && s[i + 2] == '-';
    lx->mode = M_DELIM;
    lx->delim_started = lx->delim_sq = lx->delim_dq = lx->delim_esc = false;
    return h->strip_tabs ? 3 : 2;
}

/* `$` at s[i] (unquoted or in double quotes).  Returns characters used. */
static size_t sh_dollar(struct sh_lexer *lx, const char *s, size_t i, size_t end)
{
    struct sh_frame *f = sh_top(lx);
    char n1 = i + 1 < end ? s[i + 1] : '\0';
    char n2 = i + 2 < end ? s[i + 2] : '\0';
    if (n1 == '(' && n2 == '(') {
        sh_push(lx, F_ARITH, false, i);
        return 3;
    }
    if (n1 == '(') {
        sh_push(lx, F_CMDSUB, false, i);
        return 2;
    }
    if (n1 == '{') {
        sh_push(lx, F_BRACE, f->dq, i);
        return 2;
    }
    if (n1 == '\'' && !f->dq) {
        lx->mode = M_ANSI;
        return 2;
    }
    return 1;
}

/* `)` outside quotes. */
static size_t sh_close_paren(struct sh_lexer *lx, const char *s, size_t i, size_t end)
{
    struct sh_frame *f = sh_top(lx);
    if (f->kind != F_CMDSUB && f->kind != F_ARITH)
        return 1;
    if (f->parens) {
        f->parens--;
        return 1;
    }
    bool arith = f->kind == F_ARITH;
    sh_pop(lx);
    return arith && i + 1 < end && s[i + 1] == ')' ? 2 : 1;
}

/* One step in M_NORMAL; returns characters used. */
static size_t sh_normal(struct sh_lexer *lx, const char *s, size_t i, size_t end)
{
    struct sh_frame *f = sh_top(lx);
    char c = s[i];
    bool was_word_start = lx->word_start;
    lx->word_start = false;
    if (lx->escaped) {
        lx->escaped = false;
        return 1;
    }
    if (c == '\\') {
        lx->escaped = true;
        return 1;
    }
    if (c == '$')
        return sh_dollar(lx, s, i, end);
    if (c == '`') {
        if (f->kind == F_BACKQ)
            sh_pop(lx);
        else
            sh_push(lx, F_BACKQ, false, i);
        return 1;
    }
    if (c == '"') {
        f->dq = !f->dq;
        return 1;
    }
    if (c == '}' && f->kind == F_BRACE && f->dq == f->dq_at_open) {
        sh_pop(lx);
        return 1;
    }
    if (f->dq)
        return 1;
    /* Unquoted from here on. */
    switch (c) {
    case '\'':
        lx->mode = M_SQUOTE;
        return 1;
    case '#':
        if (was_word_start) {
            lx->mode = M_COMMENT;
            return 1;
        }
        break;
    case '\n':
        sh_newline(lx);
        return 1;
    case '(':
        if (f->kind == F_CMDSUB || f->kind == F_ARITH)
            f->parens++;
        break;
    case ')':
        lx->word_start = true;
        return sh_close_paren(lx, s, i, end);
    case '<':
        /* In $((...)) and ${...}, `<<` is a shift or a pattern. */
        if (i + 1 < end && s[i + 1] == '<' && f->kind != F_ARITH && f->kind != F_BRACE)
            return sh_heredoc_op(lx, s, i, end);
        break;
    default:
        break;
    }
    lx->word_start = is_meta(c);
    return 1;
}

/* Lex s[begin..end), a literal part of the script. */
static void sh_text(struct sh_lexer *lx, const char *s, size_t begin, size_t end)
{
    size_t i = begin;
    while (i < end) {
        char c = s[i];
        switch (lx->mode) {
        case M_SQUOTE:
            if (c == '\'')
                lx->mode = M_NORMAL;
            i++;
            break;
        case M_ANSI:
            if (c == '\\')
                i++;
            else if (c == '\'')
                lx->mode = M_NORMAL;
            i++;
            break;
        case M_COMMENT:
            if (c == '\n')
                sh_newline(lx);
            i++;
            break;
        case M_DELIM:
            if (delim_char(lx, c, i))
                i++;
            break;
        case M_HEREDOC:
            heredoc_char(lx, c);
            i++;
            break;
        case M_NORMAL:
            i += sh_normal(lx, s, i, end);
            break;
        }
    }
}

/* A template at `offset`: report it if it cannot be substituted safely;
 * else say whether it is inside double quotes. */
static bool sh_template(struct sh_lexer *lx, size_t offset, bool *dq)
{
    const char *why = NULL;
    if (lx->mode == M_SQUOTE || lx->mode == M_ANSI)
        why = "template inside single quotes: its value would not be expanded";
    else if (lx->mode == M_HEREDOC)
        why = "template inside a here-document: pass the value through env instead";
    else if (lx->mode == M_DELIM)
        why = "template in a here-document delimiter";
    else if (lx->escaped && lx->mode == M_NORMAL)
        why = "template right after a backslash: the backslash would quote the expansion's "
              "quote";
    else if (sh_in(lx, F_BACKQ))
        why = "template inside backquotes: use $(...) instead";
    else if (sh_in(lx, F_ARITH))
        why = "template inside an arithmetic expansion $((...))";
    lx->escaped = false;
    lx->word_start = false;
    if (lx->mode == M_HEREDOC)
        lx->line_ok = false;   /* a line with a template is not the delimiter */
    if (why) {
        sh_problem(lx, offset, why);
        return false;
    }
    *dq = lx->mode == M_NORMAL && sh_top(lx)->dq;
    return true;
}

/* Lex the template as a shell script; dq[i] (may be NULL) tells whether
 * template i sits inside double quotes.  Returns the number of problems. */
static size_t shell_scan(const irp_template *t, bool *dq, irp_template_problem_fn fn, void *ctx)
{
    struct sh_lexer lx;
    memset(&lx, 0, sizeof lx);
    lx.depth = 1;
    lx.frames[0].kind = F_TOP;
    lx.word_start = true;
    lx.report = fn;
    lx.report_ctx = ctx;
    size_t k = 0;
    for (size_t i = 0; i < t->nparts; i++) {
        const struct tpl_part *p = &t->parts[i];
        if (!p->expr) {
            sh_text(&lx, t->src, p->start, p->end);
            continue;
        }
        bool in_dq = false;
        sh_template(&lx, p->start, &in_dq);
        if (dq)
            dq[k] = in_dq;
        k++;
    }
    return lx.problems;
}

size_t irp_template_shell_check(const irp_template *t, irp_template_problem_fn fn, void *ctx)
{
    if (!t->nexprs)
        return 0;
    return shell_scan(t, NULL, fn, ctx);
}

/* Keeps the first problem as the error. */
static void first_problem(void *ctx, size_t offset, const char *msg)
{
    irp_expr_error *err = ctx;
    if (err && err->code == 0)
        set_error(err, IRP_EPARSE, offset, "%s", msg);
}

static int script_text(const irp_template *t, const bool *dq, irp_shell_script *out)
{
    struct buf b = { 0 };
    int rc = buf_add(&b, "", 0);
    size_t k = 0;
    for (size_t i = 0; rc == 0 && i < t->nparts; i++) {
        const struct tpl_part *p = &t->parts[i];
        char var[48];
        if (!p->expr) {
            rc = buf_add(&b, t->src + p->start, p->end - p->start);
            continue;
        }
        k++;
        int n = snprintf(var, sizeof var, dq[k - 1] ? "${IRP_V%zu}" : "\"${IRP_V%zu}\"", k);
        rc = buf_add(&b, var, (size_t)n);
    }
    if (rc < 0) {
        free(b.p);
        return rc;
    }
    out->text = b.p;
    out->len = b.len;
    return 0;
}

/* Evaluate every template into values[] and env[]. */
static int script_values(const irp_template *t, const irp_scope *scope, irp_shell_script *out,
                         irp_expr_error *err)
{
    out->values = calloc(t->nexprs + 1, sizeof *out->values);
    out->env = calloc(t->nexprs + 1, sizeof *out->env);   /* NULL-terminated */
    if (!out->values || !out->env)
        return set_error(err, IRP_ENOMEM, 0, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < t->nparts; i++) {
        const struct tpl_part *p = &t->parts[i];
        if (!p->expr)
            continue;
        char *text;
        size_t len;
        int rc = irp_expr_eval(p->expr, scope, &out->values[k], err);
        if (rc < 0)
            return rc;
        if (irp_value_render(out->values[k], &text, &len) < 0)
            return set_error(err, IRP_ENOMEM, p->start, "out of memory");
        k++;
        if (memchr(text, '\0', len)) {
            free(text);
            return set_error(err, IRP_EINVAL, p->start,
                             "value of template %zu holds a NUL byte, which no environment "
                             "variable can", k);
        }
        size_t need = len + 32;
        out->env[k - 1] = malloc(need);
        if (out->env[k - 1])
            snprintf(out->env[k - 1], need, "IRP_V%zu=%s", k, text);
        free(text);
        if (!out->env[k - 1])
            return set_error(err, IRP_ENOMEM, p->start, "out of memory");
    }
    return 0;
}

int irp_template_shell_script(const irp_template *t, const irp_scope *scope,
                              irp_shell_script *out, irp_expr_error *err)
{
    memset(out, 0, sizeof *out);
    bool *dq = calloc(t->nexprs + 1, sizeof *dq);
    if (!dq)
        return set_error(err, IRP_ENOMEM, 0, "out of memory");
    irp_expr_error first = { 0 };
    int rc = 0;
    /* As irp_template_shell_check(): with no template there is nothing to
     * substitute, so nothing the lexer could not follow is a problem. */
    if (t->nexprs && shell_scan(t, dq, first_problem, &first) > 0) {
        rc = first.code ? first.code : IRP_EPARSE;
        if (err)
            *err = first;
    }
    out->nvalues = t->nexprs;
    if (rc == 0 && (rc = script_text(t, dq, out)) < 0)
        set_error(err, rc, 0, "script: %s", irp_strerror(rc));
    if (rc == 0 && scope)
        rc = script_values(t, scope, out, err);
    free(dq);
    if (rc < 0)
        irp_shell_script_release(out);
    return rc;
}

void irp_shell_script_release(irp_shell_script *s)
{
    for (size_t i = 0; i < s->nvalues; i++) {
        if (s->values)
            irp_value_unref(s->values[i]);
        if (s->env)
            free(s->env[i]);
    }
    free(s->values);
    free(s->env);
    free(s->text);
    memset(s, 0, sizeof *s);
}
