//! The visibility rule with a short cache, for lists and streams that touch many cases.
//!
//! The rule itself: admins and API tokens see everything; an agent sees cases without a team
//! and the cases of their teams, and the customers, search hits, events and attachments that
//! belong to such cases (`kontor_store`'s `case_visible_to` / `customer_visible_to`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kontor_core::{CaseId, CustomerId, Role, UserId};
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
        Self::for_restricted_user((role != Role::Admin).then_some(user_id))
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
