//! Kontor's domain: customers, identities, cases, messages, staff, and the pure rules that
//! govern them (address normalisation, case threading, retry backoff, duplicate requests),
//! with typed values for what would otherwise be a bare number or text: [`Timestamp`] and
//! the ids ([`CaseId`], [`CustomerId`], [`MessageId`], [`UserId`], [`TeamId`]).
//!
//! This crate does no I/O and must not depend on the store, the server or any channel.

pub mod identity;
mod ids;
pub mod model;
pub mod quote;
pub mod retry;
pub mod similarity;
pub mod threading;
mod timestamp;

pub use identity::{normalise_identity, IdentityError, IdentityKind};
pub use ids::{CaseId, CustomerId, MessageId, TeamId, UserId};
pub use model::*;
pub use timestamp::{Timestamp, TimestampError};
