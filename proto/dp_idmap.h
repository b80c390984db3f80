/*  dp_idmap.h - a hash table from 64-bit ids to pointers.

    The broker finds tasks by (session, sequence) and dispatch reference,
    the client finds pending tasks by sequence: all by integer id, millions
    of times a second. Open addressing with linear probing and
    backward-shift deletion keeps it to one array and no tombstones; it
    grows at 3/4 full. Values must not be NULL. Not thread-safe.
*/
#ifndef DP_IDMAP_H_INCLUDED
#define DP_IDMAP_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct _dp_idmap_t dp_idmap_t;

/*  Returns a new empty map, or NULL if out of memory. */
dp_idmap_t *
dp_idmap_new (void);

/*  Frees the map (not the values it points to). */
void
dp_idmap_destroy (dp_idmap_t **self_p);

/*  Sets id to value (not NULL), replacing any value it had. Returns 0, or
    -1 if out of memory (the map is unchanged). */
int
dp_idmap_put (dp_idmap_t *self, uint64_t id, void *value);

/*  The value of id, or NULL. */
void *
dp_idmap_get (const dp_idmap_t *self, uint64_t id);

/*  Removes id; returns its value, or NULL if it had none. */
void *
dp_idmap_remove (dp_idmap_t *self, uint64_t id);

/*  Number of ids in the map. */
size_t
dp_idmap_size (const dp_idmap_t *self);

/*  Calls fn for every entry, in no order; fn must not change the map. */
void
dp_idmap_foreach (const dp_idmap_t *self, void (*fn) (uint64_t id, void *value, void *arg),
                  void *arg);

#endif
