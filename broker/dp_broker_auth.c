/*  dp_broker_auth.c - who may do what: the ZAP handler that admits CURVE
    keys, the key configuration (dp_keys.h) and its reload, the rights a
    command needs, and the quotas of sessions and keys.

    The ZAP handler (ZeroMQ RFC 27) is a REP socket bound to libzmq's ZAP
    endpoint, polled by the broker's own loop: it answers each handshake's
    request with the key's Z85 text as the connection's User-Id, which
    libzmq then sets on every message of that connection. So every message
    says its key (dp_broker_admit), and a key removed by a reload loses
    access on its connections already open, not only on new ones.
*/
#include "dp_broker_int.h"

#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01" /* libzmq's, RFC 27 */
#define ZAP_FRAMES   7                        /* of a CURVE request */
#define ZAP_KEY_SIZE 32                       /* a binary CURVE key */

static const char *s_refused_names[REFUSED_COUNT_] = {"submit", "worker", "queue", "removed",
                                                      "quota"};

static void
s_account_free (void **item)
{
    free (*item);
    *item = NULL;
}

int
dp_broker_auth_setup (dp_broker_t *self, const dp_broker_config_t *config)
{
    dp_curve_t curve;
    char err[512] = "";
    int loaded = config->curve_secret_key
                     ? dp_curve_from_keys (&curve, NULL, config->curve_secret_key, err, sizeof err)
                     : dp_curve_server (&curve, config->curve_secret, err, sizeof err);
    if (loaded) {
        dp_error ("%s", err);
        return -1;
    }
    const char *path = config->curve_keys ? config->curve_keys : config->curve_clients;
    if (path && *path) {
        self->keys_path = strdup (path);
        self->keys = dp_keys_load (path, err, sizeof err);
        self->accounts = zhashx_new ();
        if (!self->keys || !self->keys_path || !self->accounts) {
            dp_error ("%s", *err ? err : "out of memory");
            explicit_bzero (&curve, sizeof curve);
            return -1;
        }
        zhashx_set_destructor (self->accounts, s_account_free);
    }
    self->zap = zsock_new (ZMQ_REP);
    int rc = -1;
    if (!self->zap || zsock_bind (self->zap, ZAP_ENDPOINT) != 0 ||
        dp_curve_apply (self->handle, &curve, true))
        dp_error ("cannot set up CURVE: %s", zmq_strerror (zmq_errno ()));
    else
        rc = 0;
    explicit_bzero (&curve, sizeof curve);
    if (rc != 0)
        return -1;
    self->zap_fd = dp_wire_fd (zsock_resolve (self->zap));
    if (self->keys)
        dp_info ("CURVE on: %zu keys admitted from %s", dp_keys_size (self->keys), path);
    else
        dp_warn ("CURVE on: traffic is encrypted, but any client key is accepted "
                 "(give --curve-keys FILE or --curve-clients DIR to admit only known keys)");
    return 0;
}

void
dp_broker_auth_destroy (dp_broker_t *self)
{
    zsock_destroy (&self->zap);
    dp_keys_destroy (&self->keys);
    zhashx_destroy (&self->accounts);
    free (self->keys_path);
    self->keys_path = NULL;
}

/*  Answers one ZAP request of frames: 200 with the key as User-Id if the
    configuration admits it, else 400. */
static void
s_zap_answer (dp_broker_t *self, void *socket, zmq_msg_t *frames, size_t count)
{
    char user[DP_CURVE_KEY + 1] = "";
    bool curve = count >= ZAP_FRAMES && zmq_msg_size (&frames[5]) == 5 &&
                 memcmp (zmq_msg_data (&frames[5]), "CURVE", 5) == 0 &&
                 zmq_msg_size (&frames[6]) == ZAP_KEY_SIZE;
    if (curve)
        zmq_z85_encode (user, (const uint8_t *)zmq_msg_data (&frames[6]), ZAP_KEY_SIZE);
    bool ok = curve && (!self->keys || dp_keys_lookup (self->keys, user));
    const char *reply[6] = {
        "1.0", NULL, ok ? "200" : "400", ok ? "OK" : "key not admitted", ok ? user : "", ""};
    for (int i = 0; i < 6; i++) {
        int more = i < 5 ? ZMQ_SNDMORE : 0;
        if (i == 1 && count >= 2)
            zmq_send (socket, zmq_msg_data (&frames[1]), zmq_msg_size (&frames[1]), more);
        else
            zmq_send (socket, reply[i] ? reply[i] : "", reply[i] ? strlen (reply[i]) : 0, more);
    }
}

void
dp_broker_on_zap (dp_broker_t *self)
{
    if (!self->zap)
        return;
    void *socket = zsock_resolve (self->zap);
    zmq_msg_t frames[ZAP_FRAMES + 1];
    for (;;) {
        size_t count = 0;
        int more = 1;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init (&part);
            if (zmq_msg_recv (&part, socket, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close (&part);
                for (size_t i = 0; i < count; i++)
                    zmq_msg_close (&frames[i]);
                return; /* nothing (more) waits: a REP gets whole requests */
            }
            more = zmq_msg_more (&part);
            if (count < ZAP_FRAMES + 1)
                frames[count++] = part;
            else
                zmq_msg_close (&part);
        }
        s_zap_answer (self, socket, frames, count);
        for (size_t i = 0; i < count; i++)
            zmq_msg_close (&frames[i]);
    }
}

void
dp_broker_peer_forget (dp_broker_t *self, peer_t *peer)
{
    if (peer->kind == PEER_LANE) {
        dp_broker_lane_drop (self, peer);
        return;
    }
    if (peer->kind == PEER_WLANE) {
        dp_broker_wlane_drop (self, peer);
        return;
    }
    if (peer->worker)
        dp_broker_worker_remove (self, peer->worker, false);
    if (peer->client) {
        dp_broker_client_forget (self, peer->client); /* deletes the peer too */
        return;
    }
    dp_broker_peer_delete (self, peer);
}

bool
dp_broker_admit (dp_broker_t *self, const zmq_msg_t *frame, const zmq_msg_t *rid)
{
    self->from = NULL;
    self->from_user[0] = 0;
    if (!self->zap)
        return true;
    const char *user = frame ? zmq_msg_gets ((zmq_msg_t *)frame, "User-Id") : NULL;
    if (user && strlen (user) == DP_CURVE_KEY)
        memcpy (self->from_user, user, DP_CURVE_KEY + 1);
    /*  Every tcp:// or ipc:// connection passed CURVE and the ZAP handler,
        which names its key; one with no User-Id is an inproc:// connection,
        the broker's own process (an embedded pool's, an SPMD rank 0's):
        it has every right. */
    if (!self->keys || !user || !*user)
        return true;
    self->from = dp_keys_lookup (self->keys, self->from_user);
    if (self->from)
        return true;
    self->refused[REFUSED_REMOVED]++;
    char key[2 * MAX_RID + 1] = "?";
    if (rid)
        dp_broker_hex ((const uint8_t *)zmq_msg_data ((zmq_msg_t *)rid),
                       zmq_msg_size ((zmq_msg_t *)rid), key);
    dp_broker_warn_once (self, key, "a key no longer in the key configuration");
    if (!rid)
        return false;
    peer_t *peer = dp_broker_peer_lookup (self, zmq_msg_data ((zmq_msg_t *)rid),
                                          zmq_msg_size ((zmq_msg_t *)rid));
    if (peer)
        dp_broker_peer_forget (self, peer);
    dp_encode_error (&self->w, DPOOL_EDENIED,
                     "your key is no longer in the broker's key configuration");
    dp_wire_send_writer (self->handle, zmq_msg_data ((zmq_msg_t *)rid),
                         zmq_msg_size ((zmq_msg_t *)rid), DP_CMD_ERROR, &self->w, ZMQ_DONTWAIT);
    return false;
}

bool
dp_broker_may (dp_broker_t *self, dp_right_t right, int which, char *message, size_t size)
{
    if (!self->from || (self->from->rights & right))
        return true;
    self->refused[which]++;
    char rights[64];
    snprintf (message, size, "key '%s' may not %s (roles: %s)", self->from->name,
              right == DP_RIGHT_SUBMIT   ? "submit tasks"
              : right == DP_RIGHT_WORKER ? "serve as a worker"
              : right == DP_RIGHT_QUEUE  ? "use named queues"
                                         : "administer",
              dp_rights_text (self->from->rights, rights, sizeof rights));
    return false;
}

bool
dp_broker_is_admin (const dp_broker_t *self)
{
    return !self->from || (self->from->rights & DP_RIGHT_ADMIN);
}

const dp_key_t *
dp_broker_client_key (const dp_broker_t *self, const client_t *client)
{
    return client->account ? dp_keys_lookup (self->keys, client->account->user) : NULL;
}

/*  The quota that applies: the key's own if it has one, else the
    broker's per-client option. */
static size_t
s_quota (uint64_t own, size_t option)
{
    return own > 0 ? (size_t)own : option;
}

bool
dp_broker_quota_refused (dp_broker_t *self, client_t *client, size_t args_size, char *message,
                         size_t size)
{
    const dp_key_t *key = dp_broker_client_key (self, client);
    size_t tasks = client->account ? client->account->tasks : client->held_tasks;
    size_t bytes = client->account ? client->account->bytes : client->held_args;
    size_t max_tasks = s_quota (key ? key->max_queued : 0, self->max_queued_per_client);
    size_t max_bytes =
        s_quota (key ? key->max_queued_bytes : 0, self->max_queued_bytes_per_client);
    const char *who = key ? "key" : "session";
    const char *name = key ? key->name : client->name;
    if (max_tasks && tasks >= max_tasks)
        snprintf (message, size, "quota reached: %s '%s' holds %zu tasks (%s)", who, name, tasks,
                  key && key->max_queued ? "max_queued" : "--max-queued-per-client");
    else if (max_bytes && bytes + args_size > max_bytes)
        snprintf (message, size, "quota reached: %s '%s' holds %zu bytes of arguments (%s)", who,
                  name, bytes,
                  key && key->max_queued_bytes ? "max_queued_bytes"
                                               : "--max-queued-bytes-per-client");
    else
        return false;
    self->refused[REFUSED_QUOTA]++;
    return true;
}

void
dp_broker_client_task_add (dp_broker_t *self, client_t *client, const task_t *task)
{
    (void)self;
    client->held_tasks++;
    client->held_args += task->args_size;
    client->tenant->held_tasks++;
    client->tenant->held_bytes += task->args_size;
    if (client->account) {
        client->account->tasks++;
        client->account->bytes += task->args_size;
    }
}

void
dp_broker_client_task_remove (dp_broker_t *self, client_t *client, task_t *task)
{
    (void)self;
    if (!dp_idmap_remove (client->tasks, task->seq))
        return;
    client->held_tasks--;
    client->held_args -= task->args_size;
    client->tenant->held_tasks--;
    client->tenant->held_bytes -= task->args_size;
    if (client->account) {
        client->account->tasks--;
        client->account->bytes -= task->args_size;
    }
}

void
dp_broker_client_account (dp_broker_t *self, client_t *client)
{
    if (!self->accounts || client->account || !self->from_user[0])
        return;
    account_t *account = (account_t *)zhashx_lookup (self->accounts, self->from_user);
    if (!account) {
        account = (account_t *)calloc (1, sizeof *account);
        if (!account)
            return; /* this session counts alone */
        memcpy (account->user, self->from_user, sizeof account->user);
        zhashx_insert (self->accounts, account->user, account);
    }
    account->sessions++;
    account->tasks += client->held_tasks;
    account->bytes += client->held_args;
    client->account = account;
}

void
dp_broker_client_unaccount (dp_broker_t *self, client_t *client)
{
    client->tenant->held_tasks -= client->held_tasks;
    client->tenant->held_bytes -= client->held_args;
    account_t *account = client->account;
    if (!account)
        return;
    account->tasks -= client->held_tasks;
    account->bytes -= client->held_args;
    client->account = NULL;
    if (--account->sessions == 0)
        zhashx_delete (self->accounts, account->user);
}

/*  Forgets every peer whose key the configuration no longer holds. */
static void
s_forget_removed (dp_broker_t *self)
{
    zlistx_t *gone = zlistx_new ();
    if (!gone)
        return;
    zlistx_set_duplicator (gone, (zlistx_duplicator_fn *)strdup);
    zlistx_set_destructor (gone, (zlistx_destructor_fn *)zstr_free);
    for (peer_t *peer = (peer_t *)zhashx_first (self->peers); peer;
         peer = (peer_t *)zhashx_next (self->peers))
        if (peer->user[0] && !dp_keys_lookup (self->keys, peer->user))
            zlistx_add_end (gone, peer->key);
    for (const char *key = (const char *)zlistx_first (gone); key;
         key = (const char *)zlistx_next (gone)) {
        /*  Forgetting one peer may delete another (a session's lanes). */
        peer_t *peer = (peer_t *)zhashx_lookup (self->peers, key);
        if (peer) {
            dp_info ("peer %s forgotten: its key left the configuration", key);
            dp_broker_peer_forget (self, peer);
        }
    }
    zlistx_destroy (&gone);
}

int
dp_broker_reload (dp_broker_t *self)
{
    if (!self->keys_path)
        return 0;
    char err[512] = "";
    dp_keys_t *keys = dp_keys_load (self->keys_path, err, sizeof err);
    if (!keys) {
        dp_error ("reload refused, the old keys stay: %s", err);
        return -1;
    }
    dp_keys_destroy (&self->keys);
    self->keys = keys;
    self->reloads++;
    s_forget_removed (self);
    dp_broker_fair_reconfigure (self);
    self->dispatch_needed = true;
    dp_info ("keys reloaded from %s: %zu admitted", self->keys_path, dp_keys_size (keys));
    return 0;
}

void
dp_broker_reload_soon (dp_broker_t *self)
{
    self->reload_pending = 1;
}

/*  One session's entry: its key, what it (or its key) holds and the
    quotas that apply. */
static void
s_pack_client (dp_broker_t *self, msgpack_packer *pk, client_t *client)
{
    const dp_key_t *key = dp_broker_client_key (self, client);
    char rights[64];
    msgpack_pack_map (pk, 9);
    dp_mp_pack_cstr (pk, "name");
    dp_mp_pack_cstr (pk, client->name);
    dp_mp_pack_cstr (pk, "key");
    dp_mp_pack_cstr (pk, key ? key->name : "");
    dp_mp_pack_cstr (pk, "roles");
    dp_mp_pack_cstr (pk,
                     dp_rights_text (key ? key->rights : DP_RIGHTS_ALL, rights, sizeof rights));
    dp_mp_pack_count (pk, "weight", client->tenant->weight);
    dp_mp_pack_count (pk, "tasks", client->held_tasks);
    dp_mp_pack_count (pk, "task_bytes", client->held_args);
    dp_mp_pack_count (pk, "key_tasks",
                      client->account ? client->account->tasks : client->held_tasks);
    dp_mp_pack_count (pk, "max_queued",
                      s_quota (key ? key->max_queued : 0, self->max_queued_per_client));
    dp_mp_pack_count (
        pk, "max_queued_bytes",
        s_quota (key ? key->max_queued_bytes : 0, self->max_queued_bytes_per_client));
}

void
dp_broker_pack_clients (dp_broker_t *self, void *packer, const peer_t *asker)
{
    msgpack_packer *pk = (msgpack_packer *)packer;
    bool admin = dp_broker_is_admin (self);
    client_t *own = asker->client ? asker->client : asker->lane_of;
    size_t count = admin ? zhashx_size (self->sessions) : own != NULL;
    if (count > DP_BROKER_STATUS_MAX)
        count = DP_BROKER_STATUS_MAX;
    dp_mp_pack_cstr (pk, "sessions");
    msgpack_pack_array (pk, count);
    if (!admin && own)
        s_pack_client (self, pk, own);
    for (client_t *client = admin ? (client_t *)zhashx_first (self->sessions) : NULL;
         client && count; client = (client_t *)zhashx_next (self->sessions), count--)
        s_pack_client (self, pk, client);
    dp_mp_pack_cstr (pk, "refused");
    msgpack_pack_map (pk, REFUSED_COUNT_ + 2);
    for (int i = 0; i < REFUSED_COUNT_; i++)
        dp_mp_pack_count (pk, s_refused_names[i], self->refused[i]);
    dp_mp_pack_count (pk, "keys", dp_keys_size (self->keys));
    dp_mp_pack_count (pk, "reloads", self->reloads);
}
