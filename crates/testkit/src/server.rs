//! The real router on an ephemeral port over a fresh SQLite store, and the HTTP helpers the
//! server's integration tests share: JSON calls with an API token, sign-in through the login
//! form, the CSRF token of a page, cookies.

use std::path::Path;
use std::time::{Duration, Instant};

use kontor_core::{Role, StaffUser};
use kontor_server::{AppState, Config};
use kontor_store::Store;
use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use tempfile::TempDir;

/// The password of the staff users [`TestServer::staff`] creates.
pub const PASSWORD: &str = "geheim123";

/// A Kontor server for one test: `kontor_server::serve` on `127.0.0.1:0` over a fresh SQLite
/// store in a temporary data directory, with an admin API token. The server runs until the
/// test's runtime ends.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The store the server runs on (for setting up data directly).
    pub store: Store,
    /// The configuration the server was started with.
    pub config: Config,
    /// An admin API token (named `admin`).
    pub token: String,
    /// An HTTP client that does not follow redirects (so a 303 stays visible).
    pub http: reqwest::Client,
    dir: TempDir,
}

impl TestServer {
    /// Starts a server with the default configuration, changed by `configure`.
    pub async fn start(configure: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with(configure, |_| {}).await
    }

    /// Like [`TestServer::start`]; `prepare` may change the state before the server starts
    /// (e.g. its sign-in limiter).
    pub async fn start_with(configure: impl FnOnce(&mut Config), prepare: impl FnOnce(&mut AppState)) -> TestServer {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let mut config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        configure(&mut config);
        let store = Store::open(&config.database_url(), config.store_settings())
            .unwrap_or_else(|e| panic!("cannot open the store: {e}"));
        let (_, token) = store
            .create_token("admin".into(), Role::Admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create a token: {e}"));
        let base = serve(&store, &config, prepare).await;
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("cannot build the HTTP client: {e}"));
        TestServer { base, store, config, token, http, dir }
    }

    /// Starts one more node on the same store (its own token cache, sign-in limiter and
    /// workers); returns its base URL.
    pub async fn start_node(&self, prepare: impl FnOnce(&mut AppState)) -> String {
        serve(&self.store, &self.config, prepare).await
    }

    /// The data directory (holding the SQLite database).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of the SQLite database.
    pub fn database_url(&self) -> String {
        self.config.database_url()
    }

    /// Absolute URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a staff user with the password [`PASSWORD`].
    pub async fn staff(&self, email: &str, name: &str, role: Role) -> StaffUser {
        self.store
            .create_user(email.into(), name.into(), role, PASSWORD.into())
            .await
            .unwrap_or_else(|e| panic!("cannot create staff user {email}: {e}"))
    }

    /// Adds the two staff users the page tests sign in as, both with [`PASSWORD`]:
    /// `anna@example.de` (Anna Admin, admin) and `ben@example.de` (Ben Berger, agent).
    pub async fn with_staff(self) -> TestServer {
        self.staff("anna@example.de", "Anna Admin", Role::Admin).await;
        self.staff("ben@example.de", "Ben Berger", Role::Agent).await;
        self
    }

    /// Creates an API token; returns its secret.
    pub async fn token(&self, name: &str, role: Role) -> String {
        let (_, secret) = self
            .store
            .create_token(name.into(), role)
            .await
            .unwrap_or_else(|e| panic!("cannot create token {name}: {e}"));
        secret
    }

    /// A request to `path` with `token` as bearer.
    pub fn with_token(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(token)
    }

    /// A request to `path` as a signed-in user (the session cookie set).
    pub fn with_session(&self, session: &str, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).header(COOKIE, format!("kontor_session={session}"))
    }

    /// A JSON call with the admin token: status and body (see [`answer`]).
    pub async fn call(&self, method: impl IntoMethod, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    /// A JSON call with `token`: status and body (see [`answer`]).
    pub async fn call_as(&self, token: &str, method: impl IntoMethod, path: &str, body: Option<Value>) -> (u16, Value) {
        send(self.with_token(token, method.into_method(), path), body).await
    }

    /// A JSON call as a signed-in user with the page's CSRF token: status and body.
    pub async fn call_in(
        &self,
        (session, csrf): (&str, &str),
        method: impl IntoMethod,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        send(self.with_session(session, method.into_method(), path).header("x-csrf-token", csrf), body).await
    }

    /// Opens the login page: (its `kontor_login` cookie, its CSRF token).
    pub async fn login_page(&self) -> (String, String) {
        let page = self.http.get(self.url("/login")).send().await.unwrap_or_else(|e| panic!("GET /login: {e}"));
        let cookie = cookie_value(page.headers(), "kontor_login").unwrap_or_else(|| panic!("no kontor_login cookie"));
        (cookie, hidden_csrf(&text(page).await))
    }

    /// Signs in through the login form; `Err(status)` if refused, else (session cookie, the
    /// CSRF token of the inbox page).
    pub async fn sign_in(&self, email: &str, password: &str) -> Result<(String, String), u16> {
        let (login, csrf) = self.login_page().await;
        let r = self
            .http
            .post(self.url("/login"))
            .header(COOKIE, format!("kontor_login={login}"))
            .form(&[("email", email), ("password", password), ("csrf", &csrf)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /login: {e}"));
        if r.status().as_u16() != 303 {
            return Err(r.status().as_u16());
        }
        let session = cookie_value(r.headers(), "kontor_session").unwrap_or_else(|| panic!("no kontor_session cookie"));
        let (_, inbox) = self.page(&session, "/inbox").await;
        Ok((session, hidden_csrf(&inbox)))
    }

    /// GET `path` as a signed-in user: status and body text.
    pub async fn page(&self, session: &str, path: &str) -> (u16, String) {
        let r =
            self.with_session(session, Method::GET, path).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (r.status().as_u16(), text(r).await)
    }

    /// Posts a page form as a signed-in user.
    pub async fn post_form(&self, session: &str, path: &str, form: &[(&str, &str)]) -> Response {
        self.with_session(session, Method::POST, path)
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// The message `message_id` of case `case_id` once its delivery reached `state`; asks
    /// with the admin token every 50 ms and fails the test if `limit` passes first.
    pub async fn wait_delivery(&self, case_id: &Value, message_id: &Value, state: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (_, case) = self.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
            if let Some(m) = case["messages"].as_array().and_then(|ms| ms.iter().find(|m| m["id"] == *message_id)) {
                if m["delivery_state"] == state {
                    return m.clone();
                }
            }
            assert!(Instant::now() < deadline, "message {message_id} never reached {state}: {case}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Starts `kontor_server::serve` for `store` on `127.0.0.1:0`; returns its base URL.
async fn serve(store: &Store, config: &Config, prepare: impl FnOnce(&mut AppState)) -> String {
    let mut state = AppState::new(store.clone(), config.clone());
    let vault = kontor_server::blobs::open_vault(store, config)
        .await
        .unwrap_or_else(|e| panic!("cannot open the blob store: {e}"));
    state.vault = Some(vault);
    prepare(&mut state);
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("cannot bind a port: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("no local address: {e}"));
    tokio::spawn(kontor_server::serve(state, listener, std::future::pending()));
    format!("http://{addr}")
}

/// An HTTP method, given as `Method` or as its name (`"GET"`).
pub trait IntoMethod {
    /// The method; panics on a name that is not one.
    fn into_method(self) -> Method;
}

impl IntoMethod for Method {
    fn into_method(self) -> Method {
        self
    }
}

impl IntoMethod for &str {
    fn into_method(self) -> Method {
        Method::from_bytes(self.as_bytes()).unwrap_or_else(|e| panic!("{self:?} is no HTTP method: {e}"))
    }
}

/// Sends `rb`, with `body` as JSON if given, and reads the answer.
async fn send(rb: RequestBuilder, body: Option<Value>) -> (u16, Value) {
    let rb = match body {
        Some(b) => rb.json(&b),
        None => rb,
    };
    answer(rb.send().await.unwrap_or_else(|e| panic!("request failed: {e}"))).await
}

/// The status and the body: as JSON, or as a JSON string if it is not JSON.
pub async fn answer(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = text(r).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn text(r: Response) -> String {
    r.text().await.unwrap_or_else(|e| panic!("cannot read the response body: {e}"))
}

/// Every `Set-Cookie` header.
pub fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
}

/// The value of the cookie `name` among the `Set-Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    set_cookies(headers)
        .iter()
        .find_map(|c| c.strip_prefix(&prefix).map(|r| r.split(';').next().unwrap_or("").to_string()))
}

/// The value of the page's hidden `csrf` form field; panics if the page has none.
pub fn hidden_csrf(html: &str) -> String {
    const FIELD: &str = "name=\"csrf\" value=\"";
    let i = html.find(FIELD).unwrap_or_else(|| panic!("no csrf field in the page: {html}")) + FIELD.len();
    html[i..].split('"').next().unwrap_or_default().to_string()
}

/// `error.details.field` of an API error body ("" if there is none).
pub fn error_field(body: &Value) -> &str {
    body["error"]["details"]["field"].as_str().unwrap_or("")
}

/// `error.message` of an API error body ("" if there is none).
pub fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn cookies_and_csrf_fields_are_read_from_headers_and_pages() {
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("kontor_login=abc; HttpOnly; Path=/"));
        h.append(SET_COOKIE, HeaderValue::from_static("kontor_session=s-1"));
        assert_eq!(cookie_value(&h, "kontor_login").as_deref(), Some("abc"));
        assert_eq!(cookie_value(&h, "kontor_session").as_deref(), Some("s-1"));
        assert_eq!(cookie_value(&h, "kontor"), None);
        assert_eq!(set_cookies(&h).len(), 2);
        assert_eq!(hidden_csrf(r#"<input type="hidden" name="csrf" value="t0k"><p>"#), "t0k");
    }

    #[test]
    fn methods_are_given_by_name_or_value() {
        assert_eq!("PATCH".into_method(), Method::PATCH);
        assert_eq!(Method::DELETE.into_method(), Method::DELETE);
    }
}
