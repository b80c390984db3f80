#!/usr/bin/env bash
# dpool set-up on Debian 12: installs the packages that are missing (as root,
# or through sudo), builds everything in ./build, and runs the demo: the
# tutorial's Pool(3) example, embedded in one program.
#   ./setup.sh              install, build, run the demo
#   ./setup.sh --deps-only  install only
set -euo pipefail
cd "$(dirname "$0")"

# Build and run: a C toolchain, CMake, ZeroMQ, CZMQ, msgpack-c, jansson, libsodium.
# Tests: clang and its runtime (AddressSanitizer, UBSan, libFuzzer),
# valgrind, iproute2 (network-namespace tests), python3 (benchmark smoke),
# Open MPI (libdpool_mpi and the mpirun SPMD test), util-linux (taskset),
# parallel and python3-mpi4py (GNU parallel and mpi4py.futures, peers in bench/),
# Slurm and munge (tests/test_slurm.c starts a one-node cluster of its own;
# the packages' own services need no configuration for it).
# The Python package (python/): pyzmq and msgpack for /usr/bin/python3, and
# CPython's own test suite, whose Pool tests python/tests runs against it.
PACKAGES="build-essential cmake pkg-config libzmq3-dev libczmq-dev libmsgpack-dev
          libjansson-dev libsodium-dev clang-19 libclang-rt-19-dev valgrind iproute2 python3
          openmpi-bin libopenmpi-dev util-linux parallel python3-mpi4py slurm-wlm munge
          python3-zmq python3-msgpack libpython3.11-testsuite"
# Install and service (issue 17): libsystemd-dev (sd_notify, the journald
# log target), scdoc (the man pages' source to roff).
PACKAGES="$PACKAGES libsystemd-dev scdoc"
# Metrics (issue 17): libmicrohttpd-dev, the HTTP server of dpool-broker
# --metrics-bind; curl, which its test scrapes with.
PACKAGES="$PACKAGES libmicrohttpd-dev curl"
# The broker's journal (dpool-broker --journal) is a SQLite database.
PACKAGES="$PACKAGES libsqlite3-dev"

missing=()
for package in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ "${1:-}" = "--deps-only" ]; then
    exit 0
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
./build/cli/dpool demo
