//! The digital assistant through the real server: every inbound message is analysed by the
//! analysis job after ingest (`messages[].analysis`, `message.analysed`, the case's intent),
//! a backlog drains and shows in `/metrics`, and any text can be analysed and style-checked.

use std::time::{Duration, Instant};

use kontor_testkit::server::{error_field, TestServer};
use serde_json::{json, Value};

const IBAN_TEXT: &str = "Guten Tag, ich habe mein Girokonto gewechselt. Bitte buchen Sie die Abschläge künftig von \
                         meiner neuen IBAN DE02 1203 0000 0000 2020 51 ab. Freundliche Grüße, Jonas Albrecht";

async fn start() -> TestServer {
    TestServer::start(|c| {
        c.jobs.poll_ms = 20;
    })
    .await
}

async fn inbound(server: &TestServer, from: &str, subject: &str, text: &str) -> (i64, i64) {
    let (s, r) = server
        .call("POST", "/api/v1/inbound", Some(json!({ "from": { "email": from }, "subject": subject, "text": text })))
        .await;
    assert_eq!(s, 201, "{r}");
    (r["case_id"].as_i64().unwrap(), r["message_id"].as_i64().unwrap())
}

/// The message once its analysis is there (waits for that state, up to `limit`).
async fn analysed(server: &TestServer, case_id: i64, message_id: i64, limit: Duration) -> (Value, Value) {
    let deadline = Instant::now() + limit;
    loop {
        let (_, case) = server.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
        if let Some(m) = case["messages"].as_array().and_then(|ms| ms.iter().find(|m| m["id"] == message_id)) {
            if m.get("analysis").is_some_and(|a| !a.is_null()) {
                return (case.clone(), m.clone());
            }
        }
        assert!(Instant::now() < deadline, "message {message_id} was never analysed: {case}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn an_inbound_message_is_analysed_after_ingest_and_sets_the_case_intent() {
    let server = start().await;
    let (case_id, message_id) = inbound(&server, "jonas@example.de", "Neue Bankverbindung", IBAN_TEXT).await;
    let (case, m) = analysed(&server, case_id, message_id, Duration::from_secs(20)).await;
    let a = &m["analysis"];
    assert_eq!(a["language"], "de", "{a}");
    assert_eq!(a["intent"], "bank_details_change", "{a}");
    assert_eq!(a["intent_source"], "model");
    let confidence = a["intent_confidence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&confidence), "{a}");
    assert_eq!(a["intents"].as_array().unwrap().len(), 3);
    let iban = a["entities"].as_array().unwrap().iter().find(|e| e["kind"] == "iban").expect("an IBAN entity");
    assert_eq!(iban["value"], "DE02120300000000202051");
    let chars: Vec<char> = IBAN_TEXT.chars().collect();
    let (start, end) = (iban["start"].as_u64().unwrap() as usize, iban["end"].as_u64().unwrap() as usize);
    assert_eq!(chars[start..end].iter().collect::<String>(), iban["text"].as_str().unwrap());
    assert!(["negative", "neutral", "positive"].contains(&a["sentiment"].as_str().unwrap()));
    assert_eq!(case["intent"], "bank_details_change");
    assert_eq!(case["intent_source"], "model");

    // Announced as an event that names the message and carries no personal data.
    let (_, events) = server.call("GET", "/api/v1/events?limit=100", None).await;
    let announced: Vec<&Value> =
        events["items"].as_array().unwrap().iter().filter(|e| e["type"] == "message.analysed").collect();
    assert_eq!(announced.len(), 1, "{events}");
    assert_eq!(announced[0]["payload"]["message_id"], message_id);
    assert_eq!(announced[0]["payload"]["intent"], "bank_details_change");
    assert!(!announced[0]["payload"].to_string().contains("DE02"), "no IBAN in the event");

    // A second message in the same case is analysed too, but the case keeps its first intent.
    let (s, r) = server
        .call(
            "POST",
            "/api/v1/inbound",
            Some(json!({ "from": { "email": "jonas@example.de" }, "subject": "Re: Neue Bankverbindung",
                         "text": "Ich möchte meinen Vertrag zum Jahresende kündigen." })),
        )
        .await;
    assert_eq!((s, r["case_id"].as_i64()), (201, Some(case_id)), "{r}");
    let (case, m) = analysed(&server, case_id, r["message_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(m["analysis"]["intent"], "cancellation", "{m}");
    assert_eq!(case["intent"], "bank_details_change");
}

#[tokio::test]
async fn a_backlog_is_analysed_in_order_and_shown_in_metrics_until_it_drains() {
    // Analysis off while the messages arrive: they wait (and /metrics says how many).
    let server = TestServer::start(|c| {
        c.jobs.poll_ms = 20;
        c.assist.analyse = false;
        c.assist.batch = 7;
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(inbound(&server, &format!("c{i}@example.org"), "Rechnung", "Warum ist meine Rechnung so hoch?").await);
    }
    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "kontor_assist_backlog 30"), "{metrics}");
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{}", ids[0].0), None).await;
    assert!(case["messages"][0].get("analysis").is_none(), "nothing analysed while analysis is off");

    // A node with analysis on takes the whole backlog, batch after batch.
    let node = server
        .start_node(|state| {
            let mut config = (*state.config).clone();
            config.assist.analyse = true;
            state.config = std::sync::Arc::new(config);
        })
        .await;
    for (case_id, message_id) in &ids {
        let (_, m) = analysed(&server, *case_id, *message_id, Duration::from_secs(30)).await;
        assert_eq!(m["analysis"]["intent"], "invoice_question", "{m}");
    }
    let metrics = server.http.get(format!("{node}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "kontor_assist_backlog 0"), "{metrics}");
    let (_, events) = server.call("GET", "/api/v1/events?limit=200", None).await;
    let announced: Vec<i64> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "message.analysed")
        .map(|e| e["payload"]["message_id"].as_i64().unwrap())
        .collect();
    let mut want: Vec<i64> = ids.iter().map(|(_, m)| *m).collect();
    want.sort();
    assert_eq!(announced, want, "each message analysed once, oldest first");
}

#[tokio::test]
async fn any_text_can_be_analysed_and_bad_requests_are_refused() {
    let server = start().await;
    let (s, a) = server.call("POST", "/api/v1/assist/analyze", Some(json!({ "text": IBAN_TEXT }))).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!((a["language"].as_str(), a["intent"].as_str()), (Some("de"), Some("bank_details_change")), "{a}");
    assert!(a["entities"].as_array().unwrap().iter().any(|e| e["kind"] == "iban"));

    let (s, a) = server
        .call(
            "POST",
            "/api/v1/assist/analyze",
            Some(json!({ "text": "I can't log in to the portal, password reset fails." })),
        )
        .await;
    assert_eq!((s, a["language"].as_str(), a["intent"].as_str()), (200, Some("en"), Some("login_help")), "{a}");

    for (body, field) in [
        (json!({ "text": "   " }), "text"),
        (json!({ "text": "x".repeat(100_001) }), "text"),
        (json!({ "text": "hi", "subject": "s".repeat(1001) }), "subject"),
    ] {
        let (s, r) = server.call("POST", "/api/v1/assist/analyze", Some(body)).await;
        assert_eq!((s, error_field(&r)), (422, field), "{r}");
    }
    let (s, _) = server.call("POST", "/api/v1/assist/analyze", Some(json!({ "texts": "hi" }))).await;
    assert_eq!(s, 422, "unknown fields are refused");
    let ingest = server.token("feeder", kontor_core::Role::Ingest).await;
    let (s, _) = server.call_as(&ingest, "POST", "/api/v1/assist/analyze", Some(json!({ "text": "hi" }))).await;
    assert_eq!(s, 403, "an ingest token may only post inbound messages");
}

#[tokio::test]
async fn the_style_check_finds_outdated_phrases_with_spans_and_suggestions() {
    let server = start().await;
    let letter = "Sehr geehrter Herr Albrecht,\n\nIhre neue Bankverbindung ist hinterlegt.\n\nMit vorzüglicher Hochachtung\nIhr Kundenservice";
    let (s, r) = server.call("POST", "/api/v1/assist/style", Some(json!({ "text": letter, "language": "de" }))).await;
    assert_eq!(s, 200, "{r}");
    let f = r["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "phrase").expect("a phrase finding");
    let chars: Vec<char> = letter.chars().collect();
    let span: String =
        chars[f["start"].as_u64().unwrap() as usize..f["end"].as_u64().unwrap() as usize].iter().collect();
    assert_eq!(span.to_lowercase(), "mit vorzüglicher hochachtung");
    assert!(!f["suggestion"].as_str().unwrap().is_empty());

    // English is detected when no language is given; a clean text has no findings.
    let (s, r) = server
        .call(
            "POST",
            "/api/v1/assist/style",
            Some(json!({ "text": "Please find enclosed herewith the documents you requested." })),
        )
        .await;
    assert_eq!((s, r["language"].as_str()), (200, Some("en")), "{r}");
    assert!(!r["findings"].as_array().unwrap().is_empty(), "{r}");
    let (_, r) =
        server.call("POST", "/api/v1/assist/style", Some(json!({ "text": "Danke, wir kümmern uns darum." }))).await;
    assert_eq!(r["findings"], json!([]));
    let (s, r) = server.call("POST", "/api/v1/assist/style", Some(json!({ "text": "x", "language": "fr" }))).await;
    assert_eq!((s, error_field(&r)), (422, "language"), "{r}");
}
