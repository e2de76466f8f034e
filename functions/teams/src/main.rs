//! The `teams` function: one binary for Lambda, Cloud Run and local use.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    edge::app::run_function(
        "teams",
        |edge| async { Ok(edge) },
        teams::router::<edge::Edge>,
        false,
    )
    .await
}
