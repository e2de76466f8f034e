//! The Lambda path. On AWS the chat binary runs `lambda_http::run_with_streaming_response`
//! behind a Function URL in `RESPONSE_STREAM` mode (infra/aws), for all its routes, so every
//! event here is a Function URL event (`routeKey` `$default`, no `pathParameters`) and goes
//! through the streaming conversion, not the buffered `Adapter` the other functions' tests use:
//!
//! - in process, through `lambda_http::StreamAdapter`, the public form of the service
//!   `run_with_streaming_response` wraps the router in (same event-to-request conversion, same
//!   metadata prelude and body stream); every file in `events/chat/`, with its status checked;
//! - through cargo-lambda's runtime emulator to the real `chat` binary, which speaks the
//!   streaming runtime protocol (prelude, then body chunks) exactly as on Lambda: the same
//!   files, posted to the emulator's invoke endpoint (`cargo lambda invoke` itself prints only
//!   a streamed body and fails on an error status), and a real SSE request through the
//!   emulator's Function URL;
//! - with a model that holds its answer half-way, that events leave the function before the
//!   run ends, on both paths.
//!
//! Not covered: Lambda's own Function URL front end (its streamed-response size and bandwidth
//! limits, what it does when a client disconnects) and the 900 s timeout; nor API Gateway,
//! which chat is not behind.
//!
//! Placeholders: `{{token}}` (the team admin's dev token), `{{team_id}}`, `{{connection_id}}`
//! (created here), `{{session_id}}` (from `create-session`'s response), and `{{run_id}}`,
//! `{{replay_token}}`, `{{last_event_id}}` (from `stream`'s events).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use axum::{Router, body::Body, response::Response, routing::post};
use futures::StreamExt;
use serde_json::{Value, json};
use testkit::{
    TestApp, TestWarehouse, Workspace, assert_lambda_response, cargo_lambda, event_files,
    lambda_event,
};
use tokio::sync::Semaphore;

/// Each event file and the status its response must carry, in the order they run.
const EXPECTED: &[(&str, u16)] = &[
    ("create-session", 201),
    ("create-session-invalid", 422),
    ("list-sessions", 200),
    ("current-session", 200),
    ("get-session", 200),
    ("get-session-unauthenticated", 401),
    ("stream", 200),
    ("stream-unauthenticated", 401),
    ("replay-events", 200),
    ("replay-events-delivered", 204),
    ("cancel-run", 202),
    ("list-messages", 200),
    ("export-session", 200),
    ("model-calls", 200),
    ("cost-summary", 200),
    ("tool-cache-stats", 200),
    ("archive-session", 200),
    ("delete-session", 204),
];

fn routes() -> utoipa_axum::router::OpenApiRouter<services::AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
        .merge(chat::router())
}

struct Setup {
    app: TestApp,
    ws: Workspace,
    _wh: TestWarehouse,
}

async fn setup(vars: &[(&str, &str)]) -> Setup {
    let app = TestApp::spawn_with(routes(), vars).await;
    let wh = TestWarehouse::demo().await;
    let ws = app
        .workspace("postgres", json!({ "url": wh.reader_url }))
        .await;
    Setup { app, ws, _wh: wh }
}

/// A response as the tests read it: `statusCode`, `headers` and `body` (what
/// `assert_lambda_response` checks), and how many pieces the body came in.
struct Answer {
    response: Value,
    chunks: usize,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(self.response["body"].as_str().unwrap()).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.response["headers"][name].as_str().unwrap_or_default()
    }
}

/// `raw` through `lambda_http::StreamAdapter`: the metadata prelude (serialised as the
/// runtime sends it) and the body stream, read to its end.
async fn through_stream_adapter(router: &Router, raw: &str) -> Answer {
    use lambda_http::{Context, LambdaEvent, Service, StreamAdapter, request::LambdaRequest};
    let request: LambdaRequest = serde_json::from_str(raw).unwrap();
    let mut adapter = StreamAdapter::from(router.clone());
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    let mut out = serde_json::to_value(&response.metadata_prelude).unwrap();
    let chunks: Vec<_> = response.stream.map(|c| c.unwrap()).collect().await;
    out["body"] = Value::String(String::from_utf8(chunks.concat()).unwrap());
    Answer {
        response: out,
        chunks: chunks.len(),
    }
}

/// A streamed HTTP response (from cargo-lambda's emulator) read to its end.
async fn read_http(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    let headers: serde_json::Map<String, Value> = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap())))
        .collect();
    let mut body = Vec::new();
    let mut chunks = 0;
    let mut stream = r.bytes_stream();
    while let Some(c) = stream.next().await {
        body.extend_from_slice(&c.unwrap());
        chunks += 1;
    }
    Answer {
        response: json!({
            "statusCode": status,
            "headers": headers,
            "body": String::from_utf8(body).unwrap(),
        }),
        chunks,
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<i32>,
    event: String,
    data: Value,
}

/// The complete events in `text` (heartbeats and a trailing partial event left out).
fn parse_sse(text: &str) -> Vec<Sse> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(end) = rest.find("\n\n") {
        let (block, after) = rest.split_at(end + 2);
        rest = after;
        let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if !data.is_empty() {
            out.push(Sse {
                id,
                event,
                data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
            });
        }
    }
    out
}

/// One run's events, whole: numbered from 1, `run` first, one terminal event, last.
fn check_run(events: &[Sse]) {
    assert_eq!(events[0].event, "run", "{events:?}");
    let ids: Vec<i32> = events.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids, (1..=events.len() as i32).collect::<Vec<_>>());
    assert_eq!(events.last().unwrap().event, "complete", "{events:?}");
}

/// Every file of `events/chat/` through `invoke`, in order, each placeholder filled from
/// the workspace or from an earlier response.
async fn run_event_files(s: &Setup, mut invoke: impl AsyncFnMut(String) -> Answer) {
    let (_, on_disk) = event_files("chat");
    let expected: BTreeSet<String> = EXPECTED.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(
        on_disk, expected,
        "every event file needs an expectation here, and vice versa"
    );
    let mut values: BTreeMap<&str, String> = BTreeMap::from([
        ("token", s.ws.token.clone()),
        ("team_id", s.ws.team.clone()),
        ("connection_id", s.ws.connection.clone()),
    ]);
    let mut run: Vec<Sse> = Vec::new();
    for (name, status) in EXPECTED {
        let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let event = lambda_event("chat", name, &pairs);
        let raw = event.to_string();
        assert!(!raw.contains("{{"), "{name}: a placeholder is left: {raw}");
        let answer = invoke(raw).await;
        assert_lambda_response(name, &event, &answer.response, *status);
        match *name {
            "create-session" => {
                let body = answer.json();
                assert_eq!(body["provider"], "builtin");
                assert_eq!(body["connection_id"], s.ws.connection.as_str());
                values.insert("session_id", body["id"].as_str().unwrap().to_owned());
            }
            "list-sessions" => {
                let ids: Vec<Value> = answer.json()["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["id"].clone())
                    .collect();
                assert_eq!(ids, vec![json!(values["session_id"])]);
            }
            "current-session" | "get-session" => {
                assert_eq!(answer.json()["id"], values["session_id"].as_str());
            }
            "stream" => {
                assert_eq!(answer.header("content-type"), "text/event-stream");
                assert_eq!(answer.header("cache-control"), "no-cache");
                run = parse_sse(answer.response["body"].as_str().unwrap());
                check_run(&run);
                assert_eq!(answer.header("x-run-id"), run[0].data["run_id"]);
                assert!(
                    run.iter()
                        .any(|e| e.event == "tool_call" && e.data["tool"] == "list_datasets"),
                    "{run:?}"
                );
                let text: String = run
                    .iter()
                    .filter(|e| e.event == "token")
                    .map(|e| e.data["text"].as_str().unwrap().to_owned())
                    .collect();
                assert!(text.contains("analytics"), "{text}");
                let first = &run[0].data;
                values.insert("run_id", first["run_id"].as_str().unwrap().to_owned());
                values.insert(
                    "replay_token",
                    first["replay_token"].as_str().unwrap().to_owned(),
                );
                values.insert("last_event_id", run.len().to_string());
            }
            "replay-events" => {
                assert_eq!(answer.header("content-type"), "text/event-stream");
                let replayed = parse_sse(answer.response["body"].as_str().unwrap());
                assert_eq!(replayed, run[1..].to_vec(), "every event after the first");
            }
            "list-messages" => {
                let page = answer.json();
                let messages = page["messages"].as_array().unwrap();
                assert!(!messages.is_empty(), "{page}");
                assert!(messages.iter().all(|m| m["role"] == "assistant"), "{page}");
            }
            "export-session" => {
                assert_eq!(answer.header("content-type"), "application/x-ndjson");
                let body = answer.response["body"].as_str().unwrap();
                let first: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
                assert_eq!(first["type"], "session", "{body}");
                assert!(body.lines().any(|l| l.contains("\"type\":\"model_call\"")));
            }
            "model-calls" => {
                let page = answer.json();
                assert!(page["total_count"].as_i64().unwrap() >= 1, "{page}");
                assert_eq!(
                    page["calls"][0]["session_id"],
                    values["session_id"].as_str()
                );
            }
            "cost-summary" => assert_eq!(answer.json()["group_by"], "user"),
            "tool-cache-stats" => assert!(answer.json()["tools"].is_array()),
            "archive-session" => assert_eq!(answer.json()["status"], "archived"),
            _ => {}
        }
    }
    let id = &values["session_id"];
    s.app
        .get(&format!("/v1/chat/sessions/{id}"))
        .bearer(&s.ws.token)
        .send()
        .await
        .assert_status(404);
}

#[tokio::test]
async fn every_event_file_runs_through_the_streaming_adapter() {
    let s = setup(&[]).await;
    let router = s.app.router.clone();
    run_event_files(&s, async |raw: String| {
        let answer = through_stream_adapter(&router, &raw).await;
        if raw.contains("evt-stream\"") {
            assert!(
                answer.chunks > 1,
                "the events are separate pieces of the body, not one buffered body"
            );
        }
        answer
    })
    .await;
}

/// The same events through cargo-lambda's runtime emulator, served by the real `chat`
/// binary polling the runtime API in response streaming mode, as it does on Lambda.
#[tokio::test]
async fn every_event_file_runs_through_cargo_lambda_and_the_chat_binary() {
    let s = setup(&[]).await;
    let Some(mut rig) = cargo_lambda::start(env!("CARGO_BIN_EXE_chat"), &s.app.env).await else {
        return;
    };
    run_event_files(&s, async |raw: String| {
        read_http(rig.invoke_streaming(&raw).await).await
    })
    .await;
    let log = rig.function_log();
    assert!(
        log.contains("serving through the Lambda runtime") && log.contains("\"streaming\":true"),
        "the binary took the Lambda streaming path: {log}"
    );
    assert!(!log.contains(&s.ws.token), "tokens are never logged");
}

// --- streaming before the end -------------------------------------------------------------

/// An OpenAI-compatible model that sends `Hello `, then waits for a permit of `gate`
/// before it sends `world` and stops.
async fn held_model(gate: Arc<Semaphore>) -> String {
    let answer = move || {
        let gate = gate.clone();
        async move {
            let chunk = |delta: Value, finish: Value| {
                Ok::<_, std::io::Error>(format!(
                    "data: {}\n\n",
                    json!({"id": "c", "object": "chat.completion.chunk", "model": "held",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                ))
            };
            let head = futures::stream::iter([chunk(json!({"content": "Hello "}), Value::Null)]);
            let tail = futures::stream::once(async move {
                gate.acquire().await.unwrap().forget();
                futures::stream::iter([
                    chunk(json!({"content": "world"}), Value::Null),
                    chunk(json!({}), json!("stop")),
                    Ok("data: [DONE]\n\n".to_owned()),
                ])
            })
            .flatten();
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(head.chain(tail)))
                .unwrap()
        }
    };
    let app = Router::new().route("/v1/chat/completions", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

/// Reads `body` until its text holds an event named `token`: the events so far.
async fn until_first_token<S, B, E>(body: &mut S, text: &mut String) -> Vec<Sse>
where
    S: futures::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Debug,
{
    loop {
        let events = parse_sse(text);
        if events.iter().any(|e| e.event == "token") {
            return events;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("the first token within 20 s, while the model holds its answer")
            .expect("the body went on")
            .unwrap();
        text.push_str(std::str::from_utf8(chunk.as_ref()).unwrap());
    }
}

async fn new_session(s: &Setup) -> String {
    let r = s
        .app
        .post("/v1/chat/sessions")
        .bearer(&s.ws.token)
        .json(&json!({"team_id": s.ws.team, "connection_id": s.ws.connection}))
        .send()
        .await;
    r.assert_status(201);
    r.json()["id"].as_str().unwrap().to_owned()
}

fn check_held_run(events: &[Sse]) {
    check_run(events);
    let text: String = events
        .iter()
        .filter(|e| e.event == "token")
        .map(|e| e.data["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "Hello world");
}

#[tokio::test]
async fn a_run_streams_through_the_lambda_paths_before_it_ends() {
    let gate = Arc::new(Semaphore::new(0));
    let upstream = held_model(gate.clone()).await;
    let s = setup(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", &upstream),
        ("OPENAI_MODEL", "held"),
    ])
    .await;

    // In process, through the streaming adapter.
    let session = new_session(&s).await;
    let event = lambda_event(
        "chat",
        "stream",
        &[("token", &s.ws.token), ("session_id", &session)],
    );
    let request: lambda_http::request::LambdaRequest = serde_json::from_value(event).unwrap();
    let mut adapter = lambda_http::StreamAdapter::from(s.app.router.clone());
    let response = lambda_http::Service::call(
        &mut adapter,
        lambda_http::LambdaEvent::new(request, lambda_http::Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(response.metadata_prelude.status_code, 200);
    let mut body = response.stream;
    let mut text = String::new();
    let early = until_first_token(&mut body, &mut text).await;
    assert_eq!(early[0].event, "run");
    assert!(early.iter().all(|e| e.event != "complete"));
    gate.add_permits(1);
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    check_held_run(&parse_sse(&text));

    // The real binary, through cargo-lambda's Function URL: a plain HTTP request.
    let Some(rig) = cargo_lambda::start(env!("CARGO_BIN_EXE_chat"), &s.app.env).await else {
        return;
    };
    let session = new_session(&s).await;
    let r = reqwest::Client::new()
        .post(format!(
            "{}/v1/chat/sessions/{session}/stream",
            rig.function_url()
        ))
        .bearer_auth(&s.ws.token)
        .header("accept", "text/event-stream")
        .json(&json!({"message": "Say hello"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.function_log()));
    assert_eq!(r.status(), 200, "{}", rig.function_log());
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let early = until_first_token(&mut body, &mut text).await;
    assert_eq!(early[0].event, "run");
    assert!(early.iter().all(|e| e.event != "complete"));
    gate.add_permits(1);
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    check_held_run(&parse_sse(&text));
}
