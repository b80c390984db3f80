/*  demo.h - the tutorial's first example, shared by examples/pool_demo and
    `dpool demo`.

    A pool of three processes runs ten tasks. Each task prints "N started,
    pid P" from the process running it, sleeps a random 0 to 2 seconds and
    prints "N finished in T s". The program prints "----start----" once it
    has submitted them all and "-----end-----" after join, as Python's
    multiprocessing.Pool(3) does in the tutorial. The same program runs
    embedded (the pool forks its own workers), as a client of a running
    broker, or as the worker that serves the task function to a broker.
*/
#ifndef DEMO_H_INCLUDED
#define DEMO_H_INCLUDED

#define DEMO_FN               "demo.work" /* the task function's registered name */
#define DEMO_PROCS            3           /* Pool(3) */
#define DEMO_TASKS            10          /* for i in range(0, 10) */
#define DEMO_EXIT_OK          0           /* every task succeeded */
#define DEMO_EXIT_FAILED      1           /* a task failed or join ran out of time */
#define DEMO_EXIT_UNREACHABLE 3           /* the broker could not be reached */

/*  Registers the demo's task function, DEMO_FN, in this process. Returns 0,
    or -1 with dpool_errno set. */
int demo_register (void);

/*  Runs the demo and prints its output on stdout (made line-buffered).
    connect NULL: an embedded pool of DEMO_PROCS processes; else tasks go to
    the broker at connect, which must answer within connect_timeout_ms.
    Returns DEMO_EXIT_OK, DEMO_EXIT_FAILED or DEMO_EXIT_UNREACHABLE; reasons
    go to stderr. Blocks until the tasks are done or a deadline passes. */
int demo_run (const char *connect, int connect_timeout_ms);

/*  Serves the demo's function to the broker at endpoint with procs worker
    processes, until SIGINT or SIGTERM. Returns 0, or -1 if it could not
    start. */
int demo_serve (const char *endpoint, int procs);

#endif
