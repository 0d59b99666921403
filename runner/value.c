#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irp/error.h"
#include "irp/value.h"

/* Maps look keys up linearly while small; past this many keys they keep
 * an open-addressing index so building a big map from JSON stays linear. */
#define MAP_INDEX_MIN 8
/* A rendered value is built in memory; past this it is refused rather
 * than allowed to exhaust memory. */
#define RENDER_MAX ((size_t)1 << 30)

struct map_entry {
    char *key;          /* malloc'd, NUL-terminated */
    size_t keylen;
    uint32_t hash;
    irp_value *val;     /* owned reference */
};

struct irp_value {
    size_t refcnt;
    irp_value_type type;
    bool secret;
    unsigned depth;
    union {
        bool b;
        double n;
        struct {
            size_t len;
            char *data;   /* points into the same allocation */
        } s;
        struct {
            irp_value **items;
            size_t n, cap;
        } list;
        struct {
            struct map_entry *ents;
            size_t n, cap;
            uint32_t *index;  /* entry number + 1, 0 = free; NULL while small */
            size_t index_cap; /* a power of two */
        } map;
    } u;
};

/* ---------------------------------------------------------------- */
/* Construction                                                      */

static irp_value *value_alloc(irp_value_type type, size_t extra)
{
    irp_value *v = calloc(1, sizeof *v + extra);
    if (!v)
        return NULL;
    v->refcnt = 1;
    v->type = type;
    v->depth = 1;
    return v;
}

irp_value *irp_value_new_null(void)
{
    return value_alloc(IRP_VALUE_NULL, 0);
}

irp_value *irp_value_new_bool(bool b)
{
    irp_value *v = value_alloc(IRP_VALUE_BOOL, 0);
    if (v)
        v->u.b = b;
    return v;
}

irp_value *irp_value_new_number(double d)
{
    if (!isfinite(d))
        return NULL;
    irp_value *v = value_alloc(IRP_VALUE_NUMBER, 0);
    if (v)
        v->u.n = d;
    return v;
}

irp_value *irp_value_new_string(const char *s, size_t len)
{
    if (len > SIZE_MAX - sizeof(irp_value) - 1)
        return NULL;
    irp_value *v = value_alloc(IRP_VALUE_STRING, len + 1);
    if (!v)
        return NULL;
    v->u.s.data = (char *)(v + 1);
    v->u.s.len = len;
    if (len)
        memcpy(v->u.s.data, s, len);
    v->u.s.data[len] = '\0';
    return v;
}

irp_value *irp_value_new_cstring(const char *s)
{
    return irp_value_new_string(s, strlen(s));
}

irp_value *irp_value_new_list(void)
{
    return value_alloc(IRP_VALUE_LIST, 0);
}

irp_value *irp_value_new_map(void)
{
    return value_alloc(IRP_VALUE_MAP, 0);
}

void irp_value_taint(irp_value *v)
{
    if (v)
        v->secret = true;
}

irp_value *irp_value_ref(irp_value *v)
{
    if (v)
        v->refcnt++;
    return v;
}

void irp_value_unref(irp_value *v)
{
    if (!v || --v->refcnt > 0)
        return;
    if (v->type == IRP_VALUE_LIST) {
        for (size_t i = 0; i < v->u.list.n; i++)
            irp_value_unref(v->u.list.items[i]);
        free(v->u.list.items);
    } else if (v->type == IRP_VALUE_MAP) {
        for (size_t i = 0; i < v->u.map.n; i++) {
            free(v->u.map.ents[i].key);
            irp_value_unref(v->u.map.ents[i].val);
        }
        free(v->u.map.ents);
        free(v->u.map.index);
    }
    free(v);
}

/* Grow an array of `size`-byte elements to hold at least n+1. */
static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 4;
    if (ncap > SIZE_MAX / size)
        return IRP_ENOMEM;
    void *p = realloc(*arr, ncap * size);
    if (!p)
        return IRP_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* Common checks of the builders; takes over `item` on failure. */
static int builder_check(irp_value *c, irp_value_type type, irp_value *item)
{
    if (!c || c->type != type || c->refcnt != 1 || !item || item == c) {
        irp_value_unref(item);
        return IRP_EINVAL;
    }
    if (item->depth + 1 > IRP_VALUE_MAX_DEPTH) {
        irp_value_unref(item);
        return IRP_ELIMIT;
    }
    return 0;
}

/* What a container learns from a new member: depth and taint. */
static void absorb(irp_value *c, const irp_value *item)
{
    if (item->depth + 1 > c->depth)
        c->depth = item->depth + 1;
    if (item->secret)
        c->secret = true;
}

int irp_value_list_append(irp_value *list, irp_value *item)
{
    int rc = builder_check(list, IRP_VALUE_LIST, item);
    if (rc < 0)
        return rc;
    if (grow((void **)&list->u.list.items, &list->u.list.cap, list->u.list.n,
             sizeof *list->u.list.items) < 0) {
        irp_value_unref(item);
        return IRP_ENOMEM;
    }
    list->u.list.items[list->u.list.n++] = item;
    absorb(list, item);
    return 0;
}

/* FNV-1a: keys are short and this only feeds the index. */
static uint32_t hash_key(const char *k, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)k[i];
        h *= 16777619u;
    }
    return h;
}

static void index_put(irp_value *m, size_t entry)
{
    size_t mask = m->u.map.index_cap - 1;
    size_t slot = m->u.map.ents[entry].hash & mask;
    while (m->u.map.index[slot])
        slot = (slot + 1) & mask;
    m->u.map.index[slot] = (uint32_t)(entry + 1);
}

/* Keep the index at most half full so probes stay short. */
static int index_reserve(irp_value *m, size_t n)
{
    if (n < MAP_INDEX_MIN || n > UINT32_MAX - 1)
        return 0;
    if (m->u.map.index && n * 2 <= m->u.map.index_cap)
        return 0;
    size_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (!idx)
        return IRP_ENOMEM;
    free(m->u.map.index);
    m->u.map.index = idx;
    m->u.map.index_cap = cap;
    for (size_t i = 0; i < m->u.map.n; i++)
        index_put(m, i);
    return 0;
}

static bool key_is(const struct map_entry *e, const char *key, size_t len, uint32_t h)
{
    return e->hash == h && e->keylen == len && (len == 0 || memcmp(e->key, key, len) == 0);
}

/* Entry number of `key`, or -1. */
static long map_find(const irp_value *m, const char *key, size_t len, uint32_t h)
{
    if (m->u.map.index) {
        size_t mask = m->u.map.index_cap - 1;
        for (size_t slot = h & mask; m->u.map.index[slot]; slot = (slot + 1) & mask) {
            size_t e = m->u.map.index[slot] - 1;
            if (key_is(&m->u.map.ents[e], key, len, h))
                return (long)e;
        }
        return -1;
    }
    for (size_t i = 0; i < m->u.map.n; i++)
        if (key_is(&m->u.map.ents[i], key, len, h))
            return (long)i;
    return -1;
}

int irp_value_map_set(irp_value *map, const char *key, size_t keylen, irp_value *val)
{
    int rc = builder_check(map, IRP_VALUE_MAP, val);
    if (rc < 0)
        return rc;
    uint32_t h = hash_key(key, keylen);
    long at = map_find(map, key, keylen, h);
    if (at >= 0) {
        irp_value_unref(map->u.map.ents[at].val);
        map->u.map.ents[at].val = val;
        absorb(map, val);
        return 0;
    }
    char *k = malloc(keylen + 1);
    if (!k || grow((void **)&map->u.map.ents, &map->u.map.cap, map->u.map.n,
                   sizeof *map->u.map.ents) < 0
        || index_reserve(map, map->u.map.n + 1) < 0) {
        free(k);
        irp_value_unref(val);
        return IRP_ENOMEM;
    }
    if (keylen)
        memcpy(k, key, keylen);
    k[keylen] = '\0';
    size_t e = map->u.map.n++;
    map->u.map.ents[e] = (struct map_entry){ k, keylen, h, val };
    if (map->u.map.index)
        index_put(map, e);
    absorb(map, val);
    return 0;
}

/* ---------------------------------------------------------------- */
/* Accessors                                                         */

irp_value_type irp_value_type_of(const irp_value *v)
{
    return v ? v->type : IRP_VALUE_NULL;
}

const char *irp_value_type_name(irp_value_type t)
{
    switch (t) {
    case IRP_VALUE_NULL: return "null";
    case IRP_VALUE_BOOL: return "boolean";
    case IRP_VALUE_NUMBER: return "number";
    case IRP_VALUE_STRING: return "string";
    case IRP_VALUE_LIST: return "list";
    case IRP_VALUE_MAP: return "map";
    }
    return "unknown";
}

bool irp_value_is_secret(const irp_value *v)
{
    return v && v->secret;
}

bool irp_value_bool(const irp_value *v)
{
    assert(v->type == IRP_VALUE_BOOL);
    return v->u.b;
}

double irp_value_number(const irp_value *v)
{
    assert(v->type == IRP_VALUE_NUMBER);
    return v->u.n;
}

const char *irp_value_string(const irp_value *v, size_t *len)
{
    assert(v->type == IRP_VALUE_STRING);
    if (len)
        *len = v->u.s.len;
    return v->u.s.data;
}

size_t irp_value_list_len(const irp_value *v)
{
    assert(v->type == IRP_VALUE_LIST);
    return v->u.list.n;
}

irp_value *irp_value_list_at(const irp_value *v, size_t i)
{
    assert(v->type == IRP_VALUE_LIST && i < v->u.list.n);
    return v->u.list.items[i];
}

size_t irp_value_map_len(const irp_value *v)
{
    assert(v->type == IRP_VALUE_MAP);
    return v->u.map.n;
}

const char *irp_value_map_key_at(const irp_value *v, size_t i, size_t *keylen)
{
    assert(v->type == IRP_VALUE_MAP && i < v->u.map.n);
    if (keylen)
        *keylen = v->u.map.ents[i].keylen;
    return v->u.map.ents[i].key;
}

irp_value *irp_value_map_value_at(const irp_value *v, size_t i)
{
    assert(v->type == IRP_VALUE_MAP && i < v->u.map.n);
    return v->u.map.ents[i].val;
}

irp_value *irp_value_map_get(const irp_value *v, const char *key, size_t keylen)
{
    assert(v->type == IRP_VALUE_MAP);
    long at = map_find(v, key, keylen, hash_key(key, keylen));
    return at < 0 ? NULL : v->u.map.ents[at].val;
}

/* ---------------------------------------------------------------- */
/* Comparison                                                        */

static int bytes_cmp(const char *a, size_t la, const char *b, size_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    if (c)
        return c;
    return la < lb ? -1 : la > lb;
}

bool irp_value_equal(const irp_value *a, const irp_value *b)
{
    if (a == b)
        return true;
    if (!a || !b || a->type != b->type)
        return false;
    switch (a->type) {
    case IRP_VALUE_NULL:
        return true;
    case IRP_VALUE_BOOL:
        return a->u.b == b->u.b;
    case IRP_VALUE_NUMBER:
        return a->u.n == b->u.n;
    case IRP_VALUE_STRING:
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.data, b->u.s.data, a->u.s.len) == 0;
    case IRP_VALUE_LIST:
        if (a->u.list.n != b->u.list.n)
            return false;
        for (size_t i = 0; i < a->u.list.n; i++)
            if (!irp_value_equal(a->u.list.items[i], b->u.list.items[i]))
                return false;
        return true;
    case IRP_VALUE_MAP:
        /* Same keys with equal values; order does not matter. */
        if (a->u.map.n != b->u.map.n)
            return false;
        for (size_t i = 0; i < a->u.map.n; i++) {
            const struct map_entry *e = &a->u.map.ents[i];
            const irp_value *bv = irp_value_map_get(b, e->key, e->keylen);
            if (!bv || !irp_value_equal(e->val, bv))
                return false;
        }
        return true;
    }
    return false;
}

int irp_value_compare(const irp_value *a, const irp_value *b, int *cmp)
{
    if (!a || !b || a->type != b->type)
        return IRP_ETYPE;
    switch (a->type) {
    case IRP_VALUE_NUMBER:
        *cmp = (a->u.n > b->u.n) - (a->u.n < b->u.n);
        return 0;
    case IRP_VALUE_STRING:
        *cmp = bytes_cmp(a->u.s.data, a->u.s.len, b->u.s.data, b->u.s.len);
        return 0;
    case IRP_VALUE_BOOL:
        *cmp = (int)a->u.b - (int)b->u.b;
        return 0;
    default:
        return IRP_ETYPE;
    }
}

/* ---------------------------------------------------------------- */
/* Text                                                              */

void irp_value_format_number(double d, char buf[IRP_NUMBER_BUFSZ])
{
    if (d == 0) {   /* -0 too: it equals 0 and "-0" only confuses */
        snprintf(buf, IRP_NUMBER_BUFSZ, "0");
        return;
    }
    if (d == floor(d) && fabs(d) < 1e21) {
        snprintf(buf, IRP_NUMBER_BUFSZ, "%.0f", d);
        return;
    }
    /* The fewest significant digits that read back as the same double;
     * 17 always do. */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, IRP_NUMBER_BUFSZ, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

/* A growable, capped output buffer; errors stick. */
struct outbuf {
    char *p;
    size_t len, cap;
    int err;
};

static void out_put(struct outbuf *o, const char *s, size_t n)
{
    if (o->err)
        return;
    if (n > RENDER_MAX - o->len) {
        o->err = IRP_ELIMIT;
        return;
    }
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 64;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->err = IRP_ENOMEM;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    if (n)
        memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void out_str(struct outbuf *o, const char *s)
{
    out_put(o, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min, cp;
    if (c < 0x80)
        return 1;
    else if ((c & 0xE0) == 0xC0)
        len = 2, min = 0x80, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
        len = 3, min = 0x800, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
        len = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* A JSON string for bytes that may not be UTF-8: invalid bytes become
 * U+FFFD, since JSON text must be Unicode. */
static json_t *json_string_bytes(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    size_t k = 0;
    while (i < len && (k = utf8_seq(u + i, len - i)) > 0)
        i += k;
    if (i == len)
        return json_stringn(s, len);
    struct outbuf o = { 0 };
    for (i = 0; i < len; i += k ? k : 1) {
        k = utf8_seq(u + i, len - i);
        if (k)
            out_put(&o, s + i, k);
        else
            out_str(&o, "\xEF\xBF\xBD");
    }
    json_t *j = o.err ? NULL : json_stringn(o.p ? o.p : "", o.len);
    free(o.p);
    return j;
}

/* Bytes as a JSON string literal; the escaping is jansson's. */
static void out_json_string(struct outbuf *o, const char *s, size_t len)
{
    json_t *j = json_string_bytes(s, len);
    char *text = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        if (!o->err)
            o->err = IRP_ENOMEM;
        return;
    }
    out_str(o, text);
    free(text);
}

/* Compact JSON of any value.  Written here rather than by json_dumps()
 * because jansson prints reals with 17 digits (0.1 as
 * 0.10000000000000001); strings still go through jansson. */
static void out_json(struct outbuf *o, const irp_value *v)
{
    char num[IRP_NUMBER_BUFSZ];
    switch (v->type) {
    case IRP_VALUE_NULL:
        out_str(o, "null");
        break;
    case IRP_VALUE_BOOL:
        out_str(o, v->u.b ? "true" : "false");
        break;
    case IRP_VALUE_NUMBER:
        irp_value_format_number(v->u.n, num);
        out_str(o, num);
        break;
    case IRP_VALUE_STRING:
        out_json_string(o, v->u.s.data, v->u.s.len);
        break;
    case IRP_VALUE_LIST:
        out_str(o, "[");
        for (size_t i = 0; i < v->u.list.n; i++) {
            if (i)
                out_str(o, ",");
            out_json(o, v->u.list.items[i]);
        }
        out_str(o, "]");
        break;
    case IRP_VALUE_MAP:
        out_str(o, "{");
        for (size_t i = 0; i < v->u.map.n; i++) {
            if (i)
                out_str(o, ",");
            out_json_string(o, v->u.map.ents[i].key, v->u.map.ents[i].keylen);
            out_str(o, ":");
            out_json(o, v->u.map.ents[i].val);
        }
        out_str(o, "}");
        break;
    }
}

const char *irp_value_text(const irp_value *v, char buf[IRP_NUMBER_BUFSZ], size_t *len,
                           char **owned)
{
    *owned = NULL;
    switch (irp_value_type_of(v)) {
    case IRP_VALUE_NULL:
        buf[0] = '\0';
        break;
    case IRP_VALUE_BOOL:
        strcpy(buf, v->u.b ? "true" : "false");
        break;
    case IRP_VALUE_NUMBER:
        irp_value_format_number(v->u.n, buf);
        break;
    case IRP_VALUE_STRING:
        *len = v->u.s.len;
        return v->u.s.data;
    default:
        return irp_value_render(v, owned, len) == 0 ? *owned : NULL;
    }
    *len = strlen(buf);
    return buf;
}

int irp_value_render(const irp_value *v, char **out, size_t *len)
{
    struct outbuf o = { 0 };
    char num[IRP_NUMBER_BUFSZ];
    switch (irp_value_type_of(v)) {
    case IRP_VALUE_NULL:
        out_put(&o, "", 0);
        break;
    case IRP_VALUE_BOOL:
        out_str(&o, v->u.b ? "true" : "false");
        break;
    case IRP_VALUE_NUMBER:
        irp_value_format_number(v->u.n, num);
        out_str(&o, num);
        break;
    case IRP_VALUE_STRING:
        out_put(&o, v->u.s.data, v->u.s.len);
        break;
    default:
        out_json(&o, v);
        break;
    }
    if (o.err) {
        free(o.p);
        return o.err;
    }
    *out = o.p;
    if (len)
        *len = o.len;
    return 0;
}

/* ---------------------------------------------------------------- */
/* JSON                                                              */

static json_t *number_to_json(double d)
{
    /* 2^53: every integer up to here is exact in a double. */
    if (d == floor(d) && fabs(d) <= 9007199254740992.0)
        return json_integer((json_int_t)d);
    return json_real(d);
}

static int add_member_json(json_t *obj, const struct map_entry *e, json_t *jv)
{
    json_t *k = json_string_bytes(e->key, e->keylen);
    int rc = k ? json_object_setn_new(obj, json_string_value(k), json_string_length(k), jv)
               : (json_decref(jv), -1);
    json_decref(k);
    return rc;
}

json_t *irp_value_to_json(const irp_value *v, unsigned flags)
{
    if (!v)
        return json_null();
    if ((flags & IRP_VALUE_JSON_REDACT) && v->secret)
        return json_string("***");
    switch (v->type) {
    case IRP_VALUE_NULL: return json_null();
    case IRP_VALUE_BOOL: return json_boolean(v->u.b);
    case IRP_VALUE_NUMBER: return number_to_json(v->u.n);
    case IRP_VALUE_STRING: return json_string_bytes(v->u.s.data, v->u.s.len);
    case IRP_VALUE_LIST: {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < v->u.list.n; i++) {
            if (json_array_append_new(arr, irp_value_to_json(v->u.list.items[i], flags)) < 0) {
                json_decref(arr);
                arr = NULL;
            }
        }
        return arr;
    }
    case IRP_VALUE_MAP: {
        json_t *obj = json_object();
        for (size_t i = 0; obj && i < v->u.map.n; i++) {
            json_t *jv = irp_value_to_json(v->u.map.ents[i].val, flags);
            if (!jv || add_member_json(obj, &v->u.map.ents[i], jv) < 0) {
                json_decref(obj);
                obj = NULL;
            }
        }
        return obj;
    }
    }
    return NULL;
}

static int from_json(const json_t *j, unsigned depth, irp_value **out);

static int from_json_array(const json_t *j, unsigned depth, irp_value **out)
{
    irp_value *list = irp_value_new_list();
    if (!list)
        return IRP_ENOMEM;
    for (size_t i = 0; i < json_array_size(j); i++) {
        irp_value *item;
        int rc = from_json(json_array_get(j, i), depth + 1, &item);
        if (rc == 0)
            rc = irp_value_list_append(list, item);
        if (rc < 0) {
            irp_value_unref(list);
            return rc;
        }
    }
    *out = list;
    return 0;
}

static int from_json_object(const json_t *j, unsigned depth, irp_value **out)
{
    irp_value *map = irp_value_new_map();
    if (!map)
        return IRP_ENOMEM;
    /* json_t is const here; jansson's iterators only read. */
    for (void *it = json_object_iter((json_t *)j); it; it = json_object_iter_next((json_t *)j, it)) {
        irp_value *val;
        int rc = from_json(json_object_iter_value(it), depth + 1, &val);
        if (rc == 0)
            rc = irp_value_map_set(map, json_object_iter_key(it), json_object_iter_key_len(it), val);
        if (rc < 0) {
            irp_value_unref(map);
            return rc;
        }
    }
    *out = map;
    return 0;
}

static int from_json(const json_t *j, unsigned depth, irp_value **out)
{
    irp_value *v = NULL;
    if (depth > IRP_VALUE_MAX_DEPTH)
        return IRP_ELIMIT;
    switch (json_typeof(j)) {
    case JSON_OBJECT: return from_json_object(j, depth, out);
    case JSON_ARRAY: return from_json_array(j, depth, out);
    case JSON_STRING: v = irp_value_new_string(json_string_value(j), json_string_length(j)); break;
    case JSON_INTEGER: v = irp_value_new_number((double)json_integer_value(j)); break;
    case JSON_REAL: v = irp_value_new_number(json_real_value(j)); break;
    case JSON_TRUE: v = irp_value_new_bool(true); break;
    case JSON_FALSE: v = irp_value_new_bool(false); break;
    case JSON_NULL: v = irp_value_new_null(); break;
    }
    if (!v)
        return IRP_ENOMEM;
    *out = v;
    return 0;
}

int irp_value_from_json(const json_t *j, irp_value **out)
{
    if (!j)
        return IRP_EINVAL;
    return from_json(j, 1, out);
}
