/* irp — durations and timestamps.
 *
 * Pure functions: no clock, no locale, no time zone database, no timegm().
 * Times are milliseconds since 1970-01-01T00:00:00Z (proleptic Gregorian
 * calendar, no leap seconds), which is also what the journal records.
 */
#ifndef IRP_TIMEUTIL_H
#define IRP_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Parse a duration: one or more <digits><unit> groups with units
 * `d` `h` `m` `s` `ms`, in that (descending) order, each at most once and
 * with nothing between them: `250ms`, `30s`, `90m`, `1h30m`,
 * `1h30m15s500ms`.  Digits are decimal integers; there is no sign, no
 * fraction and no space.  A group may exceed the next unit (`90m` is
 * fine).
 *
 * Returns 0 and sets *ms; IRP_EINVAL for anything else, a bare number
 * (`5`) and the empty string included; IRP_ERANGE when the total does not
 * fit in an int64_t of milliseconds.  *ms is untouched on error. */
int irp_duration_parse(const char *s, size_t len, int64_t *ms);

/* Write the shortest duration text that parses back to `ms`: `1h30m`,
 * `250ms`, `1d2h`, `0s` for zero; a negative duration is written with a
 * leading '-' (irp_duration_parse does not accept it back; it exists so a
 * deadline that has passed can be shown).  Always NUL-terminates when
 * n > 0; 24 bytes are always enough. */
void irp_duration_format(int64_t ms, char *buf, size_t n);

/* Parse an RFC 3339 date-time with a mandatory offset:
 *     YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)
 * `T` and `Z` may be lowercase.  Fractional seconds have 1 to 9 digits;
 * digits past milliseconds are truncated.  Every field is range-checked
 * (months, days of the month with leap years, hours 00-23, minutes and
 * seconds 00-59, offsets up to 23:59).  A leap second (`:60`) is refused:
 * irp's times have none.
 *
 * Returns 0 and sets *ms_utc; IRP_EINVAL otherwise (*ms_utc untouched). */
int irp_time_parse(const char *s, size_t len, int64_t *ms_utc);

/* Write `ms_utc` as irp writes every time: `2026-11-28T12:00:00.123Z`,
 * always UTC, always milliseconds.  Years outside 0000-9999 are written
 * with more digits or a sign and are not meant to be parsed back. */
#define IRP_TIME_BUFSZ 32
void irp_time_format(int64_t ms_utc, char buf[IRP_TIME_BUFSZ]);

#endif
