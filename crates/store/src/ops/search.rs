//! Full-text search over messages and customers with the database's own engine
//! (SQLite FTS5; PostgreSQL `tsvector` with German and English configurations).

use crate::db::Conn;
use crate::{format_ts, params, Backend, Store, StoreError};

/// Start and end markers of highlights inside snippets (replaced after HTML escaping).
const HL_START: char = '\u{2}';
const HL_END: char = '\u{3}';
/// Stand-ins for `<` and `>` while PostgreSQL's `ts_headline` (which strips anything that
/// looks like a tag) works on the text.
const LT: char = '\u{e}';
const GT: char = '\u{f}';

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
    pub created_at: String,
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

/// Escapes HTML and turns the highlight markers into `<mark>` tags.
fn highlight(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 16);
    for ch in raw.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' | LT => out.push_str("&lt;"),
            '>' | GT => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            HL_START => out.push_str("<mark>"),
            HL_END => out.push_str("</mark>"),
            c => out.push(c),
        }
    }
    out
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
            let (customers, messages) = match c.backend() {
                Backend::Sqlite => sqlite_search(c, &toks, limit)?,
                Backend::Postgres => pg_search(c, &toks, limit)?,
            };
            Ok(SearchResults { query: q, customers, messages })
        })
        .await
    }
}

type Hits = (Vec<CustomerHit>, Vec<MessageHit>);

fn sqlite_search(c: &mut Conn, toks: &[String], limit: i64) -> Result<Hits, StoreError> {
    let fts_query = toks.iter().map(|t| format!("\"{t}\"*")).collect::<Vec<_>>().join(" ");
    let customers = c
        .query(
            "SELECT f.rowid, cu.name, highlight(customers_fts, 0, char(2), char(3)), bm25(customers_fts) AS r \
             FROM customers_fts f JOIN customers cu ON cu.id = f.rowid \
             WHERE customers_fts MATCH ? AND cu.merged_into IS NULL ORDER BY r LIMIT ?",
            &params![fts_query.as_str(), limit],
        )?
        .iter()
        .map(|r| CustomerHit {
            customer_id: r.i64(0),
            name: r.opt_text(1),
            snippet: highlight(&r.text(2)),
            rank: -r.f64(3),
        })
        .collect();
    let messages = c
        .query(
            "SELECT m.id, m.case_id, m.customer_id, m.subject, snippet(messages_fts, -1, char(2), char(3), '…', 24), \
             bm25(messages_fts) AS r, m.created_at \
             FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid \
             WHERE messages_fts MATCH ? ORDER BY r LIMIT ?",
            &params![fts_query.as_str(), limit],
        )?
        .iter()
        .map(|r| MessageHit {
            message_id: r.i64(0),
            case_id: r.i64(1),
            customer_id: r.i64(2),
            subject: r.opt_text(3),
            snippet: highlight(&r.text(4)),
            rank: -r.f64(5),
            created_at: format_ts(r.i64(6)),
        })
        .collect();
    Ok((customers, messages))
}

fn pg_search(c: &mut Conn, toks: &[String], limit: i64) -> Result<Hits, StoreError> {
    let tsq = toks.iter().map(|t| format!("{t}:*")).collect::<Vec<_>>().join(" & ");
    let customers = c
        .query(
            "SELECT id, name, ts_headline('simple', translate(search_text, '<>', chr(14) || chr(15)), to_tsquery('simple', ?), \
             'StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', HighlightAll=true'), \
             ts_rank(to_tsvector('simple', search_text), to_tsquery('simple', ?)) AS r \
             FROM customers WHERE to_tsvector('simple', search_text) @@ to_tsquery('simple', ?) AND merged_into IS NULL \
             ORDER BY r DESC, id DESC LIMIT ?",
            &params![tsq.as_str(), tsq.as_str(), tsq.as_str(), limit],
        )?
        .iter()
        .map(|r| CustomerHit { customer_id: r.i64(0), name: r.opt_text(1), snippet: highlight(&r.text(2)), rank: r.f64(3) })
        .collect();
    let messages = c
        .query(
            "WITH q AS (SELECT to_tsquery('german', ?) || to_tsquery('english', ?) AS q), \
             hits AS (SELECT m.id, m.case_id, m.customer_id, m.subject, m.text, m.created_at, ts_rank(m.tsv, q.q) AS r \
             FROM messages m, q WHERE m.tsv @@ q.q ORDER BY r DESC, m.id DESC LIMIT ?) \
             SELECT hits.id, hits.case_id, hits.customer_id, hits.subject, \
             ts_headline('german', translate(hits.text, '<>', chr(14) || chr(15)), q.q, 'StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', MaxWords=30, MinWords=10'), \
             hits.r, hits.created_at FROM hits, q ORDER BY hits.r DESC, hits.id DESC",
            &params![tsq.as_str(), tsq.as_str(), limit],
        )?
        .iter()
        .map(|r| MessageHit {
            message_id: r.i64(0),
            case_id: r.i64(1),
            customer_id: r.i64(2),
            subject: r.opt_text(3),
            snippet: highlight(&r.text(4)),
            rank: r.f64(5),
            created_at: format_ts(r.i64(6)),
        })
        .collect();
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
        assert_eq!(highlight("<b>\u{2}Umzug\u{3}</b> & mehr"), "&lt;b&gt;<mark>Umzug</mark>&lt;/b&gt; &amp; mehr");
    }
}
