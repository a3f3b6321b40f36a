//! Staff sign-in sessions: a random token in an `HttpOnly` cookie, stored only as a hash,
//! with a per-session CSRF token.

use kontor_core::StaffUser;
use rand::RngCore;

use super::token_hash;
use crate::records::user_from_row;
use crate::{params, Store, StoreError};

/// A signed-in staff user.
#[derive(Debug, Clone)]
pub struct StaffSession {
    pub user: StaffUser,
    /// Must accompany every state-changing request of this session.
    pub csrf: String,
    /// The user's chosen interface language, if any.
    pub language: Option<String>,
}

fn random_token(prefix: &str) -> String {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    format!("{prefix}{}", hex::encode(raw))
}

impl Store {
    /// Starts a session for `user_id` lasting `ttl_secs`; returns the cookie value.
    pub async fn create_session(&self, user_id: i64, ttl_secs: i64) -> Result<String, StoreError> {
        let token = random_token("ks_");
        let hash = token_hash(&token);
        let csrf = random_token("");
        self.write(move |tx| {
            let now = tx.now;
            tx.conn.execute(
                "INSERT INTO sessions (id, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                &params![hash, user_id, csrf, now, now + ttl_secs * 1_000_000],
            )?;
            // Expired sessions of this user go when a new one starts.
            tx.conn.execute("DELETE FROM sessions WHERE user_id = ? AND expires_at < ?", &params![user_id, now])?;
            Ok(())
        })
        .await?;
        Ok(token)
    }

    /// The session for a cookie value, if it exists and has not expired.
    pub async fn session(&self, token: &str) -> Result<Option<StaffSession>, StoreError> {
        let hash = token_hash(token);
        self.read(move |c| {
            // The columns of `USER_COLS`, then the session's.
            let row = c.query_opt(
                "SELECT u.id, u.email, u.name, u.role, u.created_at, u.active, s.csrf, u.language FROM sessions s \
                 JOIN users u ON u.id = s.user_id WHERE s.id = ? AND s.expires_at > ? AND u.active = 1",
                &params![hash, crate::now_us()],
            )?;
            row.map(|r| {
                Ok(StaffSession {
                    user: user_from_row(&r)?,
                    csrf: r.req_text(6, "sessions.csrf")?,
                    language: r.opt_text(7),
                })
            })
            .transpose()
        })
        .await
    }

    /// Ends a session (sign-out).
    pub async fn delete_session(&self, token: &str) -> Result<(), StoreError> {
        let hash = token_hash(token);
        self.write(move |tx| tx.conn.execute("DELETE FROM sessions WHERE id = ?", &params![hash]).map(|_| ())).await
    }

    /// Ends every session of a user except the one with cookie value `keep` (after a
    /// password change).
    pub async fn end_other_sessions(&self, user_id: i64, keep: &str) -> Result<u64, StoreError> {
        let keep = token_hash(keep);
        self.write(move |tx| {
            tx.conn.execute("DELETE FROM sessions WHERE user_id = ? AND id <> ?", &params![user_id, keep])
        })
        .await
    }

    /// Sets a staff user's interface language (`de`, `en`, or `None` for the browser's).
    pub async fn set_user_language(&self, user_id: i64, language: Option<String>) -> Result<(), StoreError> {
        self.write(move |tx| {
            let n = tx
                .conn
                .execute("UPDATE users SET language = ? WHERE id = ?", &params![language.as_deref(), user_id])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {user_id}")));
            }
            Ok(())
        })
        .await
    }
}
