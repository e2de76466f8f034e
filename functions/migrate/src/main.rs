//! The `migrate` deploy step. Under the Lambda runtime (`AWS_LAMBDA_RUNTIME_API`) every
//! invocation migrates and answers with the report (what Terraform's `aws_lambda_invocation`
//! reads); anywhere else (a Cloud Run job, a container, a laptop) it migrates once, prints
//! the report as JSON and exits: 0 when the database is up to date, 1 on failure, 2 on bad
//! settings.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use edge::{runtime, telemetry};
use settings::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("migrate: invalid settings: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    let pool = match migrate::pool(&settings) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("migrate: {e:#}");
            return ExitCode::from(2);
        }
    };
    if runtime::on_lambda() {
        tracing::info!("migrating on each invocation, through the Lambda runtime");
        let handler = lambda_http::lambda_runtime::service_fn(
            move |event: lambda_http::LambdaEvent<serde_json::Value>| {
                let pool = pool.clone();
                async move {
                    migrate::on_event(pool, event.payload)
                        .await
                        .map_err(lambda_http::Error::from)
                }
            },
        );
        return match lambda_http::lambda_runtime::run(handler).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("migrate: lambda runtime: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match migrate::apply(&pool).await {
        Ok(report) => {
            tracing::info!(applied = ?report.applied, "{}", report.summary());
            match serde_json::to_string(&report) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("migrate: {e}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("migrate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
