//! `services`: Bridge's domain services, each a struct built from the ports it names and
//! cheap to clone:
//!
//! - [`connections::Connections`]: connections with sealed credentials, and the warehouses
//!   they open (pool, credentials bucket, key ring, warehouse settings);
//! - [`catalog::Catalog`]: scans as jobs, the scanned catalog, live columns (pool,
//!   connections, cache bucket, job runner);
//! - [`dashboards::Dashboards`]: dashboards as stored, and their checks against the
//!   warehouse ([`check`]) (pool, connections, YAML and cache buckets, serving caches);
//! - [`serving::Serving`]: plans, queries through L1/L2 and the warehouse, precompute and
//!   warming (pool, connections, dashboards, cache bucket, serving caches).
//!
//! [`integrity`] compares Postgres's pointers with the buckets' objects and reports drift
//! (never deleting), by hand (`bridge check-storage`) or from the scheduled tick.
//!
//! They fail with [`ServiceError`], mapped to HTTP in one place ([`error`]). [`AppState`] is
//! what the warehouse-facing functions run with: the [`edge::Edge`] and these services,
//! built once; handlers take the one they call through `FromRef`. The teams function does
//! not link this crate.

pub mod caches;
pub mod catalog;
pub mod chat;
pub mod chat_tools;
pub mod check;
pub mod connections;
pub mod dashboards;
pub mod error;
pub mod generate_planner;
pub mod generate_tools;
pub mod integrity;
pub mod jobs;
pub mod observability;
pub mod ready;
pub mod run_stream;
pub mod serving;
pub mod state;
pub mod telemetry;
pub mod usage;

pub use error::{ServiceError, ServiceResult};
pub use state::{AppState, run_function, run_function_with_events};
