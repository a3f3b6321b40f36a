//! Who may post inbound messages and what a message must look like, over the real router on
//! an ephemeral port: staff sessions are refused, idempotency keys belong to their API token,
//! unknown fields and too many attachments are refused, addresses are Unicode-normalised.

use kontor_core::Role;
use kontor_testkit::server::{error_field as field_of, TestServer, PASSWORD};
use serde_json::{json, Value};

/// The server with staff users anna and ben, and two API tokens of two different
/// integrations: `token` (the CRM, admin) and `shop` (agent).
struct App {
    server: TestServer,
    shop: String,
}

impl std::ops::Deref for App {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

async fn start() -> App {
    let server = TestServer::start(|_| {}).await.with_staff().await;
    let shop = server.token("shop", Role::Agent).await;
    App { server, shop }
}

impl App {
    async fn inbound(&self, token: &str, body: Value) -> (u16, Value) {
        self.call_as(token, "POST", "/api/v1/inbound", Some(body)).await
    }

    /// Signs in through the form; returns (session cookie, the page's CSRF token).
    async fn sign_in_as(&self, email: &str) -> (String, String) {
        self.sign_in(email, PASSWORD).await.unwrap_or_else(|status| panic!("sign-in of {email}: {status}"))
    }

    async fn message_count(&self) -> usize {
        let (_, page) = self.call("GET", "/api/v1/events?limit=1000", None).await;
        page["items"].as_array().unwrap().iter().filter(|e| e["type"] == "message.received").count()
    }
}

#[tokio::test]
async fn staff_sessions_cannot_post_customer_messages() {
    let app = start().await;
    let (status, first) =
        app.inbound(&app.token, json!({ "from": { "email": "kunde@example.de" }, "text": "Echte Kundin" })).await;
    assert_eq!(status, 201);
    for who in ["ben@example.de", "anna@example.de"] {
        let (session, csrf) = app.sign_in_as(who).await;
        for body in [
            json!({ "from": { "email": "kunde@example.de" }, "text": "Gefälscht", "case_id": first["case_id"] }),
            json!({ "from": { "email": "neu@example.de" }, "text": "Gefälscht" }),
        ] {
            let (status, body) = app.call_in((&session, &csrf), "POST", "/api/v1/inbound", Some(body)).await;
            assert_eq!(status, 403, "{who}");
            assert!(body.get("case_id").is_none() && body["error"]["code"] == "forbidden", "{body}");
        }
    }
    assert_eq!(app.message_count().await, 1, "nothing was stored for the staff sessions");
}

#[tokio::test]
async fn one_clients_idempotency_key_never_swallows_another_clients_message() {
    let app = start().await;
    let msg =
        |email: &str, text: &str| json!({ "from": { "email": email }, "text": text, "provider_message_id": "4711" });
    let (s, a) = app.inbound(&app.token, msg("a@example.de", "Von der CRM")).await;
    assert_eq!(s, 201);
    let (s, b) = app.inbound(&app.shop, msg("b@example.de", "Vom Shop")).await;
    assert_eq!(s, 201, "another token's 4711 is a message of its own: {b}");
    assert_ne!(a["message_id"], b["message_id"]);
    assert_ne!(a["customer_id"], b["customer_id"]);

    // A real retry from the same token is a duplicate with the first ids.
    let (s, again) = app.inbound(&app.shop, msg("b@example.de", "Vom Shop")).await;
    assert_eq!((s, &again["message_id"], again["created"].as_bool()), (200, &b["message_id"], Some(false)));

    // The same key with another text or sender is refused and says why.
    for other in [msg("b@example.de", "Ganz anderer Text"), msg("c@example.de", "Vom Shop")] {
        let (s, body) = app.inbound(&app.shop, other).await;
        assert_eq!(s, 409, "{body}");
        assert_eq!(body["error"]["code"], "idempotency_conflict");
        assert!(body["error"]["message"].as_str().unwrap().contains("4711"), "{body}");
        assert!(body.get("message_id").is_none());
    }

    // The same for the Idempotency-Key header.
    let keyed = |text: &str| {
        app.http
            .post(format!("{}/api/v1/inbound", app.base))
            .bearer_auth(&app.token)
            .header("idempotency-key", "retry-1")
            .json(&json!({ "from": { "email": "k@example.de" }, "text": text }))
            .send()
    };
    assert_eq!(keyed("eins").await.unwrap().status().as_u16(), 201);
    assert_eq!(keyed("eins").await.unwrap().status().as_u16(), 200);
    assert_eq!(keyed("zwei").await.unwrap().status().as_u16(), 409);
    assert_eq!(app.message_count().await, 3);

    // Attachment-only messages differ by their files, and a message with HTML from one without.
    let file = |name: &str| json!([{ "filename": name, "content_type": "application/pdf", "size": 10 }]);
    let with = |extra: Value| {
        let mut m = json!({ "from": { "email": "f@example.de" }, "text": "", "provider_message_id": "files-1" });
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(extra.clone());
        }
        m
    };
    assert_eq!(app.inbound(&app.token, with(json!({ "attachments": file("a.pdf") }))).await.0, 201);
    assert_eq!(app.inbound(&app.token, with(json!({ "attachments": file("a.pdf") }))).await.0, 200);
    assert_eq!(app.inbound(&app.token, with(json!({ "attachments": file("b.pdf") }))).await.0, 409);
    assert_eq!(app.inbound(&app.token, with(json!({ "attachments": file("a.pdf"), "html": "<p>x</p>" }))).await.0, 409);
    assert_eq!(app.message_count().await, 4);
}

#[tokio::test]
async fn unknown_fields_are_refused_naming_the_field() {
    let app = start().await;
    let (s, body) = app
        .inbound(
            &app.token,
            json!({ "from": { "email": "t@example.de" }, "text": "Tippfehler", "provider_mesage_id": "crm-1" }),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(field_of(&body), "provider_mesage_id", "{body}");
    let (s, body) = app.inbound(&app.token, json!({ "from": { "emial": "t@example.de" }, "text": "x" })).await;
    assert_eq!(s, 422);
    assert!(field_of(&body).contains("emial"), "{body}");
    assert_eq!(app.message_count().await, 0);
}

#[tokio::test]
async fn an_empty_subject_stays_an_empty_subject() {
    let app = start().await;
    let (s, r) =
        app.inbound(&app.token, json!({ "from": { "email": "s@example.de" }, "subject": "", "text": "x" })).await;
    assert_eq!(s, 201);
    let (_, case) = app.call("GET", &format!("/api/v1/cases/{}", r["case_id"]), None).await;
    assert_eq!(case["messages"][0]["subject"], json!(""), "{case}");
    let (_, r) = app.inbound(&app.token, json!({ "from": { "email": "n@example.de" }, "text": "ohne" })).await;
    let (_, case) = app.call("GET", &format!("/api/v1/cases/{}", r["case_id"]), None).await;
    assert_eq!(case["messages"][0]["subject"], Value::Null, "no subject stays no subject");
}

#[tokio::test]
async fn at_most_a_hundred_attachments_per_message() {
    let app = start().await;
    let files = |n: usize| {
        (0..n)
            .map(|i| json!({ "filename": format!("f{i}.pdf"), "content_type": "application/pdf", "size": 10 }))
            .collect::<Vec<_>>()
    };
    let (s, body) = app
        .inbound(&app.token, json!({ "from": { "email": "a@example.de" }, "text": "x", "attachments": files(101) }))
        .await;
    assert_eq!((s, field_of(&body)), (422, "attachments"), "{body}");
    let (s, _) = app
        .inbound(&app.token, json!({ "from": { "email": "a@example.de" }, "text": "x", "attachments": files(100) }))
        .await;
    assert_eq!(s, 201);
}

#[tokio::test]
async fn an_unknown_case_and_another_customers_case_get_the_same_answer() {
    let app = start().await;
    let (_, anna) = app.inbound(&app.token, json!({ "from": { "email": "anna@example.de" }, "text": "Anna" })).await;
    let other = app
        .inbound(&app.token, json!({ "from": { "email": "bob@example.de" }, "text": "x", "case_id": anna["case_id"] }))
        .await;
    let unknown = app
        .inbound(
            &app.token,
            json!({ "from": { "email": "bob@example.de" }, "text": "x", "case_id": anna["case_id"].as_i64().unwrap() + 999 }),
        )
        .await;
    assert_eq!(other.0, 404, "{}", other.1);
    assert_eq!(other.0, unknown.0);
    assert_eq!(other.1["error"]["code"], unknown.1["error"]["code"]);
    assert!(other.1["error"]["message"].as_str().unwrap().contains("of this sender"), "{}", other.1);
    let strip = |v: &Value| {
        v["error"]["message"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .filter(|w| w.parse::<i64>().is_err())
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(strip(&other.1), strip(&unknown.1), "the message differs only by the id asked for");
}

#[tokio::test]
async fn email_addresses_are_one_identity_in_any_unicode_form() {
    let app = start().await;
    let (_, a) = app.inbound(&app.token, json!({ "from": { "email": "jos\u{e9}@example.de" }, "text": "eins" })).await;
    let (_, b) =
        app.inbound(&app.token, json!({ "from": { "email": "jose\u{301}@example.de" }, "text": "zwei" })).await;
    let (_, c) = app.inbound(&app.token, json!({ "from": { "email": "JOS\u{c9}@Example.DE" }, "text": "drei" })).await;
    assert_eq!(a["customer_id"], b["customer_id"], "precomposed and decomposed é are one customer");
    assert_eq!(a["customer_id"], c["customer_id"], "and so is the capital");
    for sneaky in
        ["\u{200b}jose@example.de", "jo\u{200d}se@example.de", "jose@example.de\u{feff}", "jose\u{7}@example.de"]
    {
        let (s, body) = app.inbound(&app.token, json!({ "from": { "email": sneaky }, "text": "x" })).await;
        assert_eq!((s, field_of(&body)), (422, "from.email"), "{sneaky:?}: {body}");
    }
    let (_, customers) = app.call("GET", "/api/v1/customers", None).await;
    assert_eq!(customers["items"].as_array().map(Vec::len), Some(1), "{customers}");
}
