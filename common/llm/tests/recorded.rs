//! The adapters against recorded streams in the providers' documented wire formats
//! (`tests/data/`, described in its README), read two ways: replayed straight into the
//! decoder in pieces of every size (so that no event boundary matters), and served over HTTP
//! by a local server that also scripts status codes (429 with `retry-after`, 529, 5xx),
//! stalls and endless streams, and records what the adapter sent.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::post,
};
use futures::StreamExt;
use llm::{
    Breaker, BreakerState, Event, LlmError, Message, Provider, Request, StopReason, SystemBlock,
    ToolSpec, Turn,
    anthropic::{self, Anthropic},
    openai::{self, OpenAi},
    transport,
};
use serde_json::{Value, json};

fn data(path: &str) -> Bytes {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path);
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

fn breaker() -> Arc<Breaker> {
    Arc::new(Breaker::new("test", 5, Duration::from_secs(60)))
}

/// Replays a recording through a decoder, cut into `chunk`-byte pieces.
async fn replay<D: transport::Decoder>(
    bytes: Bytes,
    chunk: usize,
    decoder: D,
) -> (Vec<Event>, Option<LlmError>) {
    let stream = transport::drive(
        transport::replay(bytes, chunk).boxed(),
        decoder,
        Duration::from_secs(5),
        breaker(),
        "test",
    );
    let items: Vec<_> = stream.collect().await;
    let mut events = Vec::new();
    let mut error = None;
    for (i, item) in items.iter().enumerate() {
        match item {
            Ok(e) => events.push(e.clone()),
            Err(e) => {
                assert_eq!(i, items.len() - 1, "an error is the last item");
                error = Some(e.clone());
            }
        }
    }
    (events, error)
}

/// The outcome of a recording, checked identical for every piece size.
async fn outcome<D: transport::Decoder>(
    path: &str,
    decoder: impl Fn() -> D,
) -> Result<Turn, LlmError> {
    let bytes = data(path);
    let mut first: Option<(Vec<Event>, Option<String>)> = None;
    for chunk in [1, 3, 7, 64, 1000, bytes.len().max(1)] {
        let (events, error) = replay(bytes.clone(), chunk, decoder()).await;
        let got = (events, error.as_ref().map(|e| e.to_string()));
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(f, &got, "{path}: pieces of {chunk} bytes read differently"),
        }
    }
    let (events, error) = replay(bytes, 64, decoder()).await;
    if let Some(e) = error {
        return Err(e);
    }
    let stops = events
        .iter()
        .filter(|e| matches!(e, Event::Stop(_)))
        .count();
    assert_eq!(stops, 1, "{path}: exactly one stop event");
    assert!(
        matches!(events.last(), Some(Event::Stop(_))),
        "{path}: stop is last"
    );
    let stream = futures::stream::iter(events.into_iter().map(Ok)).boxed();
    llm::collect(stream, Instant::now(), |_| {}).await
}

async fn anthropic_turn(path: &str) -> Result<Turn, LlmError> {
    outcome(
        &format!("anthropic/{path}"),
        anthropic::StreamDecoder::default,
    )
    .await
}

async fn openai_turn(path: &str) -> Result<Turn, LlmError> {
    outcome(&format!("openai/{path}"), openai::StreamDecoder::default).await
}

#[tokio::test]
async fn anthropic_text() {
    let t = anthropic_turn("text.sse").await.expect("turn");
    assert_eq!(t.text, "Hello! How can I help you today?");
    assert_eq!(t.stop, StopReason::EndTurn);
    assert!(t.tool_calls.is_empty());
    assert_eq!((t.usage.input_tokens, t.usage.output_tokens), (25, 12));
}

#[tokio::test]
async fn anthropic_tool_call() {
    let t = anthropic_turn("tool-call.sse").await.expect("turn");
    assert_eq!(t.text, "I'll check which tables exist in the database.");
    assert_eq!(t.stop, StopReason::ToolUse);
    assert_eq!(t.tool_calls.len(), 1);
    let call = &t.tool_calls[0];
    assert_eq!(call.id, "toolu_01D7FLrfh4GYq7yT1ULmeyyp");
    assert_eq!(call.name, "list_tables");
    assert_eq!(
        call.input,
        Some(json!({"schema": "public", "include_views": false}))
    );
    assert_eq!((t.usage.input_tokens, t.usage.output_tokens), (412, 71));
    assert_eq!(t.runnable_calls().len(), 1);
}

#[tokio::test]
async fn anthropic_parallel_tools_and_empty_input() {
    let t = anthropic_turn("parallel-tools.sse").await.expect("turn");
    let calls: Vec<_> = t
        .tool_calls
        .iter()
        .map(|c| (c.name.as_str(), c.input.clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("describe_table", Some(json!({"table": "orders"}))),
            ("list_tables", Some(json!({}))),
        ],
        "a tool block with no input deltas has input {{}}"
    );
    assert_eq!(t.stop, StopReason::ToolUse);
    assert_eq!((t.usage.input_tokens, t.usage.output_tokens), (530, 94));
}

#[tokio::test]
async fn anthropic_thinking_is_dropped_on_purpose() {
    let t = anthropic_turn("thinking.sse").await.expect("turn");
    assert_eq!(
        t.text,
        "The schema has 3 tables: users, orders and products."
    );
    assert_eq!((t.usage.input_tokens, t.usage.output_tokens), (58, 96));
}

#[tokio::test]
async fn anthropic_cache_usage_overwrites_and_unknown_events_are_ignored() {
    let t = anthropic_turn("cache-usage.sse").await.expect("turn");
    assert_eq!(t.usage.input_tokens, 50);
    assert_eq!(t.usage.cache_write_tokens, 1200);
    assert_eq!(t.usage.cache_read_tokens, 3400);
    assert_eq!(
        t.usage.output_tokens, 87,
        "cumulative output tokens, not a sum"
    );
    assert_eq!(t.stop, StopReason::EndTurn);
}

#[tokio::test]
async fn anthropic_in_band_error_is_an_error() {
    match anthropic_turn("error-midstream.sse").await {
        Err(LlmError::Stream { kind, message, .. }) => {
            assert_eq!(kind, "overloaded_error");
            assert_eq!(message, "Overloaded");
        }
        other => panic!("expected a stream error, got {other:?}"),
    }
}

#[tokio::test]
async fn anthropic_cut_stream_is_an_error() {
    let e = anthropic_turn("cut.sse").await.expect_err("cut");
    assert!(
        matches!(
            e,
            LlmError::Truncated {
                expected: "message_stop",
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn anthropic_tool_call_cut_by_max_tokens_is_never_run() {
    let t = anthropic_turn("max-tokens-tool.sse").await.expect("turn");
    assert_eq!(t.stop, StopReason::MaxTokens);
    assert_eq!(t.tool_calls.len(), 1);
    assert_eq!(t.tool_calls[0].name, "run_query");
    assert_eq!(t.tool_calls[0].input, None, "the cut JSON does not parse");
    assert!(t.runnable_calls().is_empty());
    let told = t.refused_calls();
    assert_eq!(told.len(), 1, "the model is told the call was not run");
}

#[tokio::test]
async fn openai_text() {
    let t = openai_turn("text.sse").await.expect("turn");
    assert_eq!(t.text, "Hello! How can I help you today?");
    assert_eq!(t.stop, StopReason::EndTurn);
}

#[tokio::test]
async fn openai_tool_call_from_fragments() {
    let t = openai_turn("tool-call.sse").await.expect("turn");
    assert_eq!(t.stop, StopReason::ToolUse);
    assert_eq!(t.tool_calls.len(), 1);
    assert_eq!(t.tool_calls[0].id, "call_9pXkZ2mQ7vR4tL1sN8bE3wYh");
    assert_eq!(t.tool_calls[0].name, "list_tables");
    assert_eq!(
        t.tool_calls[0].input,
        Some(json!({"schema": "public", "include_views": false}))
    );
}

#[tokio::test]
async fn openai_parallel_tools_interleaved() {
    let t = openai_turn("parallel-tools.sse").await.expect("turn");
    let calls: Vec<_> = t
        .tool_calls
        .iter()
        .map(|c| (c.name.as_str(), c.input.clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("describe_table", Some(json!({"table": "orders"}))),
            ("list_tables", Some(json!({"schema": "public"}))),
        ]
    );
}

#[tokio::test]
async fn openai_usage_chunk_with_no_choices_and_cached_tokens_counted_once() {
    let t = openai_turn("usage-final-chunk.sse").await.expect("turn");
    assert_eq!(
        t.text,
        "The `orders` table has 7 columns: id, user_id, status, total, currency, created_at and updated_at."
    );
    assert_eq!(t.usage.cache_read_tokens, 1024);
    assert_eq!(
        t.usage.input_tokens,
        1500 - 1024,
        "cached tokens are inside prompt_tokens"
    );
    assert_eq!(t.usage.output_tokens, 40);
    assert_eq!(t.usage.total(), 1540);
}

#[tokio::test]
async fn openai_cut_stream_is_an_error() {
    let e = openai_turn("cut.sse").await.expect_err("cut");
    assert!(matches!(e, LlmError::Truncated { .. }), "{e:?}");
}

#[tokio::test]
async fn openai_tool_call_cut_by_length_is_never_run() {
    let t = openai_turn("length-tool.sse").await.expect("turn");
    assert_eq!(t.stop, StopReason::MaxTokens);
    assert_eq!(t.tool_calls[0].input, None);
    assert!(t.runnable_calls().is_empty());
}

#[tokio::test]
async fn ollama_whole_calls_reusing_index_zero() {
    let t = openai_turn("ollama-whole-calls.sse").await.expect("turn");
    let calls: Vec<_> = t
        .tool_calls
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str(), c.input.clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "call_k3v9x2qa",
                "list_tables",
                Some(json!({"schema": "public"}))
            ),
            (
                "call_m7p1w4zd",
                "describe_table",
                Some(json!({"include_indexes": true, "table": "orders"}))
            ),
        ]
    );
    assert_eq!(t.stop, StopReason::ToolUse);
}

#[tokio::test]
async fn openai_in_band_error_is_an_error() {
    let e = openai_turn("error-midstream.sse").await.expect_err("error");
    assert!(
        matches!(e, LlmError::Stream { ref kind, .. } if kind == "server_error"),
        "{e:?}"
    );
}

#[tokio::test]
async fn sse_edge_cases_bom_bare_cr_comments_and_a_large_event() {
    let t = openai_turn("sse-edge-cases.sse").await.expect("turn");
    assert!(t.text.starts_with("Hello, [00000]"), "{}", &t.text[..40]);
    assert!(t.text.ends_with("[10239] Grüße ✓"));
    assert_eq!(t.text.chars().count(), 71_695);
    assert_eq!(t.stop, StopReason::EndTurn);
}

#[tokio::test]
async fn llama_cpp_recorded_tool_call() {
    let t = openai_turn("llama-tool-call.sse").await.expect("turn");
    assert_eq!(t.stop, StopReason::ToolUse);
    assert_eq!(t.tool_calls.len(), 1);
    assert_eq!(t.tool_calls[0].name, "list_tables");
    let input = t.tool_calls[0].input.clone().expect("parsed input");
    assert!(
        input.get("dataset").is_some_and(Value::is_string),
        "{input}"
    );
    assert!(t.usage.output_tokens > 0);
}

#[tokio::test]
async fn llama_cpp_recorded_long_text() {
    let t = openai_turn("llama-long-text.sse").await.expect("turn");
    assert!(t.text.len() > 4000, "{} bytes", t.text.len());
    assert!(t.usage.output_tokens > 1000);
}

// --- over HTTP -------------------------------------------------------------------------

#[derive(Clone)]
enum Scripted {
    /// A status, headers and a whole body.
    Whole(u16, Vec<(&'static str, String)>, Bytes),
    /// 200 with these bytes, then silence for ever (a stalled stream).
    Stall(Bytes),
    /// 200 streaming a text delta every 20 ms for ever; sets the flag when the body is
    /// dropped (the client went away).
    Endless(Arc<AtomicBool>),
}

#[derive(Clone, Default)]
struct Stub {
    script: Arc<Mutex<VecDeque<Scripted>>>,
    seen: Arc<Mutex<Vec<(HeaderMap, Value, Instant)>>>,
}

impl Stub {
    fn push(&self, s: Scripted) {
        self.script.lock().expect("lock").push_back(s);
    }
    fn sse(&self, path: &str) {
        self.push(Scripted::Whole(
            200,
            vec![("content-type", "text/event-stream".into())],
            data(path),
        ));
    }
    fn status(&self, status: u16, retry_after: Option<&str>, body: Bytes) {
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if let Some(r) = retry_after {
            headers.push(("retry-after", r.to_owned()));
        }
        self.push(Scripted::Whole(status, headers, body));
    }
    fn requests(&self) -> Vec<(HeaderMap, Value, Instant)> {
        self.seen.lock().expect("lock").clone()
    }
}

struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn answer(State(stub): State<Stub>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    stub.seen
        .lock()
        .expect("lock")
        .push((headers, body, Instant::now()));
    let next = stub.script.lock().expect("lock").pop_front();
    let mut response = Response::builder();
    match next {
        Some(Scripted::Whole(status, headers, bytes)) => {
            response = response.status(status);
            for (k, v) in headers {
                response = response.header(k, v);
            }
            response.body(Body::from(bytes))
        }
        Some(Scripted::Stall(bytes)) => {
            let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) })
                .chain(futures::stream::pending());
            response
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
        }
        Some(Scripted::Endless(flag)) => {
            let guard = DropFlag(flag);
            let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
            let head = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(start)) });
            let ticks = futures::stream::unfold(guard, |guard| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let chunk = Bytes::from("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"la \"}}\n\n");
                Some((Ok(chunk), guard))
            });
            response
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(head.chain(ticks)))
        }
        None => response
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("no scripted answer left")),
    }
    .unwrap_or_else(|_| Response::new(Body::empty()))
}

async fn serve(stub: Stub) -> String {
    let app = Router::new()
        .route("/v1/messages", post(answer))
        .route("/v1/chat/completions", post(answer))
        .with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn settings(base: &str) -> settings::LlmSettings {
    let mut s = settings::LlmSettings::openai_compatible(&format!("{base}/v1"), "gpt-4o-mini");
    s.provider = settings::LlmProviderKind::Anthropic;
    s.anthropic = settings::LlmEndpoint {
        base_url: base.to_owned(),
        // Generated per run: nothing secret is committed.
        api_key: Some(format!("test-key-{}", std::process::id()).into()),
        model: "claude-sonnet-4-5".into(),
    };
    s.connect_timeout = Duration::from_secs(2);
    s.first_byte_timeout = Duration::from_secs(5);
    s.idle_timeout = Duration::from_millis(300);
    s.retry_max_delay = Duration::from_secs(3);
    s.breaker_cooldown = Duration::from_millis(200);
    s
}

fn request() -> Request {
    let mut r = Request::new(vec![Message::user("Which tables are there?")], 256);
    r.system = vec![SystemBlock {
        text: "You are Bridge.".into(),
        cache: true,
    }];
    r.tools = vec![ToolSpec {
        name: "list_tables".into(),
        description: "Lists tables".into(),
        input_schema: json!({"type": "object", "properties": {"schema": {"type": "string"}}}),
    }];
    r
}

async fn run(p: &dyn Provider, r: &Request) -> Result<Turn, LlmError> {
    let started = Instant::now();
    let stream = p.stream(r).await?;
    llm::collect(stream, started, |_| {}).await
}

#[tokio::test]
async fn anthropic_over_http_sends_the_documented_request() {
    let stub = Stub::default();
    let base = serve(stub.clone()).await;
    stub.sse("anthropic/tool-call.sse");
    let s = settings(&base);
    let p = Anthropic::new(&s).expect("provider");
    let t = run(&p, &request()).await.expect("turn");
    assert_eq!(t.tool_calls[0].name, "list_tables");
    let seen = stub.requests();
    let (headers, body, _) = &seen[0];
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert!(
        headers["x-api-key"]
            .to_str()
            .expect("ascii")
            .starts_with("test-key-")
    );
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["tools"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(body["system"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(body["tool_choice"]["type"], "auto");
    assert_eq!(
        p.breaker().expect("breaker").snapshot().state,
        BreakerState::Closed
    );
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_the_wait() {
    let stub = Stub::default();
    let base = serve(stub.clone()).await;
    stub.status(429, Some("1"), data("anthropic/429.json"));
    stub.status(529, None, data("anthropic/529.json"));
    stub.sse("anthropic/text.sse");
    let p = Anthropic::new(&settings(&base)).expect("provider");
    let t = run(&p, &request()).await.expect("retried to success");
    assert_eq!(t.text, "Hello! How can I help you today?");
    let seen = stub.requests();
    assert_eq!(seen.len(), 3, "429, 529, then 200");
    let waited = seen[1].2 - seen[0].2;
    assert!(
        waited >= Duration::from_millis(950),
        "retry-after honoured: {waited:?}"
    );
}

#[tokio::test]
async fn a_retry_after_longer_than_allowed_fails_at_once() {
    let stub = Stub::default();
    let base = serve(stub.clone()).await;
    stub.status(429, Some("3600"), data("openai/429.json"));
    let p = OpenAi::new(&settings(&base)).expect("provider");
    let e = run(&p, &request()).await.expect_err("no hour-long wait");
    assert!(
        matches!(e, LlmError::Http { status: 429, retry_after: Some(d), .. } if d == Duration::from_secs(3600)),
        "{e:?}"
    );
    assert_eq!(e.code(), "llm_rate_limited");
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn a_4xx_is_not_retried_nor_counted_against_the_provider() {
    let stub = Stub::default();
    let base = serve(stub.clone()).await;
    stub.status(
        400,
        None,
        Bytes::from(r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}"#),
    );
    let p = Anthropic::new(&settings(&base)).expect("provider");
    let e = run(&p, &request()).await.expect_err("refused");
    assert!(e.to_string().contains("max_tokens: too large"), "{e}");
    assert_eq!(stub.requests().len(), 1);
    assert_eq!(p.breaker().expect("b").snapshot().consecutive_failures, 0);
}

#[tokio::test]
async fn a_stalled_stream_is_an_idle_timeout_not_a_hang() {
    let stub = Stub::default();
    let base = serve(stub.clone()).await;
    let text = data("anthropic/text.sse");
    stub.push(Scripted::Stall(text.slice(..text.len() / 2)));
    let p = Anthropic::new(&settings(&base)).expect("provider");
    let started = Instant::now();
    let e = run(&p, &request()).await.expect_err("stalled");
    assert!(matches!(e, LlmError::Idle { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(p.breaker().expect("b").snapshot().consecutive_failures, 1);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let stub = Stub::default();
    let base = serve(stub.clone()).await;
    let dropped = Arc::new(AtomicBool::new(false));
    stub.push(Scripted::Endless(dropped.clone()));
    let p = Anthropic::new(&settings(&base)).expect("provider");
    let mut stream = p.stream(&request()).await.expect("stream");
    let mut deltas = 0;
    while let Some(e) = stream.next().await {
        if matches!(e.expect("event"), Event::TextDelta(_)) {
            deltas += 1;
            if deltas == 3 {
                break;
            }
        }
    }
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !dropped.load(Ordering::SeqCst) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        dropped.load(Ordering::SeqCst),
        "the server saw the client go away"
    );
    let b = p.breaker().expect("b").snapshot();
    assert_eq!(
        (b.state, b.consecutive_failures),
        (BreakerState::Closed, 0),
        "a cancel is not a failure"
    );
}

#[tokio::test]
async fn the_circuit_opens_after_five_failures_and_recovers() {
    let stub = Stub::default();
    let base = serve(stub.clone()).await;
    let mut s = settings(&base);
    s.max_retries = 0;
    let p = OpenAi::new(&s).expect("provider");
    for _ in 0..5 {
        stub.status(503, None, Bytes::from(r#"{"error":{"message":"down"}}"#));
        let e = run(&p, &request()).await.expect_err("down");
        assert!(matches!(e, LlmError::Http { status: 503, .. }));
    }
    assert_eq!(p.breaker().expect("b").snapshot().state, BreakerState::Open);
    let e = run(&p, &request()).await.expect_err("open");
    assert!(matches!(e, LlmError::CircuitOpen { .. }), "{e:?}");
    assert_eq!(stub.requests().len(), 5, "an open circuit sends nothing");
    tokio::time::sleep(Duration::from_millis(250)).await;
    stub.sse("openai/text.sse");
    run(&p, &request())
        .await
        .expect("the half-open trial succeeds");
    let b = p.breaker().expect("b").snapshot();
    assert_eq!(b.state, BreakerState::Closed);
    assert_eq!(b.opened_total, 1);
}

#[tokio::test]
async fn openai_over_http_sends_the_documented_request() {
    let stub = Stub::default();
    let base = serve(stub.clone()).await;
    stub.sse("openai/usage-final-chunk.sse");
    let p = OpenAi::new(&settings(&base)).expect("provider");
    let mut r = request();
    r.seed = Some(7);
    r.temperature = Some(0.0);
    run(&p, &r).await.expect("turn");
    let (headers, body, _) = &stub.requests()[0];
    assert!(
        headers.get("authorization").is_none(),
        "no key configured, none sent"
    );
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "list_tables");
    assert_eq!(body["seed"], 7);
}
