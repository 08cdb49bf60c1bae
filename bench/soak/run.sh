#!/usr/bin/env bash
# The soak of issue 4: a mixed load for 10 minutes against one gateway,
# with business 2 failing (503) from minute 4 to minute 6 and recovering.
# Every 30 s the gateway's RSS, heap and goroutines are sampled; the load
# generator counts every push (delivered, reported offline, or recovered
# by resume after its reconnect churn).
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/soak}; mkdir -p "$OUT"
go build -o "$OUT/ll" . && go build -o "$OUT/lt" ./loadtest || exit 1
python3 bench/soak/business.py --port 9102 --fail-from 240 --fail-until 360 &
bpid=$!
"$OUT/ll" -listen 127.0.0.1:7900 -ws-listen "" -api-listen 127.0.0.1:7980 \
	-biz 1=echo -biz 2=http://127.0.0.1:9102/rpc,timeout=1s >"$OUT/server.log" 2>&1 &
gpid=$!
sleep 1.5
(
	for i in $(seq 0 40); do
		curl -s -H 'Authorization: Bearer longlink-dev-api-key' http://127.0.0.1:7980/v1/stats |
			python3 -c 'import json,sys,time;d=json.load(sys.stdin);b=[x for x in d["businesses"] if x["id"]==2][0];print(int(time.time()), d["connections"], d["rss"], d["heap_inuse"], d["goroutines"], d["push"]["deliveries"], b["breaker"], json.dumps(b["results"]), sep="\t")'
		sleep 30
	done
) >"$OUT/samples.tsv" 2>&1 &
spid=$!
"$OUT/lt" -addr 127.0.0.1:7900 -api http://127.0.0.1:7980 -source-ips 127.0.0.2-127.0.0.20 -quiet \
	-scenario mixed -conns 10000 -duration 10m -biz 2 -rate 200 -push-rate 50 -churn 10 \
	-max-errors 1000000000 -json "$OUT/soak.json" -html "$OUT/soak.html" >"$OUT/soak.txt" 2>&1
kill $spid $bpid 2>/dev/null
kill -TERM $gpid; wait $gpid
echo "gateway exit: $?" >>"$OUT/soak.txt"
