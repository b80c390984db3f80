/*  dp_curve.c - CURVE keys: key files, and the socket options they set.

    Locking: none; every call works on what the caller passes.
*/
#include "dp_curve.h"
#include "dp_util.h"

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
    return zmq_z85_decode (binary, copy) != NULL;
}

/*  Checks that path names a readable regular file of a key file's size,
    so that a typo, a directory or a FIFO gets its own clear message
    (zcert_load says only NULL, and would block on a FIFO). */
static int
s_check_file (const char *path, char *err, size_t err_size)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return dp_error_text (err, err_size, "cannot open key file %s: %s", path,
                              strerror (errno));
    struct stat st;
    int rc = fstat (fd, &st);
    int saved = errno;
    close (fd);
    if (rc != 0)
        return dp_error_text (err, err_size, "cannot read key file %s: %s", path,
                              strerror (saved));
    if (!S_ISREG (st.st_mode))
        return dp_error_text (err, err_size, "%s is not a key file (not a regular file)", path);
    if (st.st_size > KEY_FILE_MAX)
        return dp_error_text (err, err_size, "%s is too large for a key file", path);
    return 0;
}

/*  Checks the curve/public-key text of the file at path through CZMQ's
    ZPL reader: zcert_load decodes a key only up to its first character
    that is not Z85 and leaves the rest zero, and it may have read
    path_secret instead, which must then hold the same public key. Returns
    0, or -1 with a reason in err. */
static int
s_check_public_text (const char *path, const char *loaded, char *err, size_t err_size)
{
    zconfig_t *root = zconfig_load (path);
    const char *text = root ? zconfig_get (root, "curve/public-key", NULL) : NULL;
    int rc = 0;
    if (!text || !dp_curve_is_key (text))
        rc = dp_error_text (err, err_size, NOT_KEY_FILE, path);
    else if (strcmp (text, loaded) != 0)
        rc = dp_error_text (err, err_size, "%s and %s_secret hold different public keys", path,
                            path);
    zconfig_destroy (&root);
    return rc;
}

/*  Loads the key file at path through zcert_load, which reads path_secret
    instead when that exists (CZMQ's convention: a certificate is named by
    its public file). Returns the certificate, or NULL with a reason in err
    naming the path. */
static zcert_t *
s_cert_load (const char *path, char *err, size_t err_size)
{
    if (s_check_file (path, err, err_size))
        return NULL;
    zcert_t *cert = zcert_load (path);
    if (!cert)
        dp_error_text (err, err_size, NOT_KEY_FILE, path);
    else if (s_check_public_text (path, zcert_public_txt (cert), err, err_size))
        zcert_destroy (&cert);
    return cert;
}

/*  True if all size bytes of key are zero: zcert's "no key". */
static bool
s_is_zero (const uint8_t *key, size_t size)
{
    uint8_t any = 0;
    for (size_t i = 0; i < size; i++)
        any |= key[i];
    return any == 0;
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
    zcert_t *cert = s_cert_load (key, err, err_size);
    if (!cert)
        return -1;
    memcpy (out, zcert_public_txt (cert), DP_CURVE_KEY + 1);
    zcert_destroy (&cert);
    return 0;
}

/*  Loads our own key pair from a secret key file: both keys must be there
    and the public key must be the secret key's. */
static int
s_load_secret (dp_curve_t *curve, const char *path, char *err, size_t err_size)
{
    zcert_t *cert = s_cert_load (path, err, err_size);
    if (!cert)
        return -1;
    int rc = 0;
    char derived[DP_CURVE_KEY + 1] = "";
    if (s_is_zero (zcert_secret_key (cert), KEY_BINARY))
        rc = dp_error_text (err, err_size,
                            "%s holds no secret-key of 40 characters of Z85 "
                            "(is it the public half?)",
                            path);
    else if (zmq_curve_public (derived, zcert_secret_txt (cert)) != 0 ||
             strcmp (derived, zcert_public_txt (cert)) != 0)
        rc = dp_error_text (err, err_size,
                            "%s: secret-key is not 40 characters of Z85 or is not the secret of "
                            "public-key",
                            path);
    else {
        memcpy (curve->public_, zcert_public_txt (cert), DP_CURVE_KEY + 1);
        memcpy (curve->secret, zcert_secret_txt (cert), DP_CURVE_KEY + 1);
    }
    zcert_destroy (&cert);
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
