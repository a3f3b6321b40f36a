//! Kontor's encrypted blob store: attachments, raw mail, media and documents.
//!
//! Every object is encrypted in the process before it reaches storage (envelope encryption)
//! and stored through the `object_store` crate: a local directory by default
//! (`<data_dir>/blobs`) or an S3-compatible bucket (`[blobs] url = "s3://bucket/prefix"`). Both
//! backends run the same code; the local one is opened with `with_fsync(true)` so a `put` that
//! returned is on disk (file and directory entries), as an S3 PUT is.
//!
//! This crate must not depend on any other Kontor crate (store, server, core): the server
//! wires it in, the database records the ids it returns.
//!
//! # Keys
//! A 256-bit master key lives in a file (`[vault] master_key_file`, default
//! `<data_dir>/master.key`, 64 hex characters, created with mode 0600). From it, by
//! HMAC-SHA256 with fixed labels, come the key-encryption key (KEK) and a public
//! [`Vault::key_id`]. A key-check object `_kontor/keycheck` (`"KVKC"`, version 1, the key id,
//! HMAC-SHA256(master, "kontor vault keycheck v1")) is written when a store is new, so a wrong
//! key is refused at open ([`VaultError::WrongMasterKey`]) and a missing key file for a store that
//! holds data is refused ([`VaultError::MissingMasterKey`]) instead of creating a new key.
//!
//! # Object format (version 1)
//! Object key: `ab/cd/<id>`, where `<id>` is 26 random characters of lowercase Crockford
//! base32 (130 bits) and `ab`, `cd` are its first four characters. Never derived from input.
//!
//! ```text
//! offset size  field
//!      0    4  magic "KVLT"
//!      4    1  version = 1
//!      5    1  algorithm = 1 (XChaCha20-Poly1305, STREAM with BE32 counter + last flag)
//!      6    4  chunk size in plaintext bytes, big-endian (65536)
//!     10   24  wrap nonce (random)
//!     34   48  wrapped data key: XChaCha20-Poly1305(KEK, wrap nonce, data key,
//!              aad = "kontor-vault/wrap/v1\0" || bytes 0..10 || object id)
//!     82   19  STREAM nonce prefix (random)
//!    101    …  chunks: each = XChaCha20-Poly1305(data key, prefix || counter32 || last-flag,
//!              plaintext chunk, aad = the 101 header bytes) = chunk + 16-byte tag
//! ```
//! The plaintext stream is the content followed by its 32-byte SHA-256, cut into chunks of
//! 65,536 bytes; every chunk but the last is full, the last holds 1..=65,536 bytes and is
//! sealed with the last-chunk flag. So a changed byte, a reordered, repeated, dropped or
//! appended chunk, a truncation, or an object copied under another id all fail
//! authentication, and the SHA-256 is checked without the database. A random 256-bit data
//! key is made per object.

mod bench;
mod config;
mod error;
mod format;
mod id;
mod key;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use zeroize::Zeroizing;

pub use bench::{bench_put_get, BenchReport};
pub use config::{BlobsConfig, VaultConfig};
pub use error::VaultError;

use key::{Keycheck, MasterKey};

/// Object key of the key-check record.
const KEYCHECK_PATH: &str = "_kontor/keycheck";

/// A small blob sealed for the caller to keep ([`Vault::seal_small`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBlob {
    /// Its id (bound into the encryption: it opens only under this id).
    pub id: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// SHA-256 of the plaintext, lowercase hex.
    pub sha256: String,
    /// The encrypted bytes, in the same format as a stored object.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBlob").field("id", &self.id).field("size", &self.size).finish_non_exhaustive()
    }
}

/// A blob as stored: its id, plaintext size and plaintext SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    /// Random id to record in the database (26 lowercase base32 characters).
    pub id: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// SHA-256 of the plaintext, lowercase hex.
    pub sha256: String,
}

/// The encrypted blob store; cheap to clone, shareable between tasks.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    kek: Zeroizing<[u8; 32]>,
    derive_root: Zeroizing<[u8; 32]>,
    key_id: String,
    describe: String,
    is_local: bool,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("store", &self.inner.describe)
            .field("key_id", &self.inner.key_id)
            .finish_non_exhaustive()
    }
}

/// The opened backend before the key is checked.
struct Backend {
    store: Arc<dyn ObjectStore>,
    describe: String,
    is_local: bool,
}

fn io_err(e: object_store::Error) -> VaultError {
    VaultError::Io(e.to_string())
}

fn open_local(dir: &Path) -> Result<Backend, VaultError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| VaultError::Io(format!("cannot create blob directory {}: {e}", dir.display())))?;
    // object_store fsyncs the directories it creates below the root; make the root's own
    // entry durable too (a new `<data_dir>/blobs`).
    #[cfg(unix)]
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        if !d.as_os_str().is_empty() {
            std::fs::File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(|e| VaultError::Io(format!("cannot sync {}: {e}", d.display())))?;
        }
    }
    let fs = LocalFileSystem::new_with_prefix(dir).map_err(io_err)?.with_fsync(true).with_automatic_cleanup(false);
    let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok(Backend { store: Arc::new(fs), describe: format!("local {}", shown.display()), is_local: true })
}

fn open_backend(blobs: &BlobsConfig, data_dir: &Path) -> Result<Backend, VaultError> {
    let Some(url) = blobs.url.as_deref() else {
        if blobs.endpoint.is_some() || blobs.access_key_id.is_some() || blobs.secret_access_key.is_some() {
            return Err(VaultError::Config(
                "blobs.endpoint / credentials are set but blobs.url is not; set url = \"s3://bucket/prefix\"".into(),
            ));
        }
        return open_local(&data_dir.join("blobs"));
    };
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(VaultError::Config(format!(
                "blobs.url {url}: a file URL needs an absolute path (file:///dir)"
            )));
        }
        return open_local(Path::new(path));
    }
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(VaultError::Config(format!("blobs.url {url}: expected s3://bucket/prefix or file:///dir")));
    };
    let (bucket, prefix) = match rest.split_once('/') {
        Some((b, p)) => (b, p.trim_matches('/')),
        None => (rest, ""),
    };
    if bucket.is_empty() {
        return Err(VaultError::Config(format!("blobs.url {url}: no bucket name")));
    }
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(endpoint) = &blobs.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &blobs.region {
        builder = builder.with_region(region);
    }
    if let Some(id) = &blobs.access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = &blobs.secret_access_key {
        use secrecy::ExposeSecret;
        builder = builder.with_secret_access_key(secret.expose_secret());
    }
    if blobs.allow_http {
        builder = builder.with_allow_http(true);
    }
    let s3 = builder.build().map_err(|e| VaultError::Config(format!("blobs: {e}")))?;
    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
        Arc::new(s3)
    } else {
        let p = object_store::path::Path::parse(prefix)
            .map_err(|e| VaultError::Config(format!("blobs.url {url}: bad prefix: {e}")))?;
        Arc::new(PrefixStore::new(s3, p))
    };
    let at = blobs
        .endpoint
        .as_deref()
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_ENDPOINT").ok())
        .unwrap_or_else(|| "AWS".to_string());
    let shown_url = if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") };
    Ok(Backend { store, describe: format!("{shown_url} at {at}"), is_local: false })
}

impl Vault {
    /// Opens (or, when both the key file and the store are new, creates) the vault.
    pub async fn open(blobs: &BlobsConfig, vault: &VaultConfig, data_dir: &Path) -> Result<Vault, VaultError> {
        let backend = open_backend(blobs, data_dir)?;
        let key_path: PathBuf = vault.master_key_file.clone().unwrap_or_else(|| data_dir.join("master.key"));
        let store = backend.store.clone();
        let keycheck_path = object_store::path::Path::from(KEYCHECK_PATH);
        let keycheck = match store.get(&keycheck_path).await {
            Ok(r) => Some(r.bytes().await.map_err(io_err)?),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(io_err(e)),
        };
        let key = key::read_key_file(&key_path)?;
        let key = match (key, keycheck) {
            (Some(key), Some(record)) => match key.check(&record) {
                Keycheck::Matches => key,
                Keycheck::Mismatch { store_key_id } => {
                    return Err(VaultError::WrongMasterKey {
                        path: key_path,
                        store: backend.describe,
                        store_key_id,
                        file_key_id: key.key_id().to_string(),
                    })
                }
            },
            (Some(key), None) => {
                // Key file present, key check absent: a crash right after creating the key,
                // or a deleted key check. Existing blobs decide; then the check is (re)written.
                let kek = key.kek();
                let sample = sample_blobs(&store, 3).await?;
                if !sample.is_empty() && !sample.iter().any(|(id, header)| format::key_fits(&kek, id, header)) {
                    return Err(VaultError::WrongMasterKey {
                        path: key_path,
                        store: backend.describe,
                        store_key_id: format!("? (no key check; {} sampled blobs do not open)", sample.len()),
                        file_key_id: key.key_id().to_string(),
                    });
                }
                if let Keycheck::Mismatch { store_key_id } = write_keycheck_once(&store, &key).await? {
                    // Another node wrote a key check meanwhile, with another key.
                    return Err(VaultError::WrongMasterKey {
                        path: key_path,
                        store: backend.describe,
                        store_key_id,
                        file_key_id: key.key_id().to_string(),
                    });
                }
                key
            }
            (None, Some(_)) => return Err(VaultError::MissingMasterKey { path: key_path, store: backend.describe }),
            (None, None) => {
                let any = store.list(None).try_next().await.map_err(io_err)?;
                if any.is_some() {
                    return Err(VaultError::MissingMasterKey { path: key_path, store: backend.describe });
                }
                let key = MasterKey::generate();
                key::create_key_file(&key_path, &key)?;
                if let Keycheck::Mismatch { .. } = write_keycheck_once(&store, &key).await? {
                    // Another node created this store at the same moment with its own key; ours
                    // was never used, so remove it rather than leave a key that opens nothing.
                    if let Err(error) = std::fs::remove_file(&key_path) {
                        tracing::warn!(%error, path = %key_path.display(), "Could not remove the unused new master key file.");
                    }
                    return Err(VaultError::MissingMasterKey { path: key_path, store: backend.describe });
                }
                tracing::warn!(
                    path = %key_path.display(),
                    key_id = key.key_id(),
                    store = %backend.describe,
                    "Created a new vault master key. Back up this file now and keep the copy apart from the data: without it no stored blob can ever be read."
                );
                key
            }
        };
        tracing::info!(store = %backend.describe, key_id = key.key_id(), "Vault opened.");
        Ok(Vault {
            inner: Arc::new(Inner {
                store,
                kek: key.kek(),
                derive_root: key.derive_root(),
                key_id: key.key_id().to_string(),
                describe: backend.describe,
                is_local: backend.is_local,
            }),
        })
    }

    /// True for the local-directory backend.
    pub fn is_local(&self) -> bool {
        self.inner.is_local
    }

    /// A 256-bit key for another purpose (e-mail bounce addresses, case tokens), derived from
    /// the master key with `label` (HMAC-SHA256): every node with the same master key derives
    /// the same key, and nothing needs configuring.
    pub fn derive_key(&self, label: &str) -> Zeroizing<[u8; 32]> {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.inner.derive_root[..])
            .expect("HMAC takes keys of any length");
        mac.update(label.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// Non-secret id of the master key (16 hex chars), to record next to the data.
    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// Where the blobs are, without secrets: `local /x/blobs` or `s3://bucket/prefix at <endpoint>`.
    pub fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    /// Encrypts and stores `plaintext`; returns only once it is durable.
    pub async fn put(&self, plaintext: Bytes) -> Result<StoredBlob, VaultError> {
        let id = id::new_id();
        let kek = self.inner.kek.clone();
        let size = plaintext.len() as u64;
        let id_for_seal = id.clone();
        let sealed = tokio::task::spawn_blocking(move || format::seal(&kek, &id_for_seal, &plaintext))
            .await
            .map_err(|e| VaultError::Io(format!("encryption task failed: {e}")))?
            .map_err(VaultError::Io)?;
        self.inner.store.put(&id::object_path(&id), PutPayload::from(sealed.bytes)).await.map_err(io_err)?;
        Ok(StoredBlob { id, size, sha256: hex::encode(sealed.sha256) })
    }

    async fn fetch_unsealed(&self, id: &str) -> Result<format::Unsealed, VaultError> {
        if !id::is_valid_id(id) {
            return Err(VaultError::NotFound(id::shown(id)));
        }
        let sealed = match self.inner.store.get(&id::object_path(id)).await {
            Ok(r) => r.bytes().await.map_err(io_err)?,
            Err(object_store::Error::NotFound { .. }) => return Err(VaultError::NotFound(id.to_string())),
            Err(e) => return Err(io_err(e)),
        };
        let kek = self.inner.kek.clone();
        let owned_id = id.to_string();
        tokio::task::spawn_blocking(move || format::unseal(&kek, &owned_id, &sealed))
            .await
            .map_err(|e| VaultError::Io(format!("decryption task failed: {e}")))?
            .map_err(|reason| VaultError::Damaged { id: id.to_string(), reason })
    }

    /// Reads and decrypts a blob; returns bytes only when every check passed.
    pub async fn get(&self, id: &str) -> Result<Bytes, VaultError> {
        Ok(Bytes::from(self.fetch_unsealed(id).await?.plaintext))
    }

    /// Decrypts a blob fully and checks every tag, the stored SHA-256 and, when given, the
    /// expected SHA-256 (hex): `Ok`, `NotFound` (missing) or `Damaged` (with the reason).
    pub async fn verify(&self, id: &str, expected_sha256: Option<&str>) -> Result<(), VaultError> {
        let expected = match expected_sha256 {
            Some(h) => {
                let mut b = [0u8; 32];
                hex::decode_to_slice(h.trim(), &mut b).map_err(|_| {
                    VaultError::Config(format!("expected SHA-256 {} is not 64 hex characters", id::shown(h)))
                })?;
                Some(b)
            }
            None => None,
        };
        let un = self.fetch_unsealed(id).await?;
        match expected {
            Some(e) if e != un.sha256 => Err(VaultError::Damaged {
                id: id.to_string(),
                reason: format!("SHA-256 is {}, expected {}", hex::encode(un.sha256), hex::encode(e)),
            }),
            _ => Ok(()),
        }
    }

    /// Encrypts `plaintext` exactly as [`Vault::put`] would, but returns the sealed bytes
    /// instead of storing them: for small objects a caller keeps in its own transaction (a
    /// received mail's source, in the database with its message — one durable write instead
    /// of a file and its fsyncs). Read back with [`Vault::open_sealed`].
    pub fn seal_small(&self, plaintext: &[u8]) -> Result<SealedBlob, VaultError> {
        let id = id::new_id();
        let sealed = format::seal(&self.inner.kek, &id, plaintext).map_err(VaultError::Io)?;
        Ok(SealedBlob { size: plaintext.len() as u64, sha256: hex::encode(sealed.sha256), id, sealed: sealed.bytes })
    }

    /// Decrypts what [`Vault::seal_small`] returned for `id`, checking every tag and the
    /// SHA-256; `Damaged` when anything does not match (another id, changed bytes).
    pub fn open_sealed(&self, id: &str, sealed: &[u8]) -> Result<Bytes, VaultError> {
        format::unseal(&self.inner.kek, id, sealed)
            .map(|u| Bytes::from(u.plaintext))
            .map_err(|reason| VaultError::Damaged { id: id::shown(id), reason })
    }

    /// Deletes a blob; deleting one that is already gone succeeds (a sweep may repeat).
    pub async fn delete(&self, id: &str) -> Result<(), VaultError> {
        if !id::is_valid_id(id) {
            return Err(VaultError::NotFound(id::shown(id)));
        }
        match self.inner.store.delete(&id::object_path(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Blob ids last modified before `older_than`, with their time (for the orphan sweep).
    /// The key check and anything not shaped like a blob are never listed.
    pub async fn list(&self, older_than: SystemTime) -> Result<Vec<(String, SystemTime)>, VaultError> {
        let mut out = Vec::new();
        let mut stream = self.inner.store.list(None);
        while let Some(meta) = stream.try_next().await.map_err(io_err)? {
            let Some(id) = id::id_of_path(&meta.location) else {
                continue;
            };
            let modified: SystemTime = meta.last_modified.into();
            if modified < older_than {
                out.push((id, modified));
            }
        }
        Ok(out)
    }
}

/// Writes the key check unless one exists (conditional put where the backend supports it);
/// says whether the key check now in the store is this key's.
async fn write_keycheck_once(store: &Arc<dyn ObjectStore>, key: &MasterKey) -> Result<Keycheck, VaultError> {
    let path = object_store::path::Path::from(KEYCHECK_PATH);
    let payload = PutPayload::from(key.keycheck());
    match store.put_opts(&path, payload.clone(), PutMode::Create.into()).await {
        Ok(_) => Ok(Keycheck::Matches),
        Err(object_store::Error::NotImplemented { .. }) => {
            store.put(&path, payload).await.map_err(io_err)?;
            Ok(Keycheck::Matches)
        }
        // `AlreadyExists` on S3 and the local backend; other S3-compatible servers answer a
        // failed `If-None-Match` differently (moto: 403). Whatever the error, a key check that
        // is now there decides; none there means the put really failed.
        Err(put_error) => match store.get(&path).await {
            Ok(r) => Ok(key.check(&r.bytes().await.map_err(io_err)?)),
            Err(_) => Err(io_err(put_error)),
        },
    }
}

/// Up to `max` blobs of the store, with id and header, to test a key against when the key
/// check is gone. A right key opens every intact header; a wrong key opens none (AEAD), so one
/// damaged blob cannot make the right key look wrong.
async fn sample_blobs(store: &Arc<dyn ObjectStore>, max: usize) -> Result<Vec<(String, Bytes)>, VaultError> {
    let mut out = Vec::new();
    let mut stream = store.list(None);
    while let Some(meta) = stream.try_next().await.map_err(io_err)? {
        if let Some(id) = id::id_of_path(&meta.location) {
            let end = meta.size.min(format::HEADER_LEN as u64);
            let bytes = store.get_range(&meta.location, 0..end).await.map_err(io_err)?;
            out.push((id, bytes));
            if out.len() >= max {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_is_clone_send_and_sync() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Vault>();
    }

    #[tokio::test]
    async fn keycheck_is_written_once_and_a_later_other_key_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        assert!(matches!(write_keycheck_once(&store, &a).await.unwrap(), Keycheck::Matches));
        match write_keycheck_once(&store, &b).await.unwrap() {
            Keycheck::Mismatch { store_key_id } => assert_eq!(store_key_id, a.key_id()),
            Keycheck::Matches => panic!("second key overwrote or matched the first key's check"),
        }
        assert!(matches!(write_keycheck_once(&store, &a).await.unwrap(), Keycheck::Matches));
    }
}
