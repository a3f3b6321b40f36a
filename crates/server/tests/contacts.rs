//! Contacts that happened outside Kontor (`POST /api/v1/customers/{id}/contacts`): phone
//! calls and letters recorded by staff, threaded like any other message, over the real router.

use kontor_core::Role;
use kontor_testkit::server::TestServer;
use reqwest::Method;
use serde_json::{json, Value};

struct App {
    server: TestServer,
    ingest: String,
    /// Ben's id, session cookie and CSRF token (an agent in no team).
    ben: (i64, String, String),
}

async fn start() -> App {
    let server = TestServer::start(|_| {}).await;
    let ben = server.staff("ben@example.de", "Ben Berger", Role::Agent).await;
    let ingest = server.token("crm", Role::Ingest).await;
    let session = server.store.create_session(ben.id, 3600).await.unwrap();
    let csrf = server.store.session(&session).await.unwrap().unwrap().csrf;
    App { server, ingest, ben: (ben.id, session, csrf) }
}

impl App {
    async fn admin(&self, method: Method, path: &str, body: Value) -> (u16, Value) {
        self.server.call(method, path, Some(body)).await
    }

    async fn ben(&self, method: Method, path: &str, body: Value) -> (u16, Value) {
        self.server.call_in((&self.ben.1, &self.ben.2), method, path, Some(body)).await
    }

    async fn inbound(&self, email: &str, text: &str) -> Value {
        let body = json!({ "from": { "email": email }, "text": text });
        let (s, v) = self.server.call_as(&self.ingest, "POST", "/api/v1/inbound", Some(body)).await;
        assert_eq!(s, 201, "{v}");
        v
    }

    async fn case(&self, id: &Value) -> Value {
        let (s, v) = self.server.call("GET", &format!("/api/v1/cases/{id}"), None).await;
        assert_eq!(s, 200, "{v}");
        v
    }
}

#[tokio::test]
async fn a_phone_call_recorded_by_an_agent_lands_in_the_customers_case_with_its_author() {
    let app = start().await;
    let first = app.inbound("anna@example.de", "Bitte rufen Sie mich an.").await;
    let path = format!("/api/v1/customers/{}/contacts", first["customer_id"]);
    let call = json!({ "channel": "phone", "direction": "in", "text": "Kundin bestätigt die neue Adresse.",
                       "duration_seconds": 185 });
    let (s, r) = app.ben(Method::POST, &path, call).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["case_id"], first["case_id"], "threaded into the open case");
    let case = app.case(&first["case_id"]).await;
    let m = case["messages"].as_array().unwrap().iter().find(|m| m["id"] == r["message_id"]).unwrap().clone();
    assert_eq!(m["channel"], "phone");
    assert_eq!(m["direction"], "in");
    assert_eq!(m["duration_seconds"], 185);
    assert_eq!(m["author_id"], app.ben.0, "shows who recorded it");
    assert!(m["delivery_state"].is_null(), "a recorded call is never sent");
    // Colleagues learn of it live.
    let (_, events) = app.server.call("GET", "/api/v1/events?limit=1000", None).await;
    let recorded: Vec<&Value> =
        events["items"].as_array().unwrap().iter().filter(|e| e["type"] == "message.recorded").collect();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["payload"]["message_id"], r["message_id"]);
    assert_eq!(recorded[0]["case_id"], first["case_id"]);

    // A letter into a named case, by an admin token.
    let letter = json!({ "channel": "letter", "direction": "in", "text": "Kündigung per Post",
                         "case_id": first["case_id"] });
    let (s, r) = app.admin(Method::POST, &path, letter).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["case_id"], first["case_id"]);
}

#[tokio::test]
async fn a_contact_recorded_after_a_reply_was_started_makes_that_reply_stale() {
    let app = start().await;
    let first = app.inbound("carl@example.de", "Frage zur Rechnung").await;
    let path = format!("/api/v1/customers/{}/contacts", first["customer_id"]);
    let call = json!({ "channel": "phone", "direction": "out", "text": "Rechnung am Telefon erklärt." });
    assert_eq!(app.ben(Method::POST, &path, call).await.0, 201);
    let reply = json!({ "text": "Anbei die Erklärung.", "based_on_event_id": first["event_id"] });
    let (s, r) = app.ben(Method::POST, &format!("/api/v1/cases/{}/replies", first["case_id"]), reply).await;
    assert_eq!(s, 409, "{r}");
    let newer = r["error"]["details"]["newer_messages"].as_array().cloned().unwrap_or_default();
    assert!(newer.iter().any(|m| m["channel"] == "phone"), "{r}");
    // An outgoing call counts as the first response.
    assert!(app.case(&first["case_id"]).await["first_response_at"].is_string());
}

#[tokio::test]
async fn an_incoming_contact_reopens_a_resolved_case_and_an_outgoing_one_does_not() {
    let app = start().await;
    let first = app.inbound("dora@example.de", "Zählerstand").await;
    let case_path = format!("/api/v1/cases/{}", first["case_id"]);
    let path = format!("/api/v1/customers/{}/contacts", first["customer_id"]);
    let resolve = || app.admin(Method::PATCH, &case_path, json!({ "status": "resolved" }));
    assert_eq!(resolve().await.0, 200);
    let out = json!({ "channel": "phone", "direction": "out", "text": "Nachgefragt, alles gut." });
    let (s, r) = app.ben(Method::POST, &path, out).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["case_id"], first["case_id"]);
    assert_eq!(app.case(&first["case_id"]).await["status"], "resolved");
    let inc = json!({ "channel": "phone", "direction": "in", "text": "Ruft wegen neuer Frage an." });
    let (s, r) = app.ben(Method::POST, &path, inc).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["case_id"], first["case_id"]);
    assert_eq!(app.case(&first["case_id"]).await["status"], "open");
}

#[tokio::test]
async fn bad_contacts_are_refused_with_the_field_named() {
    let app = start().await;
    let first = app.inbound("emil@example.de", "Hallo").await;
    let path = format!("/api/v1/customers/{}/contacts", first["customer_id"]);
    for (body, field) in [
        (json!({ "channel": "sms", "direction": "in", "text": "x" }), "channel"),
        (json!({ "channel": "phone", "direction": "sideways", "text": "x" }), "direction"),
        (json!({ "channel": "phone", "direction": "in", "text": "  " }), "text"),
        (json!({ "channel": "letter", "direction": "in", "text": "x", "duration_seconds": 60 }), "duration_seconds"),
        (json!({ "channel": "phone", "direction": "in", "text": "x", "duration_seconds": -1 }), "duration_seconds"),
        (json!({ "channel": "phone", "direction": "in", "text": "x", "case_id": 0 }), "case_id"),
        (json!({ "channel": "phone", "direction": "in", "text": "x", "mood": "happy" }), "mood"),
    ] {
        let (s, r) = app.ben(Method::POST, &path, body.clone()).await;
        assert_eq!(s, 422, "{body} → {r}");
        assert!(r["error"].to_string().contains(field), "{body} → {r}");
    }
    let ok = json!({ "channel": "phone", "direction": "in", "text": "x" });
    let (s, _) = app.ben(Method::POST, "/api/v1/customers/999999/contacts", ok.clone()).await;
    assert_eq!(s, 404);
    // Another customer's case is not this customer's.
    let other = app.inbound("fritz@example.de", "Andere Sache").await;
    let foreign = json!({ "channel": "phone", "direction": "in", "text": "x", "case_id": other["case_id"] });
    let (s, r) = app.ben(Method::POST, &path, foreign).await;
    assert_eq!(s, 404, "{r}");
    // Systems that only send messages in cannot record contacts.
    let (s, _) = app.server.call_as(&app.ingest, "POST", &path, Some(ok)).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn an_agent_cannot_record_a_contact_for_a_customer_only_another_team_sees() {
    let app = start().await;
    let first = app.inbound("gerda@example.de", "Vertrauliche Sache").await;
    let (s, team) = app.admin(Method::POST, "/api/v1/teams", json!({ "name": "Vorstand" })).await;
    assert_eq!(s, 201, "{team}");
    let moved = json!({ "team_id": team["id"] });
    let (s, _) = app.admin(Method::PATCH, &format!("/api/v1/cases/{}", first["case_id"]), moved).await;
    assert_eq!(s, 200);
    let path = format!("/api/v1/customers/{}/contacts", first["customer_id"]);
    let call = json!({ "channel": "phone", "direction": "in", "text": "x" });
    let (s, r) = app.ben(Method::POST, &path, call.clone()).await;
    assert_eq!(s, 404, "{r}");
    let (s, _) = app.admin(Method::POST, &path, call).await;
    assert_eq!(s, 201, "an admin may");
}
