//! The HTTP API end to end: the real router on an ephemeral port over a real SQLite store.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kontor_core::Role;
use kontor_server::Config;
use kontor_testkit::server::{error_field, TestServer};
use kontor_testkit::sse::{SseNext, SseReader};
use serde_json::{json, Value};

/// The server with an admin token (`token`) and an agent token.
struct App {
    server: TestServer,
    agent_token: String,
}

impl std::ops::Deref for App {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

async fn start(tweak: impl FnOnce(&mut Config)) -> App {
    let server = TestServer::start(|cfg| {
        cfg.jobs.poll_ms = 50;
        tweak(cfg);
    })
    .await;
    let agent_token = server.token("agent", Role::Agent).await;
    App { server, agent_token }
}

impl App {
    async fn raw(&self, path: &str, body: &'static [u8]) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn inbound(&self, from: Value, text: &str, pmid: &str) -> Value {
        let (s, v) = self
            .call("POST", "/api/v1/inbound", Some(json!({ "from": from, "text": text, "provider_message_id": pmid })))
            .await;
        assert_eq!(s, 201, "{v}");
        v
    }
}

#[tokio::test]
async fn client_mistakes_get_json_errors_with_the_right_status() {
    let app = start(|c| c.max_body_bytes = 4096).await;
    let anon = app.http.get(format!("{}/api/v1/cases", app.base)).send().await.unwrap();
    assert_eq!(anon.status().as_u16(), 401);
    let body: Value = anon.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(app.call_as("kt_wrong", "GET", "/api/v1/cases", None).await.0, 401);

    let (s, v) = app.raw("/api/v1/inbound", b"{\"from\": ").await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("bad_request")));

    let table: &[(Value, &str)] = &[
        (json!({ "text": "kein Absender" }), "from"),
        (json!({ "from": {}, "text": "x" }), "from"),
        (json!({ "from": { "email": "a@b.de", "phone": "+491701234567" }, "text": "x" }), "from"),
        (json!({ "from": { "email": "not-an-address" }, "text": "x" }), "from.email"),
        (json!({ "from": { "phone": "12" }, "text": "x" }), "from.phone"),
        (json!({ "from": { "email": "a@b.de" } }), "text"),
        (json!({ "from": { "email": "a@b.de" }, "text": 5 }), "text"),
        (json!({ "from": { "email": "a@b.de" }, "text": "x", "case_id": "eins" }), "case_id"),
        (json!({ "from": { "email": "a@b.de", "fax": "1" }, "text": "x" }), "from"),
        (json!({ "from": { "email": "a@b.de" }, "text": "nul \u{0} byte" }), "text"),
        (json!({ "from": { "external_id": "a\u{0}b" }, "text": "x" }), "from.external_id"),
    ];
    for (body, field) in table {
        let (s, v) = app.call("POST", "/api/v1/inbound", Some(body.clone())).await;
        assert_eq!(s, 422, "{body} -> {v}");
        assert!(error_field(&v).starts_with(field), "{body}: field {} (want {field})", error_field(&v));
        assert_eq!(v["error"]["code"], "invalid");
    }

    let big = "x".repeat(10_000);
    let (s, v) = app.call("POST", "/api/v1/inbound", Some(json!({ "from": { "email": "a@b.de" }, "text": big }))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (413, Some("too_large")));

    assert_eq!(app.call("GET", "/api/v1/cases/999999", None).await.0, 404);
    let (s, v) = app.call("GET", "/api/v1/nothing-here", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    assert_eq!(app.call("GET", "/api/v1/cases/abc", None).await.0, 404);
    assert_eq!(app.call("GET", "/api/v1/customers/0", None).await.0, 404);
    let (s, v) = app.call("GET", "/api/v1/cases?status=sleeping", None).await;
    assert_eq!((s, error_field(&v)), (422, "status"));
    let (s, v) = app.call("GET", "/api/v1/cases?limit=many", None).await;
    assert_eq!((s, error_field(&v)), (422, "limit"));
    assert_eq!(app.call("GET", "/api/v1/search", None).await.0, 422);
    let (s, _) = app.call("POST", "/api/v1/cases/1/replies", Some(json!({ "text": "hi" }))).await;
    assert_eq!(s, 422, "based_on_event_id is required");
}

#[tokio::test]
async fn inbound_threads_by_normalised_address_and_is_idempotent() {
    let app = start(|_| {}).await;
    let a = app.inbound(json!({ "phone": "+49 170 1234567" }), "Hallo", "p-1").await;
    let b = app.inbound(json!({ "phone": "0170 1234567" }), "Noch da?", "p-2").await;
    assert_eq!(a["customer_id"], b["customer_id"]);
    assert_eq!(a["case_id"], b["case_id"]);
    assert!(b["event_id"].as_i64() > a["event_id"].as_i64());

    let (s, again) = app
        .call(
            "POST",
            "/api/v1/inbound",
            Some(json!({ "from": { "phone": "+491701234567" }, "text": "Hallo", "provider_message_id": "p-1" })),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(again["message_id"], a["message_id"]);
    assert_eq!(again["created"], false);

    let (_, customer) = app.call("GET", &format!("/api/v1/customers/{}", a["customer_id"]), None).await;
    assert_eq!(customer["identities"][0]["address"], "+491701234567");
    assert_eq!(customer["identities"][0]["kind"], "phone");
    let (_, case) = app.call("GET", &format!("/api/v1/cases/{}", a["case_id"]), None).await;
    assert_eq!(case["messages"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn agent_tokens_cannot_administer() {
    let app = start(|_| {}).await;
    let (s, _) = app.call_as(&app.agent_token, "POST", "/api/v1/teams", Some(json!({ "name": "Schaden" }))).await;
    assert_eq!(s, 403);
    let (s, team) = app.call("POST", "/api/v1/teams", Some(json!({ "name": "Schaden" }))).await;
    assert_eq!(s, 201);
    let (s, _) = app.call("POST", "/api/v1/teams", Some(json!({ "name": "Schaden" }))).await;
    assert_eq!(s, 409);
    let a = app.inbound(json!({ "email": "x@example.de" }), "Hilfe", "t-1").await;
    let (s, case) =
        app.call("PATCH", &format!("/api/v1/cases/{}", a["case_id"]), Some(json!({ "team_id": team["id"] }))).await;
    assert_eq!((s, &case["team_id"]), (200, &team["id"]));
    let (s, case) =
        app.call("PATCH", &format!("/api/v1/cases/{}", a["case_id"]), Some(json!({ "team_id": null }))).await;
    assert_eq!((s, &case["team_id"]), (200, &Value::Null));
    let (s, v) = app.call("PATCH", &format!("/api/v1/cases/{}", a["case_id"]), Some(json!({ "team_id": 999 }))).await;
    assert_eq!((s, error_field(&v)), (422, "team_id"));
}

/// The first `want` events (with id) of the stream, or fewer if `timeout` passes first.
async fn read_sse(resp: reqwest::Response, want: usize, timeout: Duration) -> Vec<(i64, Value)> {
    let deadline = Instant::now() + timeout;
    let mut stream = SseReader::new(resp);
    let mut out = Vec::new();
    while out.len() < want {
        match stream.next(deadline).await {
            SseNext::Event(e) => out.extend(e.id.map(|id| (id, e.data))),
            SseNext::Timeout | SseNext::Ended => break,
        }
    }
    out
}

#[tokio::test]
async fn event_stream_resumes_after_last_event_id_without_gap_or_duplicate() {
    // Exactly these events: no analysis events in between.
    let app = start(|c| c.assist.analyse = false).await;
    let first = app.inbound(json!({ "email": "s@example.de" }), "eins", "s-0").await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(
            app.inbound(json!({ "email": "s@example.de" }), &format!("Nachricht {i}"), &format!("s-{i}")).await
                ["event_id"]
                .as_i64()
                .unwrap(),
        );
    }
    let resp = app
        .http
        .get(format!("{}/api/v1/events/stream", app.base))
        .bearer_auth(&app.token)
        .header("Last-Event-ID", first["event_id"].to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let got = read_sse(resp, 5, Duration::from_secs(5)).await;
    let got_ids: Vec<i64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(got_ids, ids, "exactly the events after Last-Event-ID, in order");
    assert_eq!(got[0].1["type"], "message.received");
    assert_eq!(got[0].1["payload"]["message"]["text"], "Nachricht 1");

    // A live stream without Last-Event-ID sees new events only.
    let live = app.http.get(format!("{}/api/v1/events/stream", app.base)).bearer_auth(&app.token).send().await.unwrap();
    let reader = tokio::spawn(read_sse(live, 1, Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let next = app.inbound(json!({ "email": "s@example.de" }), "live", "s-live").await;
    let got = reader.await.unwrap();
    assert_eq!(got.first().map(|(id, _)| *id), next["event_id"].as_i64());

    let (s, _) = app.call("GET", "/api/v1/events/stream?after=x", None).await;
    assert_eq!(s, 422);
}

type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A webhook receiver that answers with the given statuses in turn (the last one repeats).
async fn webhook(statuses: Vec<u16>) -> (String, Received) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let seen: Received = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = s2.clone();
            let statuses = statuses.clone();
            async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let n = {
                    let mut s = seen.lock().unwrap();
                    s.push((h("x-kontor-signature"), h("idempotency-key"), body.to_vec()));
                    s.len()
                };
                let status = statuses[(n - 1).min(statuses.len() - 1)];
                (StatusCode::from_u16(status).unwrap(), axum::Json(json!({ "id": format!("ext-{n}") })))
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, seen)
}

#[tokio::test]
async fn reply_is_delivered_to_the_webhook_signed_and_marked_sent() {
    let (url, seen) = webhook(vec![503, 200]).await;
    let app = start(|c| {
        c.api_channel.webhook_url = Some(url);
        c.api_channel.webhook_secret = Some("geheim".into());
        c.jobs.backoff_base_ms = 20;
    })
    .await;
    let a = app.inbound(json!({ "email": "anna@example.de" }), "Bitte antworten", "w-1").await;
    let (s, r) = app
        .call(
            "POST",
            &format!("/api/v1/cases/{}/replies", a["case_id"]),
            Some(json!({ "text": "Gern!", "based_on_event_id": a["event_id"] })),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    let m = app.wait_delivery(&a["case_id"], &r["message_id"], "sent", Duration::from_secs(10)).await;
    assert_eq!(m["provider_message_id"], "ext-2", "first attempt got 503 and was retried");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (sig, key, body) in &seen {
        let now = kontor_store::now_us() / 1_000_000;
        kontor_channels::api::verify(b"geheim", sig, body, now, 300).expect("signature verifies");
        assert_eq!(key, &format!("kontor-message-{}", r["message_id"]));
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["text"], "Gern!");
        assert_eq!(v["to"]["identities"][0]["address"], "anna@example.de");
        assert_eq!(v["created_at"], m["created_at"], "the webhook shows the time as the API does");
    }
    let (_, case) = app.call("GET", &format!("/api/v1/cases/{}", a["case_id"]), None).await;
    assert!(case["first_response_at"].is_string());
    for field in ["created_at", "updated_at", "first_response_at", "last_message_at"] {
        let t = case[field].as_str().unwrap_or_default();
        assert!(is_api_time(t), "{field}: {t:?}");
    }
    assert!(is_api_time(m["created_at"].as_str().unwrap_or_default()), "{m}");
}

/// RFC 3339 in UTC with milliseconds, as the API has always shown times
/// (`2024-05-01T12:30:00.250Z`).
fn is_api_time(t: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    t.len() == shape.len()
        && t.bytes().zip(shape.bytes()).all(|(c, s)| if s == b'd' { c.is_ascii_digit() } else { c == s })
}

#[tokio::test]
async fn permanent_webhook_refusal_fails_the_delivery_at_once() {
    let (url, seen) = webhook(vec![400]).await;
    let app = start(|c| c.api_channel.webhook_url = Some(url)).await;
    let a = app.inbound(json!({ "email": "b@example.de" }), "Frage", "f-1").await;
    let (_, r) = app
        .call(
            "POST",
            &format!("/api/v1/cases/{}/replies", a["case_id"]),
            Some(json!({ "text": "Antwort", "based_on_event_id": a["event_id"] })),
        )
        .await;
    let m = app.wait_delivery(&a["case_id"], &r["message_id"], "failed", Duration::from_secs(10)).await;
    assert!(m["delivery_error"].as_str().unwrap_or_default().contains("400"), "{m}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    let (_, jobs) = app.call("GET", "/api/v1/jobs", None).await;
    assert_eq!(jobs["dead"], 1);
}

#[tokio::test]
async fn stale_reply_is_rejected_with_the_newer_messages_until_forced() {
    let app = start(|_| {}).await;
    let a = app.inbound(json!({ "email": "c@example.de" }), "Erste Frage", "c-1").await;
    let b = app.inbound(json!({ "email": "c@example.de" }), "Hat sich erledigt, danke!", "c-2").await;
    let path = format!("/api/v1/cases/{}/replies", a["case_id"]);
    let (s, v) = app.call("POST", &path, Some(json!({ "text": "Antwort", "based_on_event_id": a["event_id"] }))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("stale")));
    assert_eq!(v["error"]["details"]["newer_messages"][0]["text"], "Hat sich erledigt, danke!");
    assert_eq!(v["error"]["details"]["latest_event_id"], b["event_id"]);
    let (s, _) = app
        .call("POST", &path, Some(json!({ "text": "Antwort", "based_on_event_id": a["event_id"], "force": true })))
        .await;
    assert_eq!(s, 202);
    // A note by a colleague also makes a view stale.
    let (s, note) = app
        .call("POST", &format!("/api/v1/cases/{}/notes", a["case_id"]), Some(json!({ "text": "Kunde angerufen" })))
        .await;
    assert_eq!(s, 201);
    let (s, _) =
        app.call("POST", &path, Some(json!({ "text": "Noch eine", "based_on_event_id": b["event_id"] }))).await;
    assert_eq!(s, 409);
    let (s, _) = app
        .call(
            "POST",
            &path,
            Some(json!({ "text": "Noch eine", "based_on_event_id": note["event_id"], "channel": "sms" })),
        )
        .await;
    assert_eq!(s, 422, "no outbound adapter for sms yet");
}

#[tokio::test]
async fn operations_endpoints_and_openapi_document() {
    let app = start(|_| {}).await;
    app.inbound(json!({ "email": "m@example.de" }), "Zählerstand 12345", "m-1").await;
    let health = app.http.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kontor_ingest_messages_total{channel=\"api\",result=\"created\"} 1"), "{metrics}");
    assert!(metrics.contains("kontor_http_requests_total"));
    assert!(metrics.contains("kontor_events_latest_id"));
    let doc: Value = app.http.get(format!("{}/api/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    for path in ["/api/v1/inbound", "/api/v1/cases/{id}/replies", "/api/v1/events/stream", "/api/v1/search"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from OpenAPI");
    }
    assert!(doc["components"]["schemas"].get("InboundRequest").is_some());
    let (_, by_phone) = app.call("GET", "/api/v1/search?q=0170%201234567", None).await;
    assert!(by_phone["customers"].as_array().is_some_and(|c| c.is_empty()), "no such customer yet");
    app.inbound(json!({ "phone": "+49 170 1234567" }), "Rückruf bitte", "m-2").await;
    let (_, by_phone) = app.call("GET", "/api/v1/search?q=0170%201234567", None).await;
    assert_eq!(
        by_phone["customers"].as_array().map(Vec::len),
        Some(1),
        "a national number finds the E.164 one: {by_phone}"
    );
    let (s, res) = app.call("GET", "/api/v1/search?q=z%C3%A4hlerst", None).await;
    assert_eq!(s, 200);
    assert!(res["messages"][0]["snippet"].as_str().unwrap_or_default().contains("<mark>Zählerstand</mark>"), "{res}");
}
