//! A reader of Server-Sent Events (`GET /api/v1/events/stream`) for tests: one event at a
//! time, each read bounded by a deadline.

use std::time::Instant;

use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::Value;

/// One event of the stream.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// The `id:` field, if it is a number.
    pub id: Option<i64>,
    /// The `data:` lines (joined by newlines) as JSON, or as a JSON string if they are not JSON.
    pub data: Value,
}

/// What reading the next event gave.
#[derive(Debug)]
pub enum SseNext {
    /// An event arrived.
    Event(SseEvent),
    /// None arrived before the deadline.
    Timeout,
    /// The server ended the stream (or the connection broke).
    Ended,
}

/// Reads the events of an open event-stream response.
pub struct SseReader {
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buf: String,
}

impl SseReader {
    /// A reader of `response`'s body (the status and headers are the caller's to check).
    pub fn new(response: reqwest::Response) -> SseReader {
        SseReader { body: response.bytes_stream().map(|c| c.map(|b| b.to_vec())).boxed(), buf: String::new() }
    }

    /// The next event (comments and keep-alives skipped), or why there is none.
    pub async fn next(&mut self, deadline: Instant) -> SseNext {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block) {
                    return SseNext::Event(event);
                }
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return SseNext::Timeout };
            match tokio::time::timeout(left, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n")),
                Ok(Some(Err(_)) | None) => return SseNext::Ended,
                Err(_) => return SseNext::Timeout,
            }
        }
    }
}

/// One event block (without its blank line); `None` for a block with neither id nor data.
fn parse_block(block: &str) -> Option<SseEvent> {
    let mut id = None;
    let mut data = String::new();
    let mut has_data = false;
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("data:") {
            if has_data {
                data.push('\n');
            }
            has_data = true;
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if id.is_none() && data.is_empty() {
        return None;
    }
    let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
    Some(SseEvent { id, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_blocks_parse_into_id_and_json_data() {
        for (block, want) in [
            ("id: 7\ndata: {\"type\":\"x\"}\n", Some((Some(7), json!({ "type": "x" })))),
            ("id:8\ndata:{\"a\":1}\n", Some((Some(8), json!({ "a": 1 })))),
            ("data: eins\ndata: zwei\n", Some((None, json!("eins\nzwei")))),
            (": keep-alive\n", None),
            ("event: ping\n", None),
        ] {
            let got = parse_block(block).map(|e| (e.id, e.data));
            assert_eq!(got, want, "{block:?}");
        }
    }
}
