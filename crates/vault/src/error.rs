//! The vault's typed errors.

use std::path::PathBuf;

/// Everything that can go wrong in the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The master key file does not belong to this blob store; nothing is served.
    #[error(
        "master key file {path} does not open blob store {store}: the store was created with key id {store_key_id}, \
         the file holds key id {file_key_id}; restore the right key file"
    )]
    WrongMasterKey {
        /// Key file that was read.
        path: PathBuf,
        /// The store's description.
        store: String,
        /// Key id recorded in the store's key check (`?` if unknown).
        store_key_id: String,
        /// Key id of the key in the file.
        file_key_id: String,
    },
    /// The master key file is missing but the store already holds data; no new key is made.
    #[error(
        "master key file {path} is missing but blob store {store} already holds data; restore the key file \
         from backup (a new key could not read any existing object, so none is created)"
    )]
    MissingMasterKey {
        /// Key file that was expected.
        path: PathBuf,
        /// The store's description.
        store: String,
    },
    /// The master key file exists but cannot be used (unreadable, malformed).
    #[error("master key file {path}: {reason}")]
    KeyFile {
        /// Key file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No blob with this id (also for strings that are not a vault id).
    #[error("blob {0} not found")]
    NotFound(String),
    /// The blob exists but fails authentication or its SHA-256 check; no bytes are returned.
    #[error("blob {id} is damaged: {reason}")]
    Damaged {
        /// Blob id (or the key-check object's name).
        id: String,
        /// What check failed.
        reason: String,
    },
    /// Invalid configuration or argument.
    #[error("vault configuration: {0}")]
    Config(String),
    /// The object store or the file system failed.
    #[error("blob store I/O: {0}")]
    Io(String),
}
