//! `common`: everything Bridge's functions share: settings, Postgres, auth, errors,
//! telemetry, the HTTP assembly and the runtimes it runs under.
//!
//! Each function crate stays thin: an `OpenApiRouter<AppState>` of its routes, and a `main`
//! that calls [`app::run_function`].

pub mod app;
pub mod auth;
pub mod blob;
pub mod caches;
pub mod catalog;
pub mod connections;
pub mod crypto;
pub mod dashboard;
pub mod dashboards;
pub mod db;
pub mod db_tls;
pub mod domain;
pub mod error;
pub mod extract;
pub mod fsutil;
pub mod gcp;
pub mod jobs;
pub mod keyring;
pub mod localpg;
pub mod pagination;
pub mod runtime;
pub mod serving;
pub mod settings;
pub mod sqlguard;
pub mod telemetry;
pub mod tenancy;
#[cfg(feature = "testing")]
pub mod testing;
pub mod warehouse;

pub use app::AppState;
pub use auth::CurrentUser;
pub use error::{ApiError, ApiResult};
