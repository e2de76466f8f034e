#!/usr/bin/env bash
# GET /v1/dashboards/{slug}/data of a 10-query dashboard (bench/dashboard-10.yaml) on the
# demo warehouse: a cold read (every query runs) against the sum and the slowest of its
# queries' own times, then cached reads under wrk (p50, p99, requests/s).
#
#   bench/data.sh [seconds=20] [connections=32]
#
# BRIDGE_BIN names the bridge binary to measure (default: target/release/bridge, built
# here), so that two builds can be compared side by side.
#
# BENCH_ENCODINGS="identity gzip br zstd" (and BENCH_ROUNDS, default 3) instead measures the
# cached read per Accept-Encoding, interleaved round by round: the bytes on the wire, then
# requests/s, p99 and the server's CPU per request of each, with their medians.
#
# Needs wrk and a Postgres at $BENCH_DATABASE_URL (admin URL; default
# postgres://postgres@127.0.0.1:5432/postgres). wrk, Bridge and both databases share the
# machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
conns="${2:-32}"
. bench/lib.sh
start_bridge data

python3 - "$base" "$token" "$reader_url" <<'PY'
import json, sys, time, urllib.request
base, token, url = sys.argv[1:4]
def call(method, path, body=None, ctype="application/json"):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else body.encode(),
                                 headers={"Authorization": "Bearer " + token, "Content-Type": ctype})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")
team = call("POST", "/v1/teams", json.dumps({"name": "Bench"}))["id"]
conn = call("POST", f"/v1/teams/{team}/connections", json.dumps({"name": "Demo", "warehouse_type": "postgres", "credentials": {"url": url}}))["id"]
call("POST", f"/v1/connections/{conn}/validate")
scan = call("POST", f"/v1/connections/{conn}/scan")
while scan["status"] == "running":  # a job (202) since the scan became one; finished at once before
    time.sleep(0.05)
    scan = call("GET", f"/v1/connections/{conn}/scans/{scan['scan_id']}")
yaml = open("bench/dashboard-10.yaml").read().replace("00000000-0000-4000-8000-000000000001", conn)
call("POST", f"/v1/teams/{team}/dashboards", yaml, "application/yaml")
for round in range(3):
    if round:
        # A new version (its text must differ: an unchanged PUT makes none): every key is cold.
        call("PUT", "/v1/dashboards/bench-ten/yaml", yaml + f"\n# round {round}\n", "application/yaml")
    t = time.perf_counter()
    d = call("GET", "/v1/dashboards/bench-ten/data")
    wall = (time.perf_counter() - t) * 1000
    durations = [q["metadata"]["duration_ms"] for q in d["queries"].values()]
    assert not any(q["metadata"]["cache_hit"] for q in d["queries"].values())
    print(f"cold read {round + 1}: {wall:.0f} ms for {len(durations)} queries; their own times: sum {sum(durations)} ms, slowest {max(durations)} ms")
call("GET", "/v1/dashboards/bench-ten/data")
PY
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
if [ -n "${BENCH_ENCODINGS:-}" ]; then
  url="$base/v1/dashboards/bench-ten/data"
  for enc in $BENCH_ENCODINGS; do
    bytes=$(curl -s -o /dev/null -w '%{size_download}' -H "Authorization: Bearer $token" -H "Accept-Encoding: $enc" "$url")
    echo "bytes on the wire, Accept-Encoding: $enc: $bytes"
  done
  : > "$dir/rounds.txt"
  for round in $(seq "${BENCH_ROUNDS:-3}"); do
    for enc in $BENCH_ENCODINGS; do
      before=$(cpu)
      wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $token" \
        -H "Accept-Encoding: $enc" "$url" > "$dir/wrk.txt"
      after=$(cpu)
      rps=$(awk '/Requests\/sec/ { print $2 }' "$dir/wrk.txt")
      p99=$(awk '$1 == "99%" { print $2 }' "$dir/wrk.txt")
      n=$(awk '/requests in/ { print $1 }' "$dir/wrk.txt")
      bad=$(awk '/Non-2xx/ { print $NF }' "$dir/wrk.txt")
      us=$(awk -v a="$before" -v b="$after" -v n="$n" -v t="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) / t * 1e6 / n }')
      echo "round $round $enc: $rps req/s, p99 $p99, $us us CPU/request${bad:+, non-2xx $bad}"
      echo "$enc $rps $p99 $us" >> "$dir/rounds.txt"
    done
  done
  python3 - "$dir/rounds.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def ms(v):
    return float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
for enc in dict.fromkeys(r[0] for r in rows):
    mine = [r for r in rows if r[0] == enc]
    print(f"median {enc}: {statistics.median(float(r[1]) for r in mine):.0f} req/s, p99 {statistics.median(ms(r[2]) for r in mine):.2f} ms, "
          f"{statistics.median(float(r[3]) for r in mine):.1f} us CPU/request ({len(mine)} rounds)")
PY
  exit 0
fi
echo "cached: wrk -t2 -c$conns -d${secs}s GET /v1/dashboards/bench-ten/data"
cpu_before=$(cpu)
# BENCH_PERF=<file>: also record the server's profile during the run (perf, software clock).
[ -z "${BENCH_PERF:-}" ] || perf record -q -F 499 -g -p "$pid" -o "$BENCH_PERF" -- sleep "$secs" 2>/dev/null &
wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $token" "$base/v1/dashboards/bench-ten/data" > "$dir/wrk.txt"
cpu_after=$(cpu)
grep -E "Requests/sec|Latency |50%|90%|99%|requests in|Non-2xx|Transfer" "$dir/wrk.txt"
# The server's own CPU time per request (user + system, from /proc): steadier than req/s on
# a shared machine, since waiting for a core costs no CPU time.
requests=$(awk '/requests in/ { print $1 }' "$dir/wrk.txt")
ticks=$(getconf CLK_TCK)
awk -v a="$cpu_before" -v b="$cpu_after" -v n="$requests" -v t="$ticks" \
  'BEGIN { printf "server CPU per request: %.1f us (%d requests)\n", (b - a) / t * 1e6 / n, n }'
if [ -n "${BENCH_SERVER_LATENCY:-}" ]; then
  # With RUST_LOG=info, Bridge logs each request's own latency: its percentiles, apart from
  # the time requests spend queued in the kernel or waiting for a core.
  python3 - "$dir/serve.log" <<'PY'
import json, sys
xs = sorted(json.loads(l)["latency_ms"] for l in open(sys.argv[1]) if "request handled" in l and "/data" in l)
p = lambda q: xs[min(len(xs) - 1, int(len(xs) * q))]
print(f"in Bridge: n={len(xs)} p50 {p(0.5):.2f} ms  p90 {p(0.9):.2f} ms  p99 {p(0.99):.2f} ms  max {xs[-1]:.1f} ms")
PY
fi
