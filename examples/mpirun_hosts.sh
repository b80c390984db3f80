#!/bin/bash
# Worker fleets with Open MPI's launcher: mpirun starts one dpool-worker
# on every host of a hostfile (dpool-worker ignores its MPI rank; each runs
# as many worker processes as the CPUs mpirun bound it to), against a
# broker started here. Then the map runs from here.
#
#   examples/mpirun_hosts.sh hosts inputs.jsonl > results.jsonl
#
# hosts is an Open MPI hostfile, one host a line, e.g.
#     node1 slots=1
#     node2 slots=1
# (one slot a host: one dpool-worker per host; --map-by ppr:1:node does the
# same whatever the slots). dpool-broker, dpool-worker and dpool must be on
# every host's PATH, and the hosts must reach this one. As root, add
# --allow-run-as-root to the mpirun line. SPMD programs run the other way:
# mpirun --hostfile hosts -n 8 ./spmd_demo_mpi (see spmd_demo.c).
set -euo pipefail
hosts=${1:?usage: mpirun_hosts.sh HOSTFILE INPUTS.jsonl}
inputs=${2:?usage: mpirun_hosts.sh HOSTFILE INPUTS.jsonl}

endpoint_file=$(mktemp)
dpool-broker --bind 'tcp://0.0.0.0:0' --endpoint-file "$endpoint_file" &
broker=$!
trap 'kill $broker ${workers:-} 2>/dev/null; rm -f "$endpoint_file"' EXIT
for _ in $(seq 100); do [ -s "$endpoint_file" ] && break; sleep 0.1; done
port=$(sed -n 's|^tcp://[^:]*:\([0-9]*\)$|\1|p' "$endpoint_file" | head -n 1)
endpoint="tcp://$(hostname):$port"

mpirun --hostfile "$hosts" --map-by ppr:1:node dpool-worker --connect "$endpoint" &
workers=$!
dpool map "${FUNCTION:-sleep}" --connect "$endpoint" < "$inputs"
