//! `platform`: the ports Bridge reaches the world through, and their adapters. Object
//! storage ([`blob`]), envelope encryption ([`keyring`]), Google access tokens ([`gcp`]) and
//! the warehouse port with its BigQuery and Postgres adapters ([`warehouse`]). Nothing here
//! knows about HTTP routes or Bridge's tables.

pub mod blob;
pub mod gcp;
pub mod keyring;
pub mod lambda;
pub mod telemetry;
pub mod warehouse;
