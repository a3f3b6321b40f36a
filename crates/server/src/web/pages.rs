//! The staff pages' routes and what every page shares (the base template values, rendering);
//! the pages themselves live in `session`, `inbox`, `case` and `settings`, value formatting in
//! `format`.

use std::collections::BTreeMap;

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use kontor_core::Role;
use minijinja::Value;
use serde_json::json;

use super::i18n::{words, Lang};
use super::render;
use crate::AppState;

pub(super) use super::approvals::*;
pub(super) use super::case::*;
pub(super) use super::format::*;
pub(super) use super::inbox::*;
pub(super) use super::session::*;
pub(super) use super::settings::*;

/// The user whose teams limit what they see (admins see everything).
pub(super) fn restricted(staff: &Staff) -> Option<kontor_core::UserId> {
    staff.caller().restricted_user()
}

/// The values every page template gets.
pub(super) fn base(staff: Option<&Staff>, lang: Lang) -> BTreeMap<&'static str, Value> {
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

pub(super) fn page(name: &str, ctx: BTreeMap<&'static str, Value>) -> Response {
    render(name, Value::from_serialize(ctx))
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
        .route("/approvals", get(approvals))
        .route("/approvals/items", get(approval_items))
        .route("/approvals/count", get(approval_count))
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
    fn a_reply_subject_says_re_once() {
        let table = [
            (None, ""),
            (Some("  "), ""),
            (Some("Lieferung fehlt"), "Re: Lieferung fehlt"),
            (Some("Re: Lieferung fehlt"), "Re: Lieferung fehlt"),
            (Some("RE: Lieferung fehlt"), "RE: Lieferung fehlt"),
            (Some("AW: Rechnung"), "AW: Rechnung"),
            (Some("Antw: Rechnung"), "Antw: Rechnung"),
            (Some("WG: Rechnung"), "Re: WG: Rechnung"),
            (Some("Rechnung: März"), "Re: Rechnung: März"),
        ];
        for (subject, want) in table {
            assert_eq!(reply_subject(subject), want, "{subject:?}");
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
