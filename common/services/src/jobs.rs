//! Work that outlives the request that asked for it (a catalog scan): the request records
//! the job in Postgres and hands it to a runner, which answers at once.
//!
//! - Off Lambda (`bridge serve`, Cloud Run, a container) the runner is a task in this
//!   process. (On Cloud Run the service keeps its CPU between requests: see `infra/gcp`.)
//! - On Lambda it is an asynchronous invocation of this same function (`InvocationType:
//!   Event`, signed with SigV4 by the function's own role), whose event — `{"bridge_job":
//!   {…}}` — the function's Lambda entry point runs ([`run`]).
//!
//! Either way a worker can die (a redeploy, a timeout, a crash); jobs say they are alive as
//! they run, and one that went silent is run again or failed by whoever looks next (see
//! `catalog::reap`).

pub use platform::lambda::LambdaInvoker;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::Catalog;

/// A job, as it travels to its worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Scan a connection's catalog: the `scan_runs` row `scan_id`, as worker `worker` (a
    /// lease: a worker that is no longer the row's stops).
    Scan { scan_id: Uuid, worker: Uuid },
}

/// The key of a job event (`{"bridge_job": {"kind": "scan", …}}`).
pub const EVENT_KEY: &str = "bridge_job";

impl Job {
    pub fn to_event(&self) -> serde_json::Value {
        serde_json::json!({ EVENT_KEY: self })
    }

    /// The job in a Lambda event, if it is one.
    pub fn from_event(event: &serde_json::Value) -> Option<Result<Self, String>> {
        let job = event.get(EVENT_KEY)?;
        Some(serde_json::from_value(job.clone()).map_err(|e| format!("a malformed job: {e}")))
    }
}

/// Where jobs run.
pub enum Runner {
    /// A task in this process.
    Local,
    /// An asynchronous invocation of a Lambda function.
    Lambda(LambdaInvoker),
}

impl Runner {
    /// Hands `job` over; returns once it is on its way (not when it is done).
    pub async fn dispatch(&self, catalog: &Catalog, job: Job) -> anyhow::Result<()> {
        match self {
            Runner::Local => {
                let catalog = catalog.clone();
                tokio::spawn(async move {
                    if let Err(e) = run(&catalog, job).await {
                        tracing::error!(error = %format!("{e:#}"), "a job failed");
                    }
                });
                Ok(())
            }
            Runner::Lambda(invoker) => invoker.invoke(&job.to_event()).await,
        }
    }
}

/// Runs `job` here and now (the Lambda entry point, or a local task).
pub async fn run(catalog: &Catalog, job: Job) -> anyhow::Result<serde_json::Value> {
    match job {
        Job::Scan { scan_id, worker } => {
            let outcome = catalog.run_scan(scan_id, worker).await?;
            Ok(serde_json::json!({ "scan_id": scan_id, "outcome": outcome }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_travel_as_events_and_back() {
        let job = Job::Scan {
            scan_id: Uuid::nil(),
            worker: Uuid::max(),
        };
        let event = job.to_event();
        assert_eq!(event["bridge_job"]["kind"], "scan");
        assert_eq!(Job::from_event(&event), Some(Ok(job)));
        assert_eq!(
            Job::from_event(&serde_json::json!({ "rawPath": "/" })),
            None
        );
        assert!(matches!(
            Job::from_event(&serde_json::json!({ "bridge_job": { "kind": "nope" } })),
            Some(Err(_))
        ));
    }
}
