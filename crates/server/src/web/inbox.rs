//! The inbox page and its live-refreshed rows.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use kontor_core::{CaseId, CaseStatus, Channel};
use kontor_store::cases::CaseFilter;
use minijinja::Value;
use serde_json::json;

use super::i18n::words;
use super::pages::*;
use crate::AppState;

/// Inbox filters from the query string (unknown values are ignored, not errors).
pub(super) struct InboxQuery {
    view: String,
    status: Option<CaseStatus>,
    channel: Option<Channel>,
    tag: Option<String>,
    team: Option<i64>,
    cursor: Option<String>,
    q: Option<String>,
}

impl InboxQuery {
    fn from(p: &HashMap<String, String>) -> Self {
        let get = |k: &str| p.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        InboxQuery {
            view: get("view").filter(|v| v == "mine" || v == "unassigned").unwrap_or_else(|| "all".into()),
            status: get("status").and_then(|s| CaseStatus::parse(&s)),
            channel: get("channel").and_then(|s| Channel::parse(&s)),
            tag: get("tag"),
            team: get("team").and_then(|t| t.parse().ok()),
            cursor: get("cursor"),
            q: get("q"),
        }
    }
}

pub(super) async fn inbox_context(
    state: &AppState,
    staff: &Staff,
    q: &InboxQuery,
) -> Result<BTreeMap<&'static str, Value>, Response> {
    let err = |e| crate::error::AppError::from(e).into_response();
    let filter = CaseFilter {
        status: q.status,
        assignee_id: (q.view == "mine").then_some(staff.session.user.id),
        channel: q.channel,
        tag: q.tag.clone(),
        team_id: q.team,
        unassigned: q.view == "unassigned",
        visible_to: restricted(staff),
        cursor: q.cursor.clone(),
        limit: 50,
        ..Default::default()
    };
    let page = match state.store.list_cases(filter).await {
        Ok(p) => p,
        // A cursor from elsewhere: start from the top rather than fail.
        Err(kontor_store::StoreError::Invalid { .. }) => state
            .store
            .list_cases(CaseFilter { limit: 50, visible_to: restricted(staff), ..Default::default() })
            .await
            .map_err(err)?,
        Err(e) => return Err(err(e)),
    };
    let items = page.items;
    let summaries = state.store.case_summaries(items.iter().map(|c| c.id).collect()).await.map_err(err)?;
    let seen =
        state.store.seen_event_ids(staff.user_id(), items.iter().map(|c| CaseId(c.id)).collect()).await.map_err(err)?;
    let users: HashMap<i64, String> =
        state.store.list_users().await.map_err(err)?.into_iter().map(|u| (u.id, u.name)).collect();
    let t = words(staff.lang);
    let rows: Vec<serde_json::Value> = items
        .iter()
        .map(|c| {
            let s = summaries.get(&c.id);
            json!({
                "id": c.id,
                "customer": s.and_then(|s| s.customer_name.clone().or(s.customer_address.clone())).unwrap_or_default(),
                "channel": channel_label(s.and_then(|s| s.last_channel).unwrap_or(c.channel), staff.lang),
                "subject": c.subject,
                "preview": s.and_then(|s| s.preview.clone()),
                "status": c.status,
                "status_label": t.get(format!("status_{}", c.status.as_str()).as_str()).copied().unwrap_or(c.status.as_str()),
                "priority": c.priority,
                "assignee": c.assignee_id.and_then(|id| users.get(&id).cloned()),
                "age": age(c.updated_at),
                "updated_at": c.updated_at,
                "awaiting": s.is_some_and(|s| s.awaiting_reply),
                "unread": seen.get(&CaseId(c.id)).is_none_or(|e| *e < c.last_event_id),
                "tags": c.tags,
                // Something needs attention (the assistant's alert, e.g. a negative message
                // on a public channel).
                "alert": c.alert,
            })
        })
        .collect();
    let mut ctx = base(Some(staff), staff.lang);
    ctx.insert("rows", Value::from_serialize(&rows));
    ctx.insert("next_cursor", Value::from_serialize(&page.next_cursor));
    ctx.insert("view", Value::from(q.view.clone()));
    ctx.insert("status", Value::from_serialize(q.status));
    ctx.insert("channel", Value::from_serialize(q.channel));
    ctx.insert("statuses", Value::from_serialize(CaseStatus::ALL));
    ctx.insert(
        "channels",
        Value::from_serialize(Channel::ALL.iter().filter(|c| **c != Channel::Note).collect::<Vec<_>>()),
    );
    ctx.insert("q", Value::from_serialize(&q.q));
    ctx.insert("tag", Value::from_serialize(&q.tag));
    ctx.insert("team", Value::from_serialize(q.team));
    ctx.insert("teams", Value::from_serialize(state.store.list_teams().await.map_err(err)?));
    if let Some(query) = &q.q {
        let results = state
            .app
            .search(&staff.caller().actor(), query.clone(), 20)
            .await
            .map_err(|e| crate::error::AppError::from(e).into_response())?;
        ctx.insert("results", Value::from_serialize(&results));
    }
    Ok(ctx)
}

pub(super) async fn inbox(
    State(state): State<AppState>,
    staff: Staff,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    match inbox_context(&state, &staff, &InboxQuery::from(&p)).await {
        Ok(mut ctx) => {
            ctx.insert("approvals_pending", Value::from(pending_count(&state, &staff).await));
            page("inbox.html", ctx)
        }
        Err(r) => r,
    }
}

pub(super) async fn inbox_rows(
    State(state): State<AppState>,
    staff: Staff,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    match inbox_context(&state, &staff, &InboxQuery::from(&p)).await {
        Ok(ctx) => page("inbox_rows.html", ctx),
        Err(r) => r,
    }
}
