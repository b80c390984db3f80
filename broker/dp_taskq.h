/*  dp_taskq.h - a priority queue of tasks: highest priority first, and
    first in, first out among equal priorities.

    A binary heap of pointers to items embedded in the caller's structs (the
    broker's task), each remembering its own position, so that removing any
    item (a cancelled task) is O(log n) and needs no search. The queue owns
    nothing: it orders items the caller keeps alive.
*/
#ifndef DP_TASKQ_H_INCLUDED
#define DP_TASKQ_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DP_TASKQ_NONE UINT32_MAX /* index of an item in no queue */

/*  Embed one in each queued struct; set priority and order before push. */
typedef struct {
    uint64_t order;   /* among equals, lower comes out first */
    int32_t priority; /* higher comes out first */
    uint32_t index;   /* position in the heap, or DP_TASKQ_NONE */
} dp_taskq_item_t;

typedef struct {
    dp_taskq_item_t **heap;
    uint32_t size;
    uint32_t capacity;
} dp_taskq_t;

void
dp_taskq_init (dp_taskq_t *self);

/*  Frees the heap array (not the items). */
void
dp_taskq_fini (dp_taskq_t *self);

/*  Adds item (which must be in no queue). Returns 0, or -1 if out of
    memory, leaving the queue unchanged. */
int
dp_taskq_push (dp_taskq_t *self, dp_taskq_item_t *item);

/*  The first item, or NULL if empty; it stays queued. */
dp_taskq_item_t *
dp_taskq_peek (const dp_taskq_t *self);

/*  Removes and returns the first item, or NULL if empty. */
dp_taskq_item_t *
dp_taskq_pop (dp_taskq_t *self);

/*  Removes item, which must be in this queue. */
void
dp_taskq_remove (dp_taskq_t *self, dp_taskq_item_t *item);

/*  True if a comes out before b. */
bool
dp_taskq_before (const dp_taskq_item_t *a, const dp_taskq_item_t *b);

static inline uint32_t
dp_taskq_size (const dp_taskq_t *self)
{
    return self->size;
}

#endif
