/*  dp_idmap.c - a hash table from 64-bit ids to pointers. */
#include "dp_idmap.h"

#include <assert.h>
#include <stdlib.h>

#define INITIAL_SLOTS 16

typedef struct {
    uint64_t id;
    void *value; /* NULL marks an empty slot */
} slot_t;

struct _dp_idmap_t {
    slot_t *slots;
    size_t mask; /* slot count - 1; the count is a power of two */
    size_t size;
};

/*  splitmix64's finalizer: sequential ids spread over the whole table. */
static size_t
s_hash (uint64_t id)
{
    id ^= id >> 30;
    id *= 0xbf58476d1ce4e5b9ULL;
    id ^= id >> 27;
    id *= 0x94d049bb133111ebULL;
    id ^= id >> 31;
    return (size_t)id;
}

dp_idmap_t *
dp_idmap_new (void)
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
    return self;
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

/*  The slot holding id, or the empty slot where it would go. */
static slot_t *
s_find (const dp_idmap_t *self, uint64_t id)
{
    size_t i = s_hash (id) & self->mask;
    while (self->slots[i].value && self->slots[i].id != id)
        i = (i + 1) & self->mask;
    return &self->slots[i];
}

static int
s_grow (dp_idmap_t *self)
{
    size_t old_count = self->mask + 1;
    slot_t *old = self->slots;
    slot_t *slots = (slot_t *)calloc (old_count * 2, sizeof (slot_t));
    if (!slots)
        return -1;
    self->slots = slots;
    self->mask = old_count * 2 - 1;
    for (size_t i = 0; i < old_count; i++)
        if (old[i].value)
            *s_find (self, old[i].id) = old[i];
    free (old);
    return 0;
}

int
dp_idmap_put (dp_idmap_t *self, uint64_t id, void *value)
{
    assert (self);
    assert (value);
    slot_t *slot = s_find (self, id);
    if (slot->value) {
        slot->value = value;
        return 0;
    }
    if ((self->size + 1) * 4 > (self->mask + 1) * 3) {
        if (s_grow (self))
            return -1;
        slot = s_find (self, id);
    }
    slot->id = id;
    slot->value = value;
    self->size++;
    return 0;
}

void *
dp_idmap_get (const dp_idmap_t *self, uint64_t id)
{
    assert (self);
    return s_find (self, id)->value;
}

void *
dp_idmap_remove (dp_idmap_t *self, uint64_t id)
{
    assert (self);
    slot_t *slot = s_find (self, id);
    void *value = slot->value;
    if (!value)
        return NULL;
    /*  Backward-shift: pull later entries of the probe run into the hole,
        unless they already sit at or after their home slot's position. */
    size_t hole = (size_t)(slot - self->slots);
    size_t i = hole;
    for (;;) {
        i = (i + 1) & self->mask;
        if (!self->slots[i].value)
            break;
        size_t home = s_hash (self->slots[i].id) & self->mask;
        /*  Move entry i to the hole if its home is not in (hole, i]. */
        if (((i - home) & self->mask) >= ((i - hole) & self->mask)) {
            self->slots[hole] = self->slots[i];
            hole = i;
        }
    }
    self->slots[hole].value = NULL;
    self->size--;
    return value;
}

size_t
dp_idmap_size (const dp_idmap_t *self)
{
    return self->size;
}

void
dp_idmap_foreach (const dp_idmap_t *self, void (*fn) (uint64_t id, void *value, void *arg),
                  void *arg)
{
    for (size_t i = 0; i <= self->mask; i++)
        if (self->slots[i].value)
            fn (self->slots[i].id, self->slots[i].value, arg);
}
