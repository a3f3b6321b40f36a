//! Staff sign-in and sign-out, the signed-in staff user of a page (`Staff`), and the profile page.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use kontor_store::staff::StaffSession;
use minijinja::Value;
use rand::RngCore;
use serde::Deserialize;

use super::i18n::{words, Lang};
use super::pages::*;
use super::{cookie_header, over_tls, request_lang, same_secret, session_cookie, to_sign_in};
use crate::auth::{cookie, SESSION_COOKIE};
use crate::AppState;

pub(super) const LOGIN_COOKIE: &str = "kontor_login";

pub(super) const SESSION_SECS: i64 = 12 * 3600;

/// A signed-in staff user on a page request.
pub struct Staff {
    pub session: StaffSession,
    pub lang: Lang,
    /// The session cookie's value.
    pub token: String,
}

impl Staff {
    /// The signed-in user's id.
    pub fn user_id(&self) -> kontor_core::UserId {
        kontor_core::UserId(self.session.user.id)
    }

    /// The same user as an API caller (for the visibility rules the API applies).
    pub fn caller(&self) -> crate::auth::Caller {
        crate::auth::Caller {
            token_id: None,
            role: self.session.user.role,
            user_id: Some(self.user_id()),
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

pub(super) fn random_hex() -> String {
    let mut raw = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

pub(super) fn login_page(headers: &HeaderMap, error: Option<&str>, status: StatusCode) -> Response {
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

pub(super) async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = session_cookie(&headers) {
        if let Ok(Some(_)) = state.store.session(token).await {
            return Redirect::to("/inbox").into_response();
        }
    }
    login_page(&headers, None, StatusCode::OK)
}

pub(super) async fn login_form(headers: HeaderMap) -> Response {
    login_page(&headers, None, StatusCode::OK)
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    email: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

pub(super) async fn login(
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

pub(super) async fn profile(staff: Staff, Query(p): Query<HashMap<String, String>>) -> Response {
    let mut ctx = base(Some(&staff), staff.lang);
    ctx.insert("language", Value::from_serialize(&staff.session.language));
    if p.contains_key("saved") {
        ctx.insert("saved", Value::from(true));
    }
    page("profile.html", ctx)
}

#[derive(Deserialize)]
pub(super) struct ProfileForm {
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
pub(super) fn profile_refused(staff: &Staff, message: &str, status: StatusCode) -> Response {
    let mut ctx = base(Some(staff), staff.lang);
    ctx.insert("language", Value::from_serialize(&staff.session.language));
    ctx.insert("error", Value::from(message));
    let mut r = page("profile.html", ctx);
    *r.status_mut() = status;
    r
}

pub(super) async fn profile_save(
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
