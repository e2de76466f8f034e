//! The `bridge` CLI as a newcomer runs it: tokens, migrations, and `serve` with and without
//! a database of its own.

#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;
use testkit::{TempDir, TestDb};

fn bridge(data_dir: &TempDir) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bridge"));
    // A clean environment: only what the test sets, plus PATH for initdb/pg_ctl.
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BRIDGE_DATA_DIR", &data_dir.0)
        .env("LOG_FORMAT", "json");
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn token_prints_a_dev_token_signed_with_the_local_secret() {
    let dir = TempDir::new("bridge-cli");
    let out = bridge(&dir)
        .args(["token", "--email", "You@Example.com"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let token = String::from_utf8(out.stdout).unwrap();
    let secret = std::fs::read_to_string(dir.0.join("dev-jwt-secret")).unwrap();

    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_audience(&["bridge"]);
    v.set_issuer(&["bridge-dev"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token.trim(),
        &jsonwebtoken::DecodingKey::from_secret(secret.trim().as_bytes()),
        &v,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["email"], "you@example.com");
}

#[test]
fn dev_tokens_are_refused_in_production() {
    let dir = TempDir::new("bridge-cli");
    let out = bridge(&dir)
        .args(["token", "--email", "a@example.com"])
        .env("BRIDGE_ENV", "production")
        .env("AUTH_MODE", "dev")
        .env("BRIDGE_DEV_JWT_SECRET", "0123456789abcdef0123456789abcdef")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("AUTH_MODE"), "{:?}", text(&out));

    let out = bridge(&dir)
        .args(["token", "--email", "a@example.com"])
        .env("BRIDGE_ENV", "production")
        .env("AUTH_MODE", "oidc")
        .env("AUTH_ISSUER", "https://id.example")
        .env("AUTH_AUDIENCE", "bridge")
        .env("KMS_KEY_URI", "awskms://alias/bridge")
        .env("CREDENTIALS_BUCKET", "s3://c")
        .env("DASHBOARDS_BUCKET", "s3://d")
        .env("SESSIONS_BUCKET", "s3://s")
        .env("CACHE_BUCKET", "s3://x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).1.contains("AUTH_MODE=dev"), "{:?}", text(&out));
}

#[tokio::test]
async fn migrate_applies_pending_migrations_once() {
    let db = TestDb::empty().await;
    let dir = TempDir::new("bridge-cli");
    let run = || {
        bridge(&dir)
            .arg("migrate")
            .env("DATABASE_URL", &db.url)
            .output()
            .unwrap()
    };

    let first = run();
    assert!(first.status.success(), "{:?}", text(&first));
    assert!(
        text(&first)
            .0
            .contains("Applied migrations: V1__users_teams"),
        "{:?}",
        text(&first)
    );
    let second = run();
    assert!(
        text(&second).0.contains("up to date"),
        "{:?}",
        text(&second)
    );
    let tables = db
        .client()
        .await
        .query(
            "SELECT 1 FROM pg_tables WHERE tablename IN ('users', 'teams', 'team_members')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(tables.len(), 3);
}

#[test]
fn serve_says_how_to_install_postgres_when_it_is_missing() {
    let dir = TempDir::new("bridge-cli");
    let out = bridge(&dir)
        .args(["serve", "--port", &free_port().to_string()])
        .env("BRIDGE_PG_BIN_DIR", dir.0.join("no-such-dir"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (_, err) = text(&out);
    assert!(
        err.contains("apt-get install postgresql") && err.contains("DATABASE_URL"),
        "{err}"
    );
}

/// Waits for `url` to answer 200.
async fn wait_ready(url: &str) {
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status() == 200
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{url} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn terminate(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn serve_without_a_database_url_runs_its_own_postgres_and_stops_it_on_exit() {
    let dir = TempDir::new("bridge-cli");
    let port = free_port();
    let mut child = bridge(&dir)
        .args(["serve", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let pg_port: u16 = first
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/ready")).await;

    let token = bridge(&dir)
        .args(["token", "--email", "ada@example.com"])
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap();
    let created = reqwest::Client::new()
        .post(format!("{base}/v1/teams"))
        .bearer_auth(token.trim())
        .json(&json!({ "name": "Local" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    terminate(&child);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(rest.contains("Local Postgres stopped"), "{rest}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg_port)).is_err(),
        "Postgres still listening"
    );
}

#[tokio::test]
async fn serve_with_a_database_url_migrates_and_serves_every_route() {
    let db = TestDb::empty().await;
    let dir = TempDir::new("bridge-cli");
    let port = free_port();
    let child = bridge(&dir)
        .args(["serve", "--port", &port.to_string()])
        .env("DATABASE_URL", &db.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/ready")).await;
    let doc: serde_json::Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/teams/{team_id}/members"].is_object());
    terminate(&child);
    let status = tokio::task::spawn_blocking(move || {
        let mut c = child;
        c.wait()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(status.success());
}
