/*  dp_idmap.h - a hash table from 64-bit ids to pointers.

    The broker finds tasks by (session, sequence) and dispatch reference,
    the client finds pending tasks by sequence: all by integer id, millions
    of times a second. Open addressing (Robin Hood linear probing, with
    backward-shift deletion) keeps it to one array and no tombstones; it
    grows at 3/4 full and does not shrink. Values must not be NULL. Not
    thread-safe.

    A map made sequential places ids that count up (sequence numbers,
    references) side by side, so that adding and removing them in about
    the order they were made touches memory in order. If its ids turn out
    not to spread (a pattern, a peer's choice, or many ids outliving the
    ids made long after them), it turns to a keyed hash by itself until it
    is empty again; a map made by dp_idmap_new uses that hash from the
    start.

    Why not CZMQ's zhashx: on this pattern it is 1.4 to 2.9 times slower
    even given integer keys and a hasher of its own (one allocation per
    entry, a chain per bucket), and 12 to 22 times as it comes (string
    keys); bench/bench_idmap.c measures it, bench/RESULTS.md has figures.
*/
#ifndef DP_IDMAP_H_INCLUDED
#define DP_IDMAP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _dp_idmap_t dp_idmap_t;

/*  Returns a new empty map for any ids, or NULL if out of memory. */
dp_idmap_t *
dp_idmap_new (void);

/*  Returns a new empty map for ids that mostly count up, or NULL if out of
    memory. */
dp_idmap_t *
dp_idmap_new_sequential (void);

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

/*  True while the map homes ids by the keyed hash. */
bool
dp_idmap_mixing (const dp_idmap_t *self);

/*  Calls fn for every entry, in no order; fn must not change the map. */
void
dp_idmap_foreach (const dp_idmap_t *self, void (*fn) (uint64_t id, void *value, void *arg),
                  void *arg);

#endif
