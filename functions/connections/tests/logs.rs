//! Credentials never reach a log line, at any level: the real binary with `RUST_LOG=trace`,
//! its JSON logs captured, Postgres connections created and validated (successfully and
//! not) and deleted, and a BigQuery connection validated through a token exchange (the
//! signed assertion and the access token are secrets too).

#![allow(clippy::unwrap_used)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

use serde_json::json;
use testkit::{
    TempDir, TestDb, TestWarehouse, service_account_key, stubs::bigquery::BigQueryStub,
    stubs::bigquery::STUB_TOKEN, stubs::bigquery::StubQuery,
};

#[tokio::test]
async fn no_log_line_carries_a_credential() {
    let db = TestDb::fresh().await;
    let wh = TestWarehouse::demo().await;
    let stub = BigQueryStub::start().await;
    stub.respond(
        "SELECT 1",
        StubQuery::rows(0, json!({ "fields": [] }), vec![]),
    );
    stub.add_dataset("sales", "EU");
    stub.add_table("sales", "orders");
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
        .env("RUST_LOG", "trace")
        .env("BIGQUERY_API_URL", &stub.base_url)
        .env("GCP_TOKEN_URI", &stub.token_url)
        // Files, not pipes: at trace level the logs would fill a pipe and stall the process.
        .stdout(std::fs::File::create(data.0.join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(data.0.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{base}/health")).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A team to put the connection in, made directly (the teams routes are another function).
    let settings = settings::Settings::from_lookup(|k| match k {
        "BRIDGE_DEV_JWT_SECRET" => Some(secret.to_owned()),
        _ => None,
    })
    .unwrap();
    let email = base::domain::Email::parse("ada@example.com").unwrap();
    let token =
        edge::auth::mint_dev_token(&settings.auth, "sub-ada", &email, Duration::from_secs(600))
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

    let key = service_account_key("acme");
    let created: serde_json::Value = http
        .post(format!(
            "{base}/v1/teams/0190d1c6-0000-7000-8000-000000000001/connections"
        ))
        .bearer_auth(&token)
        .json(&json!({ "name": "bq", "warehouse_type": "bigquery", "credentials": key }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let v: serde_json::Value = http
        .post(format!("{base}/v1/connections/{id}/validate"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "validated", "{v}");
    assert!(stub.token_calls() >= 1, "the key was exchanged for a token");

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let logs = data.0.clone();
    let out = tokio::task::spawn_blocking(move || {
        let _ = child.wait();
        let read = |f: &str| std::fs::read_to_string(logs.join(f)).unwrap();
        format!("{}{}", read("stdout.log"), read("stderr.log"))
    })
    .await
    .unwrap();
    assert!(
        out.contains("connection validated") && out.contains("TRACE"),
        "the logs were captured, at trace level ({} bytes)",
        out.len()
    );
    let private_key = key["private_key"].as_str().unwrap();
    // A line from the middle of the PEM body, and the key id.
    let key_line = private_key.lines().nth(5).unwrap();
    let key_id = key["private_key_id"].as_str().unwrap();
    // Every RS256 assertion starts with this header, base64url-encoded.
    let assertion_header = "eyJhbGciOiJSUzI1NiI";
    for needle in [
        wh.password.as_str(),
        wh.reader_url.as_str(),
        secret,
        token.as_str(),
        key_line,
        key_id,
        STUB_TOKEN,
        assertion_header,
    ] {
        let line = out.lines().find(|l| l.contains(needle));
        assert!(line.is_none(), "a log line carries a secret: {line:?}");
    }
}
