/*  dp_rendezvous.c - rank 0's card, as text and as a file. */
#include "dp_rendezvous.h"

#include "dp_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CARD_MAGIC "dpool-spmd 1"

int
dp_card_format (const dp_card_t *card, char *out, size_t size)
{
    int n;
    if (card->endpoint[0] && card->curve_secret[0])
        n = snprintf (out, size,
                      CARD_MAGIC "\njob %s\nsize %d\nendpoint %s\ncurve-server %s\n"
                                 "curve-secret %s\n",
                      card->job[0] ? card->job : "-", card->size, card->endpoint,
                      card->curve_server, card->curve_secret);
    else if (card->endpoint[0])
        n = snprintf (out, size, CARD_MAGIC "\njob %s\nsize %d\nendpoint %s\n",
                      card->job[0] ? card->job : "-", card->size, card->endpoint);
    else
        n = snprintf (out, size, CARD_MAGIC "\njob %s\nsize %d\nerror %s\n",
                      card->job[0] ? card->job : "-", card->size, card->error);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/*  Copies a value of len bytes into field (of size bytes); -1 if it does
    not fit or is empty. */
static int
s_field (char *field, size_t size, const char *value, size_t len)
{
    if (len == 0 || len >= size)
        return -1;
    memcpy (field, value, len);
    field[len] = 0;
    return 0;
}

/*  A CURVE key's value into field (DP_CURVE_KEY + 1 bytes); -1 unless
    it is 40 characters of Z85. */
static int
s_key (char *field, const char *value, size_t len)
{
    if (s_field (field, DP_CURVE_KEY + 1, value, len) || !dp_curve_is_key (field)) {
        field[0] = 0;
        return -1;
    }
    return 0;
}

/*  One "key value" line of len bytes. Returns 0 or -1. */
static int
s_parse_line (const char *line, size_t len, dp_card_t *card)
{
    const char *space = memchr (line, ' ', len);
    if (!space)
        return -1;
    size_t key = (size_t)(space - line);
    const char *value = space + 1;
    size_t vlen = len - key - 1;
    if (key == 3 && memcmp (line, "job", 3) == 0) {
        if (vlen == 1 && *value == '-')
            return 0;
        return s_field (card->job, sizeof card->job, value, vlen);
    }
    if (key == 8 && memcmp (line, "endpoint", 8) == 0)
        return s_field (card->endpoint, sizeof card->endpoint, value, vlen);
    if (key == 12 && memcmp (line, "curve-server", 12) == 0)
        return s_key (card->curve_server, value, vlen);
    if (key == 12 && memcmp (line, "curve-secret", 12) == 0)
        return s_key (card->curve_secret, value, vlen);
    if (key == 5 && memcmp (line, "error", 5) == 0)
        return s_field (card->error, sizeof card->error, value, vlen);
    if (key == 4 && memcmp (line, "size", 4) == 0) {
        char number[16];
        long size;
        if (s_field (number, sizeof number, value, vlen) ||
            dp_parse_int (number, 1, INT_MAX, &size))
            return -1;
        card->size = (int)size;
        return 0;
    }
    return -1;
}

/*  dp_card_parse's work; card may hold part of a card on failure. */
static int
s_parse (const char *text, dp_card_t *card)
{
    size_t magic = strlen (CARD_MAGIC);
    if (strncmp (text, CARD_MAGIC, magic) != 0 || text[magic] != '\n')
        return -1;
    const char *line = text + magic + 1;
    while (*line) {
        const char *eol = strchr (line, '\n');
        if (!eol || s_parse_line (line, (size_t)(eol - line), card))
            return -1;
        line = eol + 1;
    }
    /*  Exactly one of endpoint and error; both CURVE keys or neither,
        and only with an endpoint. */
    if (card->size == 0 || !card->endpoint[0] == !card->error[0] ||
        !card->curve_server[0] != !card->curve_secret[0] ||
        (card->curve_secret[0] && !card->endpoint[0]))
        return -1;
    return 0;
}

int
dp_card_parse (const char *text, dp_card_t *card)
{
    memset (card, 0, sizeof *card);
    if (s_parse (text, card) == 0)
        return 0;
    explicit_bzero (card, sizeof *card); /* no half-read secret left behind */
    return -1;
}

dp_rendezvous_kind_t
dp_rendezvous_kind (const char *rendezvous, const char **path)
{
    if (!rendezvous)
        return DP_RENDEZVOUS_NONE;
    if (strncmp (rendezvous, "file:", 5) == 0 && rendezvous[5]) {
        *path = rendezvous + 5;
        return DP_RENDEZVOUS_FILE;
    }
    if (strncmp (rendezvous, "tcp://", 6) == 0 && strrchr (rendezvous + 6, ':'))
        return DP_RENDEZVOUS_TCP;
    return DP_RENDEZVOUS_NONE;
}

int
dp_rendezvous_write (const char *path, const char *text)
{
    char temp[PATH_MAX];
    if (snprintf (temp, sizeof temp, "%s.XXXXXX", path) >= (int)sizeof temp) {
        dp_error ("spmd: rendezvous path too long: %s", path);
        return -1;
    }
    int fd = mkstemp (temp); /* mode 0600 */
    if (fd < 0) {
        dp_error ("spmd: cannot write the rendezvous %s: %s", path, strerror (errno));
        return -1;
    }
    size_t len = strlen (text);
    bool ok = write (fd, text, len) == (ssize_t)len && fsync (fd) == 0;
    ok = close (fd) == 0 && ok;
    if (!ok || rename (temp, path) != 0) {
        dp_error ("spmd: cannot write the rendezvous %s: %s", path, strerror (errno));
        unlink (temp);
        return -1;
    }
    return 0;
}

/*  True if the open file fd is as rank 0 writes its card: a regular file
    of this user, closed to everyone else. Any other (planted by another
    user, or open to them) is not taken: it is logged once (*warned). */
static bool
s_card_file_ok (int fd, const char *path, bool *warned)
{
    struct stat st;
    if (fstat (fd, &st) == 0 && S_ISREG (st.st_mode) && st.st_uid == geteuid () &&
        (st.st_mode & 077) == 0)
        return true;
    if (!*warned)
        dp_warn ("spmd: ignoring the rendezvous %s: not a file of this user with mode 0600", path);
    *warned = true;
    return false;
}

/*  Reads path's card (at most DP_CARD_SIZE - 1 bytes); 0 or -1. */
static int
s_read_card (const char *path, dp_card_t *card, bool *warned)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -1;
    if (!s_card_file_ok (fd, path, warned)) {
        close (fd);
        return -1;
    }
    char text[DP_CARD_SIZE];
    ssize_t n = read (fd, text, sizeof text - 1);
    close (fd);
    if (n <= 0)
        return -1;
    text[n] = 0;
    int rc = dp_card_parse (text, card);
    explicit_bzero (text, sizeof text);
    return rc;
}

int
dp_rendezvous_wait (const char *path, const char *job, int size, int timeout_ms, dp_card_t *card)
{
    int64_t deadline = dp_now_ms () + timeout_ms;
    bool warned = false;
    for (;;) {
        if (s_read_card (path, card, &warned) == 0 && card->size == size &&
            strcmp (card->job, job) == 0)
            return 0;
        if (dp_now_ms () >= deadline)
            return -1;
        struct timespec pause = {0, DP_RENDEZVOUS_MS * 1000000L};
        nanosleep (&pause, NULL);
    }
}
