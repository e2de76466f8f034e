//! The `connections` function: one binary for Lambda, Cloud Run and local use.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::app::run_function("connections", connections::router, false).await
}
