/* The validator on playbooks built in memory: the needs-reachability
 * warning stays exact on chains long enough to use its cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "irp/model.h"

static char *chain(size_t n, const char *last_reads)
{
    size_t cap = 128 + n * 64;
    char *s = malloc(cap);
    size_t len = (size_t)snprintf(s, cap, "irp: 1\nid: chain\nsteps:\n"
                                          "  - id: other\n    needs: []\n    run: [true]\n"
                                          "  - id: s0\n    needs: []\n    run: [true]\n");
    for (size_t i = 1; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "  - id: s%zu\n    when: steps.%s.ok\n"
                                "    run: [true]\n", i, i + 1 == n ? last_reads : "s0");
    return s;
}

static size_t warnings_for(size_t n, const char *last_reads, irp_diag_list *d)
{
    char *src = chain(n, last_reads);
    irp_playbook *pb = NULL;
    assert_int_equal(irp_playbook_load_mem("chain.yaml", src, strlen(src), d, &pb), 0);
    irp_playbook_free(pb);
    free(src);
    return d->warnings;
}

static void test_validate_reach_long_chain_no_false_warning(void **state)
{
    irp_diag_list d = IRP_DIAG_LIST_INIT;
    assert_int_equal(warnings_for(20000, "s0", &d), 0);
    irp_diag_list_release(&d);
}

static void test_validate_reach_long_chain_warns_on_unneeded_step(void **state)
{
    irp_diag_list d = IRP_DIAG_LIST_INIT;
    assert_int_equal(warnings_for(20000, "other", &d), 1);
    assert_non_null(strstr(d.items[0].msg, "reads steps.other but does not need it"));
    assert_int_equal(d.items[0].line, 3 * 19999 + 8);   /* the when of s19999 */
    irp_diag_list_release(&d);
}

static void test_validate_reach_short_chain(void **state)
{
    irp_diag_list d = IRP_DIAG_LIST_INIT;
    assert_int_equal(warnings_for(10, "other", &d), 1);
    irp_diag_list_release(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_reach_long_chain_no_false_warning),
        cmocka_unit_test(test_validate_reach_long_chain_warns_on_unneeded_step),
        cmocka_unit_test(test_validate_reach_short_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
