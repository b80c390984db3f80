/*  dp_taskq.c - a priority queue of tasks. */
#include "dp_taskq.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_CAPACITY 64

void
dp_taskq_init (dp_taskq_t *self)
{
    memset (self, 0, sizeof *self);
}

void
dp_taskq_fini (dp_taskq_t *self)
{
    for (uint32_t i = 0; i < self->size; i++)
        self->heap[i]->index = DP_TASKQ_NONE;
    free (self->heap);
    memset (self, 0, sizeof *self);
}

bool
dp_taskq_before (const dp_taskq_item_t *a, const dp_taskq_item_t *b)
{
    if (a->priority != b->priority)
        return a->priority > b->priority;
    return a->order < b->order;
}

static void
s_place (dp_taskq_t *self, uint32_t at, dp_taskq_item_t *item)
{
    self->heap[at] = item;
    item->index = at;
}

/*  Moves the item at position at up until its parent comes before it. */
static void
s_sift_up (dp_taskq_t *self, uint32_t at)
{
    dp_taskq_item_t *item = self->heap[at];
    while (at > 0) {
        uint32_t parent = (at - 1) / 2;
        if (!dp_taskq_before (item, self->heap[parent]))
            break;
        s_place (self, at, self->heap[parent]);
        at = parent;
    }
    s_place (self, at, item);
}

/*  Moves the item at position at down until it comes before its children. */
static void
s_sift_down (dp_taskq_t *self, uint32_t at)
{
    dp_taskq_item_t *item = self->heap[at];
    for (;;) {
        uint32_t child = 2 * at + 1;
        if (child >= self->size)
            break;
        if (child + 1 < self->size && dp_taskq_before (self->heap[child + 1], self->heap[child]))
            child++;
        if (!dp_taskq_before (self->heap[child], item))
            break;
        s_place (self, at, self->heap[child]);
        at = child;
    }
    s_place (self, at, item);
}

int
dp_taskq_push (dp_taskq_t *self, dp_taskq_item_t *item)
{
    assert (item->index == DP_TASKQ_NONE);
    if (self->size == self->capacity) {
        uint32_t capacity = self->capacity ? self->capacity * 2 : INITIAL_CAPACITY;
        dp_taskq_item_t **heap =
            (dp_taskq_item_t **)realloc (self->heap, capacity * sizeof (dp_taskq_item_t *));
        if (!heap)
            return -1;
        self->heap = heap;
        self->capacity = capacity;
    }
    self->heap[self->size] = item;
    item->index = self->size++;
    s_sift_up (self, item->index);
    return 0;
}

dp_taskq_item_t *
dp_taskq_peek (const dp_taskq_t *self)
{
    return self->size ? self->heap[0] : NULL;
}

dp_taskq_item_t *
dp_taskq_pop (dp_taskq_t *self)
{
    if (self->size == 0)
        return NULL;
    dp_taskq_item_t *first = self->heap[0];
    dp_taskq_remove (self, first);
    return first;
}

void
dp_taskq_remove (dp_taskq_t *self, dp_taskq_item_t *item)
{
    uint32_t at = item->index;
    assert (at < self->size && self->heap[at] == item);
    item->index = DP_TASKQ_NONE;
    uint32_t last = --self->size;
    if (at != last) {
        /*  Fill the hole with the last item and restore order around it. */
        s_place (self, at, self->heap[last]);
        if (at > 0 && dp_taskq_before (self->heap[at], self->heap[(at - 1) / 2]))
            s_sift_up (self, at);
        else
            s_sift_down (self, at);
    }
    /*  Shrink when mostly empty, so a drained burst gives its memory back. */
    if (self->capacity > INITIAL_CAPACITY && self->size < self->capacity / 8) {
        uint32_t capacity = self->capacity / 2;
        dp_taskq_item_t **heap =
            (dp_taskq_item_t **)realloc (self->heap, capacity * sizeof (dp_taskq_item_t *));
        if (heap) {
            self->heap = heap;
            self->capacity = capacity;
        }
    }
}
