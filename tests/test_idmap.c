/*  test_idmap.c - the id table: every operation checked against a plain
    model, for both kinds of map and the id patterns they meet (ids that
    count up and finish out of order, long-lived stragglers, random ids,
    aligned pointers), and a sequential map turning to its keyed hash when
    its ids pile onto one home. */
#include "dp_idmap.h"
#include "dp_testutil.h"

#include <stdlib.h>
#include <string.h>

#define UNIVERSE 6000

static uint64_t s_rng = 88172645463325252ull;

static uint64_t
s_next (void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

/*  The model: ids[i] is held with value values[i], or not held (NULL). */
typedef struct {
    uint64_t ids[UNIVERSE];
    void *values[UNIVERSE];
    size_t held;
} model_t;

static char s_targets[UNIVERSE * 2]; /* distinct addresses to store as values */

typedef struct {
    const model_t *model;
    size_t seen;
    bool wrong;
} walk_t;

static void
s_walk (uint64_t id, void *value, void *arg)
{
    walk_t *walk = (walk_t *)arg;
    walk->seen++;
    /*  The value tells which id it was stored for. */
    size_t i = (size_t)((char *)value - s_targets) % UNIVERSE;
    if (walk->model->ids[i] != id || walk->model->values[i] != value)
        walk->wrong = true;
}

/*  Every id of the model reads back as the model says, and the map holds
    nothing else. */
static void
s_check_all (const dp_idmap_t *map, const model_t *model)
{
    size_t wrong = 0;
    for (size_t i = 0; i < UNIVERSE; i++)
        if (dp_idmap_get (map, model->ids[i]) != model->values[i])
            wrong++;
    CHECK (wrong == 0);
    CHECK (dp_idmap_size (map) == model->held);
    walk_t walk = {.model = model};
    dp_idmap_foreach (map, s_walk, &walk);
    CHECK (walk.seen == model->held);
    CHECK (!walk.wrong);
}

static void
s_put (dp_idmap_t *map, model_t *model, size_t i, int variant)
{
    void *value = &s_targets[i + (size_t)variant * UNIVERSE];
    CHECK (dp_idmap_put (map, model->ids[i], value) == 0);
    if (!model->values[i])
        model->held++;
    model->values[i] = value;
}

static void
s_remove (dp_idmap_t *map, model_t *model, size_t i)
{
    void *got = dp_idmap_remove (map, model->ids[i]);
    CHECK (got == model->values[i]);
    if (model->values[i])
        model->held--;
    model->values[i] = NULL;
}

/*  Random puts, replacements, gets and removals over the model's ids. */
static void
s_random_ops (dp_idmap_t *map, model_t *model, int rounds)
{
    for (int r = 0; r < rounds; r++) {
        size_t i = s_next () % UNIVERSE;
        switch (s_next () % 4) {
        case 0:
        case 1:
            s_put (map, model, i, (int)(s_next () % 2));
            break;
        case 2:
            s_remove (map, model, i);
            break;
        default:
            if (dp_idmap_get (map, model->ids[i]) != model->values[i])
                CHECK (!"get matches the model");
        }
        if (r % 5000 == 0)
            s_check_all (map, model);
    }
    s_check_all (map, model);
    /*  Emptied, it still works. */
    for (size_t i = 0; i < UNIVERSE; i++)
        s_remove (map, model, i);
    CHECK (dp_idmap_size (map) == 0);
    s_check_all (map, model);
}

static void
s_model_init (model_t *model, uint64_t first, uint64_t step, bool random)
{
    memset (model, 0, sizeof *model);
    for (size_t i = 0; i < UNIVERSE; i++)
        model->ids[i] = random ? s_next () : first + i * step;
}

/*  Ids counting up and finishing about in order, as tasks do: each time,
    one of the oldest JITTER live ids finishes. With stragglers, a few ids
    stay for the whole run, across many wraps of the table. Scrambled, an
    id finishes anywhere in the older quarter of what is live, so that many
    outlive thousands of later ids. */
typedef enum { IN_ORDER, STRAGGLERS, SCRAMBLED } pattern_t;

static void
s_sliding_window (pattern_t pattern)
{
    dp_idmap_t *map = dp_idmap_new_sequential ();
    CHECK (map);
    enum { WINDOW = 3000, TOTAL = 200000, NSTRAGGLERS = 8, JITTER = 64 };
    static uint64_t live[TOTAL]; /* live[head..tail): oldest first */
    size_t head = 0, tail = 0;
    uint64_t stragglers[NSTRAGGLERS];
    int nstragglers = 0;
    size_t wrong = 0;
    for (uint64_t id = 1; id <= TOTAL; id++) {
        if (dp_idmap_get (map, id) != NULL)
            wrong++; /* not added yet */
        CHECK (dp_idmap_put (map, id, &s_targets[id % 100]) == 0);
        if (pattern == STRAGGLERS && id % 20000 == 7 && nstragglers < NSTRAGGLERS) {
            stragglers[nstragglers++] = id;
            continue;
        }
        live[tail++] = id;
        if (tail - head < WINDOW)
            continue;
        size_t span = pattern == SCRAMBLED ? (tail - head) / 4 : JITTER;
        size_t at = head + (size_t)(s_next () % span);
        uint64_t done = live[at];
        live[at] = live[head];
        head++;
        if (dp_idmap_remove (map, done) != &s_targets[done % 100])
            wrong++;
        if (dp_idmap_get (map, done) != NULL)
            wrong++;
    }
    CHECK (wrong == 0);
    CHECK (dp_idmap_size (map) == tail - head + (size_t)nstragglers);
    for (size_t i = head; i < tail; i++)
        if (dp_idmap_get (map, live[i]) != &s_targets[live[i] % 100])
            wrong++;
    for (int i = 0; i < nstragglers; i++)
        if (dp_idmap_get (map, stragglers[i]) != &s_targets[stragglers[i] % 100])
            wrong++;
    CHECK (wrong == 0);
    /*  Ids that spread so keep their own places: the map never mixed. */
    if (pattern != SCRAMBLED)
        CHECK (!dp_idmap_mixing (map));
    /*  Emptied, the map places ids by their value again. */
    for (size_t i = head; i < tail; i++)
        CHECK (dp_idmap_remove (map, live[i]) != NULL);
    for (int i = 0; i < nstragglers; i++)
        CHECK (dp_idmap_remove (map, stragglers[i]) != NULL);
    CHECK (dp_idmap_size (map) == 0);
    CHECK (!dp_idmap_mixing (map));
    dp_idmap_destroy (&map);
    CHECK (map == NULL);
}

/*  The program's one case. */
static void
s_case_proto_idmap_matches_a_model (void)
{
    static model_t model;

    /*  Both kinds of map, over ids that count up, random ids, and ids that
        step by 16 (aligned pointers). */
    for (int kind = 0; kind < 2; kind++) {
        for (int pattern = 0; pattern < 3; pattern++) {
            if (pattern == 0)
                s_model_init (&model, 1, 1, false);
            else if (pattern == 1)
                s_model_init (&model, 0, 0, true);
            else
                s_model_init (&model, 0x7f0000001000ull, 16, false);
            dp_idmap_t *map = kind ? dp_idmap_new_sequential () : dp_idmap_new ();
            CHECK (map);
            CHECK (dp_idmap_mixing (map) == (kind == 0));
            s_random_ops (map, &model, 60000);
            dp_idmap_destroy (&map);
        }
    }

    s_sliding_window (IN_ORDER);
    s_sliding_window (STRAGGLERS);
    s_sliding_window (SCRAMBLED);

    /*  Ids a table's size apart all have one home: a sequential map turns
        to its keyed hash rather than probing ever longer runs, and holds
        every id still. */
    s_model_init (&model, 5, (uint64_t)1 << 32, false);
    dp_idmap_t *map = dp_idmap_new_sequential ();
    CHECK (map);
    for (size_t i = 0; i < 100; i++)
        s_put (map, &model, i, 0);
    CHECK (dp_idmap_mixing (map));
    for (size_t i = 100; i < UNIVERSE; i++)
        s_put (map, &model, i, 1);
    s_check_all (map, &model);
    s_random_ops (map, &model, 30000);
    dp_idmap_destroy (&map);

    dp_idmap_destroy (&map); /* NULL is harmless */
}

static const dp_test_case_t s_cases[] = {
    {"proto_idmap_matches_a_model", s_case_proto_idmap_matches_a_model},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}
