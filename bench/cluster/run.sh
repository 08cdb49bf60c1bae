#!/usr/bin/env bash
# Cross-node against same-node unicast on two Longlink nodes, plain and
# durable (ack:true, every push acknowledged), over a standalone Redis or
# a 3-master Redis Cluster, in one run set:
# cluster/clusterbench closed loop (128 calls in flight), each figure 3
# times, every node and Redis fresh for each topology.
#   TOPO=standalone|cluster (default both)  LL=binary (default: this tree)
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/bench-cluster}
mkdir -p "$OUT" && rm -rf "$OUT"/redis
if [ -z "${LL:-}" ]; then go build -o "$OUT/ll" . || exit 1; LL=$OUT/ll; fi
go build -o "$OUT/cb" ./cluster/clusterbench || exit 1
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null; wait 2>/dev/null; pids=(); }
trap cleanup EXIT
redis() { # port [cluster]
	mkdir -p "$OUT/redis/$1"
	local extra=()
	[ "${2:-}" = cluster ] && extra=(--cluster-enabled yes --cluster-config-file nodes.conf)
	(cd "$OUT/redis/$1" && exec redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no "${extra[@]}" >log 2>&1) &
	pids+=($!)
	until redis-cli -p "$1" ping >/dev/null 2>&1; do sleep 0.05; done
}
bench() { # topology redis-flag masters
	local topo=$1 flag=$2 masters=$3
	"$LL" -node A -redis "$flag" -listen 127.0.0.1:17100 -ws-listen "" -api-listen 127.0.0.1:17180 >"$OUT/$topo-A.log" 2>&1 & pids+=($!)
	"$LL" -node B -redis "$flag" -listen 127.0.0.1:17200 -ws-listen "" -api-listen 127.0.0.1:17280 >"$OUT/$topo-B.log" 2>&1 & pids+=($!)
	until curl -sf http://127.0.0.1:17180/readyz >/dev/null && curl -sf http://127.0.0.1:17280/readyz >/dev/null; do sleep 0.05; done
	# Both registered (a Redis Cluster may still answer CLUSTERDOWN on
	# some shard): each lists the other.
	local key='Authorization: Bearer longlink-dev-api-key'
	until curl -sf -H "$key" http://127.0.0.1:17180/v1/endpoints | grep -q '"node":"B"' &&
		curl -sf -H "$key" http://127.0.0.1:17280/v1/endpoints | grep -q '"node":"A"'; do sleep 0.1; done
	for i in 1 2 3; do
		for run in cross same cross-ack same-ack; do
			local nodes=127.0.0.1:17200 ack=()
			[[ $run = same* ]] && nodes=127.0.0.1:17100
			[[ $run = *-ack ]] && ack=(-ack)
			timeout 300 "$OUT/cb" -nodes $nodes -api http://127.0.0.1:17180 -redis "$masters" -mode unicast "${ack[@]}" \
				-conns 2000 -pushes 30000 -concurrency 128 >"$OUT/$topo-$run-$i.txt" 2>&1
			echo "$topo $run $i: $(grep -o '[0-9]* calls/s' "$OUT/$topo-$run-$i.txt")  $(grep -i 'per push' "$OUT/$topo-$run-$i.txt" | head -1)"
		done
	done
	cleanup
}
if [ "${TOPO:-both}" != cluster ]; then
	redis 16379
	bench standalone 127.0.0.1:16379 127.0.0.1:16379
fi
if [ "${TOPO:-both}" != standalone ]; then
	for p in 16401 16402 16403; do redis $p cluster; done
	redis-cli --cluster create 127.0.0.1:16401 127.0.0.1:16402 127.0.0.1:16403 --cluster-replicas 0 --cluster-yes >"$OUT/create.log" 2>&1
	until redis-cli -p 16401 cluster info | grep -q cluster_state:ok; do sleep 0.1; done
	m=127.0.0.1:16401,127.0.0.1:16402,127.0.0.1:16403
	bench cluster $m $m
fi
