//! The teams function end to end: its router on a fresh Postgres database per test.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use testkit::TestApp;

async fn app() -> TestApp {
    TestApp::spawn(teams::router()).await
}

async fn create_team(app: &TestApp, token: &str, name: &str) -> Value {
    let r = app
        .post("/v1/teams")
        .bearer(token)
        .json(&json!({ "name": name }))
        .send()
        .await;
    r.assert_status(201);
    r.json()
}

/// Adds `email` to the team with `role` (as `admin_token`) and returns that person's token.
async fn member(
    app: &TestApp,
    admin_token: &str,
    team_id: &str,
    email: &str,
    role: &str,
) -> String {
    app.post(&format!("/v1/teams/{team_id}/members"))
        .bearer(admin_token)
        .json(&json!({ "email": email, "role": role }))
        .send()
        .await
        .assert_status(201);
    app.token(email)
}

/// The user id of the team's first member (its creator).
async fn first_member_id(app: &TestApp, token: &str, team_id: &str) -> String {
    let members = app
        .get(&format!("/v1/teams/{team_id}/members"))
        .bearer(token)
        .send()
        .await;
    members.json()["members"][0]["user_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn creating_a_team_makes_the_caller_its_admin() {
    let app = app().await;
    let ada = app.token("ada@example.com");

    let r = app
        .post("/v1/teams")
        .bearer(&ada)
        .json(&json!({ "name": "Data Platform" }))
        .send()
        .await;

    r.assert_status(201);
    let team = r.json();
    assert_eq!(team["name"], "Data Platform");
    assert_eq!(team["slug"], "data-platform");
    assert_eq!(team["role"], "admin");
    assert_eq!(team["settings"], json!({}));
    let id = team["id"].as_str().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/teams/{id}").as_str())
    );
    let got = app
        .get(&format!("/v1/teams/{id}"))
        .bearer(&ada)
        .send()
        .await;
    got.assert_status(200);
    assert_eq!(got.json()["slug"], "data-platform");
}

#[tokio::test]
async fn a_slug_clash_gets_a_distinct_slug() {
    let app = app().await;
    let ada = app.token("ada@example.com");
    let bob = app.token("bob@example.com");

    let first = create_team(&app, &ada, "Growth").await;
    let second = create_team(&app, &bob, "growth!").await;
    let third = create_team(&app, &ada, "GROWTH").await;

    assert_eq!(first["slug"], "growth");
    let (s2, s3) = (
        second["slug"].as_str().unwrap(),
        third["slug"].as_str().unwrap(),
    );
    assert!(
        s2.starts_with("growth-") && s3.starts_with("growth-"),
        "{s2} {s3}"
    );
    assert_ne!(s2, s3);
}

#[tokio::test]
async fn listing_teams_shows_only_mine_page_by_page() {
    let app = app().await;
    let ada = app.token("ada@example.com");
    let bob = app.token("bob@example.com");
    for name in ["Charlie", "Alpha", "Bravo"] {
        create_team(&app, &ada, name).await;
    }
    create_team(&app, &bob, "Bob's own").await;

    let first = app.get("/v1/teams?limit=2").bearer(&ada).send().await;
    first.assert_status(200);
    let first = first.json();
    let names: Vec<&str> = first["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Alpha", "Bravo"]);
    let cursor = first["next_cursor"].as_str().unwrap();

    let second = app
        .get(&format!("/v1/teams?limit=2&cursor={cursor}"))
        .bearer(&ada)
        .send()
        .await
        .json();
    let names: Vec<&str> = second["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Charlie"]);
    assert_eq!(second["next_cursor"], Value::Null);

    let bobs = app.get("/v1/teams").bearer(&bob).send().await.json();
    assert_eq!(bobs["teams"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_stranger_gets_404_on_every_team_route() {
    let app = app().await;
    let ada = app.token("ada@example.com");
    let eve = app.token("eve@example.com");
    let team = create_team(&app, &ada, "Secret").await;
    let id = team["id"].as_str().unwrap();
    let ada_id = first_member_id(&app, &ada, id).await;

    let attempts = [
        app.get(&format!("/v1/teams/{id}")).bearer(&eve),
        app.patch(&format!("/v1/teams/{id}"))
            .bearer(&eve)
            .json(&json!({ "name": "Mine" })),
        app.get(&format!("/v1/teams/{id}/members")).bearer(&eve),
        app.post(&format!("/v1/teams/{id}/members"))
            .bearer(&eve)
            .json(&json!({ "email": "eve@example.com", "role": "admin" })),
        app.patch(&format!("/v1/teams/{id}/members/{ada_id}"))
            .bearer(&eve)
            .json(&json!({ "role": "viewer" })),
        app.delete(&format!("/v1/teams/{id}/members/{ada_id}"))
            .bearer(&eve),
    ];
    for attempt in attempts {
        let p = attempt.send().await.assert_problem(404, "team_not_found");
        assert_eq!(p["detail"], "no such team");
    }
    // And a team that does not exist answers exactly the same.
    app.get("/v1/teams/0190d1c6-0000-7000-8000-000000000000")
        .bearer(&eve)
        .send()
        .await
        .assert_problem(404, "team_not_found");
}

#[tokio::test]
async fn members_without_the_admin_role_get_403_on_admin_routes() {
    let app = app().await;
    let ada = app.token("ada@example.com");
    let team = create_team(&app, &ada, "Ops").await;
    let id = team["id"].as_str().unwrap();
    let ed = member(&app, &ada, id, "ed@example.com", "editor").await;
    let vi = member(&app, &ada, id, "vi@example.com", "viewer").await;
    let members = app
        .get(&format!("/v1/teams/{id}/members"))
        .bearer(&ed)
        .send()
        .await;
    members.assert_status(200);
    let ada_id = members.json()["members"][0]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();

    for token in [&ed, &vi] {
        app.get(&format!("/v1/teams/{id}"))
            .bearer(token)
            .send()
            .await
            .assert_status(200);
        let denied = [
            app.patch(&format!("/v1/teams/{id}"))
                .bearer(token)
                .json(&json!({ "name": "Mine" })),
            app.post(&format!("/v1/teams/{id}/members"))
                .bearer(token)
                .json(&json!({ "email": "x@example.com", "role": "viewer" })),
            app.patch(&format!("/v1/teams/{id}/members/{ada_id}"))
                .bearer(token)
                .json(&json!({ "role": "viewer" })),
            app.delete(&format!("/v1/teams/{id}/members/{ada_id}"))
                .bearer(token),
        ];
        for attempt in denied {
            let p = attempt
                .send()
                .await
                .assert_problem(403, "insufficient_role");
            assert!(p["detail"].as_str().unwrap().contains("admin"), "{p}");
        }
    }
}

#[tokio::test]
async fn admins_rename_and_change_settings_as_a_merge_patch() {
    let app = app().await;
    let ada = app.token("ada@example.com");
    let team = create_team(&app, &ada, "Finance").await;
    let uri = format!("/v1/teams/{}", team["id"].as_str().unwrap());

    let r = app
        .patch(&uri)
        .bearer(&ada)
        .json(&json!({ "settings": { "max_bytes_billed": 50_000_000 } }))
        .send()
        .await;
    r.assert_status(200);
    assert_eq!(
        r.json()["settings"],
        json!({ "max_bytes_billed": 50_000_000 })
    );
    assert_eq!(r.json()["name"], "Finance");

    let r = app
        .patch(&uri)
        .bearer(&ada)
        .json(&json!({ "name": "  Finance & Risk " }))
        .send()
        .await
        .json();
    assert_eq!(r["name"], "Finance & Risk");
    assert_eq!(r["slug"], "finance", "the slug is stable across renames");
    assert_eq!(r["settings"]["max_bytes_billed"], 50_000_000);

    let r = app
        .patch(&uri)
        .bearer(&ada)
        .json(&json!({ "settings": { "max_bytes_billed": null } }))
        .send()
        .await
        .json();
    assert_eq!(r["settings"], json!({}));

    let unchanged = app.patch(&uri).bearer(&ada).json(&json!({})).send().await;
    unchanged.assert_status(200);
    assert_eq!(unchanged.json()["updated_at"], r["updated_at"]);
}

#[tokio::test]
async fn someone_added_by_email_joins_on_first_sign_in() {
    let app = app().await;
    let ada = app.token("ada@example.com");
    let team = create_team(&app, &ada, "Analytics").await;
    let id = team["id"].as_str().unwrap();

    let added = app
        .post(&format!("/v1/teams/{id}/members"))
        .bearer(&ada)
        .json(&json!({ "email": " Newcomer@Example.com ", "role": "editor" }))
        .send()
        .await;
    added.assert_status(201);
    let added = added.json();
    assert_eq!(added["email"], "newcomer@example.com");
    assert_eq!(added["pending"], true);

    let newcomer = app.token("newcomer@example.com");
    let r = app
        .get(&format!("/v1/teams/{id}"))
        .bearer(&newcomer)
        .send()
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["role"], "editor");
    let members = app
        .get(&format!("/v1/teams/{id}/members"))
        .bearer(&ada)
        .send()
        .await
        .json();
    let row = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "newcomer@example.com")
        .unwrap()
        .clone();
    assert_eq!(row["pending"], false);
    assert_eq!(
        row["user_id"], added["user_id"],
        "the invitation became their account"
    );
}

#[tokio::test]
async fn adding_an_existing_member_is_a_conflict() {
    let app = app().await;
    let ada = app.token("ada@example.com");
    let team = create_team(&app, &ada, "Sales").await;
    let id = team["id"].as_str().unwrap();
    member(&app, &ada, id, "bob@example.com", "viewer").await;

    app.post(&format!("/v1/teams/{id}/members"))
        .bearer(&ada)
        .json(&json!({ "email": "BOB@example.com", "role": "admin" }))
        .send()
        .await
        .assert_problem(409, "already_member");
    app.post(&format!("/v1/teams/{id}/members"))
        .bearer(&ada)
        .json(&json!({ "email": "ada@example.com", "role": "viewer" }))
        .send()
        .await
        .assert_problem(409, "already_member");
}

#[tokio::test]
async fn the_last_admin_can_be_neither_removed_nor_demoted() {
    let app = app().await;
    let ada = app.token("ada@example.com");
    let team = create_team(&app, &ada, "Core").await;
    let id = team["id"].as_str().unwrap();
    let ada_id = first_member_id(&app, &ada, id).await;

    app.delete(&format!("/v1/teams/{id}/members/{ada_id}"))
        .bearer(&ada)
        .send()
        .await
        .assert_problem(409, "last_admin");
    app.patch(&format!("/v1/teams/{id}/members/{ada_id}"))
        .bearer(&ada)
        .json(&json!({ "role": "editor" }))
        .send()
        .await
        .assert_problem(409, "last_admin");

    // With a second admin, the first may step down and then leave.
    let bob = member(&app, &ada, id, "bob@example.com", "admin").await;
    let r = app
        .patch(&format!("/v1/teams/{id}/members/{ada_id}"))
        .bearer(&bob)
        .json(&json!({ "role": "viewer" }))
        .send()
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["role"], "viewer");
    app.delete(&format!("/v1/teams/{id}/members/{ada_id}"))
        .bearer(&ada)
        .send()
        .await
        .assert_status(204);
    app.get(&format!("/v1/teams/{id}"))
        .bearer(&ada)
        .send()
        .await
        .assert_problem(404, "team_not_found");
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let app = app().await;
    let ada = app.token("ada@example.com");
    let team = create_team(&app, &ada, "Race").await;
    let id = team["id"].as_str().unwrap();
    let bob = member(&app, &ada, id, "bob@example.com", "admin").await;
    let members = app
        .get(&format!("/v1/teams/{id}/members"))
        .bearer(&ada)
        .send()
        .await
        .json();
    let ids: Vec<String> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap().to_owned())
        .collect();

    let body = json!({ "role": "viewer" });
    let (a, b) = tokio::join!(
        app.patch(&format!("/v1/teams/{id}/members/{}", ids[1]))
            .bearer(&ada)
            .json(&body)
            .send(),
        app.patch(&format!("/v1/teams/{id}/members/{}", ids[0]))
            .bearer(&bob)
            .json(&body)
            .send(),
    );

    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    // Whoever goes second is either no longer an admin (403) or would leave none (409).
    assert!(
        statuses == [200, 403] || statuses == [200, 409],
        "{statuses:?}"
    );
    let admins = app
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM team_members WHERE team_id = $1::text::uuid AND role = 'admin'",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(admins.get::<_, i64>(0), 1);
}

#[tokio::test]
async fn members_may_leave_and_admins_may_remove_others() {
    let app = app().await;
    let ada = app.token("ada@example.com");
    let team = create_team(&app, &ada, "Leavers").await;
    let id = team["id"].as_str().unwrap();
    let vi = member(&app, &ada, id, "vi@example.com", "viewer").await;
    member(&app, &ada, id, "ed@example.com", "editor").await;
    let members = app
        .get(&format!("/v1/teams/{id}/members"))
        .bearer(&vi)
        .send()
        .await
        .json();
    let find = |email: &str| {
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == email)
            .unwrap()["user_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (vi_id, ed_id) = (find("vi@example.com"), find("ed@example.com"));

    app.delete(&format!("/v1/teams/{id}/members/{ed_id}"))
        .bearer(&vi)
        .send()
        .await
        .assert_problem(403, "insufficient_role");
    app.delete(&format!("/v1/teams/{id}/members/{vi_id}"))
        .bearer(&vi)
        .send()
        .await
        .assert_status(204);
    app.delete(&format!("/v1/teams/{id}/members/{ed_id}"))
        .bearer(&ada)
        .send()
        .await
        .assert_status(204);
    app.delete(&format!("/v1/teams/{id}/members/{ed_id}"))
        .bearer(&ada)
        .send()
        .await
        .assert_problem(404, "member_not_found");
    let left = app
        .get(&format!("/v1/teams/{id}/members"))
        .bearer(&ada)
        .send()
        .await
        .json();
    assert_eq!(left["members"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn members_are_listed_page_by_page() {
    let app = app().await;
    let ada = app.token("ada@example.com");
    let team = create_team(&app, &ada, "Big").await;
    let id = team["id"].as_str().unwrap();
    for i in 0..4 {
        member(&app, &ada, id, &format!("m{i}@example.com"), "viewer").await;
    }
    let mut seen = Vec::new();
    let mut uri = format!("/v1/teams/{id}/members?limit=2");
    loop {
        let page = app.get(&uri).bearer(&ada).send().await.json();
        seen.extend(
            page["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["email"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/teams/{id}/members?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "ada@example.com",
            "m0@example.com",
            "m1@example.com",
            "m2@example.com",
            "m3@example.com"
        ]
    );
}
