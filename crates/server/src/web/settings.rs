//! The settings page (admins).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kontor_channels::email::config::hide_password;
use kontor_core::Role;
use minijinja::Value;
use serde_json::json;

use super::assist::{intent_label, intent_options, rule_summary, RuleNames};
use super::i18n::Lang;
use super::pages::*;
use crate::AppState;

pub(super) async fn settings(State(state): State<AppState>, staff: Staff) -> Response {
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
    // The e-mail channel's health as admins get it from the API (the same handler).
    let status =
        match crate::channels::channel_status(State(state.clone()), staff.caller(), Path("email".to_string())).await {
            Ok(axum::Json(s)) => serde_json::to_value(s).unwrap_or_default(),
            Err(e) => return e.into_response(),
        };
    let assistant = match assistant_section(&state, &staff, &users, &teams, &canned).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut ctx = base(Some(&staff), staff.lang);
    ctx.insert("assistant", Value::from_serialize(assistant));
    ctx.insert("email", Value::from_serialize(email_section(&state, &status, staff.lang)));
    ctx.insert("users", Value::from_serialize(&users));
    ctx.insert("teams", Value::from_serialize(&teams));
    ctx.insert("canned", Value::from_serialize(&canned));
    ctx.insert("reply_only_assignee", Value::from(only_assignee));
    page("settings.html", ctx)
}

/// The assistant's section: the automation level per intent, business hours and the rules
/// (as the API gives them: the same handlers), with what the forms need to choose from.
async fn assistant_section(
    state: &AppState,
    staff: &Staff,
    users: &[kontor_core::StaffUser],
    teams: &[serde_json::Value],
    canned: &[kontor_core::CannedResponse],
) -> Result<serde_json::Value, crate::error::AppError> {
    let lang = staff.lang;
    let axum::Json(intents) = crate::api::assist::get_intents(State(state.clone()), staff.caller()).await?;
    let axum::Json(hours) = crate::api::rules::get_hours(State(state.clone()), staff.caller()).await?;
    let rules = state.store.rules().await?;
    let names = RuleNames {
        teams: teams.iter().filter_map(|t| Some((t["id"].as_i64()?, t["name"].as_str()?.to_string()))).collect(),
        users: users.iter().map(|u| (u.id, u.name.clone())).collect(),
        canned: canned.iter().map(|c| (c.id, c.title.clone())).collect(),
    };
    let days = kontor_assist::rules::DAYS
        .iter()
        .map(|d| {
            let spans = hours
                .business_hours
                .as_ref()
                .and_then(|h| h.days.get(*d))
                .map(|spans| spans.iter().map(|span| span.join("-")).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            json!({ "day": d, "spans": spans })
        })
        .collect::<Vec<_>>();
    Ok(json!({
        "intents": intents.intents.iter().map(|i| json!({
            "intent": i.intent, "label": intent_label(&i.intent, lang), "level": i.level, "canned_id": i.canned_id,
        })).collect::<Vec<_>>(),
        "intent_options": intent_options(None, lang),
        "hours_on": hours.business_hours.is_some(),
        "timezone": hours.business_hours.as_ref().map(|h| h.timezone.clone()).unwrap_or_else(|| "Europe/Berlin".into()),
        "days": days,
        "rules": rules.iter().map(|r| json!({
            "id": r.id, "name": r.name, "enabled": r.enabled, "position": r.position,
            "summary": rule_summary(r, &names, lang),
        })).collect::<Vec<_>>(),
        "rules_raw": rules,
        "channels": kontor_core::Channel::ALL.iter().filter(|c| **c != kontor_core::Channel::Note)
            .map(|c| json!({ "code": c, "label": channel_label(*c, lang) })).collect::<Vec<_>>(),
        "priorities": kontor_core::Priority::ALL,
    }))
}

/// "5 min ago" / "vor 5 min", with the moment itself: `{at, ago}`, or null.
fn when(v: &serde_json::Value, lang: Lang) -> serde_json::Value {
    match moment(v) {
        Some((at, age)) if lang == Lang::De => json!({ "at": at, "ago": format!("vor {age}") }),
        Some((at, age)) => json!({ "at": at, "ago": format!("{age} ago") }),
        None => serde_json::Value::Null,
    }
}

/// One listener's health for the page (`state` null: configured but not running on this node).
fn listener(status: &serde_json::Value, name: &str, lang: Lang) -> serde_json::Value {
    let found = status["listeners"].as_array().and_then(|all| all.iter().find(|l| l["name"] == name));
    match found {
        Some(l) => json!({
            "name": name, "state": l["state"], "restarts": l["restarts"],
            "last_error": l["last_error"], "last_error_at": when(&l["last_error_at"], lang),
            "last_activity": when(&l["last_activity_at"], lang),
        }),
        None => json!({ "name": name, "state": null }),
    }
}

/// The e-mail section: what is configured (never a password) and how it is doing, from the
/// channel's status (`GET /api/v1/channels/email/status`).
fn email_section(state: &AppState, status: &serde_json::Value, lang: Lang) -> serde_json::Value {
    let cfg = &state.config.email;
    let mut imap: Vec<serde_json::Value> = cfg
        .imap
        .iter()
        .map(|a| {
            let mut l = listener(status, &format!("email.imap.{}", a.name), lang);
            l["mailbox"] = json!(a.name);
            l["url"] = json!(hide_password(&a.url));
            l
        })
        .collect();
    // A poller this node runs that the configuration does not name (it came from elsewhere).
    for l in status["listeners"].as_array().into_iter().flatten() {
        let name = l["name"].as_str().unwrap_or_default();
        if let Some(mailbox) = name.strip_prefix("email.imap.") {
            if !cfg.imap.iter().any(|a| a.name == mailbox) {
                let mut l = listener(status, name, lang);
                l["mailbox"] = json!(mailbox);
                imap.push(l);
            }
        }
    }
    // `outbound`: this node has a sender; `outbound_reachable`/`outbound_error`: the relay's
    // answer to a probe just now (null: not probed, e.g. no sender).
    let active = status["outbound"].as_bool().unwrap_or(false);
    let sending = active || cfg.outbound.relay.is_some();
    let reachable = status["outbound_reachable"].as_bool();
    let reachable_error = status["outbound_error"].as_str().map(|e| probe_error_text(e, lang));
    // "erreichbar" / "nicht erreichbar: <reason>" in the page's language.
    let reachability = reachable.map(|ok| {
        let label = match (ok, lang) {
            (true, Lang::De) => "erreichbar",
            (true, _) => "reachable",
            (false, Lang::De) => "nicht erreichbar",
            (false, _) => "not reachable",
        };
        json!({ "ok": ok, "label": label, "reason": if ok { None } else { reachable_error.clone() } })
    });
    let smtp_on = cfg.smtp_listen.is_some()
        || status["listeners"].as_array().is_some_and(|a| a.iter().any(|l| l["name"] == "email.smtp"));
    json!({
        "configured": smtp_on || sending || !imap.is_empty(),
        "smtp": smtp_on.then(|| {
            let mut l = listener(status, "email.smtp", lang);
            l["listen"] = json!(cfg.smtp_listen);
            l["domains"] = json!(cfg.domains);
            l
        }),
        "imap": imap,
        "sending": sending,
        // Configured, yet this node has no sender for it (it could not be set up: see the log).
        "sending_inactive": sending && !active,
        "relay": cfg.outbound.relay.as_deref().map(hide_password),
        "from": cfg.outbound.from,
        "reachability": reachability,
        "last_inbound": when(&status["last_inbound_at"], lang),
        "last_outbound": when(&status["last_outbound_at"], lang),
        "last_outbound_state": status["last_outbound_state"],
        "last_outbound_error": status["last_outbound_error"],
    })
}

/// A probe's reason in the page's language: the e-mail channel words its reasons with these
/// starts (the rest — the relay's address and its own text — stays as it came).
fn probe_error_text(error: &str, lang: Lang) -> String {
    if lang == Lang::En {
        return error.to_string();
    }
    const GERMAN: &[(&str, &str)] = &[
        ("connection refused: ", "Verbindung abgelehnt: "),
        ("connection failed: ", "Verbindung gescheitert: "),
        ("no answer within ", "keine Antwort binnen "),
        ("TLS failed: ", "TLS gescheitert: "),
        ("bad greeting: ", "unerwartete Begrüßung: "),
        ("EHLO refused: ", "EHLO abgelehnt: "),
        ("STARTTLS refused: ", "STARTTLS abgelehnt: "),
        ("not SMTP: ", "kein SMTP: "),
        (
            "no STARTTLS (a password is never sent without TLS): ",
            "kein STARTTLS (ein Passwort geht nie ohne TLS hinaus): ",
        ),
    ];
    for (en, de) in GERMAN {
        if let Some(rest) = error.strip_prefix(en) {
            return format!("{de}{rest}");
        }
    }
    error.to_string()
}
