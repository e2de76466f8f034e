//! The developer console: static files under `console/` at the repository's root, embedded
//! in the binary and served by `bridge serve` at `/console` when `CONSOLE_ENABLED` says so
//! (on by default except in production).
//!
//! The console talks to the public API only, with a bearer token like any client. Two
//! conveniences exist for development alone (refused in any other environment): minting a
//! dev token for a typed email (what `bridge token` prints), and loading the demo warehouse
//! (what `bridge demo-warehouse` does) so that it can be connected in one click; the latter
//! needs a valid token like the API.
//!
//! Every console response carries a strict Content-Security-Policy (no inline script or
//! style, everything from this origin), an `ETag` (the SHA-256 of the file, so a reload
//! revalidates with `If-None-Match` and gets 304), and goes through the edge's compression.

use std::{future::Future, pin::Pin, sync::Arc};

use axum::{
    Router,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base::domain::Email;
use edge::{
    Edge,
    auth::{CurrentUser, mint_dev_token},
    error::{ApiError, ApiResult},
    extract::Json,
};
use serde::Deserialize;
use serde_json::{Value, json};
use settings::{Environment, Settings};
use tokio::sync::OnceCell;

/// The console's files: name under `/console/`, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../../console/index.html"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../console/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../console/api.js"),
    ),
    (
        "tiles.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../console/tiles.js"),
    ),
    (
        "sw.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../console/sw.js"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../console/vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../console/vendor/uPlot.min.css"),
    ),
    (
        "vendor/js-yaml.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../console/vendor/js-yaml.min.js"),
    ),
    (
        "vendor/js-yaml.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../../console/vendor/js-yaml.LICENSE"),
    ),
    (
        "vendor/uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../../console/vendor/uPlot.LICENSE"),
    ),
];

/// No inline script or style, no other origin, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Loads the demo warehouse (once per process) and answers its read-only URL.
pub type DemoLoader =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send>> + Send + Sync>;

#[derive(Clone)]
struct Console {
    development: bool,
    settings: Arc<Settings>,
    demo: DemoLoader,
    demo_url: Arc<OnceCell<String>>,
}

/// Whether this process serves the console, and why not.
pub fn enabled(settings: &Settings) -> bool {
    settings.console_enabled
}

/// The console's routes, to merge into `bridge serve`'s when [`enabled`].
pub fn routes<S>(settings: &Settings, demo: DemoLoader) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Edge: axum::extract::FromRef<S>,
{
    let console = Console {
        development: settings.environment == Environment::Development,
        settings: Arc::new(settings.clone()),
        demo,
        demo_url: Arc::new(OnceCell::new()),
    };
    let token = {
        let c = console.clone();
        move |body| dev_token(c.clone(), body)
    };
    let demo = {
        let c = console.clone();
        move |user: CurrentUser| demo_warehouse(c.clone(), user)
    };
    Router::new()
        .route(
            "/console",
            get(|h: HeaderMap| async move { file("index.html", &h) }),
        )
        .route(
            "/console/",
            get(|h: HeaderMap| async move { file("index.html", &h) }),
        )
        .route(
            "/console/{*path}",
            get(|Path(p): Path<String>, h: HeaderMap| async move { file(&p, &h) }),
        )
        .route("/console-dev/token", post(token))
        .route("/console-dev/demo-warehouse", post(demo))
}

fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", &base::crypto::sha256_hex(bytes)[..32])
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// One file, or 404; 304 when the caller holds it already. The ETag is computed per request
/// (a few microseconds for these sizes) rather than cached.
fn file(name: &str, request: &HeaderMap) -> Response {
    let Some((_, content_type, bytes)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::not_found("not_found", "no such console file").into_response();
    };
    let tag = etag(bytes);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            *bytes,
        )
            .into_response()
    };
    let h = response.headers_mut();
    security_headers(h);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    response
}

fn refused_outside_development() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "development_only",
        "this console convenience exists in development only (BRIDGE_ENV=development)",
    )
}

#[derive(Deserialize)]
struct TokenRequest {
    email: String,
}

/// `POST /console-dev/token {"email"}`: a dev token for that email, 12 hours (development only).
async fn dev_token(c: Console, Json(body): Json<TokenRequest>) -> ApiResult<Response> {
    if !c.development {
        return Err(refused_outside_development());
    }
    let email =
        Email::parse(&body.email).map_err(|m| ApiError::invalid_field("email", m.to_string()))?;
    let token = mint_dev_token(
        &c.settings.auth,
        &format!("dev|{email}"),
        &email,
        std::time::Duration::from_secs(12 * 3600),
    )
    .map_err(|_| refused_outside_development())?;
    let mut r = axum::Json(json!({ "token": token })).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `POST /console-dev/demo-warehouse` (a valid token needed): loads the demo warehouse once
/// and answers `{"url"}`, the read-only role's URL, for the console to create a connection
/// with through the public API (development only).
async fn demo_warehouse(c: Console, _user: CurrentUser) -> ApiResult<Response> {
    if !c.development {
        return Err(refused_outside_development());
    }
    let url = c
        .demo_url
        .get_or_try_init(|| (c.demo)())
        .await
        .map_err(ApiError::internal)?;
    let body: Value = json!({ "url": url, "name": "Demo warehouse" });
    let mut r = axum::Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let mut env: HashMap<String, String> = HashMap::from([(
            "BRIDGE_DEV_JWT_SECRET".to_owned(),
            "0123456789abcdef0123456789abcdef".to_owned(),
        )]);
        for (k, v) in vars {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        Settings::from_lookup(|k| env.get(k).cloned()).unwrap()
    }

    #[test]
    fn the_console_is_on_in_development_and_off_in_production_unless_turned_on() {
        assert!(enabled(&settings(&[])));
        assert!(enabled(&settings(&[("BRIDGE_ENV", "test")])));
        assert!(!enabled(&settings(&[("CONSOLE_ENABLED", "false")])));
        let production = [
            ("BRIDGE_ENV", "production"),
            ("AUTH_MODE", "oidc"),
            ("AUTH_ISSUER", "https://issuer.example.com"),
            ("AUTH_AUDIENCE", "bridge"),
            ("KMS_KEY_URI", "awskms://alias/bridge"),
            ("CREDENTIALS_BUCKET", "s3://bridge-test/credentials"),
            ("DASHBOARDS_BUCKET", "s3://bridge-test/dashboards"),
            ("SESSIONS_BUCKET", "s3://bridge-test/sessions"),
            ("CACHE_BUCKET", "s3://bridge-test/cache"),
        ];
        let p = Settings::from_lookup(|k| {
            production
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        });
        let p = match p {
            Ok(p) => p,
            Err(e) => panic!("production settings: {e}"),
        };
        assert!(!enabled(&p));
        let on = Settings::from_lookup(|k| {
            if k == "CONSOLE_ENABLED" {
                return Some("true".to_owned());
            }
            production
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        assert!(enabled(&on));
    }

    #[test]
    fn every_file_is_served_with_its_type_a_strict_csp_and_an_etag() {
        for (name, content_type, bytes) in FILES {
            let r = file(name, &HeaderMap::new());
            assert_eq!(r.status(), 200, "{name}");
            let h = r.headers();
            assert_eq!(h[header::CONTENT_TYPE], *content_type, "{name}");
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP, "{name}");
            assert_eq!(h[header::ETAG], etag(bytes).as_str(), "{name}");
            let mut again = HeaderMap::new();
            again.insert(header::IF_NONE_MATCH, h[header::ETAG].clone());
            assert_eq!(file(name, &again).status(), 304, "{name}");
        }
        assert_eq!(file("../Cargo.toml", &HeaderMap::new()).status(), 404);
        assert!(!CSP.contains("unsafe"));
    }

    #[test]
    fn no_file_inlines_script_or_style() {
        let html = std::str::from_utf8(FILES[0].2).unwrap();
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains("<style"), "no inline style");
        assert!(!html.contains("style=\""), "no style attribute");
        for handler in ["onclick=", "onload=", "onsubmit=", "oninput=", "onchange="] {
            assert!(!html.contains(handler), "no inline handler {handler}");
        }
    }
}
