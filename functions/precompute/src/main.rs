//! The `precompute` function: HTTP routes, plus EventBridge's scheduled events on Lambda.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    services::run_function_with_events("precompute", precompute::router, precompute::on_event).await
}
