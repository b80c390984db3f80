/*  delay_relay.c - a slow link for the benchmark: a TCP forwarder that holds
    every chunk of bytes for half the round trip before passing it on, in
    each direction, so that a request and its answer cross a link of
    --delay-ms round trip. This machine's kernel has no netem qdisc; this is
    the link bench/run.py puts between dpool's workers and its broker
    (issue 19 item 2).

        workers --tcp--> [delay_relay --listen A --connect B] --tcp--> broker at B

    Each accepted connection gets its own connection to --connect. One
    thread, one epoll loop, no sleeping: each direction of a connection is
    a queue of chunks (the time it may leave, the bytes), filled by read()s
    as bytes arrive and drained by write()s once a chunk's time has come;
    a timerfd wakes the loop at the earliest such time. The bytes a
    direction holds are bounded (--buffer-bytes): past it, the relay stops
    reading from that side, so TCP's own flow control pushes back on the
    sender, as a slow link's would. An end-of-stream is passed on (as a
    half close) after the bytes before it; a reset or error closes both
    sides. Chunks keep their order and their bytes: it delays, never
    reorders, drops or changes anything. TCP_NODELAY on every socket, so
    that the only delay is the one asked for.

    Options: see --help. The chosen port is written to --port-file (when
    given) once the relay listens, so --listen HOST:0 works. SIGTERM or
    SIGINT ends it; it then prints one line of counters on stderr. Exits 0
    on a signal, 1 on a failure (said on stderr), 2 on a usage error.
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE     2
#define READ_SIZE      (64 * 1024)        /* bytes of one read(), at most one chunk */
#define DEFAULT_BUFFER (4L * 1024 * 1024) /* bytes one direction may hold */
#define MAX_BUFFER     (1L << 30)
#define MAX_DELAY_MS   60000
#define MAX_EVENTS     64
#define LISTEN_BACKLOG 128
#define HOSTPORT_SIZE  256
#define NS_PER_S       1000000000LL
#define NS_PER_MS      1000000LL
#define SIDE_DOWN      0 /* the accepted connection (the workers' side) */
#define SIDE_UP        1 /* the relay's connection to --connect (the broker's side) */
#define TAG_LISTEN     ((void *)1)
#define TAG_TIMER      ((void *)2)

/*  A chunk of bytes in flight: it may leave at due (monotonic ns). */
typedef struct s_chunk {
    struct s_chunk *next;
    int64_t due;
    size_t size, sent;
    uint8_t data[];
} s_chunk_t;

/*  One direction: bytes read from fd[from] waiting to be written to fd[to]. */
typedef struct {
    s_chunk_t *head, *tail;
    size_t bytes;
    bool eof;     /* the reading side ended; pass it on when drained */
    bool shut;    /* the half close was passed on */
    bool blocked; /* the writing side would block: wait for EPOLLOUT */
} s_dir_t;

struct s_pair;

/*  One socket of a pair; the epoll data points at it. */
typedef struct {
    struct s_pair *pair;
    int side;
    int fd;
    uint32_t events; /* what epoll watches now */
} s_end_t;

/*  One relayed connection: dir[SIDE_DOWN] carries bytes read from the
    down side to the up side, dir[SIDE_UP] the other way. */
typedef struct s_pair {
    struct s_pair *next;
    s_end_t end[2];
    s_dir_t dir[2];
    bool connected; /* the up side's connect() finished */
    bool dead;
} s_pair_t;

typedef struct {
    char listen[HOSTPORT_SIZE];
    char connect[HOSTPORT_SIZE];
    long delay_ms;
    long buffer;
    const char *port_file;
} s_options_t;

/*  The relay's whole state. */
typedef struct {
    s_options_t options;
    int64_t hold_ns; /* each direction's share of the round trip */
    struct sockaddr_in upstream;
    int epoll, listener, timer;
    s_pair_t *pairs;
    long accepted;
    uint64_t moved[2]; /* bytes written, per direction */
} s_relay_t;

static volatile sig_atomic_t s_stop = 0;

static void
s_on_signal (int sig)
{
    (void)sig;
    s_stop = 1;
}

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void __attribute__ ((noreturn)) s_die (const char *what)
{
    fprintf (stderr, "delay_relay: %s: %s\n", what, strerror (errno));
    exit (1);
}

/*  ---------------------------------------------------------------------------
    Options.
*/

static void
s_usage (FILE *out)
{
    fprintf (out,
             "Usage: delay_relay --listen HOST:PORT --connect HOST:PORT [OPTION]...\n"
             "Forwards every TCP connection made to --listen to --connect, holding each\n"
             "chunk of bytes for half of --delay-ms in each direction.\n"
             "\n"
             "  --listen HOST:PORT   where to accept (IPv4; port 0: any free port)\n"
             "  --connect HOST:PORT  where to forward each connection (IPv4)\n"
             "  --delay-ms D         the round trip the relay adds, in ms (default 0;\n"
             "                       each direction holds D/2)\n"
             "  --buffer-bytes N     bytes one direction of a connection may hold before\n"
             "                       the relay stops reading it (default %ld)\n"
             "  --port-file PATH     write the port listened on to PATH once listening\n"
             "  --help               this text\n",
             DEFAULT_BUFFER);
}

/*  Parses "HOST:PORT" (IPv4 dotted host) into addr; false if malformed. */
static bool
s_parse_hostport (const char *text, struct sockaddr_in *addr)
{
    char host[HOSTPORT_SIZE];
    const char *colon = strrchr (text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host)
        return false;
    memcpy (host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end;
    long port = strtol (colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535)
        return false;
    memset (addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons ((uint16_t)port);
    return inet_pton (AF_INET, host, &addr->sin_addr) == 1;
}

static long
s_parse_long (const char *text, long min, long max, const char *name)
{
    char *end;
    long value = strtol (text, &end, 10);
    if (!*text || *end || value < min || value > max) {
        fprintf (stderr, "delay_relay: %s is %ld..%ld\n", name, min, max);
        exit (EXIT_USAGE);
    }
    return value;
}

static void
s_parse_options (s_options_t *options, int argc, char *argv[])
{
    enum { OPT_LISTEN = 256, OPT_CONNECT, OPT_DELAY, OPT_BUFFER, OPT_PORT_FILE };
    static const struct option long_options[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"connect", required_argument, NULL, OPT_CONNECT},
        {"delay-ms", required_argument, NULL, OPT_DELAY},
        {"buffer-bytes", required_argument, NULL, OPT_BUFFER},
        {"port-file", required_argument, NULL, OPT_PORT_FILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    *options = (s_options_t){.delay_ms = 0, .buffer = DEFAULT_BUFFER};
    int opt;
    while ((opt = getopt_long (argc, argv, "h", long_options, NULL)) != -1) {
        if (opt == OPT_LISTEN)
            snprintf (options->listen, sizeof options->listen, "%s", optarg);
        else if (opt == OPT_CONNECT)
            snprintf (options->connect, sizeof options->connect, "%s", optarg);
        else if (opt == OPT_DELAY)
            options->delay_ms = s_parse_long (optarg, 0, MAX_DELAY_MS, "--delay-ms");
        else if (opt == OPT_BUFFER)
            options->buffer = s_parse_long (optarg, READ_SIZE, MAX_BUFFER, "--buffer-bytes");
        else if (opt == OPT_PORT_FILE)
            options->port_file = optarg;
        else if (opt == 'h') {
            s_usage (stdout);
            exit (0);
        } else {
            s_usage (stderr);
            exit (EXIT_USAGE);
        }
    }
    if (optind < argc || !options->listen[0] || !options->connect[0]) {
        s_usage (stderr);
        exit (EXIT_USAGE);
    }
}

/*  ---------------------------------------------------------------------------
    Sockets and epoll.
*/

static void
s_socket_tune (int fd)
{
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK);
}

/*  Watches exactly events on end's socket (0: none). */
static void
s_watch (s_relay_t *self, s_end_t *end, uint32_t events)
{
    if (end->fd < 0 || end->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = end};
    if (epoll_ctl (self->epoll, EPOLL_CTL_MOD, end->fd, &ev) != 0)
        s_die ("epoll_ctl");
    end->events = events;
}

/*  Writes the port listened on to the port file, atomically. */
static void
s_write_port_file (s_relay_t *self)
{
    struct sockaddr_in bound;
    socklen_t len = sizeof bound;
    if (getsockname (self->listener, (struct sockaddr *)&bound, &len) != 0)
        s_die ("getsockname");
    char tmp[HOSTPORT_SIZE * 2];
    snprintf (tmp, sizeof tmp, "%s.tmp", self->options.port_file);
    FILE *file = fopen (tmp, "w");
    if (!file)
        s_die (tmp);
    fprintf (file, "%u\n", (unsigned)ntohs (bound.sin_port));
    if (fclose (file) != 0 || rename (tmp, self->options.port_file) != 0)
        s_die (self->options.port_file);
}

static void
s_relay_open (s_relay_t *self)
{
    struct sockaddr_in where;
    if (!s_parse_hostport (self->options.listen, &where) ||
        !s_parse_hostport (self->options.connect, &self->upstream)) {
        fprintf (stderr, "delay_relay: --listen and --connect are IPv4 HOST:PORT\n");
        exit (EXIT_USAGE);
    }
    self->hold_ns = self->options.delay_ms * NS_PER_MS / 2;
    self->epoll = epoll_create1 (EPOLL_CLOEXEC);
    self->timer = timerfd_create (CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    self->listener = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (self->epoll < 0 || self->timer < 0 || self->listener < 0)
        s_die ("epoll, timerfd or socket");
    int one = 1;
    setsockopt (self->listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind (self->listener, (struct sockaddr *)&where, sizeof where) != 0 ||
        listen (self->listener, LISTEN_BACKLOG) != 0)
        s_die (self->options.listen);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = TAG_LISTEN};
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = TAG_TIMER};
    if (epoll_ctl (self->epoll, EPOLL_CTL_ADD, self->listener, &ev) != 0 ||
        epoll_ctl (self->epoll, EPOLL_CTL_ADD, self->timer, &tev) != 0)
        s_die ("epoll_ctl");
    if (self->options.port_file)
        s_write_port_file (self);
}

/*  ---------------------------------------------------------------------------
    Pairs: one relayed connection each.
*/

static void
s_pair_free (s_relay_t *self, s_pair_t *pair)
{
    for (int side = 0; side < 2; side++) {
        if (pair->end[side].fd >= 0) {
            epoll_ctl (self->epoll, EPOLL_CTL_DEL, pair->end[side].fd, NULL);
            close (pair->end[side].fd);
        }
        s_chunk_t *chunk = pair->dir[side].head;
        while (chunk) {
            s_chunk_t *next = chunk->next;
            free (chunk);
            chunk = next;
        }
    }
    free (pair);
}

/*  Accepts one connection and starts its connection upstream; a failure
    upstream closes the accepted one (its peer sees the link refused). */
static void
s_pair_accept (s_relay_t *self, int fd)
{
    s_pair_t *pair = calloc (1, sizeof *pair);
    int up = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!pair || up < 0) {
        fprintf (stderr, "delay_relay: no memory or socket for a connection\n");
        free (pair);
        close (fd);
        if (up >= 0)
            close (up);
        return;
    }
    s_socket_tune (fd);
    s_socket_tune (up);
    int rc = connect (up, (struct sockaddr *)&self->upstream, sizeof self->upstream);
    pair->connected = rc == 0;
    int fds[2] = {fd, up};
    /*  Until the up side is connected, watch only for that (EPOLLOUT). */
    uint32_t events[2] = {EPOLLIN, pair->connected ? EPOLLIN : EPOLLOUT};
    for (int side = 0; side < 2; side++) {
        pair->end[side] = (s_end_t){pair, side, fds[side], events[side]};
        struct epoll_event ev = {.events = events[side], .data.ptr = &pair->end[side]};
        if (epoll_ctl (self->epoll, EPOLL_CTL_ADD, fds[side], &ev) != 0)
            s_die ("epoll_ctl");
    }
    if (rc != 0 && errno != EINPROGRESS)
        pair->dead = true;
    pair->next = self->pairs;
    self->pairs = pair;
    self->accepted++;
}

static void
s_accept_all (s_relay_t *self)
{
    while (true) {
        int fd = accept4 (self->listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                fprintf (stderr, "delay_relay: accept: %s\n", strerror (errno));
            return;
        }
        s_pair_accept (self, fd);
    }
}

/*  Reads what side has into its direction's queue, up to the buffer
    bound; every chunk read now may leave at now + hold. */
static void
s_pair_read (s_relay_t *self, s_pair_t *pair, int side, int64_t now)
{
    static uint8_t buffer[READ_SIZE];
    s_dir_t *dir = &pair->dir[side];
    while (!dir->eof && dir->bytes < (size_t)self->options.buffer) {
        ssize_t got = read (pair->end[side].fd, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (got < 0) {
            pair->dead = true;
            return;
        }
        if (got == 0) {
            dir->eof = true;
            return;
        }
        s_chunk_t *chunk = malloc (sizeof *chunk + (size_t)got);
        if (!chunk) {
            pair->dead = true;
            return;
        }
        *chunk = (s_chunk_t){NULL, now + self->hold_ns, (size_t)got, 0};
        memcpy (chunk->data, buffer, (size_t)got);
        if (dir->tail)
            dir->tail->next = chunk;
        else
            dir->head = chunk;
        dir->tail = chunk;
        dir->bytes += (size_t)got;
    }
}

/*  Writes every chunk of side's direction whose time has come to the
    other side; stops at the first that would block (blocked is set). */
static void
s_pair_flush (s_relay_t *self, s_pair_t *pair, int side, int64_t now)
{
    s_dir_t *dir = &pair->dir[side];
    int to = pair->end[!side].fd;
    dir->blocked = false;
    while (dir->head && dir->head->due <= now) {
        s_chunk_t *chunk = dir->head;
        ssize_t put = send (to, chunk->data + chunk->sent, chunk->size - chunk->sent,
                            MSG_NOSIGNAL | MSG_DONTWAIT);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            dir->blocked = true;
            return;
        }
        if (put < 0) {
            pair->dead = true;
            return;
        }
        chunk->sent += (size_t)put;
        self->moved[side] += (uint64_t)put;
        if (chunk->sent < chunk->size)
            continue;
        dir->head = chunk->next;
        if (!dir->head)
            dir->tail = NULL;
        dir->bytes -= chunk->size;
        free (chunk);
    }
    if (dir->eof && !dir->head && !dir->shut) {
        shutdown (to, SHUT_WR);
        dir->shut = true;
    }
}

/*  Handles epoll's events on one end of a pair. */
static void
s_pair_event (s_relay_t *self, s_end_t *end, uint32_t events, int64_t now)
{
    s_pair_t *pair = end->pair;
    if (end->side == SIDE_UP && !pair->connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int error = 0;
        socklen_t len = sizeof error;
        getsockopt (end->fd, SOL_SOCKET, SO_ERROR, &error, &len);
        if (error != 0) {
            pair->dead = true;
            return;
        }
        pair->connected = true;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        s_pair_read (self, pair, end->side, now);
}

/*  What each end of a live pair should be watched for now. */
static void
s_pair_rewatch (s_relay_t *self, s_pair_t *pair)
{
    if (!pair->connected) {
        s_watch (self, &pair->end[SIDE_DOWN], EPOLLIN);
        s_watch (self, &pair->end[SIDE_UP], EPOLLOUT);
        return;
    }
    for (int side = 0; side < 2; side++) {
        const s_dir_t *in = &pair->dir[side];   /* read from this side */
        const s_dir_t *out = &pair->dir[!side]; /* written to this side */
        uint32_t events = 0;
        if (!in->eof && in->bytes < (size_t)self->options.buffer)
            events |= EPOLLIN;
        if (out->blocked)
            events |= EPOLLOUT;
        s_watch (self, &pair->end[side], events);
    }
}

/*  True once both directions ended and were passed on. */
static bool
s_pair_done (const s_pair_t *pair)
{
    return pair->dir[0].shut && pair->dir[1].shut;
}

/*  Flushes every pair, frees the ended ones, sets what epoll watches, and
    returns the earliest time a queued chunk may leave (0: none). */
static int64_t
s_relay_service (s_relay_t *self, int64_t now)
{
    int64_t next = 0;
    s_pair_t **link = &self->pairs;
    while (*link) {
        s_pair_t *pair = *link;
        for (int side = 0; side < 2 && !pair->dead && pair->connected; side++)
            s_pair_flush (self, pair, side, now);
        if (pair->dead || s_pair_done (pair)) {
            *link = pair->next;
            s_pair_free (self, pair);
            continue;
        }
        s_pair_rewatch (self, pair);
        for (int side = 0; side < 2; side++) {
            const s_chunk_t *head = pair->dir[side].head;
            if (head && !pair->dir[side].blocked && (next == 0 || head->due < next))
                next = head->due;
        }
        link = &pair->next;
    }
    return next;
}

/*  Arms the timer for the absolute monotonic time due (0: disarms it). */
static void
s_timer_arm (s_relay_t *self, int64_t due)
{
    struct itimerspec spec = {{0, 0}, {0, 0}};
    if (due > 0) {
        spec.it_value.tv_sec = (time_t)(due / NS_PER_S);
        spec.it_value.tv_nsec = (long)(due % NS_PER_S);
    }
    if (timerfd_settime (self->timer, TFD_TIMER_ABSTIME, &spec, NULL) != 0)
        s_die ("timerfd_settime");
}

static void
s_relay_run (s_relay_t *self)
{
    struct epoll_event events[MAX_EVENTS];
    while (!s_stop) {
        int count = epoll_wait (self->epoll, events, MAX_EVENTS, -1);
        if (count < 0 && errno == EINTR)
            continue;
        if (count < 0)
            s_die ("epoll_wait");
        int64_t now = s_now_ns ();
        for (int i = 0; i < count; i++) {
            void *tag = events[i].data.ptr;
            if (tag == TAG_LISTEN)
                s_accept_all (self);
            else if (tag == TAG_TIMER) {
                uint64_t expirations;
                if (read (self->timer, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
                    s_die ("timerfd read");
            } else
                s_pair_event (self, tag, events[i].events, now);
        }
        s_timer_arm (self, s_relay_service (self, s_now_ns ()));
    }
}

int
main (int argc, char *argv[])
{
    s_relay_t relay = {0};
    s_parse_options (&relay.options, argc, argv);
    struct sigaction action = {.sa_handler = s_on_signal};
    sigemptyset (&action.sa_mask);
    sigaction (SIGTERM, &action, NULL);
    sigaction (SIGINT, &action, NULL);
    signal (SIGPIPE, SIG_IGN);
    s_relay_open (&relay);
    s_relay_run (&relay);
    while (relay.pairs) {
        s_pair_t *next = relay.pairs->next;
        s_pair_free (&relay, relay.pairs);
        relay.pairs = next;
    }
    fprintf (stderr,
             "delay_relay: %ld connections; %llu bytes relayed down to up, %llu up to down\n",
             relay.accepted, (unsigned long long)relay.moved[SIDE_DOWN],
             (unsigned long long)relay.moved[SIDE_UP]);
    close (relay.listener);
    close (relay.timer);
    close (relay.epoll);
    return 0;
}
