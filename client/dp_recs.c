/*  dp_recs.c - fixed-size records for a pool's result handles. */
#include "dp_recs.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#define PLAIN_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PLAIN_MALLOC 1
#endif
#endif

#define ALIGN 16

/*  A chunk's header, at its start; records follow it. */
typedef struct s_chunk_t {
    struct s_chunk_t *next;
    size_t used; /* bytes carved so far, header included */
} s_chunk_t;

#define HEADER (((sizeof (s_chunk_t) + ALIGN - 1) / ALIGN) * ALIGN)

typedef struct s_free_t {
    struct s_free_t *next;
} s_free_t;

struct _dp_recs_t {
    size_t size;       /* bytes per record, a multiple of ALIGN */
    s_chunk_t *chunks; /* the newest first; records are carved from it */
    size_t nchunks;
    s_free_t *free;
    size_t live;
};

dp_recs_t *
dp_recs_new (size_t size)
{
    assert (size > 0 && size <= DP_RECS_CHUNK / 4);
    dp_recs_t *self = (dp_recs_t *)calloc (1, sizeof *self);
    if (self)
        self->size = (size + ALIGN - 1) / ALIGN * ALIGN;
    return self;
}

#ifndef PLAIN_MALLOC
/*  A fresh chunk of DP_RECS_CHUNK bytes, aligned to its size so that a
    huge page can back it; NULL if out of memory. */
static s_chunk_t *
s_chunk_new (bool huge)
{
    size_t span = 2 * DP_RECS_CHUNK;
    char *map =
        (char *)mmap (NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    /*  Keep the aligned middle, unmap the rest. */
    char *start = (char *)(((uintptr_t)map + DP_RECS_CHUNK - 1) & ~(uintptr_t)(DP_RECS_CHUNK - 1));
    if (start > map)
        munmap (map, (size_t)(start - map));
    char *end = start + DP_RECS_CHUNK;
    if (map + span > end)
        munmap (end, (size_t)(map + span - end));
#ifdef MADV_HUGEPAGE
    if (huge)
        madvise (start, DP_RECS_CHUNK, MADV_HUGEPAGE); /* a hint: failing is harmless */
#else
    (void)huge;
#endif
    s_chunk_t *chunk = (s_chunk_t *)start;
    chunk->next = NULL;
    chunk->used = HEADER;
    return chunk;
}
#endif

/*  Unmaps every chunk but keep (which may be NULL); keep is left the only
    one. */
static void
s_release_but (dp_recs_t *self, s_chunk_t *keep)
{
    s_chunk_t *chunk = self->chunks;
    while (chunk) {
        s_chunk_t *next = chunk->next;
        if (chunk != keep) {
            munmap (chunk, DP_RECS_CHUNK);
            self->nchunks--;
        }
        chunk = next;
    }
    self->chunks = keep;
    if (keep)
        keep->next = NULL;
}

void
dp_recs_destroy (dp_recs_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        s_release_but (*self_p, NULL);
        free (*self_p);
        *self_p = NULL;
    }
}

void *
dp_recs_alloc (dp_recs_t *self)
{
    assert (self);
#ifdef PLAIN_MALLOC
    void *plain = malloc (self->size);
    if (plain)
        self->live++;
    return plain;
#else
    s_free_t *record = self->free;
    if (record)
        self->free = record->next;
    else {
        if (!self->chunks || self->chunks->used + self->size > DP_RECS_CHUNK) {
            /*  The first chunk on ordinary pages: a pool with a few handles
                touches a few pages of it, not a 2 MiB page. */
            s_chunk_t *chunk = s_chunk_new (self->nchunks > 0);
            if (!chunk)
                return NULL;
            chunk->next = self->chunks;
            self->chunks = chunk;
            self->nchunks++;
        }
        record = (s_free_t *)((char *)self->chunks + self->chunks->used);
        self->chunks->used += self->size;
    }
    self->live++;
    return record;
#endif
}

void
dp_recs_free (dp_recs_t *self, void *record)
{
    assert (self);
    if (!record)
        return;
    assert (self->live > 0);
    self->live--;
#ifdef PLAIN_MALLOC
    free (record);
#else
    s_free_t *entry = (s_free_t *)record;
    entry->next = self->free;
    self->free = entry;
    /*  Nothing in use: every chunk but the oldest goes back, and the free
        list starts over in it. */
    if (self->live == 0 && self->chunks) {
        s_chunk_t *oldest = self->chunks;
        while (oldest->next)
            oldest = oldest->next;
        s_release_but (self, oldest);
        oldest->used = HEADER;
        self->free = NULL;
    }
#endif
}

size_t
dp_recs_live (const dp_recs_t *self)
{
    return self->live;
}

size_t
dp_recs_chunks (const dp_recs_t *self)
{
    return self->nchunks;
}
