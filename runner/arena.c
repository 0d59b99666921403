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
/* Mapped blocks are whole huge pages.  The kernel places a mapping on a
 * huge-page boundary only when its length is a multiple of one, and
 * backs with huge pages only aligned 2 MiB ranges: a block of 8 MiB plus
 * its header got no huge page in its first or last 2 MiB, and the 4 KiB
 * page faults there cost several times the parse on a virtual machine. */
#define ARENA_HUGE_PAGE ((size_t)2 * 1024 * 1024)
/* 8, not max_align_t's 16: nothing in an arena needs long double, and
 * 16 would round a 24-byte YAML node up to 32. */
#define ARENA_ALIGN 8u

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
    a->head = NULL;
    a->used = 0;
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

void irp_arena_release(irp_arena *a)
{
    free_blocks(a->head);
    a->head = NULL;
    a->used = 0;
}

void irp_arena_reset(irp_arena *a)
{
    irp_arena_block *b = a->head;
    if (!b)
        return;
    /* The newest block is the largest; keeping it means the next round
     * of allocations reuses memory already faulted in. */
    free_blocks(b->prev);
    b->prev = NULL;
    if (b->off > b->dirty)
        b->dirty = b->off;
    b->off = 0;
    a->used = 0;
}

void irp_arena_adopt(irp_arena *dst, irp_arena *src)
{
    if (!src->head)
        return;
    irp_arena_block *oldest = src->head;
    while (oldest->prev)
        oldest = oldest->prev;
    /* Behind dst's head, so dst goes on filling the block it was in. */
    if (dst->head) {
        oldest->prev = dst->head->prev;
        dst->head->prev = src->head;
    } else {
        dst->head = src->head;
    }
    dst->used += src->used;
    src->head = NULL;
    src->used = 0;
}

static irp_arena_block *arena_grow(irp_arena *a, size_t need)
{
    size_t size = a->head ? a->head->size * 2 : ARENA_MIN_BLOCK;
    if (size > ARENA_MAX_BLOCK)
        size = ARENA_MAX_BLOCK;
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
    a->head = b;
    return b;
}

/* Carve `size` bytes at an offset aligned to `align` (a power of two). */
static void *arena_carve(irp_arena *a, size_t size, size_t align)
{
    if (size == 0)
        size = 1;
    if (size > SIZE_MAX / 2)
        return NULL;
    irp_arena_block *b = a->head;
    size_t off = b ? (b->off + align - 1) & ~(align - 1) : 0;
    if (!b || off > b->size || b->size - off < size) {
        if (a->cap && a->used + size > a->cap)
            return NULL;
        b = arena_grow(a, size);
        if (!b)
            return NULL;
        off = 0;
    }
    if (a->cap && a->used + (off - b->off) + size > a->cap)
        return NULL;
    void *p = b->data + off;
    a->used += off - b->off + size;
    b->off = off + size;
    return p;
}

void *irp_arena_alloc(irp_arena *a, size_t size)
{
    void *p = arena_carve(a, size, ARENA_ALIGN);
    /* Fresh mapped memory is already zero: writing it again would only
     * fault it in early and cost a pass over every node of the tree. */
    if (p && (size_t)((unsigned char *)p - a->head->data) < a->head->dirty)
        memset(p, 0, size);
    return p;
}

void *irp_arena_alloc_uninit(irp_arena *a, size_t size)
{
    return arena_carve(a, size, ARENA_ALIGN);
}

void *irp_arena_alloc_bytes(irp_arena *a, size_t size)
{
    return arena_carve(a, size, 1);
}

char *irp_arena_strndup(irp_arena *a, const char *s, size_t len)
{
    char *p = irp_arena_alloc_bytes(a, len + 1);
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
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
