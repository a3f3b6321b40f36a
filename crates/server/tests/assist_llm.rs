//! Reply drafts through the real server against a local HTTP server that speaks the OpenAI
//! chat completions format: the request Kontor sends, the draft it returns, and clear errors
//! (never with the API key) when drafts are off or the model fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use kontor_testkit::server::{error_message, TestServer};
use serde_json::{json, Value};

const API_KEY: &str = "sk-test-7f3a9c1e5b";
const DRAFT: &str = "Guten Tag Frau Berger,\n\nvielen Dank für Ihre Nachricht. Wir prüfen Ihre Rechnung und melden uns bis [Datum].\n\nViele Grüße\n[Name]";

/// How the fake model answers.
#[derive(Clone, Copy)]
enum Behaviour {
    Draft,
    Fails,
    NotJson,
    NoContent,
    Slow,
}

/// What the fake model received: (path, Authorization header, body).
type Seen = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

/// A local chat completions API on 127.0.0.1:0; returns its base URL (`…/v1`) and what it saw.
async fn fake_model(behaviour: Behaviour) -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn completions(
        State((behaviour, seen)): State<(Behaviour, Seen)>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: String,
    ) -> Response {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        seen.lock().unwrap().push((uri.path().to_string(), auth.clone(), body));
        match behaviour {
            Behaviour::Draft => axum::Json(json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "fake-model-2026",
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": format!("  {DRAFT}\n") },
                              "finish_reason": "stop" }],
                "usage": { "prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140 }
            }))
            .into_response(),
            // Like some providers, the error echoes the key it was given.
            Behaviour::Fails => (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(
                    json!({ "error": { "message": format!("model overloaded (key {})", auth.unwrap_or_default()) } }),
                ),
            )
                .into_response(),
            Behaviour::NotJson => (StatusCode::OK, "<html>gateway says hello</html>").into_response(),
            Behaviour::NoContent => {
                axum::Json(json!({ "choices": [{ "message": { "role": "assistant" } }] })).into_response()
            }
            Behaviour::Slow => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                axum::Json(json!({ "choices": [{ "message": { "content": "too late" } }] })).into_response()
            }
        }
    }
    let app = Router::new().route("/v1/chat/completions", post(completions)).with_state((behaviour, seen.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/v1"), seen)
}

async fn server_with(base_url: Option<String>) -> TestServer {
    TestServer::start(|c| {
        c.jobs.poll_ms = 20;
        c.assist.llm.base_url = base_url;
        c.assist.llm.model = "kontor-drafter".into();
        c.assist.llm.api_key = Some(API_KEY.into());
        c.assist.llm.timeout_secs = Some(1);
    })
    .await
}

/// A case with a customer message, an agent's reply, an internal note and a second customer
/// message; returns its id.
async fn conversation(server: &TestServer) -> i64 {
    let (s, r) = server
        .call(
            "POST",
            "/api/v1/inbound",
            Some(json!({ "from": { "email": "berger@example.de" }, "name": "Anna Berger", "subject": "Rechnung November",
                         "text": "Guten Tag, meine Rechnung für November ist doppelt so hoch wie sonst. Können Sie das prüfen?" })),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let case_id = r["case_id"].as_i64().unwrap();
    let (s, r) = server
        .call("POST", &format!("/api/v1/cases/{case_id}/notes"), Some(json!({ "text": "INTERN: Zählerstand prüfen" })))
        .await;
    assert_eq!(s, 201, "{r}");
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
    let (s, r) = server
        .call(
            "POST",
            &format!("/api/v1/cases/{case_id}/replies"),
            Some(json!({ "text": "Wir schauen uns das an, bitte nennen Sie uns Ihren Zählerstand.",
                         "based_on_event_id": case["last_event_id"] })),
        )
        .await;
    assert_eq!(s, 202, "the reply is queued for delivery: {r}");
    let (s, r) = server
        .call(
            "POST",
            "/api/v1/inbound",
            Some(json!({ "from": { "email": "berger@example.de" }, "subject": "Re: Rechnung November",
                         "text": "Der Zählerstand ist 48213 kWh." })),
        )
        .await;
    assert_eq!((s, r["case_id"].as_i64()), (201, Some(case_id)), "{r}");
    case_id
}

#[tokio::test]
async fn a_draft_comes_from_the_model_with_the_conversation_in_the_prompt() {
    let (base, seen) = fake_model(Behaviour::Draft).await;
    let server = server_with(Some(base)).await;
    let case_id = conversation(&server).await;

    let (s, r) = server.call("POST", &format!("/api/v1/cases/{case_id}/draft"), None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["draft"], DRAFT, "trimmed, otherwise as the model wrote it");
    assert_eq!(r["model"], "kontor-drafter");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (path, auth, body) = &seen[0];
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(auth.as_deref(), Some(format!("Bearer {API_KEY}").as_str()));
    assert_eq!(body["model"], "kontor-drafter");
    assert_eq!(body["temperature"], 0.3);
    let messages = body["messages"].as_array().unwrap();
    assert_eq!((messages[0]["role"].as_str(), messages[1]["role"].as_str()), (Some("system"), Some("user")));
    let system = messages[0]["content"].as_str().unwrap();
    assert!(system.contains("customer-service agent") && system.contains("German"), "{system}");
    let user = messages[1]["content"].as_str().unwrap();
    let first = user.find("doppelt so hoch").expect("the first customer message");
    let reply = user.find("nennen Sie uns Ihren Zählerstand").expect("the agent's reply");
    let last = user.find("48213 kWh").expect("the last customer message");
    assert!(first < reply && reply < last, "oldest first: {user}");
    assert!(user.contains("Customer (inbound)") && user.contains("Agent (outbound)"), "{user}");
    assert!(!user.contains("INTERN"), "internal notes are not sent: {user}");
}

#[tokio::test]
async fn the_prompt_has_the_last_ten_messages_and_the_analysis() {
    let (base, seen) = fake_model(Behaviour::Draft).await;
    let server = server_with(Some(base)).await;
    let mut case_id = 0;
    let mut last_message = 0;
    for i in 1..=12 {
        let (s, r) = server
            .call(
                "POST",
                "/api/v1/inbound",
                Some(json!({ "from": { "email": "long@example.de" }, "subject": "Kündigung",
                             "text": format!("Nachricht Nummer {i:02}: Ich möchte meinen Vertrag zum Monatsende kündigen. {}", "x".repeat(if i == 12 { 9000 } else { 0 })) })),
            )
            .await;
        assert_eq!(s, 201, "{r}");
        case_id = r["case_id"].as_i64().unwrap();
        last_message = r["message_id"].as_i64().unwrap();
    }
    // Wait for the analysis of the last message.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, case) = server.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
        let m = case["messages"].as_array().unwrap().iter().find(|m| m["id"] == last_message).cloned().unwrap();
        if m.get("analysis").is_some_and(|a| !a.is_null()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never analysed: {m}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (s, r) = server.call("POST", &format!("/api/v1/cases/{case_id}/draft"), None).await;
    assert_eq!(s, 200, "{r}");
    let seen = seen.lock().unwrap().clone();
    let user = seen[0].2["messages"][1]["content"].as_str().unwrap().to_string();
    assert!(!user.contains("Nummer 01") && !user.contains("Nummer 02"), "only the newest ten: {user}");
    assert!(user.contains("Nummer 03") && user.contains("Nummer 12"), "{user}");
    assert!(user.contains("intent cancellation"), "the last message's analysis: {user}");
    assert!(user.contains("language de") && user.contains("in German"), "{user}");
    assert!(!user.contains(&"x".repeat(5000)), "a long message is cut");
    assert!(user.contains("[…]"));
}

#[tokio::test]
async fn drafts_are_off_without_a_base_url() {
    let server = server_with(None).await;
    let case_id = conversation(&server).await;
    let (s, r) = server.call("POST", &format!("/api/v1/cases/{case_id}/draft"), None).await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(error_message(&r), "reply drafts are off (assist.llm.base_url is not set)");
}

#[tokio::test]
async fn model_failures_are_clear_errors_without_the_key() {
    for (behaviour, expect) in [
        (Behaviour::Fails, "HTTP 500"),
        (Behaviour::NotJson, "not JSON"),
        (Behaviour::NoContent, "choices[0].message.content"),
        (Behaviour::Slow, "did not answer within 1 s"),
    ] {
        let (base, seen) = fake_model(behaviour).await;
        let server = server_with(Some(base)).await;
        let case_id = conversation(&server).await;
        let started = std::time::Instant::now();
        let (s, r) = server.call("POST", &format!("/api/v1/cases/{case_id}/draft"), None).await;
        assert_eq!(s, 503, "{expect}: {r}");
        let message = error_message(&r);
        assert!(message.contains(expect), "{expect}: {message}");
        assert!(!r.to_string().contains(API_KEY), "the key never shows: {r}");
        assert!(started.elapsed() < Duration::from_secs(5), "bounded by the timeout");
        assert_eq!(seen.lock().unwrap().len(), 1);
        if let Behaviour::Fails = behaviour {
            assert!(message.contains("model overloaded"), "a cut of the body: {message}");
        }
    }
}

#[tokio::test]
async fn an_unreachable_model_is_a_clear_error() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let server = server_with(Some(base)).await;
    let case_id = conversation(&server).await;
    let (s, r) = server.call("POST", &format!("/api/v1/cases/{case_id}/draft"), None).await;
    assert_eq!(s, 503, "{r}");
    assert!(error_message(&r).contains("cannot reach the language model"), "{r}");
}

#[tokio::test]
async fn ingest_tokens_and_unknown_cases_are_refused() {
    let (base, seen) = fake_model(Behaviour::Draft).await;
    let server = server_with(Some(base)).await;
    let case_id = conversation(&server).await;
    let ingest = server.token("feeder", kontor_core::Role::Ingest).await;
    let (s, r) = server.call_as(&ingest, "POST", &format!("/api/v1/cases/{case_id}/draft"), None).await;
    assert_eq!(s, 403, "an ingest token may only post inbound messages: {r}");
    for id in ["999999", "0", "abc"] {
        let (s, r) = server.call("POST", &format!("/api/v1/cases/{id}/draft"), None).await;
        assert_eq!(s, 404, "{id}: {r}");
    }
    assert!(seen.lock().unwrap().is_empty(), "the model was never asked");
}
