#!/usr/bin/env bash
# The LLM adapters' figures (issue 11):
#  1. CPU time and allocations per 1,000 streamed chunks parsed and re-emitted, over a real
#     recorded llama.cpp stream of 2,204 chunks (cargo bench -p llm --bench stream);
#  2. time to first token and tokens/s against the real local model (Qwen2.5-Coder-0.5B on
#     llama.cpp, installed and started as scripts/test does), through the adapter vs. curl -N
#     and a raw reqwest read of the same request, interleaved (cargo bench -p llm --bench
#     local_model). BENCH_ROUNDS (default 7) rounds; medians.
#
#   bench/llm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
trap stop_emulators EXIT
cargo bench --locked -p llm --bench stream
ensure_local_llm
start_local_llm
cargo bench --locked -p llm --bench local_model
