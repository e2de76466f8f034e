//! Credentials never reach a log line: the real binary, JSON logs captured, a connection
//! created and validated (successfully and not) and deleted.

#![allow(clippy::unwrap_used)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::testing::{TempDir, TestDb, TestWarehouse};
use serde_json::json;

#[tokio::test]
async fn no_log_line_carries_a_credential() {
    let db = TestDb::fresh().await;
    let wh = TestWarehouse::demo().await;
    let data = TempDir::new("bridge-logs");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "0123456789abcdef0123456789abcdef-logs";
    let mut child = Command::new(env!("CARGO_BIN_EXE_connections"))
        .env_clear()
        .env("PORT", port.to_string())
        .env("DATABASE_URL", &db.url)
        .env("BRIDGE_DEV_JWT_SECRET", secret)
        .env("BRIDGE_DATA_DIR", &data.0)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{base}/health")).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A team to put the connection in, made directly (the teams routes are another function).
    let settings = common::settings::Settings::from_lookup(|k| match k {
        "BRIDGE_DEV_JWT_SECRET" => Some(secret.to_owned()),
        _ => None,
    })
    .unwrap();
    let email = common::domain::Email::parse("ada@example.com").unwrap();
    let token =
        common::auth::mint_dev_token(&settings.auth, "sub-ada", &email, Duration::from_secs(600))
            .unwrap();
    let http = reqwest::Client::new();
    http.get(format!(
        "{base}/v1/connections/0190d1c6-0000-7000-8000-000000000000"
    ))
    .bearer_auth(&token)
    .send()
    .await
    .unwrap();
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO teams (id, name, slug) VALUES ('0190d1c6-0000-7000-8000-000000000001', 'T', 't'); \
         INSERT INTO team_members (team_id, user_id, role) SELECT '0190d1c6-0000-7000-8000-000000000001', id, 'admin' FROM users",
    )
    .await
    .unwrap();

    let wrong = wh
        .reader_url
        .replace(&format!("{}:", wh.reader), "no_such_role:");
    for (name, url) in [("good", wh.reader_url.clone()), ("bad", wrong)] {
        let created: serde_json::Value = http
            .post(format!("{base}/v1/teams/0190d1c6-0000-7000-8000-000000000001/connections"))
            .bearer_auth(&token)
            .json(&json!({ "name": name, "warehouse_type": "postgres", "credentials": { "url": url } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap();
        let v = http
            .post(format!("{base}/v1/connections/{id}/validate"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(v.status(), 200);
        http.delete(format!("{base}/v1/connections/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
    }

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let _ = child.wait();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut s).unwrap();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut s).unwrap();
        s
    })
    .await
    .unwrap();
    assert!(
        out.contains("connection validated"),
        "the logs were captured: {out}"
    );
    for needle in [
        wh.password.as_str(),
        wh.reader_url.as_str(),
        secret,
        token.as_str(),
    ] {
        assert!(
            !out.contains(needle),
            "a log line carries a secret: {needle}"
        );
    }
}
