/*  dp_rendezvous.h - how rank 0 of an SPMD job tells the other ranks where
    its broker is: a card (a few lines of text) that travels through the
    launcher's runtime (dpool_spmd_bootstrap_t's share) or a file on a
    filesystem every rank sees; or no card at all, a fixed endpoint every
    rank knows.

    The card, at most DP_CARD_SIZE bytes with its NUL:

        dpool-spmd 1
        job <the launcher's job identity, or ->
        size <ranks>
        endpoint <rank 0's broker>          (or: error <why rank 0 failed>)
        curve-server <broker's public key>  (with CURVE only, after endpoint)
        curve-secret <the workers' secret key>

    With CURVE the card holds a secret: it travels only through the
    bootstrap or a file of mode 0600, never a command line or the
    environment, and whoever holds it in memory wipes it after use.

    A card read from a file is hostile until parsed: unknown lines are
    errors, every value is bounded.
*/
#ifndef DP_RENDEZVOUS_H_INCLUDED
#define DP_RENDEZVOUS_H_INCLUDED

#include "dp_curve.h"

#include <stddef.h>

#define DP_CARD_SIZE     1024 /* a card's bytes, with its NUL: what share sends */
#define DP_CARD_FIELD    256  /* an endpoint's or error's bytes, with the NUL */
#define DP_RENDEZVOUS_MS 20   /* how often a waiting rank looks at the file */

typedef struct {
    char job[DP_CARD_FIELD];             /* "" when unknown */
    int size;                            /* the job's ranks */
    char endpoint[DP_CARD_FIELD];        /* rank 0's broker; "" when it failed */
    char error[DP_CARD_FIELD];           /* why rank 0 failed; "" when it did not */
    char curve_server[DP_CURVE_KEY + 1]; /* the broker's public key; "" without CURVE */
    char curve_secret[DP_CURVE_KEY + 1]; /* the workers' secret key; "" without CURVE */
} dp_card_t;

/*  Writes the card as text into out (size >= DP_CARD_SIZE). Returns 0, or
    -1 if it does not fit. */
int
dp_card_format (const dp_card_t *card, char *out, size_t size);

/*  Reads a card from text (NUL-terminated). Returns 0, or -1 if it is not
    one. */
int
dp_card_parse (const char *text, dp_card_t *card);

/*  How a rendezvous string reads: "file:PATH" (path points into it),
    "tcp://HOST:PORT", or neither. */
typedef enum { DP_RENDEZVOUS_NONE, DP_RENDEZVOUS_FILE, DP_RENDEZVOUS_TCP } dp_rendezvous_kind_t;

dp_rendezvous_kind_t
dp_rendezvous_kind (const char *rendezvous, const char **path);

/*  Writes text to path atomically (a temporary file in the same folder,
    mode 0600, renamed over path). Returns 0, or -1 after logging why. */
int
dp_rendezvous_write (const char *path, const char *text);

/*  Waits up to timeout_ms for path to hold a card of this job (job and
    size match; a card of another job, left behind, is not one) and reads
    it into card. Only a regular file of this user with no permission for
    others is read (as dp_rendezvous_write makes it): one planted by
    another user, or open to others, is ignored, with a warning. Returns
    0, or -1 on timeout. Blocks. */
int
dp_rendezvous_wait (const char *path, const char *job, int size, int timeout_ms, dp_card_t *card);

#endif
