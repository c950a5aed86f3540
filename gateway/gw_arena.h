/*  gw_arena.h - jansson's memory for one large parse, from an arena.

    A POST /invoke/batch body of 1,000 jobs parses into ~25,000 jansson
    values, keys and strings, each its own malloc, and as many frees when
    the tree is dropped: malloc and free took about a quarter of the
    gateway's CPU on that path.  While a thread has entered an arena,
    jansson's allocations on that thread come from the arena's chunks (a
    pointer bump), and frees of that memory do nothing; the arena gives
    everything back at once when destroyed.

    jansson has one allocator for the whole process (json_set_alloc_funcs):
    gw_arena_install sets ours, which passes to malloc and free whenever
    the calling thread has not entered an arena, so every other use of
    jansson (and the strings json_dumps returns, which callers free with
    free()) stays as it was.  Install once, before other threads use
    jansson; without it, arenas are still safe and simply not used.

    The rule for callers: a value made inside an arena must be dropped
    (json_decref) inside the same arena, on the same thread, and nothing
    made inside may outlive it; make what must outlive it (copies, lists
    handed on) with the arena left.  */
#ifndef GW_ARENA_H
#define GW_ARENA_H

#include <stdbool.h>
#include <stddef.h>

typedef struct _gw_arena_t gw_arena_t;

//  Route jansson's allocations through gw_arena (json_set_alloc_funcs).
//  Call once at start, before threads use jansson.
void gw_arena_install (void);

//  A new arena whose first chunk holds about hint bytes.  NULL if out of
//  memory.
gw_arena_t *gw_arena_new (size_t hint);

//  Free every chunk; *self_p becomes NULL.  Must not be entered.
void gw_arena_destroy (gw_arena_t **self_p);

//  From now until gw_arena_leave, jansson's allocations on this thread
//  come from self.  Not nested: one arena per thread at a time.
void gw_arena_enter (gw_arena_t *self);
void gw_arena_leave (gw_arena_t *self);

//  Bytes handed out so far (for tests and sizing).
size_t gw_arena_used (const gw_arena_t *self);

//  Self test.
void gw_arena_test (bool verbose);

#endif
