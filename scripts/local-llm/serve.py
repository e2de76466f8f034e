"""Serves a GGUF model on loopback with llama.cpp's own OpenAI-compatible HTTP server.

Run by start_local_llm (scripts/lib.sh) with .venv-llm's python, for the real-model test
tier. xllamacpp embeds llama.cpp's C++ server: /health, /v1/models and /v1/chat/completions
(SSE streaming, streamed tool_calls deltas, stream_options.include_usage) are served from
its own threads until this process is told to stop (SIGTERM or SIGINT).

Prints one READY line with the address and the load time; nothing else of its own.
"""

import argparse
import signal
import sys
import threading
import time

import xllamacpp as xlc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="path to the .gguf file")
    ap.add_argument("--alias", default="local", help="the model name clients send and see")
    ap.add_argument("--host", default="127.0.0.1", help="loopback only, unless told otherwise")
    ap.add_argument("--port", type=int, required=True)
    # One thread: with both cores busy (a cargo build, the tests), 2 threads made generation
    # ~3x slower than 1 on a 2-core machine.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-ctx", type=int, default=8192, help="context window, in tokens")
    # One slot: requests are served one at a time, so each gets the whole context window
    # and results at temperature 0 with a seed repeat.
    ap.add_argument("--n-parallel", type=int, default=1)
    # The small Qwen-Coder models write tool calls in a ```json fence rather than in the
    # <tool_call> tags of their stock template; a template that asks for the fence makes
    # llama.cpp's parser turn them into tool_calls (see qwen25-fenced-json-tools.jinja).
    ap.add_argument("--chat-template", help="a Jinja chat template file to use instead of the GGUF's")
    args = ap.parse_args()

    p = xlc.CommonParams()
    p.model.path = args.model
    p.model_alias = {args.alias}
    p.n_ctx = args.n_ctx
    p.n_parallel = args.n_parallel
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.use_jinja = True
    if args.chat_template:
        with open(args.chat_template, encoding="utf-8") as f:
            p.chat_template = f.read()
    p.hostnames = [args.host]
    p.port = args.port
    # Warm-up runs one empty decode before /health says ok, so the first request is not slow.
    p.warmup = True

    began = time.time()
    server = xlc.Server(p)
    print(f"READY listening={server.listening_address} alias={args.alias} "
          f"load_s={time.time() - began:.2f}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1)
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
