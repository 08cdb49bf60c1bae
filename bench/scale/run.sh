#!/usr/bin/env bash
# The cluster at the size this machine allows, through a reconnect storm:
# 6 nodes, 90,000 devices in 5 processes (at most 20,000 open files per
# process), one node SIGKILLed, durable pushes to its devices meanwhile.
# Prints the goals table of docs/cluster.md ("The storm") and exits 1 when
# a goal fails. Extra arguments go to bench/scale, e.g.
#   bench/scale/run.sh -nodes 3 -devices 3000 -gens 3 -max-conns 5000
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/bench-scale}
mkdir -p "$OUT"
command -v redis-server >/dev/null || apt-get install -y redis-server >/dev/null || exit 1
go build -o "$OUT/ll" . || exit 1
go build -o "$OUT/scale" ./bench/scale || exit 1
exec "$OUT/scale" -ll "$OUT/ll" -out "$OUT/run" "$@"
