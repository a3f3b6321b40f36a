//! Operations hardening over the real router on an ephemeral port and a real SQLite store:
//! job leases outliving slow handlers, readiness that follows the writer, the bounded write
//! queue, list limits, search snippets, and what is kept of a webhook's answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kontor_core::Role;
use kontor_server::Config;
use kontor_store::{Backend, Conn};
use kontor_testkit::server::{TestServer, PASSWORD};
use serde_json::{json, Value};

/// A server polling for jobs every 50 ms, with the agent ben.
async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let app = TestServer::start(|cfg| {
        cfg.jobs.poll_ms = 50;
        tweak(cfg);
    })
    .await;
    app.staff("ben@example.de", "Ben Berger", Role::Agent).await;
    app
}

async fn inbound(app: &TestServer, email: &str, text: &str, pmid: &str) -> Value {
    let body = json!({ "from": { "email": email }, "text": text, "provider_message_id": pmid });
    let (s, v) = app.call("POST", "/api/v1/inbound", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v
}

/// Queues a reply on the case of an inbound message; returns the reply's message id.
async fn reply(app: &TestServer, received: &Value, text: &str) -> Value {
    let (s, r) = app
        .call(
            "POST",
            &format!("/api/v1/cases/{}/replies", received["case_id"]),
            Some(json!({ "text": text, "based_on_event_id": received["event_id"] })),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    r["message_id"].clone()
}

/// The status of `/readyz` (0 if the request failed).
async fn readyz(app: &TestServer) -> u16 {
    match app.http.get(app.url("/readyz")).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Polls `/readyz` until it answers `want`.
async fn wait_ready(app: &TestServer, want: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = readyz(app).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz answered {got}, never {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Signs in through the login form; returns the session cookie.
async fn sign_in(app: &TestServer, email: &str) -> String {
    let (session, _) = app.sign_in(email, PASSWORD).await.unwrap_or_else(|status| panic!("sign-in: {status}"));
    session
}

/// One request the test webhook received.
#[derive(Clone, Debug)]
struct Hit {
    idempotency_key: String,
    /// Still waiting to be answered (the sender has not hung up).
    open: bool,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// Marks its request as no longer open when the handler ends or is dropped (the sender hung up).
struct Closed(Hits, usize);
impl Drop for Closed {
    fn drop(&mut self) {
        if let Some(h) = self.0.lock().unwrap().get_mut(self.1) {
            h.open = false;
        }
    }
}

/// A webhook that answers 200 with `answer` after `delay`, recording every request.
async fn slow_webhook(delay: Duration, answer: impl Fn() -> String + Send + Sync + 'static) -> (String, Hits) {
    use axum::http::HeaderMap;
    let hits: Hits = Arc::default();
    let h2 = hits.clone();
    let answer = Arc::new(answer);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let hits = h2.clone();
            let answer = answer.clone();
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let n = {
                    let mut h = hits.lock().unwrap();
                    h.push(Hit { idempotency_key: key, open: true });
                    h.len() - 1
                };
                let _closed = Closed(hits.clone(), n);
                tokio::time::sleep(delay).await;
                ([("content-type", "application/json")], answer())
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, hits)
}

#[tokio::test]
async fn a_delivery_slower_than_the_job_lease_is_posted_once() {
    // A webhook that answers after three leases. (`Config::load` refuses a timeout that is
    // not well below the lease; this test builds the configuration directly to show that the
    // lease is renewed while the handler runs.)
    let (url, hits) = slow_webhook(Duration::from_secs(6), || r#"{"id": "ext-slow"}"#.into()).await;
    let app = start(|c| {
        c.jobs.lease_secs = 2;
        c.api_channel.timeout_secs = 20;
        c.api_channel.webhook_url = Some(url);
    })
    .await;
    let a = inbound(&app, "langsam@example.de", "Bitte antworten", "slow-1").await;
    let message_id = reply(&app, &a, "Gern, bald.").await;
    let m = app.wait_delivery(&a["case_id"], &message_id, "sent", Duration::from_secs(40)).await;
    assert_eq!(m["provider_message_id"], "ext-slow");
    let key = format!("kontor-message-{message_id}");
    let got: Vec<Hit> = hits.lock().unwrap().iter().filter(|h| h.idempotency_key == key).cloned().collect();
    assert_eq!(got.len(), 1, "the webhook got the reply {} times: {got:?}", got.len());
}

#[tokio::test]
async fn a_handler_whose_lease_was_taken_over_is_stopped() {
    // The webhook keeps the request open far longer than the test runs.
    let (url, hits) = slow_webhook(Duration::from_secs(60), || "{}".into()).await;
    let app = start(|c| {
        c.jobs.lease_secs = 3;
        c.api_channel.timeout_secs = 120;
        c.api_channel.webhook_url = Some(url);
    })
    .await;
    let a = inbound(&app, "uebernahme@example.de", "Hallo", "steal-1").await;
    reply(&app, &a, "Antwort").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while hits.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the webhook never got the delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another node takes the job over (as after an expired lease).
    let mut conn = Conn::open(Backend::Sqlite, &app.database_url()).unwrap();
    let n = conn
        .execute("UPDATE jobs SET locked_by = 'another-node', attempts = attempts + 1 WHERE status = 'running' AND kind = 'deliver_message'", &[])
        .unwrap();
    assert_eq!(n, 1);
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(10);
    while hits.lock().unwrap()[0].open {
        assert!(Instant::now() < deadline, "the handler still runs although its lease is gone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, metrics) = app.call("GET", "/metrics", None).await;
    let text = metrics.as_str().unwrap_or_default().to_string();
    assert!(text.contains(r#"kontor_jobs_total{kind="deliver_message",outcome="lost"} 1"#), "{text}");
    assert_eq!(hits.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn readyz_is_unavailable_while_the_database_write_lock_is_held() {
    let app = start(|_| {}).await;
    wait_ready(&app, 200, Duration::from_secs(10)).await;
    // Another process holds SQLite's write lock: reads still work, writes cannot commit.
    let mut holder = Conn::open(Backend::Sqlite, &app.database_url()).unwrap();
    holder.batch("BEGIN IMMEDIATE").unwrap();
    wait_ready(&app, 503, Duration::from_secs(20)).await;
    let r = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().get("retry-after").is_some());
    holder.batch("ROLLBACK").unwrap();
    wait_ready(&app, 200, Duration::from_secs(30)).await;
    drop(holder);
}

#[tokio::test]
async fn a_full_write_queue_answers_503_with_retry_after_and_loses_nothing_accepted() {
    let app = Arc::new(start(|c| c.write_queue_capacity = 2).await);
    inbound(&app, "vorher@example.de", "warm", "q-0").await;
    let mut holder = Conn::open(Backend::Sqlite, &app.database_url()).unwrap();
    holder.batch("BEGIN IMMEDIATE").unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let mut posts = Vec::new();
    for i in 0..20 {
        let (app, refused) = (app.clone(), refused.clone());
        posts.push(tokio::spawn(async move {
            let pmid = format!("q-{}", i + 1);
            let body = json!({ "from": { "email": format!("k{i}@example.de") }, "text": format!("Nachricht {i}"), "provider_message_id": pmid });
            let r = app
                .http
                .post(format!("{}/api/v1/inbound", app.base))
                .bearer_auth(&app.token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry_after = r.headers().get("retry-after").is_some();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if status == 503 && v["error"]["message"].as_str().unwrap_or_default().contains("write queue full") {
                refused.fetch_add(1, Ordering::SeqCst);
            }
            (status, retry_after, v)
        }));
    }
    // Release the lock once the queue has refused some (well before SQLite's busy timeout).
    let deadline = Instant::now() + Duration::from_secs(8);
    while refused.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no write was refused although the queue holds 2");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holder.batch("ROLLBACK").unwrap();
    drop(holder);
    let mut accepted = Vec::new();
    for p in posts {
        let (status, retry_after, v) = p.await.unwrap();
        match status {
            201 => accepted.push(v),
            503 => assert!(retry_after, "a 503 without Retry-After: {v}"),
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!(refused.load(Ordering::SeqCst) > 0);
    assert!(!accepted.is_empty(), "the queued writes were committed after the lock was released");
    for r in &accepted {
        let (s, case) = app.call("GET", &format!("/api/v1/cases/{}", r["case_id"]), None).await;
        assert_eq!(s, 200, "{case}");
        assert!(case["messages"].as_array().unwrap().iter().any(|m| m["id"] == r["message_id"]), "lost: {r}");
    }
}

#[tokio::test]
async fn out_of_range_list_limits_answer_422_and_the_document_states_the_range() {
    let app = start(|_| {}).await;
    inbound(&app, "grenze@example.de", "Umzug", "lim-1").await;
    for (path, max) in [
        ("/api/v1/search?q=umzug&", 100i64),
        ("/api/v1/cases?", 200),
        ("/api/v1/customers?", 200),
        ("/api/v1/events?", 1000),
    ] {
        for bad in ["0".to_string(), "-1".into(), (max + 1).to_string(), i64::MAX.to_string(), i64::MIN.to_string()] {
            let (s, v) = app.call("GET", &format!("{path}limit={bad}"), None).await;
            assert_eq!((s, v["error"]["details"]["field"].as_str()), (422, Some("limit")), "{path}limit={bad}: {v}");
        }
        for good in ["1".to_string(), max.to_string()] {
            let (s, v) = app.call("GET", &format!("{path}limit={good}"), None).await;
            assert_eq!(s, 200, "{path}limit={good}: {v}");
        }
    }
    // A staff session whose search is widened for hidden hits (limit × 4) gets 422 as well.
    let agent = sign_in(&app, "ben@example.de").await;
    let (s, body) = app.page(&agent, "/api/v1/search?q=umzug&limit=9223372036854775807").await;
    assert_eq!(s, 422, "{body}");
    let (s, _) = app.page(&agent, "/api/v1/search?q=umzug&limit=100").await;
    assert_eq!(s, 200);

    let (_, doc) = app.call("GET", "/api/openapi.json", None).await;
    for (path, max) in
        [("/api/v1/search", 100), ("/api/v1/cases", 200), ("/api/v1/customers", 200), ("/api/v1/events", 1000)]
    {
        let params = doc["paths"][path]["get"]["parameters"].as_array().cloned().unwrap_or_default();
        let limit = params.iter().find(|p| p["name"] == "limit").unwrap_or_else(|| panic!("{path}: no limit"));
        assert_eq!(
            (limit["schema"]["minimum"].as_f64(), limit["schema"]["maximum"].as_f64()),
            (Some(1.0), Some(max as f64)),
            "{path}: {limit}"
        );
    }
}

/// Every `<` in `html` opens or closes a `<mark>`, and they are balanced and not nested.
fn marks_are_balanced(html: &str) -> bool {
    let mut open = false;
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("<mark>") {
            if open {
                return false;
            }
            open = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("</mark>") {
            if !open {
                return false;
            }
            open = false;
            rest = r;
        } else {
            return false;
        }
    }
    !open && !html.chars().any(|c| c.is_control() && c != '\n')
}

#[tokio::test]
async fn snippet_markup_is_only_kontors_even_when_the_text_holds_marker_characters() {
    let app = start(|_| {}).await;
    let text = "Zum \u{3}Umzug\u{2} am \u{2}Montag: </mark> \u{3}\u{3} <b>fett</b> \u{e}x\u{f}";
    let body = json!({ "from": { "email": "marker@example.de" }, "name": "Mara \u{3}Marker\u{2}", "text": text, "provider_message_id": "mk-1" });
    let (s, v) = app.call("POST", "/api/v1/inbound", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    for q in ["umzug", "montag", "mara", "marker"] {
        let (s, r) = app.call("GET", &format!("/api/v1/search?q={q}"), None).await;
        assert_eq!(s, 200, "{r}");
        let snippets: Vec<String> = r["messages"]
            .as_array()
            .into_iter()
            .chain(r["customers"].as_array())
            .flatten()
            .map(|h| h["snippet"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(!snippets.is_empty(), "{q}: no hits: {r}");
        for snippet in &snippets {
            assert!(marks_are_balanced(snippet), "{q}: {snippet:?}");
            assert!(snippet.contains("<mark>"), "{q}: {snippet:?}");
        }
    }
    let (_, r) = app.call("GET", "/api/v1/search?q=montag", None).await;
    let snippet = r["messages"][0]["snippet"].as_str().unwrap_or_default();
    assert!(snippet.contains("<mark>Montag</mark>") && snippet.contains("&lt;/mark&gt;"), "{snippet:?}");

    // The inbox page shows the same snippets.
    let session = sign_in(&app, "ben@example.de").await;
    let (s, html) = app.page(&session, "/inbox?q=montag").await;
    assert_eq!(s, 200);
    let spans: Vec<&str> =
        html.split("<span class=\"snippet\">").skip(1).filter_map(|s| s.split("</span>").next()).collect();
    assert!(!spans.is_empty(), "no snippet on the page");
    for span in spans {
        assert!(marks_are_balanced(span), "{span:?}");
    }
}

#[tokio::test]
async fn a_huge_webhook_answer_is_not_stored_as_the_provider_message_id() {
    let huge = Arc::new(format!("{{\"id\": \"{}\"}}", "x".repeat(5 * 1024 * 1024)));
    let h = huge.clone();
    let (url, _hits) = slow_webhook(Duration::ZERO, move || h.as_str().to_string()).await;
    let app = start(|c| c.api_channel.webhook_url = Some(url)).await;
    let a = inbound(&app, "gross@example.de", "Bitte antworten", "big-1").await;
    let message_id = reply(&app, &a, "Antwort").await;
    let m = app.wait_delivery(&a["case_id"], &message_id, "sent", Duration::from_secs(20)).await;
    let kept = m["provider_message_id"].as_str().map_or(0, str::len);
    assert_eq!(kept, 0, "a provider id of {kept} bytes was kept");
    assert!(m["provider_message_id"].is_null());

    // A short id in a normal answer is kept; a long one is not.
    for (id, kept) in [("ext-4711".to_string(), true), ("y".repeat(257), false)] {
        let body = format!("{{\"id\": \"{id}\"}}");
        let (url, _hits) = slow_webhook(Duration::ZERO, move || body.clone()).await;
        let app = start(|c| c.api_channel.webhook_url = Some(url)).await;
        let a = inbound(&app, "kurz@example.de", "Bitte antworten", "id-1").await;
        let message_id = reply(&app, &a, "Antwort").await;
        let m = app.wait_delivery(&a["case_id"], &message_id, "sent", Duration::from_secs(20)).await;
        let want = if kept { Value::String(id.clone()) } else { Value::Null };
        assert_eq!(m["provider_message_id"], want, "{} chars", id.len());
    }
}
