//! Kontor's application layer: the use cases with the acting user ([`Actor`]) and the one
//! place that decides visibility — who may see which case, customer, search hit, related case,
//! attachment and event. The JSON API, the staff pages, the live stream and the jobs call it
//! (later the customer portal too); none of them restates a visibility rule.
//!
//! It sits between the store and the HTTP faces: it depends on `kontor-store` and
//! `kontor-core`, and must not depend on the server, on HTTP types, or on any channel.

mod actor;
mod visibility;

use kontor_core::{CaseId, CustomerId};
use kontor_store::{cases::RelatedCase, messages::StoredAttachment, search::SearchResults, Store, StoreError};

pub use actor::Actor;
pub use visibility::{sees_everything, TeamChange, Viewer, Visibility};

/// Most hits per list a search answers with.
pub const MAX_SEARCH_LIMIT: i64 = 100;

/// The use cases over one store; cheap to clone.
#[derive(Clone)]
pub struct App {
    store: Store,
    default_region: String,
}

impl App {
    /// The use cases over `store`; `default_region` reads phone numbers written without a
    /// country code.
    pub fn new(store: Store, default_region: impl Into<String>) -> App {
        App { store, default_region: default_region.into() }
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// `NotFound` unless `actor` may see the case: a hidden case must not be told apart from a
    /// missing one.
    pub async fn ensure_case_visible(&self, actor: &Actor, case_id: i64) -> Result<(), StoreError> {
        if let Some(user) = actor.restricted_user() {
            if !self.store.case_visible_to(CaseId(case_id), user).await? {
                return Err(StoreError::NotFound(format!("case {case_id}")));
            }
        }
        Ok(())
    }

    /// `NotFound` unless `actor` may see the customer (has a case of theirs it may see).
    pub async fn ensure_customer_visible(&self, actor: &Actor, customer_id: i64) -> Result<(), StoreError> {
        if let Some(user) = actor.restricted_user() {
            if !self.store.customer_visible_to(CustomerId(customer_id), user).await? {
                return Err(StoreError::NotFound(format!("customer {customer_id}")));
            }
        }
        Ok(())
    }

    /// A query that is a phone number (any format) searches for its E.164 digits, which is how
    /// customers' numbers are stored; other queries stay as they are.
    pub fn normalise_query(&self, query: String) -> String {
        let digits = query.chars().filter(char::is_ascii_digit).count();
        let phone_like = digits >= 6 && query.chars().all(|c| c.is_ascii_digit() || " +-/()".contains(c));
        match kontor_core::normalise_identity(kontor_core::IdentityKind::Phone, &query, &self.default_region) {
            Ok(e164) if phone_like => e164.trim_start_matches('+').to_string(),
            _ => query,
        }
    }

    /// Full-text search with `actor`'s visibility applied: asks for more hits than shown so
    /// that hidden ones do not leave the page empty. `limit` is clamped to
    /// 1..=[`MAX_SEARCH_LIMIT`]; the query is normalised ([`App::normalise_query`]).
    pub async fn search(&self, actor: &Actor, query: String, limit: i64) -> Result<SearchResults, StoreError> {
        let limit = limit.clamp(1, MAX_SEARCH_LIMIT);
        let fetch =
            if actor.restricted_user().is_some() { limit.saturating_mul(4).min(MAX_SEARCH_LIMIT) } else { limit };
        let mut results = self.store.search(self.normalise_query(query), fetch).await?;
        let seen = Visibility::for_actor(actor);
        let mut kept = Vec::with_capacity(results.messages.len());
        for hit in std::mem::take(&mut results.messages) {
            if seen.can_see(&self.store, Some(CaseId(hit.case_id))).await {
                kept.push(hit);
            }
        }
        results.messages = kept;
        let mut customers = Vec::with_capacity(results.customers.len());
        for hit in std::mem::take(&mut results.customers) {
            if seen.can_see_customer(&self.store, CustomerId(hit.customer_id)).await {
                customers.push(hit);
            }
        }
        results.customers = customers;
        let shown = usize::try_from(limit).unwrap_or(0);
        results.messages.truncate(shown);
        results.customers.truncate(shown);
        Ok(results)
    }

    /// Other open cases of the case's customer that look like the same request, as far as
    /// `actor` may see them (the case itself must be visible).
    pub async fn related(&self, actor: &Actor, case_id: i64) -> Result<Vec<RelatedCase>, StoreError> {
        self.ensure_case_visible(actor, case_id).await?;
        let mut related = self.store.related_open_cases(case_id).await?;
        if let Some(user) = actor.restricted_user() {
            let teams = self.store.user_team_ids(user).await?;
            related.retain(|r| r.team_id.is_none_or(|t| teams.contains(&t)));
        }
        Ok(related)
    }

    /// A message `actor` may see (for its raw source): `NotFound` alike for a missing one and
    /// one of a case `actor` may not see.
    pub async fn message(&self, actor: &Actor, id: i64) -> Result<kontor_core::Message, StoreError> {
        let hidden = || StoreError::NotFound(format!("message {id}"));
        let m = match self.store.message(id).await {
            Ok(m) => m,
            Err(StoreError::NotFound(_)) => return Err(hidden()),
            Err(e) => return Err(e),
        };
        match self.ensure_case_visible(actor, m.case_id).await {
            Ok(()) => Ok(m),
            Err(StoreError::NotFound(_)) => Err(hidden()),
            Err(e) => Err(e),
        }
    }

    /// An attachment `actor` may download: `NotFound` alike for a missing one and one of a
    /// case `actor` may not see.
    pub async fn attachment(&self, actor: &Actor, id: i64) -> Result<StoredAttachment, StoreError> {
        let hidden = || StoreError::NotFound(format!("attachment {id}"));
        let a = match self.store.attachment(id).await {
            Ok(a) => a,
            Err(StoreError::NotFound(_)) => return Err(hidden()),
            Err(e) => return Err(e),
        };
        match self.ensure_case_visible(actor, a.case_id).await {
            Ok(()) => Ok(a),
            Err(StoreError::NotFound(_)) => Err(hidden()),
            Err(e) => Err(e),
        }
    }
}
