# What the bench scripts share: a throwaway Bridge database and demo warehouse on the
# Postgres at $BENCH_DATABASE_URL, and `bridge serve` on a free port, all removed on exit.
#
#   . bench/lib.sh; start_bridge <name>
#
# sets bin, base (the server's URL), pid (its process), token (a dev token), reader_url (the
# demo warehouse's read-only URL) and dir (a scratch directory); then `bench_dashboard <base>`
# makes the cached 10-query dashboard `bench-ten` there.

start_bridge() {
  local name=$1
  admin="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  db="bridge_bench_$name"
  demo="bridge_bench_${name}_demo"
  bin="${BRIDGE_BIN:-target/release/bridge}"
  [ -n "${BRIDGE_BIN:-}" ] || cargo build --release --locked -p bridge >/dev/null
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  dir=$(mktemp -d)
  export DATABASE_URL="${admin%/*}/$db" BRIDGE_DATA_DIR="$dir" BRIDGE_DEV_JWT_SECRET="bench-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
  "$bin" demo-warehouse --database "$demo" > "$dir/demo.txt"
  reader_url=$(grep -o 'postgres://bridge_demo_reader[^"]*' "$dir/demo.txt")
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  RUST_LOG="${RUST_LOG:-warn}" LOG_FORMAT=json "$bin" serve --port "$port" >"$dir/serve.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP DATABASE IF EXISTS $demo WITH (FORCE)" -c "DROP ROLE IF EXISTS bridge_demo_reader"; rm -rf "$dir"' EXIT
  base="http://127.0.0.1:$port"
  until curl -sf "$base/ready" >/dev/null; do sleep 0.1; done
  token=$("$bin" token --email bench@example.com)
}

# Creates a team, a connection to the demo warehouse (validated, scanned) and the 10-query
# dashboard `bench-ten` (bench/dashboard-10.yaml) on the server at $1, then reads its data
# once, so that it is cached.
bench_dashboard() {
  python3 - "$1" "$token" "$reader_url" <<'PY'
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
while scan["status"] == "running":  # a job (202)
    time.sleep(0.05)
    scan = call("GET", f"/v1/connections/{conn}/scans/{scan['scan_id']}")
yaml = open("bench/dashboard-10.yaml").read().replace("00000000-0000-4000-8000-000000000001", conn)
call("POST", f"/v1/teams/{team}/dashboards", yaml, "application/yaml")
call("GET", "/v1/dashboards/bench-ten/data")
PY
}
