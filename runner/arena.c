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
/* 8, not max_align_t's 16: nothing in an arena needs long double, and
 * 16 would round a 40-byte YAML node up to 48. */
#define ARENA_ALIGN 8u

struct irp_arena_block {
    irp_arena_block *prev;
    size_t size;
    size_t off;
    size_t mapped;          /* bytes mmap'd for the block, 0 if malloc'd */
    _Alignas(16) unsigned char data[];
};

void irp_arena_init(irp_arena *a, size_t cap)
{
    a->head = NULL;
    a->used = 0;
    a->cap = cap;
}

void irp_arena_release(irp_arena *a)
{
    irp_arena_block *b = a->head;
    while (b) {
        irp_arena_block *prev = b->prev;
        if (b->mapped)
            munmap(b, b->mapped);
        else
            free(b);
        b = prev;
    }
    a->head = NULL;
    a->used = 0;
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
        mapped = sizeof *b + size;
        b = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED)
            return NULL;
        madvise(b, mapped, MADV_HUGEPAGE);
    } else {
        b = malloc(sizeof *b + size);
        if (!b)
            return NULL;
    }
    b->mapped = mapped;
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
    if (p)
        memset(p, 0, size);
    return p;
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
