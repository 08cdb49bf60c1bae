// Package metrics turns the gateway's counters into something people and
// Prometheus can read.
//
// The gateway keeps its counters where they are cheapest to update (atomics
// in the reactor, the connections and the dispatch groups) and assembles a
// Snapshot on demand. This package never touches the hot path: it only
// reads snapshots. /v1/stats serves a Snapshot as JSON (package api), and
// NewRegistry exposes the same numbers to Prometheus, so the two views can
// never disagree about what they count.
//
// # Prometheus
//
// NewRegistry returns a registry holding the Go runtime and process
// collectors and one custom collector. The custom collector calls the
// snapshot function exactly once per scrape and emits const metrics from it,
// so a scrape is one consistent reading and costs nothing between scrapes.
// The series it emits:
//
//	longlink_connections, longlink_logged_in                       gauges
//	longlink_accepted_total, longlink_refused_total                counters
//	longlink_logins_total, longlink_login_failures_total           counters
//	longlink_frames_{in,out}_total, longlink_bytes_{in,out}_total  counters
//	longlink_kicks_total{status}                                   counter
//	longlink_closes_total{reason}                                  counter
//	longlink_push_{requests,deliveries,offline,recovered,acks}_total counters
//	longlink_push_{unrouted,no_reply,route_cached,route_stale}_total counters (-redis)
//	longlink_cluster_link_{requests,fallbacks}_total               counters (-redis)
//	longlink_redis_errors_total                                    counter (-redis)
//	longlink_client_rtt_seconds{net}                               histogram (PING meta rtt, net)
//	longlink_client_rtt_dropped_total                              counter
//	longlink_heartbeat_interval_seconds                            histogram (LOGIN_ACK hb granted)
//	longlink_biz_requests_total{biz}                               counter
//	longlink_biz_results_total{biz,status}                         counter
//	longlink_biz_queued{biz}, longlink_biz_in_flight{biz}          gauges
//	longlink_biz_breaker_open{biz}     gauge, 1 when "open", else 0 (half-open is 0)
//	longlink_biz_latency_seconds{biz}  summary without quantiles (_sum, _count)
//	longlink_queue_len{queue}, longlink_queue_cap{queue}           gauges
//	longlink_queue_dropped_total{queue}                            counter
//
// Counters never go backwards: the collector remembers the highest value it
// has emitted for each counter series and never emits less. A snapshot that
// sums per-shard or per-connection counters read at slightly different
// moments can dip for an instant; without the clamp Prometheus would read
// the dip as a counter reset and rate() would spike by the counter's whole
// value. Gauges are emitted as they are.
//
// A label value that is not valid UTF-8 costs only its own series: the
// registry reports it as a collection error and exposes the others.
//
// # Process figures
//
// ReadProcess reads the resident set size and CPU time of the process from
// /proc without cgo, for Snapshot.RSS and Snapshot.CPUSeconds.
//
// # Concurrency
//
// Everything here is safe for concurrent use. The snapshot function may be
// called from several scrapes at once and must not block for long.
package metrics
