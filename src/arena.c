/* arena.c: see arena.h. Sizes are rounded to 16 floats (64 bytes). */
#include "ncsn/arena.h"

#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"

struct ArenaChunk {
    ArenaChunk *next;
    size_t at; /* logical offset where this chunk starts */
    float *data;
};

void arena_init(Arena *a) { memset(a, 0, sizeof *a); }

void arena_free(Arena *a)
{
    arena_release(a, 0);
    free(a->base);
    memset(a, 0, sizeof *a);
}

float *arena_alloc(Arena *a, size_t floats)
{
    floats = (floats + 15) & ~(size_t)15;
    size_t at = a->used;
    a->used += floats;
    if (a->used > a->peak) a->peak = a->used;
    if (a->used <= a->cap) return a->base + at;
    ArenaChunk *c = xmalloc(sizeof *c);
    c->data = xmalloc(floats * sizeof(float));
    c->at = at;
    c->next = a->side;
    a->side = c;
    return c->data;
}

size_t arena_mark(const Arena *a) { return a->used; }

void arena_release(Arena *a, size_t mark)
{
    while (a->side && a->side->at >= mark) {
        ArenaChunk *c = a->side;
        a->side = c->next;
        free(c->data);
        free(c);
    }
    a->used = mark;
}

void arena_reset(Arena *a)
{
    arena_release(a, 0);
    if (a->peak > a->cap) {
        free(a->base);
        a->base = xmalloc(a->peak * sizeof(float));
        a->cap = a->peak;
    }
}
