/* irp — a bump allocator for data that lives and dies together.
 *
 * The loaded playbook (its YAML nodes, its model, its parsed templates)
 * lives in one arena and is freed once with irp_arena_release().  Memory
 * from an arena is never freed individually.  Allocation is aligned for
 * any C object.  An arena may be given a cap; past it allocation fails
 * (returns NULL) instead of growing without bound.
 */
#ifndef IRP_ARENA_H
#define IRP_ARENA_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct irp_arena_block irp_arena_block;

typedef struct irp_arena {
    irp_arena_block *head;   /* current block; older blocks chained */
    size_t used;             /* bytes handed out, all blocks */
    size_t cap;              /* 0 = no cap */
    /* The head block's free room [next, end) and where its memory known
     * to be zero starts (clean), so the common allocation is a few
     * instructions inline: a large playbook makes millions of them. */
    unsigned char *next, *end, *clean;
    size_t hint;             /* expected total; see irp_arena_hint() */
} irp_arena;

#define IRP_ARENA_INIT { NULL, 0, 0, NULL, NULL, NULL, 0 }

void irp_arena_init(irp_arena *a, size_t cap);
/* Frees every block; the arena may be reused afterwards. */
void irp_arena_release(irp_arena *a);
/* Forgets every allocation but keeps the newest block for the next ones:
 * for scratch data built and dropped over and over, so the same memory
 * serves each round instead of fresh memory being faulted in. */
void irp_arena_reset(irp_arena *a);
/* Moves every block of src into dst: what was allocated from src now
 * lives until dst is released.  src is left empty. */
void irp_arena_adopt(irp_arena *dst, irp_arena *src);
/* The arena will probably hold about `bytes` in all: its next block is
 * sized for them instead of growing to them block by block (small blocks
 * come from malloc, in pages faulted one at a time).  Only address space
 * is reserved; memory is used as allocations reach it. */
void irp_arena_hint(irp_arena *a, size_t bytes);

/* The slow path of the allocators below: a new block, or a cap. */
void *irp_arena_carve_slow(irp_arena *a, size_t size, size_t align);

/* Allocations are aligned to this (8, not max_align_t's 16: nothing in an
 * arena needs long double, and 16 would round a 24-byte node up to 32). */
#define IRP_ARENA_ALIGN ((size_t)8)

/* `size` bytes aligned to `align` (a power of two) from the head block's
 * room, else from the slow path: the core of the allocators below. */
static inline void *irp_arena_carve(irp_arena *a, size_t size, size_t align)
{
    uintptr_t next = ((uintptr_t)a->next + align - 1) & ~(uintptr_t)(align - 1);
    if (a->cap || size == 0 || !a->next || next > (uintptr_t)a->end ||
        (uintptr_t)a->end - next < size)
        return irp_arena_carve_slow(a, size, align);
    a->used += next + size - (uintptr_t)a->next;
    a->next = (unsigned char *)next + size;
    return (void *)next;
}

/* Zeroed memory, or NULL when out of memory or past the cap. */
static inline void *irp_arena_alloc(irp_arena *a, size_t size)
{
    unsigned char *p = irp_arena_carve(a, size, IRP_ARENA_ALIGN);
    /* Fresh mapped memory is already zero: writing it again would only
     * fault it in early and cost a pass over it. */
    if (p && p < a->clean)
        memset(p, 0, size);
    return p;
}

/* Aligned as above but uninitialised: for an object written whole at
 * once, where zeroing first is a second pass over it. */
static inline void *irp_arena_alloc_uninit(irp_arena *a, size_t size)
{
    return irp_arena_carve(a, size, IRP_ARENA_ALIGN);
}

/* Unaligned, uninitialised bytes: for strings and byte buffers, where
 * alignment padding and zeroing are waste. */
static inline void *irp_arena_alloc_bytes(irp_arena *a, size_t size)
{
    return irp_arena_carve(a, size, 1);
}

/* Copy of s[0..len) with a terminating NUL; NULL on failure. */
static inline char *irp_arena_strndup(irp_arena *a, const char *s, size_t len)
{
    char *p = len < SIZE_MAX / 2 ? irp_arena_alloc_bytes(a, len + 1) : NULL;
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *irp_arena_strdup(irp_arena *a, const char *s);
/* printf into the arena; NULL on failure. */
char *irp_arena_printf(irp_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
