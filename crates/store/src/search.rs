//! Full-text search over messages and customers with the database's own engine
//! (SQLite FTS5; PostgreSQL `tsvector` with German and English configurations).

use kontor_core::Timestamp;

use crate::db::{Conn, Row};
use crate::{params, Backend, Store, StoreError};

/// Stand-ins for `<` and `>` while PostgreSQL's `ts_headline` (which strips anything that
/// looks like a tag) works on the text; the same characters in the text itself are dropped
/// before (see `PG_TEXT`).
const LT: char = '\u{e}';
const GT: char = '\u{f}';

/// PostgreSQL expression for a text column as `ts_headline` gets it: `<` and `>` become the
/// stand-ins, stand-in characters already in the text are dropped.
fn pg_text(column: &str) -> String {
    format!("translate({column}, '<>' || chr(14) || chr(15), chr(14) || chr(15))")
}

/// The start and end markers the database puts around matches in a snippet. They hold a
/// random nonce per search, so a stored text cannot contain them: markup in a snippet can
/// only be Kontor's own (the text's control characters are dropped as well).
struct Markers {
    start: String,
    end: String,
}

impl Markers {
    fn new() -> Markers {
        let nonce: u64 = rand::random();
        Markers { start: format!("\u{2}{nonce:016x}\u{3}"), end: format!("\u{3}{nonce:016x}\u{2}") }
    }
}

/// A message that matched.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MessageHit {
    pub message_id: i64,
    pub case_id: i64,
    pub customer_id: i64,
    pub subject: Option<String>,
    /// HTML-escaped excerpt with the matches in `<mark>`.
    pub snippet: String,
    pub rank: f64,
    pub created_at: Timestamp,
}

/// A customer that matched.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CustomerHit {
    pub customer_id: i64,
    pub name: Option<String>,
    /// HTML-escaped name and addresses with the matches in `<mark>`.
    pub snippet: String,
    pub rank: f64,
}

/// Search results, best first in each list.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    pub query: String,
    pub customers: Vec<CustomerHit>,
    pub messages: Vec<MessageHit>,
}

/// Splits a user query into plain word tokens (letters and digits only).
fn tokens(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).take(16).map(|t| t.to_lowercase()).collect()
}

/// Escapes HTML, drops control characters (but tabs and line breaks) and turns the
/// highlight markers into balanced `<mark>` tags. `stand_ins`: the text went through
/// [`pg_text`], so [`LT`] and [`GT`] stand for `<` and `>`.
fn highlight(raw: &str, markers: &Markers, stand_ins: bool) -> String {
    let mut out = String::with_capacity(raw.len() + 16);
    let mut open = false;
    let mut rest = raw;
    loop {
        let next_start = rest.find(&markers.start);
        let next_end = rest.find(&markers.end);
        let (cut, marker) = match (next_start, next_end) {
            (Some(a), Some(b)) if a < b => (a, Some(true)),
            (Some(a), None) => (a, Some(true)),
            (_, Some(b)) => (b, Some(false)),
            (None, None) => (rest.len(), None),
        };
        escape_into(&mut out, &rest[..cut], stand_ins);
        match marker {
            Some(true) => {
                if !open {
                    out.push_str("<mark>");
                    open = true;
                }
                rest = &rest[cut + markers.start.len()..];
            }
            Some(false) => {
                if open {
                    out.push_str("</mark>");
                    open = false;
                }
                rest = &rest[cut + markers.end.len()..];
            }
            None => break,
        }
    }
    if open {
        out.push_str("</mark>");
    }
    out
}

/// Appends `text` HTML-escaped and without control characters.
fn escape_into(out: &mut String, text: &str, stand_ins: bool) {
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            LT if stand_ins => out.push_str("&lt;"),
            GT if stand_ins => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
}

impl Store {
    /// Ranked matches for `q` (every word must match, as a prefix).
    pub async fn search(&self, q: String, limit: i64) -> Result<SearchResults, StoreError> {
        let toks = tokens(&q);
        if toks.is_empty() {
            return Ok(SearchResults { query: q, customers: vec![], messages: vec![] });
        }
        let limit = limit.clamp(1, 100);
        self.read(move |c| {
            let markers = Markers::new();
            let (customers, messages) = match c.backend() {
                Backend::Sqlite => sqlite_search(c, &toks, limit, &markers)?,
                Backend::Postgres => pg_search(c, &toks, limit, &markers)?,
            };
            Ok(SearchResults { query: q, customers, messages })
        })
        .await
    }
}

type Hits = (Vec<CustomerHit>, Vec<MessageHit>);

/// A customer hit from a row of id, name, snippet, rank (the snippet and rank are computed, so
/// read leniently). SQLite's `bm25` ranks best lowest, PostgreSQL's `ts_rank` best highest:
/// the rank is turned so that higher is better on both.
fn customer_hit(r: &Row, hl: &Markers, postgres: bool) -> Result<CustomerHit, StoreError> {
    Ok(CustomerHit {
        customer_id: r.req_i64(0, "customers.id")?,
        name: r.opt_text(1),
        snippet: highlight(&r.text(2), hl, postgres),
        rank: if postgres { r.f64(3) } else { -r.f64(3) },
    })
}

/// A message hit from a row of id, case, customer, subject, snippet, rank, created_at (rank
/// as for [`customer_hit`]).
fn message_hit(r: &Row, hl: &Markers, postgres: bool) -> Result<MessageHit, StoreError> {
    Ok(MessageHit {
        message_id: r.req_i64(0, "messages.id")?,
        case_id: r.req_i64(1, "messages.case_id")?,
        customer_id: r.req_i64(2, "messages.customer_id")?,
        subject: r.opt_text(3),
        snippet: highlight(&r.text(4), hl, postgres),
        rank: if postgres { r.f64(5) } else { -r.f64(5) },
        created_at: r.req_ts(6, "messages.created_at")?,
    })
}

fn sqlite_search(c: &mut Conn, toks: &[String], limit: i64, hl: &Markers) -> Result<Hits, StoreError> {
    let fts_query = toks.iter().map(|t| format!("\"{t}\"*")).collect::<Vec<_>>().join(" ");
    let customers = c
        .query(
            "SELECT f.rowid, cu.name, highlight(customers_fts, 0, ?, ?), bm25(customers_fts) AS r \
             FROM customers_fts f JOIN customers cu ON cu.id = f.rowid \
             WHERE customers_fts MATCH ? AND cu.merged_into IS NULL ORDER BY r LIMIT ?",
            &params![hl.start.as_str(), hl.end.as_str(), fts_query.as_str(), limit],
        )?
        .iter()
        .map(|r| customer_hit(r, hl, false))
        .collect::<Result<_, _>>()?;
    let messages = c
        .query(
            "SELECT m.id, m.case_id, m.customer_id, m.subject, snippet(messages_fts, -1, ?, ?, '…', 24), \
             bm25(messages_fts) AS r, m.created_at \
             FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid \
             WHERE messages_fts MATCH ? ORDER BY r LIMIT ?",
            &params![hl.start.as_str(), hl.end.as_str(), fts_query.as_str(), limit],
        )?
        .iter()
        .map(|r| message_hit(r, hl, false))
        .collect::<Result<_, _>>()?;
    Ok((customers, messages))
}

fn pg_search(c: &mut Conn, toks: &[String], limit: i64, hl: &Markers) -> Result<Hits, StoreError> {
    let tsq = toks.iter().map(|t| format!("{t}:*")).collect::<Vec<_>>().join(" & ");
    // The markers hold only control characters and hex digits: no quoting needed in options.
    let customer_opts = format!("StartSel={}, StopSel={}, HighlightAll=true", hl.start, hl.end);
    let message_opts = format!("StartSel={}, StopSel={}, MaxWords=30, MinWords=10", hl.start, hl.end);
    let customers = c
        .query(
            &format!(
                "SELECT id, name, ts_headline('simple', {}, to_tsquery('simple', ?), ?), \
                 ts_rank(to_tsvector('simple', search_text), to_tsquery('simple', ?)) AS r \
                 FROM customers WHERE to_tsvector('simple', search_text) @@ to_tsquery('simple', ?) AND merged_into IS NULL \
                 ORDER BY r DESC, id DESC LIMIT ?",
                pg_text("search_text")
            ),
            &params![tsq.as_str(), customer_opts.as_str(), tsq.as_str(), tsq.as_str(), limit],
        )?
        .iter()
        .map(|r| customer_hit(r, hl, true))
        .collect::<Result<_, _>>()?;
    let messages = c
        .query(
            &format!(
                "WITH q AS (SELECT to_tsquery('german', ?) || to_tsquery('english', ?) AS q), \
                 hits AS (SELECT m.id, m.case_id, m.customer_id, m.subject, m.text, m.created_at, ts_rank(m.tsv, q.q) AS r \
                 FROM messages m, q WHERE m.tsv @@ q.q ORDER BY r DESC, m.id DESC LIMIT ?) \
                 SELECT hits.id, hits.case_id, hits.customer_id, hits.subject, \
                 ts_headline('german', {}, q.q, ?), \
                 hits.r, hits.created_at FROM hits, q ORDER BY hits.r DESC, hits.id DESC",
                pg_text("hits.text")
            ),
            &params![tsq.as_str(), tsq.as_str(), limit, message_opts.as_str()],
        )?
        .iter()
        .map(|r| message_hit(r, hl, true))
        .collect::<Result<_, _>>()?;
    Ok((customers, messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_drop_search_syntax() {
        assert_eq!(tokens("Goethestraße 5"), vec!["goethestraße", "5"]);
        assert_eq!(tokens("\"a\" OR b*) NEAR("), vec!["a", "or", "b", "near"]);
        assert!(tokens(" -- ").is_empty());
    }

    #[test]
    fn snippets_are_escaped_before_highlighting() {
        let m = Markers::new();
        let raw = format!("<b>{}Umzug{}</b> & mehr", m.start, m.end);
        assert_eq!(highlight(&raw, &m, false), "&lt;b&gt;<mark>Umzug</mark>&lt;/b&gt; &amp; mehr");
    }

    #[test]
    fn only_the_markers_of_this_search_become_marks() {
        let m = Markers::new();
        let (s, e) = (m.start.as_str(), m.end.as_str());
        for (raw, stand_ins, html) in [
            (format!("a\u{3} {s}Umzug{e} \u{2}b"), false, "a <mark>Umzug</mark> b".to_string()),
            (format!("{e}x{s}{s}y{e}{e}z{s}w"), false, "x<mark>y</mark>z<mark>w</mark>".to_string()),
            (format!("\u{e}b\u{f} {s}c{e}\u{7}\n"), true, "&lt;b&gt; <mark>c</mark>\n".to_string()),
            ("\u{e}\u{2}x\u{3}\u{f}".to_string(), false, "x".to_string()),
        ] {
            assert_eq!(highlight(&raw, &m, stand_ins), html, "{raw:?}");
        }
        assert_ne!(Markers::new().start, m.start, "each search has its own markers");
    }
}
