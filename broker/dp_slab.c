/*  dp_slab.c - a small-object allocator for the broker's task records. */
#include "dp_slab.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

#define ALIGN   8
#define CLASSES (DP_SLAB_MAX / ALIGN)

typedef struct s_block_t {
    struct s_block_t *next;
    size_t used;
    max_align_t data[]; /* DP_SLAB_BLOCK bytes */
} s_block_t;

typedef struct s_free_t {
    struct s_free_t *next;
} s_free_t;

struct _dp_slab_t {
    s_block_t *blocks; /* the newest first; records are carved from it */
    s_free_t *free[CLASSES + 1];
    size_t live;
};

dp_slab_t *
dp_slab_new (void)
{
    return (dp_slab_t *)calloc (1, sizeof (dp_slab_t));
}

/*  Frees every block and forgets the free lists. */
static void
s_release (dp_slab_t *self)
{
    while (self->blocks) {
        s_block_t *next = self->blocks->next;
        free (self->blocks);
        self->blocks = next;
    }
    for (size_t i = 0; i <= CLASSES; i++)
        self->free[i] = NULL;
}

void
dp_slab_destroy (dp_slab_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        s_release (*self_p);
        free (*self_p);
        *self_p = NULL;
    }
}

void *
dp_slab_alloc (dp_slab_t *self, size_t size)
{
    if (size > DP_SLAB_MAX) {
        void *big = malloc (size);
        if (big)
            self->live++;
        return big;
    }
    size_t class = (size + ALIGN - 1) / ALIGN;
    if (class == 0)
        class = 1;
    s_free_t *record = self->free[class];
    if (record)
        self->free[class] = record->next;
    else {
        size_t bytes = class * ALIGN;
        if (!self->blocks || self->blocks->used + bytes > DP_SLAB_BLOCK) {
            s_block_t *block = (s_block_t *)malloc (sizeof (s_block_t) + DP_SLAB_BLOCK);
            if (!block)
                return NULL;
            block->used = 0;
            block->next = self->blocks;
            self->blocks = block;
        }
        record = (s_free_t *)((char *)self->blocks->data + self->blocks->used);
        self->blocks->used += bytes;
    }
    self->live++;
    return record;
}

void
dp_slab_free (dp_slab_t *self, void *record, size_t size)
{
    if (!record)
        return;
    if (size > DP_SLAB_MAX)
        free (record);
    else {
        size_t class = (size + ALIGN - 1) / ALIGN;
        if (class == 0)
            class = 1;
        s_free_t *entry = (s_free_t *)record;
        entry->next = self->free[class];
        self->free[class] = entry;
    }
    assert (self->live > 0);
    /*  Nothing in use: every block but one goes back, so a drained burst
        costs no memory afterwards, and one task at a time costs no malloc. */
    if (--self->live == 0 && self->blocks) {
        s_block_t *keep = self->blocks;
        self->blocks = keep->next;
        s_release (self);
        keep->next = NULL;
        keep->used = 0;
        self->blocks = keep;
    }
}

size_t
dp_slab_live (const dp_slab_t *self)
{
    return self->live;
}
