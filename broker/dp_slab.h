/*  dp_slab.h - a small-object allocator for the broker's task records.

    A broker may hold millions of queued tasks; glibc's malloc spends a
    header and a 16-byte rounding on each. A slab hands out records in
    8-byte size classes carved from 64 KiB blocks, keeps freed ones on a
    free list per class, and gives every block back once no record is in
    use (the queue drained) but one. Larger records go to malloc. Not
    thread-safe:
    the broker's loop owns it.
*/
#ifndef DP_SLAB_H_INCLUDED
#define DP_SLAB_H_INCLUDED

#include <stddef.h>

#define DP_SLAB_MAX   512         /* largest record served from slabs, bytes */
#define DP_SLAB_BLOCK (64 * 1024) /* bytes obtained from malloc at a time */

typedef struct _dp_slab_t dp_slab_t;

/*  Returns a new slab, or NULL if out of memory. */
dp_slab_t *
dp_slab_new (void);

/*  Frees every block (records still in use become invalid). */
void
dp_slab_destroy (dp_slab_t **self_p);

/*  Returns size bytes, 8-byte aligned, or NULL if out of memory. */
void *
dp_slab_alloc (dp_slab_t *self, size_t size);

/*  Gives back a record of size bytes (the size it was allocated with). */
void
dp_slab_free (dp_slab_t *self, void *record, size_t size);

/*  Records in use (from slabs or malloc). */
size_t
dp_slab_live (const dp_slab_t *self);

#endif
