//! The vocabulary of SQL that every layer shares: the dialects Bridge speaks and the values
//! it binds.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// SQL dialects Bridge parses and runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Bigquery,
    Postgres,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bigquery => "bigquery",
            Self::Postgres => "postgres",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bigquery" => Some(Self::Bigquery),
            "postgres" => Some(Self::Postgres),
            _ => None,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bound query parameter's value. Parameters are always bound, never spliced into SQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Date(time::Date),
    Timestamp(#[serde(with = "time::serde::rfc3339")] OffsetDateTime),
}

/// A named parameter. BigQuery binds by name (`@name`); Postgres by position (`$1` is the
/// first of the slice).
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub value: ParamValue,
}
