/*  dp_conns.h - the broker's connections, as its ROUTER's monitor reports
    them.

    A ROUTER hides its connections; its monitor reports each one's life
    (accepted, handshake failed, disconnected) with the connection's file
    descriptor, and every message the ROUTER receives carries the
    descriptor it came on (ZMQ_SRCFD). This table, indexed by descriptor,
    knows each open connection's peer address; counts connections in all
    and per address, and refuses those beyond either bound; tells refusals
    of CURVE and ZAP from bytes that are not ZMTP; and remembers which
    worker registration (its token) a connection carries, so that the
    broker knows a worker is gone as soon as its connection closes.

    Order: libzmq emits a connection's events before it closes its
    descriptor, and before the connection's first message reaches the
    ROUTER. So a caller that reads every event waiting before it looks a
    descriptor up sees the connection the message came on.

    A refused connection is let finish its handshake, so that its first
    message can be answered with why (dp_conns_refusal), then cut with
    shutdown(2) (dp_conns_tick); at most DP_CONNS_REFUSING wait so at once,
    and those beyond are cut at once. Not thread-safe: the broker's thread
    owns it.
*/
#ifndef DP_CONNS_H_INCLUDED
#define DP_CONNS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DP_CONNS_REFUSING  64   /* refused connections waiting for their answer at once */
#define DP_CONNS_ANSWER_MS 1000 /* a refused connection's time to say something */
#define DP_CONNS_LINGER_MS 200  /* the time an answer to a refused one has to go out */

typedef struct _dp_conns_t dp_conns_t;

/*  The counters status shows (PROTOCOL.md 7, "connections"). */
typedef struct {
    uint64_t accepted;
    uint64_t disconnected;
    uint64_t handshake_failed; /* CURVE or ZAP refused the peer */
    uint64_t protocol_errors;  /* not ZMTP, or cut during the handshake */
    uint64_t refused;          /* beyond max_total or max_per_addr */
    size_t open;               /* admitted and open now */
    size_t max_total;
    size_t max_per_addr;
} dp_conns_stats_t;

/*  Makes a table that admits max_total connections in all and
    max_per_addr from one IP address (connections over ipc:// have no
    address and count only in the total). curve: the ROUTER is a CURVE
    server, so a handshake its peer cut short counts as a refusal (a peer
    that finds the broker's key or mechanism wrong hangs up). Returns NULL
    if out of memory. */
dp_conns_t *
dp_conns_new (size_t max_total, size_t max_per_addr, bool curve);

/*  Frees the table and nulls *self_p; harmless on NULL. */
void
dp_conns_destroy (dp_conns_t **self_p);

/*  Applies one monitor event (its id and value) at time now. Returns the
    worker token of a connection found closed by it (0: none): the worker
    registered on it is gone. */
uint64_t
dp_conns_event (dp_conns_t *self, uint16_t id, uint32_t value, int64_t now);

/*  Notes that the open connection on fd carries the worker registration
    token (replacing any). Does nothing if fd is not open and admitted. */
void
dp_conns_set_token (dp_conns_t *self, int fd, uint64_t token);

/*  True if the connection on fd was refused: its messages are dropped. */
bool
dp_conns_refused (dp_conns_t *self, int fd);

/*  For a refused connection not yet answered: writes why into reason (a
    sentence naming the bound and its option), marks it answered (it is
    cut DP_CONNS_LINGER_MS later) and returns true; the caller answers
    with reason. Returns false otherwise. */
bool
dp_conns_answer (dp_conns_t *self, int fd, int64_t now, char *reason, size_t size);

/*  Cuts (shutdown(2)) the refused connections whose time is up: answered
    ones after DP_CONNS_LINGER_MS, silent ones after DP_CONNS_ANSWER_MS. */
void
dp_conns_tick (dp_conns_t *self, int64_t now);

/*  The counters and bounds. */
dp_conns_stats_t
dp_conns_stats (dp_conns_t *self);

#endif
