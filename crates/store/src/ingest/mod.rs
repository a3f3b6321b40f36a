//! Inbound messages: identify the customer, thread into a case, append events.
//!
//! - `keys`: idempotency (provider id or client key, fingerprint, repeats);
//! - `rows`: the rows a message writes, one builder and one statement per table for any
//!   number of rows;
//! - `single`: one message at a time (also threading and message rows for replies, notes
//!   and recorded contacts);
//! - `bulk`: a batch of messages in a handful of statements, same rules and events;
//! - here: the writer operations and the store's face (`Store::ingest`, `Store::find_repeat`).

mod bulk;
mod keys;
mod rows;
mod single;

pub(crate) use rows::{insert_events, value_rows, MessageRow, NewEvent};
pub(crate) use single::{insert_message, thread_case};

use tokio::sync::oneshot;

use bulk::ingest_many;
use keys::{key_of, repeat_of_row, KEY_ROW_SQL};
use single::ingest_in;

use crate::writer::{Merge, Tx, WriteOp};
use crate::{params, Store, StoreError};

/// A validated inbound message from any channel (the channel contract's type).
pub use kontor_channel::{InboundMessage, InboundReceipt};

/// The former name of [`InboundMessage`], kept while callers move over.
pub type NewInbound = InboundMessage;

impl Store {
    /// Stores an inbound message; answers after commit. A duplicate (same provider id or
    /// idempotency key from the same client on the same channel, same sender and text)
    /// returns the first message's ids with `created: false` and changes nothing; the same
    /// key with another sender or text is refused with `IdempotencyConflict`.
    pub async fn ingest(&self, msg: NewInbound) -> Result<InboundReceipt, StoreError> {
        let window_us = self.settings().reopen_window.as_micros() as i64;
        let (reply, rx) = oneshot::channel();
        self.submit(Box::new(IngestOp { msg, window_us, out: None, reply }))?;
        rx.await.map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }
}

impl Store {
    /// Whether `msg` repeats a message already stored under its key (provider id or
    /// idempotency key): its receipt (`created: false`) if so, an `IdempotencyConflict` if the
    /// key was used for another message, `None` for a new key. A read only: a caller checks
    /// this before storing attachments' bytes, so a retry stores no second copy.
    pub async fn find_repeat(&self, msg: &InboundMessage) -> Result<Option<InboundReceipt>, StoreError> {
        let Some(key) = key_of(msg) else { return Ok(None) };
        let msg = msg.clone();
        self.read(move |c| {
            let Some(r) =
                c.query_opt(KEY_ROW_SQL, &params![msg.channel.as_str(), msg.idempotency_scope.as_str(), key.as_str()])?
            else {
                return Ok(None);
            };
            if r.req_i64(0, "inbound_keys.message_id")? == 0 {
                return Ok(None);
            }
            repeat_of_row(&r, &msg, &key).map(Some)
        })
        .await
    }
}

/// One inbound message queued for the writer.
struct IngestOp {
    msg: NewInbound,
    window_us: i64,
    out: Option<Result<InboundReceipt, StoreError>>,
    reply: oneshot::Sender<Result<InboundReceipt, StoreError>>,
}

impl WriteOp for IngestOp {
    fn apply(&mut self, tx: &mut Tx<'_>) -> bool {
        let r = ingest_in(tx, &self.msg, self.window_us);
        let ok = r.is_ok();
        self.out = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: &Result<(), StoreError>) {
        crate::writer::answer(self.out, commit, self.reply);
    }

    /// Messages for an explicit case take the single path (their checks may refuse them), and
    /// so do messages with attachments (each gets its own row) and answers to earlier messages
    /// (they look up the case they answer).
    fn merge(&self) -> Option<&'static Merge> {
        (self.msg.case_id.is_none()
            && self.msg.attachments.is_empty()
            && self.msg.refers_to.is_empty()
            && self.msg.case_hint.is_none())
        .then_some(&BULK_INGEST)
    }

    fn split(self: Box<Self>) -> Result<Vec<Box<dyn WriteOp>>, Box<dyn WriteOp>> {
        Err(self)
    }
}

/// The writer's batching hook for inbound messages: several become one [`BulkIngest`].
static BULK_INGEST: Merge = Merge { name: "bulk-ingest", combine: combine_ingests };

fn combine_ingests(ops: Vec<Box<dyn WriteOp>>) -> Vec<Box<dyn WriteOp>> {
    let mut items = Vec::with_capacity(ops.len());
    let mut others: Vec<Box<dyn WriteOp>> = Vec::new();
    for op in ops {
        if !(op.as_ref() as &dyn std::any::Any).is::<IngestOp>() {
            others.push(op);
            continue;
        }
        if let Ok(item) = (op as Box<dyn std::any::Any>).downcast::<IngestOp>() {
            items.push(*item);
        }
    }
    if !items.is_empty() {
        others.insert(0, Box::new(BulkIngest { items }));
    }
    others
}

/// Several inbound messages stored with set-based statements: a handful of round trips per
/// batch instead of per message. If it fails, the writer runs the messages one by one.
struct BulkIngest {
    items: Vec<IngestOp>,
}

impl WriteOp for BulkIngest {
    fn apply(&mut self, tx: &mut Tx<'_>) -> bool {
        let window = self.items.first().map(|i| i.window_us).unwrap_or(0);
        let msgs: Vec<&NewInbound> = self.items.iter().map(|i| &i.msg).collect();
        match ingest_many(tx, &msgs, window) {
            Ok(receipts) => {
                for (item, r) in self.items.iter_mut().zip(receipts) {
                    item.out = Some(r);
                }
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, n = self.items.len(), "Bulk ingest failed; storing one by one.");
                false
            }
        }
    }

    fn finish(self: Box<Self>, commit: &Result<(), StoreError>) {
        for item in self.items {
            Box::new(item).finish(commit);
        }
    }

    fn split(self: Box<Self>) -> Result<Vec<Box<dyn WriteOp>>, Box<dyn WriteOp>> {
        Ok(self
            .items
            .into_iter()
            .map(|mut i| {
                i.out = None;
                Box::new(i) as Box<dyn WriteOp>
            })
            .collect())
    }
}
