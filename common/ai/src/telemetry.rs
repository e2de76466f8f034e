//! What a model call leaves in traces and metrics: its span's `model`, `tokens` and
//! `cost_usd`, and the counters `llm.tokens` (by provider, model and kind) and
//! `llm.cost.usd`. Without a meter provider the counters are no-ops.

use std::sync::OnceLock;

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Meter},
};

use crate::calls::CallRecord;

/// The span of one model call; [`recorded`] fills what it learns at the end.
#[macro_export]
macro_rules! llm_span {
    ($provider:expr, $model:expr) => {
        tracing::info_span!(
            "llm.call",
            otel.kind = "client",
            provider = %$provider,
            model = %$model,
            input_tokens = tracing::field::Empty,
            output_tokens = tracing::field::Empty,
            tokens = tracing::field::Empty,
            cost_usd = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
            error = tracing::field::Empty,
        )
    };
}

struct Instruments {
    tokens: Counter<u64>,
    cost: Counter<f64>,
}

fn instruments() -> &'static Instruments {
    static I: OnceLock<Instruments> = OnceLock::new();
    I.get_or_init(|| {
        let meter: Meter = opentelemetry::global::meter("bridge");
        Instruments {
            tokens: meter
                .u64_counter("llm.tokens")
                .with_description("Tokens of model calls, by provider, model and kind")
                .build(),
            cost: meter
                .f64_counter("llm.cost.usd")
                .with_unit("USD")
                .with_description("What model calls cost, by provider and model")
                .build(),
        }
    })
}

/// Puts a finished call on the current span (the call's, see [`llm_span!`]) and in the
/// metrics.
pub fn recorded(r: &CallRecord) {
    let span = tracing::Span::current();
    let total = r.usage.total_input() + r.usage.output_tokens;
    span.record("input_tokens", r.usage.total_input());
    span.record("output_tokens", r.usage.output_tokens);
    span.record("tokens", total);
    span.record("duration_ms", r.latency_ms);
    if let Some(cost) = &r.cost_usd {
        span.record("cost_usd", cost.as_str());
    }
    if let Some(e) = &r.error {
        // The code only: the message may quote the provider.
        span.record("error", e.split(':').next().unwrap_or("error"));
    }
    let i = instruments();
    let who = [
        KeyValue::new("llm.provider", r.provider.clone()),
        KeyValue::new("llm.model", r.model.clone()),
    ];
    for (kind, n) in [
        ("input", r.usage.input_tokens),
        ("output", r.usage.output_tokens),
        ("cache_read", r.usage.cache_read_tokens),
        ("cache_write", r.usage.cache_write_tokens),
    ] {
        if n > 0 {
            let [p, m] = who.clone();
            i.tokens
                .add(n, &[p, m, KeyValue::new("llm.token.kind", kind)]);
        }
    }
    if let Some(usd) = r.cost_usd.as_deref().and_then(|c| c.parse::<f64>().ok()) {
        i.cost.add(usd, &who);
    }
}
