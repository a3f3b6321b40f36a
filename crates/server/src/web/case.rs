//! The case page and its live-refreshed parts (timeline, meta, sidebar, related requests).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kontor_core::{CaseId, CaseStatus};
use kontor_store::cases::CaseFilter;
use minijinja::Value;
use serde_json::json;

use super::assist::{analysis_view, intent_label, intent_options};
use super::i18n::words;
use super::pages::*;
use crate::AppState;

/// Everything the case page and its fragments show.
/// What part of the case page to render; live updates fetch one part at a time, so each
/// loads only what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Page,
    Timeline,
    Meta,
    Related,
    Sidebar,
}

pub(super) async fn case_context(
    state: &AppState,
    staff: &Staff,
    id: &str,
    part: Part,
) -> Result<BTreeMap<&'static str, Value>, Response> {
    let err = |e| crate::error::AppError::from(e).into_response();
    let want = |p: Part| part == Part::Page || part == p;
    let Some(id) = id.parse::<i64>().ok().filter(|v| *v > 0) else {
        return Err(not_found(staff));
    };
    if let Some(user) = restricted(staff) {
        match state.store.case_visible_to(CaseId(id), user).await {
            Ok(true) => {}
            Ok(false) | Err(kontor_store::StoreError::NotFound(_)) => return Err(not_found(staff)),
            Err(e) => return Err(err(e)),
        }
    }
    // Where the event log stood before the page was read: its live stream starts there, so
    // that nothing that happens while the page loads (an analysis finishing) is missed.
    let events_after = if part == Part::Page { Some(state.store.max_event_id().await.map_err(err)?) } else { None };
    // The messages only where the timeline is shown; elsewhere the case row is enough.
    let (case, customer, all_messages) = if want(Part::Timeline) {
        match state.store.case_detail(id).await {
            Ok(d) => (d.case, d.customer, d.messages),
            Err(kontor_store::StoreError::NotFound(_)) => return Err(not_found(staff)),
            Err(e) => return Err(err(e)),
        }
    } else {
        let case = match state.store.case(id).await {
            Ok(c) => c,
            Err(kontor_store::StoreError::NotFound(_)) => return Err(not_found(staff)),
            Err(e) => return Err(err(e)),
        };
        let customer = state.store.customer(case.customer_id).await.map_err(err)?;
        (case, customer, Vec::new())
    };
    let t = words(staff.lang);
    let mut ctx = base(Some(staff), staff.lang);
    ctx.insert("case", Value::from_serialize(&case));
    ctx.insert("events_after", Value::from_serialize(events_after));
    ctx.insert("customer", Value::from_serialize(&customer));
    ctx.insert("intent_label", Value::from_serialize(case.intent.as_deref().map(|i| intent_label(i, staff.lang))));
    // The select that sets or corrects an intent (in the head and per analysed message).
    let options = intent_options(case.intent.as_deref(), staff.lang);
    ctx.insert(
        "intent_keys",
        Value::from_serialize(options.iter().filter_map(|o| o["intent"].as_str()).collect::<Vec<_>>()),
    );
    ctx.insert("intent_options", Value::from_serialize(&options));
    ctx.insert(
        "status_label",
        Value::from(t.get(format!("status_{}", case.status.as_str()).as_str()).copied().unwrap_or("")),
    );
    let users = if want(Part::Timeline) || want(Part::Meta) {
        state.store.list_users().await.map_err(err)?
    } else {
        Vec::new()
    };
    let names: HashMap<i64, String> = users.iter().map(|u| (u.id, u.name.clone())).collect();
    if want(Part::Timeline) {
        // E-mail's sender and recipients: a received mail comes from the customer's (first)
        // e-mail address and names its own recipients (`To`); a reply leaves from the
        // configured sender to the customer.
        let mailbox = customer_mailbox(&customer);
        let our_sender = state.config.email.outbound.from.clone();
        let messages: Vec<serde_json::Value> = all_messages
            .iter()
            .map(|m| {
                let email = m.channel == kontor_core::Channel::Email && !m.internal;
                let (from, to) = match m.direction {
                    kontor_core::Direction::In => (mailbox.clone(), (!m.to.is_empty()).then(|| m.to.join(", "))),
                    _ => (our_sender.clone(), mailbox.clone()),
                };
                let author = match (m.direction, m.author_id) {
                    (kontor_core::Direction::In, _) => customer.name.clone().unwrap_or_else(|| t["customer_wrote"].to_string()),
                    (_, Some(a)) => names.get(&a).cloned().unwrap_or_else(|| t["agent"].to_string()),
                    (_, None) => "Kontor API".to_string(),
                };
                json!({
                    "id": m.id, "direction": m.direction, "internal": m.internal, "author": author,
                    "channel": channel_label(m.channel, staff.lang), "channel_code": m.channel, "text": m.text,
                    "html": m.html.as_deref().map(sanitize_html),
                    "attachments": m.attachments.iter().map(|a| json!({
                        "filename": a.filename, "content_type": a.content_type, "size": a.size,
                        "link": a.url.as_deref().filter(|u| u.starts_with("https://") || u.starts_with("http://")),
                        "download": a.id.filter(|_| a.url.is_none()).map(|id| format!("/api/v1/attachments/{id}")),
                    })).collect::<Vec<_>>(),
                    "created_at": m.created_at, "age": age(m.created_at),
                    "recorded_by": matches!(m.channel, kontor_core::Channel::Phone | kontor_core::Channel::Letter)
                        .then(|| m.author_id.map(|a| names.get(&a).cloned().unwrap_or_else(|| t["agent"].to_string())))
                        .flatten(),
                    "duration": m.duration_seconds.map(|d| format!("{}:{:02} {}", d / 60, d % 60, t["minutes_short"])),
                    "delivery_state": m.delivery_state,
                    "delivery_label": m.delivery_state.map(|d| t.get(format!("delivery_{}", d.as_str()).as_str()).copied().unwrap_or(d.as_str())),
                    "delivery_error": m.delivery_error.as_deref().map(|e| delivery_error_text(e, staff.lang)),
                    "email": email,
                    "subject": m.subject.as_deref().filter(|_| email),
                    "from": from.filter(|_| email),
                    "to": to.filter(|_| email),
                    "cc": m.cc,
                    "auto_submitted": m.auto_submitted,
                    // An automatic answer of the assistant (a canned response it sent).
                    "automatic": m.automatic,
                    "has_raw_source": m.has_raw_source,
                    // The assistant's analysis of what a customer wrote (absent until it ran,
                    // and on messages from before the assistant).
                    "analysis": m.analysis.as_ref()
                        .filter(|_| m.direction == kontor_core::Direction::In && !m.internal)
                        .map(|a| analysis_view(a, staff.lang)),
                })
            })
            .collect();
        ctx.insert("messages", Value::from_serialize(&messages));
    }
    if want(Part::Meta) {
        ctx.insert(
            "users",
            Value::from_serialize(users.iter().map(|u| json!({"id": u.id, "name": u.name})).collect::<Vec<_>>()),
        );
        ctx.insert("assignee", Value::from_serialize(case.assignee_id.and_then(|a| names.get(&a).cloned())));
        ctx.insert("statuses", Value::from_serialize(CaseStatus::ALL));
        ctx.insert("priorities", Value::from_serialize(kontor_core::Priority::ALL));
        ctx.insert("teams", Value::from_serialize(state.store.list_teams().await.map_err(err)?));
    }
    if want(Part::Sidebar) {
        let others = state
            .store
            .list_cases(CaseFilter {
                customer_id: Some(case.customer_id),
                visible_to: restricted(staff),
                limit: 20,
                ..Default::default()
            })
            .await
            .map_err(err)?
            .items
            .into_iter()
            .filter(|c| c.id != id)
            .map(|c| json!({ "id": c.id, "subject": c.subject, "status": c.status, "age": age(c.updated_at) }))
            .collect::<Vec<_>>();
        ctx.insert("others", Value::from_serialize(&others));
    }
    if want(Part::Related) {
        let related = state
            .app
            .related(&staff.caller().actor(), id)
            .await
            .map_err(|e| crate::error::AppError::from(e).into_response())?;
        ctx.insert(
            "related",
            Value::from_serialize(
                related
                    .iter()
                    .map(|r| json!({ "id": r.id, "subject": r.subject, "channel": channel_label(r.channel, staff.lang), "reason": r.reason, "age": age(r.last_activity_at) }))
                    .collect::<Vec<_>>(),
            ),
        );
    }
    if part == Part::Page {
        let default_channel = all_messages
            .iter()
            .rev()
            .find(|m| m.direction == kontor_core::Direction::In)
            .map(|m| m.channel)
            .unwrap_or(case.channel);
        // The case's channel is offered even where it cannot send yet (e-mail without a
        // relay): answering quietly on another channel would be worse than the clear refusal.
        let deliverable = state.deliverable_channels();
        let mut reply_channels: Vec<serde_json::Value> = deliverable
            .iter()
            .map(|c| json!({ "code": c, "label": channel_label(*c, staff.lang), "ready": true }))
            .collect();
        if !deliverable.contains(&default_channel) {
            reply_channels.insert(
                0,
                json!({ "code": default_channel, "label": channel_label(default_channel, staff.lang), "ready": false }),
            );
        }
        ctx.insert("reply_channels", Value::from_serialize(&reply_channels));
        // The customer's language (from the assistant): the style check reads a short draft
        // in it, where the draft alone says too little.
        let reply_language = all_messages
            .iter()
            .rev()
            .filter(|m| m.direction == kontor_core::Direction::In && !m.internal)
            .find_map(|m| m.analysis.as_ref().and_then(|a| a.language.clone()))
            .filter(|l| l == "de" || l == "en");
        ctx.insert("reply_language", Value::from_serialize(reply_language));
        ctx.insert("default_channel", Value::from_serialize(default_channel));
        // Reply drafts from a language model, where one is configured.
        ctx.insert("drafts_on", Value::from(state.config.assist.llm.base_url.is_some()));
        ctx.insert("suggestion", Value::from_serialize(suggestion(state, &case, &all_messages).await.map_err(err)?));
        ctx.insert("reply_subject", Value::from(reply_subject(case.subject.as_deref())));
        ctx.insert("max_attachment_bytes", Value::from(state.config.max_attachment_bytes));
        ctx.insert("merged_into", Value::from_serialize(state.store.case_merged_into(id).await.map_err(err)?));
        ctx.insert(
            "canned",
            Value::from_serialize(state.store.list_canned(Some(staff.lang.code())).await.map_err(err)?),
        );
        let history: Vec<serde_json::Value> = state
            .store
            .case_events(id, vec!["case.merged"])
            .await
            .map_err(err)?
            .into_iter()
            .map(|e| {
                let p = &e.payload;
                let actor = p.get("actor_id").and_then(|a| a.as_i64()).and_then(|a| names.get(&a).cloned());
                json!({
                    "into_this": p.get("target_case_id").and_then(|v| v.as_i64()) == Some(id),
                    "source": p.get("source_case_id"), "target": p.get("target_case_id"),
                    "moved": p.get("moved_messages"), "actor": actor, "age": age(e.created_at), "at": e.created_at,
                })
            })
            .collect();
        ctx.insert("history", Value::from_serialize(&history));
    }
    Ok(ctx)
}

/// The canned response the assistant suggests for this case: its intent is set to `suggest`
/// with a canned response, and the customer waits for an answer (the newest message that
/// is not a note is theirs). The composer puts it in while empty, marked as a suggestion.
async fn suggestion(
    state: &AppState,
    case: &kontor_core::Case,
    messages: &[kontor_core::Message],
) -> Result<Option<serde_json::Value>, kontor_store::StoreError> {
    let Some(intent) = case.intent.as_deref() else { return Ok(None) };
    let waiting =
        messages.iter().rev().find(|m| !m.internal).is_some_and(|m| m.direction == kontor_core::Direction::In);
    if !waiting {
        return Ok(None);
    }
    let settings = state.store.intent_settings().await?;
    let Some(canned_id) =
        settings.iter().find(|s| s.intent == intent && s.level == "suggest").and_then(|s| s.canned_id)
    else {
        return Ok(None);
    };
    let canned = state.store.list_canned(None).await?;
    Ok(canned.into_iter().find(|c| c.id == canned_id).map(|c| json!({ "id": c.id, "title": c.title, "body": c.body })))
}

pub(super) fn not_found(staff: &Staff) -> Response {
    let mut ctx = base(Some(staff), staff.lang);
    ctx.insert("rows", Value::from_serialize(Vec::<()>::new()));
    ctx.insert("missing", Value::from(true));
    let mut r = page("inbox.html", ctx);
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// Marks what the agent was just shown as read (a failure here must not fail the page).
pub(super) async fn mark_seen(state: &AppState, staff: &Staff, ctx: &BTreeMap<&'static str, Value>) {
    let field = |name: &str| ctx.get("case").and_then(|c| c.get_attr(name).ok()).and_then(|v| i64::try_from(v).ok());
    if let (Some(id), Some(event)) = (field("id"), field("last_event_id")) {
        // A read first: most refreshes show nothing new to this agent, and the writer is shared.
        let (user, case) = (staff.user_id(), CaseId(id));
        if state
            .store
            .seen_event_ids(user, vec![case])
            .await
            .ok()
            .and_then(|m| m.get(&case).copied())
            .is_some_and(|s| s >= event)
        {
            return;
        }
        if let Err(e) = state.store.mark_case_seen(user, case, event).await {
            tracing::warn!(error = %e, "Cannot record that a case was read.");
        }
    }
}

pub(super) async fn case_page(State(state): State<AppState>, staff: Staff, Path(id): Path<String>) -> Response {
    match case_context(&state, &staff, &id, Part::Page).await {
        Ok(ctx) => {
            mark_seen(&state, &staff, &ctx).await;
            page("case.html", ctx)
        }
        Err(r) => r,
    }
}

pub(super) async fn case_fragment(
    State(state): State<AppState>,
    staff: Staff,
    Path((id, part)): Path<(String, String)>,
) -> Response {
    let (template, which) = match part.as_str() {
        "timeline" => ("timeline.html", Part::Timeline),
        "meta" => ("case_meta.html", Part::Meta),
        "related" => ("case_related.html", Part::Related),
        "sidebar" => ("case_sidebar.html", Part::Sidebar),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match case_context(&state, &staff, &id, which).await {
        Ok(ctx) => {
            if part == "timeline" {
                mark_seen(&state, &staff, &ctx).await;
            }
            page(template, ctx)
        }
        Err(r) => r,
    }
}
