//! Attachments: one row per file of a message, its bytes in the blob store (by `blob_id`) or
//! a link. The message keeps a JSON copy (with the ids) for reading it in one piece.

use std::collections::HashSet;

use kontor_core::Attachment;

use crate::writer::Tx;
use crate::{params, Store, StoreError, Val};

/// An attachment with what a download needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    pub id: i64,
    pub message_id: i64,
    pub case_id: i64,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: Option<String>,
    /// The blob store's id; `None` for a link.
    pub blob_id: Option<String>,
    pub url: Option<String>,
}

/// A blob the database refers to, for `kontor vault verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub blob_id: String,
    pub sha256: Option<String>,
    /// What refers to it, for the report (`attachment 12 (Vertrag.pdf)`).
    pub owner: String,
}

/// Stores the rows of a new message's attachments and its JSON copy with their ids; returns
/// the attachments with ids.
pub(crate) fn insert_attachments(
    tx: &mut Tx<'_>,
    message_id: i64,
    attachments: &[Attachment],
) -> Result<Vec<Attachment>, StoreError> {
    let mut out = Vec::with_capacity(attachments.len());
    for a in attachments {
        let id = tx
            .conn
            .query_opt(
                "INSERT INTO attachments (message_id, blob_id, filename, content_type, size, sha256, url, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                &params![
                    message_id,
                    a.blob_id.as_deref(),
                    a.filename.as_str(),
                    a.content_type.as_str(),
                    a.size,
                    a.sha256.as_deref(),
                    a.url.as_deref(),
                    tx.now
                ],
            )?
            .ok_or_else(|| StoreError::Database("attachment insert returned no id".into()))?
            .req_i64(0, "attachments.id")?;
        out.push(Attachment { id: Some(id), ..a.clone() });
    }
    let json = serde_json::to_string(&out).map_err(|e| StoreError::Database(format!("attachments: {e}")))?;
    tx.conn.execute("UPDATE messages SET attachments = ? WHERE id = ?", &params![json, message_id])?;
    Ok(out)
}

impl Store {
    /// One attachment with its message's case (for the visibility check of a download).
    pub async fn attachment(&self, id: i64) -> Result<StoredAttachment, StoreError> {
        self.read(move |c| {
            let r = c
                .query_opt(
                    "SELECT a.id, a.message_id, m.case_id, a.filename, a.content_type, a.size, a.sha256, a.blob_id, a.url \
                     FROM attachments a JOIN messages m ON m.id = a.message_id WHERE a.id = ?",
                    &params![id],
                )?
                .ok_or_else(|| StoreError::NotFound(format!("attachment {id}")))?;
            Ok(StoredAttachment {
                id: r.req_i64(0, "attachments.id")?,
                message_id: r.req_i64(1, "attachments.message_id")?,
                case_id: r.req_i64(2, "messages.case_id")?,
                filename: r.req_text(3, "attachments.filename")?,
                content_type: r.req_text(4, "attachments.content_type")?,
                size: r.req_i64(5, "attachments.size")?,
                sha256: r.opt_text(6),
                blob_id: r.opt_text(7),
                url: r.opt_text(8),
            })
        })
        .await
    }

    /// Which of `blob_ids` the database refers to (the orphan sweep deletes the others).
    pub async fn referenced_blobs(&self, blob_ids: Vec<String>) -> Result<HashSet<String>, StoreError> {
        self.read(move |c| {
            let mut found = HashSet::new();
            for chunk in blob_ids.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let p: Vec<Val> = chunk.iter().map(|b| Val::Text(b.clone())).collect();
                let sql = format!(
                    "SELECT blob_id FROM attachments WHERE blob_id IN ({marks}) \
                     UNION SELECT raw_blob_id FROM messages WHERE raw_blob_id IN ({marks})"
                );
                let p: Vec<Val> = p.iter().chain(p.iter()).cloned().collect();
                for r in c.query(&sql, &p)? {
                    if let Some(b) = r.opt_text(0) {
                        found.insert(b);
                    }
                }
            }
            Ok(found)
        })
        .await
    }

    /// The sealed raw source a message keeps in the database (`None`: none, or it is in the
    /// blob store under `raw_blob_id`).
    pub async fn inline_source(&self, message_id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(move |c| {
            Ok(c.query_opt("SELECT sealed FROM message_sources WHERE message_id = ?", &params![message_id])?
                .and_then(|r| r.opt_bytes(0).map(<[u8]>::to_vec)))
        })
        .await
    }

    /// Up to `limit` raw sources kept in the database, of messages after `after_id`, in id
    /// order: (message id, blob id, sealed bytes) — for `kontor vault verify`.
    pub async fn inline_sources_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Vec<u8>)>, StoreError> {
        self.read(move |c| {
            c.query(
                "SELECT s.message_id, m.raw_blob_id, s.sealed FROM message_sources s \
                 JOIN messages m ON m.id = s.message_id WHERE s.message_id > ? ORDER BY s.message_id LIMIT ?",
                &params![after_id, limit],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.req_i64(0, "message_sources.message_id")?,
                    r.req_text(1, "messages.raw_blob_id")?,
                    r.opt_bytes(2).map(<[u8]>::to_vec).unwrap_or_default(),
                ))
            })
            .collect()
        })
        .await
    }

    /// Every blob the database refers to, oldest first.
    pub async fn blob_refs(&self) -> Result<Vec<BlobRef>, StoreError> {
        self.read(|c| {
            c.query("SELECT blob_id, sha256, id, filename FROM attachments WHERE blob_id IS NOT NULL ORDER BY id", &[])?
                .iter()
                .map(|r| {
                    let (id, filename) = (r.req_i64(2, "attachments.id")?, r.req_text(3, "attachments.filename")?);
                    Ok(BlobRef {
                        blob_id: r.req_text(0, "attachments.blob_id")?,
                        sha256: r.opt_text(1),
                        owner: format!("attachment {id} ({filename})"),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
                .and_then(|mut refs| {
                    // The raw sources of received mails kept in the blob store (small ones are
                    // in `message_sources`: see `Store::inline_sources_after`).
                    for r in c.query(
                        "SELECT m.raw_blob_id, m.id FROM messages m WHERE m.raw_blob_id IS NOT NULL \
                         AND NOT EXISTS (SELECT 1 FROM message_sources s WHERE s.message_id = m.id) ORDER BY m.id",
                        &[],
                    )? {
                        refs.push(BlobRef {
                            blob_id: r.req_text(0, "messages.raw_blob_id")?,
                            sha256: None,
                            owner: format!("raw source of message {}", r.req_i64(1, "messages.id")?),
                        });
                    }
                    Ok(refs)
                })
        })
        .await
    }
}
