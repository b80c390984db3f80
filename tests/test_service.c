/*  test_service.c - dpool-broker and dpool-worker as services: the notes
    they give systemd through sd_notify, and their log lines.

    A fake service manager is a unix datagram socket the test binds and
    names in NOTIFY_SOCKET, as systemd does: the broker says READY=1 once it
    has bound its endpoints (its endpoint file is whole by then) and
    STOPPING=1 on SIGTERM; a worker says READY=1 only once it registered
    with a broker (none while the broker is not there yet), and STOPPING=1
    on SIGTERM. Log lines carry the date, the time and the zone's offset
    (checked under a zone of +05:30 against the clock), --log-format json
    writes one object per line that jansson parses, with hostile bytes in a
    message escaped, and --log-target journald speaks journald's native
    protocol (to a socket the test binds over /run/systemd/journal in a
    mount namespace of the broker's own: root only, else skipped), and
    --log-target syslog writes to /dev/log (likewise). A worker with no
    option takes every setting from DPOOL_* variables, as a unit's
    EnvironmentFile gives them, DPOOL_PLUGINS among them.
*/
#include "dp_testutil.h"
#include "dp_util.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST_SECONDS 60
#define NOTE_MS      20000 /* how long a note may take to come */
#define QUIET_MS     1500  /* a worker without a broker says nothing this long */
#define EXIT_SKIP    77    /* ctest's SKIP_RETURN_CODE for this program */
#define NOTE_SIZE    4096

/*  Ends the case as skipped (exit 77) in a build without libsystemd. */
static void
s_need_systemd (const char *name)
{
#ifndef DPOOL_HAVE_SYSTEMD
    fprintf (stderr, "SKIP %s: built without libsystemd (DPOOL_SYSTEMD=OFF)\n", name);
    exit (EXIT_SKIP);
#else
    (void)name;
#endif
}

/*  Binds a unix datagram socket at the test directory's file name, as a
    service manager's notification socket; returns it. */
static int
s_listen (const char *name)
{
    int fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK (fd >= 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    const char *path = dp_test_path (name);
    CHECK (strlen (path) < sizeof address.sun_path);
    snprintf (address.sun_path, sizeof address.sun_path, "%s", path);
    unlink (path);
    CHECK (bind (fd, (struct sockaddr *)&address, sizeof address) == 0);
    return fd;
}

/*  Receives one datagram into note (NUL-terminated) within timeout_ms;
    returns false if none came. */
static bool
s_note (int fd, char *note, int timeout_ms)
{
    struct pollfd item = {fd, POLLIN, 0};
    int64_t until = dp_test_now_ms () + timeout_ms;
    while (true) {
        int64_t left = until - dp_test_now_ms ();
        int rc = poll (&item, 1, left > 0 ? (int)left : 0);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return false;
        ssize_t size = recv (fd, note, NOTE_SIZE - 1, 0);
        CHECK (size >= 0);
        note[size] = '\0';
        return true;
    }
}

/*  Stops the test unless the next note, within NOTE_MS, is expected. */
static void
s_expect_note (int fd, const char *expected)
{
    char note[NOTE_SIZE];
    if (!s_note (fd, note, NOTE_MS))
        dp_test_fail (__FILE__, __LINE__, "no note %s in %d ms", expected, NOTE_MS);
    CHECK_EQ_STR (note, expected);
}

/*  Starts dpool-broker bound to endpoint, writing its endpoints to the
    test's file "endpoints", with extra arguments (at most 8); its output
    goes to files named after tag. */
static pid_t
s_broker (const char *tag, const char *endpoint, const char *const *extra)
{
    const char *argv[20] = {dp_test_broker_bin, "--bind", endpoint, "--endpoint-file",
                            dp_test_path ("endpoints")};
    int argc = 5;
    for (int i = 0; extra && extra[i] && argc < 18; i++)
        argv[argc++] = extra[i];
    return dp_test_spawn (tag, (char *const *)argv);
}

/*  READY=1 once bound, with the endpoint file written; STOPPING=1 on
    SIGTERM; then a clean exit. */
static void
s_case_broker_notify (void)
{
    s_need_systemd ("service_broker_notify");
    int fd = s_listen ("notify");
    setenv ("NOTIFY_SOCKET", dp_test_path ("notify"), 1);
    pid_t broker = s_broker ("broker", "tcp://127.0.0.1:0", NULL);
    unsetenv ("NOTIFY_SOCKET");
    s_expect_note (fd, "READY=1");
    char *endpoints = dp_test_read_file (dp_test_path ("endpoints"));
    CHECK (endpoints && strncmp (endpoints, "tcp://127.0.0.1:", 16) == 0);
    free (endpoints);
    CHECK (kill (broker, SIGTERM) == 0);
    s_expect_note (fd, "STOPPING=1");
    int status = dp_test_wait_exit (broker, NOTE_MS);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    close (fd);
}

/*  Silent while its broker is not there; READY=1 once registered;
    STOPPING=1 on SIGTERM. */
static void
s_case_worker_notify (void)
{
    s_need_systemd ("service_worker_notify");
    const char *endpoint = dp_test_ipc ("later");
    char broker_endpoint[2048];
    snprintf (broker_endpoint, sizeof broker_endpoint, "%s", endpoint);
    int fd = s_listen ("notify");
    setenv ("NOTIFY_SOCKET", dp_test_path ("notify"), 1);
    const char *extra[] = {"--log-level", "info", NULL};
    pid_t workers = dp_test_workers_start (broker_endpoint, 2, extra);
    unsetenv ("NOTIFY_SOCKET");
    char note[NOTE_SIZE];
    if (s_note (fd, note, QUIET_MS))
        dp_test_fail (__FILE__, __LINE__, "note '%s' before any broker ran", note);

    pid_t broker = s_broker ("broker", broker_endpoint, NULL);
    s_expect_note (fd, "READY=1");
    dp_test_check_contains ("workers1", "err", "registered with broker");
    CHECK (kill (workers, SIGTERM) == 0);
    /*  The second process may say READY=1 too (it registers as well). */
    while (s_note (fd, note, NOTE_MS) && strcmp (note, "READY=1") == 0)
        ;
    CHECK_EQ_STR (note, "STOPPING=1");
    int status = dp_test_wait_exit (workers, NOTE_MS);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    dp_test_stop (broker, SIGTERM, NOTE_MS);
    close (fd);
}

typedef struct {
    const char *tag;
    const char *needle;
} s_wait_t;

static bool
s_said (void *arg)
{
    const s_wait_t *wait = (const s_wait_t *)arg;
    char *err = dp_test_output (wait->tag, "err");
    bool said = strstr (err, wait->needle) != NULL;
    free (err);
    return said;
}

/*  Waits until the process of tag wrote needle to its stderr. */
static void
s_wait_said (const char *tag, const char *needle)
{
    s_wait_t wait = {tag, needle};
    if (!dp_test_wait_until (s_said, &wait, NOTE_MS))
        dp_test_fail (__FILE__, __LINE__, "%s never wrote '%s'", tag, needle);
}

/*  Parses an RFC 3339 time with milliseconds and a zone offset; returns
    the seconds since the epoch, and the offset in minutes in *offset. */
static time_t
s_parse_stamp (const char *stamp, int *offset)
{
    struct tm tm = {0};
    int ms, zone_hours, zone_minutes;
    char t, sign, colon;
    int n = sscanf (stamp, "%4d-%2d-%2d%c%2d:%2d:%2d.%3d%c%2d%c%2d", &tm.tm_year, &tm.tm_mon,
                    &tm.tm_mday, &t, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &sign, &zone_hours,
                    &colon, &zone_minutes);
    if (n != 12 || t != 'T' || colon != ':' || (sign != '+' && sign != '-'))
        dp_test_fail (__FILE__, __LINE__, "not a time with date and zone: '%.40s'", stamp);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *offset = (sign == '-' ? -1 : 1) * (zone_hours * 60 + zone_minutes);
    return timegm (&tm) - *offset * 60;
}

/*  Each line: "<time> <level> dpool-broker[<pid>] <message>", the time
    with date and zone, the zone +05:30 as TZ says, the time the clock's. */
static void
s_case_log_text (void)
{
    setenv ("TZ", "IST-05:30", 1);
    const char *extra[] = {"--log-level", "info", NULL};
    pid_t broker = s_broker ("broker", "tcp://127.0.0.1:0", extra);
    unsetenv ("TZ");
    s_wait_said ("broker", "listening on");
    CHECK (WIFEXITED (dp_test_stop (broker, SIGTERM, NOTE_MS)));
    char *err = dp_test_output ("broker", "err");
    char tail[64];
    snprintf (tail, sizeof tail, " I dpool-broker[%d] ", (int)broker);
    int lines = 0;
    for (char *line = strtok (err, "\n"); line; line = strtok (NULL, "\n"), lines++) {
        int offset;
        time_t when = s_parse_stamp (line, &offset);
        CHECK_EQ_INT (offset, 5 * 60 + 30);
        CHECK (llabs ((long long)(when - time (NULL))) < TEST_SECONDS * 2);
        CHECK (strlen (line) > 29 && line[29] == ' ');
        if (strstr (line, "listening on"))
            CHECK (strncmp (line + 29, tail, strlen (tail)) == 0);
    }
    CHECK (lines >= 2); /* at least the open-file limit and the endpoints */
    free (err);
}

/*  Checks that every line of the stderr of tag is one JSON object with a
    time, level, program, pid and message; returns how many messages held
    needle. */
static int
s_check_json_lines (const char *tag, const char *program, const char *needle)
{
    char *err = dp_test_output (tag, "err");
    int found = 0, lines = 0;
    for (char *line = strtok (err, "\n"); line; line = strtok (NULL, "\n"), lines++) {
        json_error_t error;
        json_t *object = json_loads (line, 0, &error);
        if (!object || !json_is_object (object))
            dp_test_fail (__FILE__, __LINE__, "%s: not a JSON object (%s): %s", tag, error.text,
                          line);
        int offset;
        s_parse_stamp (json_string_value (json_object_get (object, "time")), &offset);
        CHECK (dp_log_parse_level (json_string_value (json_object_get (object, "level"))) >= 0);
        CHECK_EQ_STR (json_string_value (json_object_get (object, "program")), program);
        CHECK (json_integer_value (json_object_get (object, "pid")) > 0);
        const char *message = json_string_value (json_object_get (object, "message"));
        CHECK (message);
        found += strstr (message, needle) != NULL;
        json_decref (object);
    }
    CHECK (lines > 0);
    free (err);
    return found;
}

/*  Broker and workers with JSON logs; the workers' name holds a quote, a
    backslash, a control byte and a byte that is not UTF-8, which their
    messages carry escaped (the last as U+FFFD). */
static void
s_case_log_json (void)
{
    const char *extra[] = {"--log-level", "info", "--log-format", "json", NULL};
    pid_t broker = s_broker ("broker", dp_test_ipc ("broker"), extra);
    s_wait_said ("broker", "listening on");
    setenv ("DPOOL_LOG_FORMAT", "json", 1);
    const char *worker_extra[] = {"--log-level", "info", "--name", "q\"b\\\x01\xff", NULL};
    pid_t workers = dp_test_workers_start (dp_test_ipc ("broker"), 1, worker_extra);
    unsetenv ("DPOOL_LOG_FORMAT");
    s_wait_said ("workers1", "registered with broker");
    CHECK (WIFEXITED (dp_test_stop (workers, SIGTERM, NOTE_MS)));
    CHECK (WIFEXITED (dp_test_stop (broker, SIGTERM, NOTE_MS)));
    CHECK (s_check_json_lines ("broker", "dpool-broker", "listening on") == 1);
    CHECK (s_check_json_lines ("workers1", "dpool-worker", "registered with broker") >= 1);
    CHECK (s_check_json_lines ("workers1", "dpool-worker", "q\"b\\\x01\xef\xbf\xbd") >= 1);
}

/*  Skips the case unless this is root with unshare, which a case needs to
    lay out a mount namespace for the broker. */
static void
s_need_namespace (const char *name)
{
    if (geteuid () != 0 || access ("/usr/bin/unshare", X_OK) != 0) {
        fprintf (stderr, "SKIP %s: needs root and /usr/bin/unshare\n", name);
        exit (EXIT_SKIP);
    }
}

/*  The fields of one native journal datagram ("KEY=value" lines). Returns
    the value of key, copied into value, or NULL. */
static const char *
s_field (const char *note, const char *key, char *value, size_t size)
{
    size_t length = strlen (key);
    for (const char *line = note; *line;
         line += strcspn (line, "\n") + (line[strcspn (line, "\n")] != 0))
        if (strncmp (line, key, length) == 0 && line[length] == '=') {
            snprintf (value, size, "%.*s", (int)strcspn (line + length + 1, "\n"),
                      line + length + 1);
            return value;
        }
    return NULL;
}

/*  --log-target journald: each message is a datagram to journald's socket
    with MESSAGE, PRIORITY and SYSLOG_IDENTIFIER; nothing on stderr. */
static void
s_case_log_journald (void)
{
    s_need_systemd ("service_log_journald");
    s_need_namespace ("service_log_journald");
    if (access ("/run/systemd", F_OK) != 0) {
        fprintf (stderr, "SKIP service_log_journald: no /run/systemd\n");
        exit (EXIT_SKIP);
    }
    int fd = s_listen ("socket");
    char script[4096];
    snprintf (script, sizeof script,
              "mount -t tmpfs dpool-test /run/systemd && mkdir /run/systemd/journal && "
              "mount --bind '%s' /run/systemd/journal && exec '%s' --bind tcp://127.0.0.1:0 "
              "--log-level info --log-target journald",
              dp_test_dir (), dp_test_broker_bin);
    const char *argv[] = {"/usr/bin/unshare", "--mount", "sh", "-c", script, NULL};
    pid_t broker = dp_test_spawn ("broker", (char *const *)argv);
    char note[NOTE_SIZE], value[NOTE_SIZE];
    bool listening = false;
    while (!listening && s_note (fd, note, NOTE_MS)) {
        CHECK (s_field (note, "PRIORITY", value, sizeof value));
        CHECK_EQ_STR (value, "6");
        CHECK (s_field (note, "SYSLOG_IDENTIFIER", value, sizeof value));
        CHECK_EQ_STR (value, "dpool-broker");
        CHECK (s_field (note, "MESSAGE", value, sizeof value));
        listening = strncmp (value, "listening on tcp://127.0.0.1:", 29) == 0;
    }
    CHECK (listening);
    CHECK (WIFEXITED (dp_test_stop (broker, SIGTERM, NOTE_MS)));
    char *err = dp_test_output ("broker", "err");
    CHECK_EQ_STR (err, "");
    free (err);
    close (fd);
}

/*  --log-target syslog: each message is a datagram to /dev/log,
    "<PRI>TIMESTAMP dpool-broker[PID]: MESSAGE" with PRI facility daemon
    and the message's level; nothing on stderr. The broker's /dev is a
    tmpfs of its mount namespace, with the host's null, zero, random and
    urandom, and log the socket the test binds. */
static void
s_case_log_syslog (void)
{
    s_need_namespace ("service_log_syslog");
    int fd = s_listen ("log");
    char script[4096];
    snprintf (script, sizeof script,
              "d='%s' && mkdir \"$d/dev\" && mount --bind /dev \"$d/dev\" && "
              "mount -t tmpfs dpool-test /dev && for f in null zero random urandom; do "
              "touch /dev/$f && mount --bind \"$d/dev/$f\" /dev/$f || exit 1; done && "
              "ln -s \"$d/log\" /dev/log && exec '%s' --bind tcp://127.0.0.1:0 "
              "--log-level info --log-target syslog",
              dp_test_dir (), dp_test_broker_bin);
    const char *argv[] = {"/usr/bin/unshare", "--mount", "sh", "-c", script, NULL};
    pid_t broker = dp_test_spawn ("broker", (char *const *)argv);
    char note[NOTE_SIZE], head[64];
    /*  LOG_DAEMON | LOG_INFO: 3 * 8 + 6. */
    snprintf (head, sizeof head, "<30>");
    bool listening = false;
    while (!listening && s_note (fd, note, NOTE_MS)) {
        CHECK (strncmp (note, head, strlen (head)) == 0);
        char *tag = strstr (note, " dpool-broker[");
        CHECK (tag);
        CHECK (atoi (tag + strlen (" dpool-broker[")) == (int)broker);
        listening = strstr (tag, "]: listening on tcp://127.0.0.1:") != NULL;
    }
    if (!listening) {
        char *err = dp_test_output ("broker", "err");
        dp_test_fail (__FILE__, __LINE__, "no message 'listening on' to syslog:\n%s", err);
    }
    CHECK (WIFEXITED (dp_test_stop (broker, SIGTERM, NOTE_MS)));
    char *err = dp_test_output ("broker", "err");
    CHECK_EQ_STR (err, "");
    free (err);
    close (fd);
}

/*  A dpool-worker with no option, its settings all from DPOOL_* variables
    as a unit's EnvironmentFile gives them: the broker, two processes, a
    plugin from DPOOL_PLUGINS (after a path that is no file: a list that
    does not load stops it), JSON logs. */
static void
s_case_worker_environment (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    char broker_endpoint[2048], plugins[4096];
    snprintf (broker_endpoint, sizeof broker_endpoint, "%s", endpoint);
    pid_t broker = s_broker ("broker", broker_endpoint, NULL);
    const char *argv[] = {dp_test_worker_bin, NULL};
    setenv ("DPOOL_CONNECT", broker_endpoint, 1);
    setenv ("DPOOL_PROCS", "2", 1);
    setenv ("DPOOL_LOG", "info", 1);
    setenv ("DPOOL_LOG_FORMAT", "json", 1);
    snprintf (plugins, sizeof plugins, "%s/none.so:%s", dp_test_dir (), DPOOL_EXAMPLE_PLUGIN);
    setenv ("DPOOL_PLUGINS", plugins, 1);
    pid_t bad = dp_test_spawn ("bad", (char *const *)argv);
    setenv ("DPOOL_PLUGINS", DPOOL_EXAMPLE_PLUGIN, 1);
    pid_t workers = dp_test_spawn ("workers", (char *const *)argv);
    unsetenv ("DPOOL_CONNECT");
    unsetenv ("DPOOL_PROCS");
    unsetenv ("DPOOL_LOG");
    unsetenv ("DPOOL_LOG_FORMAT");
    unsetenv ("DPOOL_PLUGINS");
    int status = dp_test_wait_exit (bad, NOTE_MS);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 1);
    dp_test_check_contains ("bad", "err", "none.so");

    const char *args[] = {"apply", "example.add", "[2, 3]", NULL};
    char *out = NULL;
    CHECK_EQ_INT (dp_test_cli_run ("apply", broker_endpoint, args, NOTE_MS, &out, NULL), 0);
    CHECK_EQ_STR (out, "5\n");
    free (out);
    s_wait_said ("workers", "registered with broker");
    CHECK (s_check_json_lines ("workers", "dpool-worker", "supervising 2 worker processes") == 1);
    CHECK (WIFEXITED (dp_test_stop (workers, SIGTERM, NOTE_MS)));
    dp_test_stop (broker, SIGTERM, NOTE_MS);
}

static const dp_test_case_t s_cases[] = {
    {"service_broker_notify", s_case_broker_notify},
    {"service_worker_notify", s_case_worker_notify},
    {"service_log_text", s_case_log_text},
    {"service_log_json", s_case_log_json},
    {"service_log_journald", s_case_log_journald},
    {"service_log_syslog", s_case_log_syslog},
    {"service_worker_environment", s_case_worker_environment},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}
