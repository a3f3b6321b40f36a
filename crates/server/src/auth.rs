//! API token authentication: `Authorization: Bearer <token>`, looked up by hash, cached
//! briefly so the hot ingest path does not read the token table on every request.
//!
//! A revoked token must stop working at once on every node, not when the cache entry
//! expires: the node that revokes evicts it before answering, and every node watches the
//! event log for `token.revoked` (see [`spawn_revocation_watch`]).
//!
//! An `ingest` token may call only the routes in [`INGEST_ROUTES`]; the [`Caller`]
//! extractor refuses it everywhere else, so a new route cannot forget the rule.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::Method;
use kontor_core::Role;
use kontor_store::{staff::token_hash, Store};

use crate::error::AppError;
use crate::AppState;

const CACHE_TTL: Duration = Duration::from_secs(30);

/// The only routes (method, matched path) an `ingest` token may call.
pub const INGEST_ROUTES: &[(Method, &str)] = &[(Method::POST, "/api/v1/inbound")];

#[derive(Default)]
struct CacheState {
    /// Token hash → (token id, role, when it was looked up).
    entries: HashMap<String, (i64, Role, Instant)>,
    /// Tokens known to be revoked: never answered from or put into the cache again.
    revoked: HashSet<i64>,
}

/// Recently seen valid tokens by hash, and the tokens this node knows are revoked.
#[derive(Default)]
pub struct TokenCache {
    state: Mutex<CacheState>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<(i64, Role)> {
        let st = self.state.lock().ok()?;
        st.entries
            .get(hash)
            .filter(|(id, _, at)| at.elapsed() < CACHE_TTL && !st.revoked.contains(id))
            .map(|(id, role, _)| (*id, *role))
    }

    fn put(&self, hash: String, id: i64, role: Role) {
        if let Ok(mut st) = self.state.lock() {
            // A lookup that raced with the revocation must not bring the token back.
            if st.revoked.contains(&id) {
                return;
            }
            if st.entries.len() > 10_000 {
                st.entries.clear();
            }
            st.entries.insert(hash, (id, role, Instant::now()));
        }
    }

    /// Forgets a revoked token at once; it is never cached again on this node.
    pub fn evict(&self, token_id: i64) {
        if let Ok(mut st) = self.state.lock() {
            st.revoked.insert(token_id);
            st.entries.retain(|_, (id, _, _)| *id != token_id);
        }
    }

    /// True if this node knows the token was revoked.
    pub fn is_revoked(&self, token_id: i64) -> bool {
        self.state.lock().map(|st| st.revoked.contains(&token_id)).unwrap_or(true)
    }
}

/// Starts this node's task that reads each new stretch of the event log for
/// `token.revoked` and evicts those tokens from the cache (on PostgreSQL, the store learns
/// of other nodes' events through `LISTEN`). One small indexed read per commit batch, not
/// per request: the ingest path stays free of an extra database read.
pub fn spawn_revocation_watch(store: Store, tokens: Arc<TokenCache>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut latest = store.subscribe();
        let mut cursor = *latest.borrow_and_update();
        // On SQLite another process on the same file (`kontor token revoke`) commits without
        // telling this one: look at the newest event id now and then.
        let poll = store.backend() == kontor_store::Backend::Sqlite;
        let mut polled = 0;
        loop {
            let upto = (*latest.borrow_and_update()).max(polled);
            if upto > cursor {
                match store.token_revocations(cursor, upto).await {
                    Ok(ids) => {
                        for id in ids {
                            tokens.evict(id);
                            tracing::info!(token_id = id, "Revoked API token evicted from the token cache.");
                        }
                        cursor = upto;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Cannot read token revocations; retrying.");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            tokio::select! {
                changed = latest.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(500)), if poll => {
                    if let Ok(max) = store.max_event_id().await {
                        polled = max;
                    }
                }
            }
        }
    })
}

/// The authenticated caller of an API route: an API token, or a signed-in staff user's
/// session cookie (then every state-changing request must carry `X-CSRF-Token`).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The API token used, if any.
    pub token_id: Option<i64>,
    /// What the caller may do (the token's role, or the staff user's role).
    pub role: Role,
    /// The staff user behind a session.
    pub user_id: Option<kontor_core::UserId>,
    /// That user's display name.
    pub user_name: Option<String>,
    /// The session cookie's value (to notice a sign-out during a long request).
    pub session: Option<String>,
}

pub use kontor_app::{Actor, Visibility};

/// Compares two secrets (CSRF tokens) in constant time; an empty secret never matches.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 && !a.is_empty()
}

/// Name of the staff session cookie.
pub const SESSION_COOKIE: &str = "kontor_session";

/// The value of a cookie in the request, if present.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Caller {
    /// The caller as the application layer's actor.
    pub fn actor(&self) -> Actor {
        Actor { user_id: self.user_id, role: self.role, token_id: self.token_id }
    }

    /// The staff user whose team membership limits what they see (none for admins and API
    /// tokens).
    pub fn restricted_user(&self) -> Option<kontor_core::UserId> {
        self.actor().restricted_user()
    }

    /// 404 unless the caller may see the customer (has a case of theirs it may see).
    pub async fn ensure_customer_visible(&self, state: &AppState, customer_id: i64) -> Result<(), AppError> {
        Ok(state.app.ensure_customer_visible(&self.actor(), customer_id).await?)
    }

    /// 404 unless the caller may see the case (a hidden case must not be told apart from a
    /// missing one).
    pub async fn ensure_visible(&self, state: &AppState, case_id: i64) -> Result<(), AppError> {
        Ok(state.app.ensure_case_visible(&self.actor(), case_id).await?)
    }

    /// Fails with 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), AppError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(AppError::Forbidden)
        }
    }
}

/// True if an `ingest` token may call this route.
fn ingest_may_call(parts: &Parts) -> bool {
    let Some(path) = parts.extensions.get::<MatchedPath>() else { return false };
    INGEST_ROUTES.iter().any(|(method, route)| parts.method == *method && path.as_str() == *route)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Self::authenticate(parts, state).await?;
        if caller.role == Role::Ingest && !ingest_may_call(parts) {
            return Err(AppError::Refused(
                "an ingest token may only post inbound messages (POST /api/v1/inbound)".into(),
            ));
        }
        Ok(caller)
    }
}

impl Caller {
    async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if parts.headers.get(axum::http::header::AUTHORIZATION).is_none() {
            if let Some(token) = cookie(&parts.headers, SESSION_COOKIE) {
                let session = state.store.session(token).await?.ok_or(AppError::Unauthorized)?;
                let safe = matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD);
                let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
                if !safe && !same_secret(sent, &session.csrf) {
                    return Err(AppError::Csrf);
                }
                return Ok(Caller {
                    token_id: None,
                    role: session.user.role,
                    user_id: Some(kontor_core::UserId(session.user.id)),
                    user_name: Some(session.user.name),
                    session: Some(token.to_string()),
                });
            }
        }
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or(AppError::Unauthorized)?;
        let hash = token_hash(token);
        if let Some((token_id, role)) = state.tokens.get(&hash) {
            return Ok(Caller { token_id: Some(token_id), role, user_id: None, user_name: None, session: None });
        }
        match state.store.authenticate_token(token).await? {
            Some((token_id, role)) => {
                state.tokens.put(hash, token_id, role);
                Ok(Caller { token_id: Some(token_id), role, user_id: None, user_name: None, session: None })
            }
            None => Err(AppError::Unauthorized),
        }
    }
}
