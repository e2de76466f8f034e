//! Adapter overhead: CPU time and allocations per 1,000 streamed chunks, parsed (SSE, then
//! the provider's JSON) and re-emitted (each event serialized as the `data:` line a client
//! would get), over a real recorded stream of 2,204 chunks from llama.cpp
//! (`tests/data/openai/llama-long-text.sse`) and an Anthropic stream built from the same
//! text. `cargo bench -p llm --bench stream`.
//!
//! CPU time is the thread's own (`CLOCK_THREAD_CPUTIME_ID`, through `cpu-time`), so other load on the
//! machine does not count; medians of 30 rounds. Allocations are counted by a wrapping
//! global allocator.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::expect_used)]

use std::{alloc::System, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use llm::{Breaker, Event, transport};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn thread_cpu() -> Duration {
    cpu_time::ThreadTime::now().as_duration()
}

fn reemit(event: &Event, out: &mut Vec<u8>) {
    let value = match event {
        Event::TextDelta(t) => serde_json::json!({"type": "token", "text": t}),
        Event::ToolCallStart { index, id, name } => {
            serde_json::json!({"type": "tool_call_start", "index": index, "id": id, "name": name})
        }
        Event::ToolCallDelta { index, fragment } => {
            serde_json::json!({"type": "tool_call_delta", "index": index, "fragment": fragment})
        }
        Event::ToolCall { call, .. } => serde_json::json!({"type": "tool_call", "name": call.name}),
        Event::Usage(u) => serde_json::json!({"type": "usage", "output_tokens": u.output_tokens}),
        Event::Stop(_) => serde_json::json!({"type": "stop"}),
    };
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut *out, &value).unwrap();
    out.extend_from_slice(b"\n\n");
}

/// One pass: returns (chunks read, events, bytes re-emitted).
async fn pass<D: transport::Decoder>(bytes: Bytes, decoder: D, reemitting: bool) -> (usize, usize) {
    let breaker = std::sync::Arc::new(Breaker::new("bench", 5, Duration::from_secs(60)));
    // 1,400-byte pieces: what one TCP segment brings.
    let mut stream = transport::drive(
        transport::replay(bytes, 1400).boxed(),
        decoder,
        Duration::from_secs(5),
        breaker,
        "bench",
    );
    let mut out = Vec::with_capacity(64 * 1024);
    let mut events = 0;
    while let Some(e) = stream.next().await {
        let e = e.expect("event");
        events += 1;
        if reemitting {
            reemit(&e, &mut out);
        }
    }
    (events, out.len())
}

fn anthropic_from(text_chunks: &[String]) -> Bytes {
    let mut s = String::new();
    s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":50,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n");
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for t in text_chunks {
        let delta = serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":t}});
        s.push_str(&format!("event: content_block_delta\ndata: {delta}\n\n"));
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2200}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    Bytes::from(s)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/openai/llama-long-text.sse"
    );
    let openai = Bytes::from(std::fs::read(path).expect("recording"));
    let chunks = openai
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"data: "))
        .count();
    // The same text as Anthropic would stream it.
    let texts: Vec<String> = rt.block_on(async {
        let mut s = transport::drive(
            transport::replay(openai.clone(), 1400).boxed(),
            llm::openai::StreamDecoder::default(),
            Duration::from_secs(5),
            std::sync::Arc::new(Breaker::new("bench", 5, Duration::from_secs(60))),
            "bench",
        );
        let mut v = Vec::new();
        while let Some(Ok(e)) = s.next().await {
            if let Event::TextDelta(t) = e {
                v.push(t);
            }
        }
        v
    });
    let anthropic = anthropic_from(&texts);
    let a_chunks = texts.len() + 6;
    println!(
        "recorded stream: {chunks} OpenAI chunks ({} KB); Anthropic equivalent: {a_chunks} events ({} KB)",
        openai.len() / 1024,
        anthropic.len() / 1024
    );
    type Case = (&'static str, Bytes, usize, bool, bool);
    let cases: Vec<Case> = vec![
        ("openai: parse", openai.clone(), chunks, false, false),
        (
            "openai: parse + re-emit",
            openai.clone(),
            chunks,
            true,
            false,
        ),
        ("anthropic: parse", anthropic.clone(), a_chunks, false, true),
        (
            "anthropic: parse + re-emit",
            anthropic.clone(),
            a_chunks,
            true,
            true,
        ),
    ];
    for (name, bytes, n, reemitting, is_anthropic) in cases {
        let mut cpu = Vec::new();
        let mut allocs = 0usize;
        for round in 0..31 {
            let region = Region::new(GLOBAL);
            let before = thread_cpu();
            let (events, _) = rt.block_on(async {
                if is_anthropic {
                    pass(
                        bytes.clone(),
                        llm::anthropic::StreamDecoder::default(),
                        reemitting,
                    )
                    .await
                } else {
                    pass(
                        bytes.clone(),
                        llm::openai::StreamDecoder::default(),
                        reemitting,
                    )
                    .await
                }
            });
            let spent = thread_cpu() - before;
            let stats = region.change();
            assert!(events > 0);
            if round == 0 {
                continue; // warm-up
            }
            cpu.push(spent.as_secs_f64() * 1e6 * 1000.0 / n as f64);
            allocs = stats.allocations;
        }
        println!(
            "{name:<28} CPU per 1,000 chunks: median {:>7.0} µs   allocations per chunk: {:.1}",
            median(cpu),
            allocs as f64 / n as f64
        );
    }
}
