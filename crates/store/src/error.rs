//! Typed store errors; the HTTP layer maps them to status codes.

/// What went wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request collides with the current state (duplicate, stale view, ...).
    #[error("conflict: {0}")]
    Conflict(String),
    /// An idempotency key (or provider message id) came again with a different message.
    #[error("idempotency conflict: {0}")]
    IdempotencyConflict(String),
    /// The actor may not do this (a rule, not a missing permission of the API token).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A field holds a value the store cannot accept.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// The database cannot be reached or is overloaded; retrying later may help.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Bad configuration (URL, paths).
    #[error("configuration: {0}")]
    Config(String),
    /// A stored row holds what no code writes: NULL in a required column, an unknown enum
    /// value. Reported, never turned into a default.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Anything else the database reported.
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    /// Shorthand for a field validation error.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        StoreError::Invalid { field: field.to_string(), message: message.into() }
    }

    /// True for errors caused by the database being unreachable.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable(e.to_string()),
            Some(ErrorCode::ConstraintViolation) => {
                tracing::debug!(error = %e, "Constraint violation.");
                StoreError::Conflict("a record with these values already exists".into())
            }
            Some(ErrorCode::CannotOpen | ErrorCode::DiskFull | ErrorCode::SystemIoFailure) => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        match e.code() {
            None => StoreError::Unavailable(e.to_string()),
            Some(c) if *c == postgres::error::SqlState::UNIQUE_VIOLATION => {
                tracing::debug!(error = %e, "Constraint violation.");
                StoreError::Conflict("a record with these values already exists".into())
            }
            // 08 connection, 40 rollback (deadlock, serialization), 53 resources, 57 shutdown: retryable.
            Some(c) if ["08", "40", "53", "57"].iter().any(|p| c.code().starts_with(p)) => {
                StoreError::Unavailable(e.to_string())
            }
            Some(_) => StoreError::Database(e.to_string()),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}
