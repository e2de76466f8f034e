//! The `generate` function: one binary for Lambda, Cloud Run and local use.
//!
//! Streaming on Lambda: its `POST /v1/dashboards/generate` answers server-sent events, so
//! the function sits behind a Function URL in `RESPONSE_STREAM` mode (infra/aws), which
//! carries its other routes too.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    services::run_function("generate", generate::router, true).await
}
