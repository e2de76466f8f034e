//! The `catalog` function: one binary for Lambda, Cloud Run and local use. On Lambda it
//! also runs the scans it hands itself as asynchronous invocations (`bridge_job` events).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    services::run_function_with_events("catalog", catalog::router, catalog::on_event).await
}
