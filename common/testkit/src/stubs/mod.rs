//! Small servers speaking documented REST shapes, for behaviour the emulators lack. Each
//! serves on 127.0.0.1 (a free port), keeps its state in memory, and lives as long as the
//! test's runtime; start one per test.

pub mod bigquery;
pub mod gcpkms;
pub mod gcs;

/// Serves `router` on a free loopback port until the runtime ends; answers `http://addr`.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("binding a stub: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("stub address: {e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// The bearer token of a request, if it carries a non-empty one.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Google's canonical status name for an HTTP code, as its JSON errors carry it.
fn google_status(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}
