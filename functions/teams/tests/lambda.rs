//! The Lambda path: every API Gateway v2 event in `events/teams/` goes through
//! `lambda_http`'s own adapter (what `lambda_http::run` wraps the router in), and again
//! through cargo-lambda's runtime emulator to the real `teams` binary, and must come back as
//! the API Gateway response we expect.
//!
//! Events hold placeholders filled in here: `{{token}}` (a dev token generated for the
//! test), `{{team_id}}` and `{{user_id}}` (created by the test).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use serde_json::{Value, json};
use testkit::{TestApp, assert_lambda_response, cargo_lambda, event_files, lambda_invoke};

/// Each event file and the status its response must carry, in the order they run.
const EXPECTED: &[(&str, u16)] = &[
    ("health", 200),
    ("ready", 200),
    ("create-team", 201),
    ("create-team-base64", 201),
    ("create-team-malformed", 422),
    ("list-teams", 200),
    ("get-team", 200),
    ("get-team-unauthenticated", 401),
    ("patch-team", 200),
    ("list-members", 200),
    ("team-usage", 200),
    ("add-member", 201),
    ("update-member", 200),
    ("remove-member", 204),
];

/// A team with a member, and a token of its admin: what the events' placeholders need.
struct Setup {
    app: TestApp,
    token: String,
    team_id: String,
    user_id: String,
}

async fn setup() -> Setup {
    let app = TestApp::spawn(teams::router()).await;
    let token = app.token("lambda@example.com");
    let team = app
        .post("/v1/teams")
        .bearer(&token)
        .json(&json!({ "name": "Lambda" }))
        .send()
        .await
        .json();
    let team_id = team["id"].as_str().unwrap().to_owned();
    let added = app
        .post(&format!("/v1/teams/{team_id}/members"))
        .bearer(&token)
        .json(&json!({ "email": "member@example.com", "role": "viewer" }))
        .send()
        .await
        .json();
    let user_id = added["user_id"].as_str().unwrap().to_owned();
    let (_, on_disk) = event_files("teams");
    let expected: BTreeSet<String> = EXPECTED.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(
        on_disk, expected,
        "every event file needs an expectation here, and vice versa"
    );
    Setup {
        app,
        token,
        team_id,
        user_id,
    }
}

impl Setup {
    /// The event file `name` with its placeholders filled in.
    fn event(&self, name: &str) -> String {
        std::fs::read_to_string(event_files("teams").0.join(format!("{name}.json")))
            .unwrap()
            .replace("{{token}}", &self.token)
            .replace("{{team_id}}", &self.team_id)
            .replace("{{user_id}}", &self.user_id)
    }

    /// The writes the events made are really there.
    async fn check_writes(&self) {
        let after = self
            .app
            .get(&format!("/v1/teams/{}", self.team_id))
            .bearer(&self.token)
            .send()
            .await
            .json();
        assert_eq!(after["name"], "Data Platform EU");
        assert_eq!(after["settings"]["max_bytes_billed"], 200_000_000);
        let mine = self
            .app
            .get("/v1/teams")
            .bearer(&self.token)
            .send()
            .await
            .json();
        let names: BTreeSet<&str> = mine["teams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains("Data Platform") && names.contains("Growth Analytics"),
            "{names:?}"
        );
    }
}

#[tokio::test]
async fn every_event_file_runs_through_the_lambda_adapter() {
    let s = setup().await;
    for (name, status) in EXPECTED {
        let raw = s.event(name);
        let event: Value = serde_json::from_str(&raw).unwrap();
        let response = lambda_invoke(&s.app.router, &raw).await;
        assert_lambda_response(name, &event, &response, *status);
    }
    s.check_writes().await;
}

/// The same events through cargo-lambda's runtime emulator and `cargo lambda invoke`, served
/// by the real `teams` binary polling the runtime API as it does on Lambda.
#[tokio::test]
async fn every_event_file_runs_through_cargo_lambda_and_the_teams_binary() {
    let s = setup().await;
    let Some(mut rig) = cargo_lambda::start(env!("CARGO_BIN_EXE_teams"), &s.app.env).await else {
        return;
    };
    for (name, status) in EXPECTED {
        let raw = s.event(name);
        let event: Value = serde_json::from_str(&raw).unwrap();
        let response = rig.invoke(&raw).await;
        assert_lambda_response(name, &event, &response, *status);
    }
    s.check_writes().await;
    let log = rig.function_log();
    assert!(
        log.contains("serving through the Lambda runtime"),
        "the binary took the Lambda path: {log}"
    );
    assert!(!log.contains(&s.token), "tokens are never logged");
}
