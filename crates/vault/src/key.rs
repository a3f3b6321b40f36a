//! The master key: its file, its derived keys and the key-check record.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::VaultError;

type HmacSha256 = Hmac<Sha256>;

const KEY_ID_LABEL: &[u8] = b"kontor vault key id";
const KEK_LABEL: &[u8] = b"kontor vault wrap key v1";
/// Label of the root from which other parts derive their keys (`Vault::derive_key`).
const DERIVE_LABEL: &[u8] = b"kontor vault derived keys v1";
const KEYCHECK_LABEL: &[u8] = b"kontor vault keycheck v1";
const KEYCHECK_MAGIC: &[u8; 4] = b"KVKC";
const KEYCHECK_VERSION: u8 = 1;
const KEY_ID_LEN: usize = 16;
const KEYCHECK_LEN: usize = 4 + 1 + KEY_ID_LEN + 32;

/// The 256-bit master key; never printed.
pub(crate) struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
    key_id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// What the key-check object says about a master key.
pub(crate) enum Keycheck {
    /// The key is the store's key.
    Matches,
    /// Another key made this store; its key id is given when readable.
    Mismatch { store_key_id: String },
}

impl MasterKey {
    fn from_bytes(bytes: [u8; 32]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let key_id = hex::encode(hmac(&bytes, KEY_ID_LABEL))[..KEY_ID_LEN].to_string();
        MasterKey { bytes, key_id }
    }

    /// A fresh random key.
    pub(crate) fn generate() -> Self {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let k = Self::from_bytes(b);
        zeroize::Zeroize::zeroize(&mut b);
        k
    }

    /// Non-secret identifier: first 16 hex chars of HMAC-SHA256(master, "kontor vault key id").
    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key-encryption key that wraps data keys.
    pub(crate) fn kek(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(hmac(&self.bytes, KEK_LABEL))
    }

    /// The root of derived keys (separate from the wrap key: no key serves two purposes).
    pub(crate) fn derive_root(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(hmac(&self.bytes, DERIVE_LABEL))
    }

    /// The key-check record for this key.
    pub(crate) fn keycheck(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(KEYCHECK_LEN);
        v.extend_from_slice(KEYCHECK_MAGIC);
        v.push(KEYCHECK_VERSION);
        v.extend_from_slice(self.key_id.as_bytes());
        v.extend_from_slice(&hmac(&self.bytes, KEYCHECK_LABEL));
        v
    }

    /// Checks a stored key-check record against this key (constant-time MAC comparison).
    pub(crate) fn check(&self, record: &[u8]) -> Keycheck {
        let store_key_id =
            if record.len() == KEYCHECK_LEN && &record[..4] == KEYCHECK_MAGIC && record[4] == KEYCHECK_VERSION {
                String::from_utf8_lossy(&record[5..5 + KEY_ID_LEN]).into_owned()
            } else {
                return Keycheck::Mismatch { store_key_id: "? (unreadable key check)".into() };
            };
        let mut mac = match HmacSha256::new_from_slice(self.bytes.as_ref()) {
            Ok(m) => m,
            Err(_) => return Keycheck::Mismatch { store_key_id },
        };
        mac.update(KEYCHECK_LABEL);
        match mac.verify_slice(&record[5 + KEY_ID_LEN..]) {
            Ok(()) => Keycheck::Matches,
            Err(_) => Keycheck::Mismatch { store_key_id },
        }
    }
}

fn hmac(key: &[u8; 32], label: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn key_file_error(path: &Path, reason: impl Into<String>) -> VaultError {
    VaultError::KeyFile { path: path.to_path_buf(), reason: reason.into() }
}

/// Reads the key file: `Ok(None)` when it does not exist. The file holds 64 hex characters.
pub(crate) fn read_key_file(path: &Path) -> Result<Option<MasterKey>, VaultError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(key_file_error(path, format!("cannot read: {e}"))),
    };
    warn_if_shared(path);
    let mut bytes = Zeroizing::new([0u8; 32]);
    let trimmed = text.trim();
    if trimmed.len() != 64 || hex::decode_to_slice(trimmed, bytes.as_mut()).is_err() {
        return Err(key_file_error(path, "not a vault master key (expected 64 hexadecimal characters)"));
    }
    Ok(Some(MasterKey::from_bytes(*bytes)))
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "The vault master key file is readable by group or others; restrict it to its owner (chmod 600)."
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

/// Creates the key file with mode 0600 from the start (never chmod afterwards), fsyncs the
/// file and its directory. Fails if the file already exists.
pub(crate) fn create_key_file(path: &Path, key: &MasterKey) -> Result<(), VaultError> {
    let dir: PathBuf = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| key_file_error(path, format!("cannot create its directory: {e}")))?;
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(|e| key_file_error(path, format!("cannot create: {e}")))?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(key.bytes.as_ref())));
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| key_file_error(path, format!("cannot write: {e}")))?;
    #[cfg(unix)]
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| key_file_error(path, format!("cannot sync its directory: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trips_and_debug_hides_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let key = MasterKey::generate();
        create_key_file(&path, &key).unwrap();
        let back = read_key_file(&path).unwrap().unwrap();
        assert_eq!(back.key_id(), key.key_id());
        assert_eq!(back.key_id().len(), 16);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&hex::encode(key.bytes.as_ref())), "{shown}");
        assert!(create_key_file(&path, &key).is_err(), "must not overwrite");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        create_key_file(&path, &MasterKey::generate()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "not hex at all").unwrap();
        assert!(matches!(read_key_file(&path), Err(VaultError::KeyFile { .. })));
        assert!(read_key_file(&dir.path().join("absent")).unwrap().is_none());
    }

    #[test]
    fn keycheck_accepts_only_its_own_key() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert!(matches!(a.check(&a.keycheck()), Keycheck::Matches));
        match b.check(&a.keycheck()) {
            Keycheck::Mismatch { store_key_id } => assert_eq!(store_key_id, a.key_id()),
            Keycheck::Matches => panic!("other key accepted"),
        }
        let mut forged = a.keycheck();
        forged[5..21].copy_from_slice(b.key_id().as_bytes());
        assert!(matches!(b.check(&forged), Keycheck::Mismatch { .. }));
        assert!(matches!(a.check(b"short"), Keycheck::Mismatch { .. }));
    }
}
