//! The `connections` function: one binary for Lambda, Cloud Run and local use.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    services::run_function("connections", connections::router, false).await
}
