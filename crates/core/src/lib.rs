//! Kontor's domain: customers, identities, cases, messages, staff, and the pure rules that
//! govern them (address normalisation, case threading, retry backoff, duplicate requests).
//!
//! This crate does no I/O and must not depend on the store, the server or any channel.

pub mod identity;
pub mod model;
pub mod retry;
pub mod similarity;
pub mod threading;

pub use identity::{normalise_identity, IdentityError, IdentityKind};
pub use model::*;
