/*  gw_arena.c - jansson's memory for one large parse, from an arena
    (gw_arena.h).  */
#include "gw_arena.h"
#include "bm_selftest.h"
#include "bm_proto.h"

#include <jansson.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Every allocation is rounded up to this, so that any jansson value
//  (pointers, 64-bit integers, doubles) is aligned as malloc's would be.
#define GW_ARENA_ALIGN          16
//  The first chunk at least, and the largest a later chunk grows to
//  unless one allocation needs more: a chunk's size doubles from one to
//  the next, so a body of any size takes a handful of chunks (the free
//  check walks them).
#define GW_ARENA_MIN_CHUNK      (16 * 1024)
#define GW_ARENA_MAX_CHUNK      (8 * 1024 * 1024)

typedef struct _s_chunk_t s_chunk_t;
struct _s_chunk_t {
    s_chunk_t *next;            //  The chunk filled before this one
    size_t size;                //  Bytes of data
    size_t used;                //  Bytes handed out
    _Alignas (GW_ARENA_ALIGN) char data [];
};

struct _gw_arena_t {
    s_chunk_t *chunks;          //  The one being filled first
    size_t next_size;           //  The next chunk's size
    size_t used;                //  Bytes handed out in all
};

//  The arena the calling thread has entered, or NULL.
static __thread gw_arena_t *t_arena;

//  Add a chunk of at least size bytes in front; false if out of memory.
static bool
s_chunk_add (gw_arena_t *self, size_t size)
{
    size_t bytes = self->next_size > size ? self->next_size : size;
    s_chunk_t *chunk = (s_chunk_t *) malloc (sizeof (s_chunk_t) + bytes);
    if (!chunk)
        return false;
    chunk->next = self->chunks;
    chunk->size = bytes;
    chunk->used = 0;
    self->chunks = chunk;
    if (self->next_size < GW_ARENA_MAX_CHUNK)
        self->next_size *= 2;
    return true;
}

static void *
s_alloc (gw_arena_t *self, size_t size)
{
    size = (size + GW_ARENA_ALIGN - 1) & ~(size_t) (GW_ARENA_ALIGN - 1);
    s_chunk_t *chunk = self->chunks;
    if (!chunk || chunk->size - chunk->used < size) {
        if (!s_chunk_add (self, size))
            return NULL;
        chunk = self->chunks;
    }
    void *ptr = chunk->data + chunk->used;
    chunk->used += size;
    self->used += size;
    return ptr;
}

//  Is ptr inside one of self's chunks?
static bool
s_owns (const gw_arena_t *self, const void *ptr)
{
    uintptr_t at = (uintptr_t) ptr;
    for (const s_chunk_t *chunk = self->chunks; chunk; chunk = chunk->next)
        if (at >= (uintptr_t) chunk->data && at < (uintptr_t) chunk->data + chunk->size)
            return true;
    return false;
}

//  jansson's allocator: the entered arena's, else malloc's.
static void *
s_json_malloc (size_t size)
{
    gw_arena_t *arena = t_arena;
    return arena ? s_alloc (arena, size) : malloc (size);
}

//  jansson's free: nothing for the entered arena's memory (it goes with
//  the arena), free() for the rest.
static void
s_json_free (void *ptr)
{
    gw_arena_t *arena = t_arena;
    if (arena && s_owns (arena, ptr))
        return;
    free (ptr);
}

void
gw_arena_install (void)
{
    json_set_alloc_funcs (s_json_malloc, s_json_free);
}

gw_arena_t *
gw_arena_new (size_t hint)
{
    gw_arena_t *self = (gw_arena_t *) calloc (1, sizeof (gw_arena_t));
    if (!self)
        return NULL;
    self->next_size = hint < GW_ARENA_MIN_CHUNK ? GW_ARENA_MIN_CHUNK
                    : hint > GW_ARENA_MAX_CHUNK ? GW_ARENA_MAX_CHUNK : hint;
    return self;
}

void
gw_arena_destroy (gw_arena_t **self_p)
{
    if (*self_p) {
        gw_arena_t *self = *self_p;
        if (t_arena == self)
            t_arena = NULL;             //  Left entered by mistake
        s_chunk_t *chunk = self->chunks;
        while (chunk) {
            s_chunk_t *next = chunk->next;
            free (chunk);
            chunk = next;
        }
        free (self);
        *self_p = NULL;
    }
}

void
gw_arena_enter (gw_arena_t *self)
{
    t_arena = self;
}

void
gw_arena_leave (gw_arena_t *self)
{
    if (t_arena == self)
        t_arena = NULL;
}

size_t
gw_arena_used (const gw_arena_t *self)
{
    return self->used;
}

//  --------------------------------------------------------------------------
//  Self test

#define CHECK(cond) BM_CHECK (cond)

void
gw_arena_test (bool verbose)
{
    if (verbose)
        printf (" * gw_arena: ");
    gw_arena_install ();

    //  A value made outside any arena is jansson's as before, and so is
    //  the text json_dumps returns (freed with free()).
    json_t *outside = json_pack ("{s:s,s:[i,i]}", "a", "b", "c", 1, 2);
    CHECK (outside);

    //  A parse inside: its memory comes from the arena, dropping it frees
    //  nothing one by one, and it reads as any parse does.
    gw_arena_t *arena = gw_arena_new (0);
    CHECK (arena && gw_arena_used (arena) == 0);
    gw_arena_enter (arena);
    const char *text = "[{\"botType\":\"python\",\"payload\":{\"n\":1,\"s\":\"x\"}},[1,2.5,null],\"s\"]";
    json_t *root = json_loads (text, JSON_REJECT_DUPLICATES, NULL);
    gw_arena_leave (arena);
    CHECK (root && json_array_size (root) == 3);
    size_t used = gw_arena_used (arena);
    CHECK (used > 0);
    CHECK (streq (json_string_value (json_object_get (json_array_get (root, 0), "botType")),
                  "python"));
    CHECK (json_real_value (json_array_get (json_array_get (root, 1), 1)) == 2.5);
    //  Made with the arena left: ordinary memory, which outlives it.
    json_t *copy = json_deep_copy (json_array_get (root, 0));
    CHECK (gw_arena_used (arena) == used);
    //  Every allocation is aligned as malloc's.
    gw_arena_enter (arena);
    for (size_t size = 1; size < 100; size += 7) {
        json_t *value = json_stringn ("0123456789abcdef", size % 17);
        CHECK (value && ((uintptr_t) value) % GW_ARENA_ALIGN == 0);
        json_decref (value);
    }
    //  Larger than a chunk: a chunk of its own; many small ones: new
    //  chunks as they fill.
    char *big = (char *) malloc (3 * GW_ARENA_MIN_CHUNK);
    CHECK (big);
    memset (big, 'x', 3 * GW_ARENA_MIN_CHUNK - 1);
    big [3 * GW_ARENA_MIN_CHUNK - 1] = 0;
    json_t *long_string = json_string (big);
    json_t *many = json_array ();
    for (int i = 0; i < 5000; i++)
        json_array_append_new (many, json_integer (i));
    CHECK (long_string && json_string_length (long_string) == 3 * GW_ARENA_MIN_CHUNK - 1);
    CHECK (json_array_size (many) == 5000 && json_integer_value (json_array_get (many, 4999)) == 4999);
    CHECK (gw_arena_used (arena) > used + 3 * GW_ARENA_MIN_CHUNK);
    //  A value from outside, dropped inside, is freed as before.
    json_decref (outside);
    json_decref (long_string);
    json_decref (many);
    json_decref (root);
    gw_arena_leave (arena);
    gw_arena_destroy (&arena);
    gw_arena_destroy (&arena);          //  Idempotent
    CHECK (arena == NULL);
    free (big);

    //  The copy outlived the arena, and dumps as the body said.
    char *dumped = json_dumps (copy, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK (dumped && streq (dumped, "{\"botType\":\"python\",\"payload\":{\"n\":1,\"s\":\"x\"}}"));
    free (dumped);
    json_decref (copy);

    //  Destroyed while entered: the thread is back on malloc.
    arena = gw_arena_new (1 << 20);
    gw_arena_enter (arena);
    gw_arena_destroy (&arena);
    json_t *after = json_string ("after");
    CHECK (after && streq (json_string_value (after), "after"));
    json_decref (after);

    if (verbose)
        printf ("OK\n");
}
