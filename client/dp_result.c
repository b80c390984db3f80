/*  dp_result.c - result handles and iterators.

    Locking: every handle uses its pool's one mutex and its condition for
    handles (dp_client.h) for its refcount, its readiness and its iterator
    queue, and nothing else. The mutex is never held while unpacking values
    or running callbacks: one thread at a time (dp_result.h) writes a
    handle's results and publishes them by setting ready under the lock.
    The pool's counts (references, live handles) change only through
    dp_client.h's calls.
*/
#include "dp_result.h"

#include "dp_util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define ZONE_MIN       64        /* bytes of zone beyond the values */
#define DATA_GUESS_MAX (1 << 20) /* most bytes reserved for a map's values at first */

/*  An array of objects this big or bigger asks for huge pages: a map of 1M
    results would otherwise take a page fault every 170 objects, on the
    thread that stores them. */
#define HUGE_PAGE_SIZE ((size_t)2 << 20)

/*  Where an item's message is not in the handle's data (the data could not
    grow): its message is then the code's description. */
#define NO_OFFSET UINT64_MAX

/*  An item's offset with this bit set (and not NO_OFFSET) says that its
    value lies in a payload frame the handle keeps, not in its data: frame
    k (bits 32 to 62) of its frames, from byte off (bits 0 to 31; a frame
    is at most DP_MAX_MSG_SIZE bytes). */
#define IN_FRAME   ((uint64_t)1 << 63)
#define FRAME_MASK UINT32_MAX

/*  The payload frames a handle keeps its values in (zmq_msg_move'd out of
    the messages they came in), in the order they came. */
typedef struct {
    uint32_t count;
    uint32_t cap;
    zmq_msg_t msgs[];
} s_frames_t;

/*  One call's outcome: code, and where its packed value (code 0) or its
    NUL-terminated message lies in the handle's data. An item still all
    zero (as calloc made it) is a success whose value is already in its
    object: a scalar, unpacked as it came, its item never written, so that
    a map of scalars leaves the pages of its items untouched. No packed
    value is 0 bytes, so a stored one never looks like that. */
typedef struct {
    int32_t code;
    uint32_t size;
    uint64_t offset;
} dp_item_t;

/*  What only some handles need, made with the handle if it does: the
    callbacks a call gave, and an imap's queue of finished items. A plain
    apply_async handle is then a fifth smaller, and a program that keeps a
    million of them faults in that much less memory. */
typedef struct {
    dpool_callback_fn *callback;
    dpool_callback_fn *error_callback;
    dpool_progress_fn *progress;
    void *arg;
    /*  [lock] an imap's finished items, waiting for the iterator. */
    dpool_result_t **queue; /* [count] */
    size_t queued;          /* unordered: items queued so far */
    size_t taken;           /* items the iterator returned */
    bool iter_gone;         /* the iterator was destroyed */
} s_extra_t;

struct _dpool_result_t {
    dpool_pool_t *pool;    /* [const] */
    dp_result_mode_t mode; /* [const] */
    size_t count;          /* [const] calls */
    size_t index;          /* [const] an item's index in its imap */
    uint64_t seq0;         /* [const once attached] first task's seq */
    size_t ntasks;         /* [const once attached] */
    s_extra_t *extra;      /* [const] NULL without callbacks, unless an imap */

    int refs;      /* [lock] */
    bool ready;    /* [lock] its outcome is in */
    bool settled;  /* [lock] and its callback ran (or it has none): other threads wait for this */
    bool attached; /* [lock] counted in the pool */

    /*  Written by one thread (dp_result.h) until ready; read-only afterwards. */
    size_t done;             /* calls whose outcome is in */
    dp_item_t *items;        /* [count], apply and map and item handles */
    size_t written;          /* items written: failures and values not in objects */
    msgpack_sbuffer data;    /* values and messages, back to back */
    s_frames_t *frames;      /* frames holding values (IN_FRAME); NULL if none */
    int code;                /* 0, or the first failed call's code */
    const char *error;       /* its message */
    msgpack_zone *zone;      /* the unpacked values' insides live here; NULL if none was */
    msgpack_object *objects; /* [count] each call's value (nil if failed), owned */
    msgpack_object value;    /* what get returns */
    /*  A one-call handle's item and object, in place of two more blocks
        (apply_async makes a handle per call). */
    dp_item_t one_item;
    msgpack_object one_object;
};

struct _dpool_iter_t {
    dpool_result_t *job;
};

static bool
s_is_imap (const dpool_result_t *self)
{
    return self->mode == DP_RESULT_IMAP || self->mode == DP_RESULT_IMAP_UNORDERED;
}

/*  Frees what the handle owns, not the handle. */
static void
s_free_storage (dpool_result_t *self)
{
    if (self->zone)
        msgpack_zone_free (self->zone);
    for (uint32_t i = 0; self->frames && i < self->frames->count; i++)
        zmq_msg_close (&self->frames->msgs[i]);
    free (self->frames);
    if (self->objects != &self->one_object)
        free (self->objects);
    msgpack_sbuffer_destroy (&self->data);
    if (self->items != &self->one_item)
        free (self->items);
    if (self->extra) {
        free (self->extra->queue);
        free (self->extra);
    }
}

/*  Frees a handle that holds no reference on its pool (never attached, or
    an imap item nobody took), made whole or in part: what it owns, then its
    record. */
static void
s_free_detached (dpool_result_t *self)
{
    s_free_storage (self);
    dp_client_free_handle (self->pool, self);
}

dpool_result_t *
dp_result_new (dpool_pool_t *pool, dp_result_mode_t mode, size_t count, const dpool_call_t *call)
{
    assert (pool);
    dpool_result_t *self = (dpool_result_t *)dp_client_alloc_handle (pool, sizeof *self);
    if (!self)
        return NULL;
    memset (self, 0, sizeof *self);
    self->pool = pool;
    self->mode = mode;
    self->count = count;
    self->refs = 2;
    self->code = -1;
    msgpack_sbuffer_init (&self->data);
    bool imap = s_is_imap (self);
    /*  An imap's items are handles of their own: it takes no callbacks. */
    bool calls = call && (call->progress || (!imap && (call->callback || call->error_callback)));
    if (calls || imap) {
        self->extra = (s_extra_t *)calloc (1, sizeof *self->extra);
        if (!self->extra) {
            s_free_detached (self);
            return NULL;
        }
    }
    if (calls) {
        if (!imap) {
            self->extra->callback = call->callback;
            self->extra->error_callback = call->error_callback;
        }
        self->extra->progress = call->progress;
        self->extra->arg = call->arg;
    }
    size_t slots = count ? count : 1;
    if (imap)
        self->extra->queue = (dpool_result_t **)calloc (slots, sizeof *self->extra->queue);
    else if (slots == 1)
        self->items = &self->one_item;
    else
        self->items = (dp_item_t *)calloc (slots, sizeof *self->items);
    if (imap ? !self->extra->queue : !self->items) {
        s_free_detached (self);
        return NULL;
    }
    return self;
}

void
dp_result_attach (dpool_result_t *self, uint64_t seq0, size_t ntasks)
{
    assert (!self->attached);
    self->seq0 = seq0;
    self->ntasks = ntasks;
    self->attached = true;
    dp_client_attach_handle (self->pool);
}

uint64_t
dp_result_seq (const dpool_result_t *self)
{
    return self->seq0;
}

void
dp_result_discard (dpool_result_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dpool_result_t *self = *self_p;
        assert (!self->attached);
        s_free_detached (self);
        *self_p = NULL;
    }
}

/*  Frees a handle whose last reference is gone and drops its reference on
    the pool. Call without the lock. */
static void
s_free_unreferenced (dpool_result_t *self)
{
    dpool_pool_t *pool = self->pool;
    s_free_storage (self);
    dp_client_unref_handle (pool, self);
}

/*  Drops one reference; the last frees the handle and drops its reference
    on the pool. Call without the lock. */
static void
s_unref (dpool_result_t *self)
{
    dpool_pool_t *pool = self->pool;
    dp_client_lock (pool);
    assert (self->refs > 0);
    bool last = --self->refs == 0;
    dp_client_unlock (pool);
    if (last)
        s_free_unreferenced (self);
}

/*  True if the handle has a callback for how it ended. */
static bool
s_has_callback (const dpool_result_t *self)
{
    const s_extra_t *extra = self->extra;
    return extra && (self->code == 0 ? extra->callback : extra->error_callback) != NULL;
}

/*  An array of count objects, for free (); NULL if there is no memory. */
static msgpack_object *
s_objects_new (size_t count)
{
    size_t size = count * sizeof (msgpack_object);
#ifdef MADV_HUGEPAGE
    if (size >= HUGE_PAGE_SIZE) {
        size_t rounded = (size + HUGE_PAGE_SIZE - 1) / HUGE_PAGE_SIZE * HUGE_PAGE_SIZE;
        void *objects = aligned_alloc (HUGE_PAGE_SIZE, rounded);
        if (objects)
            madvise (objects, rounded, MADV_HUGEPAGE); /* a hint: failing is harmless */
        return (msgpack_object *)objects;
    }
#endif
    return (msgpack_object *)malloc (size);
}

/*  Makes the handle's count objects. Returns 0, or -1. */
static int
s_make_objects (dpool_result_t *self)
{
    assert (!self->objects && self->count);
    self->objects = self->count == 1 ? &self->one_object : s_objects_new (self->count);
    return self->objects ? 0 : -1;
}

/*  The packed bytes of a stored value or message. */
static const char *
s_item_bytes (const dpool_result_t *self, const dp_item_t *item)
{
    if (item->offset != NO_OFFSET && (item->offset & IN_FRAME)) {
        zmq_msg_t *frame = &self->frames->msgs[(item->offset & ~IN_FRAME) >> 32];
        return (const char *)zmq_msg_data (frame) + (item->offset & FRAME_MASK);
    }
    return self->data.data + item->offset;
}

/*  Unpacks size bytes that are one whole str or bin into object, pointing
    into the bytes, as msgpack_unpack would, without a zone. Returns false
    (object untouched) for any other item. */
static bool
s_unpack_flat (const char *bytes, size_t size, msgpack_object *object)
{
    dp_reader_t reader;
    dp_span_t span;
    dp_reader_init (&reader, bytes, size);
    dp_mp_type_t type = dp_mp_peek (&reader);
    if (type != DP_MP_STR && type != DP_MP_BIN)
        return false;
    if ((type == DP_MP_STR ? dp_mp_read_str (&reader, &span) : dp_mp_read_bin (&reader, &span)) ||
        dp_reader_left (&reader) != 0)
        return false;
    if (type == DP_MP_STR) {
        object->type = MSGPACK_OBJECT_STR;
        object->via.str.ptr = (const char *)span.data;
        object->via.str.size = (uint32_t)span.size;
    } else {
        object->type = MSGPACK_OBJECT_BIN;
        object->via.bin.ptr = (const char *)span.data;
        object->via.bin.size = (uint32_t)span.size;
    }
    return true;
}

/*  Unpacks a stored value into object, which points into the handle's
    bytes for its strings and binaries. A str or bin needs no zone (a large
    value is most often one); anything else is unpacked into the handle's
    zone, made with the first value that needs it, sized to what the handle
    holds (most values are a few bytes, and a zone of MSGPACK_ZONE_CHUNK_SIZE
    per apply would cost 8 KiB a task; the zone grows by itself if the
    values need more). Returns 0, or the item's code: DPOOL_ENOMEM,
    DPOOL_EPROTO. */
static int
s_unpack_value (dpool_result_t *self, const dp_item_t *item, msgpack_object *object)
{
    const char *bytes = s_item_bytes (self, item);
    if (s_unpack_flat (bytes, item->size, object))
        return 0;
    if (!self->zone) {
        size_t chunk = ZONE_MIN + 2 * (self->data.size + item->size);
        self->zone =
            msgpack_zone_new (chunk < MSGPACK_ZONE_CHUNK_SIZE ? chunk : MSGPACK_ZONE_CHUNK_SIZE);
        if (!self->zone)
            return DPOOL_ENOMEM;
    }
    size_t off = 0;
    msgpack_unpack_return rc = msgpack_unpack (bytes, item->size, &off, self->zone, object);
    if (rc == MSGPACK_UNPACK_SUCCESS)
        return 0;
    return rc == MSGPACK_UNPACK_NOMEM_ERROR ? DPOOL_ENOMEM : DPOOL_EPROTO;
}

/*  Unpacks every value not unpacked yet and settles the handle's code and
    value. On the thread that writes the handle's results, before the
    handle is published. */
static void
s_materialize (dpool_result_t *self)
{
    self->code = 0;
    self->error = NULL;
    self->value.type = MSGPACK_OBJECT_NIL;
    if (!self->objects && self->count) /* else made for the first scalar */
        s_make_objects (self);
    if (self->count && !self->objects) {
        self->code = DPOOL_ENOMEM;
        self->error = dpool_strerror (DPOOL_ENOMEM);
        for (size_t i = 0; i < self->count; i++)
            if (self->items[i].code == 0) {
                self->items[i].code = DPOOL_ENOMEM;
                self->items[i].offset = NO_OFFSET;
            }
        return;
    }
    /*  With no item written, every value is in its object already: the
        items, never touched, stay that way. */
    for (size_t i = 0; i < self->count && self->written; i++) {
        dp_item_t *item = &self->items[i];
        msgpack_object *object = &self->objects[i];
        if (item->code == 0 && item->size == 0)
            continue; /* in its object already */
        object->type = MSGPACK_OBJECT_NIL;
        if (item->code == 0 && (item->code = s_unpack_value (self, item, object)) != 0) {
            item->offset = NO_OFFSET;
            object->type = MSGPACK_OBJECT_NIL;
        }
        if (item->code != 0 && self->code == 0) {
            self->code = item->code;
            self->error = item->offset == NO_OFFSET ? dpool_strerror (item->code)
                                                    : self->data.data + item->offset;
        }
    }
    if (self->mode == DP_RESULT_MAP) {
        self->value.type = MSGPACK_OBJECT_ARRAY;
        self->value.via.array.size = (uint32_t)self->count;
        self->value.via.array.ptr = self->objects;
    } else if (self->count)
        self->value = self->objects[0];
}

/*  Publishes a handle whose last call is in, runs its callback and drops
    the pool's reference. On the actor thread, without the lock. */
static void
s_complete (dpool_result_t *self)
{
    dp_result_complete (&self, 1);
}

/*  Keeps frame, a payload frame that holds a value (bytes, size: the
    frame's whole bytes), among the handle's frames: moved, not copied.
    Returns its index there, or -1 (frame untouched) for a frame too small
    to be worth it or when out of memory. */
static int
s_take_frame (dpool_result_t *self, zmq_msg_t *frame, const void *bytes, size_t size)
{
    if (!frame || size < DP_FRAME_MIN || bytes != zmq_msg_data (frame) ||
        size != zmq_msg_size (frame))
        return -1;
    s_frames_t *frames = self->frames;
    if (!frames || frames->count == frames->cap) {
        /*  An apply's one frame exactly; a map's grow by doubling. */
        uint32_t cap = frames ? frames->cap * 2 : 1;
        s_frames_t *bigger =
            cap > (FRAME_MASK >> 1)
                ? NULL
                : (s_frames_t *)malloc (sizeof *bigger + cap * sizeof (zmq_msg_t));
        if (!bigger)
            return -1;
        *bigger = (s_frames_t){.count = frames ? frames->count : 0, .cap = cap};
        for (uint32_t i = 0; i < bigger->count; i++) {
            zmq_msg_init (&bigger->msgs[i]);
            zmq_msg_move (&bigger->msgs[i], &frames->msgs[i]);
        }
        free (frames);
        self->frames = frames = bigger;
    }
    zmq_msg_init (&frames->msgs[frames->count]);
    zmq_msg_move (&frames->msgs[frames->count], frame);
    return (int)frames->count++;
}

/*  Stores one call's outcome in an apply, map or item handle: its packed
    value when code is 0, else its message (len bytes, not NUL-terminated).
    A value that lies in the handle's frame k (0 or more; -1 for none) is
    left there, not copied. */
static void
s_store (dpool_result_t *self, size_t index, int32_t code, const void *bytes, size_t size, int k)
{
    assert (index < self->count);
    /*  A scalar goes straight into its object, its item left all zero: no
        copy, no unpack later. The objects are made with the first one. A
        call is stored once (a malformed chunk's calls then fail, which
        writes their items whole). */
    msgpack_object scalar;
    if (code == 0 && dp_mp_unpack_scalar (bytes, size, &scalar) == size &&
        (self->objects || s_make_objects (self) == 0)) {
        self->objects[index] = scalar;
        return;
    }
    dp_item_t *item = &self->items[index];
    self->written++;
    item->code = code;
    item->size = (uint32_t)size;
    if (code == 0 && k >= 0) {
        const char *frame = (const char *)zmq_msg_data (&self->frames->msgs[k]);
        item->offset = IN_FRAME | (uint64_t)k << 32 | (uint64_t)((const char *)bytes - frame);
        return;
    }
    item->offset = self->data.size;
    /*  The first value sizes the buffer for what is still to come: exactly
        for an apply, rather than msgpack-c's 8 KiB first step. */
    if (self->data.alloc == 0) {
        size_t remaining = self->count - self->done;
        size_t want = (size + 1) * remaining;
        if (remaining > 1 && want > DATA_GUESS_MAX)
            want =
                size + 1 > DATA_GUESS_MAX ? size + 1 : DATA_GUESS_MAX; /* a guess, not a promise */
        char *data = (char *)malloc (want ? want : 1);
        if (data) {
            self->data.data = data;
            self->data.alloc = want ? want : 1;
        }
    }
    int rc = msgpack_sbuffer_write (&self->data, (const char *)bytes, size);
    if (rc == 0 && code != 0)
        rc = msgpack_sbuffer_write (&self->data, "", 1);
    if (rc != 0) {
        item->code = DPOOL_ENOMEM;
        item->offset = NO_OFFSET;
    }
}

/*  Hands one finished call of an imap to its iterator as an item handle
    (frame: as s_store's). */
static void
s_publish_item (dpool_result_t *self, size_t index, int32_t code, const void *bytes, size_t size,
                zmq_msg_t *frame)
{
    dpool_pool_t *pool = self->pool;
    dpool_result_t *item = dp_result_new (pool, DP_RESULT_ITEM, 1, NULL);
    if (item) {
        item->index = index;
        item->refs = 1;
        s_store (item, 0, code, bytes, size, s_take_frame (item, frame, bytes, size));
        s_materialize (item);
        item->ready = item->settled = true;
    }
    dp_client_lock (pool);
    bool keep = item && !self->extra->iter_gone;
    if (keep) {
        dp_client_ref (pool);
        if (self->mode == DP_RESULT_IMAP)
            self->extra->queue[index] = item;
        else
            self->extra->queue[self->extra->queued++] = item;
        dp_client_broadcast_results (pool);
    }
    dp_client_unlock (pool);
    if (!keep && item)
        s_free_detached (item);
    /*  Out of memory for the item: the iterator would wait for it forever,
        so this is the one failure dpool cannot report. */
    if (!item)
        dp_error ("client: out of memory for an imap item; its iterator will time out");
}

/*  Records one call's outcome wherever the handle keeps it (frame: as
    s_store's). */
static void
s_call_done (dpool_result_t *self, size_t index, int32_t code, const void *bytes, size_t size,
             zmq_msg_t *frame)
{
    if (s_is_imap (self))
        s_publish_item (self, index, code, bytes, size, frame);
    else
        s_store (self, index, code, bytes, size, s_take_frame (self, frame, bytes, size));
    self->done++;
}

/*  Reads one [code, value] pair of a chunk's value: the code, and the value
    (code 0) or the message text. Returns 0, or -1 if it is not one. */
static int
s_read_pair (dp_reader_t *reader, int32_t *code, dp_span_t *value)
{
    uint32_t fields;
    int64_t wire_code;
    if (dp_mp_read_array (reader, &fields) || fields < 2 || dp_mp_read_int (reader, &wire_code))
        return -1;
    *code = wire_code < 0 || wire_code > INT32_MAX ? DPOOL_EPROTO : (int32_t)wire_code;
    if (*code == 0) {
        if (dp_mp_read_object (reader, value))
            return -1;
    } else if (dp_mp_peek (reader) == DP_MP_STR) {
        if (dp_mp_read_str (reader, value))
            return -1;
        if (value->size > DP_MAX_ERROR)
            value->size = DP_MAX_ERROR;
    } else {
        static const char text[] = "task failed";
        if (dp_mp_read_object (reader, NULL))
            return -1;
        value->data = (const uint8_t *)text;
        value->size = sizeof text - 1;
    }
    for (uint32_t i = 2; i < fields; i++)
        if (dp_mp_read_object (reader, NULL))
            return -1;
    return 0;
}

/*  Splits a successful chunk's value into its calls; a value that lies in
    the handle's frame k (-1: none) stays there. Returns 0, or -1 if the
    value is not an array of task->count pairs (nothing recorded). */
static int
s_split_chunk (dpool_result_t *self, const dp_ctask_t *task, dp_span_t value, int k)
{
    dp_reader_t reader;
    uint32_t n;
    int32_t code;
    dp_span_t item;
    dp_reader_init (&reader, value.data, value.size);
    if (dp_mp_read_array (&reader, &n) || n != task->count)
        return -1;
    if (!s_is_imap (self)) {
        /*  One pass; a bad pair undoes what the ones before it stored (the
            failure then overwrites their items). */
        size_t done = self->done, data_size = self->data.size;
        for (uint32_t i = 0; i < n; i++) {
            if (s_read_pair (&reader, &code, &item)) {
                self->done = done;
                self->data.size = data_size;
                return -1;
            }
            s_store (self, task->first + i, code, item.data, item.size, k);
            self->done++;
        }
        return 0;
    }
    /*  An imap hands each call to its iterator at once: check them all
        first. */
    dp_reader_t check = reader;
    for (uint32_t i = 0; i < n; i++)
        if (s_read_pair (&check, &code, &item))
            return -1;
    for (uint32_t i = 0; i < n; i++) {
        int rc = s_read_pair (&reader, &code, &item);
        assert (rc == 0);
        (void)rc;
        s_call_done (self, task->first + i, code, item.data, item.size, NULL);
    }
    return 0;
}

bool
dp_result_task_done (dpool_result_t *self, const dp_ctask_t *task, int32_t code, dp_span_t value,
                     zmq_msg_t *frame)
{
    assert (self && task);
    if (code == 0 && (task->flags & DP_TASK_CHUNK)) {
        /*  An imap's calls each go to a handle of their own: copied. */
        int k = s_is_imap (self) ? -1 : s_take_frame (self, frame, value.data, value.size);
        if (s_split_chunk (self, task, value, k)) {
            dp_warn ("client: malformed chunk result for task %llu",
                     (unsigned long long)task->seq);
            dp_result_task_failed (self, task, DPOOL_EPROTO, "malformed chunk result");
            return false;
        }
    } else if (code == 0)
        s_call_done (self, task->first, 0, value.data, value.size, frame);
    else {
        /*  A failure's value is its message, a str item (checked by proto). */
        dp_reader_t reader;
        dp_span_t message = {NULL, 0};
        dp_reader_init (&reader, value.data, value.size);
        if (dp_mp_read_str (&reader, &message))
            message.size = 0;
        for (size_t i = 0; i < task->count; i++)
            s_call_done (self, task->first + i, code, message.data ? message.data : value.data,
                         message.size, NULL);
    }
    return self->done == self->count;
}

void
dp_result_complete (dpool_result_t **handles, size_t count)
{
    if (count == 0)
        return;
    dpool_pool_t *pool = handles[0]->pool;
    for (size_t i = 0; i < count; i++) {
        if (s_is_imap (handles[i]))
            handles[i]->code = 0;
        else
            s_materialize (handles[i]);
    }
    /*  One lock and one wake-up for every waiter, however many handles
        finished. A handle without a callback is done with here: it stops
        counting as live and the pool's reference goes, in the same turn.
        The wake-up comes after the lock is released, so a waiter it wakes
        does not find the lock still held. */
    size_t mine = 0, finished = 0;
    dp_client_lock (pool);
    dp_client_handles_ready (pool, handles, count);
    for (size_t i = 0; i < count; i++) {
        dpool_result_t *self = handles[i];
        self->ready = true;
        if (!s_has_callback (self)) {
            self->settled = true;
            assert (self->refs > 0);
            finished++;
            if (--self->refs > 0)
                continue; /* the caller's now: not to be touched after unlock */
        }
        handles[mine++] = self;
    }
    dp_client_handles_finished (pool, finished);
    dp_client_unlock (pool);
    dp_client_broadcast_results (pool);
    /*  handles[0..mine) are still this thread's: those without a callback
        had their last reference go above and are freed, the others'
        callbacks run. */
    size_t callbacks = 0;
    for (size_t i = 0; i < mine; i++) {
        if (!s_has_callback (handles[i]))
            s_free_unreferenced (handles[i]);
        else
            handles[callbacks++] = handles[i];
    }
    if (callbacks == 0)
        return;
    for (size_t i = 0; i < callbacks; i++) {
        dpool_result_t *self = handles[i];
        if (self->code == 0)
            self->extra->callback (self, self->extra->arg);
        else
            self->extra->error_callback (self, self->extra->arg);
    }
    /*  Only now do other threads' waits end (as with Pool, whose get()
        returns after the callback ran): what a callback did is seen by
        whoever waited for its handle. */
    dp_client_lock (pool);
    for (size_t i = 0; i < callbacks; i++)
        handles[i]->settled = true;
    dp_client_handles_finished (pool, callbacks);
    dp_client_unlock (pool);
    dp_client_broadcast_results (pool);
    for (size_t i = 0; i < callbacks; i++)
        s_unref (handles[i]);
}

bool
dp_result_has_callbacks (const dpool_result_t *self)
{
    const s_extra_t *extra = self->extra;
    return extra && (extra->callback || extra->error_callback || extra->progress);
}

bool
dp_result_ready (const dpool_result_t *self)
{
    return self->ready;
}

void
dp_result_progress (dpool_result_t *self, const dp_ctask_t *task, dp_span_t value)
{
    assert (self && task);
    if (!self->extra || !self->extra->progress || self->done == self->count)
        return;
    msgpack_zone *zone = msgpack_zone_new (MSGPACK_ZONE_CHUNK_SIZE);
    msgpack_object object;
    size_t offset = 0;
    if (zone && msgpack_unpack ((const char *)value.data, value.size, &offset, zone, &object) ==
                    MSGPACK_UNPACK_SUCCESS)
        self->extra->progress (self, task->first, &object, self->extra->arg);
    if (zone)
        msgpack_zone_free (zone);
}

void
dp_result_task_failed (dpool_result_t *self, const dp_ctask_t *task, int code, const char *message)
{
    assert (self && task && code != 0);
    for (size_t i = 0; i < task->count; i++)
        s_call_done (self, task->first + i, code, message, strlen (message), NULL);
    if (self->done == self->count)
        s_complete (self);
}

void
dp_result_finish_empty (dpool_result_t *self)
{
    assert (self->count == 0);
    s_complete (self);
}

/*  ---------------------------------------------------------------------------
    The public calls.
*/

/*  With the lock held: waits until the handle is ready or the deadline
    passes; returns whether it is ready. */
/*  With the lock held: true once the handle is ready for the calling
    thread: its outcome is in and its callback ran, or (on the pool's own
    thread, a callback reading its handle) its outcome is in. */
static bool
s_settled (const dpool_result_t *self)
{
    return self->settled || (self->ready && dp_client_on_actor (self->pool));
}

static bool
s_wait_ready (dpool_result_t *self, int64_t deadline)
{
    while (!s_settled (self))
        if (!dp_client_wait (self->pool, deadline))
            return s_settled (self);
    return true;
}

int
dpool_result_wait (dpool_result_t *self, int timeout_ms)
{
    assert (self);
    dp_client_lock (self->pool);
    bool ready = s_wait_ready (self, dp_client_deadline (timeout_ms));
    dp_client_unlock (self->pool);
    return ready ? 0 : dp_fail (DPOOL_ETIMEOUT);
}

int
dpool_result_get (dpool_result_t *self, int timeout_ms, msgpack_object *value)
{
    if (dpool_result_wait (self, timeout_ms))
        return -1;
    if (self->code != 0)
        return dp_fail (self->code);
    if (value)
        *value = self->value;
    return 0;
}

bool
dpool_result_ready (dpool_result_t *self)
{
    assert (self);
    dp_client_lock (self->pool);
    bool ready = s_settled (self);
    dp_client_unlock (self->pool);
    return ready;
}

bool
dpool_result_successful (dpool_result_t *self)
{
    return dpool_result_ready (self) && self->code == 0;
}

int
dpool_result_code (dpool_result_t *self)
{
    return dpool_result_ready (self) ? self->code : -1;
}

const char *
dpool_result_error (dpool_result_t *self)
{
    return dpool_result_ready (self) && self->code != 0 ? self->error : NULL;
}

size_t
dpool_result_count (dpool_result_t *self)
{
    assert (self);
    return self->count;
}

size_t
dpool_result_index (dpool_result_t *self)
{
    assert (self);
    return self->index;
}

int
dpool_result_item (dpool_result_t *self, size_t index, msgpack_object *value)
{
    assert (self);
    if (!dpool_result_ready (self) || s_is_imap (self))
        return dp_fail (DPOOL_ESTATE);
    if (index >= self->count)
        return dp_fail (DPOOL_EINVAL);
    if (self->items[index].code != 0)
        return dp_fail (self->items[index].code);
    if (value)
        *value = self->objects[index];
    return 0;
}

const char *
dpool_result_item_error (dpool_result_t *self, size_t index)
{
    assert (self);
    if (!dpool_result_ready (self) || s_is_imap (self) || index >= self->count)
        return NULL;
    const dp_item_t *item = &self->items[index];
    if (item->code == 0)
        return NULL;
    return item->offset == NO_OFFSET ? dpool_strerror (item->code)
                                     : self->data.data + item->offset;
}

int
dpool_result_cancel (dpool_result_t *self)
{
    assert (self);
    dpool_pool_t *pool = self->pool;
    bool wake = false;
    dp_client_lock (pool);
    /*  A finished handle has no task left; an unfinished one has a pool
        that is alive (destroy finishes every handle first). */
    if (!self->ready && self->attached)
        wake = dp_client_cancel_tasks (pool, self->seq0, self->ntasks);
    dp_client_unlock (pool);
    if (wake)
        dp_client_wake (pool);
    return 0;
}

void
dpool_result_destroy (dpool_result_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        s_unref (*self_p);
        *self_p = NULL;
    }
}

/*  ---------------------------------------------------------------------------
    Iterators.
*/

dpool_iter_t *
dp_iter_new (dpool_result_t *job)
{
    assert (job && s_is_imap (job));
    dpool_iter_t *self = (dpool_iter_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->job = job;
    return self;
}

dpool_result_t *
dpool_iter_next (dpool_iter_t *self, int timeout_ms)
{
    assert (self);
    dpool_result_t *job = self->job;
    s_extra_t *imap = job->extra;
    int64_t deadline = dp_client_deadline (timeout_ms);
    dpool_result_t *item = NULL;
    int code = DPOOL_OK;
    dp_client_lock (job->pool);
    for (;;) {
        if (imap->taken == job->count) {
            code = DPOOL_EEND;
            break;
        }
        item = imap->queue[imap->taken];
        if (item) {
            imap->queue[imap->taken++] = NULL;
            break;
        }
        if (!dp_client_wait (job->pool, deadline) && !imap->queue[imap->taken]) {
            code = DPOOL_ETIMEOUT;
            break;
        }
    }
    dp_client_unlock (job->pool);
    return item ? item : (dpool_result_t *)dp_fail_null (code);
}

void
dpool_iter_destroy (dpool_iter_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dpool_iter_t *self = *self_p;
        dpool_result_t *job = self->job;
        s_extra_t *imap = job->extra;
        /*  Items the iterator did not hand out are freed here; the ones the
            actor finishes later are dropped as they come. */
        dp_client_lock (job->pool);
        imap->iter_gone = true;
        dpool_result_t **left = imap->queue;
        size_t from = imap->taken;
        size_t to = job->mode == DP_RESULT_IMAP ? job->count : imap->queued;
        dp_client_unlock (job->pool);
        for (size_t i = from; i < to; i++)
            if (left[i]) {
                dpool_result_t *item = left[i];
                left[i] = NULL;
                dpool_result_destroy (&item);
            }
        dpool_result_destroy (&job);
        free (self);
        *self_p = NULL;
    }
}
