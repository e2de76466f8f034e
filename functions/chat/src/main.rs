//! The `chat` function: one binary for Lambda (response streaming), Cloud Run and local use.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    services::run_function("chat", chat::router, true).await
}
