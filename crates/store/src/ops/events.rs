//! Reading the event log.

use kontor_core::Event;

use crate::db::Row;
use crate::{format_ts, params, Store, StoreError};

pub(crate) fn events_from_rows(rows: &[Row]) -> Vec<Event> {
    rows.iter()
        .map(|r| Event {
            id: r.i64(0),
            kind: r.text(1),
            case_id: r.opt_i64(2),
            customer_id: r.opt_i64(3),
            payload: serde_json::from_str(&r.text(4)).unwrap_or(serde_json::Value::Null),
            created_at: format_ts(r.i64(5)),
        })
        .collect()
}

impl Store {
    /// Events with id greater than `after`, oldest first, at most `limit`.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>, StoreError> {
        self.read(move |c| {
            let rows = c.query(
                "SELECT id, kind, case_id, customer_id, payload, created_at FROM events WHERE id > ? ORDER BY id LIMIT ?",
                &params![after, limit.clamp(1, 1000)],
            )?;
            Ok(events_from_rows(&rows))
        })
        .await
    }

    /// The newest event id in the database.
    pub async fn max_event_id(&self) -> Result<i64, StoreError> {
        self.read(|c| Ok(c.query_opt("SELECT COALESCE(MAX(id), 0) FROM events", &[])?.map(|r| r.i64(0)).unwrap_or(0)))
            .await
    }
}
