/*  dp_recs.h - fixed-size records for a pool's result handles.

    A program that keeps many apply_async handles, as Pool users do (a
    list of AsyncResults, read at the end), holds one record per call.
    From malloc, each new page of them is a page fault on the submitting
    thread: on a virtual machine whose page faults trap to the hypervisor
    that was half of the submitting thread's time in apply_async. Records
    here come from 2 MiB chunks; every chunk after the first asks for a
    huge page (MADV_HUGEPAGE), so a pool with a few handles costs no more
    than before, and a million handles of 208 bytes cost about 610 page
    faults (512 of them in the first chunk) instead of some 51,000.

    Freed records are reused; once no record is in use, every chunk but
    the first goes back to the system (as the broker's dp_slab does). Under
    AddressSanitizer every record is its own malloc, so that the sanitizer
    still sees each handle's lifetime. Not thread-safe: the pool's mutex
    guards it.
*/
#ifndef DP_RECS_H_INCLUDED
#define DP_RECS_H_INCLUDED

#include <stddef.h>

#define DP_RECS_CHUNK ((size_t)2 << 20) /* bytes obtained at a time, aligned so */

typedef struct _dp_recs_t dp_recs_t;

/*  Returns a new allocator of records of size bytes, or NULL if out of
    memory. */
dp_recs_t *
dp_recs_new (size_t size);

/*  Frees every chunk (records still in use become invalid). */
void
dp_recs_destroy (dp_recs_t **self_p);

/*  Returns a record (its bytes undefined, 16-byte aligned), or NULL if out
    of memory. */
void *
dp_recs_alloc (dp_recs_t *self);

/*  Gives a record back. */
void
dp_recs_free (dp_recs_t *self, void *record);

/*  Records in use. */
size_t
dp_recs_live (const dp_recs_t *self);

/*  Chunks held. */
size_t
dp_recs_chunks (const dp_recs_t *self);

#endif
