/*  queue_demo.c - the tutorial's second example in C: pool processes talk
    through a Manager().Queue(). A writer task puts the letters of "itcast"
    on a queue held by the broker; a reader task takes them off.

        queue_demo                          an embedded pool
        queue_demo --connect EP             the tasks go to a running broker
        queue_demo --worker EP [--procs N]  serve the two tasks to that broker

    What it prints, as the tutorial does (in English): the program's
    "(pid) start", the writer's and the reader's "started" lines with their
    process and its parent, one "reader got from the queue: x" per letter,
    and the program's "(pid) End". The tasks print from the worker processes
    that run them: with --connect, their lines come out where the workers
    run (--worker).

    The tutorial passes the queue itself to the tasks (a Manager proxy); a
    dpool queue is named, so the tasks get its name and open it. Instead of
    the tutorial's time.sleep(1) "so that the writer is done first", the
    program waits for the writer's result before it submits the reader.
*/
#include "dpool.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WRITER_FN          "queue_demo.writer"
#define READER_FN          "queue_demo.reader"
#define MESSAGE            "itcast"
#define PROCS              3     /* Pool(): a few processes */
#define MAX_PROCS          1024  /* --procs upper bound */
#define CONNECT_TIMEOUT_MS 5000  /* how long --connect waits for the broker */
#define TASK_TIMEOUT_MS    30000 /* of each task, and of the wait for it */
#define GET_TIMEOUT_MS     10000 /* q.get(True): a letter is there, or something is wrong */
#define EXIT_OK            0
#define EXIT_FAILED        1
#define EXIT_USAGE         2
#define EXIT_UNREACHABLE   3

static const char s_usage[] =
    "usage: queue_demo [--connect EP | --worker EP [--procs N]]\n"
    "\n"
    "The tutorial's Manager().Queue() example: a writer task puts the letters of\n"
    "\"" MESSAGE "\" on a queue the broker holds, a reader task takes them off and prints\n"
    "them.\n"
    "\n"
    "  (no option)        run embedded: the pool forks its own worker processes\n"
    "  --connect EP       submit the tasks to the dpool-broker at EP (tcp://host:port)\n"
    "  --worker EP        serve \"" WRITER_FN "\" and \"" READER_FN "\" to the broker\n"
    "                     at EP until SIGINT/SIGTERM\n"
    "  --procs N          worker processes with --worker (default 3)\n"
    "  --help             show this help\n"
    "\n"
    "Exit status: 0 done, 1 a task failed, 2 bad usage, 3 broker unreachable.\n";

/*  The queue's name, the task's one argument: a str (or an array holding
    one, like the tutorial's (q,)). Returns it NUL-terminated in name. */
static bool
s_queue_name (const msgpack_object *args, char *name, size_t size)
{
    if (args->type == MSGPACK_OBJECT_ARRAY && args->via.array.size == 1)
        args = &args->via.array.ptr[0];
    if (args->type != MSGPACK_OBJECT_STR || args->via.str.size == 0 || args->via.str.size >= size)
        return false;
    memcpy (name, args->via.str.ptr, args->via.str.size);
    name[args->via.str.size] = 0;
    return true;
}

/*  writer(q): for i in "itcast": q.put(i) */
static int
s_writer (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    char name[256];
    if (!s_queue_name (args, name, sizeof name))
        return dpool_task_fail (task, "%s wants the queue's name", WRITER_FN);
    printf ("writer started (%ld), parent (%ld)\n", (long)getpid (), (long)getppid ());
    fflush (stdout);
    dpool_queue_t *q = dpool_task_queue_open (task, name, 0);
    if (!q)
        return dpool_task_fail (task, "cannot open queue %s: %s", name,
                                dpool_strerror (dpool_errno ()));
    for (const char *letter = MESSAGE; *letter; letter++) {
        char packed[2] = {(char)0xa1, *letter}; /* a one-byte msgpack str */
        if (dpool_queue_put (q, packed, sizeof packed, -1))
            return dpool_task_fail (task, "put: %s", dpool_queue_error (q));
    }
    return msgpack_pack_uint32 (result, (uint32_t)strlen (MESSAGE));
}

/*  reader(q): for i in range(q.qsize()): print(q.get(True)) */
static int
s_reader (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    char name[256];
    if (!s_queue_name (args, name, sizeof name))
        return dpool_task_fail (task, "%s wants the queue's name", READER_FN);
    printf ("reader started (%ld), parent (%ld)\n", (long)getpid (), (long)getppid ());
    fflush (stdout);
    dpool_queue_t *q = dpool_task_queue_open (task, name, 0);
    size_t size = 0;
    if (!q || dpool_queue_qsize (q, &size))
        return dpool_task_fail (task, "cannot size queue %s: %s", name,
                                dpool_strerror (dpool_errno ()));
    for (size_t i = 0; i < size; i++) {
        msgpack_object value;
        if (dpool_queue_get (q, GET_TIMEOUT_MS, &value))
            return dpool_task_fail (task, "get: %s", dpool_queue_error (q));
        if (value.type == MSGPACK_OBJECT_STR)
            printf ("reader got from the queue: %.*s\n", (int)value.via.str.size,
                    value.via.str.ptr);
        else
            printf ("reader got from the queue: (not a str)\n");
        fflush (stdout);
    }
    return msgpack_pack_uint64 (result, size);
}

/*  Registers the two task functions; returns 0 or -1. */
static int
s_register (void)
{
    if (dpool_register (WRITER_FN, s_writer, NULL) || dpool_register (READER_FN, s_reader, NULL)) {
        fprintf (stderr, "queue_demo: cannot register the tasks: %s\n",
                 dpool_strerror (dpool_errno ()));
        return -1;
    }
    return 0;
}

/*  Submits fn(name) and waits for it; returns 0, or -1 after a message. */
static int
s_run_task (dpool_pool_t *pool, const char *fn, const char *name)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 1);
    msgpack_pack_str_with_body (&pk, name, strlen (name));
    dpool_call_t call = {.timeout_ms = TASK_TIMEOUT_MS};
    dpool_result_t *result = dpool_pool_apply_async (pool, fn, args.data, args.size, &call);
    msgpack_sbuffer_destroy (&args);
    int rc = 0;
    if (!result || dpool_result_wait (result, TASK_TIMEOUT_MS * 2) ||
        !dpool_result_successful (result)) {
        const char *why = result ? dpool_result_error (result) : NULL;
        fprintf (stderr, "queue_demo: %s failed: %s\n", fn,
                 why ? why
                     : dpool_strerror (result ? dpool_result_code (result) : dpool_errno ()));
        rc = -1;
    }
    dpool_result_destroy (&result);
    return rc;
}

/*  The tutorial's main: returns the exit status. */
static int
s_main (const char *connect)
{
    printf ("(%ld) start\n", (long)getpid ());
    dpool_pool_t *pool = connect ? dpool_pool_connect (connect) : dpool_pool_new (PROCS);
    if (!pool) {
        fprintf (stderr, "queue_demo: cannot make the pool: %s\n",
                 dpool_strerror (dpool_errno ()));
        return connect ? EXIT_UNREACHABLE : EXIT_FAILED;
    }
    if (connect) {
        void *status;
        size_t size;
        if (dpool_pool_status (pool, CONNECT_TIMEOUT_MS, &status, &size)) {
            fprintf (stderr, "queue_demo: cannot reach the broker at %s\n", connect);
            dpool_pool_destroy (&pool);
            return EXIT_UNREACHABLE;
        }
        free (status);
    }
    /*  q = Manager().Queue(): a queue of this run's own. */
    char name[128];
    snprintf (name, sizeof name, "queue_demo.%ld.%ld", (long)getpid (), (long)time (NULL));
    dpool_queue_t *q = dpool_queue_open (pool, name, 0);
    int rc = EXIT_OK;
    if (!q) {
        fprintf (stderr, "queue_demo: cannot open the queue: %s\n",
                 dpool_strerror (dpool_errno ()));
        rc = EXIT_FAILED;
    } else if (s_run_task (pool, WRITER_FN, name) || s_run_task (pool, READER_FN, name))
        rc = EXIT_FAILED;
    dpool_queue_destroy (&q);
    dpool_pool_close (pool);
    dpool_pool_join (pool, -1);
    dpool_pool_destroy (&pool);
    printf ("(%ld) End\n", (long)getpid ());
    return rc;
}

/*  Prints a usage error and returns the usage exit status. */
static int
s_usage_error (const char *what, const char *arg)
{
    fprintf (stderr, "queue_demo: %s%s%s\nTry 'queue_demo --help'.\n", what, arg ? ": " : "",
             arg ? arg : "");
    return EXIT_USAGE;
}

int
main (int argc, char *argv[])
{
    const char *connect = NULL;
    const char *worker = NULL;
    long procs = PROCS;
    bool procs_given = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp (arg, "--help") == 0 || strcmp (arg, "-h") == 0) {
            fputs (s_usage, stdout);
            return EXIT_OK;
        }
        if (strcmp (arg, "--version") == 0) {
            printf ("queue_demo (dpool %s)\n", DPOOL_VERSION_STRING);
            return EXIT_OK;
        }
        if (strcmp (arg, "--connect") && strcmp (arg, "--worker") && strcmp (arg, "--procs"))
            return s_usage_error ("unknown argument", arg);
        if (i + 1 == argc)
            return s_usage_error ("missing value after", arg);
        const char *value = argv[++i];
        if (strcmp (arg, "--connect") == 0)
            connect = value;
        else if (strcmp (arg, "--worker") == 0)
            worker = value;
        else {
            char *end;
            procs = strtol (value, &end, 10);
            if (*value == 0 || *end || procs < 1 || procs > MAX_PROCS)
                return s_usage_error ("--procs wants a number from 1 to 1024", value);
            procs_given = true;
        }
    }
    if (connect && worker)
        return s_usage_error ("--connect and --worker exclude each other", NULL);
    if (procs_given && !worker)
        return s_usage_error ("--procs goes with --worker", NULL);
    /*  Line-buffered before any worker is forked, so that the workers'
        lines and ours come out whole and in order. */
    setvbuf (stdout, NULL, _IOLBF, 0);
    if (s_register ())
        return EXIT_FAILED;
    if (worker)
        return dpool_worker_serve (worker, (int)procs) == 0 ? EXIT_OK : EXIT_FAILED;
    return s_main (connect);
}
