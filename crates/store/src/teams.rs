//! Team membership, and which cases a staff user may see because of it.

use kontor_core::{CaseId, StaffUser, Team, TeamId, UserId};
use serde_json::json;

use crate::db::Conn;
use crate::records::user_from_row;
use crate::records::VISIBLE_TO_SQL;
use crate::{params, Store, StoreError};

fn require_team(c: &mut Conn, team_id: TeamId) -> Result<(), StoreError> {
    match c.query_opt("SELECT 1 FROM teams WHERE id = ?", &params![team_id])? {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("team {team_id}"))),
    }
}

fn require_user(c: &mut Conn, user_id: UserId) -> Result<(), StoreError> {
    match c.query_opt("SELECT 1 FROM users WHERE id = ?", &params![user_id])? {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("user {user_id}"))),
    }
}

impl Store {
    /// Creates a team.
    pub async fn create_team(&self, name: String) -> Result<Team, StoreError> {
        self.write(move |tx| {
            let id = tx
                .conn
                .query_opt(
                    "INSERT INTO teams (name, created_at) VALUES (?, ?) RETURNING id",
                    &params![name.as_str(), tx.now],
                )?
                .ok_or_else(|| StoreError::Database("team insert returned no id".into()))?
                .req_i64(0, "teams.id")?;
            tx.event(kontor_core::EventKind::TeamCreated, None, None, &json!({ "team": { "id": id, "name": name } }))?;
            Ok(Team { id, name })
        })
        .await
    }

    /// All teams by name.
    pub async fn list_teams(&self) -> Result<Vec<Team>, StoreError> {
        self.read(|c| {
            c.query("SELECT id, name FROM teams ORDER BY name", &[])?
                .iter()
                .map(|r| Ok(Team { id: r.req_i64(0, "teams.id")?, name: r.req_text(1, "teams.name")? }))
                .collect()
        })
        .await
    }

    /// Makes a staff user a member of a team; appends `team.member_added`. Adding a member
    /// again changes nothing (and appends no event).
    pub async fn add_team_member(&self, team_id: TeamId, user_id: UserId) -> Result<(), StoreError> {
        self.write(move |tx| {
            require_team(tx.conn, team_id)?;
            require_user(tx.conn, user_id)?;
            let added = tx.conn.execute(
                "INSERT INTO team_members (team_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                &params![team_id, user_id],
            )?;
            if added > 0 {
                tx.event(
                    kontor_core::EventKind::TeamMemberAdded,
                    None,
                    None,
                    &json!({ "team_id": team_id, "user_id": user_id }),
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Removes a staff user from a team; appends `team.member_removed`. Not found if the
    /// user is not a member.
    pub async fn remove_team_member(&self, team_id: TeamId, user_id: UserId) -> Result<(), StoreError> {
        self.write(move |tx| {
            let removed = tx
                .conn
                .execute("DELETE FROM team_members WHERE team_id = ? AND user_id = ?", &params![team_id, user_id])?;
            if removed == 0 {
                return Err(StoreError::NotFound(format!("member {user_id} of team {team_id}")));
            }
            tx.event(
                kontor_core::EventKind::TeamMemberRemoved,
                None,
                None,
                &json!({ "team_id": team_id, "user_id": user_id }),
            )?;
            Ok(())
        })
        .await
    }

    /// The members of a team by e-mail.
    pub async fn team_members(&self, team_id: i64) -> Result<Vec<StaffUser>, StoreError> {
        self.read(move |c| {
            require_team(c, TeamId(team_id))?;
            // The columns of `USER_COLS`.
            c.query(
                "SELECT u.id, u.email, u.name, u.role, u.created_at, u.active FROM team_members tm \
                 JOIN users u ON u.id = tm.user_id WHERE tm.team_id = ? ORDER BY u.email",
                &params![team_id],
            )?
            .iter()
            .map(user_from_row)
            .collect()
        })
        .await
    }

    /// Ids of the teams a staff user belongs to, ascending (empty for an unknown user).
    pub async fn user_team_ids(&self, user_id: UserId) -> Result<Vec<i64>, StoreError> {
        self.read(move |c| {
            c.query("SELECT team_id FROM team_members WHERE user_id = ? ORDER BY team_id", &params![user_id])?
                .iter()
                .map(|r| r.req_i64(0, "team_members.team_id"))
                .collect()
        })
        .await
    }

    /// Whether a staff user may see a case: admins see every case, other users the cases
    /// without a team and the cases of their teams (the rule of `CaseFilter::visible_to`).
    /// Not found if the case does not exist.
    pub async fn case_visible_to(&self, case_id: CaseId, user_id: UserId) -> Result<bool, StoreError> {
        self.read(move |c| {
            let row = c.query_opt(
                &format!("SELECT CASE WHEN {VISIBLE_TO_SQL} THEN 1 ELSE 0 END FROM cases WHERE cases.id = ?"),
                &params![user_id, user_id, case_id],
            )?;
            let row = row.ok_or_else(|| StoreError::NotFound(format!("case {case_id}")))?;
            Ok(row.req_i64(0, "visibility of the case")? == 1)
        })
        .await
    }
}

impl Store {
    /// Renames a team (Conflict if the name is taken).
    pub async fn rename_team(&self, id: i64, name: String) -> Result<kontor_core::Team, StoreError> {
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(StoreError::invalid("name", "must not be empty"));
        }
        self.write(move |tx| {
            if tx.conn.execute("UPDATE teams SET name = ? WHERE id = ?", &params![name.as_str(), id])? == 0 {
                return Err(StoreError::NotFound(format!("team {id}")));
            }
            tx.event(
                kontor_core::EventKind::TeamUpdated,
                None,
                None,
                &serde_json::json!({ "team": { "id": id, "name": name } }),
            )?;
            Ok(kontor_core::Team { id, name })
        })
        .await
    }

    /// Deletes a team: its cases lose the team (and so become visible to every agent), its
    /// memberships end.
    pub async fn delete_team(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |tx| {
            let cases = tx.conn.execute("UPDATE cases SET team_id = NULL WHERE team_id = ?", &params![id])?;
            tx.conn.execute("DELETE FROM team_members WHERE team_id = ?", &params![id])?;
            if tx.conn.execute("DELETE FROM teams WHERE id = ?", &params![id])? == 0 {
                return Err(StoreError::NotFound(format!("team {id}")));
            }
            tx.event(
                kontor_core::EventKind::TeamDeleted,
                None,
                None,
                &serde_json::json!({ "team_id": id, "cases_without_team": cases }),
            )?;
            Ok(())
        })
        .await
    }
}
