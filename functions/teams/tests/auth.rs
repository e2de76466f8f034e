//! Authentication: dev HS256 tokens, and OIDC RS256/ES256 tokens verified against a JWKS
//! served by a local identity provider whose keys are generated for each test.

#![allow(clippy::unwrap_used)]

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use testkit::{TestApp, oidc::Idp, oidc::ec_key, oidc::rsa_key, oidc::sign};

// ---------------------------------------------------------------- dev tokens

#[tokio::test]
async fn requests_without_a_usable_token_get_401() {
    let app = TestApp::spawn(teams::router()).await;
    let p = app
        .get("/v1/teams")
        .send()
        .await
        .assert_problem(401, "missing_token");
    assert!(p["detail"].as_str().unwrap().contains("Bearer"));

    let cases: [(&str, &str); 5] = [
        ("Basic YWRhOnB3", "a non-bearer scheme"),
        ("Bearer", "no token"),
        ("Bearer    ", "a blank token"),
        ("Bearer not-a-jwt", "garbage"),
        (
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
            "a made-up signature",
        ),
    ];
    for (header, why) in cases {
        let r = app
            .get("/v1/teams")
            .header("authorization", header)
            .send()
            .await;
        assert_eq!(r.status, 401, "{why}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#),
            "{why}"
        );
        assert_eq!(r.json()["code"], "invalid_token", "{why}");
    }
}

#[tokio::test]
async fn forged_expired_and_misaddressed_dev_tokens_get_401() {
    let app = TestApp::spawn(teams::router()).await;
    let other = TestApp::spawn(teams::router()).await;
    let now = jsonwebtoken::get_current_timestamp();

    let mut expired = app.claims("ada@example.com");
    expired["exp"] = json!(now - 120);
    let mut wrong_aud = app.claims("ada@example.com");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = app.claims("ada@example.com");
    wrong_iss["iss"] = json!("https://evil.example");
    let mut no_sub = app.claims("ada@example.com");
    no_sub.as_object_mut().unwrap().remove("sub");
    let mut not_yet = app.claims("ada@example.com");
    not_yet["nbf"] = json!(now + 600);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(app.claims("ada@example.com").to_string())
    );

    let cases = [
        (
            other.token("ada@example.com"),
            "signed with another secret",
            "signature",
        ),
        (app.sign(&expired), "expired", "expired"),
        (app.sign(&wrong_aud), "for another audience", "audience"),
        (app.sign(&wrong_iss), "from another issuer", "issuer"),
        (app.sign(&no_sub), "without a subject", "claim"),
        (
            app.sign(&not_yet),
            "not valid for ten minutes",
            "not valid yet",
        ),
        (unsigned, "unsigned (alg none)", "JWT"),
    ];
    for (token, why, says) in cases {
        let p = app
            .get("/v1/teams")
            .bearer(&token)
            .send()
            .await
            .assert_problem(401, "invalid_token");
        assert!(p["detail"].as_str().unwrap().contains(says), "{why}: {p}");
    }
    // A valid one still works.
    app.get("/v1/teams")
        .bearer(&app.token("ada@example.com"))
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_user_is_created_once_on_first_sight() {
    let app = TestApp::spawn(teams::router()).await;
    let token = app.token("Ada@Example.com");
    for _ in 0..3 {
        app.get("/v1/teams")
            .bearer(&token)
            .send()
            .await
            .assert_status(200);
    }
    let rows = app
        .db
        .client()
        .await
        .query("SELECT email, issuer, subject FROM users", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "ada@example.com");
    assert_eq!(rows[0].get::<_, String>(1), "bridge-dev");
}

// ---------------------------------------------------------------- OIDC

const AUDIENCE: &str = "bridge-api";

fn claims(issuer: &str, email: &str) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({
        "sub": format!("oidc|{email}"), "email": email, "email_verified": true,
        "iss": issuer, "aud": [AUDIENCE, "other"], "iat": now, "exp": now + 600,
    })
}

async fn oidc_app(idp: &Idp) -> TestApp {
    TestApp::spawn_with(
        teams::router(),
        &[
            ("AUTH_MODE", "oidc"),
            ("AUTH_ISSUER", &idp.issuer),
            ("AUTH_AUDIENCE", AUDIENCE),
        ],
    )
    .await
}

#[tokio::test]
async fn rs256_and_es256_tokens_from_the_issuer_are_accepted() {
    let idp = Idp::start().await;
    let (rsa, ec) = (rsa_key("rsa-1"), ec_key("ec-1"));
    idp.publish(rsa.jwk.clone());
    idp.publish(ec.jwk.clone());
    let app = oidc_app(&idp).await;

    for key in [&rsa, &ec] {
        let token = sign(key, &claims(&idp.issuer, "ada@example.com"));
        app.get("/v1/teams")
            .bearer(&token)
            .send()
            .await
            .assert_status(200);
    }
    assert_eq!(idp.fetches(), 1, "the JWKS is fetched once and cached");
}

#[tokio::test]
async fn bad_oidc_tokens_get_401() {
    let idp = Idp::start().await;
    let good = rsa_key("k1");
    idp.publish(good.jwk.clone());
    let app = oidc_app(&idp).await;
    let forger = rsa_key("k1"); // same kid, different key
    let now = jsonwebtoken::get_current_timestamp();

    let mut expired = claims(&idp.issuer, "ada@example.com");
    expired["exp"] = json!(now - 300);
    let mut wrong_aud = claims(&idp.issuer, "ada@example.com");
    wrong_aud["aud"] = json!("not-bridge");
    let mut not_yet = claims(&idp.issuer, "ada@example.com");
    not_yet["nbf"] = json!(now + 600);
    let wrong_iss = claims("https://elsewhere.example", "ada@example.com");
    let hs256 = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(
            &h,
            &claims(&idp.issuer, "ada@example.com"),
            &EncodingKey::from_secret(b"guess"),
        )
        .unwrap()
    };

    let cases = [
        (
            sign(&forger, &claims(&idp.issuer, "ada@example.com")),
            "forged signature",
        ),
        (sign(&good, &expired), "expired"),
        (sign(&good, &wrong_aud), "wrong audience"),
        (sign(&good, &not_yet), "not valid yet"),
        (sign(&good, &wrong_iss), "wrong issuer"),
        (hs256, "HS256 where RS256/ES256 are required"),
    ];
    for (token, why) in cases {
        let r = app.get("/v1/teams").bearer(&token).send().await;
        assert_eq!(r.status, 401, "{why}: {}", String::from_utf8_lossy(&r.body));
    }
    app.get("/v1/teams")
        .bearer(&sign(&good, &claims(&idp.issuer, "ada@example.com")))
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_unknown_key_id_refreshes_the_jwks() {
    let idp = Idp::start().await;
    let first = rsa_key("2026-01");
    idp.publish(first.jwk.clone());
    let app = TestApp::spawn_with(
        teams::router(),
        &[
            ("AUTH_MODE", "oidc"),
            ("AUTH_ISSUER", &idp.issuer),
            ("AUTH_AUDIENCE", AUDIENCE),
            ("AUTH_JWKS_MIN_REFRESH_SECS", "0"),
        ],
    )
    .await;
    app.get("/v1/teams")
        .bearer(&sign(&first, &claims(&idp.issuer, "ada@example.com")))
        .send()
        .await
        .assert_status(200);
    assert_eq!(idp.fetches(), 1);

    // The issuer rotates in a new key: the first token naming it triggers one refresh.
    let second = ec_key("2026-02");
    idp.publish(second.jwk.clone());
    let token = sign(&second, &claims(&idp.issuer, "bob@example.com"));
    app.get("/v1/teams")
        .bearer(&token)
        .send()
        .await
        .assert_status(200);
    app.get("/v1/teams")
        .bearer(&token)
        .send()
        .await
        .assert_status(200);
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test]
async fn unknown_key_ids_do_not_refetch_within_the_interval() {
    let idp = Idp::start().await;
    let first = rsa_key("2026-01");
    idp.publish(first.jwk.clone());
    let app = oidc_app(&idp).await;
    app.get("/v1/teams")
        .bearer(&sign(&first, &claims(&idp.issuer, "ada@example.com")))
        .send()
        .await
        .assert_status(200);

    // Tokens naming made-up key ids cannot make Bridge hammer the issuer.
    for i in 0..5 {
        let made_up = rsa_key(&format!("made-up-{i}"));
        let token = sign(&made_up, &claims(&idp.issuer, "eve@example.com"));
        app.get("/v1/teams")
            .bearer(&token)
            .send()
            .await
            .assert_problem(401, "invalid_token");
    }
    assert_eq!(idp.fetches(), 1);
}

#[tokio::test]
async fn an_unreachable_issuer_is_an_outage_not_a_401() {
    let idp = Idp::start().await;
    let key = rsa_key("k");
    let app = TestApp::spawn_with(
        teams::router(),
        &[
            ("AUTH_MODE", "oidc"),
            ("AUTH_ISSUER", &idp.issuer),
            ("AUTH_AUDIENCE", AUDIENCE),
            ("AUTH_JWKS_URL", "http://127.0.0.1:9/keys"),
        ],
    )
    .await;
    let p = app
        .get("/v1/teams")
        .bearer(&sign(&key, &claims(&idp.issuer, "ada@example.com")))
        .send()
        .await
        .assert_problem(503, "unavailable");
    assert!(
        !p["detail"].as_str().unwrap().contains("127.0.0.1"),
        "no internals: {p}"
    );
}

#[tokio::test]
async fn an_unverified_oidc_email_does_not_claim_an_invitation() {
    let idp = Idp::start().await;
    let key = ec_key("k");
    idp.publish(key.jwk.clone());
    let app = oidc_app(&idp).await;
    let admin = sign(&key, &claims(&idp.issuer, "ada@example.com"));
    let team = app
        .post("/v1/teams")
        .bearer(&admin)
        .json(&json!({ "name": "T" }))
        .send()
        .await
        .json();
    let id = team["id"].as_str().unwrap();
    app.post(&format!("/v1/teams/{id}/members"))
        .bearer(&admin)
        .json(&json!({ "email": "mallory@example.com", "role": "admin" }))
        .send()
        .await
        .assert_status(201);

    let mut unverified = claims(&idp.issuer, "mallory@example.com");
    unverified["email_verified"] = json!(false);
    let token = sign(&key, &unverified);
    app.get(&format!("/v1/teams/{id}"))
        .bearer(&token)
        .send()
        .await
        .assert_problem(404, "team_not_found");

    let verified = sign(&key, &claims(&idp.issuer, "mallory2@example.com"));
    app.get("/v1/teams")
        .bearer(&verified)
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn not_before_is_checked_within_the_configured_leeway() {
    let app = TestApp::spawn_with(teams::router(), &[("AUTH_LEEWAY_SECS", "5")]).await;
    let now = jsonwebtoken::get_current_timestamp();
    let mut soon = app.claims("ada@example.com");
    soon["nbf"] = json!(now + 60);
    app.get("/v1/teams")
        .bearer(&app.sign(&soon))
        .send()
        .await
        .assert_problem(401, "invalid_token");
    let mut skewed = app.claims("ada@example.com");
    skewed["nbf"] = json!(now + 2);
    app.get("/v1/teams")
        .bearer(&app.sign(&skewed))
        .send()
        .await
        .assert_status(200);
    let e = settings::Settings::from_lookup(|k| match k {
        "AUTH_LEEWAY_SECS" => Some("3600".into()),
        "BRIDGE_DEV_JWT_SECRET" => Some("x".repeat(40)),
        _ => None,
    })
    .unwrap_err();
    assert_eq!(e.variable, "AUTH_LEEWAY_SECS");
}
