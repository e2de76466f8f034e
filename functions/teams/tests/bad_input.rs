//! Every teams route against malformed JSON, missing and unknown fields, empty and
//! oversized values, and bad ids: each answer is a problem that names the field, and
//! nothing is written.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use testkit::TestApp;

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Case {
    why: &'static str,
    method: &'static str,
    path: &'static str,
    body: Body,
    status: u16,
    code: &'static str,
    /// The field the problem must name, if one.
    field: Option<&'static str>,
}

fn case(
    why: &'static str,
    method: &'static str,
    path: &'static str,
    body: Body,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        why,
        method,
        path,
        body,
        status,
        code,
        field,
    }
}

fn cases() -> Vec<Case> {
    use Body::{Json as J, None as N, Raw};
    let long_name = "n".repeat(101);
    let long_email = format!("{}@example.com", "a".repeat(250));
    let huge = format!(r#"{{"name":"{}"}}"#, "x".repeat(1024 * 1024 + 1)).into_bytes();
    vec![
        // POST /v1/teams
        case(
            "truncated JSON",
            "POST",
            "/v1/teams",
            Raw("application/json", br#"{"name":"#.to_vec()),
            400,
            "malformed_json",
            None,
        ),
        case(
            "not JSON at all",
            "POST",
            "/v1/teams",
            Raw("application/json", b"name=ops".to_vec()),
            400,
            "malformed_json",
            None,
        ),
        case(
            "empty body",
            "POST",
            "/v1/teams",
            Raw("application/json", Vec::new()),
            400,
            "malformed_json",
            None,
        ),
        case(
            "text/plain body",
            "POST",
            "/v1/teams",
            Raw("text/plain", br#"{"name":"x"}"#.to_vec()),
            415,
            "unsupported_media_type",
            None,
        ),
        case(
            "no content type",
            "POST",
            "/v1/teams",
            Raw("", br#"{"name":"x"}"#.to_vec()),
            415,
            "unsupported_media_type",
            None,
        ),
        case(
            "a JSON array",
            "POST",
            "/v1/teams",
            J(json!(["ops"])),
            422,
            "invalid_body",
            Some("body"),
        ),
        case(
            "missing name",
            "POST",
            "/v1/teams",
            J(json!({})),
            422,
            "invalid_body",
            Some("name"),
        ),
        case(
            "unknown field",
            "POST",
            "/v1/teams",
            J(json!({ "name": "x", "colour": "red" })),
            422,
            "invalid_body",
            Some("colour"),
        ),
        case(
            "empty name",
            "POST",
            "/v1/teams",
            J(json!({ "name": "" })),
            422,
            "invalid_body",
            Some("name"),
        ),
        case(
            "blank name",
            "POST",
            "/v1/teams",
            J(json!({ "name": "  \t " })),
            422,
            "invalid_body",
            Some("name"),
        ),
        case(
            "oversized name",
            "POST",
            "/v1/teams",
            J(json!({ "name": long_name })),
            422,
            "invalid_body",
            Some("name"),
        ),
        case(
            "name of the wrong type",
            "POST",
            "/v1/teams",
            J(json!({ "name": 5 })),
            422,
            "invalid_body",
            Some("name"),
        ),
        case(
            "null name",
            "POST",
            "/v1/teams",
            J(json!({ "name": null })),
            422,
            "invalid_body",
            Some("name"),
        ),
        case(
            "byte cap out of range",
            "POST",
            "/v1/teams",
            J(json!({ "name": "x", "settings": { "max_bytes_billed": 1 } })),
            422,
            "invalid_body",
            Some("settings.max_bytes_billed"),
        ),
        case(
            "negative byte cap",
            "POST",
            "/v1/teams",
            J(json!({ "name": "x", "settings": { "max_bytes_billed": -5 } })),
            422,
            "invalid_body",
            Some("settings.max_bytes_billed"),
        ),
        case(
            "unknown setting",
            "POST",
            "/v1/teams",
            J(json!({ "name": "x", "settings": { "nope": 1 } })),
            422,
            "invalid_body",
            Some("settings.nope"),
        ),
        case(
            "body over 1 MiB",
            "POST",
            "/v1/teams",
            Raw("application/json", huge),
            413,
            "payload_too_large",
            None,
        ),
        // GET /v1/teams
        case(
            "limit zero",
            "GET",
            "/v1/teams?limit=0",
            N,
            400,
            "invalid_parameter",
            Some("limit"),
        ),
        case(
            "limit too big",
            "GET",
            "/v1/teams?limit=201",
            N,
            400,
            "invalid_parameter",
            Some("limit"),
        ),
        case(
            "limit not a number",
            "GET",
            "/v1/teams?limit=ten",
            N,
            400,
            "invalid_parameter",
            Some("limit"),
        ),
        case(
            "junk cursor",
            "GET",
            "/v1/teams?cursor=bm9wZQ",
            N,
            400,
            "invalid_parameter",
            Some("cursor"),
        ),
        case(
            "unknown parameter",
            "GET",
            "/v1/teams?sort=name",
            N,
            400,
            "invalid_parameter",
            Some("sort"),
        ),
        // GET/PATCH /v1/teams/{team_id}
        case(
            "team id not a UUID",
            "GET",
            "/v1/teams/ops",
            N,
            400,
            "invalid_parameter",
            Some("team_id"),
        ),
        case(
            "team id a number",
            "GET",
            "/v1/teams/42",
            N,
            400,
            "invalid_parameter",
            Some("team_id"),
        ),
        case(
            "patch with a bad id",
            "PATCH",
            "/v1/teams/nope",
            J(json!({ "name": "x" })),
            400,
            "invalid_parameter",
            Some("team_id"),
        ),
        case(
            "patch to an empty name",
            "PATCH",
            "/v1/teams/{team}",
            J(json!({ "name": "" })),
            422,
            "invalid_body",
            Some("name"),
        ),
        case(
            "patch the slug",
            "PATCH",
            "/v1/teams/{team}",
            J(json!({ "slug": "mine" })),
            422,
            "invalid_body",
            Some("slug"),
        ),
        case(
            "settings not an object",
            "PATCH",
            "/v1/teams/{team}",
            J(json!({ "settings": 5 })),
            422,
            "invalid_body",
            Some("settings"),
        ),
        case(
            "patch unknown setting",
            "PATCH",
            "/v1/teams/{team}",
            J(json!({ "settings": { "x": 1 } })),
            422,
            "invalid_body",
            Some("settings.x"),
        ),
        case(
            "patch malformed",
            "PATCH",
            "/v1/teams/{team}",
            Raw("application/json", b"{".to_vec()),
            400,
            "malformed_json",
            None,
        ),
        // members
        case(
            "members limit",
            "GET",
            "/v1/teams/{team}/members?limit=999",
            N,
            400,
            "invalid_parameter",
            Some("limit"),
        ),
        case(
            "members bad team id",
            "GET",
            "/v1/teams/x/members",
            N,
            400,
            "invalid_parameter",
            Some("team_id"),
        ),
        case(
            "member without email",
            "POST",
            "/v1/teams/{team}/members",
            J(json!({ "role": "viewer" })),
            422,
            "invalid_body",
            Some("email"),
        ),
        case(
            "member without role",
            "POST",
            "/v1/teams/{team}/members",
            J(json!({ "email": "a@example.com" })),
            422,
            "invalid_body",
            Some("role"),
        ),
        case(
            "member with a made-up role",
            "POST",
            "/v1/teams/{team}/members",
            J(json!({ "email": "a@example.com", "role": "owner" })),
            422,
            "invalid_body",
            Some("role"),
        ),
        case(
            "member with a bad email",
            "POST",
            "/v1/teams/{team}/members",
            J(json!({ "email": "not-an-email", "role": "viewer" })),
            422,
            "invalid_body",
            Some("email"),
        ),
        case(
            "member with an empty email",
            "POST",
            "/v1/teams/{team}/members",
            J(json!({ "email": "", "role": "viewer" })),
            422,
            "invalid_body",
            Some("email"),
        ),
        case(
            "member with an oversized email",
            "POST",
            "/v1/teams/{team}/members",
            J(json!({ "email": long_email, "role": "viewer" })),
            422,
            "invalid_body",
            Some("email"),
        ),
        case(
            "member unknown field",
            "POST",
            "/v1/teams/{team}/members",
            J(json!({ "email": "a@example.com", "role": "viewer", "admin": true })),
            422,
            "invalid_body",
            Some("admin"),
        ),
        case(
            "role change with a bad user id",
            "PATCH",
            "/v1/teams/{team}/members/bob",
            J(json!({ "role": "viewer" })),
            400,
            "invalid_parameter",
            Some("user_id"),
        ),
        case(
            "role change without a role",
            "PATCH",
            "/v1/teams/{team}/members/{me}",
            J(json!({})),
            422,
            "invalid_body",
            Some("role"),
        ),
        case(
            "role change to a made-up role",
            "PATCH",
            "/v1/teams/{team}/members/{me}",
            J(json!({ "role": "god" })),
            422,
            "invalid_body",
            Some("role"),
        ),
        case(
            "removal with a bad user id",
            "DELETE",
            "/v1/teams/{team}/members/123",
            N,
            400,
            "invalid_parameter",
            Some("user_id"),
        ),
        case(
            "removal with a bad team id",
            "DELETE",
            "/v1/teams/123/members/{me}",
            N,
            400,
            "invalid_parameter",
            Some("team_id"),
        ),
    ]
}

#[tokio::test]
async fn bad_input_on_every_route_gets_a_problem_naming_the_field() {
    let app = TestApp::spawn(teams::router()).await;
    let ada = app.token("ada@example.com");
    let team = app
        .post("/v1/teams")
        .bearer(&ada)
        .json(&json!({ "name": "Ops" }))
        .send()
        .await
        .json();
    let team_id = team["id"].as_str().unwrap();
    let me = app
        .get(&format!("/v1/teams/{team_id}/members"))
        .bearer(&ada)
        .send()
        .await
        .json()["members"][0]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let snapshot = || async {
        let c = app.db.client().await;
        let row = c
            .query_one(
                "SELECT (SELECT count(*) FROM teams), (SELECT count(*) FROM team_members), \
                 (SELECT count(*) FROM users), (SELECT max(updated_at)::text FROM teams)",
                &[],
            )
            .await
            .unwrap();
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            row.get::<_, Option<String>>(3),
        )
    };
    let before = snapshot().await;

    for c in cases() {
        let path = c.path.replace("{team}", team_id).replace("{me}", &me);
        let req = app.request(c.method.parse().unwrap(), &path).bearer(&ada);
        let req = match c.body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(ct, bytes) => req.raw(ct, bytes),
        };
        let r = req.send().await;
        assert_eq!(
            r.status.as_u16(),
            c.status,
            "{}: {}",
            c.why,
            String::from_utf8_lossy(&r.body)
        );
        let p = r.assert_problem(c.status, c.code);
        if let Some(field) = c.field {
            let named = p["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["field"] == field));
            assert!(named, "{}: expected field `{field}` in {p}", c.why);
            assert!(
                p["detail"].as_str().unwrap().contains(field),
                "{}: detail names the field: {p}",
                c.why
            );
        }
    }

    assert_eq!(
        snapshot().await,
        before,
        "bad input must not change anything"
    );
}
