//! Nothing hangs when Bridge's own database stalls: the database is reached through a TCP
//! proxy that this test freezes (bytes held, nothing refused, as a frozen server behaves), and
//! every request still ends by its deadline with a 503 that says when to retry.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use edge::app::build;

use settings::Settings;

use testkit::TestApp;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A TCP proxy to `target` that, while `frozen`, passes nothing on.
async fn freezable_proxy(target: String, frozen: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&target).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, frozen.clone()));
            tokio::spawn(pump(sr, cw, frozen.clone()));
        }
    });
    port
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_stalled_database_answers_503_with_retry_after_by_the_deadline() {
    let base = TestApp::spawn(teams::router()).await;
    let url: tokio_postgres::Config = base.db.url.parse().unwrap();
    let host = match &url.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        _ => panic!("a TCP test server"),
    };
    let port = url.get_ports()[0];
    let frozen = Arc::new(AtomicBool::new(false));
    let proxy = freezable_proxy(format!("{host}:{port}"), frozen.clone()).await;
    let proxied = base
        .db
        .url
        .replacen(&format!("{host}:{port}"), &format!("127.0.0.1:{proxy}"), 1);
    let mut env = base.env.clone();
    env.insert("DATABASE_URL".into(), proxied);
    env.insert("REQUEST_TIMEOUT_MS".into(), "1500".into());
    env.insert("DATABASE_TIMEOUT_MS".into(), "1000".into());
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).unwrap();
    let state = edge::Edge::new(settings, "test").unwrap();
    let app = build(teams::router(), state);
    let token = base.token("ada@example.com");
    let get = |path: &'static str| {
        let app = app.clone();
        let token = token.clone();
        async move {
            use tower::ServiceExt;
            let req = axum::http::Request::get(path)
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap();
            app.oneshot(req).await.unwrap()
        }
    };
    assert_eq!(
        get("/v1/teams").await.status(),
        200,
        "through the proxy, while it flows"
    );

    frozen.store(true, Ordering::SeqCst);
    for path in ["/v1/teams", "/ready"] {
        let started = Instant::now();
        let r = get(path).await;
        let took = started.elapsed();
        assert_eq!(r.status(), 503, "{path}");
        assert!(
            r.headers().get("retry-after").is_some(),
            "{path}: Retry-After"
        );
        assert_eq!(
            r.headers().get("content-type").unwrap(),
            "application/problem+json"
        );
        // Bounded by the deadline (1.5 s here), with room for a busy machine; it hung for a
        // minute before.
        assert!(took < Duration::from_secs(10), "{path} took {took:?}");
    }
    frozen.store(false, Ordering::SeqCst);
    let mut recovered = false;
    for _ in 0..50 {
        if get("/v1/teams").await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "answers again once the database does");
}

#[tokio::test]
async fn routes_that_wait_on_a_warehouse_get_its_time_and_others_do_not() {
    use axum::routing::get;
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_millis(600)).await;
        "done"
    }
    let routes = utoipa_axum::router::OpenApiRouter::new()
        .route("/warehouse-bound", get(slow))
        .route_layer(axum::middleware::from_fn(edge::app::allow_warehouse_time))
        .route("/database-bound", get(slow));
    let app = TestApp::spawn_with(routes, &[("REQUEST_TIMEOUT_MS", "200")]).await;
    app.get("/warehouse-bound").send().await.assert_status(200);
    let p = app
        .get("/database-bound")
        .send()
        .await
        .assert_problem(503, "timeout");
    assert!(p["detail"].as_str().unwrap().contains("retry"));
}
