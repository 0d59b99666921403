/* irp — text into JSON safely.
 *
 * jansson refuses strings that are not UTF-8 (json_string returns NULL),
 * which would silently drop a value from the journal.  The journal writes
 * such a byte string with U+FFFD for each bad byte and keeps the raw
 * bytes in base64 beside it (SPEC §3: `<field>_b64`).
 */
#ifndef IRP_JSONUTIL_H
#define IRP_JSONUTIL_H

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

#endif
