//! `services`: Bridge's domain services over its ports. Connections with sealed credentials
//! and the cached warehouse factory ([`connections`]), the catalog ([`catalog`]), dashboards
//! as stored ([`dashboards`]), checks of a dashboard against its warehouse ([`check`]), data
//! serving with its caches ([`serving`]), work outside requests ([`jobs`]).
//!
//! [`AppState`] is what the warehouse-facing functions run with: the [`edge::Edge`] plus the
//! ports and caches the services use. The teams function does not link this crate.

pub mod caches;
pub mod catalog;
pub mod check;
pub mod connections;
pub mod dashboards;
pub mod error;
pub mod jobs;
pub mod serving;
pub mod state;

pub use error::{ServiceError, ServiceResult};
pub use state::{AppState, run_function, run_function_with_events};
