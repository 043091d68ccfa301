//! Shared vocabulary of mobiflux.
//!
//! Every stage imports this crate and nothing else of the others: run identities,
//! the unified table schemas (DESIGN.md §5), secret redaction, fault-injection points and the GBFS/TOMP vehicle vocabularies.
//! Keep it small: no I/O, no heavy dependencies.

pub mod failpoint;
pub mod redact;
pub mod run;
pub mod schema;
pub mod vocab;

pub use run::RunId;
pub use schema::{ColType, Column, TableKind, TableSchema};
