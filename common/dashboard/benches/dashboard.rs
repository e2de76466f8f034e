//! Latency of validating and compiling a generated dashboard of 50 tiles and 20 queries:
//! `validate::parse` (YAML, schema, structure) and its stages, compilation into
//! self-contained SQL, and the SQL guard on every compiled query — everything a write checks
//! before the warehouse's dry runs: `cargo bench -p dashboard --bench dashboard`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::{
    fmt::Write,
    hint::black_box,
    time::{Duration, Instant},
};

use base::Dialect;
use dashboard::{compile::compile, spec::SCHEMA_JSON, validate, yaml};

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{what:<28} n={} min {:>7.1} µs  median {:>7.1} µs  p90 {:>7.1} µs  p99 {:>7.1} µs",
        samples.len(),
        samples[0].as_secs_f64() * 1e6,
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.9).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6
    );
}

fn time<T>(n: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    for _ in 0..n / 10 {
        black_box(f());
    }
    (0..n)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect()
}

/// The same shape as the test's: every fourth query refs the previous one, a parameter in
/// each, tiles of every type four to a row.
fn generated(queries: usize, tiles: usize) -> String {
    let mut y = String::from(
        "version: 1\nkind: dashboard\nslug: generated\ntitle: Generated\n\
         connection: 00000000-0000-4000-8000-000000000001\n\
         parameters:\n  - { id: region, type: string, default: EMEA }\nqueries:\n",
    );
    for q in 0..queries {
        let from = if q % 4 == 3 {
            format!("{{{{ ref(\"q{}\") }}}}", q - 1)
        } else {
            "analytics.revenue_daily".to_owned()
        };
        let _ = write!(
            y,
            "  - id: q{q}\n    sql: |\n      SELECT date, region, revenue AS value, orders\n      FROM {from}\n      WHERE region = {{{{ param(\"region\") }}}}\n"
        );
    }
    y.push_str("layout:\n");
    for t in 0..tiles {
        let (x, row) = ((t % 4) * 3, (t / 4) * 2);
        let q = t % queries;
        let fields = match t % 7 {
            0 => "type: kpi, value: value",
            1 => "type: line, x: date, y: value, series: region",
            2 => "type: bar, x: region, y: [value, orders]",
            3 => "type: area, x: date, y: value",
            4 => "type: pie, label: region, value: value",
            5 => "type: table, columns: [date, region, value]",
            _ => "type: text, text: \"Some **markdown**.\"",
        };
        let query = if t % 7 == 6 {
            String::new()
        } else {
            format!("query: q{q}, ")
        };
        let _ = writeln!(
            y,
            "  - {{ id: t{t}, {fields}, {query}title: Tile {t}, position: {{ x: {x}, y: {row}, w: 3, h: 2 }} }}"
        );
    }
    y
}

/// Validate, compile and guard once, as a write does.
fn everything(source: &str) -> usize {
    let parsed = validate::parse(source);
    let (compiled, _) = compile(parsed.spec.as_ref().unwrap(), Dialect::Postgres);
    compiled
        .iter()
        .map(|q| sqlguard::check(&q.sql, Dialect::Postgres).unwrap().len())
        .sum::<usize>()
}

fn main() {
    let source = generated(20, 50);
    let parsed = validate::parse(&source);
    assert!(parsed.is_valid(), "{:?}", parsed.errors);
    let spec = parsed.spec.clone().unwrap();

    // Instruction counts, which a shared machine's noise does not move:
    // DASHBOARD_BENCH_STAGE=none|yaml|parse|all valgrind --tool=callgrind <bench binary>
    // runs one stage 100 times (after the one parse above) and exits; a stage's cost is
    // (its total - none's total) / 100.
    if let Ok(stage) = std::env::var("DASHBOARD_BENCH_STAGE") {
        for _ in 0..100 {
            match stage.as_str() {
                "yaml" => drop(black_box(yaml::load(&source).unwrap())),
                "parse" => drop(black_box(validate::parse(&source))),
                "none" => {}
                _ => drop(black_box(everything(&source))),
            }
        }
        return;
    }
    println!(
        "dashboard: {} queries, {} tiles, {} bytes of YAML",
        spec.queries.len(),
        spec.layout.len(),
        source.len()
    );

    let n = 2000;
    let first = Instant::now();
    black_box(validate::parse(&source));
    println!(
        "(first parse, schema already compiled above: {:.1} µs)",
        first.elapsed().as_secs_f64() * 1e6
    );

    report(
        "validate::parse (all)",
        time(n, || validate::parse(&source)),
    );
    report("  yaml::load", time(n, || yaml::load(&source).unwrap()));
    let (value, positions) = yaml::load(&source).unwrap();
    let validator = jsonschema::validator_for(&serde_json::from_str(SCHEMA_JSON).unwrap()).unwrap();
    report(
        "  JSON Schema",
        time(n, || validator.iter_errors(&value).count()),
    );
    report(
        "  deserialise DashboardSpec",
        time(n, || {
            <dashboard::spec::DashboardSpec as serde::Deserialize>::deserialize(&value).unwrap()
        }),
    );
    report(
        "  structural checks",
        time(n, || validate::check_spec(&spec, &source, &positions)),
    );
    report(
        "compile (20 queries)",
        time(n, || compile(&spec, Dialect::Postgres)),
    );
    let (compiled, errors) = compile(&spec, Dialect::Postgres);
    assert!(errors.is_empty());
    report(
        "SQL guard (20 queries)",
        time(n, || {
            compiled
                .iter()
                .map(|q| sqlguard::check(&q.sql, Dialect::Postgres).unwrap().len())
                .sum::<usize>()
        }),
    );
    report(
        "validate + compile + guard",
        time(n, || everything(&source)),
    );
    let compile = Instant::now();
    black_box(jsonschema::validator_for(&serde_json::from_str(SCHEMA_JSON).unwrap()).unwrap());
    println!(
        "(compiling the schema, once per process: {:.1} µs)",
        compile.elapsed().as_secs_f64() * 1e6
    );
}
