//! Shared vocabulary of mobiflux.
//!
//! Every stage imports this crate and nothing else of the others: run identities,
//! the unified table schemas (DESIGN.md §5), secret redaction and fault-injection points.
//! Keep it small: no I/O, no heavy dependencies.

pub mod failpoint;
pub mod redact;
pub mod run;
pub mod schema;

pub use run::RunId;
pub use schema::{ColType, Column, TableKind, TableSchema};
