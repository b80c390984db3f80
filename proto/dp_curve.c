/*  dp_curve.c - CURVE keys: key files, and the socket options they set.

    Locking: none; every call works on what the caller passes.
*/
#include "dp_curve.h"
#include "dp_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define KEY_FILE_MAX (64 * 1024) /* a key file is a few hundred bytes */

/*  True if text is exactly a Z85 key. */
static bool
s_is_key (const char *text, size_t size)
{
    if (size != DP_CURVE_KEY)
        return false;
    char copy[DP_CURVE_KEY + 1];
    memcpy (copy, text, DP_CURVE_KEY);
    copy[DP_CURVE_KEY] = 0;
    uint8_t binary[32];
    return zmq_z85_decode (binary, copy) != NULL;
}

/*  Finds "name = value" (value optionally quoted) on a line of text and
    copies a valid key into out. Returns 1 found, 0 absent, -1 malformed. */
static int
s_find_key (const char *text, const char *name, char out[DP_CURVE_KEY + 1])
{
    size_t name_len = strlen (name);
    const char *line = text;
    while (*line) {
        const char *end = strchr (line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen (line);
        const char *p = line;
        const char *stop = line + len;
        while (p < stop && (*p == ' ' || *p == '\t'))
            p++;
        if ((size_t)(stop - p) > name_len && memcmp (p, name, name_len) == 0) {
            p += name_len;
            while (p < stop && (*p == ' ' || *p == '\t'))
                p++;
            if (p < stop && *p == '=') {
                p++;
                while (p < stop && (*p == ' ' || *p == '\t'))
                    p++;
                const char *q = stop;
                while (q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\r'))
                    q--;
                if (q - p >= 2 && (*p == '"' || *p == '\'') && q[-1] == *p) {
                    p++;
                    q--;
                }
                if (!s_is_key (p, (size_t)(q - p)))
                    return -1;
                memcpy (out, p, DP_CURVE_KEY);
                out[DP_CURVE_KEY] = 0;
                return 1;
            }
        }
        line = end ? end + 1 : stop;
    }
    return 0;
}

/*  Reads a whole (small) file into buf as a string. */
static int
s_read_file (const char *path, char *buf, size_t size, char *err, size_t err_size)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return dp_error_text (err, err_size, "cannot open key file %s: %s", path,
                              strerror (errno));
    size_t n = fread (buf, 1, size - 1, file);
    bool more = !feof (file) && fgetc (file) != EOF;
    fclose (file);
    if (more)
        return dp_error_text (err, err_size, "%s is too large for a key file", path);
    buf[n] = 0;
    if (memchr (buf, 0, n))
        return dp_error_text (err, err_size, "%s is not a key file (it holds NUL bytes)", path);
    return 0;
}

/*  Reads the key called name ("public-key", "secret-key") from the key
    file at path into out. Returns 0, or -1 with a reason in err; hint ends
    the message of a file that lacks the key. The buffer is wiped before it
    is freed: it may hold a secret key. */
static int
s_key_from_file (const char *path, const char *name, const char *hint, char out[DP_CURVE_KEY + 1],
                 char *err, size_t err_size)
{
    char *text = (char *)malloc (KEY_FILE_MAX);
    if (!text)
        return dp_error_text (err, err_size, "out of memory");
    int found = -2;
    if (s_read_file (path, text, KEY_FILE_MAX, err, err_size) == 0)
        found = s_find_key (text, name, out);
    explicit_bzero (text, KEY_FILE_MAX);
    free (text);
    if (found == -2)
        return -1;
    if (found < 0)
        return dp_error_text (err, err_size, "%s: %s is not 40 characters of Z85", path, name);
    if (found == 0)
        return dp_error_text (err, err_size, "%s holds no %s%s", path, name, hint);
    return 0;
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
    return s_key_from_file (key, "public-key", "", out, err, err_size);
}

/*  Loads our own key pair from a secret key file; a file without its
    public key gets it derived from the secret one. */
static int
s_load_secret (dp_curve_t *curve, const char *path, char *err, size_t err_size)
{
    if (s_key_from_file (path, "secret-key", " (is it the public half?)", curve->secret, err,
                         err_size))
        return -1;
    if (zmq_curve_public (curve->public_, curve->secret))
        return dp_error_text (err, err_size, "%s: cannot derive the public key: %s", path,
                              zmq_strerror (errno));
    return 0;
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

/*  Writes text to a new file of the given mode; fails if it exists. */
static int
s_write_new (const char *path, const char *text, mode_t mode, char *err, size_t err_size)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return dp_error_text (err, err_size, "cannot create %s: %s", path, strerror (errno));
    size_t size = strlen (text);
    ssize_t n = write (fd, text, size);
    int saved = errno;
    if (close (fd) != 0 && n == (ssize_t)size) {
        n = -1;
        saved = errno;
    }
    if (n != (ssize_t)size) {
        unlink (path);
        return dp_error_text (err, err_size, "cannot write %s: %s", path,
                              n < 0 ? strerror (saved) : "short write");
    }
    return 0;
}

int
dp_curve_keygen (const char *path, char *err, size_t err_size)
{
    char public_[DP_CURVE_KEY + 1], secret[DP_CURVE_KEY + 1];
    if (zmq_curve_keypair (public_, secret))
        return dp_error_text (err, err_size, "cannot make a key pair: %s", zmq_strerror (errno));
    char secret_path[4096];
    if ((size_t)snprintf (secret_path, sizeof secret_path, "%s_secret", path) >=
        sizeof secret_path)
        return dp_error_text (err, err_size, "path too long: %s", path);
    char stamp[32] = "";
    time_t now = time (NULL);
    struct tm tm;
    if (gmtime_r (&now, &tm))
        strftime (stamp, sizeof stamp, "%Y-%m-%d %H:%M UTC", &tm);
    char text[1024];
    snprintf (text, sizeof text,
              "#   dpool CURVE secret key, made %s by dpool keygen.\n"
              "#   Keep it to this host and this user: whoever reads it can pass for its owner.\n"
              "metadata\n"
              "curve\n"
              "    public-key = \"%s\"\n"
              "    secret-key = \"%s\"\n",
              stamp, public_, secret);
    if (s_write_new (secret_path, text, 0600, err, err_size))
        return -1;
    snprintf (text, sizeof text,
              "#   dpool CURVE public key, made %s by dpool keygen.\n"
              "#   Safe to hand out: a broker's goes to its clients and workers, a client's\n"
              "#   or worker's into the broker's --curve-clients directory.\n"
              "metadata\n"
              "curve\n"
              "    public-key = \"%s\"\n",
              stamp, public_);
    if (s_write_new (path, text, 0644, err, err_size)) {
        unlink (secret_path);
        return -1;
    }
    return 0;
}
