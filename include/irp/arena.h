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

typedef struct irp_arena_block irp_arena_block;

typedef struct irp_arena {
    irp_arena_block *head;   /* current block; older blocks chained */
    size_t used;             /* bytes handed out, all blocks */
    size_t cap;              /* 0 = no cap */
} irp_arena;

#define IRP_ARENA_INIT { NULL, 0, 0 }

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

/* Zeroed memory, or NULL when out of memory or past the cap. */
void *irp_arena_alloc(irp_arena *a, size_t size);
/* Aligned as above but uninitialised: for an object written whole at
 * once, where zeroing first is a second pass over it. */
void *irp_arena_alloc_uninit(irp_arena *a, size_t size);
/* Unaligned, uninitialised bytes: for strings and byte buffers, where
 * alignment padding and zeroing are waste. */
void *irp_arena_alloc_bytes(irp_arena *a, size_t size);
/* Copy of s[0..len) with a terminating NUL; NULL on failure. */
char *irp_arena_strndup(irp_arena *a, const char *s, size_t len);
char *irp_arena_strdup(irp_arena *a, const char *s);
/* printf into the arena; NULL on failure. */
char *irp_arena_printf(irp_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
