//! The warm read (`services::ready`): a cached answer needs no Postgres round trip, and the
//! staleness that buys is bounded: this process sees its own changes of who may read what at
//! once, another process within `ACCESS_STALENESS` (2 s). Real Postgres and the demo
//! warehouse; the "other process" is a second state on the same database and buckets, with
//! caches and an access epoch of its own.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::json;
use services::ready::ACCESS_STALENESS;
use testkit::{RequestBuilder, TestApp, TestWarehouse, Workspace, sample_dashboard};

fn routes() -> utoipa_axum::router::OpenApiRouter<services::AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
        .merge(generate::router())
        .merge(data::router())
}

const DATA: &str = "/v1/dashboards/revenue-overview/data";
const ONE: &str = "/v1/dashboards/revenue-overview/query/revenue_total/data";

async fn setup(vars: &[(&str, &str)]) -> (TestApp, TestWarehouse, Workspace) {
    let app = TestApp::spawn_with(routes(), vars).await;
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

#[tokio::test]
async fn a_warm_read_asks_postgres_nothing() {
    // A request that needs a connection waits 300 ms for one, then fails (503).
    let (app, _wh, ws) = setup(&[("DATABASE_TIMEOUT_MS", "300")]).await;
    let mut seen = Vec::new();
    for (uri, coding) in [(DATA, "identity"), (DATA, "gzip"), (ONE, "identity")] {
        // Cold (the warehouse runs), then warm from the result cache (the response is kept).
        for _ in 0..2 {
            app.get(uri)
                .bearer(&ws.token)
                .header("accept-encoding", coding)
                .send()
                .await
                .assert_status(200);
        }
        let r = app
            .get(uri)
            .bearer(&ws.token)
            .header("accept-encoding", coding)
            .send()
            .await;
        r.assert_status(200);
        seen.push((uri, coding, r.header("etag").unwrap().to_owned(), r.body));
    }
    // Every connection of the pool (4) held elsewhere: only what needs no database works.
    let mut held = Vec::new();
    for _ in 0..app.settings.database_pool_size {
        held.push(app.state.edge.db.get().await.unwrap());
    }
    for _ in 0..20 {
        for (uri, coding, etag, body) in &seen {
            let r = app
                .get(uri)
                .bearer(&ws.token)
                .header("accept-encoding", coding)
                .send()
                .await;
            r.assert_status(200);
            assert_eq!((r.header("etag").unwrap(), &r.body), (etag.as_str(), body));
            app.get(uri)
                .bearer(&ws.token)
                .header("accept-encoding", coding)
                .header("if-none-match", etag)
                .send()
                .await
                .assert_status(304);
        }
    }
    // A parameter set never read before is not ready: each query needs Postgres (to look up
    // the cache bucket's index), which is busy, and fails alone.
    let unseen = app
        .get(&format!("{DATA}?region=APAC"))
        .bearer(&ws.token)
        .send()
        .await;
    unseen.assert_status(200);
    let queries = unseen.json()["queries"].as_object().unwrap().clone();
    assert!(
        queries.values().all(|q| q["error"]["code"] == "internal"),
        "{queries:?}"
    );
    drop(held);
    // Strangers are never answered from memory: 404, as before.
    let stranger = app.token("stranger@example.com");
    for uri in [DATA, ONE] {
        app.get(uri)
            .bearer(&stranger)
            .send()
            .await
            .assert_status(404);
    }
}

/// The user id of the team's member with `email`.
async fn member_id(app: &TestApp, ws: &Workspace, email: &str) -> String {
    let members = app
        .get(&format!("/v1/teams/{}/members", ws.team))
        .bearer(&ws.token)
        .send()
        .await
        .json();
    members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == email)
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Polls `uri` on `router` with `token` until it answers `status`; how long that took.
async fn until(router: &axum::Router, uri: &str, token: &str, status: u16) -> Duration {
    let started = Instant::now();
    loop {
        let r = RequestBuilder::to(router, Method::GET, uri)
            .bearer(token)
            .send()
            .await;
        if r.status.as_u16() == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < ACCESS_STALENESS * 3,
            "still {} after {:?}",
            r.status,
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The bound, with room for a slow machine to poll.
fn within_bound(took: Duration, what: &str) {
    assert!(
        took <= ACCESS_STALENESS + Duration::from_millis(750),
        "{what} was seen after {took:?}, past the {ACCESS_STALENESS:?} bound"
    );
}

#[tokio::test]
async fn another_process_sees_removals_versions_and_deletions_within_the_bound() {
    let (app, _wh, ws) = setup(&[]).await;
    let viewer = app.member(&ws, "viewer@example.com", "viewer").await;
    let other = app.another_process(routes()).await;
    let viewer_id = member_id(&app, &ws, "viewer@example.com").await;
    // Both processes have the viewer's access and the response warm.
    for router in [&app.router, &other] {
        for _ in 0..3 {
            for uri in [DATA, ONE] {
                RequestBuilder::to(router, Method::GET, uri)
                    .bearer(&viewer)
                    .send()
                    .await
                    .assert_status(200);
            }
        }
    }

    // A removed member: 404 at once where the removal was made, within the bound elsewhere.
    app.delete(&format!("/v1/teams/{}/members/{viewer_id}", ws.team))
        .bearer(&ws.token)
        .send()
        .await
        .assert_status(204);
    let removed = Instant::now();
    for uri in [DATA, ONE] {
        app.get(uri).bearer(&viewer).send().await.assert_status(404);
    }
    until(&other, DATA, &viewer, 404).await;
    within_bound(removed.elapsed(), "a removed member");
    RequestBuilder::to(&other, Method::GET, ONE)
        .bearer(&viewer)
        .send()
        .await
        .assert_status(404);

    // A new version: at once here, within the bound there.
    for _ in 0..2 {
        RequestBuilder::to(&other, Method::GET, DATA)
            .bearer(&ws.token)
            .send()
            .await
            .assert_status(200);
    }
    let yaml = format!(
        "{}\n# the second version\n",
        sample_dashboard("revenue-overview", &ws.connection)
    );
    app.put("/v1/dashboards/revenue-overview/yaml")
        .bearer(&ws.token)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
        .assert_status(200);
    let saved = Instant::now();
    let here = app.get(DATA).bearer(&ws.token).send().await;
    assert_eq!(here.json()["version"], 2);
    loop {
        let r = RequestBuilder::to(&other, Method::GET, DATA)
            .bearer(&ws.token)
            .send()
            .await;
        r.assert_status(200);
        if r.json()["version"] == 2 {
            break;
        }
        within_bound(saved.elapsed(), "a new version");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    within_bound(saved.elapsed(), "a new version");

    // A deleted dashboard: 404 at once here, within the bound there, on both routes.
    for _ in 0..2 {
        RequestBuilder::to(&other, Method::GET, ONE)
            .bearer(&ws.token)
            .send()
            .await
            .assert_status(200);
    }
    app.delete("/v1/dashboards/revenue-overview")
        .bearer(&ws.token)
        .send()
        .await
        .assert_status(204);
    let deleted = Instant::now();
    app.get(DATA)
        .bearer(&ws.token)
        .send()
        .await
        .assert_status(404);
    until(&other, DATA, &ws.token, 404).await;
    until(&other, ONE, &ws.token, 404).await;
    within_bound(deleted.elapsed(), "a deleted dashboard");
}

#[tokio::test]
async fn a_role_change_is_seen_at_once_in_this_process() {
    let (app, _wh, ws) = setup(&[]).await;
    let editor = app.member(&ws, "editor@example.com", "editor").await;
    for _ in 0..3 {
        app.get(DATA)
            .bearer(&editor)
            .send()
            .await
            .assert_status(200);
    }
    let id = member_id(&app, &ws, "editor@example.com").await;
    app.delete(&format!("/v1/teams/{}/members/{id}", ws.team))
        .bearer(&ws.token)
        .send()
        .await
        .assert_status(204);
    app.get(DATA)
        .bearer(&editor)
        .send()
        .await
        .assert_status(404);
    // Added back: the access answer is not cached for non-members, so at once.
    app.member(&ws, "editor@example.com", "viewer").await;
    app.get(DATA)
        .bearer(&editor)
        .send()
        .await
        .assert_status(200);
}
