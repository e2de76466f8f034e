//! The `teams` binary itself: the plain-HTTP runtime (what Cloud Run runs) and its refusals.

#![allow(clippy::unwrap_used)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

use testkit::TestDb;

fn teams() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_teams"));
    // Local state goes to a directory of the test's, never into the source tree.
    let dir = std::env::temp_dir().join(format!("bridge-binary-{}", std::process::id()));
    cmd.env_clear()
        .env("LOG_FORMAT", "json")
        .env("BRIDGE_DATA_DIR", dir);
    cmd
}

#[test]
fn dev_auth_is_refused_in_production() {
    let out = teams()
        .env("BRIDGE_ENV", "production")
        .env("AUTH_MODE", "dev")
        .env("BRIDGE_DEV_JWT_SECRET", "0123456789abcdef0123456789abcdef")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:9/x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("AUTH_MODE") && log.contains("\"level\":\"ERROR\""),
        "{log}"
    );
    assert!(
        !log.contains("0123456789abcdef"),
        "the secret must not be logged"
    );
}

#[test]
fn a_missing_database_url_is_explained() {
    let out = teams()
        .env("BRIDGE_DEV_JWT_SECRET", "0123456789abcdef0123456789abcdef")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("DATABASE_URL is not set"));
}

#[tokio::test]
async fn without_lambda_it_serves_http_on_port_and_stops_on_sigterm() {
    let db = TestDb::fresh().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = teams()
        .env("PORT", port.to_string())
        .env("DATABASE_URL", &db.url)
        .env(
            "BRIDGE_DEV_JWT_SECRET",
            "0123456789abcdef0123456789abcdef-test",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let health = loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/health")).await {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["function"], "teams");

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let _ = child.wait();
        child.stdout.take()
    })
    .await
    .unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut out.unwrap(), &mut log).unwrap();
    assert!(log.contains("shutdown signal received"), "{log}");
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "JSON lines: {log}"
    );
}
