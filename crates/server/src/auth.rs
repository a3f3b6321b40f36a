//! API token authentication: `Authorization: Bearer <token>`, looked up by hash, cached
//! briefly so the hot ingest path does not read the token table on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use kontor_core::Role;
use kontor_store::token_hash;

use crate::error::AppError;
use crate::AppState;

const CACHE_TTL: Duration = Duration::from_secs(30);

/// Recently seen valid tokens by hash.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (i64, Role, Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<(i64, Role)> {
        let map = self.entries.lock().ok()?;
        map.get(hash).filter(|(_, _, at)| at.elapsed() < CACHE_TTL).map(|(id, role, _)| (*id, *role))
    }

    fn put(&self, hash: String, id: i64, role: Role) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() > 10_000 {
                map.clear();
            }
            map.insert(hash, (id, role, Instant::now()));
        }
    }
}

/// The authenticated caller of an API route.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub token_id: i64,
    pub role: Role,
}

impl Caller {
    /// Fails with 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), AppError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(AppError::Forbidden)
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or(AppError::Unauthorized)?;
        let hash = token_hash(token);
        if let Some((token_id, role)) = state.tokens.get(&hash) {
            return Ok(Caller { token_id, role });
        }
        match state.store.authenticate_token(token).await? {
            Some((token_id, role)) => {
                state.tokens.put(hash, token_id, role);
                Ok(Caller { token_id, role })
            }
            None => Err(AppError::Unauthorized),
        }
    }
}
