//! The `data` function: one binary for Lambda, Cloud Run and local use.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    services::run_function("data", data::router, false).await
}
