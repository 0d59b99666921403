/* Tests of include/irp/arena.h: zeroed memory from every kind of block,
 * reuse after a reset, and blocks moved from one arena to another. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "irp/arena.h"

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* Small requests come from malloc'd blocks, large ones from mapped
 * blocks that are not written before use: both must read as zero. */
static void test_arena_alloc_zeroed(void **state)
{
    irp_arena a;
    irp_arena_init(&a, 0);
    for (int round = 0; round < 200; round++) {
        size_t size = round % 50 == 49 ? (size_t)3 << 20 : 40000;
        unsigned char *p = irp_arena_alloc(&a, size);
        assert_non_null(p);
        assert_true(all_zero(p, size));
        memset(p, 0xa5, size);
        /* Unzeroed bytes in between must not leak into the next block. */
        unsigned char *s = irp_arena_alloc_bytes(&a, 13);
        assert_non_null(s);
        memset(s, 0x5a, 13);
    }
    assert_int_equal(((uintptr_t)irp_arena_alloc(&a, 24)) % 8, 0);
    irp_arena_release(&a);
}

static void test_arena_reset_reuses_and_rezeroes(void **state)
{
    irp_arena a;
    irp_arena_init(&a, 0);
    for (int size = 100; size <= 3 << 20; size *= 7) {
        unsigned char *first = irp_arena_alloc(&a, (size_t)size);
        memset(first, 0xff, (size_t)size);
        irp_arena_reset(&a);
        assert_int_equal(a.used, 0);
        unsigned char *again = irp_arena_alloc(&a, (size_t)size);
        /* The same memory, served again, zeroed again. */
        assert_ptr_equal(again, first);
        assert_true(all_zero(again, (size_t)size));
        memset(again, 0xff, (size_t)size);
        irp_arena_reset(&a);
    }
    /* Several blocks: the newest is kept, the others freed (ASan and
     * valgrind see a leak or a double free otherwise). */
    for (int i = 0; i < 100; i++)
        memset(irp_arena_alloc(&a, 50000), 1, 50000);
    irp_arena_reset(&a);
    assert_true(all_zero(irp_arena_alloc(&a, 50000), 50000));
    irp_arena_release(&a);
    irp_arena_reset(&a);   /* an empty arena: nothing to do */
}

static void test_arena_adopt(void **state)
{
    irp_arena dst, src;
    irp_arena_init(&dst, 0);
    irp_arena_init(&src, 0);
    char *kept = irp_arena_strdup(&src, "kept");
    for (int i = 0; i < 40; i++)
        irp_arena_alloc(&src, 30000);
    size_t used = src.used;
    irp_arena_adopt(&dst, &src);   /* into an empty arena */
    assert_int_equal(dst.used, used);
    assert_int_equal(src.used, 0);
    char *more = irp_arena_strdup(&src, "more");
    char *other = irp_arena_strdup(&dst, "other");
    irp_arena_adopt(&dst, &src);   /* behind dst's current block */
    irp_arena_release(&src);
    assert_string_equal(kept, "kept");
    assert_string_equal(more, "more");
    assert_string_equal(other, "other");
    /* dst goes on allocating from the block it was in. */
    char *next = irp_arena_strdup(&dst, "x");
    assert_ptr_equal(next, other + strlen(other) + 1);
    irp_arena_adopt(&dst, &src);   /* nothing to move */
    irp_arena_release(&dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_alloc_zeroed),
        cmocka_unit_test(test_arena_reset_reuses_and_rezeroes),
        cmocka_unit_test(test_arena_adopt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
