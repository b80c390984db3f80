/*  dp_curve.c - CURVE keys: key files, and the socket options they set.

    Locking: none; every call works on what the caller passes.
*/
#include "dp_curve.h"
#include "dp_util.h"

#include <ctype.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define KEY_FILE_MAX (64 * 1024) /* a key file is a few hundred bytes */
#define KEY_BINARY   32          /* bytes of a binary key */
#define BESIDE_MAX   4096        /* a path with _secret appended */

/*  The error of a file that holds no public key (a macro: printf's
    format checks see it). */
#define NOT_KEY_FILE                                                                              \
    "%s is not a key file: it needs curve/public-key, 40 characters of Z85, in ZPL as "           \
    "zcert_save writes it"

/*  True if text is exactly a Z85 key. */
static bool
s_is_key (const char *text, size_t size)
{
    if (size != DP_CURVE_KEY)
        return false;
    char copy[DP_CURVE_KEY + 1];
    memcpy (copy, text, DP_CURVE_KEY);
    copy[DP_CURVE_KEY] = 0;
    uint8_t binary[KEY_BINARY];
    bool is_key = zmq_z85_decode (binary, copy) != NULL;
    explicit_bzero (copy, sizeof copy); /* it may be a secret key */
    explicit_bzero (binary, sizeof binary);
    return is_key;
}

/*  Wipes a chunk's whole buffer, then destroys it. */
static void
s_chunk_destroy (zchunk_t **chunk)
{
    if (*chunk)
        explicit_bzero (zchunk_data (*chunk), zchunk_max_size (*chunk));
    zchunk_destroy (chunk);
}

/*  Reads all of fd, at most KEY_FILE_MAX bytes, into a chunk. */
static zchunk_t *
s_read_all (int fd, const char *path, char *err, size_t err_size)
{
    zchunk_t *chunk = zchunk_new (NULL, KEY_FILE_MAX + 1);
    if (!chunk) {
        dp_error_text (err, err_size, "cannot read key file %s: out of memory", path);
        return NULL;
    }
    size_t size = 0;
    while (size <= KEY_FILE_MAX) {
        ssize_t got = read (fd, zchunk_data (chunk) + size, KEY_FILE_MAX + 1 - size);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            dp_error_text (err, err_size, "cannot read key file %s: %s", path, strerror (errno));
            s_chunk_destroy (&chunk);
            return NULL;
        }
        if (got == 0)
            break;
        size += (size_t)got;
    }
    if (size > KEY_FILE_MAX) {
        dp_error_text (err, err_size, "%s is too large for a key file", path);
        s_chunk_destroy (&chunk);
        return NULL;
    }
    zchunk_set (chunk, NULL, size);
    return chunk;
}

/*  Reads the key file at path into a chunk of our own (wiped when freed).
    It must be a readable regular file of a key file's size, so that a
    typo, a directory or a FIFO gets its own clear message; O_NONBLOCK
    keeps a FIFO from blocking the open. */
static zchunk_t *
s_read (const char *path, char *err, size_t err_size)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        dp_error_text (err, err_size, "cannot open key file %s: %s", path, strerror (errno));
        return NULL;
    }
    zchunk_t *chunk = NULL;
    struct stat st;
    if (fstat (fd, &st) != 0)
        dp_error_text (err, err_size, "cannot read key file %s: %s", path, strerror (errno));
    else if (!S_ISREG (st.st_mode))
        dp_error_text (err, err_size, "%s is not a key file (not a regular file)", path);
    else if (st.st_size > KEY_FILE_MAX)
        dp_error_text (err, err_size, "%s is too large for a key file", path);
    else
        chunk = s_read_all (fd, path, err, err_size);
    close (fd);
    return chunk;
}

/*  The character CZMQ's ZPL reader cannot tell from c: itself for what it
    looks for (line ends, spaces, quotes, '#', '=', '/'), 'x' for any other
    character of a name, '~' for anything else. (The reader asks isalnum
    of a plain char: 0xFF is then EOF, never a letter.) */
static char
s_mask (char c)
{
    unsigned char u = (unsigned char)c;
    if (u == 0 || isspace (u) || strchr ("\"'#=/", c))
        return c;
    if ((isalnum (u) && u != 0xFF) || strchr ("$-_@.&+", c))
        return 'x';
    return '~';
}

/*  Wipes every value in the tree from item on. */
static void
s_wipe (zconfig_t *item)
{
    for (; item; item = zconfig_next (item)) {
        char *value = zconfig_value (item);
        if (value)
            explicit_bzero (value, strlen (value));
        s_wipe (zconfig_child (item));
    }
}

/*  Wipes the tree's values and comments (a commented-out key is a key),
    then destroys it. */
static void
s_tree_destroy (zconfig_t **tree)
{
    if (*tree) {
        zlist_t *comments = zconfig_comments (*tree);
        for (char *line = comments ? zlist_first (comments) : NULL; line;
             line = zlist_next (comments))
            explicit_bzero (line, strlen (line));
        s_wipe (*tree);
    }
    zconfig_destroy (tree);
}

/*  Parses text, the key file at path, with CZMQ's ZPL reader. That reader
    prints the rest of a line it cannot parse (zclock_log, on stdout), so
    text is parsed first with each character masked (s_mask): the reader
    decides only by those classes, so the text itself then parses, without
    a word, exactly when the masked copy did, and a bad line shows only as
    'x' and '~'. Returns the tree, or NULL with a reason in err. */
static zconfig_t *
s_parse (zchunk_t *text, const char *path, char *err, size_t err_size)
{
    size_t size = zchunk_size (text);
    zchunk_t *masked = zchunk_new (NULL, size + 1);
    if (!masked) {
        dp_error_text (err, err_size, "cannot read key file %s: out of memory", path);
        return NULL;
    }
    const char *from = (const char *)zchunk_data (text);
    char *to = (char *)zchunk_data (masked);
    for (size_t i = 0; i < size; i++)
        to[i] = s_mask (from[i]);
    zchunk_set (masked, NULL, size);
    zconfig_t *tree = zconfig_chunk_load (masked);
    s_chunk_destroy (&masked);
    if (tree) {
        zconfig_destroy (&tree);
        tree = zconfig_chunk_load (text);
    }
    if (!tree)
        dp_error_text (err, err_size, NOT_KEY_FILE, path);
    return tree;
}

/*  A key file's keys as text: public_ checked, secret as found. */
typedef struct {
    char public_[DP_CURVE_KEY + 1];
    bool has_secret;               /* the file has a curve/secret-key */
    char secret[DP_CURVE_KEY + 1]; /* it, if it has 40 characters; else "" */
} s_keys_t;

/*  Reads the key file at path into keys (wipe keys->secret after use).
    Returns 0, or -1 with a reason in err naming the path. */
static int
s_load (const char *path, s_keys_t *keys, char *err, size_t err_size)
{
    memset (keys, 0, sizeof *keys);
    zchunk_t *text = s_read (path, err, err_size);
    zconfig_t *tree = text ? s_parse (text, path, err, err_size) : NULL;
    s_chunk_destroy (&text);
    if (!tree)
        return -1;
    const char *public_ = zconfig_get (tree, "curve/public-key", NULL);
    const char *secret = zconfig_get (tree, "curve/secret-key", NULL);
    int rc = 0;
    if (!dp_curve_is_key (public_))
        rc = dp_error_text (err, err_size, NOT_KEY_FILE, path);
    else {
        memcpy (keys->public_, public_, DP_CURVE_KEY + 1);
        keys->has_secret = secret != NULL;
        if (secret && strlen (secret) == DP_CURVE_KEY)
            memcpy (keys->secret, secret, DP_CURVE_KEY + 1);
    }
    s_tree_destroy (&tree);
    return rc;
}

int
dp_curve_public (const char *key, char out[DP_CURVE_KEY + 1], char *err, size_t err_size)
{
    if (!key || !*key)
        return dp_error_text (err, err_size, "no public key given");
    if (s_is_key (key, strlen (key))) {
        memcpy (out, key, DP_CURVE_KEY + 1);
        return 0;
    }
    s_keys_t keys;
    int rc = s_load (key, &keys, err, err_size);
    if (rc == 0)
        memcpy (out, keys.public_, DP_CURVE_KEY + 1);
    explicit_bzero (&keys, sizeof keys);
    return rc;
}

/*  CZMQ's convention: a certificate is named by its public file P, its
    secret half is P_secret. keys (from path, which has no secret-key) are
    replaced by P_secret's if that exists and holds the same public key;
    its path is then in beside (BESIDE_MAX), else beside is "". Returns 0,
    or -1 with a reason in err. */
static int
s_load_beside (const char *path, char *beside, s_keys_t *keys, char *err, size_t err_size)
{
    struct stat st;
    if ((size_t)snprintf (beside, BESIDE_MAX, "%s_secret", path) >= BESIDE_MAX ||
        (stat (beside, &st) != 0 && errno == ENOENT)) {
        *beside = 0;
        return 0; /* none: the caller says path holds no secret-key */
    }
    s_keys_t other;
    int rc = s_load (beside, &other, err, err_size);
    if (rc == 0 && strcmp (other.public_, keys->public_) != 0)
        rc = dp_error_text (err, err_size, "%s and %s hold different public keys", path, beside);
    else if (rc == 0)
        *keys = other;
    explicit_bzero (&other, sizeof other);
    return rc;
}

/*  Checks keys, read from the file at path, as our own key pair: both keys
    there, the public key the secret key's; copies them into curve. */
static int
s_use_secret (dp_curve_t *curve, const s_keys_t *keys, const char *path, char *err,
              size_t err_size)
{
    if (!*keys->secret)
        return dp_error_text (err, err_size,
                              "%s holds no secret-key of 40 characters of Z85 "
                              "(is it the public half?)",
                              path);
    char derived[DP_CURVE_KEY + 1] = "";
    if (!dp_curve_is_key (keys->secret) || zmq_curve_public (derived, keys->secret) != 0 ||
        strcmp (derived, keys->public_) != 0)
        return dp_error_text (err, err_size,
                              "%s: secret-key is not 40 characters of Z85 or is not the secret "
                              "of public-key",
                              path);
    memcpy (curve->public_, keys->public_, DP_CURVE_KEY + 1);
    memcpy (curve->secret, keys->secret, DP_CURVE_KEY + 1);
    return 0;
}

/*  Loads our own key pair from a secret key file, or from the public file
    P_secret lies beside (s_load_beside). */
static int
s_load_secret (dp_curve_t *curve, const char *path, char *err, size_t err_size)
{
    s_keys_t keys;
    char beside[BESIDE_MAX] = "";
    int rc = s_load (path, &keys, err, err_size);
    if (rc == 0 && !keys.has_secret)
        rc = s_load_beside (path, beside, &keys, err, err_size);
    if (rc == 0)
        rc = s_use_secret (curve, &keys, *beside ? beside : path, err, err_size);
    explicit_bzero (&keys, sizeof keys);
    return rc;
}

int
dp_curve_client (dp_curve_t *curve, const char *server, const char *secret, char *err,
                 size_t err_size)
{
    memset (curve, 0, sizeof *curve);
    if (dp_curve_public (server, curve->server, err, err_size))
        return -1;
    if (secret && *secret) {
        if (s_load_secret (curve, secret, err, err_size))
            return -1;
    } else if (zmq_curve_keypair (curve->public_, curve->secret))
        return dp_error_text (err, err_size, "cannot make a key pair: %s", zmq_strerror (errno));
    curve->on = true;
    return 0;
}

int
dp_curve_client_env (dp_curve_t *curve, const char *server, const char *secret, char *err,
                     size_t err_size)
{
    memset (curve, 0, sizeof *curve);
    if (!server && !secret) {
        const char *env = getenv ("DPOOL_CURVE_SERVER");
        server = env && *env ? env : NULL;
        env = getenv ("DPOOL_CURVE_SECRET");
        secret = env && *env ? env : NULL;
    }
    if (!server) {
        if (secret)
            return dp_error_text (err, err_size,
                                  "a CURVE secret key was given but not the broker's public key "
                                  "(DPOOL_CURVE_SERVER, --curve-server)");
        return 0;
    }
    return dp_curve_client (curve, server, secret, err, err_size);
}

bool
dp_curve_is_key (const char *text)
{
    return text && s_is_key (text, strnlen (text, DP_CURVE_KEY + 1));
}

int
dp_curve_from_keys (dp_curve_t *curve, const char *server, const char *secret, char *err,
                    size_t err_size)
{
    memset (curve, 0, sizeof *curve);
    if (server && !dp_curve_is_key (server))
        return dp_error_text (err, err_size, "the server key is not 40 characters of Z85");
    if (!dp_curve_is_key (secret))
        return dp_error_text (err, err_size, "the secret key is not 40 characters of Z85");
    memcpy (curve->secret, secret, DP_CURVE_KEY + 1);
    if (zmq_curve_public (curve->public_, curve->secret)) {
        explicit_bzero (curve, sizeof *curve);
        return dp_error_text (err, err_size, "cannot derive the public key: %s",
                              zmq_strerror (errno));
    }
    if (server)
        memcpy (curve->server, server, DP_CURVE_KEY + 1);
    curve->on = true;
    return 0;
}

int
dp_curve_server (dp_curve_t *curve, const char *secret, char *err, size_t err_size)
{
    memset (curve, 0, sizeof *curve);
    if (!secret || !*secret)
        return dp_error_text (err, err_size, "no secret key file given");
    if (s_load_secret (curve, secret, err, err_size))
        return -1;
    curve->on = true;
    return 0;
}

int
dp_curve_apply (void *socket, const dp_curve_t *curve, bool server)
{
    if (!curve || !curve->on)
        return 0;
    if (server) {
        int one = 1;
        if (zmq_setsockopt (socket, ZMQ_CURVE_SERVER, &one, sizeof one))
            return -1;
    } else if (zmq_setsockopt (socket, ZMQ_CURVE_SERVERKEY, curve->server, DP_CURVE_KEY + 1) ||
               zmq_setsockopt (socket, ZMQ_CURVE_PUBLICKEY, curve->public_, DP_CURVE_KEY + 1))
        return -1;
    return zmq_setsockopt (socket, ZMQ_CURVE_SECRETKEY, curve->secret, DP_CURVE_KEY + 1);
}

/*  Creates path, empty, with mode; fails if it exists. zcert_save would
    overwrite a file, so the names are taken first, and it then writes
    into files that already have their modes. */
static int
s_reserve (const char *path, mode_t mode, char *err, size_t err_size)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return dp_error_text (err, err_size, "cannot create %s: %s", path, strerror (errno));
    close (fd);
    return 0;
}

int
dp_curve_keygen (const char *path, char *err, size_t err_size)
{
    char secret_path[4096];
    if ((size_t)snprintf (secret_path, sizeof secret_path, "%s_secret", path) >=
        sizeof secret_path)
        return dp_error_text (err, err_size, "path too long: %s", path);
    if (s_reserve (secret_path, 0600, err, err_size))
        return -1;
    if (s_reserve (path, 0644, err, err_size)) {
        unlink (secret_path);
        return -1;
    }
    int rc = -1;
    zcert_t *cert = zcert_new ();
    if (!cert)
        dp_error_text (err, err_size, "cannot make a key pair: %s", zmq_strerror (errno));
    else {
        zcert_set_meta (cert, "made-by", "dpool keygen");
        if (zcert_save (cert, path) == 0)
            rc = 0;
        else
            dp_error_text (err, err_size, "cannot write %s: %s", path, strerror (errno));
    }
    zcert_destroy (&cert);
    if (rc != 0) {
        unlink (secret_path);
        unlink (path);
    }
    return rc;
}
