//! The approvals page: replies held for four-eyes approval, with Approve / Reject for every
//! staff user but the reply's author (the API decides; the page only asks it).

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use minijinja::Value;
use serde_json::json;

use super::i18n::Lang;
use super::pages::*;
use crate::AppState;

/// Why a reply is held, in the page's language (`public channel`, `rule: <name>`).
pub(super) fn reason_text(reason: &str, lang: Lang) -> String {
    match (reason, lang) {
        ("public channel", Lang::De) => "Antwort auf einem öffentlichen Kanal".into(),
        ("public channel", Lang::En) => "A reply on a public channel".into(),
        _ => match (reason.strip_prefix("rule: "), lang) {
            (Some(name), Lang::De) => format!("Regel „{name}“"),
            (Some(name), Lang::En) => format!("Rule “{name}”"),
            (None, _) => reason.to_string(),
        },
    }
}

/// How many replies wait for approval in the cases this user may see (for the inbox's badge).
pub(super) async fn pending_count(state: &AppState, staff: &Staff) -> usize {
    state.store.pending_approval_count(restricted(staff)).await.map(|n| n as usize).unwrap_or(0)
}

async fn approvals_context(state: &AppState, staff: &Staff) -> Result<BTreeMap<&'static str, Value>, Response> {
    let err = |e| crate::error::AppError::from(e).into_response();
    let pending = state.store.pending_approvals(restricted(staff)).await.map_err(err)?;
    let names: HashMap<i64, String> =
        state.store.list_users().await.map_err(err)?.into_iter().map(|u| (u.id, u.name)).collect();
    let me = staff.session.user.id;
    let items: Vec<serde_json::Value> = pending
        .iter()
        .map(|a| {
            json!({
                "id": a.id, "case_id": a.case_id, "message_id": a.message_id,
                "case_subject": a.case_subject, "text": a.text,
                "reason": reason_text(&a.reason, staff.lang),
                "author": a.author_id.and_then(|id| names.get(&id).cloned()),
                // Four eyes: the author sees their reply waiting, but cannot decide on it.
                "own": a.author_id == Some(me),
                "created_at": a.created_at, "age": age(a.created_at),
            })
        })
        .collect();
    let mut ctx = base(Some(staff), staff.lang);
    ctx.insert("items", Value::from_serialize(&items));
    Ok(ctx)
}

pub(super) async fn approvals(State(state): State<AppState>, staff: Staff) -> Response {
    match approvals_context(&state, &staff).await {
        Ok(ctx) => page("approvals.html", ctx),
        Err(r) => r,
    }
}

/// The number for the inbox's badge, refreshed live.
pub(super) async fn approval_count(State(state): State<AppState>, staff: Staff) -> Response {
    pending_count(&state, &staff).await.to_string().into_response()
}

pub(super) async fn approval_items(State(state): State<AppState>, staff: Staff) -> Response {
    match approvals_context(&state, &staff).await {
        Ok(ctx) => page("approvals_items.html", ctx),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_in_the_pages_language() {
        let table = [
            ("public channel", Lang::De, "Antwort auf einem öffentlichen Kanal"),
            ("rule: Beschwerden prüfen", Lang::De, "Regel „Beschwerden prüfen“"),
            ("rule: Complaints", Lang::En, "Rule “Complaints”"),
            ("something new", Lang::De, "something new"),
        ];
        for (reason, lang, want) in table {
            assert_eq!(reason_text(reason, lang), want);
        }
    }
}
