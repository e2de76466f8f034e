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
    // Revalidated every time: the URL names no version, so a max-age would show a browser
    // the previous version's data after a save.
    assert_eq!(first.header("cache-control"), Some("private, no-cache"));

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

/// `body` decoded from `coding` (`None`: as it is), with the crates the server encodes with.
fn decode(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match coding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("zstd") => {
            zstd::stream::read::Decoder::new(body)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
        }
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
    out
}

/// Reads `path` until every result comes from the cache (the first read runs the queries,
/// and says so: `cache_hit: false`), returning the identity body and its ETag.
async fn warm(app: &TestApp, token: &str, path: &str) -> (Vec<u8>, String) {
    app.get(path).bearer(token).send().await.assert_status(200);
    let plain = app.get(path).bearer(token).send().await;
    plain.assert_status(200);
    assert_eq!(plain.header("content-encoding"), None);
    assert!(
        !String::from_utf8_lossy(&plain.body).contains("\"cache_hit\":false"),
        "served from the cache"
    );
    (
        plain.body.to_vec(),
        plain.header("etag").unwrap().to_owned(),
    )
}

#[tokio::test]
async fn each_coding_decodes_to_the_identity_body_and_repeats_its_bytes() {
    let (app, _wh, ws) = setup().await;
    let one = "/v1/dashboards/revenue-overview/query/revenue_daily/data";
    for path in [DATA, one] {
        let (identity, etag) = warm(&app, &ws.token, path).await;
        assert!(identity.len() > 1024, "{path}: large enough to compress");
        for coding in ["zstd", "br", "gzip"] {
            let ask = || {
                app.get(path)
                    .bearer(&ws.token)
                    .header("accept-encoding", coding)
                    .send()
            };
            let first = ask().await;
            first.assert_status(200);
            assert_eq!(first.header("content-encoding"), Some(coding), "{path}");
            assert_eq!(first.header("etag"), Some(etag.as_str()));
            assert_eq!(first.header("vary"), Some("Authorization, Accept-Encoding"));
            assert_eq!(first.header("content-type"), Some("application/json"));
            assert_eq!(first.header("cache-control"), Some("private, no-cache"));
            assert!(first.body.len() * 3 < identity.len(), "{path} {coding}");
            assert_eq!(
                decode(Some(coding), &first.body),
                identity,
                "{path} {coding}: decodes to the identity body"
            );
            let second = ask().await;
            assert_eq!(second.header("content-encoding"), Some(coding));
            assert_eq!(second.body, first.body, "{path} {coding}: the same bytes");
        }
        // The identity body is kept too, and read back the same.
        let plain = app.get(path).bearer(&ws.token).send().await;
        assert_eq!(plain.body.to_vec(), identity);
        assert_eq!(plain.header("vary"), Some("Authorization, Accept-Encoding"));
    }
    let (bytes, entries) = app.state.serving.caches().body_bytes().await;
    assert!(entries >= 8 && bytes > 0, "{entries} bodies, {bytes} bytes");
}

#[tokio::test]
async fn q_values_choose_the_coding() {
    let (app, _wh, ws) = setup().await;
    let (identity, _) = warm(&app, &ws.token, DATA).await;
    for (accept, expected) in [
        ("gzip;q=1, zstd;q=0.5", Some("gzip")),
        ("zstd;q=0, br;q=0.4, gzip;q=0.3", Some("br")),
        ("zstd;q=0, gzip", Some("gzip")),
        ("zstd;q=0", None),
        ("gzip, br, zstd", Some("zstd")),
        ("br, gzip", Some("br")),
        ("*", Some("zstd")),
        ("zstd;q=0, *;q=0.5", Some("br")),
        ("identity", None),
        ("identity;q=1, gzip;q=0.5", None),
        ("deflate", None),
    ] {
        let r = app
            .get(DATA)
            .bearer(&ws.token)
            .header("accept-encoding", accept)
            .send()
            .await;
        r.assert_status(200);
        assert_eq!(r.header("content-encoding"), expected, "{accept}");
        assert_eq!(decode(expected, &r.body), identity, "{accept}");
    }
}

#[tokio::test]
async fn a_compressed_read_answers_304_to_a_current_etag() {
    let (app, _wh, ws) = setup().await;
    let (_, etag) = warm(&app, &ws.token, DATA).await;
    let zstd = app
        .get(DATA)
        .bearer(&ws.token)
        .header("accept-encoding", "zstd")
        .send()
        .await;
    assert_eq!(zstd.header("etag"), Some(etag.as_str()));
    let not_modified = app
        .get(DATA)
        .bearer(&ws.token)
        .header("accept-encoding", "zstd")
        .header("if-none-match", &etag)
        .send()
        .await;
    not_modified.assert_status(304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    assert_eq!(not_modified.header("content-encoding"), None);
    assert_eq!(
        not_modified.header("vary"),
        Some("Authorization, Accept-Encoding")
    );
    assert_eq!(
        not_modified.header("cache-control"),
        zstd.header("cache-control")
    );
}

#[tokio::test]
async fn a_new_version_is_never_answered_from_the_old_ones_bodies() {
    let (app, _wh, ws) = setup().await;
    warm(&app, &ws.token, DATA).await;
    let zstd = || {
        app.get(DATA)
            .bearer(&ws.token)
            .header("accept-encoding", "zstd")
            .send()
    };
    let v1 = zstd().await;
    let v1: serde_json::Value = serde_json::from_slice(&decode(Some("zstd"), &v1.body)).unwrap();
    assert_eq!(v1["version"], 1);
    let yaml = testkit::sample_dashboard("revenue-overview", &ws.connection).replace(
        "SELECT SUM(revenue) AS total_revenue, SUM(orders) AS total_orders",
        "SELECT SUM(revenue) * 2 AS total_revenue, SUM(orders) AS total_orders",
    );
    app.put("/v1/dashboards/revenue-overview/yaml")
        .bearer(&ws.token)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
        .assert_status(200);
    for read in 0..2 {
        let r = zstd().await;
        r.assert_status(200);
        let v2: serde_json::Value =
            serde_json::from_slice(&decode(r.header("content-encoding"), &r.body)).unwrap();
        assert_eq!(v2["version"], 2, "read {read}");
        let total = |d: &serde_json::Value| {
            d["queries"]["revenue_total"]["rows"][0][0]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        };
        assert!(
            (total(&v2) - 2.0 * total(&v1)).abs() < 0.01,
            "read {read}: {} vs {}",
            total(&v2),
            total(&v1)
        );
    }
}

#[tokio::test]
async fn kept_bodies_reach_no_one_the_dashboard_would_not_answer() {
    let (app, wh, ws) = setup().await;
    let added = app
        .post(&format!("/v1/teams/{}/members", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "email": "viewer@example.com", "role": "viewer" }))
        .send()
        .await;
    added.assert_status(201);
    let viewer_id = added.json()["user_id"].as_str().unwrap().to_owned();
    let viewer = app.token("viewer@example.com");
    let (_, etag) = warm(&app, &viewer, DATA).await;
    let read = |token: String| {
        let app = &app;
        async move {
            app.get(DATA)
                .bearer(&token)
                .header("accept-encoding", "zstd")
                .send()
                .await
        }
    };
    assert_eq!(
        read(viewer.clone()).await.header("content-encoding"),
        Some("zstd")
    );
    // A stranger, with or without the current ETag.
    let stranger = app.token("stranger@example.com");
    read(stranger.clone())
        .await
        .assert_problem(404, "dashboard_not_found");
    app.get(DATA)
        .bearer(&stranger)
        .header("accept-encoding", "zstd")
        .header("if-none-match", &etag)
        .send()
        .await
        .assert_problem(404, "dashboard_not_found");
    // A member of another team.
    let other = app
        .workspace_of(
            "other@example.com",
            "postgres",
            json!({ "url": wh.reader_url }),
        )
        .await;
    read(other.token.clone())
        .await
        .assert_problem(404, "dashboard_not_found");
    // The viewer, once removed from the team.
    app.delete(&format!("/v1/teams/{}/members/{viewer_id}", ws.team))
        .bearer(&ws.token)
        .send()
        .await
        .assert_status(204);
    read(viewer)
        .await
        .assert_problem(404, "dashboard_not_found");
    // And the dashboard, once deleted, answers no one; its bodies are gone from memory.
    app.delete("/v1/dashboards/revenue-overview")
        .bearer(&ws.token)
        .send()
        .await
        .assert_status(204);
    read(ws.token.clone())
        .await
        .assert_problem(404, "dashboard_not_found");
    assert_eq!(app.state.serving.caches().body_bytes().await, (0, 0));
}
