//! Time to check a typical dashboard query (a CTE, a join, a window function, ~15 lines) with the
//! SQL guard, per dialect, and how that splits between tokenizing, parsing and the guard's own
//! walk (the difference between `check` and tokenize + parse), and a 50-query dashboard's worth
//! of checks in a row: `cargo bench -p sqlguard --bench sqlguard`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use base::Dialect;
use sqlparser::{
    dialect::{BigQueryDialect, PostgreSqlDialect},
    parser::Parser,
    tokenizer::Tokenizer,
};

const BIGQUERY: &str = r#"WITH daily AS (
  SELECT DATE(o.created_at) AS day, c.region, SUM(o.amount) AS revenue, COUNT(*) AS orders
  FROM `my-proj.analytics.orders` AS o
  JOIN analytics.customers AS c ON c.customer_id = o.customer_id
  WHERE o.created_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 90 DAY)
    AND c.region = @region
  GROUP BY day, c.region
)
SELECT
  day,
  region,
  revenue,
  SUM(revenue) OVER (PARTITION BY region ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS revenue_7d,
  SAFE_DIVIDE(revenue, orders) AS avg_order
FROM daily
ORDER BY day DESC, region
LIMIT 1000"#;

const POSTGRES: &str = r#"WITH daily AS (
  SELECT date_trunc('day', o.created_at)::date AS day, c.region, SUM(o.amount) AS revenue, COUNT(*) AS orders
  FROM analytics.orders AS o
  JOIN analytics.customers AS c ON c.customer_id = o.customer_id
  WHERE o.created_at >= now() - INTERVAL '90 days'
    AND c.region = $1
  GROUP BY 1, 2
)
SELECT
  day,
  region,
  revenue,
  SUM(revenue) OVER (PARTITION BY region ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS revenue_7d,
  revenue / NULLIF(orders, 0) AS avg_order
FROM daily
ORDER BY day DESC, region
LIMIT 1000"#;

fn median(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let pct = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6
    };
    (pct(0.5), pct(0.9), pct(0.99))
}

fn time(what: &str, n: usize, mut f: impl FnMut()) {
    for _ in 0..n / 10 {
        f();
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    let (p50, p90, p99) = median(samples);
    println!("{what:<38} n={n:<5} median {p50:>6.1} µs  p90 {p90:>6.1} µs  p99 {p99:>6.1} µs");
}

fn main() {
    let n = 5000;
    for (name, sql, dialect) in [
        ("bigquery", BIGQUERY, Dialect::Bigquery),
        ("postgres", POSTGRES, Dialect::Postgres),
    ] {
        assert_eq!(sqlguard::check(sql, dialect).unwrap().len(), 2);
        let parser_dialect: &dyn sqlparser::dialect::Dialect = match dialect {
            Dialect::Bigquery => &BigQueryDialect {},
            Dialect::Postgres => &PostgreSqlDialect {},
        };
        time(&format!("{name}: sqlguard::check"), n, || {
            black_box(sqlguard::check(black_box(sql), dialect).unwrap());
        });
        time(
            &format!("{name}: 50 checks (one dashboard)"),
            n / 50,
            || {
                for _ in 0..50 {
                    black_box(sqlguard::check(black_box(sql), dialect).unwrap());
                }
            },
        );
        time(&format!("{name}:   tokenize only"), n, || {
            black_box(
                Tokenizer::new(parser_dialect, black_box(sql))
                    .tokenize_with_location()
                    .unwrap(),
            );
        });
        time(&format!("{name}:   tokenize + parse"), n, || {
            black_box(Parser::parse_sql(parser_dialect, black_box(sql)).unwrap());
        });
    }
}
