/*  dp_metrics_http.c - the HTTP endpoint of dpool-broker --metrics-bind,
    on libmicrohttpd driven from the broker's loop. The contract is in
    dp_metrics_http.h.
*/
#include "dp_metrics_http.h"

#include "dp_util.h"

#include <assert.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define HOST_MAX     256

struct _dp_metrics_http_t {
    struct MHD_Daemon *daemon;
    dp_metrics_render_fn *render;
    void *arg;
    unsigned port;
};

/*  Queues a short plain-text answer. */
static enum MHD_Result
s_answer (struct MHD_Connection *connection, unsigned status, const char *text)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer (strlen (text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header (response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response (connection, status, response);
    MHD_destroy_response (response);
    return rc;
}

/*  Answers one request: GET or HEAD of DP_METRICS_PATH gets the rendered
    page; other paths 404, other methods 405. Runs inside MHD_run, on the
    broker's thread. */
static enum MHD_Result
s_on_request (void *cls, struct MHD_Connection *connection, const char *url, const char *method,
              const char *version, const char *upload_data, size_t *upload_data_size,
              void **con_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    dp_metrics_http_t *self = (dp_metrics_http_t *)cls;
    if (strcmp (method, MHD_HTTP_METHOD_GET) != 0 && strcmp (method, MHD_HTTP_METHOD_HEAD) != 0)
        return s_answer (connection, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (strcmp (url, DP_METRICS_PATH) != 0)
        return s_answer (connection, MHD_HTTP_NOT_FOUND, "not found: try " DP_METRICS_PATH "\n");
    size_t size = 0;
    char *text = self->render (self->arg, &size);
    if (!text)
        return s_answer (connection, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory\n");
    struct MHD_Response *response =
        MHD_create_response_from_buffer (size, text, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free (text);
        return MHD_NO;
    }
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
    enum MHD_Result rc = MHD_queue_response (connection, MHD_HTTP_OK, response);
    MHD_destroy_response (response);
    return rc;
}

/*  Resolves "HOST:PORT" or "[HOST]:PORT" into *result (freeaddrinfo).
    Returns 0, or -1 (logged why). */
static int
s_resolve (const char *bind, struct addrinfo **result)
{
    const char *colon = strrchr (bind, ':');
    char host[HOST_MAX];
    long port;
    if (!colon || colon == bind || (size_t)(colon - bind) >= sizeof host ||
        dp_parse_int (colon + 1, 0, 65535, &port) != 0) {
        dp_error ("--metrics-bind '%s': expected HOST:PORT", bind);
        return -1;
    }
    size_t length = (size_t)(colon - bind);
    if (bind[0] == '[' && bind[length - 1] == ']')
        snprintf (host, sizeof host, "%.*s", (int)length - 2, bind + 1);
    else
        snprintf (host, sizeof host, "%.*s", (int)length, bind);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    int rc = getaddrinfo (host, colon + 1, &hints, result);
    if (rc != 0) {
        dp_error ("--metrics-bind '%s': %s", bind, gai_strerror (rc));
        return -1;
    }
    return 0;
}

dp_metrics_http_t *
dp_metrics_http_new (const char *bind, dp_metrics_render_fn *render, void *arg)
{
    assert (bind && render);
    struct addrinfo *address;
    if (s_resolve (bind, &address) != 0)
        return NULL;
    dp_metrics_http_t *self = (dp_metrics_http_t *)calloc (1, sizeof *self);
    if (!self) {
        freeaddrinfo (address);
        return NULL;
    }
    self->render = render;
    self->arg = arg;
    unsigned flags = MHD_USE_EPOLL | (address->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    self->daemon = MHD_start_daemon (
        flags, 0, NULL, NULL, s_on_request, self, MHD_OPTION_SOCK_ADDR, address->ai_addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)DP_METRICS_HTTP_CONNS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)DP_METRICS_HTTP_TIMEOUT_S, MHD_OPTION_END);
    freeaddrinfo (address);
    const union MHD_DaemonInfo *info =
        self->daemon ? MHD_get_daemon_info (self->daemon, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    if (!info) {
        dp_error ("--metrics-bind '%s': cannot listen there", bind);
        dp_metrics_http_destroy (&self);
        return NULL;
    }
    self->port = info->port;
    return self;
}

void
dp_metrics_http_destroy (dp_metrics_http_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_metrics_http_t *self = *self_p;
        if (self->daemon)
            MHD_stop_daemon (self->daemon);
        free (self);
        *self_p = NULL;
    }
}

unsigned
dp_metrics_http_port (dp_metrics_http_t *self)
{
    assert (self);
    return self->port;
}

int
dp_metrics_http_fd (dp_metrics_http_t *self)
{
    assert (self);
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info (self->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    return info ? info->epoll_fd : -1;
}

int
dp_metrics_http_wait_ms (dp_metrics_http_t *self)
{
    assert (self);
    MHD_UNSIGNED_LONG_LONG timeout;
    if (MHD_get_timeout (self->daemon, &timeout) != MHD_YES)
        return -1;
    return timeout > INT32_MAX ? INT32_MAX : (int)timeout;
}

void
dp_metrics_http_work (dp_metrics_http_t *self)
{
    assert (self);
    MHD_run (self->daemon);
}
