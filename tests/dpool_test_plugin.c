/*  dpool_test_plugin.c - a plugin for the tests of dpool-worker's
    --initializer: test.init records its arguments and how often it ran in
    the worker process (and fails when its argument is "fail"); test.state
    returns what it recorded, from the process that runs it; test.steps
    [n, ms] takes n steps of ms milliseconds, reporting its progress after
    each (the tests of `dpool map`'s progress bar).
*/
#include <dpool.h>

#include <string.h>
#include <time.h>
#include <unistd.h>

#define STEPS_MAX   1000
#define STEP_MAX_MS 10000
#define NS_PER_MS   1000000L
#define MS_PER_S    1000

int
dpool_plugin_init (void);

static int s_init_calls;    /* times test.init ran in this process */
static char s_init_arg[64]; /* its str argument */

/*  A str argument (or nil) to remember; "fail" makes it fail. */
static int
s_init (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    s_init_calls++;
    if (args->type == MSGPACK_OBJECT_STR && args->via.str.size < sizeof s_init_arg) {
        memcpy (s_init_arg, args->via.str.ptr, args->via.str.size);
        s_init_arg[args->via.str.size] = 0;
    }
    if (strcmp (s_init_arg, "fail") == 0)
        return dpool_task_fail (task, "told to fail");
    return msgpack_pack_nil (result);
}

/*  [pid, init calls, init argument] of the process running it. */
static int
s_state (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task;
    (void)args;
    msgpack_pack_array (result, 3);
    msgpack_pack_int (result, (int)getpid ());
    msgpack_pack_int (result, s_init_calls);
    return msgpack_pack_str_with_body (result, s_init_arg, strlen (s_init_arg));
}

/*  [n, ms]: n steps of ms each, [i, n] reported after step i; returns n. */
static int
s_steps (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_ARRAY || args->via.array.size != 2)
        return dpool_task_fail (task, "test.steps: expected [n, ms]");
    const msgpack_object *arg = args->via.array.ptr;
    if (arg[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        arg[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || arg[0].via.u64 > STEPS_MAX ||
        arg[1].via.u64 > STEP_MAX_MS)
        return dpool_task_fail (task, "test.steps: expected [n, ms]");
    uint64_t steps = arg[0].via.u64, ms = arg[1].via.u64;
    for (uint64_t i = 1; i <= steps; i++) {
        struct timespec pause = {(time_t)(ms / MS_PER_S), (long)(ms % MS_PER_S) * NS_PER_MS};
        nanosleep (&pause, NULL);
        dpool_task_progress (task, i, steps);
    }
    return msgpack_pack_uint64 (result, steps);
}

int
dpool_plugin_init (void)
{
    if (dpool_register ("test.init", s_init, NULL) ||
        dpool_register ("test.state", s_state, NULL) ||
        dpool_register ("test.steps", s_steps, NULL))
        return -1;
    return 0;
}
