/*  bench_idmap.c - why the broker keeps proto/dp_idmap rather than CZMQ's
    zhashx: the id maps' hot path, timed side by side in one process.

    The broker finds a task by its client's sequence number (SUBMIT, result,
    CANCEL) and by its dispatch reference (a worker's DONE): integer ids
    that count up, added as tasks come and removed, roughly in the same
    order, as they end. So per live-task count N (--sizes, default 1e3,
    1e4, 1e5, 1e6) each map is timed on:

      fill    N puts of ids 1..N into an empty map (repeated on fresh maps
              until 1M puts are timed);
      lookup  1M gets of ids drawn at random among the N live ones;
      churn   1M tasks through a map holding N: put the next id, get it,
              remove the oldest (a sliding window, as tasks end in order).

    The maps: dp_idmap (dp_idmap_new_sequential, as the broker makes them);
    zhashx as it comes (string keys: the id printed in hex, as a caller
    with its defaults must); and zhashx given a comparator, no key
    duplicator and a hasher of its own, so that the id itself is the key,
    once with the id as its hash (zhashx takes it modulo a prime, which
    suits ids that count up) and once with dp_idmap's mixer (splitmix64's
    finalizer). Each figure is the median of --runs runs (default 3), the
    maps interleaved within a run.

    Output: a Markdown table on stdout, or with --json one JSON object per
    line (bench/run.py reads them). Exits 0, or 2 on a usage error.
*/
#include "dp_idmap.h"

#include <czmq.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OPS          1000000 /* timed operations per figure */
#define RUNS_DEFAULT 3
#define RUNS_MAX     15
#define SIZES_MAX    8
#define KEY_TEXT     24 /* bytes of an id in hex, NUL included */

typedef enum { MAP_IDMAP, MAP_ZHASHX_STR, MAP_ZHASHX_ID, MAP_ZHASHX_MIX, MAP_COUNT } map_kind_t;

static const char *s_map_names[MAP_COUNT] = {"dp_idmap (sequential)", "zhashx, string keys",
                                             "zhashx, id keys, identity hash",
                                             "zhashx, id keys, splitmix64 hash"};

/*  One map of either kind behind one small interface. */
typedef struct {
    map_kind_t kind;
    dp_idmap_t *idmap;
    zhashx_t *hash;
} s_map_t;

/*  The id as its own hash: zhashx takes it modulo its prime table size,
    which spreads ids that count up perfectly. */
static size_t
s_hash_identity (const void *key)
{
    return (size_t)(uintptr_t)key;
}

/*  dp_idmap's mixer (splitmix64's finalizer). */
static size_t
s_hash_mix (const void *key)
{
    uint64_t x = (uint64_t)(uintptr_t)key;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)x;
}

static int
s_compare_u64 (const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y ? -1 : x > y;
}

static void
s_map_new (s_map_t *map, map_kind_t kind)
{
    map->kind = kind;
    map->idmap = NULL;
    map->hash = NULL;
    if (kind == MAP_IDMAP)
        map->idmap = dp_idmap_new_sequential ();
    else {
        map->hash = zhashx_new ();
        if (map->hash && kind != MAP_ZHASHX_STR) {
            zhashx_set_key_duplicator (map->hash, NULL);
            zhashx_set_key_destructor (map->hash, NULL);
            zhashx_set_key_hasher (map->hash,
                                   kind == MAP_ZHASHX_ID ? s_hash_identity : s_hash_mix);
            zhashx_set_key_comparator (map->hash, s_compare_u64);
        }
    }
    if (!map->idmap && !map->hash) {
        fprintf (stderr, "bench_idmap: out of memory\n");
        exit (1);
    }
}

static void
s_map_destroy (s_map_t *map)
{
    dp_idmap_destroy (&map->idmap);
    zhashx_destroy (&map->hash);
}

static inline void
s_key_text (char text[KEY_TEXT], uint64_t id)
{
    snprintf (text, KEY_TEXT, "%" PRIx64, id);
}

static inline void
s_put (s_map_t *map, uint64_t id, void *value)
{
    char text[KEY_TEXT];
    if (map->kind == MAP_IDMAP) {
        if (dp_idmap_put (map->idmap, id, value) != 0)
            abort ();
    } else if (map->kind != MAP_ZHASHX_STR)
        zhashx_insert (map->hash, (void *)(uintptr_t)id, value);
    else {
        s_key_text (text, id);
        zhashx_insert (map->hash, text, value);
    }
}

static inline void *
s_get (s_map_t *map, uint64_t id)
{
    char text[KEY_TEXT];
    if (map->kind == MAP_IDMAP)
        return dp_idmap_get (map->idmap, id);
    if (map->kind != MAP_ZHASHX_STR)
        return zhashx_lookup (map->hash, (void *)(uintptr_t)id);
    s_key_text (text, id);
    return zhashx_lookup (map->hash, text);
}

static inline void
s_remove (s_map_t *map, uint64_t id)
{
    char text[KEY_TEXT];
    if (map->kind == MAP_IDMAP)
        dp_idmap_remove (map->idmap, id);
    else if (map->kind != MAP_ZHASHX_STR)
        zhashx_delete (map->hash, (void *)(uintptr_t)id);
    else {
        s_key_text (text, id);
        zhashx_delete (map->hash, text);
    }
}

static double
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/*  A value that is not NULL and says its id (ids start at 1). */
static inline void *
s_value (uint64_t id)
{
    return (void *)(uintptr_t)id;
}

/*  ns per put of ids 1..size into fresh maps, at least OPS puts. */
static double
s_time_fill (map_kind_t kind, size_t size)
{
    double spent = 0;
    size_t done = 0;
    while (done < OPS) {
        s_map_t map;
        s_map_new (&map, kind);
        double t0 = s_now_ns ();
        for (uint64_t id = 1; id <= size; id++)
            s_put (&map, id, s_value (id));
        spent += s_now_ns () - t0;
        done += size;
        s_map_destroy (&map);
    }
    return spent / (double)done;
}

/*  A map holding ids 1..size. */
static void
s_filled (s_map_t *map, map_kind_t kind, size_t size)
{
    s_map_new (map, kind);
    for (uint64_t id = 1; id <= size; id++)
        s_put (map, id, s_value (id));
}

/*  ns per get of a random live id; *sum keeps the gets from being
    optimised away. */
static double
s_time_lookup (map_kind_t kind, size_t size, uint64_t *sum)
{
    s_map_t map;
    s_filled (&map, kind, size);
    uint64_t state = 0x9e3779b97f4a7c15ULL;
    double t0 = s_now_ns ();
    for (size_t i = 0; i < OPS; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *sum += (uint64_t)(uintptr_t)s_get (&map, 1 + state % size);
    }
    double spent = s_now_ns () - t0;
    s_map_destroy (&map);
    return spent / OPS;
}

/*  ns per task through a window of size live ids: put, get, remove the
    oldest. */
static double
s_time_churn (map_kind_t kind, size_t size, uint64_t *sum)
{
    s_map_t map;
    s_filled (&map, kind, size);
    uint64_t next = size + 1, oldest = 1;
    double t0 = s_now_ns ();
    for (size_t i = 0; i < OPS; i++, next++, oldest++) {
        s_put (&map, next, s_value (next));
        *sum += (uint64_t)(uintptr_t)s_get (&map, next);
        s_remove (&map, oldest);
    }
    double spent = s_now_ns () - t0;
    s_map_destroy (&map);
    return spent / OPS;
}

static int
s_compare_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
s_median (double *values, int count)
{
    qsort (values, (size_t)count, sizeof *values, s_compare_double);
    return values[count / 2];
}

typedef struct {
    double fill[RUNS_MAX], lookup[RUNS_MAX], churn[RUNS_MAX];
} s_figures_t;

static void
s_print (bool json, size_t size, map_kind_t kind, s_figures_t *f, int runs, double base_churn)
{
    double fill = s_median (f->fill, runs), lookup = s_median (f->lookup, runs);
    double churn = s_median (f->churn, runs);
    if (json)
        printf ("{\"size\": %zu, \"map\": \"%s\", \"fill_ns\": %.1f, \"lookup_ns\": %.1f, "
                "\"churn_ns\": %.1f}\n",
                size, s_map_names[kind], fill, lookup, churn);
    else
        printf ("| %zu | %s | %.1f | %.1f | %.1f | %.2f× |\n", size, s_map_names[kind], fill,
                lookup, churn, churn / base_churn);
}

static int
s_parse (int argc, char *argv[], size_t *sizes, int *nsizes, int *runs, bool *json)
{
    static const struct option options[] = {{"sizes", required_argument, NULL, 's'},
                                            {"runs", required_argument, NULL, 'r'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long (argc, argv, "s:r:jh", options, NULL)) != -1) {
        if (opt == 's') {
            *nsizes = 0;
            for (char *save = NULL, *item = strtok_r (optarg, ",", &save); item;
                 item = strtok_r (NULL, ",", &save)) {
                double value = strtod (item, NULL);
                if (*nsizes == SIZES_MAX || value < 1 || value > 1e8)
                    return -1;
                sizes[(*nsizes)++] = (size_t)value;
            }
        } else if (opt == 'r') {
            *runs = atoi (optarg);
            if (*runs < 1 || *runs > RUNS_MAX)
                return -1;
        } else if (opt == 'j')
            *json = true;
        else
            return opt == 'h' ? 1 : -1;
    }
    return *nsizes > 0 ? 0 : -1;
}

int
main (int argc, char *argv[])
{
    size_t sizes[SIZES_MAX] = {1000, 10000, 100000, 1000000};
    int nsizes = 4, runs = RUNS_DEFAULT;
    bool json = false;
    int parsed = s_parse (argc, argv, sizes, &nsizes, &runs, &json);
    if (parsed != 0) {
        fprintf (parsed > 0 ? stdout : stderr,
                 "usage: bench_idmap [--sizes N,N,...] (live ids, default 1e3,1e4,1e5,1e6, "
                 "at most %d sizes) [--runs R] (default 3, at most %d) [--json]\n",
                 SIZES_MAX, RUNS_MAX);
        return parsed > 0 ? 0 : 2;
    }
    if (!json)
        printf ("| live ids | map | fill ns/put | lookup ns/get | churn ns/task (put, get, "
                "remove) | churn vs dp_idmap |\n|---|---|---|---|---|---|\n");
    uint64_t sum = 0;
    for (int s = 0; s < nsizes; s++) {
        s_figures_t figures[MAP_COUNT];
        for (int run = 0; run < runs; run++)
            for (int kind = 0; kind < MAP_COUNT; kind++) {
                figures[kind].fill[run] = s_time_fill ((map_kind_t)kind, sizes[s]);
                figures[kind].lookup[run] = s_time_lookup ((map_kind_t)kind, sizes[s], &sum);
                figures[kind].churn[run] = s_time_churn ((map_kind_t)kind, sizes[s], &sum);
            }
        double base = s_median (figures[MAP_IDMAP].churn, runs);
        for (int kind = 0; kind < MAP_COUNT; kind++)
            s_print (json, sizes[s], (map_kind_t)kind, &figures[kind], runs, base);
        fflush (stdout);
    }
    return sum == 0; /* never 0: every get finds its id */
}
