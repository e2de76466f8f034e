//! The connections function end to end, on a real Postgres (Bridge's own database) and a
//! real Postgres warehouse (the demo data, read through a read-only role).

#![allow(clippy::unwrap_used)]

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};
use testkit::{TestApp, TestWarehouse, service_account_key};

async fn app() -> TestApp {
    TestApp::spawn(teams::router().merge(connections::router())).await
}

/// A team whose admin is `ada`; returns (team id, ada's token).
async fn team(app: &TestApp) -> (String, String) {
    let ada = app.token("ada@example.com");
    let t = app
        .post("/v1/teams")
        .bearer(&ada)
        .json(&json!({ "name": "Data" }))
        .send()
        .await
        .json();
    (t["id"].as_str().unwrap().to_owned(), ada)
}

async fn member(app: &TestApp, admin: &str, team: &str, email: &str, role: &str) -> String {
    app.post(&format!("/v1/teams/{team}/members"))
        .bearer(admin)
        .json(&json!({ "email": email, "role": role }))
        .send()
        .await
        .assert_status(201);
    app.token(email)
}

async fn create(app: &TestApp, token: &str, team: &str, body: Value) -> Value {
    let r = app
        .post(&format!("/v1/teams/{team}/connections"))
        .bearer(token)
        .json(&body)
        .send()
        .await;
    r.assert_status(201);
    r.json()
}

fn postgres_body(name: &str, url: &str) -> Value {
    json!({ "name": name, "warehouse_type": "postgres", "credentials": { "url": url } })
}

/// Everything Bridge keeps about a connection outside the bucket, as text.
async fn row_text(app: &TestApp, id: &str) -> String {
    let c = app.db.client().await;
    let r = c
        .query_one(
            "SELECT to_jsonb(c)::text FROM connections c WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    r.get(0)
}

#[tokio::test]
async fn an_admin_connects_a_postgres_warehouse_and_validates_it() {
    let app = app().await;
    let wh = TestWarehouse::demo().await;
    let (team, ada) = team(&app).await;

    let r = app
        .post(&format!("/v1/teams/{team}/connections"))
        .bearer(&ada)
        .json(&postgres_body("Demo", &wh.reader_url))
        .send()
        .await;
    r.assert_status(201);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let c = r.json();
    let id = c["id"].as_str().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/connections/{id}").as_str())
    );
    assert_eq!(c["status"], "pending_validation");
    assert_eq!(c["details"]["user"], wh.reader.as_str());
    assert_eq!(c["details"]["database"], wh.db.name.as_str());
    assert!(
        !body.contains(&wh.password) && !body.contains("credentials"),
        "{body}"
    );

    let v = app
        .post(&format!("/v1/connections/{id}/validate"))
        .bearer(&ada)
        .send()
        .await;
    v.assert_status(200);
    let v = v.json();
    assert_eq!(v["status"], "validated", "{v}");
    assert!(v["validated_at"].is_string());
    assert_eq!(v["validation_error"], Value::Null);
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{v}"
    );

    let got = app
        .get(&format!("/v1/connections/{id}"))
        .bearer(&ada)
        .send()
        .await
        .json();
    assert_eq!(got["status"], "validated");
}

#[tokio::test]
async fn credentials_are_stored_only_sealed() {
    let app = app().await;
    let wh = TestWarehouse::demo().await;
    let (team, ada) = team(&app).await;
    let c = create(&app, &ada, &team, postgres_body("Demo", &wh.reader_url)).await;
    let id = c["id"].as_str().unwrap();

    let row = row_text(&app, id).await;
    assert!(
        !row.contains(&wh.password),
        "Postgres holds only a pointer: {row}"
    );
    let key: String = app
        .db
        .client()
        .await
        .query_one(
            "SELECT credentials_key FROM connections WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let blob = app.state.buckets.credentials.get(&key).await.unwrap();
    let stored = String::from_utf8_lossy(&blob.bytes);
    assert!(
        !stored.contains(&wh.password) && !stored.contains(&wh.reader),
        "the blob is ciphertext: {stored}"
    );
    let envelope: Value = serde_json::from_slice(&blob.bytes).unwrap();
    assert_eq!(envelope["alg"], "AES-256-GCM");
    assert!(envelope["wrapped_key"].is_string());
}

#[tokio::test]
async fn a_failed_validation_says_why_without_the_secret() {
    let app = app().await;
    let wh = TestWarehouse::demo().await;
    let (team, ada) = team(&app).await;
    let wrong_role = wh
        .reader_url
        .replace(&format!("{}:", wh.reader), "no_such_role:");
    let c = create(&app, &ada, &team, postgres_body("Wrong", &wrong_role)).await;
    let id = c["id"].as_str().unwrap();

    let v = app
        .post(&format!("/v1/connections/{id}/validate"))
        .bearer(&ada)
        .send()
        .await;
    v.assert_status(200);
    let v = v.json();
    assert_eq!(v["status"], "failed");
    let error = v["validation_error"].as_str().unwrap();
    assert!(
        error.contains("connect") && error.contains("no_such_role"),
        "{error}"
    );
    assert!(!v.to_string().contains(&wh.password));
    assert!(!row_text(&app, id).await.contains(&wh.password));
}

#[tokio::test]
async fn an_unreachable_warehouse_leaves_the_status_as_it_was() {
    let app = app().await;
    let wh = TestWarehouse::demo().await;
    let (team, ada) = team(&app).await;
    let c = create(&app, &ada, &team, postgres_body("Demo", &wh.reader_url)).await;
    let id = c["id"].as_str().unwrap().to_owned();
    let v = app
        .post(&format!("/v1/connections/{id}/validate"))
        .bearer(&ada)
        .send()
        .await
        .json();
    assert_eq!(
        (v["status"].as_str(), v["outcome"].as_str()),
        (Some("validated"), Some("validated"))
    );

    // The same credentials, a warehouse that does not answer (nothing listens on the port)
    // or a host that does not resolve: nothing is known about the credentials.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (name, url) in [
        (
            "closed",
            format!(
                "postgres://{}:{}@127.0.0.1:{port}/db",
                wh.reader, wh.password
            ),
        ),
        (
            "nowhere",
            format!(
                "postgres://{}:{}@no-such-host.invalid/db",
                wh.reader, wh.password
            ),
        ),
    ] {
        let c = create(&app, &ada, &team, postgres_body(name, &url)).await;
        let id = c["id"].as_str().unwrap();
        let v = app
            .post(&format!("/v1/connections/{id}/validate"))
            .bearer(&ada)
            .send()
            .await
            .json();
        assert_eq!(v["outcome"], "unreachable", "{name}: {v}");
        assert_eq!(
            v["status"], "pending_validation",
            "{name}: the status is untouched"
        );
        assert_eq!(
            v["checks"][0]["code"], "warehouse_unavailable",
            "{name}: {v}"
        );
        let message = v["checks"][0]["message"].as_str().unwrap();
        assert!(!message.contains("credentials"), "{name}: {message}");
        assert!(!v.to_string().contains(&wh.password));
    }
}

#[tokio::test]
async fn connections_are_listed_newest_first_page_by_page() {
    let app = app().await;
    let (team, ada) = team(&app).await;
    for i in 0..3 {
        create(
            &app,
            &ada,
            &team,
            postgres_body(&format!("c{i}"), "postgres://u:p@db.example.com/x"),
        )
        .await;
    }
    let first = app
        .get(&format!("/v1/teams/{team}/connections?limit=2"))
        .bearer(&ada)
        .send()
        .await
        .json();
    let names: Vec<&str> = first["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c2", "c1"]);
    let next = first["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!(
            "/v1/teams/{team}/connections?limit=2&cursor={next}"
        ))
        .bearer(&ada)
        .send()
        .await
        .json();
    assert_eq!(second["connections"][0]["name"], "c0");
    assert_eq!(second["next_cursor"], Value::Null);
}

#[tokio::test]
async fn deleting_removes_the_row_and_the_sealed_credentials() {
    let app = app().await;
    let (team, ada) = team(&app).await;
    let c = create(
        &app,
        &ada,
        &team,
        postgres_body("Gone", "postgres://u:p@db.example.com/x"),
    )
    .await;
    let id = c["id"].as_str().unwrap();
    let key: String = app
        .db
        .client()
        .await
        .query_one(
            "SELECT credentials_key FROM connections WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);

    app.delete(&format!("/v1/connections/{id}"))
        .bearer(&ada)
        .send()
        .await
        .assert_status(204);

    app.get(&format!("/v1/connections/{id}"))
        .bearer(&ada)
        .send()
        .await
        .assert_problem(404, "connection_not_found");
    assert!(
        app.state.buckets.credentials.get(&key).await.is_err(),
        "the blob is gone"
    );
    app.delete(&format!("/v1/connections/{id}"))
        .bearer(&ada)
        .send()
        .await
        .assert_problem(404, "connection_not_found");
}

#[tokio::test]
async fn a_taken_name_is_a_conflict_and_leaves_nothing_behind() {
    let app = app().await;
    let (team, ada) = team(&app).await;
    create(
        &app,
        &ada,
        &team,
        postgres_body("Same", "postgres://u:p@db.example.com/x"),
    )
    .await;
    app.post(&format!("/v1/teams/{team}/connections"))
        .bearer(&ada)
        .json(&postgres_body("Same", "postgres://u:p@db.example.com/y"))
        .send()
        .await
        .assert_problem(409, "connection_name_taken");
    let rows: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM connections", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_stranger_gets_404_and_members_without_the_role_403() {
    let app = app().await;
    let (team, ada) = team(&app).await;
    let c = create(
        &app,
        &ada,
        &team,
        postgres_body("X", "postgres://u:p@db.example.com/x"),
    )
    .await;
    let id = c["id"].as_str().unwrap();
    let eve = app.token("eve@example.com");
    let viewer = member(&app, &ada, &team, "vi@example.com", "viewer").await;
    let editor = member(&app, &ada, &team, "ed@example.com", "editor").await;
    let body = postgres_body("Y", "postgres://u:p@db.example.com/x");

    let stranger = [
        app.post(&format!("/v1/teams/{team}/connections"))
            .bearer(&eve)
            .json(&body),
        app.get(&format!("/v1/teams/{team}/connections"))
            .bearer(&eve),
        app.get(&format!("/v1/connections/{id}")).bearer(&eve),
        app.post(&format!("/v1/connections/{id}/validate"))
            .bearer(&eve),
        app.delete(&format!("/v1/connections/{id}")).bearer(&eve),
    ];
    for (i, req) in stranger.into_iter().enumerate() {
        let code = if i < 2 {
            "team_not_found"
        } else {
            "connection_not_found"
        };
        req.send().await.assert_problem(404, code);
    }

    app.get(&format!("/v1/connections/{id}"))
        .bearer(&viewer)
        .send()
        .await
        .assert_status(200);
    app.get(&format!("/v1/teams/{team}/connections"))
        .bearer(&viewer)
        .send()
        .await
        .assert_status(200);
    for token in [&viewer, &editor] {
        app.post(&format!("/v1/teams/{team}/connections"))
            .bearer(token)
            .json(&body)
            .send()
            .await
            .assert_problem(403, "insufficient_role");
        app.delete(&format!("/v1/connections/{id}"))
            .bearer(token)
            .send()
            .await
            .assert_problem(403, "insufficient_role");
    }
    app.post(&format!("/v1/connections/{id}/validate"))
        .bearer(&viewer)
        .send()
        .await
        .assert_problem(403, "insufficient_role");
    app.post(&format!("/v1/connections/{id}/validate"))
        .bearer(&editor)
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn bigquery_keys_are_accepted_as_objects_or_base64() {
    let app = app().await;
    let (team, ada) = team(&app).await;
    let key = service_account_key("acme-analytics");
    let c = create(
        &app,
        &ada,
        &team,
        json!({ "name": "BQ", "warehouse_type": "bigquery", "credentials": key }),
    )
    .await;
    assert_eq!(c["details"]["project_id"], "acme-analytics");
    assert_eq!(
        c["details"]["client_email"],
        "bridge-reader@acme-analytics.iam.gserviceaccount.com"
    );
    assert!(!c.to_string().contains("PRIVATE KEY"));

    let b64 = STANDARD.encode(serde_json::to_vec(&service_account_key("acme-two")).unwrap());
    let c = create(
        &app,
        &ada,
        &team,
        json!({ "name": "BQ2", "warehouse_type": "bigquery", "credentials_base64": b64 }),
    )
    .await;
    assert_eq!(c["details"]["project_id"], "acme-two");
    assert!(
        !row_text(&app, c["id"].as_str().unwrap())
            .await
            .contains("PRIVATE")
    );
}

#[tokio::test]
async fn a_malformed_service_account_key_names_every_bad_field() {
    let app = app().await;
    let (team, ada) = team(&app).await;
    let key = json!({
        "type": "authorized_user",
        "project_id": "Not A Project!",
        "client_email": "nope",
        "private_key": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    });
    let p = app
        .post(&format!("/v1/teams/{team}/connections"))
        .bearer(&ada)
        .json(&json!({ "name": "BQ", "warehouse_type": "bigquery", "credentials": key }))
        .send()
        .await
        .assert_problem(422, "invalid_body");
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "credentials.type",
            "credentials.project_id",
            "credentials.client_email",
            "credentials.private_key"
        ]
    );
    assert!(
        !p.to_string().contains("bm90IGEga2V5"),
        "the key is not echoed"
    );

    let p = app
        .post(&format!("/v1/teams/{team}/connections"))
        .bearer(&ada)
        .json(&json!({ "name": "BQ", "warehouse_type": "bigquery", "credentials": {} }))
        .send()
        .await
        .assert_problem(422, "invalid_body");
    assert_eq!(p["errors"].as_array().unwrap().len(), 4, "{p}");
}

#[tokio::test]
async fn tampered_or_swapped_credentials_fail_cleanly() {
    let app = app().await;
    let (team, ada) = team(&app).await;
    let a = create(
        &app,
        &ada,
        &team,
        postgres_body("A", "postgres://a:pa@db.example.com/a"),
    )
    .await;
    let b = create(
        &app,
        &ada,
        &team,
        postgres_body("B", "postgres://b:pb@db.example.com/b"),
    )
    .await;
    let keys: Vec<String> = app
        .db
        .client()
        .await
        .query("SELECT credentials_key FROM connections ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let creds = &app.state.buckets.credentials;

    // B's sealed blob copied over A's: bound to B, so A cannot open it.
    let b_blob = creds.get(&keys[1]).await.unwrap();
    creds.put(&keys[0], b_blob.bytes.clone()).await.unwrap();
    let p = app
        .post(&format!(
            "/v1/connections/{}/validate",
            a["id"].as_str().unwrap()
        ))
        .bearer(&ada)
        .send()
        .await
        .assert_problem(409, "credentials_unreadable");
    assert!(!p.to_string().contains("pb"));

    // One flipped byte of ciphertext.
    let mut env: Value = serde_json::from_slice(&b_blob.bytes).unwrap();
    let mut ct = STANDARD
        .decode(env["ciphertext"].as_str().unwrap())
        .unwrap();
    ct[3] ^= 0x40;
    env["ciphertext"] = json!(STANDARD.encode(ct));
    creds
        .put(&keys[1], serde_json::to_vec(&env).unwrap().into())
        .await
        .unwrap();
    app.post(&format!(
        "/v1/connections/{}/validate",
        b["id"].as_str().unwrap()
    ))
    .bearer(&ada)
    .send()
    .await
    .assert_problem(409, "credentials_unreadable");
}
