//! Every connections route against malformed and hostile input: problems that name the
//! field, and nothing written.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use testkit::TestApp;

struct Case {
    why: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    raw: Option<&'static str>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn c(
    why: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        why,
        method,
        path,
        body,
        raw: None,
        status,
        code,
        field,
    }
}

fn cases() -> Vec<Case> {
    let pg = |url: &str| {
        Some(json!({ "name": "x", "warehouse_type": "postgres", "credentials": { "url": url } }))
    };
    let create = "/v1/teams/{team}/connections";
    vec![
        Case {
            raw: Some("{\"name\":"),
            ..c(
                "truncated JSON",
                "POST",
                create,
                None,
                400,
                "malformed_json",
                None,
            )
        },
        c(
            "missing everything",
            "POST",
            create,
            Some(json!({})),
            422,
            "invalid_body",
            Some("name"),
        ),
        c(
            "unknown warehouse",
            "POST",
            create,
            Some(json!({ "name": "x", "warehouse_type": "snowflake", "credentials": {} })),
            422,
            "invalid_body",
            Some("warehouse_type"),
        ),
        c(
            "unknown field",
            "POST",
            create,
            Some(
                json!({ "name": "x", "warehouse_type": "postgres", "credentials": {}, "secret": 1 }),
            ),
            422,
            "invalid_body",
            Some("secret"),
        ),
        c(
            "no credentials",
            "POST",
            create,
            Some(json!({ "name": "x", "warehouse_type": "postgres" })),
            422,
            "invalid_body",
            Some("credentials"),
        ),
        c(
            "empty name",
            "POST",
            create,
            Some(
                json!({ "name": " ", "warehouse_type": "postgres", "credentials": { "url": "postgres://u@h/d" } }),
            ),
            422,
            "invalid_body",
            Some("name"),
        ),
        c(
            "oversized name",
            "POST",
            create,
            Some(
                json!({ "name": "n".repeat(101), "warehouse_type": "postgres", "credentials": { "url": "postgres://u@h/d" } }),
            ),
            422,
            "invalid_body",
            Some("name"),
        ),
        c(
            "credentials not an object",
            "POST",
            create,
            Some(
                json!({ "name": "x", "warehouse_type": "postgres", "credentials": "postgres://u@h/d" }),
            ),
            422,
            "invalid_body",
            Some("credentials"),
        ),
        c(
            "url missing",
            "POST",
            create,
            Some(json!({ "name": "x", "warehouse_type": "postgres", "credentials": {} })),
            422,
            "invalid_body",
            Some("credentials.url"),
        ),
        c(
            "not a postgres URL",
            "POST",
            create,
            pg("mysql://u@h/d"),
            422,
            "invalid_body",
            Some("credentials.url"),
        ),
        c(
            "URL without database",
            "POST",
            create,
            pg("postgres://u@h"),
            422,
            "invalid_body",
            Some("credentials.url"),
        ),
        c(
            "URL without user",
            "POST",
            create,
            pg("postgres://h/d"),
            422,
            "invalid_body",
            Some("credentials.url"),
        ),
        c(
            "extra credential field",
            "POST",
            create,
            Some(
                json!({ "name": "x", "warehouse_type": "postgres", "credentials": { "url": "postgres://u@h/d", "password": "p" } }),
            ),
            422,
            "invalid_body",
            Some("credentials.password"),
        ),
        c(
            "base64 for postgres",
            "POST",
            create,
            Some(
                json!({ "name": "x", "warehouse_type": "postgres", "credentials_base64": "e30=" }),
            ),
            422,
            "invalid_body",
            Some("credentials_base64"),
        ),
        c(
            "base64 not base64",
            "POST",
            create,
            Some(json!({ "name": "x", "warehouse_type": "bigquery", "credentials_base64": "%%%" })),
            422,
            "invalid_body",
            Some("credentials_base64"),
        ),
        c(
            "base64 not JSON",
            "POST",
            create,
            Some(
                json!({ "name": "x", "warehouse_type": "bigquery", "credentials_base64": "bm90IGpzb24=" }),
            ),
            422,
            "invalid_body",
            Some("credentials_base64"),
        ),
        c(
            "both forms",
            "POST",
            create,
            Some(
                json!({ "name": "x", "warehouse_type": "bigquery", "credentials": {}, "credentials_base64": "e30=" }),
            ),
            422,
            "invalid_body",
            Some("credentials_base64"),
        ),
        c(
            "key of the wrong type",
            "POST",
            create,
            Some(
                json!({ "name": "x", "warehouse_type": "bigquery", "credentials": { "type": 5 } }),
            ),
            422,
            "invalid_body",
            Some("credentials.type"),
        ),
        c(
            "bad team id",
            "POST",
            "/v1/teams/nope/connections",
            pg("postgres://u@h/d"),
            400,
            "invalid_parameter",
            Some("team_id"),
        ),
        c(
            "list: bad limit",
            "GET",
            create,
            None,
            400,
            "invalid_parameter",
            Some("limit"),
        ),
        c(
            "get: bad id",
            "GET",
            "/v1/connections/42",
            None,
            400,
            "invalid_parameter",
            Some("id"),
        ),
        c(
            "validate: bad id",
            "POST",
            "/v1/connections/x/validate",
            None,
            400,
            "invalid_parameter",
            Some("id"),
        ),
        c(
            "delete: bad id",
            "DELETE",
            "/v1/connections/x",
            None,
            400,
            "invalid_parameter",
            Some("id"),
        ),
        c(
            "get: unknown id",
            "GET",
            "/v1/connections/0190d1c6-0000-7000-8000-000000000000",
            None,
            404,
            "connection_not_found",
            None,
        ),
    ]
}

#[tokio::test]
async fn bad_input_on_every_route_gets_a_problem_naming_the_field() {
    let app = TestApp::spawn(teams::router().merge(connections::router())).await;
    let ada = app.token("ada@example.com");
    let team = app
        .post("/v1/teams")
        .bearer(&ada)
        .json(&json!({ "name": "T" }))
        .send()
        .await
        .json();
    let team_id = team["id"].as_str().unwrap();

    for case in cases() {
        let mut path = case.path.replace("{team}", team_id);
        if case.why == "list: bad limit" {
            path.push_str("?limit=0");
        }
        let req = app
            .request(case.method.parse().unwrap(), &path)
            .bearer(&ada);
        let req = match (case.body, case.raw) {
            (Some(v), _) => req.json(&v),
            (None, Some(raw)) => req.raw("application/json", raw),
            (None, None) => req,
        };
        let r = req.send().await;
        assert_eq!(
            r.status.as_u16(),
            case.status,
            "{}: {}",
            case.why,
            String::from_utf8_lossy(&r.body)
        );
        let p = r.assert_problem(case.status, case.code);
        if let Some(field) = case.field {
            assert!(
                p["errors"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["field"] == field)),
                "{}: expected `{field}` in {p}",
                case.why
            );
        }
    }
    let rows: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM connections", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "nothing was written");
}
