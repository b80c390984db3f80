/*  dp_cli_exec.c - dpool map --exec: a line becomes a command's task, a
    result becomes the command's output, a note when it failed, and a line
    of the joblog. The contract is in dp_cli_exec.h; the task's shape in
    common/dp_exec.h.
*/
#include "dp_cli_exec.h"
#include "dp_exec.h"
#include "dp_json.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLACEHOLDER     "{}"
#define PLACEHOLDER_LEN 2
#define NOTE_COMMAND    300 /* bytes of a command shown in a note */

/*  A task in flight: its input line and its command, for the output. */
typedef struct {
    size_t seq;
    char *command; /* its words, shell-quoted, joined by spaces */
} s_task_t;

struct _dp_cli_exec_t {
    char **argv;
    int argc;
    bool placeholder; /* a word holds {} */
    bool json;
    uint64_t timeout_ms;
    uint64_t max_output;
    dp_joblog_t *joblog;
    s_task_t *tasks; /* a ring, oldest at head */
    size_t head, count, capacity;
    dp_json_buf_t word, text, out, note;
};

/*  What a result says. Pointers borrow from the result. */
typedef struct {
    bool ran; /* else code and message say why not */
    int code;
    const char *message;
    int64_t exit_code;
    uint64_t signal;
    bool timeout;
    const char *out, *err, *host;
    uint32_t out_len, err_len, host_len;
    uint64_t out_size, err_size, sent, start_us, run_us;
} s_outcome_t;

int
dp_cli_exec_check_args (dp_cli_t *cli)
{
    const dp_cli_options_t *o = &cli->options;
    if (!o->exec) {
        const char *stray = o->joblog                 ? "--joblog"
                            : o->resume && !o->output ? "--resume"
                            : o->resume_failed        ? "--resume-failed"
                            : o->max_output           ? "--max-output"
                                                      : NULL;
        if (stray)
            return dp_cli_usage_error (cli->command, "%s goes with --exec%s", stray,
                                       o->resume ? " and --joblog, or with --output" : "");
        return -1;
    }
    if (o->output)
        return dp_cli_usage_error (cli->command, "--output goes without --exec (see --joblog)");
    if (cli->exec_argc == 0)
        return dp_cli_usage_error (cli->command, "--exec wants a command: dpool map --exec [--] "
                                                 "CMD [ARG...]");
    if (cli->nargs > 0)
        return dp_cli_usage_error (cli->command,
                                   "with --exec, the command comes after --exec, "
                                   "not '%s' before it",
                                   cli->args[0]);
    if ((o->resume || o->resume_failed) && !o->joblog)
        return dp_cli_usage_error (cli->command, "--resume and --resume-failed want --joblog");
    return -1;
}

dp_cli_exec_t *
dp_cli_exec_new (dp_cli_t *cli, int64_t timeout_ms, int *status)
{
    dp_cli_exec_t *self = calloc (1, sizeof *self);
    if (!self) {
        fprintf (stderr, "dpool map: out of memory\n");
        *status = EXIT_ERROR;
        return NULL;
    }
    self->argv = cli->exec_argv;
    self->argc = cli->exec_argc;
    for (int i = 0; i < self->argc; i++)
        if (strstr (self->argv[i], PLACEHOLDER))
            self->placeholder = true;
    self->json = cli->options.json;
    self->timeout_ms = (uint64_t)timeout_ms;
    self->max_output = (uint64_t)cli->options.max_output;
    if (cli->options.joblog) {
        int mode = cli->options.resume_failed ? DP_JOBLOG_RESUME_FAILED
                   : cli->options.resume      ? DP_JOBLOG_RESUME
                                              : DP_JOBLOG_NEW;
        char error[256];
        self->joblog = dp_joblog_open (cli->options.joblog, mode, error, sizeof error);
        if (!self->joblog) {
            fprintf (stderr, "dpool map: --joblog %s: %s\n", cli->options.joblog, error);
            *status = EXIT_ERROR;
            dp_cli_exec_destroy (&self);
        }
    }
    return self;
}

void
dp_cli_exec_destroy (dp_cli_exec_t **self_p)
{
    if (*self_p) {
        dp_cli_exec_t *self = *self_p;
        for (size_t i = 0; i < self->count; i++)
            free (self->tasks[(self->head + i) % self->capacity].command);
        free (self->tasks);
        dp_joblog_destroy (&self->joblog);
        dp_json_buf_free (&self->word);
        dp_json_buf_free (&self->text);
        dp_json_buf_free (&self->out);
        dp_json_buf_free (&self->note);
        free (self);
        *self_p = NULL;
    }
}

/*  True if a word can be shown to a shell without quotes. */
static bool
s_plain (const char *word, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!strchr ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:,+@%-",
                     word[i]) ||
            word[i] == 0)
            return false;
    return true;
}

/*  Appends word to the command's text, after a space unless it is the
    first, in single quotes if a shell would need them. */
static int
s_append_quoted (dp_json_buf_t *text, const char *word, size_t len)
{
    if (text->size > 0 && dp_json_buf_append (text, " ", 1))
        return -1;
    if (s_plain (word, len))
        return dp_json_buf_append (text, word, len);
    if (dp_json_buf_append (text, "'", 1))
        return -1;
    for (size_t i = 0; i < len; i++) {
        int rc = word[i] == '\'' ? dp_json_buf_append (text, "'\\''", 4)
                                 : dp_json_buf_append (text, &word[i], 1);
        if (rc)
            return -1;
    }
    return dp_json_buf_append (text, "'", 1);
}

/*  Makes in self->word the word with every {} replaced by line. */
static int
s_substitute (dp_cli_exec_t *self, const char *word, const char *line, size_t len)
{
    dp_json_buf_reset (&self->word);
    const char *at;
    while ((at = strstr (word, PLACEHOLDER))) {
        if (dp_json_buf_append (&self->word, word, (size_t)(at - word)) ||
            dp_json_buf_append (&self->word, line, len))
            return -1;
        word = at + PLACEHOLDER_LEN;
    }
    return dp_json_buf_append (&self->word, word, strlen (word));
}

/*  Remembers a task in flight, the newest. Returns 0 or -1. */
static int
s_push (dp_cli_exec_t *self, size_t seq, char *command)
{
    if (self->count == self->capacity) {
        size_t capacity = self->capacity ? self->capacity * 2 : 64;
        s_task_t *tasks = malloc (capacity * sizeof *tasks);
        if (!tasks)
            return -1;
        for (size_t i = 0; i < self->count; i++)
            tasks[i] = self->tasks[(self->head + i) % self->capacity];
        free (self->tasks);
        self->tasks = tasks;
        self->capacity = capacity;
        self->head = 0;
    }
    self->tasks[(self->head + self->count) % self->capacity] = (s_task_t){seq, command};
    self->count++;
    return 0;
}

/*  Packs the command's words, line in place of {}, and makes its text in
    self->text. Returns 0 or -1 (out of memory). */
static int
s_pack_argv (dp_cli_exec_t *self, const char *line, size_t len, msgpack_packer *pk)
{
    dp_json_buf_reset (&self->text);
    if (msgpack_pack_array (pk, (size_t)self->argc))
        return -1;
    for (int i = 0; i < self->argc; i++) {
        if (s_substitute (self, self->argv[i], line, len))
            return -1;
        const char *word = self->word.data ? self->word.data : "";
        if (msgpack_pack_str (pk, self->word.size) ||
            msgpack_pack_str_body (pk, word, self->word.size) ||
            s_append_quoted (&self->text, word, self->word.size))
            return -1;
    }
    return 0;
}

int
dp_cli_exec_pack (dp_cli_exec_t *self, size_t seq, const char *line, size_t len,
                  msgpack_packer *pk, char *error, size_t error_size)
{
    if (self->joblog && dp_joblog_done (self->joblog, seq))
        return DP_CLI_EXEC_SKIPPED;
    if (self->placeholder && memchr (line, 0, len)) {
        snprintf (error, error_size, "holds a NUL byte, which cannot go in place of {}");
        return -1;
    }
    bool fail = msgpack_pack_array (pk, 4) || s_pack_argv (self, line, len, pk);
    if (!fail && self->placeholder)
        fail = msgpack_pack_nil (pk);
    else if (!fail)
        fail = msgpack_pack_bin (pk, len + 1) || msgpack_pack_bin_body (pk, line, len) ||
               msgpack_pack_bin_body (pk, "\n", 1);
    fail = fail || msgpack_pack_uint64 (pk, self->timeout_ms) ||
           msgpack_pack_uint64 (pk, self->max_output);
    char *command =
        fail ? NULL : strndup (self->text.data ? self->text.data : "", self->text.size);
    if (!command || s_push (self, seq, command)) {
        free (command);
        snprintf (error, error_size, "out of memory");
        return -1;
    }
    return DP_CLI_EXEC_PACKED;
}

void
dp_cli_exec_unpack (dp_cli_exec_t *self)
{
    if (self->count > 0) {
        self->count--;
        free (self->tasks[(self->head + self->count) % self->capacity].command);
    }
}

/*  True if key (a msgpack str) is name. */
static bool
s_is (const msgpack_object *key, const char *name)
{
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen (name) &&
           memcmp (key->via.str.ptr, name, key->via.str.size) == 0;
}

/*  Reads bytes (bin or str) into *data and *len, if value is some and not
    empty (an empty one may point nowhere). */
static void
s_take_bytes (const msgpack_object *value, const char **data, uint32_t *len)
{
    if (value->type == MSGPACK_OBJECT_BIN && value->via.bin.size > 0) {
        *data = value->via.bin.ptr;
        *len = value->via.bin.size;
    } else if (value->type == MSGPACK_OBJECT_STR && value->via.str.size > 0) {
        *data = value->via.str.ptr;
        *len = value->via.str.size;
    }
}

/*  Reads a uint into *into, if value is one. */
static void
s_take_uint (const msgpack_object *value, uint64_t *into)
{
    if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *into = value->via.u64;
}

/*  Reads one entry of the result map into o; unknown keys are ignored. */
static void
s_take (s_outcome_t *o, const msgpack_object *key, const msgpack_object *value)
{
    if (s_is (key, DP_EXEC_KEY_EXIT) && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        o->exit_code = value->via.u64 > INT32_MAX ? INT32_MAX : (int64_t)value->via.u64;
    else if (s_is (key, DP_EXEC_KEY_EXIT) && value->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        o->exit_code = value->via.i64 < INT32_MIN ? INT32_MIN : value->via.i64;
    else if (s_is (key, DP_EXEC_KEY_SIGNAL))
        s_take_uint (value, &o->signal);
    else if (s_is (key, DP_EXEC_KEY_TIMEOUT) && value->type == MSGPACK_OBJECT_BOOLEAN)
        o->timeout = value->via.boolean;
    else if (s_is (key, DP_EXEC_KEY_STDOUT))
        s_take_bytes (value, &o->out, &o->out_len);
    else if (s_is (key, DP_EXEC_KEY_STDERR))
        s_take_bytes (value, &o->err, &o->err_len);
    else if (s_is (key, DP_EXEC_KEY_HOST) && value->type == MSGPACK_OBJECT_STR)
        s_take_bytes (value, &o->host, &o->host_len);
    else if (s_is (key, DP_EXEC_KEY_STDOUT_SIZE))
        s_take_uint (value, &o->out_size);
    else if (s_is (key, DP_EXEC_KEY_STDERR_SIZE))
        s_take_uint (value, &o->err_size);
    else if (s_is (key, DP_EXEC_KEY_SENT))
        s_take_uint (value, &o->sent);
    else if (s_is (key, DP_EXEC_KEY_START_US))
        s_take_uint (value, &o->start_us);
    else if (s_is (key, DP_EXEC_KEY_RUN_US))
        s_take_uint (value, &o->run_us);
}

/*  Reads a finished task's result into o. A worker's answer is checked
    like any bytes from the network: a value that is no result map is a
    failure; a field missing or of another type keeps its default. */
static void
s_outcome (dpool_result_t *result, s_outcome_t *o)
{
    memset (o, 0, sizeof *o);
    o->exit_code = -1;
    o->out = o->err = o->host = "";
    msgpack_object value;
    if (dpool_result_get (result, 0, &value)) {
        o->code = dpool_result_code (result);
        o->message = dpool_result_error (result);
        if (!o->message)
            o->message = dpool_strerror (o->code);
        return;
    }
    if (value.type != MSGPACK_OBJECT_MAP) {
        o->code = DPOOL_EFAILED;
        o->message = "the worker's answer is not a " DP_EXEC_FN " result";
        return;
    }
    o->ran = true;
    for (uint32_t i = 0; i < value.via.map.size; i++)
        s_take (o, &value.via.map.ptr[i].key, &value.via.map.ptr[i].val);
    if (o->out_size < o->out_len)
        o->out_size = o->out_len;
    if (o->err_size < o->err_len)
        o->err_size = o->err_len;
}

/*  True if the command failed. */
static bool
s_failed (const s_outcome_t *o)
{
    return !o->ran || o->exit_code != 0 || o->signal != 0 || o->timeout;
}

/*  The oldest task in flight, taken off the ring. */
static s_task_t
s_pop (dp_cli_exec_t *self)
{
    assert (self->count > 0);
    s_task_t task = self->tasks[self->head];
    self->head = (self->head + 1) % self->capacity;
    self->count--;
    return task;
}

/*  Prints a note on stderr about line seq: what went wrong, and the
    command, escaped for a terminal. */
static void
s_note (dp_cli_exec_t *self, const s_task_t *task, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static void
s_note (dp_cli_exec_t *self, const s_task_t *task, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "dpool map: line %zu: ", task->seq);
    vfprintf (stderr, format, args);
    va_end (args);
    size_t len = strlen (task->command);
    /*  self->word is free while results print (the next pack resets it). */
    const char *shown =
        dp_cli_escape (&self->word, task->command, len > NOTE_COMMAND ? NOTE_COMMAND : len);
    fprintf (stderr, ": %s%s\n", shown, len > NOTE_COMMAND ? "..." : "");
}

/*  Prints the notes of a command that failed, or whose output was cut. */
static void
s_notes (dp_cli_exec_t *self, const s_task_t *task, const s_outcome_t *o)
{
    if (!o->ran) {
        dp_cli_escape (&self->note, o->message, strlen (o->message));
        s_note (self, task, "%s: %s", dp_cli_code_name (o->code), self->note.data);
    } else if (o->timeout)
        s_note (self, task, "timed out after %llu ms, killed by signal %llu",
                (unsigned long long)self->timeout_ms, (unsigned long long)o->signal);
    else if (o->signal)
        s_note (self, task, "killed by signal %llu", (unsigned long long)o->signal);
    else if (o->exit_code)
        s_note (self, task, "exit %lld", (long long)o->exit_code);
    if (o->out_size > o->out_len)
        s_note (self, task, "stdout cut to %lu of %llu bytes (--max-output)",
                (unsigned long)o->out_len, (unsigned long long)o->out_size);
    if (o->err_size > o->err_len)
        s_note (self, task, "stderr cut to %lu of %llu bytes (--max-output)",
                (unsigned long)o->err_len, (unsigned long long)o->err_size);
}

/*  True if data is valid UTF-8 (no overlong forms, surrogates, or code
    points beyond U+10FFFF). */
static bool
s_utf8_valid (const unsigned char *data, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = data[i];
        size_t extra = c < 0x80                 ? 0
                       : c >= 0xC2 && c <= 0xDF ? 1
                       : (c & 0xF0) == 0xE0     ? 2
                       : c >= 0xF0 && c <= 0xF4 ? 3
                                                : 9;
        if (extra == 0) {
            i++;
            continue;
        }
        if (extra == 9 || i + extra >= len)
            return false;
        unsigned char next = data[i + 1];
        if ((c == 0xE0 && next < 0xA0) || (c == 0xED && next > 0x9F) ||
            (c == 0xF0 && next < 0x90) || (c == 0xF4 && next > 0x8F))
            return false;
        for (size_t k = 1; k <= extra; k++)
            if ((data[i + k] & 0xC0) != 0x80)
                return false;
        i += extra + 1;
    }
    return true;
}

/*  Appends output bytes as a JSON value: a string if they are UTF-8, else
    {"$bin":"<base64>"} as everywhere in dpool's JSON. */
static int
s_append_bytes (dp_json_buf_t *out, const char *data, size_t len)
{
    if (s_utf8_valid ((const unsigned char *)data, len))
        return dp_json_append_string (out, data, len);
    char *text = malloc (dp_json_base64_size (len));
    if (!text)
        return -1;
    size_t size = dp_json_base64_encode (text, data, len);
    int rc = dp_json_buf_append (out, "{\"$bin\":\"", 9) || dp_json_buf_append (out, text, size) ||
             dp_json_buf_append (out, "\"}", 2);
    free (text);
    return rc;
}

/*  Appends printf-formatted text to out. Returns 0 or -1. */
static int
s_appendf (dp_json_buf_t *out, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static int
s_appendf (dp_json_buf_t *out, const char *format, ...)
{
    char text[256];
    va_list args;
    va_start (args, format);
    int len = vsnprintf (text, sizeof text, format, args);
    va_end (args);
    return len < 0 ? -1 : dp_json_buf_append (out, text, (size_t)len);
}

/*  Makes in self->out the JSON record of a result, one line. */
static int
s_record (dp_cli_exec_t *self, const s_task_t *task, const s_outcome_t *o)
{
    dp_json_buf_t *out = &self->out;
    dp_json_buf_reset (out);
    int rc = s_appendf (out, "{\"seq\":%zu,\"command\":", task->seq) ||
             dp_json_append_string (out, task->command, strlen (task->command));
    if (!o->ran) {
        const char *name = dp_cli_code_name (o->code);
        return rc || s_appendf (out, ",\"dpool_error\":{\"code\":\"%s\",\"message\":", name) ||
               dp_json_append_string (out, o->message, strlen (o->message)) ||
               dp_json_buf_append (out, "}}\n", 3);
    }
    return rc ||
           s_appendf (out, ",\"exit\":%lld,\"signal\":%llu,\"timeout\":%s,\"stdout\":",
                      (long long)o->exit_code, (unsigned long long)o->signal,
                      o->timeout ? "true" : "false") ||
           s_append_bytes (out, o->out, o->out_len) ||
           dp_json_buf_append (out, ",\"stderr\":", 10) ||
           s_append_bytes (out, o->err, o->err_len) ||
           s_appendf (out, ",\"stdout_cut\":%llu,\"stderr_cut\":%llu,\"host\":",
                      (unsigned long long)(o->out_size - o->out_len),
                      (unsigned long long)(o->err_size - o->err_len)) ||
           dp_json_append_string (out, o->host, o->host_len) ||
           s_appendf (out, ",\"start\":%.6f,\"runtime\":%.6f}\n", (double)o->start_us / 1e6,
                      (double)o->run_us / 1e6);
}

/*  Writes a result: the JSON record, or the command's stdout to stdout
    and its stderr to stderr (stdout flushed first, so that on one terminal
    they keep their order). Returns 0 or -1 with errno. */
static int
s_write (dp_cli_exec_t *self, const s_task_t *task, const s_outcome_t *o)
{
    if (self->json) {
        if (s_record (self, task, o)) {
            errno = ENOMEM;
            return -1;
        }
        return fwrite (self->out.data, 1, self->out.size, stdout) == self->out.size ? 0 : -1;
    }
    if (o->out_len && fwrite (o->out, 1, o->out_len, stdout) != o->out_len)
        return -1;
    if (o->err_len && (fflush (stdout) || fwrite (o->err, 1, o->err_len, stderr) != o->err_len))
        return -1;
    return 0;
}

/*  Notes a command that ran for the joblog. Returns 0 or -1. */
static int
s_log (dp_cli_exec_t *self, const s_task_t *task, const s_outcome_t *o)
{
    if (!self->joblog || !o->ran)
        return 0;
    /*  Both escaped: no tab or newline may split the line. */
    dp_json_buf_t host;
    dp_json_buf_init (&host);
    dp_json_buf_reset (&self->note);
    int rc = dp_json_append_escaped (&host, o->host, o->host_len) ||
             dp_json_append_escaped (&self->note, task->command, strlen (task->command));
    dp_joblog_entry_t entry = {.seq = task->seq,
                               .host = host.data ? host.data : "",
                               .start_us = o->start_us,
                               .run_us = o->run_us,
                               .sent = o->sent,
                               .received = o->out_size + o->err_size,
                               .exit_code = (int)o->exit_code,
                               .signal = (int)o->signal,
                               .command = self->note.data ? self->note.data : ""};
    rc = rc || dp_joblog_add (self->joblog, &entry);
    dp_json_buf_free (&host);
    return rc;
}

int
dp_cli_exec_print (dp_cli_exec_t *self, dpool_result_t *result)
{
    s_task_t task = s_pop (self);
    s_outcome_t o;
    s_outcome (result, &o);
    int rc = s_write (self, &task, &o);
    if (rc)
        fprintf (stderr, "dpool map: writing results: %s\n", strerror (errno));
    else
        s_notes (self, &task, &o);
    if (!rc && s_log (self, &task, &o)) {
        fprintf (stderr, "dpool map: --joblog: out of memory\n");
        rc = -1;
    }
    free (task.command);
    return rc ? -1 : s_failed (&o) ? 1 : 0;
}

int
dp_cli_exec_sync (dp_cli_exec_t *self)
{
    if (fflush (stdout)) {
        fprintf (stderr, "dpool map: writing results: %s\n", strerror (errno));
        return -1;
    }
    char error[256];
    if (self->joblog && dp_joblog_flush (self->joblog, error, sizeof error)) {
        fprintf (stderr, "dpool map: --joblog: %s\n", error);
        return -1;
    }
    return 0;
}
