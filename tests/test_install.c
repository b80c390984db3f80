/*  test_install.c - dpool as a user installs it: `cmake --install` of this
    build into a fresh prefix of the test's own, then, from that prefix
    alone, its programs run (--version), a program builds out of tree with
    pkg-config and with find_package (examples/consumer/square.c, an
    embedded pool's apply and map) and runs, and the man pages and systemd
    units are where man and systemd look for them. And cpack -G DEB makes a
    .deb of it for /usr, which dpkg-deb reads (installing it would change
    the machine under the other tests: that is done by hand, README).
*/
#include "dp_testutil.h"
#include "dpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef DPOOL_BUILD_DIR
#error "DPOOL_BUILD_DIR, _SOURCE_DIR, _CMAKE, _CPACK, _CC and _LIBDIR come from CMake"
#endif

#define TEST_SECONDS 240
#define RUN_MS       200000 /* one command: an install, a build, a run */
#define SQUARE_OUT   "49\n285\n"
#define EXIT_SKIP    77 /* ctest: skipped */

/*  Runs script with /bin/sh, its output in files named after tag; stops
    the test, showing its stderr, unless it exits 0. Returns its stdout,
    which the caller frees. */
static char *
s_sh (const char *tag, const char *script)
{
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    pid_t pid = dp_test_spawn (tag, (char *const *)argv);
    int status = dp_test_wait_exit (pid, RUN_MS);
    if (status == -1 || !WIFEXITED (status) || WEXITSTATUS (status) != 0) {
        char *err = dp_test_output (tag, "err");
        dp_test_fail (__FILE__, __LINE__, "'%s' ended with wait status %d:\n%s", script, status,
                      err);
    }
    return dp_test_output (tag, "out");
}

/*  Installs this build into the test's directory; returns the prefix
    (a static buffer). */
static const char *
s_install (void)
{
    static char prefix[1024];
    snprintf (prefix, sizeof prefix, "%s", dp_test_path ("prefix"));
    char script[4096];
    snprintf (script, sizeof script, "'%s' --install '%s' --prefix '%s'", DPOOL_CMAKE,
              DPOOL_BUILD_DIR, prefix);
    free (s_sh ("install", script));
    return prefix;
}

/*  The installed programs run from the prefix, without LD_LIBRARY_PATH,
    and say their version. */
static void
s_case_programs (void)
{
    const char *prefix = s_install ();
    const char *programs[] = {"dpool", "dpool-broker", "dpool-worker"};
    for (int i = 0; i < 3; i++) {
        char script[2048];
        snprintf (script, sizeof script, "unset LD_LIBRARY_PATH; '%s/bin/%s' --version", prefix,
                  programs[i]);
        char *out = s_sh (programs[i], script);
        char expected[128];
        snprintf (expected, sizeof expected, "%s %s", programs[i], DPOOL_VERSION_STRING);
        if (strncmp (out, expected, strlen (expected)) != 0)
            dp_test_fail (__FILE__, __LINE__, "%s --version printed '%s'", programs[i], out);
        free (out);
    }
}

/*  Fails unless `pkg-config --libs module`, from the prefix, names each
    of the NULL-ended flags. */
static void
s_check_libs (const char *prefix, const char *module, const char *const *flags)
{
    char script[4096];
    snprintf (script, sizeof script,
              "export PKG_CONFIG_PATH='%s/%s/pkgconfig'; pkg-config --libs %s", prefix,
              DPOOL_LIBDIR, module);
    char *libs = s_sh ("libs", script);
    for (; *flags; flags++)
        if (!strstr (libs, *flags))
            dp_test_fail (__FILE__, __LINE__, "pkg-config --libs %s gave '%s', without %s", module,
                          libs, *flags);
    free (libs);
}

/*  Builds examples/consumer/NAME.c with nothing but `pkg-config --cflags
    --libs module` from the prefix, and runs it (through runner, unless
    it is ""); returns its stdout, which the caller frees. */
static char *
s_build_with_pkg_config (const char *prefix, const char *module, const char *name,
                         const char *runner)
{
    char script[4096];
    snprintf (script, sizeof script,
              "export PKG_CONFIG_PATH='%s/%s/pkgconfig' && cd '%s' && "
              "'%s' -o %s '%s/examples/consumer/%s.c' $(pkg-config --cflags --libs %s) "
              "-Wl,-rpath,\"$(pkg-config --variable=libdir dpool)\" && %s ./%s",
              prefix, DPOOL_LIBDIR, dp_test_dir (), DPOOL_CC, name, DPOOL_SOURCE_DIR, name, module,
              runner, name);
    return s_sh (name, script);
}

/*  Builds examples/consumer with CMake and nothing but find_package from
    the prefix (its CMakeLists.txt), quietly, and runs the program NAME it
    made (through runner, unless it is ""); returns its stdout, which the
    caller frees. */
static char *
s_build_with_cmake (const char *prefix, const char *name, const char *runner)
{
    char script[4096];
    snprintf (script, sizeof script,
              "'%s' -S '%s/examples/consumer' -B '%s/consumer' -DCMAKE_PREFIX_PATH='%s' "
              "-DCMAKE_C_COMPILER='%s' >/dev/null && '%s' --build '%s/consumer' >/dev/null && "
              "%s '%s/consumer/%s'",
              DPOOL_CMAKE, DPOOL_SOURCE_DIR, dp_test_dir (), prefix, DPOOL_CC, DPOOL_CMAKE,
              dp_test_dir (), runner, dp_test_dir (), name);
    return s_sh ("cmake", script);
}

/*  `pkg-config --cflags --libs dpool` is all the example needs (msgpack's
    -lmsgpackc comes through Requires); it runs an embedded pool. */
static void
s_case_pkg_config (void)
{
    const char *prefix = s_install ();
    s_check_libs (prefix, "dpool", (const char *const[]){"-ldpool", "-lmsgpackc", NULL});
    char *out = s_build_with_pkg_config (prefix, "dpool", "square", "");
    CHECK_EQ_STR (out, SQUARE_OUT);
    free (out);
}

/*  find_package (dpool) in examples/consumer/CMakeLists.txt gives
    dpool::dpool; the program it builds runs. */
static void
s_case_find_package (void)
{
    char *out = s_build_with_cmake (s_install (), "square", "");
    CHECK_EQ_STR (out, SQUARE_OUT);
    free (out);
}

/*  libdpool_mpi from the prefix, both ways: spmd_square (the consumer
    example) built with `pkg-config --cflags --libs dpool_mpi` and with
    find_package (dpool COMPONENTS mpi), each run as three ranks by the
    real mpirun, rank 0 printing the sum of its map. */
static void
s_case_mpi (void)
{
#ifndef DPOOL_INSTALL_MPI
    fprintf (stderr, "skipped: built without MPI\n");
    exit (EXIT_SKIP);
#else
    const char *prefix = s_install ();
    s_check_libs (prefix, "dpool_mpi",
                  (const char *const[]){"-ldpool_mpi", "-ldpool ", "-lmpi", NULL});
    /*  Three ranks on this machine's cores, over tcp between them. */
    const char *mpirun = "mpirun --allow-run-as-root --oversubscribe -n 3 --mca btl self,tcp";
    char *out = s_build_with_pkg_config (prefix, "dpool_mpi", "spmd_square", mpirun);
    CHECK_EQ_STR (out, "285\n");
    free (out);
    out = s_build_with_cmake (prefix, "spmd_square", mpirun);
    CHECK_EQ_STR (out, "285\n");
    free (out);
#endif
}

/*  The man pages, made by the build, are roff under share/man, and man
    renders them. */
static void
s_case_man_pages (void)
{
    const char *prefix = s_install ();
    const char *pages[] = {"man1/dpool.1", "man1/dpool-broker.1", "man1/dpool-worker.1",
                           "man3/dpool.3"};
    const char *titles[] = {".TH \"dpool\" \"1\"", ".TH \"dpool-broker\" \"1\"",
                            ".TH \"dpool-worker\" \"1\"", ".TH \"dpool\" \"3\""};
    for (int i = 0; i < 4; i++) {
        char path[2048];
        snprintf (path, sizeof path, "%s/share/man/%s", prefix, pages[i]);
        char *text = dp_test_read_file (path);
        if (!text || !strstr (text, titles[i]))
            dp_test_fail (__FILE__, __LINE__, "%s is no man page titled %s", path, titles[i]);
        free (text);
        if (access ("/usr/bin/man", X_OK) == 0) {
            char script[4096];
            snprintf (script, sizeof script, "MANWIDTH=80 man -l '%s'", path);
            char *out = s_sh ("man", script);
            CHECK (strstr (out, "NAME") && strstr (out, "SEE ALSO"));
            free (out);
        }
    }
}

/*  The units are in lib/systemd/system, run the programs of the prefix,
    read their EnvironmentFile, and systemd-analyze verify finds nothing
    to say about them (their man pages included). */
static void
s_case_units (void)
{
    const char *prefix = s_install ();
    const char *units[] = {"dpool-broker.service", "dpool-worker@.service"};
    const char *envs[] = {"EnvironmentFile=-/etc/dpool/broker.env",
                          "EnvironmentFile=/etc/dpool/worker-%i.env"};
    const char *programs[] = {"dpool-broker", "dpool-worker"};
    char script[4096];
    for (int i = 0; i < 2; i++) {
        char path[2048], exec[2048];
        snprintf (path, sizeof path, "%s/lib/systemd/system/%s", prefix, units[i]);
        snprintf (exec, sizeof exec, "\nExecStart=%s/bin/%s\n", prefix, programs[i]);
        char *text = dp_test_read_file (path);
        CHECK (text && strstr (text, exec) && strstr (text, envs[i]));
        CHECK (strstr (text, "\nType=notify\n"));
        free (text);
    }
    if (access ("/usr/bin/systemd-analyze", X_OK) != 0) {
        printf ("install_units: no systemd-analyze, the units are not verified\n");
        return;
    }
    snprintf (script, sizeof script,
              "cd '%s/lib/systemd/system' && MANPATH='%s/share/man' systemd-analyze verify "
              "./dpool-broker.service ./dpool-worker@.service",
              prefix, prefix);
    free (s_sh ("verify", script));
    char *err = dp_test_output ("verify", "err");
    if (*err)
        dp_test_fail (__FILE__, __LINE__, "systemd-analyze verify said:\n%s", err);
    free (err);
}

/*  Fails unless out (what dpkg-deb said of the .deb named deb) holds each
    of the count strings of wanted. */
static void
s_expect_listed (const char *out, const char *deb, const char *const *wanted, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (!strstr (out, wanted[i]))
            dp_test_fail (__FILE__, __LINE__, "the %s .deb lacks '%s':\n%s", deb, wanted[i], out);
}

/*  cpack -G DEB makes a .deb of the install for /usr: its control names
    the shared libraries the programs need, and it holds the programs, the
    library, dpool.pc, the CMake package, man pages and units, and no
    libdpool_mpi; that one, when built, is in a second .deb, dpool-mpi,
    which depends on dpool and on Open MPI. */
static void
s_case_deb (void)
{
    char script[4096];
    snprintf (script, sizeof script,
              "cd '%s' && '%s' -G DEB -B '%s/deb' >/dev/null && cd '%s/deb' && "
              "dpkg-deb -f dpool_%s_*.deb Package Version Depends && echo ---- && "
              "dpkg-deb -c dpool_%s_*.deb",
              DPOOL_BUILD_DIR, DPOOL_CPACK, dp_test_dir (), dp_test_dir (), DPOOL_VERSION_STRING,
              DPOOL_VERSION_STRING);
    char *out = s_sh ("cpack", script);
    const char *wanted[] = {"Package: dpool\n",
                            "Version: " DPOOL_VERSION_STRING "\n",
                            "libczmq4",
                            "libzmq5",
                            "libmsgpackc2",
                            "libjansson4",
                            "libc6",
                            "./usr/bin/dpool\n",
                            "./usr/bin/dpool-broker\n",
                            "./usr/bin/dpool-worker\n",
                            "./usr/include/dpool.h\n",
                            "./usr/lib/libdpool.so.0.1.0\n",
                            "./usr/lib/pkgconfig/dpool.pc\n",
                            "./usr/lib/cmake/dpool/dpoolConfig.cmake\n",
                            "./usr/lib/systemd/system/dpool-broker.service\n",
                            "./usr/lib/systemd/system/dpool-worker@.service\n",
                            "./usr/share/man/man1/dpool-broker.1",
                            "./usr/share/man/man3/dpool.3"};
    s_expect_listed (out, "dpool", wanted, sizeof wanted / sizeof wanted[0]);
    CHECK (!strstr (out, "dpool_mpi") && !strstr (out, "openmpi"));
    free (out);
#ifdef DPOOL_INSTALL_MPI
    /*  libdpool_mpi has a package of its own, the one that needs MPI. */
    snprintf (script, sizeof script,
              "cd '%s/deb' && dpkg-deb -f dpool-mpi_%s_*.deb Package Depends && echo ---- && "
              "dpkg-deb -c dpool-mpi_%s_*.deb",
              dp_test_dir (), DPOOL_VERSION_STRING, DPOOL_VERSION_STRING);
    out = s_sh ("cpack_mpi", script);
    const char *mpi_wanted[] = {"Package: dpool-mpi\n",
                                "dpool (= " DPOOL_VERSION_STRING ")",
                                "libopenmpi",
                                "./usr/include/dpool_mpi.h\n",
                                "./usr/lib/libdpool_mpi.so.0.1.0\n",
                                "./usr/lib/pkgconfig/dpool_mpi.pc\n",
                                "./usr/lib/cmake/dpool/dpoolMpiTargets.cmake\n"};
    s_expect_listed (out, "dpool-mpi", mpi_wanted, sizeof mpi_wanted / sizeof mpi_wanted[0]);
    CHECK (!strstr (out, "./usr/bin/"));
    free (out);
#endif
    snprintf (script, sizeof script,
              "cd '%s/deb' && dpkg-deb -x dpool_%s_*.deb root && "
              "grep '^ExecStart=' root/usr/lib/systemd/system/dpool-broker.service",
              dp_test_dir (), DPOOL_VERSION_STRING);
    out = s_sh ("unit", script);
    CHECK_EQ_STR (out, "ExecStart=/usr/bin/dpool-broker\n");
    free (out);
}

static const dp_test_case_t s_cases[] = {
    {"install_programs", s_case_programs},
    {"install_pkg_config", s_case_pkg_config},
    {"install_find_package", s_case_find_package},
    {"install_mpi", s_case_mpi},
    {"install_man_pages", s_case_man_pages},
    {"install_units", s_case_units},
    {"install_deb", s_case_deb},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}
