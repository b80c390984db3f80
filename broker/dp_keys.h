/*  dp_keys.h - the broker's key configuration: who may do what, and how
    much each key may hold (docs/PROTOCOL.md section 8.1).

    With CURVE, every connection carries its client's public key (the ZAP
    handler makes it the connection's User-Id). This table says, per key,
    its name, its rights (submit tasks, serve as a worker, optionally only
    some function names, use named queues, administer) and its quotas. It
    is read from a file of one line per key (--curve-keys FILE):

        # comments start a line
        <40 Z85 characters> name=alice roles=submit,queue max_queued=1000
        <40 Z85 characters> name=w1 roles=worker functions=square,dpool.exec
        <40 Z85 characters> name=root roles=all

    or from a directory of public key files (--curve-clients DIR), each of
    which has every right and no quota; files named *_secret, dot files
    and files that are not key files are passed over. A table is immutable once loaded:
    a reload makes a new one, which takes the old one's place whole.

    Locking: none; a table is used by the broker's thread only.
*/
#ifndef DP_KEYS_H_INCLUDED
#define DP_KEYS_H_INCLUDED

#include "dp_curve.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DP_KEY_NAME_MAX 63 /* bytes of a key's name */

/*  The rights a key may hold, as bits. */
typedef enum {
    DP_RIGHT_SUBMIT = 1, /* SUBMIT and CANCEL tasks */
    DP_RIGHT_WORKER = 2, /* READY and ATTACH: serve as a worker */
    DP_RIGHT_QUEUE = 4,  /* the named queues' commands */
    DP_RIGHT_ADMIN = 8,  /* see every session's tasks in status */
    DP_RIGHTS_ALL = 15
} dp_right_t;

/*  One key's entry. Quotas of 0 mean none of the key's own. */
typedef struct {
    char key[DP_CURVE_KEY + 1];     /* Z85 public key */
    char name[DP_KEY_NAME_MAX + 1]; /* its name; the file name, or key's head */
    unsigned rights;                /* dp_right_t bits */
    uint32_t weight;                /* share of the workers (fair share); 0: not given */
    uint64_t max_queued;            /* tasks held at once (queued or running) */
    uint64_t max_queued_bytes;      /* bytes of arguments of those tasks */
    uint64_t max_running;           /* tasks running at once (fair share) */
    char **functions;               /* with DP_RIGHT_WORKER: the only names it may offer */
    size_t nfunctions;              /* 0: any name */
} dp_key_t;

typedef struct _dp_keys_t dp_keys_t;

/*  Loads a key file (path a regular file) or a directory of public key
    files (every right, no quota; files without a public key, *_secret
    files and dot files are skipped; a key in two files counts once).
    Returns NULL with a reason in err (naming the file and line) if the
    file cannot be read or a line is malformed. */
dp_keys_t *
dp_keys_load (const char *path, char *err, size_t err_size);

/*  Frees a table and nulls *self_p; harmless on NULL. */
void
dp_keys_destroy (dp_keys_t **self_p);

/*  The entry of a Z85 key, or NULL if the table does not admit it.
    Borrowed: valid while the table lives. */
const dp_key_t *
dp_keys_lookup (const dp_keys_t *self, const char *key);

/*  How many keys the table admits. */
size_t
dp_keys_size (const dp_keys_t *self);

/*  True if key may offer function name (its rights hold DP_RIGHT_WORKER
    and its list, if any, names it). */
bool
dp_key_may_offer (const dp_key_t *key, const char *name);

/*  The names of rights as "submit,worker", "none" if there are none, into
    out. Returns out. */
const char *
dp_rights_text (unsigned rights, char *out, size_t size);

/*  The name of one right ("submit", "worker", "queue", "admin"). */
const char *
dp_right_name (dp_right_t right);

#endif
