# What the bench scripts share: a throwaway Bridge database and demo warehouse on the
# Postgres at $BENCH_DATABASE_URL, and `bridge serve` on a free port, all removed on exit.
#
#   . bench/lib.sh; start_bridge <name>
#
# sets bin, base (the server's URL), pid (its process), token (a dev token), reader_url (the
# demo warehouse's read-only URL) and dir (a scratch directory).

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
