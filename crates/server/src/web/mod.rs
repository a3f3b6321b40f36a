//! Server-rendered pages for staff: sign-in, inbox, case view, profile. A small hand-written
//! script (`static/app.js`) adds live updates, the composer's collision handling, the
//! assistant's style check and keyboard shortcuts; there is no JavaScript build step.

mod approvals;
mod assist;
mod case;
mod format;
pub mod i18n;
mod inbox;
mod pages;
mod session;
mod settings;

use std::collections::{HashMap, VecDeque};
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

pub use crate::auth::same_secret;

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
            ("approvals.html", include_str!("../../templates/approvals.html")),
            ("approvals_items.html", include_str!("../../templates/approvals_items.html")),
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

/// Limits on password checks (sign-in, and the current password on a password change).
#[derive(Debug, Clone)]
pub struct SignInLimits {
    /// Password checks per client address in `window`.
    pub per_address: usize,
    /// Password checks per e-mail address in `window`.
    pub per_email: usize,
    /// The sliding window of the two limits above.
    pub window: Duration,
    /// Password checks in all per `global_period`: the last line against a flood from
    /// many addresses.
    pub global: usize,
    /// The sliding window of `global`.
    pub global_period: Duration,
    /// Most keys each table holds. A table full of live entries refuses new keys rather
    /// than forget one (memory stays bounded without letting an attacker flush it).
    pub max_keys: usize,
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits {
            per_address: 30,
            per_email: 10,
            window: Duration::from_secs(60),
            global: 20,
            global_period: Duration::from_secs(1),
            max_keys: 100_000,
        }
    }
}

/// Recent password checks of each key (client address or e-mail), oldest first.
#[derive(Default)]
struct Attempts(HashMap<String, VecDeque<Instant>>);

impl Attempts {
    /// True if `key` may have one more check (nothing is recorded).
    fn has_room(&mut self, key: &str, limit: usize, max_keys: usize, now: Instant, window: Duration) -> bool {
        match self.0.get_mut(key) {
            Some(list) => {
                expire(list, now, window);
                list.len() < limit
            }
            None => limit > 0 && self.0.len() < max_keys,
        }
    }

    fn record(&mut self, key: &str, now: Instant) {
        self.0.entry(key.to_string()).or_default().push_back(now);
    }

    /// Drops the keys whose every check is older than `window` (and only those).
    fn forget_expired(&mut self, now: Instant, window: Duration) {
        self.0.retain(|_, list| {
            expire(list, now, window);
            !list.is_empty()
        });
    }
}

fn expire(list: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while list.front().is_some_and(|t| now.duration_since(*t) >= window) {
        list.pop_front();
    }
}

struct LimiterState {
    addresses: Attempts,
    emails: Attempts,
    global: VecDeque<Instant>,
    cleaned: Instant,
}

/// Password checks per client address, per e-mail address and in all, in sliding windows.
/// Only checks that are let through count (a refused attempt costs nothing and changes
/// nothing). Keys leave the tables only once their window has passed.
pub struct SignInLimiter {
    limits: SignInLimits,
    state: Mutex<LimiterState>,
}

impl Default for SignInLimiter {
    fn default() -> Self {
        SignInLimiter::new(SignInLimits::default())
    }
}

impl SignInLimiter {
    /// How often expired keys are swept out.
    const SWEEP_EVERY: Duration = Duration::from_secs(10);

    /// A limiter with these limits.
    pub fn new(limits: SignInLimits) -> Self {
        let state = LimiterState {
            addresses: Attempts::default(),
            emails: Attempts::default(),
            global: VecDeque::new(),
            cleaned: Instant::now(),
        };
        SignInLimiter { limits, state: Mutex::new(state) }
    }

    /// True (and counted) if a password check for `email` from client `address` may run now.
    pub fn allow(&self, address: &str, email: &str) -> bool {
        self.allow_at(address, email, Instant::now())
    }

    fn allow_at(&self, address: &str, email: &str, now: Instant) -> bool {
        let Ok(mut st) = self.state.lock() else { return false };
        let l = &self.limits;
        let full = st.addresses.0.len() >= l.max_keys || st.emails.0.len() >= l.max_keys;
        let since = now.duration_since(st.cleaned);
        if since >= Self::SWEEP_EVERY || (full && since >= Duration::from_secs(1)) {
            st.addresses.forget_expired(now, l.window);
            st.emails.forget_expired(now, l.window);
            st.cleaned = now;
        }
        expire(&mut st.global, now, l.global_period);
        let ok = st.addresses.has_room(address, l.per_address, l.max_keys, now, l.window)
            && st.emails.has_room(email, l.per_email, l.max_keys, now, l.window)
            && st.global.len() < l.global;
        if ok {
            st.addresses.record(address, now);
            st.emails.record(email, now);
            st.global.push_back(now);
        }
        ok
    }

    /// How many keys (client addresses and e-mail addresses) the limiter holds now.
    pub fn tracked_keys(&self) -> usize {
        self.state.lock().map(|st| st.addresses.0.len() + st.emails.0.len()).unwrap_or(0)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(window_ms: u64, max_keys: usize) -> SignInLimiter {
        SignInLimiter::new(SignInLimits {
            per_address: 3,
            per_email: 2,
            window: Duration::from_millis(window_ms),
            global: 1_000,
            global_period: Duration::from_secs(60),
            max_keys,
        })
    }

    #[test]
    fn refused_attempts_are_not_counted() {
        let l = limiter(60_000, 100);
        assert!(l.allow("a", "x@example.de"));
        assert!(l.allow("a", "x@example.de"));
        assert!(!l.allow("a", "x@example.de"), "the e-mail's limit");
        // The refusal did not use up the address: one more check for another e-mail.
        assert!(l.allow("a", "y@example.de"));
        assert!(!l.allow("a", "z@example.de"), "the address's limit");
    }

    #[test]
    fn a_full_table_refuses_new_keys_and_keeps_the_old_ones() {
        let l = limiter(60_000, 10);
        assert!(l.allow("a", "victim@example.de"));
        assert!(l.allow("a", "victim@example.de"));
        for i in 0..20 {
            l.allow(&format!("flood-{i}"), &format!("flood-{i}@example.de"));
        }
        assert!(l.tracked_keys() <= 20, "bounded: {}", l.tracked_keys());
        assert!(!l.allow("b", "victim@example.de"), "the victim's attempts are remembered");
    }

    #[test]
    fn keys_go_once_their_window_has_passed_and_not_before() {
        let l = limiter(60_000, 100);
        let t0 = Instant::now();
        assert!(l.allow_at("a", "x@example.de", t0));
        assert!(l.allow_at("a", "x@example.de", t0));
        assert!(l.allow_at("b", "y@example.de", t0 + Duration::from_secs(30)));
        assert!(!l.allow_at("a", "x@example.de", t0 + Duration::from_secs(59)), "still in the window");
        assert_eq!(l.tracked_keys(), 4, "a sweep keeps every live key");
        // The sweep after the first window drops x's and a's keys, keeps b's and y's.
        assert!(l.allow_at("c", "z@example.de", t0 + Duration::from_secs(75)));
        assert_eq!(l.tracked_keys(), 4, "b, y, c, z");
        assert!(l.allow_at("a", "x@example.de", t0 + Duration::from_secs(75)), "x's window has passed");
    }
}
