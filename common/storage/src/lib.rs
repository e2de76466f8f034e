//! `storage`: Bridge's own Postgres. The pool ([`db`]), URLs and TLS as libpq's `sslmode`
//! says ([`db_tls`]), the embedded migrations, and a throwaway local cluster for
//! `bridge serve` and tests ([`localpg`]).

pub mod db;
pub mod db_tls;
pub mod localpg;
#[cfg(feature = "migrations")]
pub mod migrations;
