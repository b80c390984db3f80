/*  dp_taskq.c - a priority queue of tasks: lanes of arrival order, and a
    heap for the rest. */
#include "dp_taskq.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_CAPACITY 64
#define LANE_SLOTS       64          /* a lane's first ring */
#define LANE_KEEP        1024        /* an emptied lane keeps a ring up to this */
#define LANE_BIT         0x80000000u /* index: in a lane, not the heap */
#define LANE_SHIFT       28          /* index: the lane's number, above the position */
#define POS_MASK         0x0fffffffu /* index: the position, modulo the largest ring */
#define RING_MAX         (POS_MASK + 1u)

_Static_assert(DP_TASKQ_LANES <= 4, "lane numbers fit in two bits of an index");

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
    for (uint32_t n = 0; n < self->nlanes; n++) {
        dp_taskq_lane_t *lane = &self->lanes[n];
        for (uint32_t pos = lane->head; pos != lane->tail; pos++) {
            dp_taskq_item_t *item = lane->ring[pos & lane->mask];
            if (item)
                item->index = DP_TASKQ_NONE;
        }
        free (lane->ring);
    }
    memset (self, 0, sizeof *self);
}

bool
dp_taskq_before (const dp_taskq_item_t *a, const dp_taskq_item_t *b)
{
    if (a->priority != b->priority)
        return a->priority > b->priority;
    return a->order < b->order;
}

/*  ---------------------------------------------------------------------------
    The heap.
*/
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

static int
s_heap_push (dp_taskq_t *self, dp_taskq_item_t *item)
{
    if (self->size == self->capacity) {
        uint32_t capacity = self->capacity ? self->capacity * 2 : INITIAL_CAPACITY;
        if (capacity > LANE_BIT)
            return -1; /* its positions would look like a lane's */
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

static void
s_heap_remove (dp_taskq_t *self, dp_taskq_item_t *item)
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

/*  ---------------------------------------------------------------------------
    The lanes.
*/

/*  The lane of priority, or one made or freed for it; NULL if every lane
    holds items of another priority. */
static dp_taskq_lane_t *
s_lane_for (dp_taskq_t *self, int32_t priority)
{
    dp_taskq_lane_t *empty = NULL;
    for (uint32_t n = 0; n < self->nlanes; n++) {
        dp_taskq_lane_t *lane = &self->lanes[n];
        if (lane->priority == priority)
            return lane;
        if (lane->live == 0 && !empty)
            empty = lane;
    }
    if (self->nlanes < DP_TASKQ_LANES)
        empty = &self->lanes[self->nlanes++];
    if (empty) {
        empty->priority = priority;
        empty->head = empty->tail = 0;
    }
    return empty;
}

/*  Gives lane a ring of slots slots, holding its items at the positions
    they had (compact false) or, compact, moved up to close the holes.
    Returns 0, or -1 if out of memory (the lane is unchanged). */
static int
s_lane_resize (dp_taskq_t *self, dp_taskq_lane_t *lane, uint32_t slots, bool compact)
{
    dp_taskq_item_t **ring = (dp_taskq_item_t **)malloc (slots * sizeof (dp_taskq_item_t *));
    if (!ring)
        return -1;
    uint32_t mask = slots - 1;
    uint32_t number = (uint32_t)(lane - self->lanes);
    uint32_t to = lane->head;
    for (uint32_t pos = lane->head; pos != lane->tail; pos++) {
        dp_taskq_item_t *item = lane->ring[pos & lane->mask];
        if (!compact) {
            ring[pos & mask] = item;
            continue;
        }
        if (!item)
            continue;
        ring[to & mask] = item;
        item->index = LANE_BIT | number << LANE_SHIFT | (to & POS_MASK);
        to++;
    }
    if (compact)
        lane->tail = to;
    free (lane->ring);
    lane->ring = ring;
    lane->mask = mask;
    return 0;
}

/*  Appends item (the last of the lane's order) to lane. Returns 0, or -1
    if the lane cannot take it (out of memory, or at its largest). */
static int
s_lane_append (dp_taskq_t *self, dp_taskq_lane_t *lane, dp_taskq_item_t *item)
{
    uint32_t used = lane->tail - lane->head;
    if (!lane->ring) {
        if (s_lane_resize (self, lane, LANE_SLOTS, false))
            return -1;
    } else if (used == lane->mask + 1) {
        /*  Full: half of it holes, it is compacted in place of growing. */
        bool compact = lane->live <= used / 2;
        uint32_t slots = compact ? used : used * 2;
        if (slots > RING_MAX || s_lane_resize (self, lane, slots, compact))
            return -1;
    }
    uint32_t pos = lane->tail++;
    lane->ring[pos & lane->mask] = item;
    item->index = LANE_BIT | (uint32_t)(lane - self->lanes) << LANE_SHIFT | (pos & POS_MASK);
    lane->live++;
    lane->last = item->order;
    return 0;
}

static void
s_lane_remove (dp_taskq_t *self, dp_taskq_item_t *item)
{
    dp_taskq_lane_t *lane = &self->lanes[(item->index >> LANE_SHIFT) & 3];
    uint32_t slot = item->index & POS_MASK & lane->mask;
    assert (lane->live > 0 && lane->ring[slot] == item);
    lane->ring[slot] = NULL;
    item->index = DP_TASKQ_NONE;
    if (--lane->live == 0) {
        lane->head = lane->tail = 0;
        if (lane->mask + 1 > LANE_KEEP) {
            free (lane->ring);
            lane->ring = NULL;
            lane->mask = 0;
        }
        return;
    }
    /*  The head is always an item: holes behind it are passed now. */
    while (!lane->ring[lane->head & lane->mask])
        lane->head++;
    /*  Shrink when mostly empty, so a drained burst gives its memory back
        (out of memory, it stays as it is). */
    uint32_t slots = lane->mask + 1;
    if (slots > LANE_KEEP && lane->tail - lane->head < slots / 8)
        s_lane_resize (self, lane, slots / 2, false);
}

/*  ---------------------------------------------------------------------------
    The queue.
*/
int
dp_taskq_push (dp_taskq_t *self, dp_taskq_item_t *item)
{
    assert (item->index == DP_TASKQ_NONE);
    dp_taskq_lane_t *lane = s_lane_for (self, item->priority);
    if (!lane || (lane->live > 0 && item->order <= lane->last) ||
        s_lane_append (self, lane, item) != 0) {
        if (s_heap_push (self, item) != 0)
            return -1;
    }
    self->count++;
    return 0;
}

dp_taskq_item_t *
dp_taskq_peek (const dp_taskq_t *self)
{
    dp_taskq_item_t *best = self->size ? self->heap[0] : NULL;
    for (uint32_t n = 0; n < self->nlanes; n++) {
        const dp_taskq_lane_t *lane = &self->lanes[n];
        if (lane->live == 0)
            continue;
        dp_taskq_item_t *head = lane->ring[lane->head & lane->mask];
        if (!best || dp_taskq_before (head, best))
            best = head;
    }
    return best;
}

dp_taskq_item_t *
dp_taskq_pop (dp_taskq_t *self)
{
    dp_taskq_item_t *first = dp_taskq_peek (self);
    if (first)
        dp_taskq_remove (self, first);
    return first;
}

void
dp_taskq_remove (dp_taskq_t *self, dp_taskq_item_t *item)
{
    assert (item->index != DP_TASKQ_NONE);
    if (item->index & LANE_BIT)
        s_lane_remove (self, item);
    else
        s_heap_remove (self, item);
    self->count--;
}
