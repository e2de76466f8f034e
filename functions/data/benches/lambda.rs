//! The warm cached read through the Lambda adapter, in process: `lambda_http` turning an API
//! Gateway (HTTP API, v2) event into a request for the data router and its response back into
//! the Lambda response, against the same read through the router alone.
//! `cargo bench -p data --bench lambda [invocations=20000]`: CPU time per invocation (the
//! process's user + system time, one thread) of each, interleaved in rounds, medians.
//! Needs a Postgres (as the tests do; `scripts/test` starts one).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Duration;

use axum::body::Body;
use lambda_http::{Adapter, Context, LambdaEvent, Service, request::LambdaRequest};
use serde_json::json;
use testkit::{TestApp, TestWarehouse, lambda_event, sample_dashboard};
use tower::ServiceExt;

/// The process's CPU time so far (user + system), from `/proc/self/stat`.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / 100.0)
}

fn main() {
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let routes = teams::router()
            .merge(connections::router())
            .merge(catalog::router())
            .merge(generate::router())
            .merge(data::router());
        let app = TestApp::spawn(routes).await;
        let wh = TestWarehouse::demo().await;
        let ws = app
            .workspace("postgres", json!({ "url": wh.reader_url }))
            .await;
        app.post(&format!("/v1/teams/{}/dashboards", ws.team))
            .bearer(&ws.token)
            .json(&json!({ "yaml": sample_dashboard("revenue-overview", &ws.connection) }))
            .send()
            .await
            .assert_status(201);
        let event = lambda_event(
            "data",
            "dashboard-data",
            &[("token", &ws.token), ("slug", "revenue-overview")],
        )
        .to_string();
        let mut adapter = Adapter::from(app.router.clone());
        let through_lambda = async |adapter: &mut Adapter<'_, _, _>| {
            let request: LambdaRequest = serde_json::from_str(&event).unwrap();
            let response = adapter
                .call(LambdaEvent::new(request, Context::default()))
                .await
                .unwrap();
            let response = serde_json::to_value(&response).unwrap();
            assert_eq!(response["statusCode"], 200);
        };
        let through_router = async || {
            let req = axum::http::Request::get("/v1/dashboards/revenue-overview/data")
                .header("authorization", format!("Bearer {}", ws.token))
                .body(Body::empty())
                .unwrap();
            let response = app.router.clone().oneshot(req).await.unwrap();
            assert_eq!(response.status(), 200);
            let _ = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
        };
        // Cold, then warm: the response is ready from here on.
        for _ in 0..3 {
            through_lambda(&mut adapter).await;
        }
        let (mut lambda, mut router) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let started = cpu();
            for _ in 0..n / 5 {
                through_lambda(&mut adapter).await;
            }
            lambda.push((cpu() - started).as_secs_f64() * 1e6 / f64::from(n / 5));
            let started = cpu();
            for _ in 0..n / 5 {
                through_router().await;
            }
            router.push((cpu() - started).as_secs_f64() * 1e6 / f64::from(n / 5));
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "warm GET …/data, {n} invocations each, 5 interleaved rounds, CPU µs per invocation (median): \
             lambda_http adapter (API Gateway v2 event in, Lambda response out) {:.1}; router alone {:.1}",
            median(lambda),
            median(router)
        );
    });
}
