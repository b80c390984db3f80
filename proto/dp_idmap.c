/*  dp_idmap.c - a hash table from 64-bit ids to pointers.

    Robin Hood linear probing: an entry being placed takes the slot of any
    entry it meets that sits nearer its own home, and that entry moves on.
    So along a run the entries sit in the order of their homes, and both
    searches and deletions stop early:
    - a search stops at an empty slot, or at an entry nearer its home than
      the searched id would be there (the id would have taken that slot);
    - a deletion pulls back the entries after the hole until it meets an
      empty slot or an entry at its home.

    A sequential map's home for id is id itself, modulo the slot count:
    while the live ids span fewer ids than there are slots, each sits at its
    home and neighbours in id are neighbours in memory. Ids that do not
    spread so (a pattern, or a hostile peer's choice) make long runs; the
    first entry placed PROBE_LIMIT slots from home turns the map to mixing
    until it is empty again: homes then come from a keyed hash of the id.
*/
#include "dp_idmap.h"

#include "dp_util.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>

#define INITIAL_SLOTS 16
#define PROBE_LIMIT   64 /* a sequential map placing an entry this far turns mixing */

typedef struct {
    uint64_t id;
    void *value; /* NULL marks an empty slot */
} slot_t;

struct _dp_idmap_t {
    slot_t *slots;
    size_t mask; /* slot count - 1; the count is a power of two */
    size_t size;
    bool sequential; /* made so: homes by the id's low bits while not mixing */
    bool mixing;     /* homes by s_hash; else by the id's low bits */
    uint64_t seed;   /* the hash's key, drawn once the map mixes */
};

/*  splitmix64's finalizer: every bit of the id reaches every bit. */
static inline uint64_t
s_hash (uint64_t id)
{
    id ^= id >> 30;
    id *= 0xbf58476d1ce4e5b9ULL;
    id ^= id >> 27;
    id *= 0x94d049bb133111ebULL;
    id ^= id >> 31;
    return id;
}

static inline size_t
s_home (const dp_idmap_t *self, uint64_t id)
{
    if (self->mixing)
        id = s_hash (id ^ self->seed);
    return (size_t)id & self->mask;
}

/*  How far slot i is from the home of the id it holds. */
static inline size_t
s_dist (const dp_idmap_t *self, size_t i)
{
    return (i - s_home (self, self->slots[i].id)) & self->mask;
}

static dp_idmap_t *
s_new (bool mixing)
{
    dp_idmap_t *self = (dp_idmap_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->slots = (slot_t *)calloc (INITIAL_SLOTS, sizeof (slot_t));
    if (!self->slots) {
        free (self);
        return NULL;
    }
    self->mask = INITIAL_SLOTS - 1;
    self->sequential = !mixing;
    self->mixing = mixing;
    if (mixing)
        dp_random_bytes (&self->seed, sizeof self->seed);
    return self;
}

dp_idmap_t *
dp_idmap_new (void)
{
    return s_new (true);
}

dp_idmap_t *
dp_idmap_new_sequential (void)
{
    return s_new (false);
}

void
dp_idmap_destroy (dp_idmap_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_idmap_t *self = *self_p;
        free (self->slots);
        free (self);
        *self_p = NULL;
    }
}

/*  Looks for id from its home. Returns the index of its slot (*found
    true), or of the slot where it belongs (*found false): an empty one, or
    one whose entry sits nearer its home than id would; *dist is id's
    distance from home there. */
static size_t
s_probe (const dp_idmap_t *self, uint64_t id, bool *found, size_t *dist)
{
    size_t i = s_home (self, id);
    size_t d = 0;
    /*  Ends: the map is never full. */
    for (;;) {
        const slot_t *slot = &self->slots[i];
        if (!slot->value || s_dist (self, i) < d) {
            *found = false;
            break;
        }
        if (slot->id == id) {
            *found = true;
            break;
        }
        i = (i + 1) & self->mask;
        d++;
    }
    *dist = d;
    return i;
}

/*  Puts (id, value), which is not in the map, at slot i where it belongs at
    distance d, moving the entries it displaces on. Returns the farthest
    distance from home at which it left an entry. */
static size_t
s_place_at (dp_idmap_t *self, size_t i, size_t d, uint64_t id, void *value)
{
    size_t farthest = d;
    for (;;) {
        slot_t *slot = &self->slots[i];
        if (!slot->value) {
            slot->id = id;
            slot->value = value;
            return farthest > d ? farthest : d;
        }
        size_t there = s_dist (self, i);
        if (there < d) {
            slot_t moved = *slot;
            slot->id = id;
            slot->value = value;
            if (d > farthest)
                farthest = d;
            id = moved.id;
            value = moved.value;
            d = there;
        }
        i = (i + 1) & self->mask;
        d++;
    }
}

static size_t
s_place (dp_idmap_t *self, uint64_t id, void *value)
{
    bool found;
    size_t d;
    size_t i = s_probe (self, id, &found, &d);
    assert (!found);
    return s_place_at (self, i, d, id, value);
}

/*  Moves every entry into a new array of count slots, homed by mixing or
    not. Returns 0, or -1 if out of memory (the map is unchanged). */
static int
s_rebuild (dp_idmap_t *self, size_t count, bool mixing)
{
    slot_t *slots = (slot_t *)calloc (count, sizeof (slot_t));
    if (!slots)
        return -1;
    slot_t *old = self->slots;
    size_t old_count = self->mask + 1;
    self->slots = slots;
    self->mask = count - 1;
    if (mixing && !self->mixing)
        dp_random_bytes (&self->seed, sizeof self->seed);
    self->mixing = mixing;
    for (size_t i = 0; i < old_count; i++)
        if (old[i].value)
            s_place (self, old[i].id, old[i].value);
    free (old);
    return 0;
}

int
dp_idmap_put (dp_idmap_t *self, uint64_t id, void *value)
{
    assert (self);
    assert (value);
    bool found;
    size_t d;
    size_t i = s_probe (self, id, &found, &d);
    if (found) {
        self->slots[i].value = value;
        return 0;
    }
    if ((self->size + 1) * 4 > (self->mask + 1) * 3) {
        if (s_rebuild (self, (self->mask + 1) * 2, self->mixing))
            return -1;
        i = s_probe (self, id, &found, &d);
    }
    size_t farthest = s_place_at (self, i, d, id, value);
    self->size++;
    /*  If it cannot mix (out of memory), it goes on as it is: slower, not
        wrong. */
    if (farthest >= PROBE_LIMIT && !self->mixing)
        s_rebuild (self, self->mask + 1, true);
    return 0;
}

void *
dp_idmap_get (const dp_idmap_t *self, uint64_t id)
{
    assert (self);
    bool found;
    size_t d;
    size_t i = s_probe (self, id, &found, &d);
    return found ? self->slots[i].value : NULL;
}

void *
dp_idmap_remove (dp_idmap_t *self, uint64_t id)
{
    assert (self);
    bool found;
    size_t d;
    size_t hole = s_probe (self, id, &found, &d);
    if (!found)
        return NULL;
    void *value = self->slots[hole].value;
    /*  Backward shift: each following entry away from its home moves one
        slot nearer it. */
    for (;;) {
        size_t next = (hole + 1) & self->mask;
        if (!self->slots[next].value || s_dist (self, next) == 0)
            break;
        self->slots[hole] = self->slots[next];
        hole = next;
    }
    self->slots[hole].value = NULL;
    /*  Emptied, a sequential map that turned mixing starts over as made:
        its ids may spread again. */
    if (--self->size == 0 && self->sequential)
        self->mixing = false;
    return value;
}

size_t
dp_idmap_size (const dp_idmap_t *self)
{
    return self->size;
}

bool
dp_idmap_mixing (const dp_idmap_t *self)
{
    return self->mixing;
}

void
dp_idmap_foreach (const dp_idmap_t *self, void (*fn) (uint64_t id, void *value, void *arg),
                  void *arg)
{
    for (size_t i = 0; i <= self->mask; i++)
        if (self->slots[i].value)
            fn (self->slots[i].id, self->slots[i].value, arg);
}
