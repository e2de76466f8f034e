#!/usr/bin/env bash
# What OpenTelemetry costs the cached data route: GET /v1/dashboards/{slug}/data of the
# 10-query dashboard (bench/dashboard-10.yaml), every result cached, on two `bridge serve`
# processes side by side over one database: one with export off, one exporting spans and
# metrics over OTLP/HTTP to a local receiver with sampling at 10%
# (OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.1). Rounds are
# interleaved (off, on, then on, off, …), only one server is under load at a time, and the
# medians of requests/s and p99 of each are compared.
#
#   bench/otel.sh [seconds=10] [connections=32] [rounds=5]
#
# OTEL_RATIO sets the sampling ratio of the exporting server (default 0.1). BRIDGE_BIN as in
# bench/data.sh. Needs wrk and a Postgres at $BENCH_DATABASE_URL (see bench/lib.sh). wrk,
# both servers, the receiver and Postgres share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
conns="${2:-32}"
rounds="${3:-5}"
ratio="${OTEL_RATIO:-0.1}"
. bench/lib.sh
start_bridge otel
off_base=$base
off_pid=$pid

# The receiver: answers every OTLP/HTTP export with 200, counting requests and bytes.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
otlp_port=$(free_port)
python3 - "$otlp_port" "$dir/otlp.txt" <<'PY' &
import http.server, sys
port, out = int(sys.argv[1]), sys.argv[2]
seen = {}
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        self.rfile.read(n)
        c, b = seen.get(self.path, (0, 0))
        seen[self.path] = (c + 1, b + n)
        with open(out, "w") as f:
            for p, (c, b) in sorted(seen.items()):
                f.write(f"{p}: {c} exports, {b} bytes\n")
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
otlp_pid=$!

on_port=$(free_port)
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$otlp_port" OTEL_TRACES_SAMPLER=parentbased_traceidratio \
  OTEL_TRACES_SAMPLER_ARG="$ratio" OTEL_METRIC_EXPORT_INTERVAL=5000 \
  RUST_LOG="${RUST_LOG:-warn}" LOG_FORMAT=json "$bin" serve --port "$on_port" >"$dir/serve-on.log" 2>&1 &
on_pid=$!
prev_trap=$(trap -p EXIT | sed "s/^trap -- '//; s/' EXIT\$//")
trap 'kill $on_pid $otlp_pid 2>/dev/null; wait $on_pid 2>/dev/null; '"$prev_trap" EXIT
on_base="http://127.0.0.1:$on_port"
until curl -sf "$on_base/ready" >/dev/null; do sleep 0.1; done

bench_dashboard "$off_base"
path=/v1/dashboards/bench-ten/data
# Warm both: the exporting server fills its own in-process caches from the shared ones.
for b in "$off_base" "$on_base"; do
  curl -sf -o /dev/null -H "Authorization: Bearer $token" "$b$path"
  wrk -t2 -c"$conns" -d2s -H "Authorization: Bearer $token" "$b$path" >/dev/null
done

cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
run() { # mode base pid round
  local before after
  before=$(cpu "$3")
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $token" "$2$path" > "$dir/wrk.txt"
  after=$(cpu "$3")
  local rps p99 n bad us
  rps=$(awk '/Requests\/sec/ { print $2 }' "$dir/wrk.txt")
  p99=$(awk '$1 == "99%" { print $2 }' "$dir/wrk.txt")
  n=$(awk '/requests in/ { print $1 }' "$dir/wrk.txt")
  bad=$(awk '/Non-2xx/ { print $NF }' "$dir/wrk.txt")
  us=$(awk -v a="$before" -v b="$after" -v n="$n" -v t="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) / t * 1e6 / n }')
  echo "round $4 export $1: $rps req/s, p99 $p99, $us us CPU/request${bad:+, non-2xx $bad}"
  echo "$1 $rps $p99 $us" >> "$dir/rounds.txt"
}
echo "cached GET $path: wrk -t2 -c$conns -d${secs}s, $rounds interleaved rounds; export on: OTLP/HTTP, sampling $ratio"
: > "$dir/rounds.txt"
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then
    run off "$off_base" "$off_pid" "$round"; run on "$on_base" "$on_pid" "$round"
  else
    run on "$on_base" "$on_pid" "$round"; run off "$off_base" "$off_pid" "$round"
  fi
done
sleep 6 # one metric export interval: the receiver's count includes the last batch
python3 - "$dir/rounds.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def ms(v):
    return float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
med = {}
for mode in ("off", "on"):
    mine = [r for r in rows if r[0] == mode]
    med[mode] = (statistics.median(float(r[1]) for r in mine), statistics.median(ms(r[2]) for r in mine),
                 statistics.median(float(r[3]) for r in mine))
    print(f"median export {mode}: {med[mode][0]:.0f} req/s, p99 {med[mode][1]:.2f} ms, {med[mode][2]:.1f} us CPU/request ({len(mine)} rounds)")
print(f"export on vs off: {100 * (med['on'][0] / med['off'][0] - 1):+.1f}% req/s, p99 {100 * (med['on'][1] / med['off'][1] - 1):+.1f}%, "
      f"CPU/request {100 * (med['on'][2] / med['off'][2] - 1):+.1f}%")
PY
echo "receiver:"; cat "$dir/otlp.txt" 2>/dev/null || echo "  nothing received"
