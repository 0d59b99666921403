/* irp — text into JSON safely.
 *
 * jansson refuses strings that are not UTF-8 (json_string returns NULL),
 * which would silently drop a value from the journal.  The journal writes
 * such a byte string with U+FFFD for each bad byte and keeps the raw
 * bytes in base64 beside it (SPEC §3: `<field>_b64`).
 */
#ifndef IRP_JSONUTIL_H
#define IRP_JSONUTIL_H

#include <stdint.h>

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

bool irp_utf8_valid(const char *s, size_t len);
/* A JSON string: the bytes as they are when valid UTF-8, else with U+FFFD
 * for each invalid byte.  NULL only when out of memory. */
json_t *irp_json_text(const char *s, size_t len);
/* Standard base64 of the bytes, as a JSON string. */
json_t *irp_json_b64(const void *buf, size_t len);

/* A map value as a JSON object, secrets as ***, and for each string entry
 * that is not UTF-8 a sibling `<key>_b64` with its raw bytes. */
struct irp_value;
json_t *irp_json_map_b64(const struct irp_value *map);

/* Compact JSON text, appended at buf->p + buf->len; the caller owns
 * buf->p (malloc'd, grown here as needed).  The same bytes as
 * json_dumpb(v, JSON_COMPACT) -- objects in insertion order, strings
 * escaped as jansson escapes them -- at a fraction of its cost: it is how
 * every journal line is written.  0, IRP_EINVAL (a string or key that is
 * not UTF-8, which json_dumpb refuses too, or nesting deeper than
 * IRP_JSON_MAX_DEPTH) or IRP_ENOMEM; on error buf->len is unchanged. */
#define IRP_JSON_MAX_DEPTH 2048
typedef struct irp_json_buf {
    char *p;
    size_t len, cap;
} irp_json_buf;
int irp_json_dump(const json_t *v, irp_json_buf *buf);
/* Append n bytes as they are: 0 or IRP_ENOMEM. */
int irp_json_buf_put(irp_json_buf *buf, const char *s, size_t n);
/* Append s[0..len) as a JSON string, as irp_json_dump writes one: 0,
 * IRP_EINVAL (not UTF-8; buf->len unchanged) or IRP_ENOMEM. */
int irp_json_buf_put_string(irp_json_buf *buf, const char *s, size_t len);
/* Append v as a JSON integer: 0 or IRP_ENOMEM. */
int irp_json_buf_put_int(irp_json_buf *buf, int64_t v);
/* An object's members as irp_json_dump writes them, without the braces
 * (json_dumpb's JSON_EMBED); nothing for an empty object. */
int irp_json_dump_members(const json_t *obj, irp_json_buf *buf);

#endif
