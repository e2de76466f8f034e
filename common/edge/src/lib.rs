//! `edge`: the HTTP edge every function shares. Errors as problem+json ([`error`]), extractors
//! that name the offending field ([`extract`]), telemetry, the three runtimes ([`runtime`]),
//! bearer tokens ([`auth`]), membership checks ([`tenancy`]), cursors ([`pagination`]), and
//! the assembly around a function's routes ([`app`]: health, readiness, the OpenAPI document,
//! limits, deadlines, CORS, panics).
//!
//! Its state is [`Edge`]: the settings, Bridge's database and the authenticator. A function
//! that needs more (warehouses, key rings, caches) keeps a state of its own from which an
//! [`Edge`] can be had (`axum::extract::FromRef`).

pub mod app;
pub mod auth;
pub mod conditional;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod pagination;
pub mod ratelimit;
pub mod runtime;
pub mod telemetry;
pub mod tenancy;

pub use app::Edge;
pub use auth::CurrentUser;
pub use error::{ApiError, ApiResult};
