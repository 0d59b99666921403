#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "irp/error.h"
#include "irp/timeutil.h"

#define MS_PER_SEC  INT64_C(1000)
#define MS_PER_MIN  (60 * MS_PER_SEC)
#define MS_PER_HOUR (60 * MS_PER_MIN)
#define MS_PER_DAY  (24 * MS_PER_HOUR)

/* Descending order: a duration must name them in this order. */
static const struct {
    const char *name;
    size_t len;
    int64_t ms;
} duration_units[] = {
    { "d", 1, MS_PER_DAY },
    { "h", 1, MS_PER_HOUR },
    { "m", 1, MS_PER_MIN },
    { "s", 1, MS_PER_SEC },
    { "ms", 2, 1 },
};
#define N_UNITS (sizeof duration_units / sizeof duration_units[0])

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static int unit_index(const char *s, size_t len)
{
    for (size_t i = 0; i < N_UNITS; i++)
        if (duration_units[i].len == len && memcmp(duration_units[i].name, s, len) == 0)
            return (int)i;
    return -1;
}

int irp_duration_parse(const char *s, size_t len, int64_t *ms)
{
    size_t pos = 0;
    int last = -1;
    int64_t total = 0;
    bool overflow = false;

    if (len == 0)
        return IRP_EINVAL;
    while (pos < len) {
        if (!is_digit(s[pos]))
            return IRP_EINVAL;
        int64_t v = 0;
        while (pos < len && is_digit(s[pos])) {
            int d = s[pos++] - '0';
            /* Keep scanning after an overflow: a malformed text is
             * IRP_EINVAL even when it also holds a huge number. */
            if (v > (INT64_MAX - d) / 10)
                overflow = true;
            else
                v = v * 10 + d;
        }
        size_t ustart = pos;
        while (pos < len && is_lower(s[pos]))
            pos++;
        int u = unit_index(s + ustart, pos - ustart);
        if (u < 0 || u <= last)
            return IRP_EINVAL;   /* bare number, unknown unit, wrong order */
        last = u;
        int64_t unit = duration_units[u].ms;
        if (v > INT64_MAX / unit || total > INT64_MAX - v * unit)
            overflow = true;
        else
            total += v * unit;
    }
    if (overflow)
        return IRP_ERANGE;
    *ms = total;
    return 0;
}

/* Decimal digits of v at p; returns how many. */
static size_t put_u64(char *p, uint64_t v)
{
    char d[20];
    size_t k = 0;
    do
        d[k++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < k; i++)
        p[i] = d[k - 1 - i];
    return k;
}

/* Made whole in a local buffer, then cut to n as snprintf would: a report
 * formats one per step and timeline row, and printf was most of it. */
void irp_duration_format(int64_t ms, char *buf, size_t n)
{
    char text[64];   /* "-" and five units of at most 20 digits and 2 letters: 61 */
    size_t off = 0;

    if (n == 0)
        return;
    /* Work on the magnitude as unsigned so INT64_MIN has one. */
    uint64_t u = ms < 0 ? (uint64_t)(-(ms + 1)) + 1 : (uint64_t)ms;
    if (ms < 0)
        text[off++] = '-';
    for (size_t i = 0; i < N_UNITS; i++) {
        uint64_t q = u / (uint64_t)duration_units[i].ms;
        u %= (uint64_t)duration_units[i].ms;
        if (q == 0)
            continue;
        off += put_u64(text + off, q);
        memcpy(text + off, duration_units[i].name, duration_units[i].len);
        off += duration_units[i].len;
    }
    if (ms == 0) {
        memcpy(text, "0s", 2);
        off = 2;
    }
    if (off > n - 1)
        off = n - 1;
    memcpy(buf, text, off);
    buf[off] = '\0';
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), so no timegm() and no time zone is involved. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned char dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* n decimal digits at s, or -1. */
static int digits(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* The offset part: `Z`, or `+hh:mm` / `-hh:mm`, in minutes east of UTC. */
static int parse_offset(const char *s, size_t len, int *minutes)
{
    if (len == 1 && (s[0] == 'Z' || s[0] == 'z')) {
        *minutes = 0;
        return 0;
    }
    if (len != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':')
        return IRP_EINVAL;
    int hh = digits(s + 1, 2), mm = digits(s + 4, 2);
    if (hh < 0 || hh > 23 || mm < 0 || mm > 59)
        return IRP_EINVAL;
    *minutes = (s[0] == '-' ? -1 : 1) * (hh * 60 + mm);
    return 0;
}

int irp_time_parse(const char *s, size_t len, int64_t *ms_utc)
{
    /* YYYY-MM-DDTHH:MM:SS is 19 bytes; the offset needs at least 1 more. */
    if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't')
        || s[13] != ':' || s[16] != ':')
        return IRP_EINVAL;
    int year = digits(s, 4), mon = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), min = digits(s + 14, 2), sec = digits(s + 17, 2);
    if (year < 0 || mon < 1 || mon > 12 || day < 1
        || (unsigned)day > days_in_month(year, (unsigned)mon)
        || hour < 0 || hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 59)
        return IRP_EINVAL;

    size_t pos = 19;
    int64_t frac_ms = 0;
    if (s[pos] == '.') {
        size_t start = ++pos;
        while (pos < len && is_digit(s[pos])) {
            if (pos - start < 3)
                frac_ms = frac_ms * 10 + (s[pos] - '0');
            pos++;
        }
        size_t nd = pos - start;
        if (nd == 0 || nd > 9)
            return IRP_EINVAL;
        for (size_t i = nd; i < 3; i++)
            frac_ms *= 10;
    }
    int off_min;
    if (parse_offset(s + pos, len - pos, &off_min) < 0)
        return IRP_EINVAL;

    int64_t days = days_from_civil(year, (unsigned)mon, (unsigned)day);
    int64_t secs = days * 86400 + hour * 3600 + min * 60 + sec - (int64_t)off_min * 60;
    *ms_utc = secs * MS_PER_SEC + frac_ms;
    return 0;
}

/* v as exactly n decimal digits (v < 10^n). */
static void put_digits(char *out, unsigned v, int n)
{
    while (n-- > 0) {
        out[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

void irp_time_format(int64_t ms_utc, char buf[IRP_TIME_BUFSZ])
{
    /* Floor division so times before 1970 land on the right day. */
    int64_t days = ms_utc / MS_PER_DAY;
    int64_t rem = ms_utc % MS_PER_DAY;
    if (rem < 0) {
        rem += MS_PER_DAY;
        days--;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    int ms = (int)(rem % 1000);
    int secs = (int)(rem / 1000);
    /* Every journal line and report row has a time or two: the common
     * years without snprintf, which costs more than the rest together. */
    if (y >= 0 && y <= 9999) {
        put_digits(buf, (unsigned)y, 4);
        buf[4] = '-';
        put_digits(buf + 5, m, 2);
        buf[7] = '-';
        put_digits(buf + 8, d, 2);
        buf[10] = 'T';
        put_digits(buf + 11, (unsigned)(secs / 3600), 2);
        buf[13] = ':';
        put_digits(buf + 14, (unsigned)(secs / 60 % 60), 2);
        buf[16] = ':';
        put_digits(buf + 17, (unsigned)(secs % 60), 2);
        buf[19] = '.';
        put_digits(buf + 20, (unsigned)ms, 3);
        buf[23] = 'Z';
        buf[24] = '\0';
        return;
    }
    /* Any int64_t lands within years -292277022..292278994, so the text
     * fits in IRP_TIME_BUFSZ; the compiler cannot see that, hence tmp. */
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d.%03dZ",
             y, m, d, secs / 3600, secs / 60 % 60, secs % 60, ms);
    size_t n = strlen(tmp);
    if (n >= IRP_TIME_BUFSZ)
        n = IRP_TIME_BUFSZ - 1;
    memcpy(buf, tmp, n);
    buf[n] = '\0';
}
