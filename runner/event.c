/* irp — a journal event as an object or as fields (see irp/event.h). */
#include <string.h>

#include "irp/error.h"
#include "irp/event.h"

static json_t *field_json(const irp_event_field *f)
{
    switch (f->type) {
    case IRP_EVF_STR:
        return json_stringn(f->s, f->len);
    case IRP_EVF_INT:
        return json_integer(f->i);
    case IRP_EVF_JSON:
        return json_incref((json_t *)f->j);
    }
    return NULL;
}

json_t *irp_event_json(irp_event *ev)
{
    if (ev->json || !ev->f)
        return ev->json;
    json_t *o = json_object();
    for (size_t i = 0; o && i < ev->n; i++) {
        json_t *v = field_json(&ev->f[i]);
        if (!v || json_object_set_new_nocheck(o, ev->f[i].key, v) < 0) {
            json_decref(o);
            o = NULL;
        }
    }
    ev->json = o;
    ev->made = o != NULL;
    return o;
}

const char *irp_event_str(irp_event *ev, const char *key)
{
    if (!ev->f || ev->json)
        return json_string_value(json_object_get(ev->json, key));
    for (size_t i = 0; i < ev->n; i++)
        if (strcmp(ev->f[i].key, key) == 0)
            return ev->f[i].type == IRP_EVF_STR ? ev->f[i].s : NULL;
    return NULL;
}

static int dump_field(const irp_event_field *f, irp_json_buf *b)
{
    /* Keys need no escapes (irp/event.h): "key": in one piece. */
    char key[64];
    size_t n = f->klen ? f->klen : strlen(f->key);
    if (n + 3 > sizeof key)
        return IRP_EINVAL;
    key[0] = '"';
    memcpy(key + 1, f->key, n);
    memcpy(key + 1 + n, "\":", 2);
    int rc = irp_json_buf_put(b, key, n + 3);
    if (rc)
        return rc;
    switch (f->type) {
    case IRP_EVF_STR:
        return irp_json_buf_put_string(b, f->s, f->len);
    case IRP_EVF_INT:
        return irp_json_buf_put_int(b, f->i);
    case IRP_EVF_JSON:
        return irp_json_dump(f->j, b);
    }
    return IRP_EINVAL;
}

int irp_event_dump_members(const irp_event *ev, irp_json_buf *b)
{
    if (!ev->f || ev->json)
        return irp_json_dump_members(ev->json, b);
    size_t len = b->len;
    int rc = 0;
    for (size_t i = 0; i < ev->n && !rc; i++) {
        if (i)
            rc = irp_json_buf_put(b, ",", 1);
        if (!rc)
            rc = dump_field(&ev->f[i], b);
    }
    if (rc)
        b->len = len;
    return rc;
}

void irp_event_done(irp_event *ev)
{
    if (ev->made)
        json_decref(ev->json);
    *ev = (irp_event){ .step_index = -1 };
}
