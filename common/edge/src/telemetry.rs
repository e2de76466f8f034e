//! Logging and request correlation.
//!
//! Logs are JSON lines (or human-readable with `LOG_FORMAT=pretty`) written by `tracing`.
//! Every request runs inside a `request` span carrying its correlation id, so every line it
//! logs can be found again; the id comes from `x-correlation-id` when the caller sends a
//! sane one, else from the Lambda request context, else is generated, and it is echoed in
//! the response header and in every problem body's `trace_id`. Headers, tokens and bodies
//! are never recorded.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use tracing::Instrument;
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use settings::LogFormat;

pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

tokio::task_local! {
    static CORRELATION_ID: Arc<str>;
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`). Safe to call twice:
/// the second call is a no-op, which keeps tests that build several apps simple.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_target(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
    let _ = result;
}

/// The correlation id of the request being handled, if any.
pub fn current_correlation_id() -> Option<String> {
    CORRELATION_ID.try_with(|id| id.to_string()).ok()
}

/// Runs `fut` with `id` as the current correlation id (used by scheduled jobs and tests).
pub async fn with_correlation_id<F: Future>(id: &str, fut: F) -> F::Output {
    CORRELATION_ID.scope(Arc::from(id), fut).await
}

/// A caller-supplied id is kept only if it is short and plain, so it cannot forge log lines.
fn acceptable(value: &HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    let ok = (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then_some(s)
}

fn lambda_request_id(req: &Request) -> Option<String> {
    use lambda_http::request::RequestContext;
    match req.extensions().get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.request_id.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Middleware: correlation id in and out, one span per request, one log line per response.
pub async fn correlate(req: Request, next: Next) -> Response {
    let id: Arc<str> = match req.headers().get(&CORRELATION_HEADER).and_then(acceptable) {
        Some(s) => Arc::from(s),
        None => {
            Arc::from(lambda_request_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().to_string()))
        }
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "request",
        correlation_id = %id,
        method = %req.method(),
        route = %route,
    );
    let started = Instant::now();
    let header = HeaderValue::from_str(&id).ok();
    let mut response = CORRELATION_ID
        .scope(id, next.run(req))
        .instrument(span.clone())
        .await;
    let status = response.status().as_u16();
    // Milliseconds to the microsecond: more digits would only be noise.
    let latency_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
    span.in_scope(|| tracing::info!(status, latency_ms, "request handled"));
    if let Some(value) = header {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_accepted() {
        for ok in ["abc", "7f1c-22", "req_1.2:3", &"a".repeat(128)] {
            assert!(
                acceptable(&HeaderValue::from_str(ok).expect("header")).is_some(),
                "{ok}"
            );
        }
        for bad in ["", "a b", "x\"y", "{}", &"a".repeat(129), "é"] {
            let Ok(v) = HeaderValue::from_str(bad) else {
                continue;
            };
            assert!(acceptable(&v).is_none(), "{bad}");
        }
    }
}
