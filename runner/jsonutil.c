#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

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
