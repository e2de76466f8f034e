//! Dashboards as YAML (v1): the spec and its JSON Schema, parsing with positions,
//! validation, compilation into a plan of self-contained queries.

pub mod check;
pub mod compile;
pub mod spec;
pub mod template;
pub mod validate;
pub mod yaml;
