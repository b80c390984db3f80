/*  dp_taskq.h - a priority queue of tasks: highest priority first, and
    first in, first out among equal priorities.

    Tasks mostly come in order: each new one is the last of its priority.
    So each of a few priorities in use has a lane, a ring of pointers in
    arrival order, where pushing appends and taking the first is O(1). An
    item that would break a lane's order (a task queued again after its
    worker died keeps its place from before) or finds no lane (more
    priorities in use than lanes) goes to a binary heap beside them. The
    first item is the best of the lanes' heads and the heap's top.

    Items are embedded in the caller's structs (the broker's task) and each
    remembers where it sits, so that removing any item (a cancelled task)
    needs no search: from a lane it leaves a hole, skipped once it reaches
    the head; from the heap, O(log n). The queue owns nothing: it orders
    items the caller keeps alive.
*/
#ifndef DP_TASKQ_H_INCLUDED
#define DP_TASKQ_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DP_TASKQ_NONE  UINT32_MAX /* index of an item in no queue */
#define DP_TASKQ_LANES 4          /* priorities with a lane of their own at once */

/*  Embed one in each queued struct; set priority and order before push. */
typedef struct {
    uint64_t order;   /* among equals, lower comes out first */
    int32_t priority; /* higher comes out first */
    uint32_t index;   /* where it sits (heap or lane), or DP_TASKQ_NONE */
} dp_taskq_item_t;

/*  The items of one priority, in order, at ring positions head to tail
    (counting on past the ring's size; a position's slot is pos & mask).
    A NULL slot is the hole of an item removed. */
typedef struct {
    dp_taskq_item_t **ring; /* [mask + 1], or NULL */
    uint32_t mask;
    uint32_t head;
    uint32_t tail;
    uint32_t live; /* items, not counting holes */
    int32_t priority;
    uint64_t last; /* order of the last item appended */
} dp_taskq_lane_t;

typedef struct {
    dp_taskq_item_t **heap;
    uint32_t size; /* items in the heap */
    uint32_t capacity;
    uint32_t count; /* items in all */
    uint32_t nlanes;
    dp_taskq_lane_t lanes[DP_TASKQ_LANES];
} dp_taskq_t;

void
dp_taskq_init (dp_taskq_t *self);

/*  Frees the queue's arrays (not the items), which are left in no queue. */
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
    return self->count;
}

#endif
