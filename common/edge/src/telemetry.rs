//! Logging, request correlation, and OpenTelemetry.
//!
//! Logs are JSON lines (or human-readable with `LOG_FORMAT=pretty`) written by `tracing`.
//! Every request runs inside a `request` span carrying its correlation id, so every line it
//! logs can be found again; the id comes from `x-correlation-id` when the caller sends a
//! sane one, else from the Lambda request context, else is generated, and it is echoed in
//! the response header. Headers, tokens and bodies are never recorded.
//!
//! With an OTLP endpoint set (`OTEL_EXPORTER_OTLP_ENDPOINT`, see [`settings::OtelSettings`])
//! the `tracing` spans are also OpenTelemetry spans (through `tracing-opentelemetry`),
//! exported over OTLP/HTTP (protobuf) in batches, and the metrics of [`metrics`] go to the
//! same collector. A caller's W3C `traceparent` becomes the request span's parent, and the
//! request's trace id is every problem body's `trace_id` (and a field of its log lines).
//! Without an endpoint nothing of OpenTelemetry is built: no exporter, no layer, no
//! propagator, and `trace_id` is the correlation id.

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use opentelemetry::{
    KeyValue,
    metrics::Histogram,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    metrics::{PeriodicReader, SdkMeterProvider},
    propagation::TraceContextPropagator,
    trace::{BatchSpanProcessor, Sampler, SdkTracerProvider},
};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer as _, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

use settings::{LogFormat, OtelSampler, OtelSettings};

pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// Who the current request is: the correlation id, and the trace id its problems carry.
struct Ids {
    correlation: Arc<str>,
    trace: Option<Arc<str>>,
}

tokio::task_local! {
    static IDS: Ids;
}

/// What [`init_with`] installed, for [`flush`] and [`shutdown`].
struct Providers {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

static PROVIDERS: OnceLock<Providers> = OnceLock::new();

/// Installs the global subscriber (logs only). `RUST_LOG` filters (default `info`). Safe to
/// call twice: the second call is a no-op, which keeps tests that build several apps simple.
pub fn init(format: LogFormat) {
    install(format, None);
}

/// Like [`init`], and with `otel`'s endpoints set, OpenTelemetry too: spans and metrics
/// exported over OTLP/HTTP as `function` (unless `OTEL_SERVICE_NAME` names the service).
/// Must be called inside a Tokio runtime (the exporter's requests run on it).
pub fn init_with(format: LogFormat, otel: &OtelSettings, function: &str) {
    install(format, Some((otel, function)));
}

fn install(format: LogFormat, otel: Option<(&OtelSettings, &str)>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = otel.filter(|(o, _)| o.enabled());
    let tracer = match otel {
        Some((o, function)) if PROVIDERS.get().is_none() => match providers(o, function) {
            Ok(p) => {
                let tracer = p.tracer.as_ref().map(|t| t.tracer("bridge"));
                let _ = PROVIDERS.set(p);
                tracer
            }
            Err(e) => {
                // Logging is not up yet: say it on stderr, once, and carry on without export.
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("OpenTelemetry export is off: {e:#}");
                }
                None
            }
        },
        _ => None,
    };
    let Some(tracer) = tracer else {
        // No span export: the subscriber is what it always was (one global filter).
        let registry = tracing_subscriber::registry().with(filter);
        let _ = match format {
            LogFormat::Json => registry.with(json_layer()).try_init(),
            LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
        };
        return;
    };
    // Spans are exported at `info` and above whatever `RUST_LOG` keeps of the logs.
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        // Cheap on the hot path: no busy/idle timings and no OpenTelemetry context attached
        // on every poll of an instrumented future (outgoing requests read the span's own).
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        // Spans at `info` and above; of the events, only warnings and errors become span
        // events: the per-request `info` lines are logs, and turning each into a span event
        // (attributes copied, allocated) was most of the cost of an unsampled request.
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            if meta.is_event() {
                *meta.level() <= tracing::Level::WARN
            } else {
                *meta.level() <= tracing::Level::INFO
            }
        }));
    let registry = tracing_subscriber::registry().with(otel_layer);
    let result = match format {
        LogFormat::Json => registry.with(json_layer().with_filter(filter)).try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_filter(filter))
            .try_init(),
    };
    let _ = result;
}

fn json_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
}

/// The tracer and meter providers `otel` asks for, installed globally.
fn providers(otel: &OtelSettings, function: &str) -> anyhow::Result<Providers> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| anyhow::anyhow!("not inside a Tokio runtime"))?;
    let client = Exporter {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        runtime,
    };
    let headers: std::collections::HashMap<String, String> = otel
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                secrecy::ExposeSecret::expose_secret(v).to_owned(),
            )
        })
        .collect();
    let resource = Resource::builder()
        .with_service_name(
            otel.service_name
                .clone()
                .unwrap_or_else(|| function.to_owned()),
        )
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let tracer = match &otel.traces_endpoint {
        None => None,
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client.clone())
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(endpoint.clone())
                .with_headers(headers.clone())
                .build()?;
            let provider = SdkTracerProvider::builder()
                .with_span_processor(BatchSpanProcessor::builder(exporter).build())
                .with_sampler(sampler(otel.sampler))
                .with_resource(resource.clone())
                .build();
            opentelemetry::global::set_tracer_provider(provider.clone());
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            Some(provider)
        }
    };
    let meter = match &otel.metrics_endpoint {
        None => None,
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(endpoint.clone())
                .with_headers(headers)
                .build()?;
            let reader = PeriodicReader::builder(exporter)
                .with_interval(otel.metric_export_interval)
                .build();
            let provider = SdkMeterProvider::builder()
                .with_reader(reader)
                .with_resource(resource)
                .build();
            opentelemetry::global::set_meter_provider(provider.clone());
            Some(provider)
        }
    };
    Ok(Providers { tracer, meter })
}

fn sampler(s: OtelSampler) -> Sampler {
    match s {
        OtelSampler::AlwaysOn => Sampler::AlwaysOn,
        OtelSampler::AlwaysOff => Sampler::AlwaysOff,
        OtelSampler::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
        OtelSampler::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        OtelSampler::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        OtelSampler::ParentBasedTraceIdRatio(r) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
        }
    }
}

/// Is OpenTelemetry export on (spans or metrics)?
pub fn exporting() -> bool {
    PROVIDERS.get().is_some()
}

fn tracing_on() -> bool {
    PROVIDERS.get().is_some_and(|p| p.tracer.is_some())
}

/// Sends what is batched (spans, metrics) and waits for it: before a Lambda invocation
/// returns, since a frozen sandbox sends nothing. A no-op without export.
pub async fn flush() {
    let Some(p) = PROVIDERS.get() else {
        return;
    };
    let (tracer, meter) = (p.tracer.clone(), p.meter.clone());
    // The providers block until their exporter is done, and the exporter's requests run on
    // this runtime: block elsewhere.
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(t) = tracer
            && let Err(e) = t.force_flush()
        {
            tracing::debug!(error = %e, "flushing spans");
        }
        if let Some(m) = meter
            && let Err(e) = m.force_flush()
        {
            tracing::debug!(error = %e, "flushing metrics");
        }
    })
    .await;
}

/// Flushes and stops the exporters (at shutdown). A no-op without export.
pub async fn shutdown() {
    let Some(p) = PROVIDERS.get() else {
        return;
    };
    let (tracer, meter) = (p.tracer.clone(), p.meter.clone());
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(t) = tracer {
            let _ = t.shutdown();
        }
        if let Some(m) = meter {
            let _ = m.shutdown();
        }
    })
    .await;
}

/// The OTLP exporters' HTTP client: the workspace's `reqwest`, its requests run on the
/// Tokio runtime (the batch processors call it from threads of their own).
#[derive(Clone, Debug)]
struct Exporter {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Exporter {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let http = self.http.clone();
        self.runtime
            .spawn(async move {
                let response = http.execute(request).await?;
                let mut out = http::Response::builder().status(response.status());
                if let Some(headers) = out.headers_mut() {
                    *headers = response.headers().clone();
                }
                let body = response.bytes().await?;
                Ok(out.body(body)?)
            })
            .await?
    }
}

/// The correlation id of the request being handled, if any.
pub fn current_correlation_id() -> Option<String> {
    IDS.try_with(|ids| ids.correlation.to_string()).ok()
}

/// The trace id a problem body carries: the OpenTelemetry trace id of the request when
/// spans are exported, else its correlation id.
pub fn current_trace_id() -> Option<String> {
    IDS.try_with(|ids| ids.trace.as_ref().unwrap_or(&ids.correlation).to_string())
        .ok()
}

/// Runs `fut` with `id` as the current correlation id (used by scheduled jobs and tests).
pub async fn with_correlation_id<F: Future>(id: &str, fut: F) -> F::Output {
    IDS.scope(
        Ids {
            correlation: Arc::from(id),
            trace: None,
        },
        fut,
    )
    .await
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

/// A fresh correlation id: a random version-4 UUID per process, counted up per request
/// (unique without a system call for randomness on every request; an id names a request, it
/// guards nothing).
fn next_correlation_id() -> uuid::Uuid {
    use std::sync::atomic::{AtomicU64, Ordering};
    static BASE: OnceLock<[u8; 16]> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let base = BASE.get_or_init(|| *uuid::Uuid::new_v4().as_bytes());
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let mut bytes = *base;
    let low = u64::from_be_bytes(bytes[8..].try_into().unwrap_or_default()).wrapping_add(n);
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Middleware: correlation id in and out, one span per request (the child of the caller's
/// `traceparent` when spans are exported), one log line and the request metrics per
/// response.
pub async fn correlate(req: Request, next: Next) -> Response {
    let id: Arc<str> = match req.headers().get(&CORRELATION_HEADER).and_then(acceptable) {
        Some(s) => Arc::from(s),
        None => match lambda_request_id(&req) {
            Some(id) => Arc::from(id),
            None => {
                let mut text = uuid::Uuid::encode_buffer();
                Arc::from(&*next_correlation_id().hyphenated().encode_lower(&mut text))
            }
        },
    };
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!(
        "request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        correlation_id = %id,
        trace_id = tracing::field::Empty,
        method = %req.method(),
        route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let trace = if tracing_on() {
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&opentelemetry_http::HeaderExtractor(req.headers()))
        });
        let _ = span.set_parent(parent);
        span.record("otel.name", format!("{} {route}", req.method()));
        let cx = span.context();
        let trace_id = cx.span().span_context().trace_id();
        (trace_id != opentelemetry::trace::TraceId::INVALID).then(|| {
            let t: Arc<str> = Arc::from(trace_id.to_string());
            span.record("trace_id", &*t);
            t
        })
    } else {
        None
    };
    let method = metrics().map(|_| method_name(req.method()));
    let started = Instant::now();
    let header = HeaderValue::from_str(&id).ok();
    let ids = Ids {
        correlation: id,
        trace,
    };
    let mut response = IDS.scope(ids, next.run(req)).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    // Milliseconds to the microsecond: more digits would only be noise.
    let latency_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    span.record("http.response.status_code", status);
    span.in_scope(|| tracing::info!(status, latency_ms, "request handled"));
    if let (Some(m), Some(method)) = (metrics(), method) {
        // The histogram's count is the request count (by route, method and status).
        let attributes = [
            KeyValue::new("http.route", route.to_owned()),
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        m.duration.record(elapsed.as_secs_f64(), &attributes);
    }
    if let Some(value) = header {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}

/// Bridge's own Postgres pool as metrics, read at each export: `db.pool.connections` by
/// `state` (`used`, `idle`) and `db.pool.waiting` (requests waiting for a connection). The
/// first pool of the process is the one observed. A no-op without metrics export.
pub fn observe_pool(pool: &deadpool_postgres::Pool) {
    static GAUGES: OnceLock<[opentelemetry::metrics::ObservableGauge<i64>; 2]> = OnceLock::new();
    if PROVIDERS.get().and_then(|p| p.meter.as_ref()).is_none() || GAUGES.get().is_some() {
        return;
    }
    let meter = opentelemetry::global::meter("bridge");
    let (a, b) = (pool.clone(), pool.clone());
    let _ = GAUGES.set([
        meter
            .i64_observable_gauge("db.pool.connections")
            .with_description("Connections of Bridge's Postgres pool, by state")
            .with_callback(move |o| {
                let s = a.status();
                let idle = i64::try_from(s.available).unwrap_or(0);
                let size = i64::try_from(s.size).unwrap_or(0);
                o.observe(size - idle, &[KeyValue::new("state", "used")]);
                o.observe(idle, &[KeyValue::new("state", "idle")]);
            })
            .build(),
        meter
            .i64_observable_gauge("db.pool.waiting")
            .with_description("Requests waiting for a connection of Bridge's Postgres pool")
            .with_callback(move |o| {
                o.observe(i64::try_from(b.status().waiting).unwrap_or(0), &[]);
            })
            .build(),
    ]);
}

/// A method's name without an allocation for the usual ones.
fn method_name(m: &axum::http::Method) -> opentelemetry::Value {
    use axum::http::Method;
    let name = match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => return m.as_str().to_owned().into(),
    };
    name.into()
}

/// The edge's instruments: built once, only when metrics are exported.
struct EdgeMetrics {
    duration: Histogram<f64>,
}

fn metrics() -> Option<&'static EdgeMetrics> {
    static METRICS: OnceLock<Option<EdgeMetrics>> = OnceLock::new();
    METRICS
        .get_or_init(|| {
            PROVIDERS.get().and_then(|p| p.meter.as_ref())?;
            let meter = opentelemetry::global::meter("bridge");
            Some(EdgeMetrics {
                duration: meter
                    .f64_histogram("http.server.request.duration")
                    .with_unit("s")
                    .with_description(
                        "Time to answer a request (its count: requests), by route, method and status",
                    )
                    .with_boundaries(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 30.0,
                    ])
                    .build(),
            })
        })
        .as_ref()
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
