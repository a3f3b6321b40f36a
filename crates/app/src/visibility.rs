//! Who may see what — the one place that decides it for the API, the staff pages, the live
//! stream and downloads.
//!
//! The rule: admins and API tokens see everything ([`sees_everything`]); an agent sees cases
//! without a team and the cases of their teams, and the customers, search hits, events and
//! attachments that belong to such cases. Two forms of the same rule:
//! - [`Visibility`] asks the store (`case_visible_to` / `customer_visible_to`, the SQL form
//!   of the rule) with a short cache, for lists and single objects;
//! - [`Viewer`] decides in memory from an event's [`Audience`] (the teams of its case, which
//!   the store works out when it reads the event) and the caller's teams, which it keeps
//!   current from membership events: the live stream's form, with no query per event.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kontor_core::{CaseId, CustomerId, Role, UserId};
use kontor_store::events::{Audience, SessionViewer};
use kontor_store::Store;

use crate::Actor;

/// Remembers, for one restricted staff user, which cases and customers they may see. Answers
/// are kept for a few seconds, so a team change applies soon.
pub struct Visibility {
    user: Option<UserId>,
    cases: Mutex<HashMap<CaseId, (bool, Instant)>>,
    customers: Mutex<HashMap<CustomerId, (bool, Instant)>>,
}

impl Visibility {
    const TTL: Duration = Duration::from_secs(3);

    /// For an actor; unrestricted actors (admins, API tokens) see everything.
    pub fn for_actor(actor: &Actor) -> Self {
        Self::for_restricted_user(actor.restricted_user())
    }

    /// For a staff user with the role they have now (admins see everything).
    pub fn for_staff(user_id: UserId, role: Role) -> Self {
        Self::for_restricted_user((!sees_everything(role)).then_some(user_id))
    }

    fn for_restricted_user(user: Option<UserId>) -> Self {
        Visibility { user, cases: Mutex::default(), customers: Mutex::default() }
    }

    /// The restricted user, if any (`None`: sees everything).
    pub fn restricted_user(&self) -> Option<UserId> {
        self.user
    }

    fn cached<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, (bool, Instant)>>, id: K) -> Option<bool> {
        map.lock().ok().and_then(|m| m.get(&id).copied()).filter(|(_, at)| at.elapsed() < Self::TTL).map(|(ok, _)| ok)
    }

    fn remember<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, (bool, Instant)>>, id: K, ok: bool) {
        if let Ok(mut m) = map.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(id, (ok, Instant::now()));
        }
    }

    /// True if the actor may see the case (`None`: no case involved).
    pub async fn can_see(&self, store: &Store, case_id: Option<CaseId>) -> bool {
        let (Some(user), Some(case)) = (self.user, case_id) else { return true };
        if let Some(ok) = Self::cached(&self.cases, case) {
            return ok;
        }
        // When in doubt (database trouble), hide.
        let ok = store.case_visible_to(case, user).await.unwrap_or(false);
        Self::remember(&self.cases, case, ok);
        ok
    }

    /// True if the actor may see the customer.
    pub async fn can_see_customer(&self, store: &Store, customer_id: CustomerId) -> bool {
        let Some(user) = self.user else { return true };
        if let Some(ok) = Self::cached(&self.customers, customer_id) {
            return ok;
        }
        let ok = store.customer_visible_to(customer_id, user).await.unwrap_or(false);
        Self::remember(&self.customers, customer_id, ok);
        ok
    }

    /// True if the actor may see an event: by its case, else by its customer; events about
    /// neither (staff, tokens, teams, settings) are for admins and API tokens only.
    pub async fn can_see_event(&self, store: &Store, case_id: Option<CaseId>, customer_id: Option<CustomerId>) -> bool {
        if self.user.is_none() {
            return true;
        }
        match (case_id, customer_id) {
            (Some(_), _) => self.can_see(store, case_id).await,
            (None, Some(customer)) => self.can_see_customer(store, customer).await,
            (None, None) => false,
        }
    }
}

/// Whether a staff role sees every case, customer and event (today: admins).
pub fn sees_everything(role: Role) -> bool {
    role == Role::Admin
}

/// What a caller may see of events, decided in memory: everything (admins, API tokens), or,
/// for a restricted staff user, the events whose audience includes one of their teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The staff user behind a session (none for an API token).
    pub user_id: Option<i64>,
    /// Sees every event.
    pub unrestricted: bool,
    /// The user's teams (used only when restricted).
    pub teams: HashSet<i64>,
}

/// A staff membership change that alters what a [`Viewer`] of that user may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamChange {
    /// `team.member_added`.
    Added { team_id: i64, user_id: i64 },
    /// `team.member_removed`.
    Removed { team_id: i64, user_id: i64 },
    /// `team.deleted`: every membership of the team ends.
    Deleted { team_id: i64 },
}

impl Viewer {
    /// A restricted caller with no team (sees only cases without a team).
    pub fn nobody() -> Viewer {
        Viewer { user_id: None, unrestricted: false, teams: HashSet::new() }
    }

    /// An API token or other unrestricted caller.
    pub fn unrestricted() -> Viewer {
        Viewer { user_id: None, unrestricted: true, teams: HashSet::new() }
    }

    /// A signed-in staff user as they are now.
    pub fn staff(s: &SessionViewer) -> Viewer {
        Viewer { user_id: Some(s.user_id), unrestricted: sees_everything(s.role), teams: s.teams.clone() }
    }

    /// An actor known without its teams: unrestricted, or restricted with no team until its
    /// session is read.
    pub fn for_actor(actor: &Actor) -> Viewer {
        match actor.restricted_user() {
            None => Viewer::unrestricted(),
            Some(user) => Viewer { user_id: Some(user.get()), ..Viewer::nobody() },
        }
    }

    /// True if the caller may see an event with this audience.
    pub fn sees(&self, audience: &Audience) -> bool {
        self.unrestricted || audience.admits(&self.teams)
    }

    /// Applies a membership change (only this user's, and team deletions, matter).
    pub fn apply(&mut self, change: TeamChange) {
        let Some(me) = self.user_id else { return };
        match change {
            TeamChange::Added { team_id, user_id } if user_id == me => {
                self.teams.insert(team_id);
            }
            TeamChange::Removed { team_id, user_id } if user_id == me => {
                self.teams.remove(&team_id);
            }
            TeamChange::Deleted { team_id } => {
                self.teams.remove(&team_id);
            }
            _ => {}
        }
    }

    /// The user changed in a way only the database can tell (role, deactivation): until it
    /// is read again, assume the least — no admin, no teams.
    pub fn forget(&mut self) {
        self.unrestricted = false;
        self.teams.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_viewer_follows_its_own_membership_changes_only() {
        let mut v = Viewer { user_id: Some(5), unrestricted: false, teams: HashSet::from([1]) };
        let of_team_2 = Audience::Teams(vec![Some(2)]);
        assert!(!v.sees(&of_team_2));
        v.apply(TeamChange::Added { team_id: 2, user_id: 6 });
        assert!(!v.sees(&of_team_2), "another user's membership changes nothing");
        v.apply(TeamChange::Added { team_id: 2, user_id: 5 });
        assert!(v.sees(&of_team_2));
        v.apply(TeamChange::Deleted { team_id: 2 });
        assert!(!v.sees(&of_team_2));
        assert!(v.sees(&Audience::Teams(vec![None])), "a case without a team is everyone's");
        assert!(!v.sees(&Audience::Unrestricted), "staff events are for unrestricted viewers");
        assert!(Viewer::unrestricted().sees(&Audience::Unrestricted));
        v.teams.insert(1);
        v.forget();
        assert!(!v.sees(&Audience::Teams(vec![Some(1)])));
    }

    #[test]
    fn only_admins_see_everything() {
        assert!(sees_everything(Role::Admin));
        assert!(!sees_everything(Role::Agent));
        assert_eq!(Viewer::for_actor(&Actor::token(1, Role::Agent)), Viewer::unrestricted());
        assert!(!Viewer::for_actor(&Actor::staff(UserId(3), Role::Agent)).unrestricted);
    }
}
