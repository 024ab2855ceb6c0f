//! Evidence with its chain of custody, the blob store its files live in, and legal holds.
//!
//! * [`hold_check::LegalHoldCheck`] — the one implementation of `custos_core::HoldCheck`: every
//!   deleting path of every crate asks it, inside its own transaction, whether a hold applies.

pub mod hold_check;

pub use hold_check::LegalHoldCheck;
