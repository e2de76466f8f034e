//! Trace context on outgoing requests: the current span's W3C `traceparent` (and
//! `tracestate`), as the global propagator writes them. Without span export the propagator
//! writes nothing, and this costs a lookup.

/// `request` with the current trace context's headers.
pub fn propagate(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    let cx = tracing_opentelemetry::OpenTelemetrySpanExt::context(&tracing::Span::current());
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut Injector(&mut headers));
    });
    if headers.is_empty() {
        request
    } else {
        request.headers(headers)
    }
}

struct Injector<'a>(&'a mut reqwest::header::HeaderMap);

impl opentelemetry::propagation::Injector for Injector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
