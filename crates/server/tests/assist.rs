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
    let (_, jobs) = server.call("GET", "/api/v1/jobs", None).await;
    assert_eq!(jobs["done"], 0, "finished analysis jobs leave no rows: {jobs}");
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

/// Records what it sends on the API channel.
#[derive(Default)]
struct Recorder {
    sent: std::sync::Mutex<Vec<kontor_channel::OutboundMessage>>,
}

#[async_trait::async_trait]
impl kontor_channel::Outbound for Recorder {
    fn channel(&self) -> kontor_core::Channel {
        kontor_core::Channel::Api
    }

    async fn send(
        &self,
        message: &kontor_channel::OutboundMessage,
    ) -> Result<kontor_channel::SendReceipt, kontor_channel::SendError> {
        self.sent.lock().unwrap().push(message.clone());
        Ok(kontor_channel::SendReceipt { provider_message_id: Some(format!("rec-{}", message.message_id)) })
    }
}

async fn start_recording() -> (TestServer, std::sync::Arc<Recorder>) {
    let recorder = std::sync::Arc::new(Recorder::default());
    let fake = recorder.clone();
    let server = TestServer::start_with(
        |c| {
            c.jobs.poll_ms = 20;
            c.assist.auto_answer_min_confidence = 0.0;
        },
        move |state| {
            let mut channels = kontor_channels::registry(&state.config.channels()).unwrap();
            channels.add_outbound(fake);
            state.channels = std::sync::Arc::new(channels);
        },
    )
    .await;
    (server, recorder)
}

async fn canned(server: &TestServer, body: &str) -> i64 {
    let (s, r) = server
        .call("POST", "/api/v1/canned", Some(json!({ "title": "Zählerstand", "body": body, "language": "de" })))
        .await;
    assert_eq!(s, 201, "{r}");
    r["id"].as_i64().unwrap()
}

#[tokio::test]
async fn intents_have_automation_levels_that_only_admins_change() {
    let server = start().await;
    let (s, r) = server.call("GET", "/api/v1/assist/intents", None).await;
    assert_eq!(s, 200, "{r}");
    let intents = r["intents"].as_array().unwrap();
    assert_eq!(intents.len(), 13, "{r}");
    assert!(intents.iter().all(|i| i["level"] == "off"));
    let id = canned(&server, "Danke für Ihren Zählerstand, wir haben ihn übernommen.").await;
    let body = json!({ "intents": [{ "intent": "meter_reading", "level": "auto", "canned_id": id }] });
    let agent = server.token("agent", kontor_core::Role::Agent).await;
    let (s, _) = server.call_as(&agent, "PUT", "/api/v1/assist/intents", Some(body.clone())).await;
    assert_eq!(s, 403);
    let (s, r) = server.call("PUT", "/api/v1/assist/intents", Some(body)).await;
    assert_eq!(s, 200, "{r}");
    let m = r["intents"].as_array().unwrap().iter().find(|i| i["intent"] == "meter_reading").unwrap().clone();
    assert_eq!((m["level"].as_str(), m["canned_id"].as_i64()), (Some("auto"), Some(id)));
    for (bad, field) in [
        (json!({ "intent": "weather", "level": "auto", "canned_id": id }), "intent"),
        (json!({ "intent": "praise", "level": "always", "canned_id": id }), "level"),
        (json!({ "intent": "praise", "level": "suggest", "canned_id": null }), "canned_id"),
        (json!({ "intent": "praise", "level": "auto", "canned_id": 99999 }), "canned_id"),
    ] {
        let (s, r) = server.call("PUT", "/api/v1/assist/intents", Some(json!({ "intents": [bad] }))).await;
        assert_eq!((s, error_field(&r)), (422, field), "{r}");
    }
}

#[tokio::test]
async fn an_auto_intent_is_answered_once_per_customer_never_to_a_machine_and_says_how_to_reach_a_person() {
    let (server, recorder) = start_recording().await;
    let id = canned(&server, "Vielen Dank, wir haben Ihren Zählerstand übernommen.").await;
    let (s, r) = server
        .call(
            "PUT",
            "/api/v1/assist/intents",
            Some(json!({ "intents": [{ "intent": "meter_reading", "level": "auto", "canned_id": id }] })),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let reading = "Hallo, mein Zählerstand für den Stromzähler beträgt heute 12345 kWh. Zählernummer 1ESY1160";
    let (case_id, message_id) = inbound(&server, "erika@example.de", "Zählerstand", reading).await;
    let (case, m) = analysed(&server, case_id, message_id, Duration::from_secs(20)).await;
    assert_eq!(m["analysis"]["intent"], "meter_reading", "{m}");
    let answer =
        case["messages"].as_array().unwrap().iter().find(|m| m["direction"] == "out").expect("an answer").clone();
    assert_eq!(answer["automatic"], true, "{answer}");
    let text = answer["text"].as_str().unwrap();
    assert!(text.starts_with("Vielen Dank, wir haben Ihren Zählerstand übernommen."), "{text}");
    assert!(text.contains("mit einem Menschen sprechen"), "it says how to reach a person: {text}");
    assert_eq!(case["status"], "open", "the case stays open for a human");
    server.wait_delivery(&json!(case_id), &answer["id"], "sent", Duration::from_secs(20)).await;
    assert!(recorder.sent.lock().unwrap().iter().all(|s| s.automatic), "sent as automatic");

    // The same customer again within the quiet period: analysed, not answered again.
    let (s, r) = server
        .call("POST", "/api/v1/inbound", Some(json!({ "from": { "email": "erika@example.de" }, "text": reading })))
        .await;
    assert_eq!(s, 201, "{r}");
    let (case, _) = analysed(&server, case_id, r["message_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
    let answers = case["messages"].as_array().unwrap().iter().filter(|m| m["direction"] == "out").count();
    assert_eq!(answers, 1, "one automatic answer per customer within the quiet period");

    // An auto-submitted mail (an out-of-office) is never answered automatically.
    let (s, r) = server
        .call(
            "POST",
            "/api/v1/inbound",
            Some(json!({ "from": { "email": "robot@example.de" }, "subject": "Zählerstand", "text": reading,
                         "auto_submitted": true })),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let (robot_case, robot_message) = (r["case_id"].as_i64().unwrap(), r["message_id"].as_i64().unwrap());
    let (case, _) = analysed(&server, robot_case, robot_message, Duration::from_secs(20)).await;
    assert!(case["messages"].as_array().unwrap().iter().all(|m| m["direction"] == "in"), "{case}");
    assert_eq!(recorder.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_agents_intent_correction_trains_a_model_that_is_then_used() {
    let server = start().await;
    let odd = "Zorblax Quuxifikation Frobnitzmeister Blubbergrütze";
    let (s, before) = server.call("POST", "/api/v1/assist/analyze", Some(json!({ "text": odd }))).await;
    assert_eq!(s, 200);
    let target = if before["intent"] == "appointment" { "praise" } else { "appointment" };
    let mut first_case = None;
    for i in 0..3 {
        let (case_id, message_id) = inbound(&server, &format!("odd{i}@example.de"), "", odd).await;
        analysed(&server, case_id, message_id, Duration::from_secs(20)).await;
        let (s, a) = server
            .call("PATCH", &format!("/api/v1/messages/{message_id}/analysis"), Some(json!({ "intent": target })))
            .await;
        assert_eq!(s, 200, "{a}");
        assert_eq!((a["intent"].as_str(), a["intent_source"].as_str()), (Some(target), Some("agent")));
        first_case.get_or_insert(case_id);
    }
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{}", first_case.unwrap()), None).await;
    assert_eq!((case["intent"].as_str(), case["intent_source"].as_str()), (Some(target), Some("agent")), "{case}");
    assert_eq!(case["messages"][0]["analysis"]["intent_source"], "agent");

    // The retraining job stores a model; the assistant uses it from its next look.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, a) = server.call("POST", "/api/v1/assist/analyze", Some(json!({ "text": odd }))).await;
        if a["intent"] == target {
            break;
        }
        assert!(Instant::now() < deadline, "the corrected intent was never learned: {a}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.store.latest_model_id().await.unwrap() > 0);

    // Bad corrections are refused with the reason.
    let (_, r) = server.call("GET", "/api/v1/cases", None).await;
    let any_case = r["items"][0]["id"].as_i64().unwrap();
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{any_case}"), None).await;
    let mid = case["messages"][0]["id"].as_i64().unwrap();
    let (s, r) =
        server.call("PATCH", &format!("/api/v1/messages/{mid}/analysis"), Some(json!({ "intent": "weather" }))).await;
    assert_eq!((s, error_field(&r)), (422, "intent"), "{r}");
    let (s, _) = server.call("PATCH", "/api/v1/messages/999999/analysis", Some(json!({ "intent": "praise" }))).await;
    assert_eq!(s, 404);
    let (s, note) =
        server.call("POST", &format!("/api/v1/cases/{any_case}/notes"), Some(json!({ "text": "intern" }))).await;
    assert_eq!(s, 201, "{note}");
    let (s, r) = server
        .call(
            "PATCH",
            &format!("/api/v1/messages/{}/analysis", note["message_id"]),
            Some(json!({ "intent": "praise" })),
        )
        .await;
    assert_eq!((s, error_field(&r)), (422, "message"), "{r}");
}

#[tokio::test]
async fn rules_act_on_matching_messages_in_order_and_name_themselves_in_the_case_history() {
    let server = start().await;
    let (s, team) = server.call("POST", "/api/v1/teams", Some(json!({ "name": "Beschwerden" }))).await;
    assert_eq!(s, 201, "{team}");
    let rule = json!({
        "name": "Anwalt droht",
        "conditions": { "keywords": ["anwalt"], "channels": ["api"] },
        "actions": [ { "type": "set_priority", "priority": "urgent" }, { "type": "add_tag", "tag": "rechtlich" },
                     { "type": "set_team", "team_id": team["id"] } ]
    });
    let (s, created) = server.call("POST", "/api/v1/rules", Some(rule)).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!((created["enabled"].as_bool(), created["position"].as_i64()), (Some(true), Some(1)));
    let (s, _) = server
        .call(
            "POST",
            "/api/v1/rules",
            Some(json!({ "name": "aus", "enabled": false, "actions": [{ "type": "mark_spam" }] })),
        )
        .await;
    assert_eq!(s, 201);

    let (case_id, message_id) =
        inbound(&server, "wut@example.de", "Beschwerde", "Das ist unerhört, ich schalte meinen Anwalt ein!").await;
    let (case, _) = analysed(&server, case_id, message_id, Duration::from_secs(20)).await;
    assert_eq!(case["priority"], "urgent", "{case}");
    assert_eq!(case["tags"], json!(["rechtlich"]));
    assert_eq!(case["team_id"], team["id"]);
    assert_eq!(case["status"], "open", "the disabled spam rule did nothing");
    let (_, events) = server.call("GET", &format!("/api/v1/events?case_id={case_id}&limit=100"), None).await;
    let by_rule: Vec<&Value> =
        events["items"].as_array().unwrap().iter().filter(|e| e["payload"]["rule"]["name"] == "Anwalt droht").collect();
    assert_eq!(by_rule.len(), 1, "{events}");
    assert_eq!(by_rule[0]["type"], "case.updated");
    assert_eq!(by_rule[0]["payload"]["changes"]["priority"], "urgent");

    // A message that does not match is left alone.
    let (case_id, message_id) = inbound(&server, "ruhig@example.de", "Frage", "Wann kommt die nächste Rechnung?").await;
    let (case, _) = analysed(&server, case_id, message_id, Duration::from_secs(20)).await;
    assert_eq!((case["priority"].as_str(), case["tags"].clone()), (Some("normal"), json!([])));

    // Bad rules are refused with the field.
    for (body, field) in [
        (json!({ "name": "", "actions": [{ "type": "mark_spam" }] }), "name"),
        (json!({ "name": "x", "actions": [] }), "actions"),
        (json!({ "name": "x", "actions": [{ "type": "set_team", "team_id": 9999 }] }), "actions.team_id"),
        (
            json!({ "name": "x", "conditions": { "min_confidence": 2 }, "actions": [{ "type": "mark_spam" }] }),
            "conditions.min_confidence",
        ),
    ] {
        let (s, r) = server.call("POST", "/api/v1/rules", Some(body)).await;
        assert_eq!((s, error_field(&r)), (422, field), "{r}");
    }
    let (s, _) = server
        .call("POST", "/api/v1/rules", Some(json!({ "name": "x", "actions": [{ "type": "launch_rocket" }] })))
        .await;
    assert_eq!(s, 422, "unknown action types are refused");
    let agent = server.token("agent", kontor_core::Role::Agent).await;
    let (s, _) = server
        .call_as(&agent, "POST", "/api/v1/rules", Some(json!({ "name": "x", "actions": [{ "type": "mark_spam" }] })))
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn a_dry_run_shows_what_a_rule_would_have_done_and_changes_nothing() {
    let server = start().await;
    let mut last = (0, 0);
    for (i, text) in
        ["Gewinnen Sie jetzt 1000 Euro! Klicken Sie hier", "Meine Rechnung ist zu hoch", "Gratis Gewinn, jetzt klicken"]
            .iter()
            .enumerate()
    {
        last = inbound(&server, &format!("s{i}@example.org"), "", text).await;
    }
    analysed(&server, last.0, last.1, Duration::from_secs(20)).await;
    let (_, rule) = server
        .call(
            "POST",
            "/api/v1/rules",
            Some(json!({ "name": "Spam", "enabled": false, "conditions": { "keywords": ["klicken"] },
                         "actions": [{ "type": "mark_spam" }] })),
        )
        .await;
    let (s, run) = server.call("POST", &format!("/api/v1/rules/{}/dry-run", rule["id"]), None).await;
    assert_eq!(s, 200, "{run}");
    assert_eq!((run["examined"].as_u64(), run["matched"].as_u64()), (Some(3), Some(2)), "{run}");
    assert_eq!(run["matches"][0]["actions"], json!([{ "type": "mark_spam" }]));
    let (_, cases) = server.call("GET", "/api/v1/cases?status=closed", None).await;
    assert_eq!(cases["items"], json!([]), "a dry run changes nothing");
    let (s, _) = server.call("POST", "/api/v1/rules/99999/dry-run", None).await;
    assert_eq!(s, 404);

    // Business hours: set, read back, refused when wrong; a rule can ask "outside".
    let hours = json!({ "business_hours": { "timezone": "Europe/Berlin", "days": { "mon": [["08:00", "18:00"]] } } });
    let (s, r) = server.call("PUT", "/api/v1/assist/business-hours", Some(hours.clone())).await;
    assert_eq!(s, 200, "{r}");
    let (_, r) = server.call("GET", "/api/v1/assist/business-hours", None).await;
    assert_eq!(r, hours);
    let bad = json!({ "business_hours": { "timezone": "Mars/Base", "days": {} } });
    let (s, r) = server.call("PUT", "/api/v1/assist/business-hours", Some(bad)).await;
    assert_eq!((s, error_field(&r)), (422, "business_hours"), "{r}");
}

#[tokio::test]
async fn replies_on_a_public_channel_wait_for_a_second_staff_user_and_negative_posts_raise_an_alert() {
    let recorder = std::sync::Arc::new(Recorder::default());
    let fake = recorder.clone();
    let server = TestServer::start_with(
        |c| {
            c.jobs.poll_ms = 20;
            c.assist.public_channels = vec![kontor_core::Channel::Api];
        },
        move |state| {
            let mut channels = kontor_channels::registry(&state.config.channels()).unwrap();
            channels.add_outbound(fake);
            state.channels = std::sync::Arc::new(channels);
        },
    )
    .await
    .with_staff()
    .await;
    let anna = server.sign_in("anna@example.de", kontor_testkit::server::PASSWORD).await.unwrap();
    let ben = server.sign_in("ben@example.de", kontor_testkit::server::PASSWORD).await.unwrap();
    let (anna, ben) = ((anna.0.as_str(), anna.1.as_str()), (ben.0.as_str(), ben.1.as_str()));

    // A negative public post raises an alert on its case.
    let (case_id, message_id) = inbound(
        &server,
        "kritik@example.de",
        "Bewertung",
        "Schrecklicher Service, ich bin sehr enttäuscht und wütend!",
    )
    .await;
    let (case, m) = analysed(&server, case_id, message_id, Duration::from_secs(20)).await;
    assert_eq!(m["analysis"]["sentiment"], "negative", "{m}");
    assert_eq!(case["alert"], "negative message on a public channel", "{case}");
    let (_, events) = server.call("GET", &format!("/api/v1/events?case_id={case_id}&limit=100"), None).await;
    assert!(events["items"].as_array().unwrap().iter().any(|e| e["type"] == "alert.raised"), "{events}");

    // Ben's reply is held, not sent.
    let (s, r) = server
        .call_in(
            ben,
            "POST",
            &format!("/api/v1/cases/{case_id}/replies"),
            Some(json!({ "text": "Das tut uns leid, wir melden uns.", "based_on_event_id": case["last_event_id"] })),
        )
        .await;
    assert_eq!((s, r["delivery_state"].as_str()), (202, Some("pending_approval")), "{r}");
    let reply_id = r["message_id"].as_i64().unwrap();
    let (s, list) = server.call_in(anna, "GET", "/api/v1/approvals", None).await;
    assert_eq!(s, 200, "{list}");
    let approval =
        list["items"].as_array().unwrap().iter().find(|a| a["message_id"] == reply_id).expect("listed").clone();
    assert_eq!(approval["reason"], "public channel");
    let path = |what: &str| format!("/api/v1/approvals/{}/{what}", approval["id"]);

    // Not by its author, not by an API token, not without a reason when rejecting.
    let (s, r) = server.call_in(ben, "POST", &path("approve"), Some(json!({}))).await;
    assert_eq!(s, 403, "{r}");
    let (s, _) = server.call("POST", &path("approve"), Some(json!({}))).await;
    assert_eq!(s, 403, "a token is not a second person");
    let (s, r) = server.call_in(anna, "POST", &path("reject"), Some(json!({}))).await;
    assert_eq!((s, error_field(&r)), (422, "comment"), "{r}");
    assert!(recorder.sent.lock().unwrap().is_empty(), "nothing sent while held");

    // Anna approves: it is sent; deciding again is a conflict.
    let (s, r) = server.call_in(anna, "POST", &path("approve"), Some(json!({ "comment": "passt" }))).await;
    assert_eq!((s, r["status"].as_str()), (200, Some("approved")), "{r}");
    server.wait_delivery(&json!(case_id), &json!(reply_id), "sent", Duration::from_secs(20)).await;
    let (s, _) = server.call_in(anna, "POST", &path("reject"), Some(json!({ "comment": "doch nicht" }))).await;
    assert_eq!(s, 409);

    // A rejected reply is never sent; both decisions are in the case history.
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
    let (s, r) = server
        .call_in(
            ben,
            "POST",
            &format!("/api/v1/cases/{case_id}/replies"),
            Some(json!({ "text": "Zweiter Versuch", "based_on_event_id": case["last_event_id"] })),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    let second = r["message_id"].as_i64().unwrap();
    let (_, list) = server.call_in(anna, "GET", "/api/v1/approvals", None).await;
    let pending = list["items"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "the approved one is no longer pending: {list}");
    let (s, r) = server
        .call_in(
            anna,
            "POST",
            &format!("/api/v1/approvals/{}/reject", pending[0]["id"]),
            Some(json!({ "comment": "Ton unpassend" })),
        )
        .await;
    assert_eq!((s, r["status"].as_str()), (200, Some("rejected")), "{r}");
    let (_, case) = server.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
    let m = case["messages"].as_array().unwrap().iter().find(|m| m["id"] == second).unwrap().clone();
    assert_eq!(m["delivery_state"], "rejected");
    assert_eq!(recorder.sent.lock().unwrap().len(), 1);
    let (_, events) = server.call("GET", &format!("/api/v1/events?case_id={case_id}&limit=100"), None).await;
    let kinds: Vec<&str> = events["items"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "approval.requested").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "approval.decided").count(), 2, "{kinds:?}");
}

#[tokio::test]
async fn a_rule_can_require_four_eyes_for_a_case() {
    let (server, recorder) = start_recording().await;
    let server = server.with_staff().await;
    let ben = server.sign_in("ben@example.de", kontor_testkit::server::PASSWORD).await.unwrap();
    let (s, r) = server
        .call(
            "POST",
            "/api/v1/rules",
            Some(json!({ "name": "Kündigungen prüfen", "conditions": { "intents": ["cancellation"] },
                         "actions": [{ "type": "require_approval" }] })),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let (case_id, message_id) = inbound(
        &server,
        "weg@example.de",
        "Kündigung",
        "Hiermit kündige ich meinen Vertrag fristgerecht zum Monatsende.",
    )
    .await;
    let (case, _) = analysed(&server, case_id, message_id, Duration::from_secs(20)).await;
    assert_eq!(case["approval_rule"], "Kündigungen prüfen", "{case}");
    let (s, r) = server
        .call_in(
            (ben.0.as_str(), ben.1.as_str()),
            "POST",
            &format!("/api/v1/cases/{case_id}/replies"),
            Some(json!({ "text": "Schade!", "based_on_event_id": case["last_event_id"] })),
        )
        .await;
    assert_eq!((s, r["delivery_state"].as_str()), (202, Some("pending_approval")), "{r}");
    let (_, list) = server.call("GET", "/api/v1/approvals", None).await;
    assert_eq!(list["items"][0]["reason"], "rule: Kündigungen prüfen");
    assert!(recorder.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_old_backlog_is_analysed_but_rules_leave_its_cases_alone() {
    let server = TestServer::start(|c| {
        c.jobs.poll_ms = 20;
        c.assist.analyse = false;
    })
    .await;
    let (s, r) = server
        .call(
            "POST",
            "/api/v1/rules",
            Some(json!({ "name": "Spam", "conditions": { "keywords": ["gewinn"] }, "actions": [{ "type": "mark_spam" }] })),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let old = inbound(&server, "alt@example.org", "", "Ihr Gewinn wartet, jetzt klicken").await;
    // Received two hours ago (an installation that ran without the assistant).
    let two_hours_ago = kontor_core::Timestamp::now().as_micros() - 2 * 3_600_000_000;
    let id = old.1;
    server
        .store
        .write(move |tx| {
            tx.conn
                .execute("UPDATE messages SET created_at = ? WHERE id = ?", &kontor_store::params![two_hours_ago, id])
        })
        .await
        .unwrap();
    let fresh = inbound(&server, "neu@example.org", "", "Ihr Gewinn wartet, jetzt klicken").await;
    server
        .start_node(|state| {
            let mut config = (*state.config).clone();
            config.assist.analyse = true;
            state.config = std::sync::Arc::new(config);
        })
        .await;
    let (case, _) = analysed(&server, fresh.0, fresh.1, Duration::from_secs(20)).await;
    assert_eq!(case["status"], "closed", "a fresh message meets the rule: {case}");
    let (case, m) = analysed(&server, old.0, old.1, Duration::from_secs(20)).await;
    assert!(m["analysis"]["intent"].is_string());
    assert_eq!(case["status"], "open", "the old message is analysed, its case left alone: {case}");
}

#[tokio::test]
async fn an_unreadable_stored_analysis_does_not_break_the_case_and_dry_runs_are_for_admins() {
    let server = start().await;
    let (case_id, message_id) = inbound(&server, "x@example.org", "Frage", "Wann kommt meine Rechnung?").await;
    analysed(&server, case_id, message_id, Duration::from_secs(20)).await;
    server
        .store
        .write(move |tx| {
            tx.conn.execute(
                "UPDATE message_analysis SET data = 'not json' WHERE message_id = ?",
                &kontor_store::params![message_id],
            )
        })
        .await
        .unwrap();
    let (s, case) = server.call("GET", &format!("/api/v1/cases/{case_id}"), None).await;
    assert_eq!(s, 200, "{case}");
    assert!(case["messages"][0].get("analysis").is_none(), "{case}");

    let (_, rule) = server
        .call(
            "POST",
            "/api/v1/rules",
            Some(json!({ "name": "x", "enabled": false, "actions": [{ "type": "mark_spam" }] })),
        )
        .await;
    let agent = server.token("agent", kontor_core::Role::Agent).await;
    let (s, _) = server.call_as(&agent, "POST", &format!("/api/v1/rules/{}/dry-run", rule["id"]), None).await;
    assert_eq!(s, 403, "a dry run reads every team's messages");
}
