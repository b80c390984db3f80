/*  dp_curve.h - CURVE keys for dpool's connections (ZeroMQ RFC 26).

    A broker given a secret key is a CURVE server: every connection to it
    is encrypted, and clients and workers must know its public key. Keys are
    Z85 text (40 characters). Key files are CZMQ's certificates, written
    by zcert_save, ZPL text of this layout:

        curve
            public-key = "<40 characters>"
            secret-key = "<40 characters>"     (secret files only)

    They are read into a buffer of our own (a readable regular file of at
    most 64 KiB, wiped after use, as are the parsed values) and parsed by
    CZMQ's ZPL reader (zconfig_chunk_load). That reader prints the rest of
    a line it cannot parse on stdout; so that a hand-edited secret file
    never shows its key there, the text is parsed first with every
    character replaced by one the reader cannot tell from it ('x' for a
    letter, digit or other character of a name, '~' for other punctuation;
    spaces, quotes, '=', '#' and '/' kept), and only if that parses is the
    text itself parsed, which then parses too, silently. A bad line shows
    only that pattern. Every error names the path and what is wrong: the
    public key's text must be Z85, and a secret file's secret key must be
    there and be the public key's.

    As CZMQ names a certificate by its public file P, with P_secret beside
    it: where a secret key file is expected, a file P with no secret-key
    reads P_secret instead when that exists, whose public key must be P's.
    Where a public key is expected, only P itself is read.

    Loading happens once at start-up, before any fork; applying to a
    socket uses plain libzmq only, so it is safe in a forked worker.
*/
#ifndef DP_CURVE_H_INCLUDED
#define DP_CURVE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#define DP_CURVE_KEY 40 /* Z85 characters of a key */

typedef struct {
    bool on;                        /* use CURVE at all */
    char server[DP_CURVE_KEY + 1];  /* client side: the broker's public key */
    char public_[DP_CURVE_KEY + 1]; /* our own public key */
    char secret[DP_CURVE_KEY + 1];  /* our own secret key */
} dp_curve_t;

/*  Client side (worker, client program): server is the broker's public key,
    as 40 Z85 characters or the path of a key file holding public-key.
    secret is the path of our own secret key file, or NULL: a fresh key
    pair for this process (enough when the broker accepts any client).
    Fills curve; returns 0, or -1 with a reason in err. */
int
dp_curve_client (dp_curve_t *curve, const char *server, const char *secret, char *err,
                 size_t err_size);

/*  As dp_curve_client, but server and secret both NULL mean the
    DPOOL_CURVE_SERVER and DPOOL_CURVE_SECRET environment variables, and
    no server key at all leaves CURVE off (curve->on false, returns 0). A
    secret key without a server key is an error. */
int
dp_curve_client_env (dp_curve_t *curve, const char *server, const char *secret, char *err,
                     size_t err_size);

/*  True if text is exactly a key: 40 characters of Z85. */
bool
dp_curve_is_key (const char *text);

/*  From keys held in memory rather than in files (an SPMD job's, made by
    rank 0 and handed out through its bootstrap): secret is our own secret
    key and server the broker's public key (NULL on the broker's side), as
    40 Z85 characters each; our public key is derived. Fills curve;
    returns 0, or -1 with a reason in err. */
int
dp_curve_from_keys (dp_curve_t *curve, const char *server, const char *secret, char *err,
                    size_t err_size);

/*  Server side (broker): secret is the path of its secret key file. */
int
dp_curve_server (dp_curve_t *curve, const char *secret, char *err, size_t err_size);

/*  Sets the socket's CURVE options from curve (nothing if !curve->on);
    before connect or bind. Returns 0 or -1 (errno). */
int
dp_curve_apply (void *socket, const dp_curve_t *curve, bool server);

/*  Writes a new key pair through zcert_save: path (public key only: safe
    to hand out) and path_secret (both keys, mode 0600). Refuses to
    overwrite either file. Returns 0, or -1 with a reason in err. */
int
dp_curve_keygen (const char *path, char *err, size_t err_size);

/*  Reads the public key from a key file (or takes key itself if it is 40
    Z85 characters) into out. Returns 0 or -1 with a reason in err. */
int
dp_curve_public (const char *key, char out[DP_CURVE_KEY + 1], char *err, size_t err_size);

#endif
