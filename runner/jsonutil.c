#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "irp/error.h"
#include "irp/jsonutil.h"
#include "irp/value.h"

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    unsigned cp = c & (0xFF >> (n + 1));
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

bool irp_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(u + i, len - i);
        if (!n || (n == 1 && u[i] == 0))
            return false;
        i += n;
    }
    return true;
}

json_t *irp_json_text(const char *s, size_t len)
{
    if (irp_utf8_valid(s, len))
        return json_stringn(s, len);
    const unsigned char *u = (const unsigned char *)s;
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(u + i, len - i);
        if (!n || (n == 1 && u[i] == 0)) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        }
    }
    json_t *j = json_stringn(out, o);
    free(out);
    return j;
}

json_t *irp_json_b64(const void *buf, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out)
        return NULL;
    int n = EVP_EncodeBlock((unsigned char *)out, buf, (int)len);
    json_t *j = json_stringn(out, (size_t)n);
    free(out);
    return j;
}

json_t *irp_json_map_b64(const irp_value *map)
{
    json_t *obj = irp_value_to_json(map, IRP_VALUE_JSON_REDACT);
    if (!obj || irp_value_type_of(map) != IRP_VALUE_MAP)
        return obj;
    for (size_t i = 0; i < irp_value_map_len(map); i++) {
        const irp_value *v = irp_value_map_value_at(map, i);
        size_t klen, len;
        const char *key = irp_value_map_key_at(map, i, &klen);
        if (irp_value_type_of(v) != IRP_VALUE_STRING || irp_value_is_secret(v))
            continue;
        const char *s = irp_value_string(v, &len);
        if (irp_utf8_valid(s, len))
            continue;
        char name[300];
        snprintf(name, sizeof name, "%.*s_b64", (int)(klen > 250 ? 250 : klen), key);
        json_object_set_new(obj, name, irp_json_b64(s, len));
    }
    return obj;
}

/* ---- compact JSON text ------------------------------------------------ */

static int grow(irp_json_buf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < more) {
        if (cap > SIZE_MAX / 2)
            return IRP_ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        return IRP_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Room for `more` bytes: a compare, but for the rare growth. */
static inline int reserve(irp_json_buf *b, size_t more)
{
    return more <= b->cap - b->len ? 0 : grow(b, more);
}

static inline int put(irp_json_buf *b, const char *s, size_t n)
{
    if (reserve(b, n))
        return IRP_ENOMEM;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

int irp_json_buf_put(irp_json_buf *b, const char *s, size_t n)
{
    return put(b, s, n);
}

/* c escaped at o, as jansson escapes it; returns the bytes written. */
static size_t escape(char *o, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    o[0] = '\\';
    switch (c) {
    case '"': o[1] = '"'; return 2;
    case '\\': o[1] = '\\'; return 2;
    case '\b': o[1] = 'b'; return 2;
    case '\f': o[1] = 'f'; return 2;
    case '\n': o[1] = 'n'; return 2;
    case '\r': o[1] = 'r'; return 2;
    case '\t': o[1] = 't'; return 2;
    default:   /* jansson's "\\u%04X" */
        memcpy(o + 1, "u00", 3);
        o[4] = hex[c >> 4];
        o[5] = hex[c & 15];
        return 6;
    }
}

/* Input is taken this much at a time, with room for each byte escaped
 * (6 bytes) reserved once per piece: a byte then costs a test and a
 * store, where a put() per run of plain bytes cost a call and a check. */
#define STRING_PIECE 4096

/* Bytes a string holds as they are: printable ASCII but '"' and '\\'.
 * Others are escaped, or begin a UTF-8 sequence (checked apart). */
static const bool plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static int put_string(irp_json_buf *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    char *o;
    /* Each piece has room for its bytes escaped, a UTF-8 sequence begun
     * before its end (3 more bytes) and both quotes. */
    for (;;) {
        size_t stop = len - i > STRING_PIECE ? i + STRING_PIECE : len;
        if (reserve(b, (stop - i) * 6 + 5))
            return IRP_ENOMEM;
        o = b->p + b->len;
        if (i == 0)
            *o++ = '"';
        while (i < stop) {
            /* Most strings are short and plain: copied as they are scanned. */
            while (i < stop && plain[u[i]])
                *o++ = s[i++];
            if (i == stop)
                break;
            unsigned char c = u[i];
            if (c < 0x80) {
                o += escape(o, c);
                i++;
            } else {
                size_t n = utf8_seq(u + i, len - i);
                if (n == 0)
                    return IRP_EINVAL;
                memcpy(o, s + i, n);
                o += n;
                i += n;
            }
        }
        if (i >= len)
            break;
        b->len = (size_t)(o - b->p);
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    return 0;
}

static int put_integer(irp_json_buf *b, json_int_t v)
{
    char d[24], *e = d + sizeof d, *p = e;
    unsigned long long m = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do
        *--p = (char)('0' + m % 10);
    while ((m /= 10) != 0);
    if (v < 0)
        *--p = '-';
    return put(b, p, (size_t)(e - p));
}

/* Reals are rare in a journal, and their shortest exact text is subtle:
 * jansson writes them itself. */
static int put_real(irp_json_buf *b, const json_t *v)
{
    const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    size_t n = json_dumpb(v, NULL, 0, flags);
    if (n == 0)
        return IRP_EINVAL;
    if (reserve(b, n))
        return IRP_ENOMEM;
    if (json_dumpb(v, b->p + b->len, n, flags) != n)
        return IRP_EINVAL;
    b->len += n;
    return 0;
}

static int dump_value(const json_t *v, irp_json_buf *b, int depth);

static int dump_members(const json_t *obj, irp_json_buf *b, int depth)
{
    json_t *o = (json_t *)obj;   /* iterating does not change it */
    bool first = true;
    for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
        int rc = first ? 0 : put(b, ",", 1);
        if (!rc)
            rc = put_string(b, json_object_iter_key(it), json_object_iter_key_len(it));
        if (!rc)
            rc = put(b, ":", 1);
        if (!rc)
            rc = dump_value(json_object_iter_value(it), b, depth);
        if (rc)
            return rc;
        first = false;
    }
    return 0;
}

static int dump_array(const json_t *arr, irp_json_buf *b, int depth)
{
    int rc = put(b, "[", 1);
    for (size_t i = 0; !rc && i < json_array_size(arr); i++) {
        if (i)
            rc = put(b, ",", 1);
        if (!rc)
            rc = dump_value(json_array_get(arr, i), b, depth);
    }
    return rc ? rc : put(b, "]", 1);
}

static int dump_value(const json_t *v, irp_json_buf *b, int depth)
{
    if (++depth > IRP_JSON_MAX_DEPTH)
        return IRP_EINVAL;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        int rc = put(b, "{", 1);
        if (!rc)
            rc = dump_members(v, b, depth);
        return rc ? rc : put(b, "}", 1);
    }
    case JSON_ARRAY:
        return dump_array(v, b, depth);
    case JSON_STRING:
        return put_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return put_integer(b, json_integer_value(v));
    case JSON_REAL:
        return put_real(b, v);
    case JSON_TRUE:
        return put(b, "true", 4);
    case JSON_FALSE:
        return put(b, "false", 5);
    case JSON_NULL:
        return put(b, "null", 4);
    }
    return IRP_EINVAL;
}

int irp_json_buf_put_string(irp_json_buf *buf, const char *s, size_t len)
{
    size_t before = buf->len;
    int rc = put_string(buf, s, len);
    if (rc)
        buf->len = before;
    return rc;
}

int irp_json_buf_put_int(irp_json_buf *buf, int64_t v)
{
    return put_integer(buf, (json_int_t)v);
}

int irp_json_dump(const json_t *v, irp_json_buf *buf)
{
    size_t len = buf->len;
    int rc = v ? dump_value(v, buf, 0) : IRP_EINVAL;
    if (rc)
        buf->len = len;
    return rc;
}

int irp_json_dump_members(const json_t *obj, irp_json_buf *buf)
{
    size_t len = buf->len;
    int rc = json_is_object(obj) ? dump_members(obj, buf, 1) : IRP_EINVAL;
    if (rc)
        buf->len = len;
    return rc;
}
