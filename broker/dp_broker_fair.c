/*  dp_broker_fair.c - fair share of the workers' time between tenants.

    A tenant is a client session, or with CURVE a client key (all its
    sessions together). Each function's queue (fnq_t) holds one flow per
    tenant with tasks for it, ordered within by priority then arrival
    (dp_taskq_t), and a binary heap of the flows that have tasks queued,
    by their tenant's virtual time: the run time dispatched for it so far,
    divided by its weight (start-time fair queueing). A worker takes the
    best task of the tenant furthest behind, whose virtual time then grows
    by the task's expected run time over its weight; when the task is done
    and its run time known, a longer run is charged on top, a shorter one
    refunded from its next charges. A tenant that was idle comes back at
    the virtual time of the last one served: it is served next, but banks
    nothing for the time it was away; and it is fresh until one of its
    tasks is dispatched: its next task is urgent, which dispatch sends at
    once to a worker that runs it before the jobs it holds (the waiting
    flows below), so that it waits for no other tenant's prefetched jobs.

    One tenant's virtual time is the key of each of its flows, in the heap
    of each function it uses, and only grows. So a heap holds keys that
    may have fallen behind their tenant's: the top is brought up to date
    (and sifted down) before it is taken, which keeps the top right at
    O(log n) a change. A tenant at its quota of tasks running (its key's
    max_running, else --max-running-per-client) has its flows taken out of
    the heaps, and put back when one of its tasks ends.

    A tenant is keyed by its CURVE key when the message that opened its
    first session carried one (every session of that key then shares it),
    else by its session's id. Its weight is its key's `weight` in the key
    configuration, else the --weights entry for its key, else 1; a reload
    of the configuration applies to tenants alive.

    Status shows each tenant's share of the workers' recent time: the run
    time its tasks took in the current and the previous share period
    (SHARE_PERIOD_MS each), over every tenant's in the same periods.
*/
#include "dp_broker_int.h"

#include "dp_util.h"

#include <msgpack.h>

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VTIME_SCALE     64      /* virtual time units per us, so that weights divide finely */
#define REFUND_MAX_US   1000000 /* run time refunded at most, so no tenant banks much */
#define WEIGHT_MAX      1000000 /* heaviest weight */
#define SHARE_PERIOD_MS 5000    /* status's shares count run time of this period and the last */

/*  ---------------------------------------------------------------------------
    The heap of an fnq's flows, by key.
*/

static void
s_heap_place (fnq_t *fnq, uint32_t at, flow_t *flow)
{
    fnq->heap[at] = flow;
    flow->index = at;
}

static void
s_heap_up (fnq_t *fnq, uint32_t at)
{
    flow_t *flow = fnq->heap[at];
    while (at > 0) {
        uint32_t parent = (at - 1) / 2;
        if (fnq->heap[parent]->key <= flow->key)
            break;
        s_heap_place (fnq, at, fnq->heap[parent]);
        at = parent;
    }
    s_heap_place (fnq, at, flow);
}

static void
s_heap_down (fnq_t *fnq, uint32_t at)
{
    flow_t *flow = fnq->heap[at];
    for (;;) {
        uint32_t child = 2 * at + 1;
        if (child >= fnq->nheap)
            break;
        if (child + 1 < fnq->nheap && fnq->heap[child + 1]->key < fnq->heap[child]->key)
            child++;
        if (fnq->heap[child]->key >= flow->key)
            break;
        s_heap_place (fnq, at, fnq->heap[child]);
        at = child;
    }
    s_heap_place (fnq, at, flow);
}

/*  Puts flow in its fnq's heap, which has room (a slot per flow alive). */
static void
s_heap_insert (flow_t *flow)
{
    fnq_t *fnq = flow->fnq;
    assert (flow->index == FLOW_NONE && fnq->nheap < fnq->heap_cap);
    flow->key = flow->tenant->vtime;
    s_heap_place (fnq, fnq->nheap++, flow);
    s_heap_up (fnq, flow->index);
}

static void
s_heap_remove (flow_t *flow)
{
    fnq_t *fnq = flow->fnq;
    uint32_t at = flow->index;
    assert (at < fnq->nheap && fnq->heap[at] == flow);
    flow->index = FLOW_NONE;
    uint32_t last = --fnq->nheap;
    if (at == last)
        return;
    s_heap_place (fnq, at, fnq->heap[last]);
    if (at > 0 && fnq->heap[at]->key < fnq->heap[(at - 1) / 2]->key)
        s_heap_up (fnq, at);
    else
        s_heap_down (fnq, at);
}

/*  Makes room in fnq's heap for one more flow. Returns 0 or -1. */
static int
s_heap_reserve (fnq_t *fnq)
{
    if (fnq->nflows < fnq->heap_cap)
        return 0;
    uint32_t cap = fnq->heap_cap ? fnq->heap_cap * 2 : 4;
    flow_t **heap = (flow_t **)realloc (fnq->heap, cap * sizeof (flow_t *));
    if (!heap)
        return -1;
    fnq->heap = heap;
    fnq->heap_cap = cap;
    return 0;
}

/*  ---------------------------------------------------------------------------
    Tenants.
*/

static void
s_tenant_free (void **item)
{
    tenant_t *tenant = (tenant_t *)*item;
    if (tenant) {
        zhashx_destroy (&tenant->flows);
        free (tenant);
        *item = NULL;
    }
}

/*  Parses one "KEY=N" of the weights option into the table. */
static int
s_weight_parse (dp_broker_t *self, char *entry)
{
    char *equals = strrchr (entry, '=');
    char *end = NULL;
    unsigned long weight = equals ? strtoul (equals + 1, &end, 10) : 0;
    if (!equals || equals == entry || (size_t)(equals - entry) >= TENANT_KEY_SIZE ||
        end == equals + 1 || *end || weight < 1 || weight > WEIGHT_MAX) {
        dp_error ("--weights: '%s' is not KEY=N (N from 1 to %d)", entry, WEIGHT_MAX);
        return -1;
    }
    *equals = '\0';
    zhashx_update (self->weights, entry, (void *)(uintptr_t)weight);
    return 0;
}

int
dp_broker_fair_init (dp_broker_t *self, const char *weights)
{
    self->tenants = zhashx_new ();
    self->weights = zhashx_new ();
    if (!self->tenants || !self->weights)
        return -1;
    zhashx_set_destructor (self->tenants, s_tenant_free);
    if (!weights || !*weights)
        return 0;
    char *copy = strdup (weights);
    if (!copy)
        return -1;
    int rc = 0;
    char *save = NULL;
    for (char *entry = strtok_r (copy, ",", &save); entry && rc == 0;
         entry = strtok_r (NULL, ",", &save))
        rc = s_weight_parse (self, entry);
    free (copy);
    return rc;
}

void
dp_broker_fair_fini (dp_broker_t *self)
{
    zhashx_destroy (&self->tenants);
    zhashx_destroy (&self->weights);
}

/*  Moves a share count's periods on to period: the current becomes the
    previous, or both are cleared if more than one period passed. */
static void
s_recent_roll (uint64_t recent_us[2], int64_t *at, int64_t period)
{
    if (*at == period)
        return;
    recent_us[1] = *at + 1 == period ? recent_us[0] : 0;
    recent_us[0] = 0;
    *at = period;
}

/*  The share period of now (of this round: see round_ms). */
static int64_t
s_period (const dp_broker_t *self)
{
    return (self->round_ms - self->started) / SHARE_PERIOD_MS;
}

/*  The most tasks of tenant running at once; 0: no bound. */
static size_t
s_max_running (const dp_broker_t *self, const tenant_t *tenant)
{
    return tenant->max_running ? (size_t)tenant->max_running : self->max_running;
}

static void
s_tenant_block (tenant_t *tenant, bool blocked);

/*  Gives tenant its key's weight, running quota and name, from the key
    configuration and the --weights table; it is blocked or let go at
    once if its quota of tasks running changed. */
static void
s_tenant_configure (dp_broker_t *self, tenant_t *tenant)
{
    const dp_key_t *entry =
        tenant->keyed && self->keys ? dp_keys_lookup (self->keys, tenant->key) : NULL;
    uintptr_t weight = (uintptr_t)zhashx_lookup (self->weights, tenant->key);
    if (entry && entry->weight)
        weight = entry->weight;
    tenant->weight = weight ? (uint32_t)weight : 1;
    tenant->max_running = entry ? entry->max_running : 0;
    if (entry)
        snprintf (tenant->name, sizeof tenant->name, "%s", entry->name);
    size_t max = s_max_running (self, tenant);
    bool full = max > 0 && tenant->running >= max;
    if (full != tenant->blocked) {
        s_tenant_block (tenant, full);
        self->dispatch_needed = true;
    }
}

tenant_t *
dp_broker_tenant_get (dp_broker_t *self, const char *key, const char *name)
{
    tenant_t *tenant = (tenant_t *)zhashx_lookup (self->tenants, key);
    if (!tenant) {
        tenant = (tenant_t *)calloc (1, sizeof *tenant);
        if (!tenant)
            return NULL;
        tenant->flows = zhashx_new ();
        if (!tenant->flows) {
            free (tenant);
            return NULL;
        }
        snprintf (tenant->key, sizeof tenant->key, "%s", key);
        tenant->keyed = strlen (key) == DP_CURVE_KEY;
        if (tenant->keyed)
            snprintf (tenant->name, sizeof tenant->name, "%.8s", key);
        else
            snprintf (tenant->name, sizeof tenant->name, "%s", name);
        tenant->vtime = self->vtime;
        tenant->recent_period = s_period (self);
        s_tenant_configure (self, tenant);
        zhashx_insert (self->tenants, tenant->key, tenant);
    }
    tenant->sessions++;
    return tenant;
}

void
dp_broker_fair_reconfigure (dp_broker_t *self)
{
    for (tenant_t *tenant = (tenant_t *)zhashx_first (self->tenants); tenant;
         tenant = (tenant_t *)zhashx_next (self->tenants))
        s_tenant_configure (self, tenant);
}

/*  Frees tenant once no session and no flow names it. */
static void
s_tenant_check (dp_broker_t *self, tenant_t *tenant)
{
    if (tenant->sessions > 0 || zhashx_size (tenant->flows) > 0)
        return;
    zhashx_delete (self->tenants, tenant->key);
}

void
dp_broker_tenant_release (dp_broker_t *self, tenant_t *tenant)
{
    assert (tenant->sessions > 0);
    tenant->sessions--;
    s_tenant_check (self, tenant);
}

tenant_t *
dp_broker_tenant_of (dp_broker_t *self, const client_t *client)
{
    (void)self;
    return client->tenant;
}

/*  ---------------------------------------------------------------------------
    Flows.
*/

flow_t *
dp_broker_flow_get (dp_broker_t *self, client_t *client, fnq_t *fnq)
{
    tenant_t *tenant = dp_broker_tenant_of (self, client);
    flow_t *flow = tenant->last;
    if (!flow || flow->fnq != fnq)
        flow = (flow_t *)zhashx_lookup (tenant->flows, fnq->name);
    if (!flow) {
        if (s_heap_reserve (fnq) != 0)
            return NULL;
        flow = (flow_t *)calloc (1, sizeof *flow);
        if (!flow)
            return NULL;
        flow->fnq = fnq;
        flow->tenant = tenant;
        flow->index = FLOW_NONE;
        dp_taskq_init (&flow->queue);
        if (zhashx_insert (tenant->flows, fnq->name, flow) != 0) {
            free (flow);
            return NULL;
        }
        fnq->nflows++;
    }
    tenant->last = flow;
    flow->tasks++;
    return flow;
}

void
dp_broker_flow_put (dp_broker_t *self, flow_t *flow)
{
    assert (flow->tasks > 0);
    if (--flow->tasks > 0)
        return;
    assert (dp_taskq_size (&flow->queue) == 0 && flow->index == FLOW_NONE && !flow->waiting);
    tenant_t *tenant = flow->tenant;
    if (tenant->last == flow)
        tenant->last = NULL;
    zhashx_delete (tenant->flows, flow->fnq->name);
    flow->fnq->nflows--;
    dp_taskq_fini (&flow->queue);
    free (flow);
    s_tenant_check (self, tenant);
}

/*  ---------------------------------------------------------------------------
    Waiting flows: a tenant back from idle (nothing queued, nothing
    running) is fresh until a task of its starts; meanwhile each of its
    flows with tasks queued waits, in its fnq's list, oldest first, and
    its next task is urgent. A busy tenant that has nothing running for a
    moment is not fresh: its turn comes by virtual time.
*/

static void
s_wait_add (dp_broker_t *self, flow_t *flow)
{
    fnq_t *fnq = flow->fnq;
    flow->wait_prev = fnq->wait_tail;
    flow->wait_next = NULL;
    if (fnq->wait_tail)
        fnq->wait_tail->wait_next = flow;
    else
        fnq->wait_head = flow;
    fnq->wait_tail = flow;
    flow->waiting = true;
    self->waiting++;
}

static void
s_wait_remove (dp_broker_t *self, flow_t *flow)
{
    fnq_t *fnq = flow->fnq;
    if (flow->wait_prev)
        flow->wait_prev->wait_next = flow->wait_next;
    else
        fnq->wait_head = flow->wait_next;
    if (flow->wait_next)
        flow->wait_next->wait_prev = flow->wait_prev;
    else
        fnq->wait_tail = flow->wait_prev;
    flow->wait_prev = flow->wait_next = NULL;
    flow->waiting = false;
    assert (self->waiting > 0);
    self->waiting--;
}

/*  Takes every flow of tenant, which now has a task running, out of the
    waiting lists. */
static void
s_wait_end (dp_broker_t *self, tenant_t *tenant)
{
    tenant->fresh = false;
    for (flow_t *flow = (flow_t *)zhashx_first (tenant->flows); flow;
         flow = (flow_t *)zhashx_next (tenant->flows))
        if (flow->waiting)
            s_wait_remove (self, flow);
}

task_t *
dp_broker_fair_urgent (dp_broker_t *self, fnq_t *fnq)
{
    (void)self;
    return fnq->wait_head ? (task_t *)dp_taskq_peek (&fnq->wait_head->queue) : NULL;
}

int
dp_broker_fair_push (dp_broker_t *self, task_t *task)
{
    flow_t *flow = task->flow;
    tenant_t *tenant = flow->tenant;
    if (dp_taskq_push (&flow->queue, &task->item) != 0)
        return -1;
    if (tenant->queued == 0 && tenant->vtime < self->vtime)
        tenant->vtime = self->vtime; /* back from idle: no credit for the time away */
    if (tenant->queued == 0 && tenant->running == 0)
        tenant->fresh = true; /* and with nothing running: its next task is urgent */
    tenant->queued++;
    flow->fnq->queued++;
    if (flow->index == FLOW_NONE && !tenant->blocked)
        s_heap_insert (flow);
    if (tenant->fresh && !flow->waiting) {
        s_wait_add (self, flow);
        self->urgent_needed = true;
    }
    return 0;
}

void
dp_broker_fair_remove (dp_broker_t *self, task_t *task)
{
    flow_t *flow = task->flow;
    dp_taskq_remove (&flow->queue, &task->item);
    flow->tenant->queued--;
    flow->fnq->queued--;
    if (dp_taskq_size (&flow->queue) == 0 && flow->index != FLOW_NONE)
        s_heap_remove (flow);
    if (flow->waiting && dp_taskq_size (&flow->queue) == 0)
        s_wait_remove (self, flow);
}

task_t *
dp_broker_fair_peek (dp_broker_t *self, fnq_t *fnq)
{
    (void)self;
    while (fnq->nheap > 0) {
        flow_t *top = fnq->heap[0];
        if (top->key == top->tenant->vtime)
            return (task_t *)dp_taskq_peek (&top->queue);
        assert (top->key < top->tenant->vtime);
        top->key = top->tenant->vtime;
        s_heap_down (fnq, 0);
    }
    return NULL;
}

/*  Takes every flow of tenant out of the heaps (blocked) or puts those
    with tasks queued back. */
static void
s_tenant_block (tenant_t *tenant, bool blocked)
{
    tenant->blocked = blocked;
    for (flow_t *flow = (flow_t *)zhashx_first (tenant->flows); flow;
         flow = (flow_t *)zhashx_next (tenant->flows)) {
        if (blocked && flow->index != FLOW_NONE)
            s_heap_remove (flow);
        else if (!blocked && flow->index == FLOW_NONE && dp_taskq_size (&flow->queue) > 0)
            s_heap_insert (flow);
    }
}

/*  Adds run time to tenant's virtual time, over its weight. */
static void
s_charge (tenant_t *tenant, uint64_t us)
{
    tenant->vtime += us * VTIME_SCALE / tenant->weight;
}

void
dp_broker_fair_started (dp_broker_t *self, task_t *task, uint32_t cost_us)
{
    tenant_t *tenant = task->flow->tenant;
    tenant->running++;
    tenant->dispatched++;
    if (self->vtime < tenant->vtime)
        self->vtime = tenant->vtime;
    uint64_t refund = tenant->refund_us < cost_us ? tenant->refund_us : cost_us;
    tenant->refund_us -= refund;
    s_charge (tenant, cost_us - refund);
    if (tenant->fresh)
        s_wait_end (self, tenant);
    size_t max = s_max_running (self, tenant);
    if (max > 0 && tenant->running >= max && !tenant->blocked)
        s_tenant_block (tenant, true);
}

void
dp_broker_fair_stopped (dp_broker_t *self, task_t *task, uint32_t run_us)
{
    tenant_t *tenant = task->flow->tenant;
    assert (tenant->running > 0);
    tenant->running--;
    uint64_t took = run_us > 0 ? run_us : task->cost_us;
    int64_t period = s_period (self);
    s_recent_roll (tenant->recent_us, &tenant->recent_period, period);
    s_recent_roll (self->recent_us, &self->recent_period, period);
    tenant->charged_us += took;
    tenant->recent_us[0] += took;
    self->recent_us[0] += took;
    if (run_us > task->cost_us)
        s_charge (tenant, run_us - task->cost_us);
    else if (run_us > 0) {
        tenant->refund_us += task->cost_us - run_us;
        if (tenant->refund_us > REFUND_MAX_US)
            tenant->refund_us = REFUND_MAX_US;
    }
    size_t max = s_max_running (self, tenant);
    if (tenant->blocked && (max == 0 || tenant->running < max)) {
        s_tenant_block (tenant, false);
        self->dispatch_needed = true;
    }
}

zlistx_t *
dp_broker_fair_unqueue_all (dp_broker_t *self, fnq_t *fnq)
{
    zlistx_t *tasks = zlistx_new ();
    if (!tasks)
        return NULL;
    for (tenant_t *tenant = (tenant_t *)zhashx_first (self->tenants); tenant;
         tenant = (tenant_t *)zhashx_next (self->tenants)) {
        flow_t *flow = (flow_t *)zhashx_lookup (tenant->flows, fnq->name);
        dp_taskq_item_t *item;
        while (flow && (item = dp_taskq_peek (&flow->queue))) {
            if (!zlistx_add_end (tasks, item))
                return tasks; /* out of memory: the rest stay queued */
            dp_broker_task_unqueue (self, (task_t *)item);
        }
    }
    return tasks;
}

/*  ---------------------------------------------------------------------------
    Status.
*/

/*  One tenant's entry. Its quotas of tasks held are its key's, else the
    options' (which, without a key configuration, bound each session). */
static void
s_pack_tenant (dp_broker_t *self, msgpack_packer *pk, tenant_t *tenant, uint64_t recent_us)
{
    const dp_key_t *entry =
        tenant->keyed && self->keys ? dp_keys_lookup (self->keys, tenant->key) : NULL;
    s_recent_roll (tenant->recent_us, &tenant->recent_period, s_period (self));
    uint64_t own_us = tenant->recent_us[0] + tenant->recent_us[1];
    msgpack_pack_map (pk, 14);
    dp_mp_pack_cstr (pk, "name");
    dp_mp_pack_cstr (pk, tenant->name);
    dp_mp_pack_cstr (pk, "key"); /* a session's id is its secret: only keys are shown */
    dp_mp_pack_cstr (pk, tenant->keyed ? tenant->key : "");
    dp_mp_pack_count (pk, "sessions", tenant->sessions);
    dp_mp_pack_count (pk, "weight", tenant->weight);
    dp_mp_pack_cstr (pk, "share");
    msgpack_pack_double (pk, recent_us ? (double)own_us / (double)recent_us : 0.0);
    dp_mp_pack_count (pk, "run_us", tenant->charged_us);
    dp_mp_pack_count (pk, "dispatched", tenant->dispatched);
    dp_mp_pack_count (pk, "queued", tenant->queued);
    dp_mp_pack_count (pk, "running", tenant->running);
    dp_mp_pack_count (pk, "max_running", s_max_running (self, tenant));
    dp_mp_pack_count (pk, "tasks", tenant->held_tasks);
    dp_mp_pack_count (pk, "task_bytes", tenant->held_bytes);
    dp_mp_pack_count (pk, "max_queued",
                      entry && entry->max_queued ? entry->max_queued
                                                 : self->max_queued_per_client);
    dp_mp_pack_count (pk, "max_queued_bytes",
                      entry && entry->max_queued_bytes ? entry->max_queued_bytes
                                                       : self->max_queued_bytes_per_client);
}

void
dp_broker_pack_tenants (dp_broker_t *self, void *packer, const peer_t *asker)
{
    msgpack_packer *pk = (msgpack_packer *)packer;
    s_recent_roll (self->recent_us, &self->recent_period, s_period (self));
    uint64_t recent_us = self->recent_us[0] + self->recent_us[1];
    const client_t *own = asker->client ? asker->client : asker->lane_of;
    bool admin = dp_broker_is_admin (self);
    size_t count = admin ? zhashx_size (self->tenants) : own != NULL;
    if (count > DP_BROKER_STATUS_MAX)
        count = DP_BROKER_STATUS_MAX;
    dp_mp_pack_cstr (pk, "tenants");
    msgpack_pack_array (pk, count);
    if (!admin && own)
        s_pack_tenant (self, pk, own->tenant, recent_us);
    for (tenant_t *tenant = admin ? (tenant_t *)zhashx_first (self->tenants) : NULL;
         tenant && count; tenant = (tenant_t *)zhashx_next (self->tenants), count--)
        s_pack_tenant (self, pk, tenant, recent_us);
}
