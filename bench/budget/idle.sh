#!/usr/bin/env bash
# Idle CPU: 15,000 logged-in connections with the default 60 s heartbeat.
# After 90 s of settling (the garbage of the connect burst collected, the
# scavenger done), the server's CPU time (utime+stime from /proc, through
# /v1/stats) over three consecutive 60 s windows; report the median.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/budget/out}; mkdir -p "$OUT"
stats() { curl -s -H 'Authorization: Bearer longlink-dev-api-key' http://127.0.0.1:7680/v1/stats |
	python3 -c 'import json,sys;d=json.load(sys.stdin);print(d["cpu_seconds"], d["logged_in"], d["frames_in"])'; }
/tmp/budget/ll -listen 127.0.0.1:7600 -ws-listen "" -api-listen 127.0.0.1:7680 >"$OUT/idle.server.log" 2>&1 &
pid=$!
sleep 1.5
timeout 400 /tmp/budget/lt -addr 127.0.0.1:7600 -api http://127.0.0.1:7680 -source-ips 127.0.0.2-127.0.0.20 -quiet -scenario hold -conns 15000 -duration 290s >"$OUT/idle.txt" 2>&1 &
lpid=$!
sleep 90
prev=$(stats)
for w in 1 2 3; do
	sleep 60
	cur=$(stats)
	echo "window $w: cpu logged_in frames_in from [$prev] to [$cur]" | tee -a "$OUT/idle-windows.txt"
	prev=$cur
done
wait $lpid
kill -TERM $pid; wait $pid 2>/dev/null
