//! `base`: the vocabulary every Bridge crate shares, with no network and no async runtime:
//! SQL dialects and bound values, the domain's newtypes (roles, emails, team settings), field
//! errors, the few cryptographic helpers (hashing, hex, randomness) over aws-lc-rs, and
//! writing a private (0600) file.

pub mod crypto;
pub mod domain;
pub mod fsutil;
pub mod sql;

pub use sql::{Dialect, Param, ParamValue};

use serde::Serialize;
use utoipa::ToSchema;

/// One problem with one input field.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// Where the problem is: a JSON path (`settings.max_bytes_billed`), a path or query
    /// parameter name (`team_id`, `limit`) or a header name.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
