//! Kontor's channel adapters. Each channel lives in its own module with its wire format
//! (parsing, signatures: no I/O) and its transport. The core never names a provider.

pub mod api;
