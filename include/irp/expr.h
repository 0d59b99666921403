/* irp — the expression language of conditions and templates.
 *
 * Syntax (whitespace -- space, tab, CR, LF -- is free between tokens):
 *
 *   or      := and ( '||' and )*
 *   and     := compare ( '&&' compare )*
 *   compare := unary [ ( '==' | '!=' | '<' | '<=' | '>' | '>=' ) unary ]
 *   unary   := '!' unary | primary
 *   primary := literal | '[' [ or ( ',' or )* ] ']' | '(' or ')'
 *            | FUNCTION '(' [ or ( ',' or )* ] ')' | reference
 *
 * so `!` binds tighter than comparisons, comparisons tighter than `&&`,
 * and `&&` tighter than `||`.  Comparisons do not chain: `a < b < c` is
 * an error (write `a < b && b < c`).
 *
 * Literals:
 *   - strings in single or double quotes.  A backslash escapes `\\`,
 *     `\'`, `\"`, and writes a newline (`\n`) or a tab (`\t`); any other
 *     escape is an error.  A string may span lines.
 *   - numbers: `-`? digits [ `.` digits ] [ (`e`|`E`) [`+`|`-`] digits ].
 *     A `-` is part of a number only when a digit follows it directly;
 *     there is no arithmetic.
 *   - durations: digits with units, as irp_duration_parse() reads them
 *     (`250ms`, `2h`, `1h30m`, optionally after `-`), giving a number of
 *     seconds (`250ms` is 0.25).
 *   - `true`, `false`, `null`.
 * References: a root name, then `.segment`s with no space around the
 * dots.  The root is one of inputs vars env secrets item index steps run
 * deadlines; any other name is an error when parsing.  A name is
 * `[A-Za-z_][A-Za-z0-9_-]*`; a segment after a dot may also start with a
 * digit (step ids may).  A hyphen belongs to the name:
 * `steps.brief-registrar.outputs.answer` is one reference of 4 segments.
 * Functions, with the number of arguments checked when parsing:
 *   contains(list, x)     x equals an item (irp_value_equal)
 *   contains(string, s)   s is a substring
 *   contains(map, key)    key is one of the map's keys
 *   len(x)                bytes of a string, items of a list or map
 *   join(list[, sep])     items rendered as text (irp_value_render),
 *                         separated by sep (default ",")
 *   lower(s), upper(s)    ASCII case mapping; other bytes are kept
 *   starts_with(s, p), ends_with(s, p)
 *   number(x)             a number as is; a string holding one decimal
 *                         number, optionally signed, with nothing else but
 *                         leading or trailing whitespace (so a command's
 *                         stdout with its newline converts), else an
 *                         error; true -> 1, false -> 0; anything else
 *                         (null included) is an error.
 *
 * Semantics:
 *   - `==` and `!=` take any two values; different types are unequal;
 *     lists and maps compare deeply.
 *   - `<` `<=` `>` `>=` need two numbers, two strings (bytewise, which
 *     orders irp's UTC times) or two booleans; anything else is an error.
 *   - `&&` and `||` need booleans (no truthiness: `'' || x` is an error)
 *     and short-circuit: `false && x` and `true || x` never evaluate x,
 *     so an error on the right-hand side does not happen.  `!` needs a
 *     boolean.
 *   - Every result derived from a secret value is secret (value.h).
 *
 * Limits: parentheses, lists, calls and `!` each open one level of
 * nesting; more than IRP_EXPR_MAX_NESTING levels are refused when
 * parsing, so the recursion of evaluation and walks is bounded.  Chains
 * of `&&` or `||` are flat and cost no depth.
 *
 * Errors carry a code, a byte offset into the source and a short
 * lowercase message that says what is wrong first.  A type error points
 * at the operand or argument of the wrong type, except for `<` `<=` `>`
 * `>=`, which point at the operator.  Messages never quote the contents
 * of a secret value.
 */
#ifndef IRP_EXPR_H
#define IRP_EXPR_H

#include <stddef.h>

#include "irp/arena.h"
#include "irp/value.h"

#define IRP_EXPR_MAX_NESTING 64
#define IRP_EXPR_ERRMAX 200

typedef struct irp_expr irp_expr;

typedef struct irp_expr_error {
    int code;            /* IRP_E* */
    size_t offset;       /* byte offset into the parsed source */
    char msg[IRP_EXPR_ERRMAX];
} irp_expr_error;

/* Where references get their values.  `lookup` resolves one whole
 * reference -- seg[0] is the root, n >= 1 -- and returns 0 with a new
 * reference in *out (a missing output is the scope's business: it may
 * give null), or a negative IRP_E* code with a message in errbuf (for
 * instance IRP_EUNDEF, "no step 'x'").  Values read from secrets must come
 * back tainted (irp_value_taint). */
typedef struct irp_scope {
    int (*lookup)(void *ctx, const char *const *seg, size_t n, irp_value **out,
                  char *errbuf, size_t errlen);
    void *ctx;
} irp_scope;

/* Parse src[0..len).  On success returns 0 and sets *out to a tree
 * allocated in `a` (it lives as long as the arena).  Otherwise returns
 * IRP_EPARSE (syntax, unknown name or function, wrong number of
 * arguments), IRP_ELIMIT (nested too deeply) or IRP_ENOMEM, and fills
 * *err (which may be NULL). */
int irp_expr_parse(irp_arena *a, const char *src, size_t len, irp_expr **out,
                   irp_expr_error *err);

/* Parse src[begin..end); every offset (in errors, in nodes) is counted
 * from src, so an expression inside a larger string reports positions in
 * that string. */
int irp_expr_parse_range(irp_arena *a, const char *src, size_t begin, size_t end,
                         irp_expr **out, irp_expr_error *err);

/* Parse a `when` condition: a bare expression, or one wrapped entirely in
 * `${{ }}` (surrounding whitespace is ignored).  Anything else holding a
 * `${{`, such as `${{ a }} && ${{ b }}`, is an error. */
int irp_expr_parse_when(irp_arena *a, const char *src, size_t len, irp_expr **out,
                        irp_expr_error *err);

/* Offset, within s, of the `}}` that closes a template whose expression
 * starts at s[begin]; quoted strings are skipped.  Returns `end` when
 * there is none. */
size_t irp_expr_find_close(const char *s, size_t begin, size_t end);

/* Evaluate.  Returns 0 and a new reference in *out (the caller unrefs
 * it), or a negative IRP_E* code with *err filled (may be NULL):
 * IRP_ETYPE (wrong types), IRP_EINVAL (number() cannot convert), the
 * scope's code for a reference it cannot resolve, IRP_ENOMEM. */
int irp_expr_eval(const irp_expr *e, const irp_scope *scope, irp_value **out,
                  irp_expr_error *err);

/* Call fn for every reference in source order.  seg[0..n) are the
 * reference's names (borrowed from the arena); offset is where the
 * reference starts.  Since a reference holds no spaces, segment i starts
 * at offset + strlen(seg[0]) + 1 + ... + strlen(seg[i-1]) + 1.  A
 * non-zero return from fn stops the walk and is returned. */
typedef int (*irp_expr_ref_fn)(void *ctx, const char *const *seg, size_t n, size_t offset);
int irp_expr_walk_refs(const irp_expr *e, irp_expr_ref_fn fn, void *ctx);

/* Byte offset where the expression starts. */
size_t irp_expr_offset(const irp_expr *e);

/* If the whole expression is one reference, set *seg and *n and return
 * 1; else 0.  (`for_each: ${{ inputs.hosts }}` can then be checked
 * against the declared type of the input.) */
int irp_expr_as_ref(const irp_expr *e, const char *const **seg, size_t *n);

#endif
