#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "irp/error.h"
#include "irp/timeutil.h"

static int dur(const char *s, int64_t *ms)
{
    return irp_duration_parse(s, strlen(s), ms);
}

static int64_t dur_ok(const char *s)
{
    int64_t ms = -1;
    int rc = dur(s, &ms);
    if (rc != 0)
        fail_msg("duration '%s' refused: %d", s, rc);
    return ms;
}

static int tparse(const char *s, int64_t *ms)
{
    return irp_time_parse(s, strlen(s), ms);
}

static int64_t time_ok(const char *s)
{
    int64_t ms = -1;
    int rc = tparse(s, &ms);
    if (rc != 0)
        fail_msg("time '%s' refused: %d", s, rc);
    return ms;
}

static void test_duration_parse_single_units(void **state)
{
    (void)state;
    assert_int_equal(dur_ok("250ms"), 250);
    assert_int_equal(dur_ok("30s"), 30000);
    assert_int_equal(dur_ok("5m"), 300000);
    assert_int_equal(dur_ok("2h"), 7200000);
    assert_int_equal(dur_ok("1d"), 86400000);
    assert_int_equal(dur_ok("0s"), 0);
    assert_int_equal(dur_ok("007s"), 7000);
}

static void test_duration_parse_combined(void **state)
{
    (void)state;
    assert_int_equal(dur_ok("1h30m"), 5400000);
    assert_int_equal(dur_ok("1h30m15s500ms"), 5415500);
    assert_int_equal(dur_ok("1d2h3m4s5ms"), 93784005);
    assert_int_equal(dur_ok("1d500ms"), 86400500);
    /* A unit may exceed the next one up. */
    assert_int_equal(dur_ok("90m"), 5400000);
    assert_int_equal(dur_ok("1500ms"), 1500);
}

static void test_duration_parse_rejects_wrong_order(void **state)
{
    (void)state;
    int64_t ms = 42;
    assert_int_equal(dur("1m1h", &ms), IRP_EINVAL);
    assert_int_equal(dur("30s1m", &ms), IRP_EINVAL);
    assert_int_equal(dur("1h1h", &ms), IRP_EINVAL);
    assert_int_equal(dur("1ms1s", &ms), IRP_EINVAL);
    assert_int_equal(dur("1s1s", &ms), IRP_EINVAL);
    assert_int_equal(ms, 42);   /* untouched on error */
}

static void test_duration_parse_rejects_bare_number(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(dur("5", &ms), IRP_EINVAL);
    assert_int_equal(dur("0", &ms), IRP_EINVAL);
    assert_int_equal(dur("1h30", &ms), IRP_EINVAL);
}

static void test_duration_parse_rejects_junk(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "h", "ms", "1x", "1 h", " 1s", "1s ", "-1s", "+1s", "1.5h", "1H", "1S",
        "1hour", "1sec", "1h 30m", "1m_", "1mss", "1e3s",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms;
        if (dur(bad[i], &ms) != IRP_EINVAL)
            fail_msg("'%s' should be refused", bad[i]);
    }
    int64_t ms;
    /* The length is honoured: no reading past it. */
    assert_int_equal(irp_duration_parse("5m30s", 2, &ms), 0);
    assert_int_equal(ms, 300000);
    assert_int_equal(irp_duration_parse("5m30s", 4, &ms), IRP_EINVAL);
}

static void test_duration_parse_overflow(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(dur_ok("9223372036854775807ms"), INT64_MAX);
    assert_int_equal(dur("9223372036854775808ms", &ms), IRP_ERANGE);
    assert_int_equal(dur_ok("106751991167d"), INT64_C(106751991167) * 86400000);
    assert_int_equal(dur("106751991168d", &ms), IRP_ERANGE);
    assert_int_equal(dur("106751991167d23h59m59s999ms", &ms), IRP_ERANGE);
    assert_int_equal(dur("99999999999999999999999999s", &ms), IRP_ERANGE);
    /* Malformed wins over huge. */
    assert_int_equal(dur("99999999999999999999999999x", &ms), IRP_EINVAL);
}

static void test_duration_format_shortest(void **state)
{
    (void)state;
    char buf[32];
    static const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        { 0, "0s" },
        { 250, "250ms" },
        { 1000, "1s" },
        { 5400000, "1h30m" },
        { 86400000, "1d" },
        { 90061001, "1d1h1m1s1ms" },
        { 3600500, "1h500ms" },
        { -90000, "-1m30s" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        irp_duration_format(cases[i].ms, buf, sizeof buf);
        assert_string_equal(buf, cases[i].text);
    }
    irp_duration_format(INT64_MIN, buf, sizeof buf);
    assert_string_equal(buf, "-106751991167d7h12m55s808ms");
}

static void test_duration_format_round_trips(void **state)
{
    (void)state;
    char buf[32];
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 2000; i++) {
        /* xorshift: deterministic spread over the whole positive range */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ms = (int64_t)(x >> (i % 63 + 1));
        int64_t back = -1;
        irp_duration_format(ms, buf, sizeof buf);
        assert_int_equal(irp_duration_parse(buf, strlen(buf), &back), 0);
        assert_int_equal(back, ms);
    }
    irp_duration_format(INT64_MAX, buf, sizeof buf);
    assert_int_equal(dur_ok(buf), INT64_MAX);
}

static void test_duration_format_small_buffer(void **state)
{
    (void)state;
    char buf[4] = "xxx";
    irp_duration_format(5400000, buf, sizeof buf);
    assert_int_equal(strlen(buf), 3);
    assert_memory_equal(buf, "1h3", 3);
    irp_duration_format(5400000, buf, 0);   /* must not write */
    assert_memory_equal(buf, "1h3", 3);
}

static void test_time_parse_utc(void **state)
{
    (void)state;
    assert_int_equal(time_ok("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(time_ok("2026-11-28T12:00:00Z"), INT64_C(1795867200) * 1000);
    assert_int_equal(time_ok("2026-11-28t12:00:00z"), INT64_C(1795867200) * 1000);
    assert_int_equal(time_ok("1969-12-31T23:59:59Z"), -1000);
    assert_int_equal(time_ok("0001-01-01T00:00:00Z"), INT64_C(-62135596800) * 1000);
    assert_int_equal(time_ok("9999-12-31T23:59:59Z"), INT64_C(253402300799) * 1000);
}

static void test_time_parse_offsets(void **state)
{
    (void)state;
    int64_t z = INT64_C(1795867200) * 1000;
    assert_int_equal(time_ok("2026-11-28T13:30:00+01:30"), z);
    assert_int_equal(time_ok("2026-11-28T07:00:00-05:00"), z);
    assert_int_equal(time_ok("2026-11-28T12:00:00+00:00"), z);
    assert_int_equal(time_ok("2026-11-28T12:00:00-00:00"), z);
    /* Crossing a day boundary backwards. */
    assert_int_equal(time_ok("2026-11-29T01:00:00+13:00"), z);
}

static void test_time_parse_fraction(void **state)
{
    (void)state;
    int64_t z = INT64_C(1795867200) * 1000;
    assert_int_equal(time_ok("2026-11-28T12:00:00.1Z"), z + 100);
    assert_int_equal(time_ok("2026-11-28T12:00:00.12Z"), z + 120);
    assert_int_equal(time_ok("2026-11-28T12:00:00.123Z"), z + 123);
    assert_int_equal(time_ok("2026-11-28T12:00:00.123999999Z"), z + 123);
    assert_int_equal(time_ok("2026-11-28T13:00:00.5+01:00"), z + 500);
}

static void test_time_parse_leap_day(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(time_ok("2024-02-29T00:00:00Z"), INT64_C(1709164800) * 1000);
    assert_int_equal(tparse("2000-02-29T00:00:00Z", &ms), 0);
    assert_int_equal(tparse("2023-02-29T00:00:00Z", &ms), IRP_EINVAL);
    assert_int_equal(tparse("1900-02-29T00:00:00Z", &ms), IRP_EINVAL);
    assert_int_equal(tparse("2024-02-30T00:00:00Z", &ms), IRP_EINVAL);
}

static void test_time_parse_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2026-11-28",
        "2026-11-28T12:00:00",          /* no offset */
        "2026-11-28T12:00Z",            /* no seconds */
        "2026-11-28 12:00:00Z",         /* space */
        "2026-11-28T12:00:00+1:00",
        "2026-11-28T12:00:00+0100",
        "2026-11-28T12:00:00+24:00",
        "2026-11-28T12:00:00+01:60",
        "2026-11-28T12:00:00 Z",
        "2026-11-28T12:00:00ZZ",
        "2026-11-28T12:00:00Z ",
        "2026-11-28T12:00:00.Z",
        "2026-11-28T12:00:00.1234567890Z",
        "2026-13-28T12:00:00Z",
        "2026-00-28T12:00:00Z",
        "2026-11-00T12:00:00Z",
        "2026-11-31T12:00:00Z",
        "2026-04-31T12:00:00Z",
        "2026-11-28T24:00:00Z",
        "2026-11-28T12:60:00Z",
        "2026-11-28T12:00:60Z",         /* leap seconds are refused */
        "2026-1-28T12:00:00Z",
        "+2026-11-28T12:00:00Z",
        "2026-11-28T1a:00:00Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 7;
        if (tparse(bad[i], &ms) != IRP_EINVAL)
            fail_msg("'%s' should be refused", bad[i]);
        assert_int_equal(ms, 7);
    }
}

static void test_time_format_utc_ms(void **state)
{
    (void)state;
    char buf[IRP_TIME_BUFSZ];
    irp_time_format(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    irp_time_format(INT64_C(1795867200123), buf);
    assert_string_equal(buf, "2026-11-28T12:00:00.123Z");
    irp_time_format(-1, buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    irp_time_format(INT64_C(1709164800) * 1000 + 86399999, buf);
    assert_string_equal(buf, "2024-02-29T23:59:59.999Z");
    /* Extreme values stay inside the buffer. */
    irp_time_format(INT64_MIN, buf);
    assert_true(strlen(buf) < IRP_TIME_BUFSZ);
    irp_time_format(INT64_MAX, buf);
    assert_true(strlen(buf) < IRP_TIME_BUFSZ);
}

static void test_time_format_round_trips(void **state)
{
    (void)state;
    char buf[IRP_TIME_BUFSZ];
    int64_t lo = INT64_C(-62135596800000), hi = INT64_C(253402300799999);
    /* Every step is a different day, time and millisecond. */
    for (int64_t ms = lo; ms < hi; ms += INT64_C(86400000) * 37 + 3723457) {
        int64_t back = 0;
        irp_time_format(ms, buf);
        assert_int_equal(tparse(buf, &back), 0);
        assert_int_equal(back, ms);
    }
    irp_time_format(hi, buf);
    assert_string_equal(buf, "9999-12-31T23:59:59.999Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_parse_single_units),
        cmocka_unit_test(test_duration_parse_combined),
        cmocka_unit_test(test_duration_parse_rejects_wrong_order),
        cmocka_unit_test(test_duration_parse_rejects_bare_number),
        cmocka_unit_test(test_duration_parse_rejects_junk),
        cmocka_unit_test(test_duration_parse_overflow),
        cmocka_unit_test(test_duration_format_shortest),
        cmocka_unit_test(test_duration_format_round_trips),
        cmocka_unit_test(test_duration_format_small_buffer),
        cmocka_unit_test(test_time_parse_utc),
        cmocka_unit_test(test_time_parse_offsets),
        cmocka_unit_test(test_time_parse_fraction),
        cmocka_unit_test(test_time_parse_leap_day),
        cmocka_unit_test(test_time_parse_rejects),
        cmocka_unit_test(test_time_format_utc_ms),
        cmocka_unit_test(test_time_format_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
