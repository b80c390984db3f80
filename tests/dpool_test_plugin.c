/*  dpool_test_plugin.c - a plugin for the tests of dpool-worker's
    --initializer: test.init records its arguments and how often it ran in
    the worker process (and fails when its argument is "fail"); test.state
    returns what it recorded, from the process that runs it.
*/
#include <dpool.h>

#include <string.h>
#include <unistd.h>

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

int
dpool_plugin_init (void)
{
    if (dpool_register ("test.init", s_init, NULL) || dpool_register ("test.state", s_state, NULL))
        return -1;
    return 0;
}
