//! Settings changed at run time by admins, stored as key/value text. Every change is in the
//! event log (with its value), so settings must not hold secrets.

use serde_json::json;

use crate::{params, Store, StoreError};

/// Key of the setting that allows only a case's assignee to reply.
pub const REPLY_ONLY_ASSIGNEE: &str = "reply_only_assignee";

/// Longest setting key accepted, in characters.
const MAX_KEY_CHARS: usize = 64;

fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_CHARS
        && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid("key", format!("1 to {MAX_KEY_CHARS} of a-z, 0-9, '_' and '.'")))
    }
}

impl Store {
    /// The value of a setting, `None` if it was never set.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.read(move |c| {
            c.query_opt("SELECT value FROM settings WHERE key = ?", &params![key])?
                .map(|r| r.req_text(0, "settings.value"))
                .transpose()
        })
        .await
    }

    /// Sets a setting; appends `settings.updated` with key and value if the value changed.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let (key, value) = (key.to_string(), value.to_string());
        self.write(move |tx| {
            let before = tx.conn.query_opt("SELECT value FROM settings WHERE key = ?", &params![key.as_str()])?;
            let before = before.map(|r| r.req_text(0, "settings.value")).transpose()?;
            if before.as_deref() == Some(value.as_str()) {
                return Ok(());
            }
            tx.conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &params![key.as_str(), value.as_str()],
            )?;
            tx.event(kontor_core::EventKind::SettingsUpdated, None, None, &json!({ "key": key, "value": value }))?;
            Ok(())
        })
        .await
    }

    /// How far a poller has read a source (see [`Store::set_channel_cursor`]); `None` before
    /// the first save.
    pub async fn channel_cursor(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_string();
        self.read(move |c| {
            c.query_opt("SELECT value FROM channel_cursors WHERE name = ?", &params![name])?
                .map(|r| r.req_text(0, "channel_cursors.value"))
                .transpose()
        })
        .await
    }

    /// Saves how far a poller has read a source (an IMAP folder's UIDVALIDITY and last UID),
    /// once what it read up to there is committed. Not an event: it changes with every mail.
    pub async fn set_channel_cursor(&self, name: &str, value: &str) -> Result<(), StoreError> {
        if name.is_empty() || name.len() > 200 || value.len() > 1000 {
            return Err(StoreError::invalid("cursor", "a name of 1 to 200 bytes and a value of at most 1000"));
        }
        let (name, value) = (name.to_string(), value.to_string());
        self.write(move |tx| {
            tx.conn.execute(
                "INSERT INTO channel_cursors (name, value, updated_at) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                &params![name.as_str(), value.as_str(), crate::now_us()],
            )?;
            Ok(())
        })
        .await
    }

    /// Whether only a case's assignee may reply to it (admin setting; default: false).
    pub async fn reply_only_assignee(&self) -> Result<bool, StoreError> {
        Ok(self.setting(REPLY_ONLY_ASSIGNEE).await?.as_deref() == Some("true"))
    }

    /// Allows replies only from a case's assignee (`true`) or from everyone (`false`).
    pub async fn set_reply_only_assignee(&self, only_assignee: bool) -> Result<(), StoreError> {
        self.set_setting(REPLY_ONLY_ASSIGNEE, if only_assignee { "true" } else { "false" }).await
    }
}
