//! `dashboard`: the dashboard language (YAML v1) with no I/O and no async runtime: the spec
//! and its JSON Schema, YAML read with positions, `ref`/`param` templates, validation that
//! reports every problem at once, and compilation into a plan of self-contained queries.
//! Pure, so that it can be fuzzed and benchmarked alone; checks against a warehouse live in
//! the services that have one.

pub mod compile;
pub mod spec;
pub mod template;
pub mod validate;
pub mod yaml;
