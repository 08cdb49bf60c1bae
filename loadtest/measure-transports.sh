#!/usr/bin/env bash
# measure-transports.sh: what an idle logged-in connection costs the
# gateway over TCP, WebSocket and TLS, and what a login costs in time, for
# docs/transports.md.
#
# For each transport, RUNS times, each against a FRESH gateway process:
#   hold   CONNS connections (default 15,000) for 10 s; the generator
#          reports rss_per_conn, heap_per_conn and logins/s;
#   serial 1,000 logins one at a time (-dial-concurrency 1): the latency
#          of one connect + handshake + LOGIN on an idle machine.
# Then it prints the medians. Run from anywhere in the module:
#
#   loadtest/measure-transports.sh            # CONNS=15000 RUNS=3
#   CONNS=5000 RUNS=1 loadtest/measure-transports.sh
#
# Needs go, openssl (for a self-signed certificate) and jq, ports
# 127.0.0.1:7500-7502 and 7580 free, and a file limit above CONNS + margin
# (the script raises its own soft limit when it can).
set -euo pipefail

CONNS=${CONNS:-15000}
RUNS=${RUNS:-3}
OUT=${OUT:-/tmp/ll-transports}
GW=${GW:-/tmp/ll-mem}
GEN=${GEN:-/tmp/ll-gen}
SRC=${SRC:-127.0.0.2-127.0.0.20}
HOLD=${HOLD:-10s}

cd "$(dirname "$0")/.."
mkdir -p "$OUT"
go build -o "$GW" .
go build -o "$GEN" ./loadtest
if [ ! -f "$OUT/cert.pem" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$OUT/key.pem" -out "$OUT/cert.pem" -days 30 \
		-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
fi
ulimit -n $((CONNS + 5000)) 2>/dev/null || true

gwpid=
start_gateway() {
	"$GW" -listen 127.0.0.1:7500 -ws-listen 127.0.0.1:7501 -tls-listen 127.0.0.1:7502 \
		-tls-cert "$OUT/cert.pem" -tls-key "$OUT/key.pem" -api-listen 127.0.0.1:7580 \
		>"$OUT/gateway.log" 2>&1 &
	gwpid=$!
	for _ in $(seq 100); do
		grep -q 'msg=listening proto=http' "$OUT/gateway.log" && return 0
		sleep 0.1
	done
	echo "the gateway did not start:" >&2
	cat "$OUT/gateway.log" >&2
	exit 1
}
stop_gateway() {
	kill "$gwpid"
	wait "$gwpid" || true
}
trap '[ -n "$gwpid" ] && kill "$gwpid" 2>/dev/null || true' EXIT

flags() {
	case $1 in
	tcp) ;;
	ws) echo -ws ;;
	tls) echo -tls -tls-ca "$OUT/cert.pem" ;;
	esac
}

common=(-addr 127.0.0.1:7500 -ws-addr 127.0.0.1:7501 -tls-addr 127.0.0.1:7502
	-api http://127.0.0.1:7580 -source-ips "$SRC" -quiet)

for t in tcp ws tls; do
	for i in $(seq "$RUNS"); do
		start_gateway
		sleep 1 # let the fresh process settle before the "before" reading
		echo "== $t hold $i (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
		# shellcheck disable=SC2046
		"$GEN" -scenario hold -conns "$CONNS" -duration "$HOLD" $(flags $t) "${common[@]}" \
			-json "$OUT/hold-$t-$i.json" >"$OUT/hold-$t-$i.txt"
		stop_gateway

		start_gateway
		echo "== $t serial $i (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
		# shellcheck disable=SC2046
		"$GEN" -scenario hold -conns 1000 -dial-concurrency 1 -duration 1s $(flags $t) "${common[@]}" \
			-json "$OUT/serial-$t-$i.json" >"$OUT/serial-$t-$i.txt"
		stop_gateway
	done
done

# median EXPR FILES...: the median over the files of a jq expression.
median() {
	local expr=$1
	shift
	jq -s "[.[] | $expr] | sort | .[length/2|floor]" "$@"
}
runs() { # the values of each run, for the record
	local expr=$1
	shift
	jq -s -c "[.[] | $expr | . * 10 | round / 10]" "$@"
}

printf '\n| transport | rss/conn (KiB) | heap/conn (KiB) | logins/s | gateway CPU/login (µs) | generator CPU/login (µs) | login p50, serial (ms) | gateway goroutines |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for t in tcp ws tls; do
	h=("$OUT"/hold-$t-*.json)
	s=("$OUT"/serial-$t-*.json)
	printf '| %s | %.1f | %.1f | %.0f | %.0f | %.0f | %.3f | %s |\n' "$t" \
		"$(median '.server.rss_per_conn/1024' "${h[@]}")" \
		"$(median '.server.heap_per_conn/1024' "${h[@]}")" \
		"$(median '.logins_per_sec' "${h[@]}")" \
		"$(median '(.server.connected.cpu_seconds - .server.before.cpu_seconds) / .connections * 1e6' "${h[@]}")" \
		"$(median '.generator.cpu_seconds_connect / .connections * 1e6' "${h[@]}")" \
		"$(median '.latencies_ms.login.p50' "${s[@]}")" \
		"$(median '.server.goroutines' "${h[@]}")"
done
printf '\nEach run (hold):\n'
for t in tcp ws tls; do
	h=("$OUT"/hold-$t-*.json)
	echo "  $t rss/conn B $(runs '.server.rss_per_conn' "${h[@]}")  heap/conn B $(runs '.server.heap_per_conn' "${h[@]}")  logins/s $(runs '.logins_per_sec' "${h[@]}")  errors $(runs '.errors' "${h[@]}")"
done
