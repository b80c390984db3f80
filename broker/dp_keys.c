/*  dp_keys.c - the broker's key configuration: parsing, lookup.

    Locking: none (dp_keys.h).
*/
#include "dp_keys.h"
#include "dp_util.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KEYS_LINE_MAX      4096      /* bytes of one line of a key file */
#define KEYS_SECRET_SUFFIX "_secret" /* of a secret key file's name */

struct _dp_keys_t {
    zhashx_t *keys; /* Z85 key -> dp_key_t, owned */
};

static const char *s_right_names[] = {"submit", "worker", "queue", "admin"};

static void
s_key_free (void **item)
{
    dp_key_t *key = (dp_key_t *)*item;
    if (key) {
        for (size_t i = 0; i < key->nfunctions; i++)
            free (key->functions[i]);
        free (key->functions);
        free (key);
        *item = NULL;
    }
}

static dp_keys_t *
s_new (void)
{
    dp_keys_t *self = (dp_keys_t *)calloc (1, sizeof *self);
    if (self && !(self->keys = zhashx_new ())) {
        free (self);
        return NULL;
    }
    if (self)
        zhashx_set_destructor (self->keys, s_key_free);
    return self;
}

void
dp_keys_destroy (dp_keys_t **self_p)
{
    if (self_p && *self_p) {
        zhashx_destroy (&(*self_p)->keys);
        free (*self_p);
        *self_p = NULL;
    }
}

const dp_key_t *
dp_keys_lookup (const dp_keys_t *self, const char *key)
{
    return self && key ? (const dp_key_t *)zhashx_lookup (self->keys, key) : NULL;
}

size_t
dp_keys_size (const dp_keys_t *self)
{
    return self ? zhashx_size (self->keys) : 0;
}

bool
dp_key_may_offer (const dp_key_t *key, const char *name)
{
    if (!(key->rights & DP_RIGHT_WORKER))
        return false;
    for (size_t i = 0; i < key->nfunctions; i++)
        if (strcmp (key->functions[i], name) == 0)
            return true;
    return key->nfunctions == 0;
}

const char *
dp_right_name (dp_right_t right)
{
    for (size_t i = 0; i < sizeof s_right_names / sizeof *s_right_names; i++)
        if (right == (dp_right_t)(1u << i))
            return s_right_names[i];
    return "?";
}

const char *
dp_rights_text (unsigned rights, char *out, size_t size)
{
    size_t used = 0;
    out[0] = 0;
    for (size_t i = 0; i < sizeof s_right_names / sizeof *s_right_names; i++)
        if (rights & (1u << i))
            used +=
                (size_t)snprintf (out + (used < size ? used : size), used < size ? size - used : 0,
                                  "%s%s", used ? "," : "", s_right_names[i]);
    if (!rights)
        snprintf (out, size, "none");
    return out;
}

/*  Adds key to the table (which takes it); a key listed twice is an
    error. */
static int
s_add (dp_keys_t *self, dp_key_t *key, const char *where, char *err, size_t err_size)
{
    if (zhashx_lookup (self->keys, key->key)) {
        void *item = key;
        s_key_free (&item);
        return dp_error_text (err, err_size, "%s: key listed twice", where);
    }
    zhashx_insert (self->keys, key->key, key);
    return 0;
}

/*  True if name ends in "_secret": a secret key file, which zcertstore
    skips too, and which has no place among admitted keys. */
static bool
s_is_secret_name (const char *name)
{
    size_t len = strlen (name), tail = strlen (KEYS_SECRET_SUFFIX);
    return len >= tail && strcmp (name + len - tail, KEYS_SECRET_SUFFIX) == 0;
}

/*  A directory of public key files (CZMQ certificates, read through
    dp_curve_public with CZMQ's ZPL parser): each admitted with every right, named after
    its file. Not through zcertstore: it aborts the process on a key found
    in two files (an assert in zcertstore_insert), rescans the directory
    on every lookup (this table is looked up for every message), and its
    stable API cannot list what it loaded. */
static dp_keys_t *
s_load_dir (const char *path, char *err, size_t err_size)
{
    DIR *dir = opendir (path);
    if (!dir) {
        dp_error_text (err, err_size, "cannot read directory %s: %s", path, strerror (errno));
        return NULL;
    }
    dp_keys_t *self = s_new ();
    struct dirent *entry;
    while (self && (entry = readdir (dir))) {
        char file[4096];
        struct stat st;
        if (entry->d_name[0] == '.' || s_is_secret_name (entry->d_name) ||
            (size_t)snprintf (file, sizeof file, "%s/%s", path, entry->d_name) >= sizeof file ||
            stat (file, &st) != 0 || !S_ISREG (st.st_mode))
            continue;
        dp_key_t *key = (dp_key_t *)calloc (1, sizeof *key);
        char ignored[512];
        if (key && dp_curve_public (file, key->key, ignored, sizeof ignored) == 0 &&
            !zhashx_lookup (self->keys, key->key)) {
            snprintf (key->name, sizeof key->name, "%.*s", DP_KEY_NAME_MAX, entry->d_name);
            key->rights = DP_RIGHTS_ALL;
            zhashx_insert (self->keys, key->key, key);
        } else
            free (key);
    }
    closedir (dir);
    return self;
}

/*  A count with an optional K, M, G suffix (powers of 1024). */
static int
s_parse_count (const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long value = strtoull (text, &end, 10);
    if (end == text || errno || *text == '-')
        return -1;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (*end || (shift && value > (UINT64_MAX >> shift)))
        return -1;
    *out = (uint64_t)value << shift;
    return 0;
}

static int
s_parse_roles (char *text, unsigned *rights)
{
    *rights = 0;
    for (char *save = NULL, *role = strtok_r (text, ",", &save); role;
         role = strtok_r (NULL, ",", &save)) {
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof s_right_names / sizeof *s_right_names; i++)
            if (strcmp (role, s_right_names[i]) == 0)
                bit = 1u << i;
        if (strcmp (role, "all") == 0)
            bit = DP_RIGHTS_ALL;
        else if (strcmp (role, "none") == 0)
            bit = 0;
        else if (!bit)
            return -1;
        *rights |= bit;
    }
    return 0;
}

static int
s_parse_functions (dp_key_t *key, char *text)
{
    for (char *save = NULL, *fn = strtok_r (text, ",", &save); fn;
         fn = strtok_r (NULL, ",", &save)) {
        char **more = (char **)realloc (key->functions, (key->nfunctions + 1) * sizeof *more);
        if (!more)
            return -1;
        key->functions = more;
        if (!(key->functions[key->nfunctions] = strdup (fn)))
            return -1;
        key->nfunctions++;
    }
    return 0;
}

/*  One name=value field of a key's line. Returns 0, or -1 naming the
    field in err. */
static int
s_parse_field (dp_key_t *key, char *field, const char *where, char *err, size_t err_size)
{
    char *value = strchr (field, '=');
    if (!value || value == field)
        return dp_error_text (err, err_size, "%s: '%s' is not name=value", where, field);
    *value++ = 0;
    uint64_t count = 0;
    bool counted = strncmp (field, "max_", 4) == 0 || strcmp (field, "weight") == 0;
    if (counted && s_parse_count (value, &count))
        return dp_error_text (err, err_size, "%s: %s=%s is not a count", where, field, value);
    if (strcmp (field, "name") == 0) {
        if (!*value || strlen (value) > DP_KEY_NAME_MAX)
            return dp_error_text (err, err_size, "%s: name must be 1 to %d bytes", where,
                                  DP_KEY_NAME_MAX);
        snprintf (key->name, sizeof key->name, "%s", value);
    } else if (strcmp (field, "roles") == 0) {
        if (s_parse_roles (value, &key->rights))
            return dp_error_text (
                err, err_size, "%s: roles are submit, worker, queue, admin, all or none", where);
    } else if (strcmp (field, "functions") == 0) {
        if (s_parse_functions (key, value))
            return dp_error_text (err, err_size, "%s: out of memory", where);
    } else if (strcmp (field, "weight") == 0 && count > 0 && count <= UINT32_MAX)
        key->weight = (uint32_t)count;
    else if (strcmp (field, "max_queued") == 0)
        key->max_queued = count;
    else if (strcmp (field, "max_queued_bytes") == 0)
        key->max_queued_bytes = count;
    else if (strcmp (field, "max_running") == 0)
        key->max_running = count;
    else
        return dp_error_text (err, err_size, "%s: unknown field '%s'", where, field);
    return 0;
}

/*  One line of a key file: a key, then its fields. A key with no roles=
    has none. */
static int
s_parse_line (dp_keys_t *self, char *line, const char *where, char *err, size_t err_size)
{
    char *save = NULL;
    char *token = strtok_r (line, " \t\r\n", &save);
    if (!token || token[0] == '#')
        return 0;
    uint8_t binary[32];
    if (strlen (token) != DP_CURVE_KEY || !zmq_z85_decode (binary, token))
        return dp_error_text (err, err_size, "%s: a line starts with a key (40 characters of Z85)",
                              where);
    dp_key_t *key = (dp_key_t *)calloc (1, sizeof *key);
    if (!key)
        return dp_error_text (err, err_size, "%s: out of memory", where);
    memcpy (key->key, token, DP_CURVE_KEY + 1);
    snprintf (key->name, sizeof key->name, "%.8s", token);
    while ((token = strtok_r (NULL, " \t\r\n", &save)))
        if (s_parse_field (key, token, where, err, err_size)) {
            void *item = key;
            s_key_free (&item);
            return -1;
        }
    return s_add (self, key, where, err, err_size);
}

static dp_keys_t *
s_load_file (const char *path, char *err, size_t err_size)
{
    FILE *file = fopen (path, "r");
    if (!file) {
        dp_error_text (err, err_size, "cannot open key file %s: %s", path, strerror (errno));
        return NULL;
    }
    dp_keys_t *self = s_new ();
    char line[KEYS_LINE_MAX];
    for (int number = 1; self && fgets (line, sizeof line, file); number++) {
        char where[4200];
        snprintf (where, sizeof where, "%s:%d", path, number);
        if (!strchr (line, '\n') && !feof (file)) {
            dp_error_text (err, err_size, "%s: line longer than %d bytes", where,
                           KEYS_LINE_MAX - 1);
            dp_keys_destroy (&self);
        } else if (s_parse_line (self, line, where, err, err_size))
            dp_keys_destroy (&self);
    }
    if (self && ferror (file)) {
        dp_error_text (err, err_size, "cannot read %s: %s", path, strerror (errno));
        dp_keys_destroy (&self);
    }
    fclose (file);
    return self;
}

dp_keys_t *
dp_keys_load (const char *path, char *err, size_t err_size)
{
    if (err && err_size)
        err[0] = 0;
    struct stat st;
    if (!path || stat (path, &st) != 0) {
        dp_error_text (err, err_size, "cannot read %s: %s", path ? path : "(null)",
                       strerror (errno));
        return NULL;
    }
    dp_keys_t *self = S_ISDIR (st.st_mode) ? s_load_dir (path, err, err_size)
                                           : s_load_file (path, err, err_size);
    if (!self && err && !*err)
        dp_error_text (err, err_size, "out of memory");
    return self;
}
