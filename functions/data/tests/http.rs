//! Dashboard data as HTTP caches see it: an ETag from the results' identity, 304 to a
//! current one, `Cache-Control: private` with the results' remaining lifetime, compressed
//! bodies, and a forced precompute that makes new results (and so a new ETag). Also what a
//! refused parameter says. Real Postgres, the demo warehouse.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use testkit::{TestApp, TestWarehouse, Workspace, sample_dashboard};

async fn setup() -> (TestApp, TestWarehouse, Workspace) {
    let app = TestApp::spawn(
        teams::router()
            .merge(connections::router())
            .merge(catalog::router())
            .merge(generate::router())
            .merge(data::router())
            .merge(precompute::router()),
    )
    .await;
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
    (app, wh, ws)
}

const DATA: &str = "/v1/dashboards/revenue-overview/data";

#[tokio::test]
async fn data_carries_an_etag_and_answers_304_while_its_results_stand() {
    let (app, _wh, ws) = setup().await;
    let first = app.get(DATA).bearer(&ws.token).send().await;
    first.assert_status(200);
    let etag = first.header("etag").unwrap().to_owned();
    let cache_control = first.header("cache-control").unwrap();
    let max_age: u64 = cache_control
        .strip_prefix("private, max-age=")
        .unwrap_or_else(|| panic!("{cache_control}"))
        .parse()
        .unwrap();
    // The dashboard's cache.ttl is 24 h; the results were made just now.
    assert!((86_000..=86_400).contains(&max_age), "{max_age}");

    // Served from the cache now, with the same identity: the caller's copy is current.
    let again = app.get(DATA).bearer(&ws.token).send().await;
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let not_modified = app
        .get(DATA)
        .bearer(&ws.token)
        .header("if-none-match", &etag)
        .send()
        .await;
    not_modified.assert_status(304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));

    // Other parameters are other results.
    let apac = app
        .get(&format!("{DATA}?region=APAC"))
        .bearer(&ws.token)
        .header("if-none-match", &etag)
        .send()
        .await;
    apac.assert_status(200);
    assert_ne!(apac.header("etag"), Some(etag.as_str()));

    // One query alone has its own tag, and its own 304.
    let one = app
        .get("/v1/dashboards/revenue-overview/query/revenue_daily/data")
        .bearer(&ws.token)
        .send()
        .await;
    let one_tag = one.header("etag").unwrap().to_owned();
    app.get("/v1/dashboards/revenue-overview/query/revenue_daily/data")
        .bearer(&ws.token)
        .header("if-none-match", &one_tag)
        .send()
        .await
        .assert_status(304);

    // A forced precompute makes the results again: the old copy is no longer current.
    let forced = app
        .post("/v1/dashboards/revenue-overview/precompute?force=true")
        .bearer(&ws.token)
        .send()
        .await;
    forced.assert_status(200);
    let report = forced.json();
    assert_eq!(report["cache_hits"], 0, "{report}");
    assert!(report["queries_executed"].as_u64().unwrap() > 0, "{report}");
    let after = app
        .get(DATA)
        .bearer(&ws.token)
        .header("if-none-match", &etag)
        .send()
        .await;
    after.assert_status(200);
    assert_ne!(after.header("etag"), Some(etag.as_str()));
    // Without force, precompute finds everything cached.
    let cached = app
        .post("/v1/dashboards/revenue-overview/precompute")
        .bearer(&ws.token)
        .send()
        .await
        .json();
    assert_eq!(cached["queries_executed"], 0, "{cached}");
}

#[tokio::test]
async fn a_stranger_gets_404_whatever_etag_they_hold() {
    let (app, _wh, ws) = setup().await;
    let etag = app
        .get(DATA)
        .bearer(&ws.token)
        .send()
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    app.get(DATA)
        .bearer(&app.token("stranger@example.com"))
        .header("if-none-match", &etag)
        .send()
        .await
        .assert_problem(404, "dashboard_not_found");
    let viewer = app.member(&ws, "viewer@example.com", "viewer").await;
    app.post("/v1/dashboards/revenue-overview/precompute?force=true")
        .bearer(&viewer)
        .send()
        .await
        .assert_problem(403, "insufficient_role");
}

#[tokio::test]
async fn data_is_compressed_when_asked() {
    let (app, _wh, ws) = setup().await;
    let plain = app.get(DATA).bearer(&ws.token).send().await;
    for encoding in ["gzip", "br", "zstd"] {
        let r = app
            .get(DATA)
            .bearer(&ws.token)
            .header("accept-encoding", encoding)
            .send()
            .await;
        assert_eq!(r.header("content-encoding"), Some(encoding));
        assert!(r.body.len() * 3 < plain.body.len(), "{encoding}");
        assert!(r.header("etag").is_some());
    }
}

#[tokio::test]
async fn a_value_outside_allowed_is_refused_with_the_allowed_values() {
    let (app, _wh, ws) = setup().await;
    let p = app
        .get(&format!("{DATA}?region=MARS"))
        .bearer(&ws.token)
        .send()
        .await
        .assert_problem(400, "invalid_parameter");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("region"), "{detail}");
    assert!(detail.contains("EMEA, AMER, APAC"), "{detail}");
}
