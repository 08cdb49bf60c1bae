#!/usr/bin/env bash
# Measures the performance budget of issue 3. Every run starts a fresh
# server; each figure is run 3 times; summarize.py takes the medians.
# ONLY='regex' runs only the runs whose name matches (e.g. ONLY='^req').
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/budget/out}
mkdir -p "$OUT"
# LL=path runs that gateway binary instead of this tree's (a build before
# a change, for a run set against it); the generator is always this tree's.
if [ -z "${LL:-}" ]; then
	go build -o /tmp/budget/ll . || exit 1
	LL=/tmp/budget/ll
fi
go build -o /tmp/budget/lt ./loadtest && go build -o /tmp/budget/gpc ./bench/gpc || exit 1
SRC=127.0.0.2-127.0.0.20
run() { # name server(ll|gpc) server-flags... -- loadtest-flags...
	local name=$1 srv=$2; shift 2
	[[ $name =~ ${ONLY:-.} ]] || return 0
	local sflags=() lflags=()
	while [ "$1" != "--" ]; do sflags+=("$1"); shift; done; shift
	lflags=("$@")
	local addr=127.0.0.1:7600 api=http://127.0.0.1:7680
	if [ "$srv" = ll ]; then
		"$LL" -listen $addr -ws-listen "" -api-listen 127.0.0.1:7680 "${sflags[@]}" >"$OUT/$name.server.log" 2>&1 &
	else
		/tmp/budget/gpc -listen $addr -api-listen 127.0.0.1:7680 "${sflags[@]}" >"$OUT/$name.server.log" 2>&1 &
	fi
	local pid=$!
	sleep 1.5
	timeout 600 /tmp/budget/lt -addr $addr -api $api -source-ips $SRC -quiet -json "$OUT/$name.json" "${lflags[@]}" >"$OUT/$name.txt" 2>&1
	kill -TERM $pid; wait $pid 2>/dev/null
	sleep 2
}
for i in 1 2 3; do
	run hold10k-$i ll -- -scenario hold -conns 10000 -duration 5s
	run hold15k-$i ll -- -scenario hold -conns 15000 -duration 10s
	run gpc-hold15k-$i gpc -- -scenario hold -conns 15000 -duration 10s
	run group-b2b-$i ll -- -scenario group -conns 15000 -pushes 100 -size 64 -rate 0
	run group-r70-$i ll -- -scenario group -conns 15000 -pushes 100 -size 64 -rate 70
	run group-r80-$i ll -- -scenario group -conns 15000 -pushes 100 -size 64 -rate 80
	run group-r80w2-$i ll -down-workers 2 -- -scenario group -conns 15000 -pushes 100 -size 64 -rate 80
	run gpc-group-b2b-$i gpc -- -scenario group -conns 15000 -pushes 100 -size 64 -rate 0
	run req100k-$i ll -- -scenario request -conns 15000 -rate 100000 -duration 10s
	run req120k-$i ll -- -scenario request -conns 15000 -rate 120000 -duration 10s
	run req50k-$i ll -- -scenario request -conns 15000 -rate 50000 -duration 10s
	run req50kw2-$i ll -down-workers 2 -- -scenario request -conns 15000 -rate 50000 -duration 10s
	run gpc-req50k-$i gpc -- -scenario request -conns 15000 -rate 50000 -duration 10s
done
run hold1k ll -- -scenario hold -conns 1000 -duration 5s
run hold19k ll -- -scenario hold -conns 19000 -duration 5s
