/*  dp_conns.c - the broker's connections, as its ROUTER's monitor reports
    them. The contract is in dp_conns.h.
*/
#include "dp_conns.h"

#include <arpa/inet.h>
#include <assert.h>
#include <czmq.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <zmq.h>

typedef enum { CONN_NONE = 0, CONN_OPEN, CONN_REFUSING } conn_state_t;
typedef enum { BOUND_TOTAL = 1, BOUND_ADDR } conn_bound_t;

/*  One descriptor's connection. addr is empty for one without an IP
    address (ipc://), which only the total bounds. */
typedef struct {
    uint8_t state;
    uint8_t bound; /* CONN_REFUSING: the bound it passed */
    bool answered; /* CONN_REFUSING: told why */
    uint16_t port;
    int64_t deadline; /* CONN_REFUSING: when it is cut */
    uint64_t token;   /* CONN_OPEN: the worker registered on it; 0 none */
    char addr[INET6_ADDRSTRLEN];
} conn_t;

struct _dp_conns_t {
    conn_t *conns; /* by descriptor */
    size_t cap;
    zhashx_t *per_addr; /* address -> admitted connections from it (a count) */
    size_t refusing;
    bool curve; /* the ROUTER is a CURVE server */
    dp_conns_stats_t stats;
};

dp_conns_t *
dp_conns_new (size_t max_total, size_t max_per_addr, bool curve)
{
    dp_conns_t *self = (dp_conns_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->per_addr = zhashx_new ();
    if (!self->per_addr) {
        free (self);
        return NULL;
    }
    self->curve = curve;
    self->stats.max_total = max_total;
    self->stats.max_per_addr = max_per_addr;
    return self;
}

void
dp_conns_destroy (dp_conns_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_conns_t *self = *self_p;
        zhashx_destroy (&self->per_addr);
        free (self->conns);
        free (self);
        *self_p = NULL;
    }
}

/*  The slot of fd, grown into if needed; NULL if fd is negative or out of
    memory. */
static conn_t *
s_slot (dp_conns_t *self, int fd, bool grow)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= self->cap) {
        if (!grow)
            return NULL;
        size_t cap = self->cap ? self->cap : 256;
        while (cap <= (size_t)fd)
            cap *= 2;
        conn_t *more = (conn_t *)realloc (self->conns, cap * sizeof *more);
        if (!more)
            return NULL;
        memset (more + self->cap, 0, (cap - self->cap) * sizeof *more);
        self->conns = more;
        self->cap = cap;
    }
    return &self->conns[fd];
}

/*  The peer address and port of a descriptor; addr empty if it has none. */
static void
s_peer_of (int fd, char *addr, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    addr[0] = 0;
    *port = 0;
    if (getpeername (fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop (AF_INET, &in->sin_addr, addr, INET6_ADDRSTRLEN);
        *port = ntohs (in->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop (AF_INET6, &in6->sin6_addr, addr, INET6_ADDRSTRLEN);
        *port = ntohs (in6->sin6_port);
    }
}

static size_t
s_addr_count (dp_conns_t *self, const char *addr)
{
    return (size_t)(uintptr_t)zhashx_lookup (self->per_addr, addr);
}

static void
s_addr_add (dp_conns_t *self, const char *addr, int delta)
{
    size_t count = s_addr_count (self, addr) + (size_t)(ssize_t)delta;
    if (count == 0)
        zhashx_delete (self->per_addr, addr);
    else
        zhashx_update (self->per_addr, addr, (void *)(uintptr_t)count);
}

/*  Cuts the connection on fd, if it is still the one recorded there (the
    same peer address and port): libzmq then sees it end and closes it. */
static void
s_cut (conn_t *conn, int fd)
{
    char addr[INET6_ADDRSTRLEN];
    uint16_t port;
    s_peer_of (fd, addr, &port);
    if (strcmp (addr, conn->addr) == 0 && port == conn->port)
        shutdown (fd, SHUT_RDWR);
}

/*  The connection on fd is gone: forgets it; returns its worker token. */
static uint64_t
s_closed (dp_conns_t *self, conn_t *conn)
{
    uint64_t token = 0;
    if (conn->state == CONN_OPEN) {
        token = conn->token;
        self->stats.open--;
        if (conn->addr[0])
            s_addr_add (self, conn->addr, -1);
    } else if (conn->state == CONN_REFUSING)
        self->refusing--;
    memset (conn, 0, sizeof *conn);
    return token;
}

/*  A connection accepted on fd: admitted, or refused beyond a bound. A
    connection still recorded on fd closed before it (its event was lost):
    returns its token. */
static uint64_t
s_accepted (dp_conns_t *self, int fd, int64_t now)
{
    conn_t *conn = s_slot (self, fd, true);
    if (!conn)
        return 0;
    uint64_t token = s_closed (self, conn);
    self->stats.accepted++;
    s_peer_of (fd, conn->addr, &conn->port);
    if (self->stats.open >= self->stats.max_total)
        conn->bound = BOUND_TOTAL;
    else if (conn->addr[0] && s_addr_count (self, conn->addr) >= self->stats.max_per_addr)
        conn->bound = BOUND_ADDR;
    if (!conn->bound) {
        conn->state = CONN_OPEN;
        self->stats.open++;
        if (conn->addr[0])
            s_addr_add (self, conn->addr, 1);
        return token;
    }
    self->stats.refused++;
    if (self->refusing >= DP_CONNS_REFUSING) {
        s_cut (conn, fd); /* too many wait already: no answer */
        memset (conn, 0, sizeof *conn);
        return token;
    }
    conn->state = CONN_REFUSING;
    conn->deadline = now + DP_CONNS_ANSWER_MS;
    self->refusing++;
    return token;
}

/*  A failed handshake: a refusal of CURVE or ZAP (a key not admitted, a
    wrong server key, another mechanism than the broker's; with CURVE, a
    peer that hung up in the middle, which is how a peer that refuses the
    broker's key or mechanism ends it), or anything else (bytes that are
    not ZMTP; without CURVE, a peer gone in the middle). */
static void
s_handshake_failed (dp_conns_t *self, uint16_t id, uint32_t value)
{
    bool security = id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                    (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
                     (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC ||
                      value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ||
                      (value & 0xF0000000u) == ZMQ_PROTOCOL_ERROR_ZAP_UNSPECIFIED)) ||
                    (id == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && self->curve);
    if (security)
        self->stats.handshake_failed++;
    else
        self->stats.protocol_errors++;
}

uint64_t
dp_conns_event (dp_conns_t *self, uint16_t id, uint32_t value, int64_t now)
{
    assert (self);
    conn_t *conn;
    switch (id) {
    case ZMQ_EVENT_ACCEPTED:
        return s_accepted (self, (int)value, now);
    case ZMQ_EVENT_DISCONNECTED:
        self->stats.disconnected++;
        conn = s_slot (self, (int)value, false);
        return conn ? s_closed (self, conn) : 0;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        s_handshake_failed (self, id, value);
        return 0;
    default:
        return 0;
    }
}

void
dp_conns_set_token (dp_conns_t *self, int fd, uint64_t token)
{
    assert (self);
    conn_t *conn = s_slot (self, fd, false);
    if (conn && conn->state == CONN_OPEN)
        conn->token = token;
}

bool
dp_conns_refused (dp_conns_t *self, int fd)
{
    assert (self);
    conn_t *conn = s_slot (self, fd, false);
    return conn && conn->state == CONN_REFUSING;
}

bool
dp_conns_answer (dp_conns_t *self, int fd, int64_t now, char *reason, size_t size)
{
    assert (self && reason);
    conn_t *conn = s_slot (self, fd, false);
    if (!conn || conn->state != CONN_REFUSING || conn->answered)
        return false;
    if (conn->bound == BOUND_TOTAL)
        snprintf (reason, size,
                  "too many connections: the broker admits %zu "
                  "(dpool-broker --max-connections)",
                  self->stats.max_total);
    else
        snprintf (reason, size,
                  "too many connections from %s: the broker admits %zu per address "
                  "(dpool-broker --max-peer-connections)",
                  conn->addr, self->stats.max_per_addr);
    conn->answered = true;
    conn->deadline = now + DP_CONNS_LINGER_MS;
    return true;
}

void
dp_conns_tick (dp_conns_t *self, int64_t now)
{
    assert (self);
    for (size_t fd = 0; self->refusing > 0 && fd < self->cap; fd++) {
        conn_t *conn = &self->conns[fd];
        if (conn->state == CONN_REFUSING && now >= conn->deadline) {
            s_cut (conn, (int)fd);
            s_closed (self, conn);
        }
    }
}

dp_conns_stats_t
dp_conns_stats (dp_conns_t *self)
{
    assert (self);
    return self->stats;
}
