/* arena.h: a bump allocator for activations.
 *
 * The first pass at a new batch size may overflow into side allocations;
 * arena_reset then resizes the arena to the peak it saw, so later passes at
 * that size allocate nothing. arena_mark/arena_release give stack discipline
 * for temporaries. */
#ifndef NCSN_ARENA_H
#define NCSN_ARENA_H

#include <stddef.h>

typedef struct ArenaChunk ArenaChunk;

typedef struct {
    float *base;
    size_t cap;  /* floats in base */
    size_t used; /* logical floats in use, including side allocations */
    size_t peak;
    ArenaChunk *side; /* overflow allocations, newest first */
} Arena;

void arena_init(Arena *a);
void arena_free(Arena *a);
float *arena_alloc(Arena *a, size_t floats);   /* uninitialised */
size_t arena_mark(const Arena *a);
void arena_release(Arena *a, size_t mark);
void arena_reset(Arena *a);

#endif
