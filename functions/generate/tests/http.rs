//! The dashboard routes as HTTP clients and caches see them: ETags and 304s, `If-Match` per
//! RFC 9110 (strong comparison, `*`, lists), a PUT of unchanged YAML that makes no
//! version, the version history, compression and CORS. Real Postgres, the demo warehouse.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use testkit::{TestApp, TestWarehouse, Workspace, sample_dashboard};

async fn setup() -> (TestApp, TestWarehouse, Workspace, String) {
    let app = TestApp::spawn(
        teams::router()
            .merge(connections::router())
            .merge(catalog::router())
            .merge(generate::router()),
    )
    .await;
    let wh = TestWarehouse::demo().await;
    let ws = app
        .workspace("postgres", json!({ "url": wh.reader_url }))
        .await;
    let yaml = sample_dashboard("revenue-overview", &ws.connection);
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .raw("application/yaml", yaml.clone())
        .send()
        .await
        .assert_status(201);
    (app, wh, ws, yaml)
}

const URL: &str = "/v1/dashboards/revenue-overview";

#[tokio::test]
async fn metadata_and_yaml_answer_304_to_a_current_etag() {
    let (app, _wh, ws, _) = setup().await;
    for path in [
        URL.to_owned(),
        format!("{URL}/yaml"),
        format!("{URL}/yaml?version=1"),
    ] {
        let first = app.get(&path).bearer(&ws.token).send().await;
        first.assert_status(200);
        let etag = first.header("etag").unwrap().to_owned();
        assert_eq!(etag, "\"1\"", "{path}");
        assert_eq!(first.header("vary"), Some("Authorization"), "{path}");
        for held in [etag.as_str(), "W/\"1\"", "\"7\", \"1\"", "*"] {
            let again = app
                .get(&path)
                .bearer(&ws.token)
                .header("if-none-match", held)
                .send()
                .await;
            again.assert_status(304);
            assert!(again.body.is_empty(), "{path}: a 304 has no body");
            assert_eq!(again.header("etag"), Some("\"1\""), "{path}");
        }
        let stale = app
            .get(&path)
            .bearer(&ws.token)
            .header("if-none-match", "\"2\"")
            .send()
            .await;
        stale.assert_status(200);
    }
    let past = app
        .get(&format!("{URL}/yaml?version=1"))
        .bearer(&ws.token)
        .send()
        .await;
    assert!(
        past.header("cache-control").unwrap().contains("immutable"),
        "a past version never changes"
    );
    let current = app
        .get(&format!("{URL}/yaml"))
        .bearer(&ws.token)
        .send()
        .await;
    assert_eq!(current.header("cache-control"), Some("private, no-cache"));
}

#[tokio::test]
async fn a_304_is_no_way_around_tenancy() {
    let (app, _wh, ws, _) = setup().await;
    let stranger = app.token("stranger@example.com");
    for path in [
        URL.to_owned(),
        format!("{URL}/yaml"),
        format!("{URL}/yaml?version=1"),
        format!("{URL}/versions"),
    ] {
        app.get(&path)
            .bearer(&stranger)
            .header("if-none-match", "\"1\"")
            .send()
            .await
            .assert_problem(404, "dashboard_not_found");
    }
    let _ = ws;
}

#[tokio::test]
async fn if_match_compares_strongly_and_takes_lists_and_star() {
    let (app, _wh, ws, yaml) = setup().await;
    let put = |if_match: Option<&'static str>, title: &str| {
        let body = yaml.replace("title: Revenue overview", &format!("title: {title}"));
        let mut r = app.put(&format!("{URL}/yaml")).bearer(&ws.token);
        if let Some(v) = if_match {
            r = r.header("if-match", v);
        }
        r.raw("application/yaml", body).send()
    };
    // A weak tag never matches for a write, even the current version's.
    put(Some("W/\"1\""), "Weak")
        .await
        .assert_problem(412, "precondition_failed");
    put(Some("\"9\""), "Other")
        .await
        .assert_problem(412, "precondition_failed");
    let r = put(Some("\"9\", \"1\""), "Listed").await;
    r.assert_status(200);
    assert_eq!(r.header("etag"), Some("\"2\""));
    let r = put(Some("*"), "Any").await;
    r.assert_status(200);
    assert_eq!(r.json()["version"], 3);
    for bad in ["2", "\"2", ""] {
        put(Some(bad), "Bad")
            .await
            .assert_problem(400, "invalid_parameter");
    }
    let r = put(None, "Unconditional").await;
    assert_eq!(r.json()["version"], 4);
}

#[tokio::test]
async fn a_put_of_the_current_yaml_makes_no_new_version() {
    let (app, _wh, ws, yaml) = setup().await;
    let same = app
        .put(&format!("{URL}/yaml"))
        .bearer(&ws.token)
        .header("if-match", "\"1\"")
        .raw("application/yaml", yaml.clone())
        .send()
        .await;
    same.assert_status(200);
    assert_eq!(same.json()["version"], 1);
    assert_eq!(same.header("etag"), Some("\"1\""));
    // Still guarded: a stale If-Match is refused even when nothing would change.
    let changed = yaml.replace("title: Revenue overview", "title: Revenue (v2)");
    app.put(&format!("{URL}/yaml"))
        .bearer(&ws.token)
        .raw("application/yaml", changed)
        .send()
        .await
        .assert_status(200);
    app.put(&format!("{URL}/yaml"))
        .bearer(&ws.token)
        .header("if-match", "\"1\"")
        .raw("application/yaml", yaml)
        .send()
        .await
        .assert_problem(412, "precondition_failed");
    let versions = app
        .get(&format!("{URL}/versions"))
        .bearer(&ws.token)
        .send()
        .await;
    assert_eq!(versions.json()["versions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_version_list_is_newest_first_and_paginated() {
    let (app, _wh, ws, yaml) = setup().await;
    for n in 2..=4 {
        app.put(&format!("{URL}/yaml"))
            .bearer(&ws.token)
            .raw(
                "application/yaml",
                yaml.replace("title: Revenue overview", &format!("title: Revenue v{n}")),
            )
            .send()
            .await
            .assert_status(200);
    }
    let viewer = app.member(&ws, "viewer@example.com", "viewer").await;
    let page = app
        .get(&format!("{URL}/versions?limit=3"))
        .bearer(&viewer)
        .send()
        .await;
    page.assert_status(200);
    let body = page.json();
    let versions: Vec<i64> = body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [4, 3, 2]);
    let first = &body["versions"][0];
    assert_eq!(first["author_email"], "admin@example.com");
    assert_eq!(first["sha256"].as_str().unwrap().len(), 64);
    assert!(first["size_bytes"].as_i64().unwrap() > 100);
    let cursor = body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!("{URL}/versions?limit=3&cursor={cursor}"))
        .bearer(&viewer)
        .send()
        .await
        .json();
    assert_eq!(rest["versions"][0]["version"], 1);
    assert_eq!(rest["next_cursor"], serde_json::Value::Null);
    app.get(&format!("{URL}/versions?limit=0"))
        .bearer(&viewer)
        .send()
        .await
        .assert_problem(400, "invalid_parameter");
}

#[tokio::test]
async fn json_bodies_are_compressed_as_asked_and_small_ones_are_not() {
    let (app, _wh, ws, _) = setup().await;
    let plain = app
        .get(&format!("{URL}/yaml"))
        .bearer(&ws.token)
        .send()
        .await;
    for encoding in ["gzip", "br", "zstd"] {
        let r = app
            .get(&format!("{URL}/yaml"))
            .bearer(&ws.token)
            .header("accept-encoding", encoding)
            .send()
            .await;
        r.assert_status(200);
        assert_eq!(r.header("content-encoding"), Some(encoding));
        assert!(
            r.body.len() * 2 < plain.body.len(),
            "{encoding}: {} of {} bytes",
            r.body.len(),
            plain.body.len()
        );
        let vary: Vec<String> = r
            .headers
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .collect();
        assert!(
            vary.iter().any(|v| v.contains("accept-encoding")),
            "{vary:?}"
        );
        assert!(vary.iter().any(|v| v.contains("authorization")), "{vary:?}");
    }
    // Under a kilobyte: as it is.
    let small = app
        .get("/health")
        .header("accept-encoding", "gzip")
        .send()
        .await;
    assert_eq!(small.header("content-encoding"), None);
}
