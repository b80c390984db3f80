#!/usr/bin/env bash
# dpool's whole test suite. Installs what is missing, then:
#   1. builds in ./build as users do and runs every test with ctest
#      (in parallel; each test has its own deadline);
#   2. builds in ./build-asan with clang, AddressSanitizer and UBSan, and runs
#      the same tests again, plus the wire codec's libFuzzer target for a
#      bounded time (DPOOL_FUZZ_SECONDS, default 60).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --deps-only
jobs="$(nproc)"

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$jobs"
ctest --test-dir build -j"$jobs" --output-on-failure --timeout 600

CC=clang-19 cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDPOOL_SANITIZE=ON \
    -DDPOOL_FUZZ=ON -DDPOOL_FUZZ_SECONDS="${DPOOL_FUZZ_SECONDS:-60}"
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan -j"$jobs" --output-on-failure --timeout 900
