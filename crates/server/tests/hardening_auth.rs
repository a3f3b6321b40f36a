//! Who may do what, through the real router on an ephemeral port over a real SQLite store:
//! the `ingest` token role, listing and revoking tokens (at once, on every node), event
//! streams that follow role changes and revocations, the sign-in limiter under a flood,
//! and the current password on a password change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kontor_core::Role;
use kontor_server::web::{SignInLimiter, SignInLimits};
use kontor_testkit::server::TestServer;
use kontor_testkit::sse::{SseNext, SseReader};
use reqwest::header::ACCEPT_LANGUAGE;
use reqwest::Method;
use serde_json::{json, Value};

/// The server with its sign-in limiter (to flood it directly).
struct App {
    server: TestServer,
    limiter: Arc<SignInLimiter>,
}

impl std::ops::Deref for App {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

/// A server over a fresh store with staff users anna (admin) and ben (agent), both with
/// the password `geheim123`, and an admin token.
async fn start_with(limits: SignInLimits) -> App {
    let limiter = Arc::new(SignInLimiter::new(limits));
    let server = TestServer::start_with(|_| {}, |state| state.sign_in_limiter = limiter.clone()).await;
    App { server: server.with_staff().await, limiter }
}

async fn start() -> App {
    start_with(SignInLimits::default()).await
}

impl App {
    async fn inbound(&self, email: &str, text: &str) -> Value {
        let (s, v) =
            self.call("POST", "/api/v1/inbound", Some(json!({ "from": { "email": email }, "text": text }))).await;
        assert_eq!(s, 201, "{v}");
        v
    }

    async fn note(&self, case_id: &Value, text: &str) -> i64 {
        let (s, v) = self.call("POST", &format!("/api/v1/cases/{case_id}/notes"), Some(json!({ "text": text }))).await;
        assert_eq!(s, 201, "{v}");
        v["event_id"].as_i64().expect("event_id")
    }

    async fn save_profile(&self, session: &str, lang: &str, form: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .with_session(session, Method::POST, "/profile")
            .header(ACCEPT_LANGUAGE, lang)
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// A reader of `GET /api/v1/events/stream`.
struct Sse(SseReader);

impl Sse {
    async fn open(rb: reqwest::RequestBuilder) -> Sse {
        let r = rb.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "event stream status");
        Sse(SseReader::new(r))
    }

    /// Reads until the event `id` arrives; returns the ids of the events before it.
    async fn until(&mut self, id: i64, deadline: Instant) -> Vec<(i64, Value)> {
        let mut before = Vec::new();
        loop {
            match self.0.next(deadline).await {
                SseNext::Event(e) if e.id == Some(id) => return before,
                SseNext::Event(e) => before.extend(e.id.map(|got| (got, e.data))),
                other => panic!("event {id} did not arrive ({other:?}); before it: {before:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The ingest role
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_ingest_token_may_post_inbound_messages_and_nothing_else() {
    let app = start().await;
    let (_, ingest) = app.store.create_token("shop".into(), Role::Ingest).await.unwrap();
    let (s, receipt) = app
        .call_as(
            &ingest,
            "POST",
            "/api/v1/inbound",
            Some(json!({ "from": { "email": "k@example.de" }, "text": "Hallo" })),
        )
        .await;
    assert_eq!(s, 201, "an ingest token posts inbound messages: {receipt}");
    let case = receipt["case_id"].as_i64().unwrap();

    // Every other operation of the API, as the OpenAPI document lists them (so a route added
    // later is covered too), answers 403.
    let (_, doc) = app.call("GET", "/api/openapi.json", None).await;
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() || (method == "post" && path == "/api/v1/inbound") {
                continue;
            }
            let concrete = path.replace("{id}", &case.to_string()).replace("{user_id}", "1");
            let (s, v) = app.call_as(&ingest, method.to_uppercase().as_str(), &concrete, Some(json!({}))).await;
            assert_eq!(s, 403, "{} {concrete} with an ingest token: {v}", method.to_uppercase());
            assert_eq!(v["error"]["code"], "forbidden", "{v}");
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations checked");
    // The same answer from the token cache (the token was looked up before).
    let (s, _) = app.call_as(&ingest, "GET", &format!("/api/v1/cases/{case}"), None).await;
    assert_eq!(s, 403);
    // Nothing was changed by the refused calls.
    let (_, detail) = app.call("GET", &format!("/api/v1/cases/{case}"), None).await;
    assert_eq!(detail["status"], "open", "{detail}");
    assert_eq!(detail["messages"].as_array().map(Vec::len), Some(1), "{detail}");
}

#[tokio::test]
async fn ingest_is_a_role_for_tokens_only_and_the_users_api_refuses_it() {
    let app = start().await;
    let user = json!({ "email": "bot@example.de", "name": "Bot", "role": "ingest", "password": "geheim123" });
    let (s, v) = app.call("POST", "/api/v1/users", Some(user)).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["details"]["field"], "role", "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("API tokens only"), "{v}");
    let (_, users) = app.call("GET", "/api/v1/users", None).await;
    assert!(!users.to_string().contains("bot@example.de"), "{users}");

    let ben = users.as_array().unwrap().iter().find(|u| u["email"] == "ben@example.de").unwrap()["id"].clone();
    let (s, v) = app.call("PATCH", &format!("/api/v1/users/{ben}"), Some(json!({ "role": "ingest" }))).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["details"]["field"], "role", "{v}");
    let (_, users) = app.call("GET", "/api/v1/users", None).await;
    let ben = users.as_array().unwrap().iter().find(|u| u["email"] == "ben@example.de").unwrap().clone();
    assert_eq!(ben["role"], "agent", "unchanged: {ben}");

    // The document says so: the users API takes admin or agent.
    let (_, doc) = app.call("GET", "/api/openapi.json", None).await;
    let roles = &doc["components"]["schemas"]["StaffRole"]["enum"];
    assert_eq!(roles, &json!(["admin", "agent"]), "{}", doc["components"]["schemas"]["StaffRole"]);
}

// ---------------------------------------------------------------------------------------------
// Listing and revoking tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admins_list_tokens_without_secrets_and_a_revoked_token_stops_at_once() {
    let app = start().await;
    let (crm, crm_secret) = app.store.create_token("crm".into(), Role::Agent).await.unwrap();

    let (s, list) = app.call("GET", "/api/v1/tokens", None).await;
    assert_eq!(s, 200, "{list}");
    let items = list.as_array().expect("a list");
    let row = items.iter().find(|t| t["id"] == crm.id).expect("the crm token is listed");
    assert_eq!((row["name"].as_str(), row["role"].as_str()), (Some("crm"), Some("agent")), "{row}");
    assert!(row["created_at"].is_string() && row["revoked_at"].is_null(), "{row}");
    let text = list.to_string();
    assert!(!text.contains(&crm_secret) && !text.contains(&app.token), "no secrets: {text}");
    assert!(!text.contains(&kontor_store::staff::token_hash(&crm_secret)), "no hashes: {text}");

    // Agents may neither list nor revoke.
    assert_eq!(app.call_as(&crm_secret, "GET", "/api/v1/tokens", None).await.0, 403);
    assert_eq!(app.call_as(&crm_secret, "DELETE", &format!("/api/v1/tokens/{}", crm.id), None).await.0, 403);
    // Unknown ids.
    assert_eq!(app.call("DELETE", "/api/v1/tokens/999999", None).await.0, 404);
    assert_eq!(app.call("DELETE", "/api/v1/tokens/abc", None).await.0, 404);

    // The token works (and is now in the token cache) ...
    assert_eq!(app.call_as(&crm_secret, "GET", "/api/v1/cases", None).await.0, 200);
    let (s, v) = app.call("DELETE", &format!("/api/v1/tokens/{}", crm.id), None).await;
    assert_eq!(s, 204, "{v}");
    // ... and not a moment after the revocation answered.
    let (s, v) = app.call_as(&crm_secret, "GET", "/api/v1/cases", None).await;
    assert_eq!(s, 401, "a revoked token must not be answered from the cache: {v}");

    let (_, list) = app.call("GET", "/api/v1/tokens", None).await;
    let row = list.as_array().unwrap().iter().find(|t| t["id"] == crm.id).cloned().unwrap();
    assert!(row["revoked_at"].is_string(), "{row}");
    // Revoking again changes nothing.
    assert_eq!(app.call("DELETE", &format!("/api/v1/tokens/{}", crm.id), None).await.0, 204);
    let (_, events) = app.call("GET", "/api/v1/events?limit=1000", None).await;
    let revoked: Vec<&Value> =
        events["items"].as_array().unwrap().iter().filter(|e| e["type"] == "token.revoked").collect();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["payload"]["token"]["id"], crm.id);
    assert!(!events.to_string().contains(&crm_secret));

    // The document lists both routes and the token's shape.
    let (_, doc) = app.call("GET", "/api/openapi.json", None).await;
    assert!(
        doc["paths"]["/api/v1/tokens"]["get"].is_object() && doc["paths"]["/api/v1/tokens/{id}"]["delete"].is_object()
    );
    let fields = doc["components"]["schemas"]["ApiToken"]["properties"].as_object().expect("ApiToken schema");
    assert!(fields.contains_key("revoked_at") && !fields.contains_key("token_hash"), "{fields:?}");
}

#[tokio::test]
async fn a_token_revoked_on_one_node_stops_working_on_the_others_at_once() {
    let app = start().await;
    // A second node on the same store: its own token cache, learning through the event log.
    let other = app.start_node(|_| {}).await;
    let (crm, secret) = app.store.create_token("crm".into(), Role::Agent).await.unwrap();
    let on_other = |path: &str| app.http.get(format!("{other}{path}")).bearer_auth(&secret);
    assert_eq!(on_other("/api/v1/cases").send().await.unwrap().status().as_u16(), 200, "cached on the other node");
    let mut stream = Sse::open(on_other("/api/v1/events/stream")).await;

    assert_eq!(app.call("DELETE", &format!("/api/v1/tokens/{}", crm.id), None).await.0, 204);
    let revoked_at = Instant::now();
    // Well before the 30 s the cache would keep it.
    let deadline = revoked_at + Duration::from_secs(3);
    loop {
        let s = on_other("/api/v1/cases").send().await.unwrap().status().as_u16();
        if s == 401 {
            break;
        }
        assert_eq!(s, 200);
        assert!(Instant::now() < deadline, "the other node still takes the revoked token");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("the other node refused the revoked token after {:?}", revoked_at.elapsed());
    // The stream opened with it ends, without showing anything more.
    loop {
        match stream.0.next(deadline).await {
            SseNext::Ended => break,
            SseNext::Timeout => panic!("the stream opened with a revoked token is still open"),
            SseNext::Event(e) => assert_ne!(e.data["type"], "token.revoked", "{}", e.data),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A stream follows its user's role
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_demoted_admins_open_stream_stops_showing_hidden_teams_and_staff_events() {
    let app = start().await;
    let (_, team) = app.call("POST", "/api/v1/teams", Some(json!({ "name": "Intern" }))).await;
    let hidden = app.inbound("intern@example.de", "erste").await["case_id"].clone();
    let (s, v) = app.call("PATCH", &format!("/api/v1/cases/{hidden}"), Some(json!({ "team_id": team["id"] }))).await;
    assert_eq!(s, 200, "{v}");
    let visible = app.inbound("offen@example.de", "für alle").await["case_id"].clone();
    let (anna, _) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let mut stream = Sse::open(app.with_session(&anna, Method::GET, "/api/v1/events/stream")).await;

    // As an admin, anna sees the hidden team's case.
    let secret = app.note(&hidden, "vor der Herabstufung").await;
    let marker = app.note(&visible, "Marke 0").await;
    let before = stream.until(marker, Instant::now() + Duration::from_secs(5)).await;
    assert!(before.iter().any(|(id, _)| *id == secret), "an admin sees every team: {before:?}");

    // Another admin makes her an agent (one active admin must remain).
    app.store.create_user("carla@example.de".into(), "Carla".into(), Role::Admin, "geheim123".into()).await.unwrap();
    let users = app.store.list_users().await.unwrap();
    let anna_id = users.iter().find(|u| u.email == "anna@example.de").unwrap().id;
    let (s, v) = app.call("PATCH", &format!("/api/v1/users/{anna_id}"), Some(json!({ "role": "agent" }))).await;
    assert_eq!(s, 200, "{v}");
    let demoted = Instant::now();

    // Within the 5 s the stream re-reads its session, the hidden case's news stop coming:
    // each round writes to the hidden case, then to a visible one, and reads up to the
    // visible one (so the stream is alive and the hidden event, older, was skipped).
    let deadline = demoted + Duration::from_secs(10);
    let mut round = 1;
    loop {
        let secret = app.note(&hidden, &format!("geheim {round}")).await;
        let marker = app.note(&visible, &format!("Marke {round}")).await;
        assert!(secret < marker);
        let before = stream.until(marker, deadline).await;
        if !before.iter().any(|(id, _)| *id == secret) {
            break;
        }
        assert!(Instant::now() < deadline, "a demoted admin's stream still shows hidden cases");
        round += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("the stream followed the demotion after {:?}", demoted.elapsed());
    // Staff events (no case, no customer) are for admins only now.
    let (s, _) = app.call("POST", "/api/v1/teams", Some(json!({ "name": "Noch ein Team" }))).await;
    assert_eq!(s, 201);
    let marker = app.note(&visible, "letzte Marke").await;
    let before = stream.until(marker, Instant::now() + Duration::from_secs(5)).await;
    assert!(before.iter().all(|(_, e)| e["type"] != "team.created"), "staff events leak: {before:?}");
}

// ---------------------------------------------------------------------------------------------
// The sign-in limiter
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_flood_of_made_up_addresses_does_not_reset_the_limit_for_an_address_under_attack() {
    // A high global cap, so every attempt of the flood is really recorded.
    let app = start_with(SignInLimits { global: 10_000_000, ..SignInLimits::default() }).await;
    for i in 0..10 {
        assert_eq!(app.sign_in("ben@example.de", "falsch123").await.err(), Some(401), "attempt {i}");
    }
    assert_eq!(app.sign_in("ben@example.de", "geheim123").await.err(), Some(429), "the limit holds");
    // More than 50,000 made-up addresses from as many clients (called directly: through
    // HTTP the per-address limit would stop one client long before).
    for i in 0..50_500u32 {
        app.limiter.allow(&format!("2001:db8::{i:x}"), &format!("flood-{i}@example.invalid"));
    }
    assert!(app.limiter.tracked_keys() > 100_000, "the flood is held: {}", app.limiter.tracked_keys());
    assert_eq!(
        app.sign_in("ben@example.de", "geheim123").await.err(),
        Some(429),
        "the address under attack is still limited after the flood"
    );
}

#[tokio::test]
async fn password_checks_have_a_global_cap() {
    let app =
        start_with(SignInLimits { global: 3, global_period: Duration::from_secs(60), ..SignInLimits::default() }).await;
    for i in 0..3 {
        assert_eq!(app.sign_in(&format!("made-up-{i}@example.invalid"), "falsch123").await.err(), Some(401));
    }
    // Another address, never tried before, with the right password: the cap comes first.
    assert_eq!(app.sign_in("anna@example.de", "geheim123").await.err(), Some(429));
}

// ---------------------------------------------------------------------------------------------
// The current password on a password change
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn changing_the_password_on_the_profile_page_needs_the_current_one() {
    let app = start().await;
    let (anna, csrf) = app.sign_in("anna@example.de", "geheim123").await.unwrap();
    let csrf = csrf.as_str();

    let (s, page) = app.save_profile(&anna, "de", &[("csrf", csrf), ("password", "neues-geheimnis")]).await;
    assert_eq!(s, 422);
    assert!(page.contains("Bitte geben Sie Ihr aktuelles Passwort an"), "{page}");
    let wrong = [("csrf", csrf), ("current_password", "falsch123"), ("password", "neues-geheimnis")];
    let (s, page) = app.save_profile(&anna, "de", &wrong).await;
    assert_eq!(s, 422);
    assert!(page.contains("Das aktuelle Passwort ist falsch."), "{page}");
    let (s, page) = app.save_profile(&anna, "en", &wrong).await;
    assert_eq!(s, 422);
    assert!(page.contains("The current password is wrong."), "{page}");
    assert!(page.contains("name=\"current_password\""), "the form asks for it: {page}");
    // Nothing changed.
    assert!(app.sign_in("anna@example.de", "geheim123").await.is_ok());
    assert_eq!(app.sign_in("anna@example.de", "neues-geheimnis").await.err(), Some(401));

    let right = [("csrf", csrf), ("current_password", "geheim123"), ("password", "neues-geheimnis")];
    let (s, _) = app.save_profile(&anna, "de", &right).await;
    assert_eq!(s, 303, "the right current password");
    assert!(app.sign_in("anna@example.de", "neues-geheimnis").await.is_ok());
    // A language change alone needs no password.
    let (anna, csrf) = app.sign_in("anna@example.de", "neues-geheimnis").await.unwrap();
    let (s, _) = app.save_profile(&anna, "de", &[("csrf", csrf.as_str()), ("language", "en")]).await;
    assert_eq!(s, 303);
}
