//! Staff users (Argon2id passwords) and API tokens (stored as SHA-256 hashes).

mod sessions;

pub use sessions::StaffSession;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use kontor_core::{Role, StaffUser, Timestamp};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::db::Row;
use crate::records::{user_from_row, USER_COLS};
use crate::{params, Store, StoreError};

/// Hashes an API token for storage and lookup.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Shortest password accepted, in characters.
const MIN_PASSWORD_CHARS: usize = 8;

/// Password hashes computed at the same time in this process: each takes 19 MiB and a core
/// for tens of milliseconds, so a burst of sign-ins waits here instead of taking memory and
/// every core (the sign-in limiter bounds the rate, this bounds the concurrency).
static PASSWORD_WORK: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    std::sync::Arc::new(tokio::sync::Semaphore::new(cores.clamp(1, 4)))
});

/// Runs Argon2 work on a blocking thread, at most [`PASSWORD_WORK`] at a time. The permit
/// goes with the work: a caller that gives up (a client that disconnected) does not free its
/// place while the hash still runs.
async fn password_work<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, StoreError> {
    let permit = PASSWORD_WORK
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| StoreError::Database("password work is shut down".into()))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    })
    .await
    .map_err(|e| StoreError::Database(e.to_string()))
}

/// Checks a new password's length and hashes it with Argon2id (on a blocking thread).
async fn hash_new_password(password: String) -> Result<String, StoreError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(StoreError::invalid("password", format!("must have at least {MIN_PASSWORD_CHARS} characters")));
    }
    password_work(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await?
    .map_err(|e| StoreError::Database(format!("password hashing failed: {e}")))
}

/// An API token as listed (never the secret itself, nor its hash).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    /// The token's id (for `DELETE /api/v1/tokens/{id}` and `kontor token revoke ID`).
    pub id: i64,
    /// What the token is for (e.g. the integration using it).
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked token no longer authenticates.
    pub revoked_at: Option<Timestamp>,
}

/// The columns [`token_from_row`] reads (of `api_tokens`).
const TOKEN_COLS: &str = "id, name, role, created_at, revoked_at";

fn token_from_row(r: &Row) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: r.req_i64(0, "api_tokens.id")?,
        name: r.req_text(1, "api_tokens.name")?,
        role: r.req_enum(2, "api_tokens.role", Role::parse)?,
        created_at: r.req_ts(3, "api_tokens.created_at")?,
        revoked_at: r.opt_ts(4, "api_tokens.revoked_at")?,
    })
}

/// Refuses roles that staff users cannot have.
fn check_staff_role(role: Role) -> Result<(), StoreError> {
    if role.is_staff() {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "role",
            format!("{role} is a role for API tokens only; a staff user is admin or agent"),
        ))
    }
}

impl Store {
    /// Creates a staff user with an Argon2id password hash.
    pub async fn create_user(
        &self,
        email: String,
        name: String,
        role: Role,
        password: String,
    ) -> Result<StaffUser, StoreError> {
        let email = email.trim().to_lowercase();
        if kontor_core::normalise_identity(kontor_core::IdentityKind::Email, &email, "DE").is_err() {
            return Err(StoreError::invalid("email", "not a valid e-mail address"));
        }
        if name.trim().is_empty() {
            return Err(StoreError::invalid("name", "must not be empty"));
        }
        check_staff_role(role)?;
        let hash = hash_new_password(password).await?;
        self.write(move |tx| {
            if tx.conn.query_opt("SELECT 1 FROM users WHERE email = ?", &params![email.as_str()])?.is_some() {
                return Err(StoreError::Conflict(format!("a user with e-mail {email} exists")));
            }
            let r = tx
                .conn
                .query_opt(
                    &format!(
                        "INSERT INTO users (email, name, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?) \
                         RETURNING {USER_COLS}"
                    ),
                    &params![email.as_str(), name.trim(), role.as_str(), hash, tx.now],
                )?
                .ok_or_else(|| StoreError::Database("user insert returned no id".into()))?;
            let user = user_from_row(&r)?;
            tx.event(
                kontor_core::EventKind::UserCreated,
                None,
                None,
                &json!({ "user_id": user.id, "role": user.role }),
            )?;
            Ok(user)
        })
        .await
    }

    /// Sets a staff user's password (Argon2id, at least 8 characters); appends
    /// `user.password_changed` (without the password or its hash). Existing sessions stay.
    pub async fn set_user_password(&self, user_id: i64, new_password: String) -> Result<(), StoreError> {
        let hash = hash_new_password(new_password).await?;
        self.write(move |tx| {
            let n = tx.conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", &params![hash, user_id])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {user_id}")));
            }
            tx.event(kontor_core::EventKind::UserPasswordChanged, None, None, &json!({ "user_id": user_id }))?;
            Ok(())
        })
        .await
    }

    /// All staff users by e-mail.
    pub async fn list_users(&self) -> Result<Vec<StaffUser>, StoreError> {
        self.read(|c| {
            c.query(&format!("SELECT {USER_COLS} FROM users ORDER BY email"), &[])?.iter().map(user_from_row).collect()
        })
        .await
    }

    /// The user if e-mail and password match (Argon2id verification).
    pub async fn verify_password(&self, email: String, password: String) -> Result<Option<StaffUser>, StoreError> {
        let email = email.trim().to_lowercase();
        let row = self
            .read(move |c| {
                c.query_opt(
                    &format!("SELECT {USER_COLS}, password_hash FROM users WHERE email = ? AND active = 1"),
                    &params![email.as_str()],
                )
            })
            .await?;
        let Some(row) = row else {
            // Verify against a fixed hash anyway, so the answer time does not tell which
            // e-mail addresses exist.
            let _ = password_work(move || {
                let salt = SaltString::encode_b64(b"kontor-no-such-user").ok();
                if let Some(salt) = salt {
                    let _ = Argon2::default().hash_password(password.as_bytes(), &salt);
                }
            })
            .await;
            return Ok(None);
        };
        let user = user_from_row(&row)?;
        let stored = row.req_text(6, "users.password_hash")?;
        let ok = password_work(move || {
            PasswordHash::new(&stored)
                .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        Ok(ok.then_some(user))
    }

    /// Creates an API token; returns the secret, which is shown once and stored only hashed.
    pub async fn create_token(&self, name: String, role: Role) -> Result<(ApiToken, String), StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::invalid("name", "must not be empty"));
        }
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let secret = format!("kt_{}", hex::encode(raw));
        let hash = token_hash(&secret);
        let token = self
            .write(move |tx| {
                let r = tx
                    .conn
                    .query_opt(
                        "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                        &params![name.trim(), role.as_str(), hash, tx.now],
                    )?
                    .ok_or_else(|| StoreError::Database("token insert returned no id".into()))?;
                let t = ApiToken {
                    id: r.req_i64(0, "api_tokens.id")?,
                    name: name.trim().to_string(),
                    role,
                    created_at: Timestamp::from_micros(tx.now),
                    revoked_at: None,
                };
                tx.event(kontor_core::EventKind::TokenCreated, None, None, &json!({ "token": t }))?;
                Ok(t)
            })
            .await?;
        Ok((token, secret))
    }

    /// The id and role of a token, if it is known and not revoked.
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<(i64, Role)>, StoreError> {
        let hash = token_hash(token);
        self.read(move |c| {
            // An unknown role in the table gives the least power there is (deliberately not
            // an error: a token keeps working for ingest rather than failing every request).
            c.query_opt("SELECT id, role FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL", &params![hash])?
                .map(|r| Ok((r.req_i64(0, "api_tokens.id")?, Role::parse(&r.text(1)).unwrap_or(Role::Ingest))))
                .transpose()
        })
        .await
    }

    /// Every API token, revoked ones included, oldest first (never the secret or its hash).
    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        self.read(|c| {
            c.query(&format!("SELECT {TOKEN_COLS} FROM api_tokens ORDER BY id"), &[])?
                .iter()
                .map(token_from_row)
                .collect()
        })
        .await
    }

    /// Revokes a token: it stops authenticating and `token.revoked` is appended (nodes
    /// evict it from their caches on that event). Revoking a revoked token changes nothing.
    pub async fn revoke_token(&self, id: i64) -> Result<ApiToken, StoreError> {
        self.write(move |tx| {
            let before = tx
                .conn
                .query_opt(&format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE id = ?"), &params![id])?
                .map(|r| token_from_row(&r))
                .ok_or_else(|| StoreError::NotFound(format!("token {id}")))??;
            if before.revoked_at.is_some() {
                return Ok(before);
            }
            tx.conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", &params![tx.now, id])?;
            let token = ApiToken { revoked_at: Some(Timestamp::from_micros(tx.now)), ..before };
            tx.event(kontor_core::EventKind::TokenRevoked, None, None, &json!({ "token": token }))?;
            Ok(token)
        })
        .await
    }

    /// The ids of the tokens revoked by events `after < id <= upto` (what a node evicts
    /// from its token cache when it learns of new events).
    pub async fn token_revocations(&self, after: i64, upto: i64) -> Result<Vec<i64>, StoreError> {
        self.read(move |c| {
            let rows = c.query(
                "SELECT payload FROM events WHERE id > ? AND id <= ? AND kind = 'token.revoked' ORDER BY id",
                &params![after, upto],
            )?;
            // Read leniently on purpose: a payload that cannot be read names no token, and an
            // error here would stall the watch that evicts every later revocation.
            Ok(rows
                .iter()
                .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.text(0)).ok())
                .filter_map(|p| p.pointer("/token/id").and_then(|v| v.as_i64()))
                .collect())
        })
        .await
    }
}

impl Store {
    /// Changes a staff user's name, role or whether they are active. Deactivating ends their
    /// sessions. At least one active admin always remains (else Conflict).
    pub async fn update_user(
        &self,
        id: i64,
        name: Option<String>,
        role: Option<Role>,
        active: Option<bool>,
    ) -> Result<StaffUser, StoreError> {
        if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(StoreError::invalid("name", "must not be empty"));
        }
        if let Some(role) = role {
            check_staff_role(role)?;
        }
        self.write(move |tx| {
            let select = format!("SELECT {USER_COLS} FROM users WHERE id = ?");
            let before = tx
                .conn
                .query_opt(&select, &params![id])?
                .map(|r| user_from_row(&r))
                .ok_or_else(|| StoreError::NotFound(format!("user {id}")))??;
            tx.conn.execute(
                "UPDATE users SET name = COALESCE(?, name), role = COALESCE(?, role), active = COALESCE(?, active) WHERE id = ?",
                &params![name.as_deref().map(str::trim), role.map(|r| r.as_str()), active, id],
            )?;
            let admins = match tx.conn.query_opt("SELECT COUNT(*) FROM users WHERE role = 'admin' AND active = 1", &[])? {
                Some(r) => r.req_i64(0, "COUNT(*) of admins")?,
                None => 0,
            };
            if admins == 0 {
                return Err(StoreError::Conflict("at least one active admin must remain".into()));
            }
            if active == Some(false) {
                tx.conn.execute("DELETE FROM sessions WHERE user_id = ?", &params![id])?;
            }
            let after = tx
                .conn
                .query_opt(&select, &params![id])?
                .map(|r| user_from_row(&r))
                .ok_or_else(|| StoreError::NotFound(format!("user {id}")))??;
            if after != before {
                // Ids and roles only: no e-mail address or name in the event.
                let mut changed = Vec::new();
                for (field, differs) in
                    [("name", after.name != before.name), ("role", after.role != before.role), ("active", after.active != before.active)]
                {
                    if differs {
                        changed.push(field);
                    }
                }
                let payload = json!({
                    "user_id": after.id, "role": after.role, "active": after.active, "changed": changed,
                    "before": { "role": before.role, "active": before.active },
                });
                tx.event(kontor_core::EventKind::UserUpdated, None, None, &payload)?;
            }
            Ok(after)
        })
        .await
    }
}
