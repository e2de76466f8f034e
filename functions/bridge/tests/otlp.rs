//! OpenTelemetry over OTLP/HTTP (issue 14): a real receiver on 127.0.0.1 decodes what Bridge
//! exports (protobuf, with the `opentelemetry-proto` types). A data read, a precompute and a
//! chat run (builtin provider) give the expected span trees with their attributes; the
//! caller's `traceparent` is the request span's parent and the problem body's `trace_id` is
//! its trace id; the request metrics are by matched route; and no secret (the bearer token,
//! the warehouse password, a SQL parameter value) is in any exported byte.
//!
//! The tracer and meter providers are process-wide: this file is its own test binary, and
//! nextest runs each test in a process of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use futures::StreamExt;
use opentelemetry_proto::tonic::{
    collector::{metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{AnyValue, any_value::Value as Any},
    trace::v1::Span,
};
use prost::Message;
use serde_json::{Value, json};
use testkit::{TestApp, TestWarehouse, sample_dashboard};

fn routes() -> utoipa_axum::router::OpenApiRouter<services::AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
        .merge(generate::router())
        .merge(data::router())
        .merge(precompute::router())
        .merge(chat::router())
}

/// What the receiver got: every span, every metric name with its data points' attributes,
/// and every request's raw bytes (for the secret scan).
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    metrics: HashMap<String, Vec<HashMap<String, String>>>,
    raw: Vec<Vec<u8>>,
}

type Shared = Arc<Mutex<Received>>;

async fn traces(State(r): State<Shared>, body: Bytes) -> Vec<u8> {
    let req = ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP traces");
    let mut r = r.lock().unwrap();
    r.raw.push(body.to_vec());
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            r.spans.extend(ss.spans);
        }
    }
    Vec::new()
}

async fn metrics(State(r): State<Shared>, body: Bytes) -> Vec<u8> {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let req = ExportMetricsServiceRequest::decode(body.as_ref()).expect("OTLP metrics");
    let mut r = r.lock().unwrap();
    r.raw.push(body.to_vec());
    for rm in req.resource_metrics {
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                let points: Vec<_> = match m.data {
                    Some(Data::Sum(s)) => s.data_points.into_iter().map(|p| p.attributes).collect(),
                    Some(Data::Gauge(g)) => {
                        g.data_points.into_iter().map(|p| p.attributes).collect()
                    }
                    Some(Data::Histogram(h)) => {
                        h.data_points.into_iter().map(|p| p.attributes).collect()
                    }
                    _ => Vec::new(),
                };
                let entry = r.metrics.entry(m.name).or_default();
                for attrs in points {
                    entry.push(
                        attrs
                            .into_iter()
                            .map(|kv| (kv.key, text(kv.value.as_ref())))
                            .collect(),
                    );
                }
            }
        }
    }
    Vec::new()
}

fn text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(kv.value.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn receiver() -> (String, Shared) {
    let shared = Shared::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), shared)
}

/// Reads an SSE body to its end: the event names.
async fn events(response: reqwest::Response) -> Vec<String> {
    let mut names = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(Ok(chunk)) = body.next().await {
        for line in String::from_utf8_lossy(&chunk).lines() {
            if let Some(v) = line.strip_prefix("event:") {
                names.push(v.trim().to_owned());
            }
        }
    }
    names
}

#[tokio::test]
async fn spans_and_metrics_reach_a_real_otlp_receiver_without_secrets() {
    let (endpoint, got) = receiver().await;
    let app = TestApp::spawn_with(
        routes(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("LLM_PROVIDER", "builtin"),
        ],
    )
    .await;
    let wh = TestWarehouse::demo().await;
    let ws = app
        .workspace("postgres", json!({ "url": wh.reader_url }))
        .await;
    // A parameter value no span may carry.
    let secret_param = "Atlantis-7731";
    let yaml = sample_dashboard("revenue-overview", &ws.connection).replace(
        "allowed: [EMEA, AMER, APAC]",
        &format!("allowed: [EMEA, AMER, APAC, {secret_param}]"),
    );
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
        .assert_status(201);

    // A data read, under the caller's trace.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");
    app.get(&format!(
        "/v1/dashboards/revenue-overview/data?region={secret_param}"
    ))
    .bearer(&ws.token)
    .header("traceparent", &traceparent)
    .send()
    .await
    .assert_status(200);
    // Again: every query from the caches now.
    app.get(&format!(
        "/v1/dashboards/revenue-overview/data?region={secret_param}"
    ))
    .bearer(&ws.token)
    .send()
    .await
    .assert_status(200);

    // A problem carries the caller's trace id.
    let problem_trace = "0af7651916cd43dd8448eb211c80319c";
    let r = app
        .get("/v1/dashboards/no-such-dashboard/data")
        .bearer(&ws.token)
        .header(
            "traceparent",
            &format!("00-{problem_trace}-b7ad6b7169203331-01"),
        )
        .send()
        .await;
    let p = r.assert_problem(404, "dashboard_not_found");
    assert_eq!(p["trace_id"], problem_trace, "{p}");

    // A precompute.
    app.post("/v1/dashboards/revenue-overview/precompute?force=true")
        .bearer(&ws.token)
        .send()
        .await
        .assert_status(200);

    // A chat run (the builtin provider calls the catalog tools).
    let base = app.serve().await;
    let http = reqwest::Client::new();
    let session: Value = http
        .post(format!("{base}/v1/chat/sessions"))
        .bearer_auth(&ws.token)
        .json(&json!({"team_id": ws.team, "connection_id": ws.connection}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = session["id"].as_str().unwrap().to_owned();
    let r = http
        .post(format!("{base}/v1/chat/sessions/{session}/stream"))
        .bearer_auth(&ws.token)
        .json(&json!({"message": "What columns does analytics.orders have?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let names = events(r).await;
    assert_eq!(
        names.last().map(String::as_str),
        Some("complete"),
        "{names:?}"
    );

    // Flush until the chat run's span (the last to end) has arrived.
    let mut arrived = false;
    for _ in 0..40 {
        edge::telemetry::flush().await;
        {
            let r = got.lock().unwrap();
            let names: Vec<&str> = r.spans.iter().map(|s| s.name.as_str()).collect();
            if names.contains(&"chat.stream")
                && r.metrics.contains_key("http.server.request.duration")
                && r.metrics.contains_key("cache.lookups")
            {
                arrived = true;
            }
        }
        if arrived {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(arrived, "the spans and metrics reached the receiver");

    let r = got.lock().unwrap();
    let by_id: HashMap<Vec<u8>, &Span> = r.spans.iter().map(|s| (s.span_id.clone(), s)).collect();
    let parent = |s: &Span| by_id.get(&s.parent_span_id).copied();
    let named = |name: &str| -> Vec<&Span> { r.spans.iter().filter(|s| s.name == name).collect() };
    let children = |of: &Span, name: &str| -> Vec<&Span> {
        r.spans
            .iter()
            .filter(|s| s.parent_span_id == of.span_id && s.name == name)
            .collect()
    };

    // The data read: request (child of the caller's span) → data.serve → sql.execute →
    // warehouse.query.
    let request = r
        .spans
        .iter()
        .find(|s| hex(&s.trace_id) == caller_trace && attr(s, "route").is_some())
        .expect("the request span, in the caller's trace");
    assert_eq!(
        hex(&request.parent_span_id),
        caller_span,
        "the caller's span is its parent"
    );
    assert_eq!(
        attr(request, "route").as_deref(),
        Some("/v1/dashboards/{slug}/data"),
        "the matched route, not the raw path"
    );
    assert_eq!(request.name, "GET /v1/dashboards/{slug}/data");
    assert_eq!(
        attr(request, "http.response.status_code").as_deref(),
        Some("200")
    );
    let serve = children(request, "data.serve");
    assert_eq!(serve.len(), 1, "one data.serve under the request");
    let serve = serve[0];
    assert_eq!(
        attr(serve, "dashboard_slug").as_deref(),
        Some("revenue-overview")
    );
    assert_eq!(attr(serve, "cache_hit").as_deref(), Some("false"));
    let executed = children(serve, "sql.execute");
    assert!(!executed.is_empty(), "the first read runs its queries");
    for sql in &executed {
        assert_eq!(
            attr(sql, "dashboard_slug").as_deref(),
            Some("revenue-overview")
        );
        assert_eq!(attr(sql, "query_hash").map(|h| h.len()), Some(16));
        assert!(attr(sql, "duration_ms").is_some());
        assert!(attr(sql, "rows").is_some());
        assert_eq!(attr(sql, "dialect").as_deref(), Some("postgres"));
        let wh_spans = children(sql, "warehouse.query");
        assert_eq!(wh_spans.len(), 1, "one warehouse call per execution");
        assert_eq!(attr(wh_spans[0], "warehouse").as_deref(), Some("postgres"));
    }
    // The second read: every query from the caches.
    assert!(
        named("data.serve")
            .iter()
            .any(|s| attr(s, "cache_hit").as_deref() == Some("true")),
        "a data.serve with cache_hit=true"
    );
    // The problem's request span is in the caller's trace too.
    assert!(r.spans.iter().any(|s| hex(&s.trace_id) == problem_trace
        && attr(s, "http.response.status_code").as_deref() == Some("404")));

    // The precompute: request → precompute.run → sql.execute (forced: each query runs).
    let pre = named("precompute.run");
    assert_eq!(pre.len(), 1);
    let pre = pre[0];
    assert_eq!(
        attr(pre, "dashboard_slug").as_deref(),
        Some("revenue-overview")
    );
    assert_eq!(attr(pre, "force").as_deref(), Some("true"));
    let pre_parent = parent(pre).expect("precompute.run has a parent");
    assert_eq!(pre_parent.name, "POST /v1/dashboards/{slug}/precompute");
    assert!(!children(pre, "sql.execute").is_empty());
    assert!(attr(pre, "queries_executed").is_some_and(|n| n != "0"));

    // The chat run: request → chat.stream → llm.call (model, tokens) and tool.call.
    let stream = named("chat.stream");
    assert_eq!(stream.len(), 1);
    let stream = stream[0];
    assert_eq!(
        attr(stream, "session_id").as_deref(),
        Some(session.as_str())
    );
    assert_eq!(
        parent(stream).map(|p| p.name.as_str()),
        Some("POST /v1/chat/sessions/{id}/stream")
    );
    let calls = children(stream, "llm.call");
    assert!(!calls.is_empty(), "model calls under chat.stream");
    for c in &calls {
        assert_eq!(attr(c, "provider").as_deref(), Some("builtin"));
        assert!(attr(c, "model").is_some_and(|m| !m.is_empty()));
        assert!(attr(c, "tokens").is_some(), "tokens on {c:?}");
    }
    assert!(
        !children(stream, "tool.call").is_empty(),
        "tool calls under chat.stream"
    );

    // Metrics: requests by matched route and status, the caches, the warehouse.
    let requests = &r.metrics["http.server.request.duration"];
    assert!(
        requests
            .iter()
            .any(
                |a| a.get("http.route").map(String::as_str) == Some("/v1/dashboards/{slug}/data")
                    && a.get("http.response.status_code").map(String::as_str) == Some("200")
            )
    );
    let lookups = &r.metrics["cache.lookups"];
    assert!(lookups.iter().any(|a| a["cache.hit"] == "true"));
    assert!(lookups.iter().any(|a| a["cache.hit"] == "false"));
    assert!(r.metrics.contains_key("warehouse.queries"));
    assert!(r.metrics.contains_key("db.pool.connections"));

    // No secret anywhere: not the bearer token, not the warehouse's password or URL, not a
    // SQL parameter's value.
    for needle in [
        ws.token.as_str(),
        wh.password.as_str(),
        wh.reader_url.as_str(),
        secret_param,
    ] {
        for bytes in &r.raw {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "a secret was exported"
            );
        }
    }
}
