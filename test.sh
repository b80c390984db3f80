#!/usr/bin/env bash
# dpool's whole test suite: installs what is missing, builds in ./build, and
# runs every test with ctest (in parallel; each test has its own deadline).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --deps-only
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
ctest --test-dir build -j"$(nproc)" --output-on-failure --timeout 600
