//! Page handlers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use kontor_core::{CaseStatus, Channel, Role};
use kontor_store::{CaseFilter, StaffSession};
use minijinja::Value;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;

use super::i18n::{words, Lang};
use super::{cookie_header, over_tls, render, request_lang, same_secret, session_cookie, to_sign_in};
use crate::auth::{cookie, SESSION_COOKIE};
use crate::AppState;

const LOGIN_COOKIE: &str = "kontor_login";
const SESSION_SECS: i64 = 12 * 3600;

/// A signed-in staff user on a page request.
pub struct Staff {
    pub session: StaffSession,
    pub lang: Lang,
    /// The session cookie's value.
    pub token: String,
}

impl Staff {
    /// The same user as an API caller (for the visibility rules the API applies).
    pub fn caller(&self) -> crate::auth::Caller {
        crate::auth::Caller {
            token_id: None,
            role: self.session.user.role,
            user_id: Some(self.session.user.id),
            user_name: Some(self.session.user.name.clone()),
            session: Some(self.token.clone()),
        }
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = session_cookie(&parts.headers) else { return Err(to_sign_in()) };
        match state.store.session(token).await {
            Ok(Some(session)) => {
                let lang =
                    session.language.as_deref().and_then(Lang::parse).unwrap_or_else(|| request_lang(&parts.headers));
                Ok(Staff { session, lang, token: token.to_string() })
            }
            Ok(None) => Err(to_sign_in()),
            Err(e) => Err(crate::error::AppError::from(e).into_response()),
        }
    }
}

/// The user whose teams limit what they see (admins see everything).
fn restricted(staff: &Staff) -> Option<i64> {
    (staff.session.user.role != Role::Admin).then_some(staff.session.user.id)
}

/// The values every page template gets.
fn base(staff: Option<&Staff>, lang: Lang) -> BTreeMap<&'static str, Value> {
    let mut ctx = BTreeMap::new();
    ctx.insert("t", Value::from_serialize(words(lang)));
    ctx.insert("lang", Value::from(lang.code()));
    if let Some(s) = staff {
        ctx.insert(
            "user",
            Value::from_serialize(json!({
                "id": s.session.user.id, "name": s.session.user.name, "email": s.session.user.email,
                "role": s.session.user.role, "admin": s.session.user.role == Role::Admin,
            })),
        );
        ctx.insert("csrf", Value::from(s.session.csrf.clone()));
    }
    ctx
}

fn page(name: &str, ctx: BTreeMap<&'static str, Value>) -> Response {
    render(name, Value::from_serialize(ctx))
}

fn random_hex() -> String {
    let mut raw = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

fn login_page(headers: &HeaderMap, error: Option<&str>, status: StatusCode) -> Response {
    let lang = request_lang(headers);
    let csrf = random_hex();
    let mut ctx = base(None, lang);
    ctx.insert("csrf", Value::from(csrf.clone()));
    if let Some(e) = error {
        ctx.insert("error", Value::from(words(lang).get(e).copied().unwrap_or(e)));
    }
    let mut resp = page("login.html", ctx);
    *resp.status_mut() = status;
    resp.headers_mut().append(header::SET_COOKIE, cookie_header(LOGIN_COOKIE, &csrf, Some(3600), over_tls(headers)));
    resp
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = session_cookie(&headers) {
        if let Ok(Some(_)) = state.store.session(token).await {
            return Redirect::to("/inbox").into_response();
        }
    }
    login_page(&headers, None, StatusCode::OK)
}

async fn login_form(headers: HeaderMap) -> Response {
    login_page(&headers, None, StatusCode::OK)
}

#[derive(Deserialize)]
struct SignIn {
    email: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    // Login CSRF: the form must come from a page we served to this browser.
    if !cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same_secret(c, &form.csrf)) {
        return login_page(&headers, Some("sign_in_failed"), StatusCode::FORBIDDEN);
    }
    let email = form.email.trim().to_lowercase();
    if !state.sign_in_limiter.allow(&addr.ip().to_string(), &email) {
        return login_page(&headers, Some("too_many_attempts"), StatusCode::TOO_MANY_REQUESTS);
    }
    let user = match state.store.verify_password(email, form.password).await {
        Ok(Some(u)) => u,
        Ok(None) => return login_page(&headers, Some("sign_in_failed"), StatusCode::UNAUTHORIZED),
        Err(e) => return crate::error::AppError::from(e).into_response(),
    };
    match state.store.create_session(user.id, SESSION_SECS).await {
        Ok(token) => {
            let mut resp = Redirect::to("/inbox").into_response();
            let secure = over_tls(&headers);
            let h = resp.headers_mut();
            h.append(header::SET_COOKIE, cookie_header(SESSION_COOKIE, &token, Some(SESSION_SECS), secure));
            h.append(header::SET_COOKIE, cookie_header(LOGIN_COOKIE, "", Some(0), secure));
            resp
        }
        Err(e) => crate::error::AppError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Signs out (the form carries the session's CSRF token).
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if let Some(token) = session_cookie(&headers) {
        if let Ok(Some(s)) = state.store.session(token).await {
            if !same_secret(&form.csrf, &s.csrf) {
                return (StatusCode::FORBIDDEN, "CSRF token missing or wrong").into_response();
            }
            let _ = state.store.delete_session(token).await;
        }
    }
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie_header(SESSION_COOKIE, "", Some(0), over_tls(&headers)));
    resp
}

/// How long ago, briefly ("5 min", "3 h", "2 d").
fn age(ts: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else { return String::new() };
    let secs = (chrono::Utc::now().timestamp() - t.timestamp()).max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86400),
    }
}

/// A channel's short label with a symbol, in the page's language.
fn channel_label(c: Channel, lang: Lang) -> String {
    let de = lang == Lang::De;
    let (icon, name) = match c {
        Channel::Api => ("⇄", "API"),
        Channel::Email => ("✉", if de { "E-Mail" } else { "E-mail" }),
        Channel::Sms => ("✆", "SMS"),
        Channel::Whatsapp => ("◉", "WhatsApp"),
        Channel::Telegram => ("➤", "Telegram"),
        Channel::Messenger => ("◌", "Messenger"),
        Channel::Instagram => ("◎", "Instagram"),
        Channel::Webchat => ("☰", "Web-Chat"),
        Channel::Portal => ("⌂", "Portal"),
        Channel::Phone => ("☎", if de { "Telefon" } else { "Phone" }),
        Channel::Letter => ("✉", if de { "Brief" } else { "Letter" }),
        Channel::Note => ("✎", if de { "Notiz" } else { "Note" }),
    };
    format!("{icon} {name}")
}

/// Inbox filters from the query string (unknown values are ignored, not errors).
struct InboxQuery {
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

async fn inbox_context(
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
        state.store.seen_event_ids(staff.session.user.id, items.iter().map(|c| c.id).collect()).await.map_err(err)?;
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
                "age": age(&c.updated_at),
                "updated_at": c.updated_at,
                "awaiting": s.is_some_and(|s| s.awaiting_reply),
                "unread": seen.get(&c.id).is_none_or(|e| *e < c.last_event_id),
                "tags": c.tags,
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

async fn inbox(State(state): State<AppState>, staff: Staff, Query(p): Query<HashMap<String, String>>) -> Response {
    match inbox_context(&state, &staff, &InboxQuery::from(&p)).await {
        Ok(ctx) => page("inbox.html", ctx),
        Err(r) => r,
    }
}

async fn inbox_rows(State(state): State<AppState>, staff: Staff, Query(p): Query<HashMap<String, String>>) -> Response {
    match inbox_context(&state, &staff, &InboxQuery::from(&p)).await {
        Ok(ctx) => page("inbox_rows.html", ctx),
        Err(r) => r,
    }
}

/// Everything the case page and its fragments show.
/// What part of the case page to render; live updates fetch one part at a time, so each
/// loads only what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Page,
    Timeline,
    Meta,
    Related,
    Sidebar,
}

async fn case_context(
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
        match state.store.case_visible_to(id, user).await {
            Ok(true) => {}
            Ok(false) | Err(kontor_store::StoreError::NotFound(_)) => return Err(not_found(staff)),
            Err(e) => return Err(err(e)),
        }
    }
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
    ctx.insert("customer", Value::from_serialize(&customer));
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
        let messages: Vec<serde_json::Value> = all_messages
            .iter()
            .map(|m| {
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
                    "created_at": m.created_at, "age": age(&m.created_at),
                    "recorded_by": matches!(m.channel, kontor_core::Channel::Phone | kontor_core::Channel::Letter)
                        .then(|| m.author_id.map(|a| names.get(&a).cloned().unwrap_or_else(|| t["agent"].to_string())))
                        .flatten(),
                    "duration": m.duration_seconds.map(|d| format!("{}:{:02} {}", d / 60, d % 60, t["minutes_short"])),
                    "delivery_state": m.delivery_state,
                    "delivery_label": m.delivery_state.map(|d| t.get(format!("delivery_{}", d.as_str()).as_str()).copied().unwrap_or(d.as_str())),
                    "delivery_error": m.delivery_error.as_deref().map(|e| delivery_error_text(e, staff.lang)),
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
            .map(|c| json!({ "id": c.id, "subject": c.subject, "status": c.status, "age": age(&c.updated_at) }))
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
                    .map(|r| json!({ "id": r.id, "subject": r.subject, "channel": channel_label(r.channel, staff.lang), "reason": r.reason, "age": age(&r.last_activity_at) }))
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
        ctx.insert("reply_channels", Value::from_serialize(state.deliverable_channels()));
        ctx.insert("default_channel", Value::from_serialize(default_channel));
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
                    "moved": p.get("moved_messages"), "actor": actor, "age": age(&e.created_at), "at": e.created_at,
                })
            })
            .collect();
        ctx.insert("history", Value::from_serialize(&history));
    }
    Ok(ctx)
}

fn not_found(staff: &Staff) -> Response {
    let mut ctx = base(Some(staff), staff.lang);
    ctx.insert("rows", Value::from_serialize(Vec::<()>::new()));
    ctx.insert("missing", Value::from(true));
    let mut r = page("inbox.html", ctx);
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// The delivery errors Kontor itself words, in the page's language (a provider's own text
/// after the known start stays as it came).
fn delivery_error_text(error: &str, lang: Lang) -> String {
    if lang == Lang::En {
        return error.to_string();
    }
    const GERMAN: &[(&str, &str)] = &[
        ("the API channel has no webhook_url configured", "Für den API-Kanal ist keine Webhook-Adresse eingerichtet"),
        ("webhook answered ", "Der Webhook antwortete "),
        ("webhook unreachable: ", "Webhook nicht erreichbar: "),
        ("no outbound adapter for channel ", "Für diesen Kanal gibt es noch keinen Versand: "),
    ];
    for (en, de) in GERMAN {
        if let Some(rest) = error.strip_prefix(en) {
            return format!("{de}{rest}");
        }
    }
    error.to_string()
}

/// HTML e-mail bodies: no scripts, styles, forms or remote content.
pub fn sanitize_html(html: &str) -> String {
    ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto", "tel"].into_iter().collect())
        .rm_tags(["img"])
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(html)
        .to_string()
}

/// Marks what the agent was just shown as read (a failure here must not fail the page).
async fn mark_seen(state: &AppState, staff: &Staff, ctx: &BTreeMap<&'static str, Value>) {
    let field = |name: &str| ctx.get("case").and_then(|c| c.get_attr(name).ok()).and_then(|v| i64::try_from(v).ok());
    if let (Some(id), Some(event)) = (field("id"), field("last_event_id")) {
        // A read first: most refreshes show nothing new to this agent, and the writer is shared.
        let user = staff.session.user.id;
        if state
            .store
            .seen_event_ids(user, vec![id])
            .await
            .ok()
            .and_then(|m| m.get(&id).copied())
            .is_some_and(|s| s >= event)
        {
            return;
        }
        if let Err(e) = state.store.mark_case_seen(user, id, event).await {
            tracing::warn!(error = %e, "Cannot record that a case was read.");
        }
    }
}

async fn case_page(State(state): State<AppState>, staff: Staff, Path(id): Path<String>) -> Response {
    match case_context(&state, &staff, &id, Part::Page).await {
        Ok(ctx) => {
            mark_seen(&state, &staff, &ctx).await;
            page("case.html", ctx)
        }
        Err(r) => r,
    }
}

async fn case_fragment(
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

async fn profile(staff: Staff, Query(p): Query<HashMap<String, String>>) -> Response {
    let mut ctx = base(Some(&staff), staff.lang);
    ctx.insert("language", Value::from_serialize(&staff.session.language));
    if p.contains_key("saved") {
        ctx.insert("saved", Value::from(true));
    }
    page("profile.html", ctx)
}

#[derive(Deserialize)]
struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    password: String,
    /// Needed to set a new password (a session left open must not be enough).
    #[serde(default)]
    current_password: String,
}

/// The profile page again with an error; nothing was changed.
fn profile_refused(staff: &Staff, message: &str, status: StatusCode) -> Response {
    let mut ctx = base(Some(staff), staff.lang);
    ctx.insert("language", Value::from_serialize(&staff.session.language));
    ctx.insert("error", Value::from(message));
    let mut r = page("profile.html", ctx);
    *r.status_mut() = status;
    r
}

async fn profile_save(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    staff: Staff,
    Form(form): Form<ProfileForm>,
) -> Response {
    if !same_secret(&form.csrf, &staff.session.csrf) {
        return (StatusCode::FORBIDDEN, "CSRF token missing or wrong").into_response();
    }
    if !form.password.is_empty() {
        let t = words(staff.lang);
        if form.current_password.is_empty() {
            return profile_refused(&staff, t["current_password_missing"], StatusCode::UNPROCESSABLE_ENTITY);
        }
        // Checking the current password is a password check like a sign-in: same limits.
        let user = &staff.session.user;
        if !state.sign_in_limiter.allow(&addr.ip().to_string(), &user.email) {
            return profile_refused(&staff, t["too_many_attempts"], StatusCode::TOO_MANY_REQUESTS);
        }
        match state.store.verify_password(user.email.clone(), form.current_password).await {
            Ok(Some(u)) if u.id == user.id => {}
            Ok(_) => return profile_refused(&staff, t["current_password_wrong"], StatusCode::UNPROCESSABLE_ENTITY),
            Err(e) => return crate::error::AppError::from(e).into_response(),
        }
        let changed = state.store.set_user_password(user.id, form.password).await;
        // A new password ends every other session of the user (e.g. a forgotten browser).
        let changed = match changed {
            Ok(()) => state.store.end_other_sessions(user.id, &staff.token).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = changed {
            return profile_refused(&staff, &e.to_string(), StatusCode::UNPROCESSABLE_ENTITY);
        }
    }
    let language = Lang::parse(&form.language).map(|l| l.code().to_string());
    if let Err(e) = state.store.set_user_language(staff.session.user.id, language).await {
        return crate::error::AppError::from(e).into_response();
    }
    Redirect::to("/profile?saved=1").into_response()
}

async fn settings(State(state): State<AppState>, staff: Staff) -> Response {
    if staff.session.user.role != Role::Admin {
        let mut ctx = base(Some(&staff), staff.lang);
        ctx.insert("rows", Value::from_serialize(Vec::<()>::new()));
        ctx.insert("missing", Value::from(true));
        let mut r = page("inbox.html", ctx);
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    }
    let err = |e| crate::error::AppError::from(e).into_response();
    let load = async {
        let users = state.store.list_users().await?;
        let teams = state.store.list_teams().await?;
        let mut team_rows = Vec::new();
        for t in &teams {
            let members = state.store.team_members(t.id).await?;
            team_rows.push(json!({ "id": t.id, "name": t.name, "members": members }));
        }
        let canned = state.store.list_canned(None).await?;
        let only_assignee = state.store.reply_only_assignee().await?;
        Ok::<_, kontor_store::StoreError>((users, team_rows, canned, only_assignee))
    };
    let (users, teams, canned, only_assignee) = match load.await {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    let mut ctx = base(Some(&staff), staff.lang);
    ctx.insert("users", Value::from_serialize(&users));
    ctx.insert("teams", Value::from_serialize(&teams));
    ctx.insert("canned", Value::from_serialize(&canned));
    ctx.insert("reply_only_assignee", Value::from(only_assignee));
    page("settings.html", ctx)
}

/// The page routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/inbox", get(inbox))
        .route("/inbox/rows", get(inbox_rows))
        .route("/cases/{id}", get(case_page))
        .route("/cases/{id}/{part}", get(case_fragment))
        .route("/profile", get(profile).post(profile_save))
        .route("/settings", get(settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kontors_own_delivery_errors_are_shown_in_german() {
        let table = [
            (
                "the API channel has no webhook_url configured",
                "Für den API-Kanal ist keine Webhook-Adresse eingerichtet",
            ),
            ("webhook answered 500 Internal Server Error", "Der Webhook antwortete 500 Internal Server Error"),
            ("something a provider said", "something a provider said"),
        ];
        for (en, de) in table {
            assert_eq!(delivery_error_text(en, Lang::De), de);
            assert_eq!(delivery_error_text(en, Lang::En), en);
        }
    }

    #[test]
    fn html_mail_is_sanitised() {
        let dirty = r#"<p onclick="x()">Hallo <script>alert(1)</script><img src="https://tracker.example/p.gif"><a href="javascript:alert(1)">x</a><a href="mailto:a@b.de">m</a><style>p{}</style></p>"#;
        let clean = sanitize_html(dirty);
        assert!(!clean.contains("script") && !clean.contains("onclick") && !clean.contains("tracker"), "{clean}");
        assert!(!clean.contains("javascript:") && !clean.contains("<style"), "{clean}");
        assert!(clean.contains("mailto:a@b.de") && clean.contains("Hallo"), "{clean}");
    }
}
