//! The `catalog` function: one binary for Lambda, Cloud Run and local use.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::app::run_function("catalog", catalog::router, false).await
}
