//! The services' metrics: cache lookups by outcome (the hit ratio is
//! `cache.lookups{cache.hit=true} / cache.lookups`) and warehouse bytes scanned. Without a
//! meter provider they are no-ops.

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, ObservableCounter},
};

struct Instruments {
    _lookups: ObservableCounter<u64>,
    bytes: Counter<u64>,
    queries: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static I: OnceLock<Instruments> = OnceLock::new();
    I.get_or_init(|| {
        let meter = opentelemetry::global::meter("bridge");
        Instruments {
            _lookups: meter
                .u64_observable_counter("cache.lookups")
                .with_description("Query results asked of the caches, by whether they held it")
                .with_callback(|o| {
                    for (i, hit) in [false, true].into_iter().enumerate() {
                        o.observe(
                            LOOKUPS[i].load(Ordering::Relaxed),
                            &[KeyValue::new("cache.hit", hit)],
                        );
                    }
                })
                .build(),
            bytes: meter
                .u64_counter("warehouse.bytes_scanned")
                .with_unit("By")
                .with_description("Bytes the warehouse scanned for Bridge's queries")
                .build(),
            queries: meter
                .u64_counter("warehouse.queries")
                .with_description("Queries run on a warehouse, by dialect and outcome")
                .build(),
        }
    })
}

/// One query answered: from a cache (`hit`) or the warehouse. Two atomic counters on the
/// hot path; the metric reads them at each export.
pub fn cache_lookup(hit: bool) {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        let _ = instruments();
    });
    LOOKUPS[usize::from(hit)].fetch_add(1, Ordering::Relaxed);
}

static LOOKUPS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// One warehouse query run (`ok`), and what it scanned.
pub fn warehouse_query(dialect: &'static str, ok: bool, bytes_scanned: Option<u64>) {
    let i = instruments();
    let dialect = KeyValue::new("warehouse.dialect", dialect);
    i.queries.add(
        1,
        &[
            dialect.clone(),
            KeyValue::new("outcome", if ok { "ok" } else { "error" }),
        ],
    );
    if let Some(b) = bytes_scanned {
        i.bytes.add(b, &[dialect]);
    }
}
