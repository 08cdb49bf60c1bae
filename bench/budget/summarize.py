#!/usr/bin/env python3
"""Medians of the budget runs (bench/budget/run.sh) for docs/BENCHMARKS.md."""
import glob, json, os, statistics, sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/budget/out"


def load(name):
    runs = []
    for p in sorted(glob.glob(os.path.join(out, name + "-[0-9].json"))) or glob.glob(os.path.join(out, name + ".json")):
        with open(p) as f:
            runs.append(json.load(f))
    return runs


def med(runs, get):
    vals = [get(r) for r in runs]
    return statistics.median(vals), vals


def row(label, runs, get, fmt="{:,.0f}"):
    if not runs:
        print(f"| {label} | (no runs) |")
        return
    m, vals = med(runs, get)
    print(f"| {label} | {fmt.format(m)} | {', '.join(fmt.format(v) for v in vals)} |")


print("| figure | median | runs |")
print("|---|---|---|")
for srv, prefix in (("Longlink", ""), ("goroutine-per-connection", "gpc-")):
    h = load(prefix + "hold15k")
    row(f"{srv}: RSS per idle connection, bytes (15k)", h, lambda r: r["server"]["rss_per_conn"])
    row(f"{srv}: heap per idle connection, bytes (15k)", h, lambda r: r["server"]["heap_per_conn"])
    row(f"{srv}: goroutines (15k)", h, lambda r: r["server"]["goroutines"])
    row(f"{srv}: logins/s (15k, 200 dialers)", h, lambda r: r["logins_per_sec"])
    row(f"{srv}: errors (hold)", h, lambda r: r["errors"])
h10 = load("hold10k")
row("Longlink: RSS per idle connection, bytes (10k)", h10, lambda r: r["server"]["rss_per_conn"])
row("Longlink: heap per idle connection, bytes (10k)", h10, lambda r: r["server"]["heap_per_conn"])
for name in ("hold1k", "hold19k"):
    r = load(name)
    row(f"Longlink: goroutines ({name[4:]})", r, lambda r: r["server"]["goroutines"])
    row(f"Longlink: RSS per idle connection ({name[4:]})", r, lambda r: r["server"]["rss_per_conn"])
for label, name in (("Longlink, 100 pushes back to back", "group-b2b"), ("Longlink, 100 pushes at 70/s", "group-r70"), ("Longlink, 100 pushes at 80/s", "group-r80"), ("Longlink, 100 pushes at 80/s, two downstream writers", "group-r80w2"), ("goroutine-per-connection, back to back", "gpc-group-b2b")):
    g = load(name)
    row(f"{label}: deliveries/s", g, lambda r: r["deliveries_per_sec"])
    row(f"{label}: delivery p99, ms", g, lambda r: r["latency_ms"]["p99"], "{:,.1f}")
    row(f"{label}: delivery p50, ms", g, lambda r: r["latency_ms"]["p50"], "{:,.1f}")
    row(f"{label}: server CPU-s per million deliveries", g, lambda r: r["server"].get("cpu_per_million_deliveries", 0), "{:.2f}")
    row(f"{label}: missing deliveries", g, lambda r: r["missing_deliveries"])
for label, name in (("Longlink, echo offered 120,000/s", "req120k"), ("Longlink, echo at 100,000/s", "req100k"), ("Longlink, echo at 50,000/s", "req50k"), ("Longlink, echo at 50,000/s, two downstream writers", "req50kw2"), ("goroutine-per-connection, echo at 50,000/s", "gpc-req50k")):
    q = load(name)
    row(f"{label}: responses/s", q, lambda r: r["throughput_per_sec"])
    row(f"{label}: p50, ms", q, lambda r: r["latency_ms"]["p50"], "{:,.2f}")
    row(f"{label}: p99, ms", q, lambda r: r["latency_ms"]["p99"], "{:,.2f}")
    row(f"{label}: errors", q, lambda r: r["errors"])
