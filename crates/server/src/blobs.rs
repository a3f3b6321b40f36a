//! The server's use of the encrypted blob store: opening it at start (and refusing a master
//! key that is not the one the database was created with), storing uploaded files, and
//! sweeping objects whose message never committed.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use kontor_core::Attachment;
use kontor_store::{Backend, Store};
use kontor_vault::Vault;
use sha2::{Digest, Sha256};

use crate::config::Config;

/// The database setting that records which master key the store was created with.
const KEY_ID_SETTING: &str = "vault.key_id";

/// Objects younger than this are never swept: their message may still be committing.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(6 * 3600);

/// How often the sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Opens the blob store of `config` and checks its master key against the one recorded in
/// the database (recording it on first start). A node with another key refuses to start.
pub async fn open_vault(store: &Store, config: &Config) -> Result<Vault, String> {
    open(store, config, true).await
}

/// Opens the blob store of `config` to check it (`kontor vault verify`): refuses a missing
/// master key file instead of creating one, and records nothing in the database.
pub async fn open_vault_to_check(store: &Store, config: &Config) -> Result<Vault, String> {
    let key = config.vault.master_key_file.clone().unwrap_or_else(|| config.data_dir.join("master.key"));
    if !key.exists() {
        return Err(format!("no master key file at {}; without it no object can be read", key.display()));
    }
    open(store, config, false).await
}

async fn open(store: &Store, config: &Config, record: bool) -> Result<Vault, String> {
    let vault = Vault::open(&config.blobs, &config.vault, &config.data_dir).await.map_err(|e| e.to_string())?;
    match store.setting(KEY_ID_SETTING).await.map_err(|e| format!("cannot read the vault's key id: {e}"))? {
        Some(recorded) if recorded != vault.key_id() => {
            return Err(format!(
                "the master key ({}) is not the one this database was created with (key id {recorded}); \
                 start with the original master key file",
                vault.key_id()
            ))
        }
        Some(_) => {}
        None if !record => {}
        None => store
            .set_setting(KEY_ID_SETTING, vault.key_id())
            .await
            .map_err(|e| format!("cannot record the vault's key id: {e}"))?,
    }
    if vault.is_local() && store.backend() == Backend::Postgres {
        tracing::warn!(
            blobs = %vault.describe(),
            "Attachments are kept in a local directory, but the database is PostgreSQL: other nodes \
             cannot read them. Configure [blobs] url = \"s3://…\" for several nodes."
        );
    }
    Ok(vault)
}

/// A file received with a message, before its bytes are stored: the attachment it becomes
/// (the content type sniffed from the bytes, size and SHA-256; no blob id yet) and the bytes.
#[derive(Debug, Clone)]
pub struct Upload {
    pub attachment: Attachment,
    pub bytes: Bytes,
}

impl Upload {
    /// Describes `bytes` here and now (small inline files).
    pub fn describe(filename: String, declared_type: String, bytes: Bytes) -> Upload {
        let attachment = Attachment {
            id: None,
            filename,
            content_type: sniff(&bytes, &declared_type),
            size: bytes.len() as i64,
            url: None,
            sha256: Some(hex::encode(Sha256::digest(&bytes))),
            blob_id: None,
        };
        Upload { attachment, bytes }
    }

    /// Describes `bytes` on a blocking thread (uploaded files may be large).
    pub async fn new(filename: String, declared_type: String, bytes: Bytes) -> Upload {
        let (name, declared, data) = (filename.clone(), declared_type.clone(), bytes.clone());
        match tokio::task::spawn_blocking(move || Upload::describe(name, declared, data)).await {
            Ok(u) => u,
            Err(_) => Upload::describe(filename, declared_type, bytes),
        }
    }
}

/// The content type of `bytes`: what their magic numbers say; else the declared type if it
/// is a plausible one and not markup a browser would run; else `application/octet-stream`.
pub fn sniff(bytes: &[u8], declared: &str) -> String {
    let active = |t: &str| ["html", "xml", "javascript", "svg", "ecmascript"].iter().any(|w| t.contains(w));
    let fallback = || {
        if std::str::from_utf8(bytes).is_ok() {
            "text/plain; charset=utf-8".to_string()
        } else {
            "application/octet-stream".to_string()
        }
    };
    if let Some(kind) = infer::get(bytes) {
        let t = kind.mime_type();
        return if active(t) { fallback() } else { t.to_string() };
    }
    let declared = declared.trim().to_ascii_lowercase();
    let plausible = declared.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && declared.bytes().all(|c| c.is_ascii_alphanumeric() || b"/.+-_;= ".contains(&c))
    });
    if plausible && !active(&declared) {
        return declared;
    }
    fallback()
}

/// Deletes the stored bytes of attachments whose message was not stored after all (best
/// effort: what remains is removed by the sweep).
pub async fn discard(vault: &Vault, attachments: &[Attachment]) {
    let blobs: Vec<String> = attachments.iter().filter_map(|a| a.blob_id.clone()).collect();
    discard_blobs(vault, &blobs).await
}

/// Deletes blobs by id whose message was not stored after all (best effort, as [`discard`]).
pub async fn discard_blobs(vault: &Vault, blobs: &[String]) {
    for blob in blobs {
        if let Err(e) = vault.delete(blob).await {
            tracing::debug!(error = %e, "Cannot delete an unused blob; the sweep will.");
        }
    }
}

/// Stores the bytes of `uploads` in the blob store (durably, before the message that refers to
/// them is committed); returns the attachments with their blob ids.
pub async fn store_uploads(vault: &Vault, uploads: Vec<(Attachment, Bytes)>) -> Result<Vec<Attachment>, String> {
    let puts = uploads.into_iter().map(|(mut a, bytes)| async move {
        let stored = vault.put(bytes).await.map_err(|e| e.to_string())?;
        a.blob_id = Some(stored.id);
        Ok::<_, String>(a)
    });
    futures::future::try_join_all(puts).await
}

/// Deletes blob-store objects older than [`SWEEP_MIN_AGE`] that no attachment refers to (their
/// message never committed). Returns how many it deleted.
pub async fn sweep_orphans(vault: &Vault, store: &Store, min_age: Duration) -> Result<usize, String> {
    let cutoff = SystemTime::now().checked_sub(min_age).unwrap_or(SystemTime::UNIX_EPOCH);
    let candidates: Vec<String> =
        vault.list(cutoff).await.map_err(|e| e.to_string())?.into_iter().map(|(id, _)| id).collect();
    if candidates.is_empty() {
        return Ok(0);
    }
    let referenced = store.referenced_blobs(candidates.clone()).await.map_err(|e| e.to_string())?;
    let mut deleted = 0;
    for id in candidates.into_iter().filter(|id| !referenced.contains(id)) {
        vault.delete(&id).await.map_err(|e| e.to_string())?;
        deleted += 1;
    }
    Ok(deleted)
}

/// Runs the orphan sweep every hour on this node.
pub fn spawn_sweeper(vault: Vault, store: Store) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            match sweep_orphans(&vault, &store, SWEEP_MIN_AGE).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "Deleted blob-store objects whose message never committed."),
                Err(e) => tracing::warn!(error = %e, "Blob-store sweep failed; trying again later."),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_come_from_the_bytes_and_never_allow_markup() {
        let pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n";
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        for (bytes, declared, want) in [
            (&pdf[..], "text/html", "application/pdf"),
            (&png[..], "application/pdf", "image/png"),
            (&b"<script>alert(1)</script>"[..], "text/html", "text/plain; charset=utf-8"),
            (&b"<svg onload=alert(1)>"[..], "image/svg+xml", "text/plain; charset=utf-8"),
            (&b"Hallo"[..], "text/plain", "text/plain"),
            (&b"Hallo"[..], "", "text/plain; charset=utf-8"),
            (&b"\xff\xfe\x00\x01"[..], "nonsense", "application/octet-stream"),
            (&b"\xff\xfe\x00\x01"[..], "application/vnd.ms-excel", "application/vnd.ms-excel"),
            (&b"\xff\xfe\x00\x01"[..], "text/html; charset=utf-8", "application/octet-stream"),
            (&b"<?xml version=\"1.0\"?><svg/>"[..], "image/svg+xml", "text/plain; charset=utf-8"),
            (&b"<!DOCTYPE html><html><body>x"[..], "application/pdf", "text/plain; charset=utf-8"),
        ] {
            assert_eq!(sniff(bytes, declared), want, "{declared}");
        }
    }
}
