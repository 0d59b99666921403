/* irp — templates: `${{ expression }}` inside any string.
 *
 * A template is its text split into literal parts and expression parts.
 * The expression of a part runs from after `${{` to the first `}}` that is
 * not inside a quoted string of the expression; there is no escape for a
 * literal `${{` (write `${{ '${{' }}`).  A string without `${{` is a
 * template of one literal part, built with one arena allocation and one
 * scan, because the loader parses every string of a playbook this way.
 *
 * Offsets (in errors and in walks) are byte offsets into the string given
 * to irp_template_parse().
 *
 * Shell scripts (`run: "string"`).  A value must never become shell
 * syntax, so the n-th template of a script (counting from 1) is not
 * pasted in: the script says `"${IRP_V<n>}"` -- or `${IRP_V<n>}` where the
 * template already sits inside double quotes -- and the value travels in
 * the environment variable IRP_V<n>.  The script text therefore does not
 * depend on any value.  irp_template_shell_check() refuses the places
 * where that substitution would not be a plain quoted expansion: single
 * quotes (and $'...'), backquotes, here-documents (body or delimiter),
 * arithmetic expansions $((...)), and right after a backslash.
 *
 * Its shell lexer follows single and double quotes, backslashes, $'...',
 * $(...), $((...)), ${...}, backquotes, comments (`#` at the start of a
 * word) and here-documents (`<<WORD`, `<<-WORD`, `<<'WORD'`, `<<"WORD"`,
 * body up to the line that is exactly the delimiter, leading tabs
 * ignored with `<<-`).  It does not parse `case` patterns: a `)` of a
 * `case` inside $(...) ends the $(...) early for it.
 */
#ifndef IRP_TEMPLATE_H
#define IRP_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "irp/arena.h"
#include "irp/expr.h"
#include "irp/value.h"

typedef struct irp_template irp_template;

/* Parse s[0..len).  On success returns 0 and sets *out to a template in
 * `a` that keeps its own copy of the text (s may go away).  Otherwise
 * returns the error of irp_expr_parse() for a bad expression, or
 * IRP_EPARSE for a `${{` without its `}}`, with *err filled (may be
 * NULL). */
int irp_template_parse(irp_arena *a, const char *s, size_t len, irp_template **out,
                       irp_expr_error *err);
/* The same without copying the text: s[0..len) must be NUL-terminated
 * (s[len] == 0) and outlive the template, as a playbook's strings do in
 * its arena. */
int irp_template_parse_borrowed(irp_arena *a, const char *s, size_t len, irp_template **out,
                                irp_expr_error *err);

/* The whole text as given (arena copy, NUL-terminated); for a template
 * without expressions, that is its value. */
const char *irp_template_text(const irp_template *t, size_t *len);

bool irp_template_has_exprs(const irp_template *t);
/* Exactly one `${{ }}` and nothing else, not even spaces: rendering keeps
 * the expression's type. */
bool irp_template_is_single_expr(const irp_template *t);
/* The expression of a single-expression template, else NULL. */
const irp_expr *irp_template_single_expr(const irp_template *t);
size_t irp_template_nexprs(const irp_template *t);

/* Call fn for every expression in order: index counts from 0, offset is
 * where its `${{` starts.  A non-zero return stops the walk and is
 * returned. */
typedef int (*irp_template_expr_fn)(void *ctx, const irp_expr *e, size_t index, size_t offset);
int irp_template_walk_exprs(const irp_template *t, irp_template_expr_fn fn, void *ctx);
/* irp_expr_walk_refs() over every expression. */
int irp_template_walk_refs(const irp_template *t, irp_expr_ref_fn fn, void *ctx);

/* Render.  A single-expression template gives the expression's value; any
 * other gives a string: literal text plus each value as
 * irp_value_render() writes it.  The string is secret when any value in
 * it is.  Returns 0 and a new reference in *out, or the error of
 * irp_expr_eval(), IRP_ELIMIT (result past 64 MiB) or IRP_ENOMEM. */
int irp_template_render(const irp_template *t, const irp_scope *scope, irp_value **out,
                        irp_expr_error *err);

/* The same as text, with no value in between: what irp_value_render()
 * would write of irp_template_render()'s result.  *out is malloc'd,
 * NUL-terminated after *len bytes (len may be NULL); *secret (may be
 * NULL) tells whether any value in it is secret.  Errors as
 * irp_template_render(); on error *out is left alone. */
int irp_template_render_text(const irp_template *t, const irp_scope *scope, char **out,
                             size_t *len, bool *secret, irp_expr_error *err);

/* ---- Shell scripts. */

/* Report every template of `t`, read as a shell script, that sits where
 * it cannot be substituted safely (see above).  fn (may be NULL) gets the
 * offset of the template's `${{` and a message.  Returns the number of
 * problems. */
typedef void (*irp_template_problem_fn)(void *ctx, size_t offset, const char *msg);
size_t irp_template_shell_check(const irp_template *t, irp_template_problem_fn fn, void *ctx);

typedef struct irp_shell_script {
    char *text;          /* the script, malloc'd, NUL-terminated */
    size_t len;
    size_t nvalues;      /* = number of templates */
    irp_value **values;  /* values[i] for IRP_V<i+1>: new references */
    char **env;          /* env[i] = "IRP_V<i+1>=<rendered value>", malloc'd;
                            env[nvalues] is NULL */
} irp_shell_script;

/* Build the script of a `run:` string.  With scope NULL only the text is
 * built (values and env stay NULL), for showing the script without
 * running it.  Returns 0; IRP_EPARSE with the first problem of
 * irp_template_shell_check(); the error of an expression; IRP_EINVAL when
 * a rendered value holds a NUL byte (no environment variable can);
 * IRP_ENOMEM.  On error *out holds nothing to release.  Taint is kept on
 * the values: the caller decides what a secret here means. */
int irp_template_shell_script(const irp_template *t, const irp_scope *scope,
                              irp_shell_script *out, irp_expr_error *err);
void irp_shell_script_release(irp_shell_script *s);

#endif
