//! Who acts: a staff user (by session) or a system (by API token).

use kontor_core::{Role, UserId};

/// The acting user or system of a use case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The staff user, when a person acts (through a session).
    pub user_id: Option<UserId>,
    /// The role: the staff user's, or the API token's.
    pub role: Role,
    /// The API token, when a system acts.
    pub token_id: Option<i64>,
}

impl Actor {
    /// A staff user.
    pub fn staff(user_id: UserId, role: Role) -> Actor {
        Actor { user_id: Some(user_id), role, token_id: None }
    }

    /// A system with an API token.
    pub fn token(token_id: i64, role: Role) -> Actor {
        Actor { user_id: None, role, token_id: Some(token_id) }
    }

    /// The staff user whose teams limit what they see; `None` for admins and API tokens,
    /// who see everything.
    pub fn restricted_user(&self) -> Option<UserId> {
        self.user_id.filter(|_| !crate::sees_everything(self.role))
    }
}
