#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "irp/arena.h"

/* Blocks grow geometrically so a 100k-step playbook needs few mallocs;
 * requests larger than a block get a block of their own. */
#define ARENA_MIN_BLOCK (64u * 1024u)
#define ARENA_MAX_BLOCK (8u * 1024u * 1024u)
#define ARENA_MAP_MIN (1024u * 1024u)
/* A hint reserves at most this much address space in one block. */
#define ARENA_MAX_HINT ((size_t)1 << 30)
/* Mapped blocks are whole huge pages.  The kernel places a mapping on a
 * huge-page boundary only when its length is a multiple of one, and
 * backs with huge pages only aligned 2 MiB ranges: a block of 8 MiB plus
 * its header got no huge page in its first or last 2 MiB, and the 4 KiB
 * page faults there cost several times the parse on a virtual machine. */
#define ARENA_HUGE_PAGE ((size_t)2 * 1024 * 1024)

/* Only the head block is allocated from, through the arena's next/end
 * (see irp_arena); `off` is brought up to date when a block stops being
 * the head or is reset. */
struct irp_arena_block {
    irp_arena_block *prev;
    size_t size;
    size_t off;
    size_t mapped;          /* bytes mmap'd for the block, 0 if malloc'd */
    size_t dirty;           /* data[dirty..size) is known to be zero */
    _Alignas(16) unsigned char data[];
};

void irp_arena_init(irp_arena *a, size_t cap)
{
    *a = (irp_arena)IRP_ARENA_INIT;
    a->cap = cap;
}

static void free_blocks(irp_arena_block *b)
{
    while (b) {
        irp_arena_block *prev = b->prev;
        if (b->mapped)
            munmap(b, b->mapped);
        else
            free(b);
        b = prev;
    }
}

/* The head block's fields from the arena's view of it. */
static void sync_head(irp_arena *a)
{
    if (a->head)
        a->head->off = (size_t)(a->next - a->head->data);
}

static void set_head(irp_arena *a, irp_arena_block *b)
{
    a->head = b;
    a->next = b ? b->data + b->off : NULL;
    a->end = b ? b->data + b->size : NULL;
    a->clean = b ? b->data + (b->dirty > b->off ? b->dirty : b->off) : NULL;
}

void irp_arena_release(irp_arena *a)
{
    free_blocks(a->head);
    set_head(a, NULL);
    a->used = 0;
}

void irp_arena_reset(irp_arena *a)
{
    irp_arena_block *b = a->head;
    if (!b)
        return;
    sync_head(a);
    /* The newest block is the largest; keeping it means the next round
     * of allocations reuses memory already faulted in. */
    free_blocks(b->prev);
    b->prev = NULL;
    if (b->off > b->dirty)
        b->dirty = b->off;
    b->off = 0;
    set_head(a, b);
    a->used = 0;
}

void irp_arena_adopt(irp_arena *dst, irp_arena *src)
{
    if (!src->head)
        return;
    sync_head(src);
    irp_arena_block *oldest = src->head;
    while (oldest->prev)
        oldest = oldest->prev;
    /* Behind dst's head, so dst goes on filling the block it was in. */
    if (dst->head) {
        oldest->prev = dst->head->prev;
        dst->head->prev = src->head;
    } else {
        set_head(dst, src->head);
    }
    dst->used += src->used;
    set_head(src, NULL);
    src->used = 0;
}

void irp_arena_hint(irp_arena *a, size_t bytes)
{
    a->hint = bytes < ARENA_MAX_HINT ? bytes : ARENA_MAX_HINT;
}

static irp_arena_block *arena_grow(irp_arena *a, size_t need)
{
    size_t size = a->head ? a->head->size * 2 : ARENA_MIN_BLOCK;
    if (size > ARENA_MAX_BLOCK)
        size = ARENA_MAX_BLOCK;
    /* The hint serves once: later blocks grow from it as from any. */
    if (a->hint > size && a->hint > a->used)
        size = a->hint - a->used;
    a->hint = 0;
    if (size < need)
        size = need;
    irp_arena_block *b;
    size_t mapped = 0;
    if (size >= ARENA_MAP_MIN) {
        /* Large blocks ask for huge pages: faulting in 4 KiB pages one at
         * a time cost more than the parse itself for a 30 MB playbook. */
        if (need > SIZE_MAX - sizeof *b - ARENA_HUGE_PAGE)
            return NULL;
        mapped = (size + ARENA_HUGE_PAGE - 1) & ~(ARENA_HUGE_PAGE - 1);
        if (mapped - sizeof *b < need)   /* the header shares the first page */
            mapped = (sizeof *b + need + ARENA_HUGE_PAGE - 1) & ~(ARENA_HUGE_PAGE - 1);
        b = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED)
            return NULL;
        madvise(b, mapped, MADV_HUGEPAGE);
        size = mapped - sizeof *b;
    } else {
        b = malloc(sizeof *b + size);
        if (!b)
            return NULL;
    }
    b->mapped = mapped;
    b->dirty = mapped ? 0 : size;
    b->prev = a->head;
    b->size = size;
    b->off = 0;
    sync_head(a);
    set_head(a, b);
    return b;
}

/* Carve `size` bytes at an offset aligned to `align` (a power of two):
 * what the inline allocators of arena.h cannot do with the head block's
 * room alone. */
void *irp_arena_carve_slow(irp_arena *a, size_t size, size_t align)
{
    if (size == 0)
        size = 1;
    if (size > SIZE_MAX / 2)
        return NULL;
    uintptr_t next = a->next ? ((uintptr_t)a->next + align - 1) & ~(uintptr_t)(align - 1) : 0;
    if (!a->next || next > (uintptr_t)a->end || (uintptr_t)a->end - next < size) {
        if (a->cap && a->used + size > a->cap)
            return NULL;
        if (!arena_grow(a, size))
            return NULL;
        next = (uintptr_t)a->next;
    }
    size_t taken = next + size - (uintptr_t)a->next;
    if (a->cap && a->used + taken > a->cap)
        return NULL;
    a->used += taken;
    a->next = (unsigned char *)next + size;
    return (void *)next;
}

char *irp_arena_strdup(irp_arena *a, const char *s)
{
    return irp_arena_strndup(a, s, strlen(s));
}

char *irp_arena_printf(irp_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = irp_arena_alloc_bytes(a, (size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}
