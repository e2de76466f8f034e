//! A scheduled precompute of many dashboards (10,000 by default) against a simulated
//! warehouse, through the real code path (`Serving::warm_due`, `Serving::precompute`: plans,
//! the L1/L2 cache, the BigQuery adapter, the usage ledger, the cache bucket and its index),
//! on this machine's Postgres: `bench/capacity.sh` (which documents the knobs) or
//! `cargo bench -p precompute --bench capacity`.
//!
//! The warehouse is the BigQuery REST stub with a latency per query drawn from
//! `CAPACITY_LATENCY_MS` (300-2000) and at most `CAPACITY_SLOTS` (100) queries running at
//! once, the rest queued, as BigQuery queues a project's interactive queries.
//!
//! Modes (`CAPACITY_MODE`):
//! - `fanout` (default): `CAPACITY_INSTANCES` function instances (each an `AppState` of its
//!   own: its own Postgres pool of `CAPACITY_POOL` connections, its own in-process caches;
//!   the buckets are shared, as in the cloud), each warming `CAPACITY_PER_INSTANCE`
//!   dashboards at once (the scheduler's `WARM_PARALLELISM`) from one shared queue of the
//!   due dashboards: what a tick that fanned the due list out to N invocations would do.
//! - `tick`: what one scheduled invocation does today, `Serving::warm_due` on one instance.
//!
//! Reports wall time, dashboards and queries, peak Postgres connections to Bridge's database
//! (pg_stat_activity sampled every 50 ms; all, and active), and the warehouse's peak running
//! and queued queries.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::extract::FromRef;
use serde_json::json;
use services::{
    AppState,
    dashboards::{DASHBOARD_COLUMNS, Dashboard},
    serving::Serving,
};
use settings::Settings;
use testkit::{
    TestApp, service_account_key,
    stubs::bigquery::{BigQueryStub, StubQuery, information_schema_tables},
};

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not valid")),
        Err(_) => default,
    }
}

/// A dashboard of `queries` independent queries, one table tile each, warmed every 15 minutes.
fn dashboard_yaml(connection: &str, queries: usize) -> String {
    let mut y = format!(
        "version: 1\nkind: dashboard\nslug: cap-0\ntitle: Capacity\nconnection: {connection}\n\
         refresh: {{ every: 15m }}\ncache: {{ ttl: 1h }}\nqueries:\n"
    );
    for q in 0..queries {
        y.push_str(&format!(
            "  - id: q{q}\n    sql: SELECT region, SUM(amount) AS revenue FROM sales.orders \
             WHERE amount > {q} GROUP BY region\n"
        ));
    }
    y.push_str("layout:\n");
    for q in 0..queries {
        y.push_str(&format!(
            "  - {{ id: t{q}, type: table, query: q{q}, position: {{ x: 0, y: {}, w: 12, h: 4 }} }}\n",
            q * 4
        ));
    }
    y
}

#[tokio::main]
async fn main() {
    let dashboards: usize = knob("CAPACITY_DASHBOARDS", 10_000);
    let queries: usize = knob("CAPACITY_QUERIES", 3);
    let mode: String = knob("CAPACITY_MODE", "fanout".to_owned());
    let instances: usize = knob("CAPACITY_INSTANCES", 20);
    let per_instance: usize = knob("CAPACITY_PER_INSTANCE", services::serving::WARM_PARALLELISM);
    let pool: usize = knob("CAPACITY_POOL", 2);
    let slots: usize = knob("CAPACITY_SLOTS", 100);
    let latency: String = knob("CAPACITY_LATENCY_MS", "300-2000".to_owned());
    let (lo, hi) = latency
        .split_once('-')
        .map(|(a, b)| (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("CAPACITY_LATENCY_MS={latency}: want min-max"));
    let instances = if mode == "tick" { 1 } else { instances };

    // The warehouse: a BigQuery project with `sales.orders`, answering at once while the
    // dashboards are set up.
    let stub = BigQueryStub::start().await;
    stub.respond(
        "SELECT 1",
        StubQuery::rows(0, json!({ "fields": [] }), vec![]),
    );
    stub.add_dataset("sales", "EU");
    stub.add_table("sales", "orders");
    stub.respond(
        "`acme`.`sales`.INFORMATION_SCHEMA.TABLES",
        information_schema_tables(&[("orders", "BASE TABLE", Some("day"), &["region"])]),
    );
    let schema = json!({ "fields": [{ "name": "region", "type": "STRING" }, { "name": "revenue", "type": "FLOAT64" }] });
    let rows: Vec<_> = ["EMEA", "AMER", "APAC"]
        .iter()
        .enumerate()
        .map(|(i, r)| json!({ "f": [{ "v": r }, { "v": format!("{}.5", 1000 * (i + 1)) }] }))
        .collect();
    stub.respond(
        "FROM sales.orders",
        StubQuery::rows(50_000_000, schema, rows),
    );
    let routes = || {
        teams::router()
            .merge(connections::router())
            .merge(catalog::router())
            .merge(generate::router())
    };
    let app = TestApp::spawn_with(
        routes(),
        &[
            ("BIGQUERY_API_URL", &stub.base_url),
            ("GCP_TOKEN_URI", &stub.token_url),
        ],
    )
    .await;
    let ws = app.workspace("bigquery", service_account_key("acme")).await;
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "yaml": dashboard_yaml(&ws.connection, queries) }))
        .send()
        .await
        .assert_status(201);

    // The other dashboards: copies of its rows (same YAML object, ids of their own, so
    // their results are cached apart), written in SQL to set 10,000 up in seconds.
    let t = Instant::now();
    let db = app.db.client().await;
    let columns: Vec<String> = db
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 'dashboards' \
               AND column_name NOT IN ('id', 'slug') ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let cols = columns.join(", ");
    let n = i32::try_from(dashboards).unwrap() - 1;
    db.batch_execute(&format!(
        "INSERT INTO dashboards (id, slug, {cols}) \
           SELECT gen_random_uuid(), 'cap-' || n, {cols} FROM dashboards, generate_series(1, {n}) n \
           WHERE slug = 'cap-0'; \
         INSERT INTO dashboard_versions (dashboard_id, version, yaml_key, sha256, size_bytes, created_by) \
           SELECT d.id, v.version, v.yaml_key, v.sha256, v.size_bytes, v.created_by \
           FROM dashboards d, dashboard_versions v JOIN dashboards t ON t.id = v.dashboard_id AND t.slug = 'cap-0' \
           WHERE d.slug <> 'cap-0'; \
         UPDATE dashboards SET last_precomputed_at = NULL; ANALYZE dashboards;"
    ))
    .await
    .unwrap();
    println!(
        "set up {dashboards} dashboards of {queries} queries in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The function instances: each its own AppState (pool, caches), sharing the buckets.
    let mut env = app.env.clone();
    env.insert("DATABASE_POOL_SIZE".into(), pool.to_string());
    let mut states = Vec::new();
    for _ in 0..instances {
        let settings = Settings::from_lookup(|k| env.get(k).cloned()).unwrap();
        states.push(
            AppState::from_settings(settings, "precompute")
                .await
                .unwrap(),
        );
    }

    // pg_stat_activity, sampled.
    let stop = Arc::new(AtomicBool::new(false));
    let (peak_all, peak_active) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let baseline: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let sampler = {
        let (stop, peak_all, peak_active) = (stop.clone(), peak_all.clone(), peak_active.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let row = db
                    .query_one(
                        "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') FROM pg_stat_activity \
                         WHERE datname = current_database() AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                    .unwrap();
                let (all, active): (i64, i64) = (row.get(0), row.get(1));
                peak_all.fetch_max(all as usize, Ordering::SeqCst);
                peak_active.fetch_max(active as usize, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    stub.simulate_load(Duration::from_millis(lo), Duration::from_millis(hi), slots);
    println!(
        "mode {mode}: {instances} instance(s) x {per_instance} dashboards at once, pool {pool} each; \
         warehouse {lo}-{hi} ms per query, {slots} at once"
    );
    let started = Instant::now();
    let (mut warmed, mut executed, mut failed) = (0usize, 0usize, 0usize);
    if mode == "tick" {
        let report = Serving::from_ref(&states[0]).warm_due().await.unwrap();
        warmed = report.dashboards.len();
        executed = report.dashboards.iter().map(|r| r.queries_executed).sum();
        failed = report.failures.len()
            + report
                .dashboards
                .iter()
                .filter(|r| !r.errors.is_empty())
                .count();
    } else {
        let client = states[0].edge.db.get().await.unwrap();
        let due: VecDeque<Dashboard> = client
            .query(
                &format!(
                    "SELECT {DASHBOARD_COLUMNS} FROM dashboards d JOIN teams t ON t.id = d.team_id \
                     WHERE d.refresh_every_secs IS NOT NULL ORDER BY d.last_precomputed_at NULLS FIRST"
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(Dashboard::from_row)
            .collect();
        drop(client);
        let queue = Arc::new(Mutex::new(due));
        let mut workers = Vec::new();
        for state in &states {
            for _ in 0..per_instance {
                let (serving, queue) = (Serving::from_ref(state), queue.clone());
                workers.push(tokio::spawn(async move {
                    let (mut warmed, mut executed, mut failed) = (0, 0, 0);
                    loop {
                        let next = queue.lock().unwrap().pop_front();
                        let Some(d) = next else { break };
                        match serving.precompute(d, false).await {
                            Ok(r) => {
                                warmed += 1;
                                executed += r.queries_executed;
                                failed += usize::from(!r.errors.is_empty());
                            }
                            Err(e) => {
                                failed += 1;
                                eprintln!("precompute failed: {}", e.detail);
                            }
                        }
                    }
                    (warmed, executed, failed)
                }));
            }
        }
        for w in workers {
            let (a, b, c) = w.await.unwrap();
            warmed += a;
            executed += b;
            failed += c;
        }
    }
    let wall = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let load = stub.load();
    let per_sec = warmed as f64 / wall.as_secs_f64();
    println!(
        "warmed {warmed} dashboards ({executed} warehouse queries, {failed} with errors) in {:.1} s: \
         {per_sec:.1} dashboards/s",
        wall.as_secs_f64()
    );
    println!(
        "Postgres connections to Bridge's database: peak {} (peak active {}), {baseline} before the run \
         (the harness's own idle pool); the instances' pools allow {}",
        peak_all.load(Ordering::SeqCst),
        peak_active.load(Ordering::SeqCst),
        instances * pool
    );
    println!(
        "warehouse: peak {} queries running (limit {slots}), peak {} queued, {} run",
        load.peak_running, load.peak_queued, load.completed
    );
    let ideal = (executed as f64) * ((lo + hi) as f64 / 2000.0) / slots as f64;
    println!(
        "lower bound at {slots} warehouse slots and the mean latency: {ideal:.0} s; \
         10,000 dashboards at this rate: {:.0} s",
        10_000.0 / per_sec
    );
}
