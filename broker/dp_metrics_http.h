/*  dp_metrics_http.h - the HTTP endpoint of dpool-broker --metrics-bind.

    Serves GET /metrics (and HEAD) with a text its caller renders, through
    libmicrohttpd, run from the broker's own poll loop: the daemon has no
    thread of its own (MHD's external polling, in epoll mode, so that it is
    one descriptor beside the broker's), and the render callback runs on
    the thread that calls dp_metrics_http_work, which is the broker's. So
    the broker's state is read where it is owned, with no lock and no
    snapshot (docs/ARCHITECTURE.md, one thread per broker). A scrape costs
    the loop one render; connections are bounded (DP_METRICS_HTTP_CONNS)
    and idle ones closed after DP_METRICS_HTTP_TIMEOUT_S.

    Part of the dpool-broker program only: libdpool does not link
    libmicrohttpd.
*/
#ifndef DP_METRICS_HTTP_H_INCLUDED
#define DP_METRICS_HTTP_H_INCLUDED

#include <stddef.h>

#define DP_METRICS_HTTP_CONNS     16 /* connections served at once */
#define DP_METRICS_HTTP_TIMEOUT_S 10 /* an idle connection is closed after this */
#define DP_METRICS_PATH           "/metrics"

typedef struct _dp_metrics_http_t dp_metrics_http_t;

/*  Renders the page: returns a string the server frees and its length in
 *size, or NULL (answered 503). */
typedef char *(dp_metrics_render_fn)(void *arg, size_t *size);

/*  Listens on bind, "HOST:PORT" ("[HOST]:PORT" for IPv6; port 0 lets the
    kernel pick one), serving what render returns. Returns NULL (logged
    why) if bind is malformed or cannot be bound. */
dp_metrics_http_t *
dp_metrics_http_new (const char *bind, dp_metrics_render_fn *render, void *arg);

/*  Stops serving, closes every connection and nulls *self_p; harmless on
    NULL. */
void
dp_metrics_http_destroy (dp_metrics_http_t **self_p);

/*  The port it listens on. */
unsigned
dp_metrics_http_port (dp_metrics_http_t *self);

/*  The one descriptor to poll for POLLIN, and how long the poll may wait
    for the server's sake (-1: as long as it likes). */
int
dp_metrics_http_fd (dp_metrics_http_t *self);
int
dp_metrics_http_wait_ms (dp_metrics_http_t *self);

/*  Serves what is ready, without blocking: call it after a poll that found
    the descriptor readable, or when the wait above ran out. */
void
dp_metrics_http_work (dp_metrics_http_t *self);

#endif
