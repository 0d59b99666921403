/* irp — the typed values of expressions and templates.
 *
 * A value is null, a boolean, a number (double), a string (bytes with a
 * length; may hold any byte, NUL included), a list or a map (string keys,
 * kept in insertion order).  Values are heap-allocated and reference
 * counted:
 *
 *   - a function documented "returns a new reference" hands the caller one
 *     reference, which the caller gives back with irp_value_unref();
 *   - "borrowed" results stay valid as long as the caller's reference to
 *     the value they came from;
 *   - functions documented "steals" take over the caller's reference to
 *     that argument, on success and on failure alike.
 *
 * A value is immutable once built.  The builder calls (list_append,
 * map_set) work only on a value nobody else holds yet (refcount 1) and
 * return IRP_EINVAL otherwise.  Reference counts are not atomic: a value
 * belongs to one thread at a time.
 *
 * Secret taint.  Every value carries a `secret` bit.  A value read from a
 * secret is marked with irp_value_taint(); every value derived from others
 * -- list building, map building, template concatenation, functions,
 * comparisons -- is secret when any of its sources is, so whatever shows
 * values to people (journal, reports, the terminal) can write `***` for
 * "anything derived from a secret" by looking at one bit.
 *
 * Nesting is limited to IRP_VALUE_MAX_DEPTH levels, checked as values are
 * built, so the recursive operations below are bounded.
 */
#ifndef IRP_VALUE_H
#define IRP_VALUE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

typedef enum {
    IRP_VALUE_NULL,
    IRP_VALUE_BOOL,
    IRP_VALUE_NUMBER,
    IRP_VALUE_STRING,
    IRP_VALUE_LIST,
    IRP_VALUE_MAP,
} irp_value_type;

typedef struct irp_value irp_value;

/* A scalar has depth 1; a list or map one more than its deepest item. */
#define IRP_VALUE_MAX_DEPTH 128

/* ---- Constructors: each returns a new reference, or NULL when out of
 * memory.  None of them is secret. */
irp_value *irp_value_new_null(void);
irp_value *irp_value_new_bool(bool b);
/* NaN and infinities are refused (NULL): no expression can produce one. */
irp_value *irp_value_new_number(double d);
/* Copies s[0..len); the copy is NUL-terminated after `len` bytes. */
irp_value *irp_value_new_string(const char *s, size_t len);
irp_value *irp_value_new_cstring(const char *s);
irp_value *irp_value_new_list(void);
irp_value *irp_value_new_map(void);

/* ---- Builders, for a value still under construction (refcount 1). */

/* Append `item` (steals it).  The list becomes secret if the item is.
 * IRP_EINVAL (list shared, not a list, item NULL), IRP_ELIMIT (too deep),
 * IRP_ENOMEM. */
int irp_value_list_append(irp_value *list, irp_value *item);

/* Set key -> val (steals val).  A new key goes last; an existing key
 * keeps its place and gets the new value.  The map becomes secret if the
 * value is.  Errors as irp_value_list_append. */
int irp_value_map_set(irp_value *map, const char *key, size_t keylen, irp_value *val);

/* Mark a value secret.  Allowed at any time, even on a shared value:
 * taint only ever adds redaction, it never shows anything. */
void irp_value_taint(irp_value *v);

/* ---- References (NULL-safe). */
irp_value *irp_value_ref(irp_value *v);   /* returns v */
void irp_value_unref(irp_value *v);

/* ---- Accessors.  Each expects the right type (checked with assert);
 * results are borrowed from `v`.  irp_value_type_of(NULL) is
 * IRP_VALUE_NULL. */
irp_value_type irp_value_type_of(const irp_value *v);
/* "null", "boolean", "number", "string", "list", "map"; never NULL. */
const char *irp_value_type_name(irp_value_type t);
bool irp_value_is_secret(const irp_value *v);

bool irp_value_bool(const irp_value *v);
double irp_value_number(const irp_value *v);
/* Bytes of a string, NUL-terminated after *len bytes (len may be NULL). */
const char *irp_value_string(const irp_value *v, size_t *len);

size_t irp_value_list_len(const irp_value *v);
/* Item i (i < len), borrowed. */
irp_value *irp_value_list_at(const irp_value *v, size_t i);

size_t irp_value_map_len(const irp_value *v);
/* Entry i in insertion order (i < len): key (NUL-terminated, *keylen may
 * be NULL) and value, both borrowed. */
const char *irp_value_map_key_at(const irp_value *v, size_t i, size_t *keylen);
irp_value *irp_value_map_value_at(const irp_value *v, size_t i);
/* The value under `key`, borrowed, or NULL when the key is absent. */
irp_value *irp_value_map_get(const irp_value *v, const char *key, size_t keylen);

/* ---- Comparison. */

/* Deep equality.  Values of different types are unequal; numbers compare
 * as doubles (so 0 == -0); taint is ignored. */
bool irp_value_equal(const irp_value *a, const irp_value *b);

/* Order two values of the same type: numbers, strings (bytewise, a prefix
 * first) or booleans (false < true).  Sets *cmp to <0, 0 or >0 and
 * returns 0; IRP_ETYPE for different types, nulls, lists or maps. */
int irp_value_compare(const irp_value *a, const irp_value *b, int *cmp);

/* ---- Text. */

/* Render as text: null -> "", booleans `true`/`false`, numbers in their
 * shortest form (see irp_value_format_number), strings as they are, lists
 * and maps as compact JSON.  *out is malloc'd, NUL-terminated; the caller
 * frees it.  *len (may be NULL) gets its length: a string may hold NULs.
 * Taint is not applied: check irp_value_is_secret() before showing it.
 * Returns 0 or IRP_ENOMEM. */
int irp_value_render(const irp_value *v, char **out, size_t *len);

/* The shortest text for a number: an integral value below 1e21 in
 * magnitude as plain digits (`3`, `1000000`), anything else as the
 * shortest %g form that reads back to the same double (`0.1`, `2.5`,
 * `1e-07`, `1e+21`).  Negative zero is written `0`.  32 bytes suffice. */
#define IRP_NUMBER_BUFSZ 32
void irp_value_format_number(double d, char buf[IRP_NUMBER_BUFSZ]);
/* (Both rely on the "C" locale's decimal point, which irp never changes.) */

/* irp_value_render()'s text without a copy where one exists: a string's
 * own bytes (borrowed from v), or the text of a null, boolean or number
 * written in buf.  Only a list or map is rendered into a new *owned
 * (malloc'd; the caller frees it), else *owned is NULL.  Returns the
 * text, NUL-terminated after *len bytes, or NULL when out of memory. */
const char *irp_value_text(const irp_value *v, char buf[IRP_NUMBER_BUFSZ], size_t *len,
                           char **owned);

/* ---- JSON (jansson). */

/* Replace every secret value by the string "***". */
#define IRP_VALUE_JSON_REDACT 0x1u

/* A new jansson value (caller json_decref()s it), or NULL when out of
 * memory.  Integral numbers within +-2^53 become JSON integers, other
 * numbers reals.  Bytes that are not UTF-8 are replaced by U+FFFD. */
json_t *irp_value_to_json(const irp_value *v, unsigned flags);

/* Build a value from JSON.  Integers beyond 2^53 lose precision (numbers
 * are doubles).  Returns 0 and a new reference in *out; IRP_ELIMIT when
 * nested deeper than IRP_VALUE_MAX_DEPTH, IRP_ENOMEM. */
int irp_value_from_json(const json_t *j, irp_value **out);

#endif
