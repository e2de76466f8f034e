//! Time to first token and tokens per second against the real local model, through the
//! OpenAI-compatible adapter and directly — the same request, interleaved round by round:
//! `curl -N` (a process spawn included), a raw `reqwest` read of the bytes, and the adapter
//! (SSE parsing, JSON decoding, events). The adapter's overhead is its figure minus the raw
//! read's.
//!
//!   bench/llm.sh            (installs and starts the model, then runs this)
//!
//! Needs `BRIDGE_TEST_LLM_URL` (the base ending in /v1) and `BRIDGE_TEST_LLM_MODEL`.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;
use llm::{Event, Message, Provider, Request};

#[derive(Default)]
struct Figures {
    first_token: Vec<f64>,
    total: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn is_token_line(line: &str) -> bool {
    line.starts_with("data: ")
        && line.contains("\"content\":\"")
        && !line.contains("\"content\":\"\"")
}

fn main() {
    let Ok(url) = std::env::var("BRIDGE_TEST_LLM_URL") else {
        println!("BRIDGE_TEST_LLM_URL is not set: run bench/llm.sh, which starts the local model");
        return;
    };
    let model =
        std::env::var("BRIDGE_TEST_LLM_MODEL").unwrap_or_else(|_| "qwen2.5-coder-0.5b".into());
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let max_tokens = 64;
    let mut request = Request::new(
        vec![Message::user(
            "In one sentence, what is a SQL GROUP BY clause for?",
        )],
        max_tokens,
    );
    request.temperature = Some(0.0);
    request.seed = Some(7);
    request.model = model.clone();
    let body = llm::openai::body(&request, &model);
    let body_text = body.to_string();
    let endpoint = format!("{}/chat/completions", url.trim_end_matches('/'));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut settings = settings::LlmSettings::openai_compatible(&url, &model);
    settings.first_byte_timeout = Duration::from_secs(120);
    settings.idle_timeout = Duration::from_secs(60);
    settings.max_retries = 0;
    settings.max_tokens = max_tokens;
    let provider = llm::openai::OpenAi::new(&settings).unwrap();
    let client = reqwest::Client::new();
    let (mut curl, mut raw, mut adapter) =
        (Figures::default(), Figures::default(), Figures::default());
    let mut tokens = 0u64;
    for round in 0..=rounds {
        // curl -N
        let t = Instant::now();
        let mut child = Command::new("curl")
            .args([
                "-sN",
                &endpoint,
                "-H",
                "content-type: application/json",
                "--data-binary",
                &body_text,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl");
        let mut first = None;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if first.is_none() && is_token_line(&line) {
                first = Some(t.elapsed());
            }
        }
        child.wait().unwrap();
        let curl_total = t.elapsed();
        // raw reqwest bytes
        let (raw_first, raw_total) = rt.block_on(async {
            let t = Instant::now();
            let response = client.post(&endpoint).json(&body).send().await.unwrap();
            let mut bytes = response.bytes_stream();
            let mut first = None;
            let mut seen = Vec::new();
            while let Some(chunk) = bytes.next().await {
                let chunk = chunk.unwrap();
                if first.is_none() {
                    seen.extend_from_slice(&chunk);
                    if String::from_utf8_lossy(&seen).lines().any(is_token_line) {
                        first = Some(t.elapsed());
                    }
                }
            }
            (first, t.elapsed())
        });
        // the adapter
        let (adapter_first, adapter_total, usage) = rt.block_on(async {
            let t = Instant::now();
            let mut stream = provider.stream(&request).await.unwrap();
            let mut first = None;
            let mut usage = None;
            while let Some(e) = stream.next().await {
                match e.unwrap() {
                    Event::TextDelta(_) if first.is_none() => first = Some(t.elapsed()),
                    Event::Usage(u) => usage = Some(u),
                    _ => {}
                }
            }
            (first, t.elapsed(), usage)
        });
        if round == 0 {
            continue; // warms the prompt cache for all three
        }
        tokens = usage.map(|u| u.output_tokens).unwrap_or(0);
        for (f, first, total) in [
            (&mut curl, first, curl_total),
            (&mut raw, raw_first, raw_total),
            (&mut adapter, adapter_first, adapter_total),
        ] {
            f.first_token
                .push(first.unwrap_or(total).as_secs_f64() * 1e3);
            f.total.push(total.as_secs_f64() * 1e3);
        }
    }
    println!("{rounds} interleaved rounds, {tokens} output tokens each, model {model}");
    for (name, f) in [
        ("curl -N", &curl),
        ("reqwest, raw bytes", &raw),
        ("llm adapter", &adapter),
    ] {
        let first = median(&f.first_token);
        let total = median(&f.total);
        let rate = tokens as f64 / ((total - first).max(1e-3) / 1e3);
        println!(
            "{name:<20} first token: median {first:>7.1} ms   total {total:>7.1} ms   {rate:>5.1} tokens/s after the first"
        );
    }
    let diffs: Vec<f64> = adapter
        .first_token
        .iter()
        .zip(&raw.first_token)
        .map(|(a, r)| a - r)
        .collect();
    println!(
        "adapter − raw, first token, per round (ms): median {:.2}",
        median(&diffs)
    );
}
