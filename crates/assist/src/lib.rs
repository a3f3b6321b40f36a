//! Kontor's digital assistant as pure logic (no I/O but reading and writing model files):
//!
//! - [`language`]: German or English (or another language, or too little text to tell);
//! - [`features`]: a text as hashed word and character n-grams;
//! - [`classifier`]: a multinomial logistic regression on those features, trained here in
//!   Rust, saved as a small file that loads in milliseconds;
//! - [`dataset`] / [`eval`]: labelled CSV files, accuracy, macro-F1 and the worst classes;
//! - [`extract`]: IBANs, BICs, dates, amounts, contacts, addresses, meter readings, numbers;
//! - [`sentiment`]: negative, neutral or positive, negation-aware, with a score;
//! - [`style`]: the style check of outgoing replies (phrase list as data, passive, long sentences);
//! - [`analysis`]: all of it for one message, the intent taxonomy and the default model;
//! - [`rules`]: whether a message meets a rule's conditions, and the business hours.
//!
//! Everything runs offline on the CPU: no model download, no service.

pub mod analysis;
pub mod classifier;
mod data;
pub mod dataset;
pub mod eval;
pub mod extract;
pub mod features;
pub mod language;
pub mod rules;
pub mod sentiment;
pub mod style;
