//! Server-rendered pages for staff: sign-in, inbox, case view, profile. A small hand-written
//! script (`static/app.js`) adds live updates, the composer's collision handling and
//! keyboard shortcuts; there is no JavaScript build step.

pub mod i18n;
mod pages;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::Environment;

use crate::auth::{cookie, SESSION_COOKIE};
use crate::AppState;
use i18n::Lang;

pub use pages::routes as page_routes;

/// Compares two secrets in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 && !a.is_empty()
}

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // `.html` templates escape every value unless marked safe.
        for (name, source) in [
            ("base.html", include_str!("../../templates/base.html")),
            ("login.html", include_str!("../../templates/login.html")),
            ("inbox.html", include_str!("../../templates/inbox.html")),
            ("inbox_rows.html", include_str!("../../templates/inbox_rows.html")),
            ("case.html", include_str!("../../templates/case.html")),
            ("timeline.html", include_str!("../../templates/timeline.html")),
            ("case_meta.html", include_str!("../../templates/case_meta.html")),
            ("case_related.html", include_str!("../../templates/case_related.html")),
            ("case_sidebar.html", include_str!("../../templates/case_sidebar.html")),
            ("profile.html", include_str!("../../templates/profile.html")),
            ("message.html", include_str!("../../templates/message.html")),
            ("settings.html", include_str!("../../templates/settings.html")),
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(error = %e, name, "Template does not compile.");
            }
        }
        env
    })
}

/// Renders a template; a template error is a bug and answers 500.
pub fn render(name: &str, ctx: minijinja::Value) -> Response {
    match templates().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => {
            let mut resp = Html(html).into_response();
            let h = resp.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                ),
            );
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, template = name, "Template rendering failed.");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The language for a request without a signed-in user's preference.
pub fn request_lang(headers: &HeaderMap) -> Lang {
    Lang::from_accept_language(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

/// True if the client reached us over TLS (directly or through a proxy that says so).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value with the flags every Kontor cookie gets.
pub fn cookie_header(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// Sign-in attempts per client address and per e-mail address, in a sliding minute.
#[derive(Default)]
pub struct SignInLimiter {
    attempts: Mutex<HashMap<String, Vec<Instant>>>,
}

impl SignInLimiter {
    const WINDOW: Duration = Duration::from_secs(60);

    /// Records an attempt for each key; false if any key is over `limit` in the window.
    pub fn allow(&self, keys: &[(String, usize)]) -> bool {
        let Ok(mut map) = self.attempts.lock() else { return true };
        if map.len() > 50_000 {
            map.clear();
        }
        let now = Instant::now();
        let mut ok = true;
        for (key, limit) in keys {
            let list = map.entry(key.clone()).or_default();
            list.retain(|t| now.duration_since(*t) < Self::WINDOW);
            if list.len() >= *limit {
                ok = false;
            }
            list.push(now);
        }
        ok
    }
}

/// Redirect to the sign-in page.
pub fn to_sign_in() -> Response {
    Redirect::to("/").into_response()
}

/// All page routes plus the static files.
pub fn routes() -> Router<AppState> {
    page_routes()
        .route(
            "/static/app.js",
            get(|| async { static_file("application/javascript; charset=utf-8", include_str!("../../static/app.js")) }),
        )
        .route(
            "/static/app.css",
            get(|| async { static_file("text/css; charset=utf-8", include_str!("../../static/app.css")) }),
        )
        .route("/logout", post(pages::logout))
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The session cookie of a request, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
}
