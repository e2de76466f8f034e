#!/usr/bin/env bash
# The cached read against its floors, side by side (issue 16): Bridge's cached
# GET /v1/dashboards/{slug}/data of the 10-query bench dashboard, and the same response bytes
# served by nginx from a file, by a minimal hyper server from memory (bench/floor), and by that
# server after verifying the same HS256 bearer token. Interleaved rounds at each concurrency;
# medians of req/s, p99, and each server's CPU per request (user + system from /proc). For
# Bridge also Postgres transactions per request (its own database's xact counters).
#
#   bench/floor.sh [seconds=10] [rounds=3] [concurrencies="8 16 32 64"]
#
# BRIDGE_BIN names the bridge binary (default: target/release/bridge, built here);
# FLOOR_BIN the floor's (default: target/release/bench-floor, built here). BENCH_SERVERS
# picks servers (default "bridge nginx hyper hyper+token"). BENCH_PERF=<file> records
# Bridge's profile (perf, 499 Hz, call graphs) during its last round at the highest
# concurrency. Needs wrk, nginx, curl, python3 and a Postgres at $BENCH_DATABASE_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
rounds="${2:-3}"
concs="${3:-8 16 32 64}"
servers="${BENCH_SERVERS:-bridge nginx hyper hyper+token}"
floor_bin="${FLOOR_BIN:-target/release/bench-floor}"
[ -n "${FLOOR_BIN:-}" ] || cargo build --release --locked -p bench-floor >/dev/null
. bench/lib.sh
start_bridge floor
bridge_pid=$pid

bench_dashboard "$base"
url="$base/v1/dashboards/bench-ten/data"
# The floors serve exactly the bytes Bridge answers (identity coding: wrk sends no
# Accept-Encoding).
curl -sf -H "Authorization: Bearer $token" "$url" -o "$dir/body.json"
echo "response: $(wc -c < "$dir/body.json") bytes"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

nginx_port=$(free_port)
mkdir -p "$dir/nginx/www"
cp "$dir/body.json" "$dir/nginx/www/data"
# nginx's workers drop to an unprivileged user when started as root: let it read the file.
chmod o+rx "$dir" "$dir/nginx" "$dir/nginx/www"
chmod o+r "$dir/nginx/www/data"
cat > "$dir/nginx/nginx.conf" <<NGINX
worker_processes 2;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/nginx;
  proxy_temp_path $dir/nginx; fastcgi_temp_path $dir/nginx; uwsgi_temp_path $dir/nginx; scgi_temp_path $dir/nginx;
  keepalive_requests 1000000;
  sendfile on;
  open_file_cache max=16;
  server {
    listen 127.0.0.1:$nginx_port;
    root $dir/nginx/www;
    location / { default_type application/json; }
  }
}
NGINX
nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" &
nginx_master=$!
hyper_port=$(free_port)
"$floor_bin" "$hyper_port" "$dir/body.json" &
hyper_pid=$!
token_port=$(free_port)
"$floor_bin" "$token_port" "$dir/body.json" "$BRIDGE_DEV_JWT_SECRET" bridge-dev bridge &
token_pid=$!
trap 'kill $bridge_pid $nginx_master $hyper_pid $token_pid 2>/dev/null; wait 2>/dev/null; psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP DATABASE IF EXISTS $demo WITH (FORCE)" -c "DROP ROLE IF EXISTS bridge_demo_reader"; rm -rf "$dir"' EXIT
for p in "$nginx_port" "$hyper_port" "$token_port"; do
  until curl -s -o /dev/null "http://127.0.0.1:$p/"; do sleep 0.1; done
done
curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$token_port/" | cmp -s - "$dir/body.json" || { echo "the token floor refused the token" >&2; exit 1; }

# CPU ticks (user + system) of a process and its children's threads: nginx's workers are
# processes, so sum the master's process group.
ticks() {
  local total=0 p
  for p in $(pgrep -g "$(ps -o pgid= "$1" | tr -d ' ')" 2>/dev/null || echo "$1"); do
    [ -r "/proc/$p/stat" ] && total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
  done
  echo "$total"
}
xacts() { psql "$admin" -tAc "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$db'"; }
target() {
  case $1 in
    bridge) echo "$url $bridge_pid" ;;
    nginx) echo "http://127.0.0.1:$nginx_port/data $nginx_master" ;;
    hyper) echo "http://127.0.0.1:$hyper_port/ $hyper_pid" ;;
    hyper+token) echo "http://127.0.0.1:$token_port/ $token_pid" ;;
  esac
}
: > "$dir/rounds.txt"
last_c=${concs##* }
for round in $(seq "$rounds"); do
  for c in $concs; do
    for s in $servers; do
      read -r u p <<< "$(target "$s")"
      before=$(ticks "$p")
      [ "$s" != bridge ] || { sleep 1.2; x0=$(xacts); }
      perf_pid=
      if [ -n "${BENCH_PERF:-}" ] && [ "$s" = bridge ] && [ "$round" = "$rounds" ] && [ "$c" = "$last_c" ]; then
        perf record -q -F 499 ${BENCH_PERF_CALLGRAPH:--g} -p "$p" -o "$BENCH_PERF" -- sleep "$secs" 2>/dev/null &
        perf_pid=$!
      fi
      wrk -t2 -c"$c" -d"${secs}s" --latency -H "Authorization: Bearer $token" "$u" > "$dir/wrk.txt"
      [ -z "$perf_pid" ] || wait "$perf_pid" || true
      after=$(ticks "$p")
      rps=$(awk '/Requests\/sec/ { print $2 }' "$dir/wrk.txt")
      p99=$(awk '$1 == "99%" { print $2 }' "$dir/wrk.txt")
      n=$(awk '/requests in/ { print $1 }' "$dir/wrk.txt")
      bad=$(awk '/Non-2xx/ { print $NF }' "$dir/wrk.txt")
      errs=$(awk '/Socket errors/ { print $0 }' "$dir/wrk.txt")
      tx=-
      if [ "$s" = bridge ]; then sleep 1.2; tx=$(awk -v a="$x0" -v b="$(xacts)" -v n="$n" 'BEGIN { printf "%.4f", (b - a) / n }'); fi
      us=$(awk -v a="$before" -v b="$after" -v n="$n" -v t="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) / t * 1e6 / n }')
      echo "round $round c=$c $s: $rps req/s, p99 $p99, $us us CPU/request, $tx Postgres xacts/request${bad:+, non-2xx $bad}${errs:+, $errs}"
      echo "$s $c $rps $p99 $us $tx ${bad:-0}" >> "$dir/rounds.txt"
    done
  done
done
python3 - "$dir/rounds.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def ms(v):
    return float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
servers = list(dict.fromkeys(r[0] for r in rows))
concs = list(dict.fromkeys(r[1] for r in rows))
med = {}
print("| server | " + " | ".join(f"c={c} req/s (p99)" for c in concs) + " | CPU µs/request | Postgres xacts/request |")
print("|---|" + "---|" * (len(concs) + 2))
for s in servers:
    cells, cpu, tx = [], [], []
    for c in concs:
        mine = [r for r in rows if r[0] == s and r[1] == c]
        rps = statistics.median(float(r[2]) for r in mine)
        med[(s, c)] = rps
        cells.append(f"{rps:,.0f} ({statistics.median(ms(r[3]) for r in mine):.2f} ms)")
        cpu += [float(r[4]) for r in mine]
        tx += [float(r[5]) for r in mine if r[5] != "-"]
    print(f"| {s} | " + " | ".join(cells) + f" | {statistics.median(cpu):.1f} | " + (f"{statistics.median(tx):.4f}" if tx else "–") + " |")
if "bridge" in servers and "hyper+token" in servers:
    print("Bridge / hyper+token: " + ", ".join(f"c={c} {med[('bridge', c)] / med[('hyper+token', c)]:.0%}" for c in concs))
print("non-2xx responses in all:", sum(int(r[6]) for r in rows))
PY
