/* The validator on playbooks built in memory: the needs-reachability
 * warning stays exact on chains long enough to use its cache; and the
 * fields few steps have, kept apart from the step, come from the step
 * or from `defaults` as the format says. */
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

static irp_playbook *load(const char *src)
{
    irp_diag_list d = IRP_DIAG_LIST_INIT;
    irp_playbook *pb = NULL;
    int rc = irp_playbook_load_mem("rare.yaml", src, strlen(src), &d, &pb);
    if (rc != 0)
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "%u:%u: %s\n", d.items[i].line, d.items[i].col, d.items[i].msg);
    assert_int_equal(rc, 0);
    irp_diag_list_release(&d);
    return pb;
}

static const irp_step *step(const irp_playbook *pb, const char *id)
{
    for (size_t i = 0; i < pb->n_steps; i++)
        if (strcmp(pb->steps[i].id, id) == 0)
            return &pb->steps[i];
    fail_msg("no step %s", id);
    return NULL;
}

static void test_rare_fields_from_step_and_defaults(void **state)
{
    irp_playbook *pb = load("irp: 1\nid: rare\n"
                            "defaults:\n  cwd: /srv/case\n  confirm: Go ahead?\n"
                            "steps:\n"
                            "  - id: plain\n    run: [true]\n"
                            "  - id: own\n    cwd: /tmp\n    confirm: false\n    run: [true]\n"
                            "  - id: asks\n    confirm: Really?\n    run: [true]\n"
                            "  - id: fan\n    for_each: [a, b]\n    run: [echo, '${{ item }}']\n"
                            "  - id: fan2\n    for_each: ${{ inputs.hosts }}\n    run: [true]\n"
                            "inputs:\n  hosts:\n    type: list\n    default: [x]\n");
    const irp_step *s = step(pb, "plain");
    assert_string_equal(s->rare->cwd.s, "/srv/case");
    assert_true(s->confirm);
    assert_string_equal(s->rare->confirm_prompt.s, "Go ahead?");
    assert_int_equal(s->rare->n_for_each_items, 0);

    s = step(pb, "own");
    assert_string_equal(s->rare->cwd.s, "/tmp");
    assert_false(s->confirm);

    s = step(pb, "asks");
    assert_true(s->confirm);
    assert_string_equal(s->rare->confirm_prompt.s, "Really?");
    assert_string_equal(s->rare->cwd.s, "/srv/case");

    s = step(pb, "fan");
    assert_true(s->has_for_each && s->for_each_is_list);
    assert_int_equal(s->rare->n_for_each_items, 2);
    assert_string_equal(s->rare->for_each_items[1].s, "b");
    assert_string_equal(s->rare->cwd.s, "/srv/case");
    /* Each step that has any has its own: defaults did not overwrite
     * another step's. */
    assert_ptr_not_equal(s->rare, step(pb, "plain")->rare);

    s = step(pb, "fan2");
    assert_true(s->has_for_each && !s->for_each_is_list);
    assert_non_null(s->rare->for_each_expr.tpl);
    irp_playbook_free(pb);

    /* Without them, a step shares the empty set: no memory of its own. */
    pb = load("irp: 1\nid: rare2\nsteps:\n  - id: a\n    run: [true]\n"
              "  - id: b\n    confirm: true\n    run: [true]\n");
    assert_ptr_equal(step(pb, "a")->rare, &irp_step_rare_none);
    assert_ptr_equal(step(pb, "b")->rare, &irp_step_rare_none);
    assert_true(step(pb, "b")->confirm);
    assert_null(step(pb, "b")->rare->confirm_prompt.s);
    irp_playbook_free(pb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_reach_long_chain_no_false_warning),
        cmocka_unit_test(test_validate_reach_long_chain_warns_on_unneeded_step),
        cmocka_unit_test(test_validate_reach_short_chain),
        cmocka_unit_test(test_rare_fields_from_step_and_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
