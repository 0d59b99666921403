/* Tests of include/irp/diag.h: collecting, counting, sorting, printing
 * and "did you mean" suggestions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irp/diag.h"

/* Everything irp_diag_print() writes, as one malloc'd string. */
static char *print_to_string(const irp_diag_list *l, bool color)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    irp_diag_print(l, f, color);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* ---- adding and counting -------------------------------------------- */

static void test_diag_list_init_is_empty(void **state)
{
    irp_diag_list l;
    memset(&l, 0xAB, sizeof l);
    irp_diag_list_init(&l);
    assert_int_equal(l.n, 0);
    assert_int_equal(l.errors, 0);
    assert_int_equal(l.warnings, 0);
    assert_false(l.truncated);
    char *out = print_to_string(&l, false);
    assert_string_equal(out, "");
    free(out);
    irp_diag_list_release(&l);

    irp_diag_list s = IRP_DIAG_LIST_INIT;
    assert_int_equal(s.n, 0);
    irp_diag_list_release(&s);
}

static void test_diag_add_counts_by_severity(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    irp_diag_error(&l, "a.yaml", 1, 1, "first");
    irp_diag_warning(&l, "a.yaml", 2, 1, "second");
    irp_diag_error(&l, "a.yaml", 3, 1, "third");
    irp_diag_add(&l, IRP_DIAG_NOTE, "a.yaml", 4, 1, "a note counts as neither");
    assert_int_equal(l.n, 4);
    assert_int_equal(l.errors, 2);
    assert_int_equal(l.warnings, 1);
    irp_diag_list_release(&l);
    assert_int_equal(l.n, 0);
    assert_int_equal(l.errors, 0);
    assert_null(l.items);
}

static void test_diag_add_formats_message(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    irp_diag_error(&l, "a.yaml", 7, 3, "unknown key '%s' in %s (%d)", "tiemout", "a step", 42);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].msg, "unknown key 'tiemout' in a step (42)");
    assert_int_equal(l.items[0].line, 7);
    assert_int_equal(l.items[0].col, 3);
    assert_int_equal(l.items[0].sev, IRP_DIAG_ERROR);
    assert_string_equal(l.items[0].file, "a.yaml");
    irp_diag_list_release(&l);
}

/* Past `max`, diagnostics are counted but not stored, and printing says
 * so. */
static void test_diag_add_past_max_truncates(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    l.max = 3;
    for (int i = 0; i < 5; i++)
        irp_diag_error(&l, "a.yaml", (uint32_t)(10 - i), 1, "error %d", i);
    irp_diag_warning(&l, "a.yaml", 1, 1, "late warning");
    assert_int_equal(l.n, 3);
    assert_int_equal(l.errors, 5);
    assert_int_equal(l.warnings, 1);
    assert_true(l.truncated);
    irp_diag_sort(&l);
    char *out = print_to_string(&l, false);
    assert_string_equal(out, "a.yaml:8:1: error: error 2\n"
                             "a.yaml:9:1: error: error 1\n"
                             "a.yaml:10:1: error: error 0\n"
                             "irp: too many diagnostics; only the first 3 are shown\n");
    free(out);
    irp_diag_list_release(&l);
}

static void test_diag_add_default_max_is_10000(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    for (int i = 0; i < 10001; i++)
        irp_diag_error(&l, "a.yaml", 1, 1, "e");
    assert_int_equal(l.n, 10000);
    assert_int_equal(l.errors, 10001);
    assert_true(l.truncated);
    irp_diag_list_release(&l);
}

/* ---- sorting -------------------------------------------------------- */

static void test_diag_sort_by_line_then_column(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    irp_diag_error(&l, "a.yaml", 10, 5, "d");
    irp_diag_error(&l, "a.yaml", 2, 9, "b");
    irp_diag_error(&l, "a.yaml", 10, 1, "c");
    irp_diag_error(&l, "a.yaml", 2, 1, "a");
    irp_diag_error(&l, "a.yaml", 100, 1, "e");
    irp_diag_sort(&l);
    const char *want = "abcde";
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(l.items[i].msg[0], want[i]);
    irp_diag_list_release(&l);
}

/* Same position: the order in which they were found. */
static void test_diag_sort_ties_keep_insertion_order(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    for (int i = 0; i < 40; i++)
        irp_diag_add(&l, i % 2 ? IRP_DIAG_WARNING : IRP_DIAG_ERROR, "a.yaml", 3, 4, "%02d", i);
    irp_diag_error(&l, "a.yaml", 1, 1, "first");
    irp_diag_sort(&l);
    assert_string_equal(l.items[0].msg, "first");
    for (int i = 0; i < 40; i++) {
        char want[8];
        snprintf(want, sizeof want, "%02d", i);
        assert_string_equal(l.items[i + 1].msg, want);
    }
    irp_diag_list_release(&l);
}

/* Files in the order they were first mentioned, not alphabetically; a
 * file named by another pointer with the same text is the same file. */
static void test_diag_sort_by_file_first_seen(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    char other_z[] = "z.yaml";
    irp_diag_error(&l, "z.yaml", 9, 1, "z9");
    irp_diag_error(&l, "a.yaml", 1, 1, "a1");
    irp_diag_error(&l, other_z, 2, 1, "z2");
    irp_diag_error(&l, "m.yaml", 1, 1, "m1");
    irp_diag_error(&l, "a.yaml", 0, 0, "a0");
    irp_diag_sort(&l);
    const char *want[] = { "z2", "z9", "a0", "a1", "m1" };
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(l.items[i].msg, want[i]);
    assert_int_equal(l.nfiles, 3);
    irp_diag_list_release(&l);
}

static void test_diag_sort_empty_and_single(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    irp_diag_sort(&l);
    assert_int_equal(l.n, 0);
    irp_diag_error(&l, "a.yaml", 5, 5, "only");
    irp_diag_sort(&l);
    assert_string_equal(l.items[0].msg, "only");
    irp_diag_list_release(&l);
}

/* ---- printing ------------------------------------------------------- */

static void test_diag_print_format(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    irp_diag_error(&l, "dir/play book.yaml", 12, 7, "duplicate key 'timeout' (first defined at line 5)");
    irp_diag_warning(&l, "dir/play book.yaml", 13, 1, "a warning");
    irp_diag_add(&l, IRP_DIAG_NOTE, "dir/play book.yaml", 14, 2, "a note");
    char *out = print_to_string(&l, false);
    assert_string_equal(out,
        "dir/play book.yaml:12:7: error: duplicate key 'timeout' (first defined at line 5)\n"
        "dir/play book.yaml:13:1: warning: a warning\n"
        "dir/play book.yaml:14:2: note: a note\n");
    free(out);
    irp_diag_list_release(&l);
}

/* Line 0 means the whole file; a line without a column prints column 1;
 * no file name prints <input>. */
static void test_diag_print_positionless(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    irp_diag_error(&l, "big.yaml", 0, 0, "file is larger than the 64 MiB limit");
    irp_diag_error(&l, "big.yaml", 4, 0, "no column");
    irp_diag_error(&l, NULL, 2, 3, "from memory");
    char *out = print_to_string(&l, false);
    assert_string_equal(out, "big.yaml: error: file is larger than the 64 MiB limit\n"
                             "big.yaml:4:1: error: no column\n"
                             "<input>:2:3: error: from memory\n");
    free(out);
    irp_diag_list_release(&l);
}

/* A message is data, never a format: '%' in it prints as is. */
static void test_diag_print_percent_in_message(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    irp_diag_error(&l, "a.yaml", 1, 1, "%s", "invalid duration '50%s%n'");
    char *out = print_to_string(&l, false);
    assert_string_equal(out, "a.yaml:1:1: error: invalid duration '50%s%n'\n");
    free(out);
    irp_diag_list_release(&l);
}

static void test_diag_print_color(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    irp_diag_error(&l, "a.yaml", 1, 2, "bad");
    irp_diag_warning(&l, "a.yaml", 3, 4, "odd");
    char *out = print_to_string(&l, true);
    assert_string_equal(out, "a.yaml:1:2: \033[1;31merror:\033[0m bad\n"
                             "a.yaml:3:4: \033[1;35mwarning:\033[0m odd\n");
    free(out);
    irp_diag_list_release(&l);
}

/* "One per line" (SPEC §2) must hold whatever a message quotes: a YAML
 * key or value may hold a newline ("foo\nbar": 1 is a valid key), and a
 * raw one would split the diagnostic and break every tool that reads
 * FILE:LINE:COL lines. */
static void test_diag_print_one_line_per_diagnostic(void **state)
{
    irp_diag_list l = IRP_DIAG_LIST_INIT;
    irp_diag_error(&l, "a.yaml", 1, 1, "unknown key '%s' in the playbook", "foo\nbar\r\nbaz");
    irp_diag_error(&l, "a.yaml", 2, 1, "invalid step id '%s'", "a\nb");
    irp_diag_warning(&l, "a.yaml", 3, 1, "title '%s'", "bell\a del\x7f tab\t");
    char *out = print_to_string(&l, false);
    assert_int_equal(count_char(out, '\n'), 3);
    assert_null(strchr(out, '\r'));
    assert_null(strchr(out, '\a'));
    assert_null(strchr(out, '\x7f'));
    assert_string_equal(out, "a.yaml:1:1: error: unknown key 'foo\\nbar\\r\\nbaz' in the playbook\n"
                             "a.yaml:2:1: error: invalid step id 'a\\nb'\n"
                             "a.yaml:3:1: warning: title 'bell\\x07 del\\x7f tab\\t'\n");
    free(out);
    irp_diag_list_release(&l);
}

/* ---- suggestions ---------------------------------------------------- */

static const char *const step_keys[] = {
    "id", "title", "phase", "needs", "when", "for_each", "confirm", "timeout", "retries",
    "retry_delay", "retry_backoff", "on_failure", "idempotent", "cwd", "env", "simulate",
    "run", "manual", "notify", "evidence", "wait",
};
#define NKEYS (sizeof step_keys / sizeof *step_keys)

static void test_diag_suggest_hits(void **state)
{
    assert_string_equal(irp_diag_suggest("tiemout", step_keys, NKEYS), "timeout");
    assert_string_equal(irp_diag_suggest("retires", step_keys, NKEYS), "retries");
    assert_string_equal(irp_diag_suggest("on-failure", step_keys, NKEYS), "on_failure");
    assert_string_equal(irp_diag_suggest("Timeout", step_keys, NKEYS), "timeout");
    assert_string_equal(irp_diag_suggest("needss", step_keys, NKEYS), "needs");
    assert_string_equal(irp_diag_suggest("evidance", step_keys, NKEYS), "evidence");
    assert_string_equal(irp_diag_suggest("foreach", step_keys, NKEYS), "for_each");
    /* An exact match is its own best suggestion. */
    assert_string_equal(irp_diag_suggest("run", step_keys, NKEYS), "run");
}

static void test_diag_suggest_misses(void **state)
{
    assert_null(irp_diag_suggest("owner", step_keys, NKEYS));
    assert_null(irp_diag_suggest("description", step_keys, NKEYS));
    assert_null(irp_diag_suggest("x", (const char *const[]){ "abc" }, 1));
    assert_null(irp_diag_suggest("anything", NULL, 0));
    /* Past 3 edits never suggests, even for long words. */
    assert_null(irp_diag_suggest("retry_delayxxxx", step_keys, NKEYS));
    /* Words too long to compare cheaply get no suggestion. */
    char longw[100];
    memset(longw, 'a', sizeof longw - 1);
    longw[sizeof longw - 1] = '\0';
    const char *cands[] = { longw };
    assert_null(irp_diag_suggest(longw, cands, 1));
}

/* A typo is at most a third of the word (plus one), capped at 3 edits. */
static void test_diag_suggest_limit_scales_with_length(void **state)
{
    const char *const ab[] = { "ab" };
    assert_string_equal(irp_diag_suggest("ax", ab, 1), "ab");          /* 1 edit, limit 1 */
    assert_null(irp_diag_suggest("xy", ab, 1));                         /* 2 edits, limit 1 */
    const char *const six[] = { "abcdef" };
    assert_string_equal(irp_diag_suggest("abcdxy", six, 1), "abcdef");  /* 2 edits, limit 3 */
    assert_string_equal(irp_diag_suggest("abcxyz", six, 1), "abcdef");  /* 3 edits, limit 3 */
    assert_null(irp_diag_suggest("abxxyz", six, 1));                    /* 4 edits */
    const char *const five[] = { "abcde" };
    assert_null(irp_diag_suggest("abxyz", five, 1));                    /* 3 edits, limit 2 */
}

/* The closest wins; among equally close ones, the first listed. */
static void test_diag_suggest_picks_closest_then_first(void **state)
{
    const char *const tlp[] = { "clear", "green", "amber", "amber+strict", "red" };
    assert_string_equal(irp_diag_suggest("ambr", tlp, 5), "amber");
    assert_string_equal(irp_diag_suggest("amber+stric", tlp, 5), "amber+strict");
    assert_string_equal(irp_diag_suggest("rad", tlp, 5), "red");
    const char *const tie[] = { "cat", "bat" };
    assert_string_equal(irp_diag_suggest("hat", tie, 2), "cat");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diag_list_init_is_empty),
        cmocka_unit_test(test_diag_add_counts_by_severity),
        cmocka_unit_test(test_diag_add_formats_message),
        cmocka_unit_test(test_diag_add_past_max_truncates),
        cmocka_unit_test(test_diag_add_default_max_is_10000),
        cmocka_unit_test(test_diag_sort_by_line_then_column),
        cmocka_unit_test(test_diag_sort_ties_keep_insertion_order),
        cmocka_unit_test(test_diag_sort_by_file_first_seen),
        cmocka_unit_test(test_diag_sort_empty_and_single),
        cmocka_unit_test(test_diag_print_format),
        cmocka_unit_test(test_diag_print_positionless),
        cmocka_unit_test(test_diag_print_percent_in_message),
        cmocka_unit_test(test_diag_print_color),
        cmocka_unit_test(test_diag_print_one_line_per_diagnostic),
        cmocka_unit_test(test_diag_suggest_hits),
        cmocka_unit_test(test_diag_suggest_misses),
        cmocka_unit_test(test_diag_suggest_limit_scales_with_length),
        cmocka_unit_test(test_diag_suggest_picks_closest_then_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
