#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "irp/error.h"
#include "irp/value.h"

/* Render and compare with the expected text (which has no NUL). */
static void assert_renders(const irp_value *v, const char *want)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(irp_value_render(v, &text, &len), 0);
    if (len != strlen(want) || memcmp(text, want, len) != 0)
        fail_msg("rendered '%s', want '%s'", text, want);
    free(text);
}

static void assert_number_renders(double d, const char *want)
{
    irp_value *v = irp_value_new_number(d);
    assert_non_null(v);
    assert_renders(v, want);
    irp_value_unref(v);
}

static irp_value *from_text(const char *json)
{
    json_error_t jerr;
    json_t *j = json_loads(json, JSON_DECODE_ANY, &jerr);
    if (!j)
        fail_msg("bad JSON in test: %s", jerr.text);
    irp_value *v = NULL;
    assert_int_equal(irp_value_from_json(j, &v), 0);
    json_decref(j);
    return v;
}

static void test_value_scalars_construct_and_read(void **state)
{
    (void)state;
    irp_value *n = irp_value_new_null();
    irp_value *t = irp_value_new_bool(true);
    irp_value *d = irp_value_new_number(2.5);
    irp_value *s = irp_value_new_cstring("hello");
    assert_int_equal(irp_value_type_of(n), IRP_VALUE_NULL);
    assert_int_equal(irp_value_type_of(t), IRP_VALUE_BOOL);
    assert_true(irp_value_bool(t));
    assert_true(irp_value_number(d) == 2.5);
    size_t len;
    assert_string_equal(irp_value_string(s, &len), "hello");
    assert_int_equal(len, 5);
    assert_false(irp_value_is_secret(s));
    irp_value_unref(n);
    irp_value_unref(t);
    irp_value_unref(d);
    irp_value_unref(s);
}

static void test_value_string_holds_any_byte(void **state)
{
    (void)state;
    irp_value *s = irp_value_new_string("a\0b\xff", 4);
    size_t len;
    const char *p = irp_value_string(s, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(p, "a\0b\xff", 4);
    assert_int_equal(p[4], '\0');
    char *text;
    assert_int_equal(irp_value_render(s, &text, &len), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(text, "a\0b\xff", 4);
    free(text);
    irp_value_unref(s);
}

static void test_value_number_refuses_nan_and_infinity(void **state)
{
    (void)state;
    assert_null(irp_value_new_number(NAN));
    assert_null(irp_value_new_number(INFINITY));
    assert_null(irp_value_new_number(-INFINITY));
}

static void test_value_ref_counts(void **state)
{
    (void)state;
    irp_value *s = irp_value_new_cstring("x");
    assert_ptr_equal(irp_value_ref(s), s);
    irp_value_unref(s);
    assert_string_equal(irp_value_string(s, NULL), "x");   /* still alive */
    irp_value_unref(s);
    irp_value_unref(NULL);
    assert_null(irp_value_ref(NULL));
}

static void test_value_list_append_propagates_taint(void **state)
{
    (void)state;
    irp_value *list = irp_value_new_list();
    assert_int_equal(irp_value_list_append(list, irp_value_new_cstring("a")), 0);
    assert_false(irp_value_is_secret(list));
    irp_value *secret = irp_value_new_cstring("hunter2");
    irp_value_taint(secret);
    assert_int_equal(irp_value_list_append(list, secret), 0);
    assert_true(irp_value_is_secret(list));
    assert_int_equal(irp_value_list_len(list), 2);
    assert_true(irp_value_is_secret(irp_value_list_at(list, 1)));
    assert_false(irp_value_is_secret(irp_value_list_at(list, 0)));

    irp_value *map = irp_value_new_map();
    assert_int_equal(irp_value_map_set(map, "l", 1, list), 0);
    assert_true(irp_value_is_secret(map));
    irp_value_unref(map);
}

static void test_value_map_keeps_insertion_order(void **state)
{
    (void)state;
    irp_value *m = irp_value_new_map();
    assert_int_equal(irp_value_map_set(m, "zeta", 4, irp_value_new_number(1)), 0);
    assert_int_equal(irp_value_map_set(m, "alpha", 5, irp_value_new_number(2)), 0);
    assert_int_equal(irp_value_map_set(m, "mid", 3, irp_value_new_number(3)), 0);
    /* Replacing keeps the key's place. */
    assert_int_equal(irp_value_map_set(m, "zeta", 4, irp_value_new_number(9)), 0);
    assert_int_equal(irp_value_map_len(m), 3);
    size_t kl;
    assert_string_equal(irp_value_map_key_at(m, 0, &kl), "zeta");
    assert_int_equal(kl, 4);
    assert_true(irp_value_number(irp_value_map_value_at(m, 0)) == 9);
    assert_string_equal(irp_value_map_key_at(m, 1, NULL), "alpha");
    assert_string_equal(irp_value_map_key_at(m, 2, NULL), "mid");
    assert_true(irp_value_number(irp_value_map_get(m, "mid", 3)) == 3);
    assert_null(irp_value_map_get(m, "nope", 4));
    assert_null(irp_value_map_get(m, "mi", 2));
    assert_renders(m, "{\"zeta\":9,\"alpha\":2,\"mid\":3}");
    irp_value_unref(m);
}

static void test_value_map_many_keys(void **state)
{
    (void)state;
    irp_value *m = irp_value_new_map();
    char key[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(irp_value_map_set(m, key, (size_t)n, irp_value_new_number(i)), 0);
    }
    /* Overwrite some after the index exists. */
    for (int i = 0; i < 5000; i += 7) {
        int n = snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(irp_value_map_set(m, key, (size_t)n, irp_value_new_number(-i)), 0);
    }
    assert_int_equal(irp_value_map_len(m), 5000);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        irp_value *v = irp_value_map_get(m, key, (size_t)n);
        assert_non_null(v);
        assert_true(irp_value_number(v) == (i % 7 ? i : -i));
        assert_string_equal(irp_value_map_key_at(m, (size_t)i, NULL), key);
    }
    assert_null(irp_value_map_get(m, "k5000", 5));
    irp_value_unref(m);
}

static void test_value_builders_refuse_shared_values(void **state)
{
    (void)state;
    irp_value *list = irp_value_new_list();
    irp_value_ref(list);
    /* The item is taken over even on failure (valgrind checks it). */
    assert_int_equal(irp_value_list_append(list, irp_value_new_null()), IRP_EINVAL);
    irp_value_unref(list);
    assert_int_equal(irp_value_list_append(list, irp_value_new_null()), 0);
    irp_value *s = irp_value_new_cstring("x");
    assert_int_equal(irp_value_list_append(s, irp_value_new_null()), IRP_EINVAL);
    assert_int_equal(irp_value_map_set(list, "a", 1, irp_value_new_null()), IRP_EINVAL);
    assert_int_equal(irp_value_list_append(list, NULL), IRP_EINVAL);
    irp_value_unref(s);
    irp_value_unref(list);
}

static void test_value_depth_limit(void **state)
{
    (void)state;
    irp_value *v = irp_value_new_null();
    int rc = 0;
    int levels = 0;
    while (rc == 0) {
        irp_value *outer = irp_value_new_list();
        rc = irp_value_list_append(outer, v);
        v = outer;
        if (rc == 0)
            levels++;
    }
    assert_int_equal(rc, IRP_ELIMIT);
    assert_int_equal(levels, IRP_VALUE_MAX_DEPTH - 1);
    irp_value_unref(v);
}

static void test_value_equal_deep(void **state)
{
    (void)state;
    irp_value *a = from_text("{\"x\":[1,\"a\",{\"k\":null}],\"y\":true}");
    irp_value *b = from_text("{\"y\":true,\"x\":[1.0,\"a\",{\"k\":null}]}");
    irp_value *c = from_text("{\"y\":true,\"x\":[1,\"a\",{\"k\":false}]}");
    assert_true(irp_value_equal(a, b));
    assert_false(irp_value_equal(a, c));
    irp_value *zero = irp_value_new_number(0), *mzero = irp_value_new_number(-0.0);
    irp_value *s1 = irp_value_new_cstring("1"), *one = irp_value_new_number(1);
    irp_value *l1 = from_text("[1,2]"), *l2 = from_text("[2,1]");
    assert_true(irp_value_equal(zero, mzero));
    assert_false(irp_value_equal(s1, one));   /* different types */
    assert_false(irp_value_equal(l1, l2));     /* lists are ordered */
    irp_value *secret = irp_value_new_cstring("1");
    irp_value_taint(secret);
    assert_true(irp_value_equal(s1, secret));  /* taint is not identity */
    irp_value *vals[] = { a, b, c, zero, mzero, s1, one, l1, l2, secret };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        irp_value_unref(vals[i]);
}

static void test_value_compare_same_types_only(void **state)
{
    (void)state;
    irp_value *v1 = irp_value_new_number(1), *v2 = irp_value_new_number(2);
    irp_value *ab = irp_value_new_cstring("ab"), *abc = irp_value_new_cstring("abc");
    irp_value *b = irp_value_new_cstring("b"), *hi = irp_value_new_cstring("\xc3\xa9");
    irp_value *f = irp_value_new_bool(false), *t = irp_value_new_bool(true);
    irp_value *n = irp_value_new_null(), *l = irp_value_new_list();
    int c = 99;
    assert_int_equal(irp_value_compare(v1, v2, &c), 0);
    assert_true(c < 0);
    assert_int_equal(irp_value_compare(v2, v1, &c), 0);
    assert_true(c > 0);
    assert_int_equal(irp_value_compare(v1, v1, &c), 0);
    assert_int_equal(c, 0);
    assert_int_equal(irp_value_compare(ab, abc, &c), 0);
    assert_true(c < 0);   /* a prefix first */
    assert_int_equal(irp_value_compare(abc, b, &c), 0);
    assert_true(c < 0);
    assert_int_equal(irp_value_compare(b, hi, &c), 0);
    assert_true(c < 0);   /* bytewise: 0xc3 after 'b' */
    assert_int_equal(irp_value_compare(f, t, &c), 0);
    assert_true(c < 0);
    assert_int_equal(irp_value_compare(v1, ab, &c), IRP_ETYPE);
    assert_int_equal(irp_value_compare(n, n, &c), IRP_ETYPE);
    assert_int_equal(irp_value_compare(l, l, &c), IRP_ETYPE);
    irp_value *vals[] = { v1, v2, ab, abc, b, hi, f, t, n, l };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        irp_value_unref(vals[i]);
}

static void test_value_render_numbers_shortest(void **state)
{
    (void)state;
    assert_number_renders(3, "3");
    assert_number_renders(-3, "-3");
    assert_number_renders(0.1, "0.1");
    assert_number_renders(2.5, "2.5");
    assert_number_renders(-0.0, "0");
    assert_number_renders(0, "0");
    assert_number_renders(1e21, "1e+21");
    assert_number_renders(1e20, "100000000000000000000");
    assert_number_renders(1000000, "1000000");
    assert_number_renders(1e-7, "1e-07");
    assert_number_renders(0.0001, "0.0001");
    assert_number_renders(0.1 + 0.2, "0.30000000000000004");
    assert_number_renders(1.0 / 3.0, "0.3333333333333333");
    assert_number_renders(123456.789, "123456.789");
    assert_number_renders(9007199254740993.0, "9007199254740992");
    assert_number_renders(1.5e300, "1.5e+300");
    assert_number_renders(5e-324, "5e-324");
}

static void test_value_render_scalars(void **state)
{
    (void)state;
    irp_value *n = irp_value_new_null(), *t = irp_value_new_bool(true);
    irp_value *f = irp_value_new_bool(false), *s = irp_value_new_cstring("as is \"x\"");
    assert_renders(n, "");
    assert_renders(t, "true");
    assert_renders(f, "false");
    assert_renders(s, "as is \"x\"");
    irp_value_unref(n);
    irp_value_unref(t);
    irp_value_unref(f);
    irp_value_unref(s);
}

static void test_value_render_containers_as_compact_json(void **state)
{
    (void)state;
    irp_value *l = from_text("[1, \"a\", null, true, [0.1, 1e21], {}, \"q\\\"\\n\\u00e9\"]");
    assert_renders(l, "[1,\"a\",null,true,[0.1,1e+21],{},\"q\\\"\\n\xc3\xa9\"]");
    irp_value_unref(l);

    irp_value *m = irp_value_new_map();
    assert_int_equal(irp_value_map_set(m, "b\xff", 2, irp_value_new_string("x\xfey", 3)), 0);
    assert_int_equal(irp_value_map_set(m, "a", 1, irp_value_new_list()), 0);
    /* JSON is Unicode: bytes that are not UTF-8 become U+FFFD. */
    assert_renders(m, "{\"b\xef\xbf\xbd\":\"x\xef\xbf\xbdy\",\"a\":[]}");
    irp_value_unref(m);

    irp_value *empty = irp_value_new_list();
    assert_renders(empty, "[]");
    irp_value_unref(empty);
}

static void test_value_json_round_trip(void **state)
{
    (void)state;
    const char *text = "{\"b\":[1,2.5,\"x\",null,true,false],\"a\":{\"n\":-7},\"e\":\"\"}";
    irp_value *v = from_text(text);
    json_t *j = irp_value_to_json(v, 0);
    char *out = json_dumps(j, JSON_COMPACT);
    assert_string_equal(out, text);
    /* Integral numbers come back as JSON integers, others as reals. */
    assert_true(json_is_integer(json_array_get(json_object_get(j, "b"), 0)));
    assert_true(json_is_real(json_array_get(json_object_get(j, "b"), 1)));
    free(out);
    json_decref(j);
    irp_value_unref(v);
}

static void test_value_to_json_redacts_secrets(void **state)
{
    (void)state;
    irp_value *m = irp_value_new_map();
    irp_value *tok = irp_value_new_cstring("s3cr3t-token");
    irp_value_taint(tok);
    assert_int_equal(irp_value_map_set(m, "user", 4, irp_value_new_cstring("ana")), 0);
    assert_int_equal(irp_value_map_set(m, "token", 5, tok), 0);
    json_t *plain = irp_value_to_json(irp_value_map_get(m, "token", 5), 0);
    assert_string_equal(json_string_value(plain), "s3cr3t-token");
    json_decref(plain);
    /* The map holds a secret, so the whole map is secret. */
    json_t *red = irp_value_to_json(m, IRP_VALUE_JSON_REDACT);
    assert_string_equal(json_string_value(red), "***");
    json_decref(red);
    irp_value_unref(m);
}

static void test_value_from_json_depth_limit(void **state)
{
    (void)state;
    json_t *j = json_null();
    for (int i = 0; i < IRP_VALUE_MAX_DEPTH + 10; i++) {
        json_t *a = json_array();
        json_array_append_new(a, j);
        j = a;
    }
    irp_value *v = NULL;
    assert_int_equal(irp_value_from_json(j, &v), IRP_ELIMIT);
    assert_null(v);
    json_decref(j);
}

static void test_value_type_names(void **state)
{
    (void)state;
    assert_string_equal(irp_value_type_name(IRP_VALUE_NULL), "null");
    assert_string_equal(irp_value_type_name(IRP_VALUE_BOOL), "boolean");
    assert_string_equal(irp_value_type_name(IRP_VALUE_NUMBER), "number");
    assert_string_equal(irp_value_type_name(IRP_VALUE_STRING), "string");
    assert_string_equal(irp_value_type_name(IRP_VALUE_LIST), "list");
    assert_string_equal(irp_value_type_name(IRP_VALUE_MAP), "map");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_scalars_construct_and_read),
        cmocka_unit_test(test_value_string_holds_any_byte),
        cmocka_unit_test(test_value_number_refuses_nan_and_infinity),
        cmocka_unit_test(test_value_ref_counts),
        cmocka_unit_test(test_value_list_append_propagates_taint),
        cmocka_unit_test(test_value_map_keeps_insertion_order),
        cmocka_unit_test(test_value_map_many_keys),
        cmocka_unit_test(test_value_builders_refuse_shared_values),
        cmocka_unit_test(test_value_depth_limit),
        cmocka_unit_test(test_value_equal_deep),
        cmocka_unit_test(test_value_compare_same_types_only),
        cmocka_unit_test(test_value_render_numbers_shortest),
        cmocka_unit_test(test_value_render_scalars),
        cmocka_unit_test(test_value_render_containers_as_compact_json),
        cmocka_unit_test(test_value_json_round_trip),
        cmocka_unit_test(test_value_to_json_redacts_secrets),
        cmocka_unit_test(test_value_from_json_depth_limit),
        cmocka_unit_test(test_value_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
