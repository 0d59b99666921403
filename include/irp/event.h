/* irp — a journal event as it passes from the engine to the journal and
 * the report: either a JSON object, or its members as typed fields.
 *
 * The step events most lines are (step.started, step.finished) are made
 * as fields on the stack: the journal writes them as text and the report
 * reads them without a JSON object being built and freed for each.
 * Whoever needs the object asks irp_event_json(), which makes it once.
 * The text written is the same either way (irp_json_dump's).
 */
#ifndef IRP_EVENT_H
#define IRP_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "irp/jsonutil.h"

typedef enum { IRP_EVF_STR, IRP_EVF_INT, IRP_EVF_JSON } irp_event_ftype;

/* One member.  All borrowed for as long as the event is in use. */
typedef struct irp_event_field {
    const char *key;             /* printable ASCII but '"' and '\\', under 60 bytes:
                                    written as it is */
    unsigned char klen;          /* strlen(key), or 0: not known */
    irp_event_ftype type;
    const char *s;               /* IRP_EVF_STR: s[0..len), UTF-8, with a NUL at s[len] */
    size_t len;
    int64_t i;                   /* IRP_EVF_INT */
    const json_t *j;             /* IRP_EVF_JSON */
} irp_event_field;

/* The key's length is worked out when the key is a literal the compiler
 * sees (and at the call otherwise). */
#define IRP_EVF_KEY(k) .key = (k), .klen = (unsigned char)strlen(k)
#define IRP_EVF_TEXT(k, str, n) \
    ((irp_event_field){ IRP_EVF_KEY(k), .type = IRP_EVF_STR, .s = (str), .len = (n) })
#define IRP_EVF_NUM(k, v) ((irp_event_field){ IRP_EVF_KEY(k), .type = IRP_EVF_INT, .i = (v) })
#define IRP_EVF_VALUE(k, v) ((irp_event_field){ IRP_EVF_KEY(k), .type = IRP_EVF_JSON, .j = (v) })

typedef struct irp_event {
    json_t *json;                /* the object: given (borrowed), or made by
                                    irp_event_json (owned: irp_event_done) */
    const irp_event_field *f;    /* the members when made from fields */
    size_t n;
    bool made;                   /* json was made here */
    long step_index;             /* the `step` member's index in the
                                    playbook, or -1: a hint for readers */
} irp_event;

/* An event that is an object the caller owns. */
#define IRP_EVENT_OF(obj) ((irp_event){ .json = (obj), .step_index = -1 })
/* An event made of n fields, in the order they are written. */
#define IRP_EVENT_FIELDS(fields, count) ((irp_event){ .f = (fields), .n = (count), .step_index = -1 })

/* The event as an object (borrowed from ev; json_incref to keep it),
 * made once from the fields when there are any; NULL when out of memory
 * or a string is not UTF-8. */
json_t *irp_event_json(irp_event *ev);

/* The member `key` as text, or NULL when absent or not a string. */
const char *irp_event_str(irp_event *ev, const char *key);

/* The members as compact JSON, without braces, appended to b: what
 * irp_json_dump_members writes for irp_event_json(ev).  0, IRP_EINVAL (a
 * string that is not UTF-8, or ev is neither an object nor fields) or
 * IRP_ENOMEM; b->len is unchanged on error. */
int irp_event_dump_members(const irp_event *ev, irp_json_buf *b);

/* Free what irp_event_json made; the event is then empty. */
void irp_event_done(irp_event *ev);

#endif
