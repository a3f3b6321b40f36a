//! Customers and their identities, including merging two customers.

use kontor_core::{Customer, CustomerId, IdentityKind, UserId};
use serde_json::json;

use crate::db::Conn;
use crate::records::{customer_visible, load_customer, VISIBLE_TO_SQL};
use crate::writer::Tx;
use crate::Page;
use crate::{params, Backend, Store, StoreError};

/// Changes to a customer; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct CustomerPatch {
    pub name: Option<String>,
    pub language: Option<String>,
}

/// The fields a patch changed, by name (the event stores names, not values).
fn customer_changes(before: &Customer, after: &Customer) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if before.name != after.name {
        changed.push("name");
    }
    if before.language != after.language {
        changed.push("language");
    }
    changed
}

/// Whether any case of these customers (merged ones included) is hidden from a staff user.
fn hides_a_case(c: &mut Conn, customers: &[CustomerId], user_id: UserId) -> Result<bool, StoreError> {
    for id in customers {
        let hidden = c.query_opt(
            &format!("SELECT 1 FROM cases WHERE cases.customer_id = ? AND NOT {VISIBLE_TO_SQL} LIMIT 1"),
            &params![*id, user_id, user_id],
        )?;
        if hidden.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Recomputes the text by which a customer is found (name and addresses).
pub(crate) fn refresh_customer_search(tx: &mut Tx<'_>, id: i64) -> Result<(), StoreError> {
    let name = tx
        .conn
        .query_opt("SELECT name FROM customers WHERE id = ?", &params![id])?
        .and_then(|r| r.opt_text(0))
        .unwrap_or_default();
    let addresses: Vec<String> = tx
        .conn
        .query("SELECT address FROM identities WHERE customer_id = ? ORDER BY id", &params![id])?
        .iter()
        .map(|r| r.req_text(0, "identities.address"))
        .collect::<Result<_, _>>()?;
    let text = format!("{} {}", name, addresses.join(" ")).trim().to_string();
    tx.conn.execute("UPDATE customers SET search_text = ? WHERE id = ?", &params![text.as_str(), id])?;
    if tx.backend() == Backend::Sqlite {
        tx.conn.execute("DELETE FROM customers_fts WHERE rowid = ?", &params![id])?;
        tx.conn.execute("INSERT INTO customers_fts (rowid, search_text) VALUES (?, ?)", &params![id, text])?;
    }
    Ok(())
}

impl Store {
    /// One customer with identities.
    pub async fn customer(&self, id: i64) -> Result<Customer, StoreError> {
        self.read(move |c| load_customer(c, id)).await
    }

    /// Customers, newest first, `limit` per page.
    pub async fn list_customers(&self, cursor: Option<i64>, limit: i64) -> Result<Page<Customer>, StoreError> {
        self.read(move |c| {
            let limit = limit.clamp(1, 200);
            let ids: Vec<i64> = c
                .query(
                    "SELECT id FROM customers WHERE merged_into IS NULL AND id < ? ORDER BY id DESC LIMIT ?",
                    &params![cursor.unwrap_or(i64::MAX), limit + 1],
                )?
                .iter()
                .map(|r| r.req_i64(0, "customers.id"))
                .collect::<Result<_, _>>()?;
            let more = ids.len() as i64 > limit;
            let mut items = Vec::new();
            for id in ids.iter().take(limit as usize) {
                items.push(load_customer(c, *id)?);
            }
            let next_cursor = if more { items.last().map(|x| x.id.to_string()) } else { None };
            Ok(Page { items, next_cursor })
        })
        .await
    }

    /// Changes a customer's name or language.
    pub async fn patch_customer(&self, id: i64, patch: CustomerPatch) -> Result<Customer, StoreError> {
        self.write(move |tx| {
            let before = load_customer(tx.conn, id)?;
            let now = tx.now;
            tx.conn.execute(
                "UPDATE customers SET name = COALESCE(?, name), language = COALESCE(?, language), updated_at = ? WHERE id = ?",
                &params![patch.name.as_deref(), patch.language.as_deref(), now, id],
            )?;
            refresh_customer_search(tx, id)?;
            let after = load_customer(tx.conn, id)?;
            tx.event(
                kontor_core::EventKind::CustomerUpdated,
                None,
                Some(id),
                &json!({ "customer_id": id, "changed": customer_changes(&before, &after) }),
            )?;
            Ok(after)
        })
        .await
    }

    /// Adds an identity (already normalised) to a customer. An address owned by another
    /// customer is a conflict: merge the two customers instead.
    pub async fn add_identity(
        &self,
        customer_id: CustomerId,
        kind: IdentityKind,
        address: String,
    ) -> Result<Customer, StoreError> {
        self.add_identity_as(customer_id, kind, address, None).await
    }

    /// [`Store::add_identity`] on behalf of a restricted staff user (`visible_to`; `None`: an
    /// admin or API token). The conflict names the customer owning the address only if the
    /// caller may see that customer; otherwise it says no more than that the address cannot be
    /// added, so a hidden customer is not revealed.
    pub async fn add_identity_as(
        &self,
        customer_id: CustomerId,
        kind: IdentityKind,
        address: String,
        visible_to: Option<UserId>,
    ) -> Result<Customer, StoreError> {
        let customer_id = customer_id.get();
        self.write(move |tx| {
            load_customer(tx.conn, customer_id)?;
            if let Some(r) = tx.conn.query_opt(
                "SELECT customer_id FROM identities WHERE kind = ? AND address = ?",
                &params![kind.as_str(), address.as_str()],
            )? {
                let owner = r.req_i64(0, "identities.customer_id")?;
                if owner == customer_id {
                    return load_customer(tx.conn, customer_id);
                }
                let owner_visible = match visible_to {
                    None => true,
                    Some(user) => customer_visible(tx.conn, CustomerId(owner), user)?,
                };
                return Err(StoreError::Conflict(if owner_visible {
                    format!("{} {address} belongs to customer {owner}; merge the customers instead", kind.as_str())
                } else {
                    format!("this {} address cannot be added to this customer", kind.as_str())
                }));
            }
            tx.conn.execute(
                "INSERT INTO identities (customer_id, kind, address, created_at) VALUES (?, ?, ?, ?)",
                &params![customer_id, kind.as_str(), address.as_str(), tx.now],
            )?;
            refresh_customer_search(tx, customer_id)?;
            let customer = load_customer(tx.conn, customer_id)?;
            let identity_id = customer.identities.last().map(|i| i.id);
            tx.event(
                kontor_core::EventKind::CustomerUpdated,
                None,
                Some(customer_id),
                &json!({ "customer_id": customer_id, "changed": ["identities"], "identity_id": identity_id }),
            )?;
            Ok(customer)
        })
        .await
    }

    /// Merges `source` into `target`: identities, cases and messages move over with their
    /// whole history; `source` remains as a tombstone pointing at `target`.
    pub async fn merge_customers(&self, target: CustomerId, source: CustomerId) -> Result<Customer, StoreError> {
        self.merge_customers_as(target, source, None).await
    }

    /// [`Store::merge_customers`] on behalf of a restricted staff user (`visible_to`; `None`:
    /// an admin or API token). A customer the user may not see is not found, as if it did not
    /// exist; if the user sees both but not every case of them, the merge is refused
    /// (Forbidden): it would move cases of a team the user is not in.
    pub async fn merge_customers_as(
        &self,
        target: CustomerId,
        source: CustomerId,
        visible_to: Option<UserId>,
    ) -> Result<Customer, StoreError> {
        self.write(move |tx| {
            if let Some(user) = visible_to {
                for id in [target, source] {
                    if !customer_visible(tx.conn, id, user)? {
                        return Err(StoreError::NotFound(format!("customer {id}")));
                    }
                }
                if target != source && hides_a_case(tx.conn, &[target, source], user)? {
                    return Err(StoreError::Forbidden(
                        "these customers have cases you cannot see; only an admin can merge them".into(),
                    ));
                }
            }
            let (target, source) = (target.get(), source.get());
            if target == source {
                return Err(StoreError::invalid("source_id", "cannot merge a customer into itself"));
            }
            let src = load_customer(tx.conn, source)?;
            let dst = load_customer(tx.conn, target)?;
            if src.merged_into.is_some() {
                return Err(StoreError::Conflict(format!("customer {source} was already merged")));
            }
            if dst.merged_into.is_some() {
                return Err(StoreError::Conflict(format!("customer {target} was merged into another customer")));
            }
            let now = tx.now;
            tx.conn.execute("UPDATE identities SET customer_id = ? WHERE customer_id = ?", &params![target, source])?;
            let moved_cases = tx.conn.execute(
                "UPDATE cases SET customer_id = ?, updated_at = ? WHERE customer_id = ?",
                &params![target, now, source],
            )?;
            tx.conn.execute("UPDATE messages SET customer_id = ? WHERE customer_id = ?", &params![target, source])?;
            tx.conn.execute(
                "UPDATE customers SET merged_into = ?, updated_at = ?, name = COALESCE(name, ?) WHERE id = ?",
                &params![target, now, src.name.as_deref(), source],
            )?;
            tx.conn.execute(
                "UPDATE customers SET name = COALESCE(name, ?), updated_at = ? WHERE id = ?",
                &params![src.name.as_deref(), now, target],
            )?;
            refresh_customer_search(tx, target)?;
            refresh_customer_search(tx, source)?;
            let merged = load_customer(tx.conn, target)?;
            tx.event(
                kontor_core::EventKind::CustomerMerged,
                None,
                Some(target),
                &json!({ "customer_id": target, "merged_customer_id": source, "moved_cases": moved_cases }),
            )?;
            Ok(merged)
        })
        .await
    }
}
