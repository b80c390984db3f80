/*  test_vectors.c - docs/PROTOCOL.md's test vectors (section 11) against
    the C codec: every message the doc shows decodes, as the command it
    names, and a few fields of each kind read back as the doc says. The
    Python package's test (python/tests/test_vectors.py) checks the same
    table against its encoder, so the two implementations and the doc
    agree. */
#include "dp_proto.h"
#include "dp_testutil.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BODY 256

typedef struct {
    char name[32];
    uint8_t header[DP_HEADER_SIZE];
    uint8_t body[MAX_BODY];
    size_t body_size;
} vector_t;

/*  Reads hex text between backticks at *at into out; advances *at. */
static size_t
s_hex (const char **at, uint8_t *out, size_t capacity)
{
    const char *p = strchr (*at, '`');
    CHECK (p != NULL);
    p++;
    size_t n = 0;
    while (isxdigit ((unsigned char)p[0]) && isxdigit ((unsigned char)p[1])) {
        CHECK (n < capacity);
        unsigned byte;
        CHECK (sscanf (p, "%2x", &byte) == 1);
        out[n++] = (uint8_t)byte;
        p += 2;
    }
    CHECK (*p == '`');
    *at = p + 1;
    return n;
}

/*  One table row, "| `NAME` | fields | `HEADER` | `BODY` |"; false if the
    line is not one. */
static bool
s_parse (const char *line, vector_t *v)
{
    if (strncmp (line, "| `", 3) != 0)
        return false;
    const char *end = strchr (line + 3, '`');
    if (!end || (size_t)(end - line - 3) >= sizeof v->name || end == line + 3)
        return false;
    memcpy (v->name, line + 3, (size_t)(end - line - 3));
    v->name[end - line - 3] = '\0';
    for (const char *c = v->name; *c; c++)
        if (!isupper ((unsigned char)*c) && *c != '-')
            return false;
    const char *at = strstr (end, " | `");
    if (!at)
        return false;
    at += 2; /* the header's backtick */
    CHECK_EQ_INT (s_hex (&at, v->header, DP_HEADER_SIZE), DP_HEADER_SIZE);
    v->body_size = s_hex (&at, v->body, MAX_BODY);
    return true;
}

static size_t
s_read_vectors (vector_t *out, size_t capacity)
{
    FILE *f = fopen (DPOOL_SOURCE_DIR "/docs/PROTOCOL.md", "r");
    CHECK (f != NULL);
    char line[1024];
    bool in_section = false;
    size_t n = 0;
    while (fgets (line, sizeof line, f)) {
        if (strncmp (line, "## ", 3) == 0)
            in_section = strstr (line, "Test vectors") != NULL;
        if (in_section && n < capacity && s_parse (line, &out[n]))
            n++;
    }
    fclose (f);
    return n;
}

/*  Checks the fields the doc gives for the first vector of some commands. */
static void
s_check_fields (const dp_msg_t *msg, bool first_of_its_name)
{
    if (!first_of_its_name)
        return;
    switch (msg->cmd) {
    case DP_CMD_HELLO:
        CHECK (dp_span_eq (msg->u.hello.name, "c1"));
        CHECK_EQ_INT (msg->u.hello.session.size, DP_SESSION_SIZE);
        CHECK_EQ_INT (msg->u.hello.session.data[15], 0xff);
        break;
    case DP_CMD_WELCOME:
        CHECK_EQ_INT (msg->u.welcome.heartbeat_ms, 1000);
        CHECK_EQ_INT (msg->u.welcome.expiry_ms, 2500);
        CHECK_EQ_INT (msg->u.welcome.token, 7);
        break;
    case DP_CMD_READY:
        CHECK_EQ_INT (msg->u.ready.pid, 4242);
        CHECK_EQ_INT (msg->u.ready.credit, 512);
        CHECK_EQ_INT (msg->u.ready.functions.left, 2);
        break;
    case DP_CMD_ERROR:
        CHECK_EQ_INT (msg->u.error.code, 13);
        CHECK (dp_span_eq (msg->u.error.message, "unknown peer"));
        break;
    case DP_CMD_QUEUE_PUT:
        CHECK_EQ_INT (msg->u.queue.req, 2);
        CHECK_EQ_INT (msg->u.queue.timeout_ms, -1);
        CHECK_EQ_INT (msg->u.queue.maxsize, 10);
        break;
    case DP_CMD_QUEUE_REPLY:
        CHECK_EQ_INT (msg->u.queue_reply.token, 5);
        CHECK_EQ_INT (msg->u.queue_reply.maxsize, 10);
        break;
    case DP_CMD_SUBMIT:
    case DP_CMD_DISPATCH:
    case DP_CMD_RESULT:
    case DP_CMD_DONE:
        CHECK (msg->u.list.left >= 1);
        break;
    default:
        break;
    }
}

static void
s_case_vectors_of_the_doc_decode (void)
{
    vector_t vectors[64];
    size_t n = s_read_vectors (vectors, 64);
    CHECK (n >= 20); /* every command a peer sends, and more */
    for (size_t i = 0; i < n; i++) {
        dp_msg_t msg;
        dp_reason_t rc = dp_msg_decode (vectors[i].header, DP_HEADER_SIZE, vectors[i].body,
                                        vectors[i].body_size, &msg);
        if (rc != DP_OK)
            dp_test_fail (__FILE__, __LINE__, "vector %zu (%s) decodes as %s", i + 1,
                          vectors[i].name, dp_reason_name (rc));
        CHECK (strcmp (dp_cmd_name (msg.cmd), vectors[i].name) == 0);
        s_check_fields (&msg, i == 0 || strcmp (vectors[i - 1].name, vectors[i].name) != 0);
        /*  One byte less is never the same message. */
        rc = dp_msg_decode (vectors[i].header, DP_HEADER_SIZE, vectors[i].body,
                            vectors[i].body_size - 1, &msg);
        CHECK (rc != DP_OK);
    }
}

static const dp_test_case_t s_cases[] = {
    {"vectors_of_the_doc_decode", s_case_vectors_of_the_doc_decode},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}
