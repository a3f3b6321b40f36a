//! The channel contract through the real server: a fake SMS channel registered like any other
//! gets its webhook mounted (signature checked, messages committed before the answer, delivery
//! reports applied in order), its sender used by the delivery job, and its status shown to
//! admins; typed jobs are dispatched through the job registry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kontor_channel::{Outbound, OutboundMessage, SendError, SendReceipt};
use kontor_core::{Channel, IdentityKind, Role};
use kontor_server::jobs::{Job, JobRegistry, JobResult, JobRun};
use kontor_server::AppState;
use kontor_store::jobs::JobPayload;
use kontor_testkit::fake_sms::{FakeSmsWebhook, TOKEN};
use kontor_testkit::server::TestServer;
use serde_json::{json, Value};

/// Records what it sends; fails the first send with a retryable error.
#[derive(Default)]
struct FakeSmsSender {
    sent: Mutex<Vec<OutboundMessage>>,
    calls: Mutex<u32>,
}

#[async_trait::async_trait]
impl Outbound for FakeSmsSender {
    fn channel(&self) -> Channel {
        Channel::Sms
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let first = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls == 1
        };
        if first {
            return Err(SendError::Retryable("gateway busy".into()));
        }
        self.sent.lock().unwrap().push(message.clone());
        Ok(SendReceipt { provider_message_id: Some(format!("sms-{}", message.message_id)) })
    }
}

/// A job kind only this test knows: its effect appends an event, committed with its outcome.
#[derive(serde::Serialize, serde::Deserialize)]
struct Touch {
    label: String,
}

impl JobPayload for Touch {
    const KIND: &'static str = "test_touch";
}

#[async_trait::async_trait]
impl Job for Touch {
    async fn run(&self, _state: &AppState, _run: JobRun) -> JobResult {
        let label = self.label.clone();
        JobResult::done().with_effect(Arc::new(move |tx, finish| {
            // Any kind will do; the payload tells this effect's event apart.
            let payload = json!({ "key": "test.touched", "label": label, "attempts": finish.attempts });
            tx.event(kontor_core::EventKind::SettingsUpdated, None, None, &payload)?;
            Ok(())
        }))
    }
}

/// A job kind no handler is registered for.
#[derive(serde::Serialize, serde::Deserialize)]
struct Orphan {}

impl JobPayload for Orphan {
    const KIND: &'static str = "test_orphan";
}

struct App {
    server: TestServer,
    agent: String,
    sender: Arc<FakeSmsSender>,
}

async fn start() -> App {
    let sender = Arc::new(FakeSmsSender::default());
    let fake = sender.clone();
    let server = TestServer::start_with(
        |c| {
            c.jobs.poll_ms = 20;
            c.jobs.backoff_base_ms = 10;
            c.jobs.backoff_max_ms = 20;
        },
        move |state| {
            let mut channels = kontor_channels::registry(&state.config.channels()).unwrap();
            channels.add_webhook(Arc::new(FakeSmsWebhook)).add_outbound(fake);
            state.channels = Arc::new(channels);
            let mut jobs = JobRegistry::standard();
            jobs.register::<Touch>();
            state.jobs = Arc::new(jobs);
        },
    )
    .await;
    let agent = server.token("agent", Role::Agent).await;
    App { server, agent, sender }
}

impl App {
    async fn hook(&self, path: &str, token: &str, body: Value) -> (u16, String) {
        let r = self
            .server
            .http
            .post(self.server.url(&format!("/webhooks/{path}")))
            .header("x-fake-token", token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.server.call(method, path, body).await
    }

    async fn messages_of_first_case(&self) -> (i64, Vec<Value>, i64) {
        let (_, cases) = self.admin("GET", "/api/v1/cases", None).await;
        let case_id = cases["items"][0]["id"].as_i64().expect("a case");
        let (_, case) = self.admin("GET", &format!("/api/v1/cases/{case_id}"), None).await;
        (case_id, case["messages"].as_array().cloned().unwrap_or_default(), case["last_event_id"].as_i64().unwrap())
    }

    async fn wait_state(&self, case_id: i64, id: i64, state: &str) -> Value {
        self.server.wait_delivery(&json!(case_id), &json!(id), state, Duration::from_secs(10)).await
    }
}

#[tokio::test]
async fn a_registered_channel_gets_its_webhook_mounted_and_its_sender_used() {
    let app = start().await;

    // A forged request stores nothing.
    let (s, _) =
        app.hook("sms/inbound", "wrong", json!({ "from": "+491701234567", "text": "Hallo", "id": "in-1" })).await;
    assert_eq!(s, 401);
    let (_, cases) = app.admin("GET", "/api/v1/cases", None).await;
    assert_eq!(cases["items"].as_array().map(Vec::len), Some(0), "a forged webhook stored something");

    // Malformed, unknown path, unknown channel.
    let (s, _) = app.hook("sms/inbound", TOKEN, json!({ "text": "no sender" })).await;
    assert_eq!(s, 400);
    let (s, _) = app.hook("sms/inbound", TOKEN, json!({ "from": "keine Nummer", "text": "x", "id": "bad" })).await;
    assert_eq!(s, 422, "a sender that is no phone number is refused");
    let (s, _) = app.hook("sms/elsewhere", TOKEN, json!({})).await;
    assert_eq!(s, 404);
    let (s, _) = app.hook("telegram/inbound", TOKEN, json!({})).await;
    assert_eq!(s, 404);

    // A real one is committed before the 200; a redelivery is a no-op.
    let body = json!({ "from": "+49 170 1234567", "text": "Wann kommt der Techniker?", "id": "in-1" });
    assert_eq!(app.hook("sms/inbound", TOKEN, body.clone()).await.0, 200);
    assert_eq!(app.hook("sms/inbound", TOKEN, body).await.0, 200);
    let (case_id, messages, last_event_id) = app.messages_of_first_case().await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["channel"], "sms");

    // A challenge is answered as the channel says.
    let r = app.server.http.get(app.server.url("/webhooks/sms/verify?challenge=abc123")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "abc123");

    // A reply goes out through the channel's sender (after one retryable failure).
    let (s, r) = app
        .admin(
            "POST",
            &format!("/api/v1/cases/{case_id}/replies"),
            Some(json!({ "text": "Morgen zwischen 8 und 12 Uhr.", "based_on_event_id": last_event_id })),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    let reply_id = r["message_id"].as_i64().unwrap();
    let m = app.wait_state(case_id, reply_id, "sent").await;
    assert_eq!(m["provider_message_id"], format!("sms-{reply_id}"));
    {
        let sent = app.sender.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].text, "Morgen zwischen 8 und 12 Uhr.");
        assert_eq!(sent[0].to.address(IdentityKind::Phone), Some("+491701234567"));
        assert_eq!(sent[0].thread, vec!["in-1".to_string()]);
    }

    // Status callbacks move the state forward only.
    let pid = format!("sms-{reply_id}");
    assert_eq!(app.hook("sms/status", TOKEN, json!({ "id": pid, "status": "read" })).await.0, 200);
    app.wait_state(case_id, reply_id, "read").await;
    for late in ["sent", "delivered", "failed"] {
        assert_eq!(app.hook("sms/status", TOKEN, json!({ "id": pid, "status": late })).await.0, 200);
    }
    // A report for a message Kontor never sent is accepted and changes nothing.
    assert_eq!(app.hook("sms/status", TOKEN, json!({ "id": "unknown", "status": "read" })).await.0, 200);
    let (_, case) = app.admin("GET", &format!("/api/v1/cases/{case_id}"), None).await;
    let m = case["messages"].as_array().unwrap().iter().find(|m| m["id"] == reply_id).unwrap().clone();
    assert_eq!(m["delivery_state"], "read", "a late report overwrote read");

    // The events show each change once.
    let (_, events) = app.admin("GET", "/api/v1/events?limit=1000", None).await;
    let states: Vec<String> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "message.delivery" && e["payload"]["message_id"] == reply_id)
        .map(|e| e["payload"]["state"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(states, vec!["sent", "read"]);

    // Admins see the channels; agents do not.
    let (s, status) = app.admin("GET", "/api/v1/channels", None).await;
    assert_eq!(s, 200);
    assert_eq!(status["outbound"], json!(["api", "sms"]));
    assert_eq!(status["webhooks"], json!(["sms"]));
    let (s, _) = app.server.call_as(&app.agent, "GET", "/api/v1/channels", None).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn a_failed_delivery_report_marks_a_sent_message_failed_with_the_reason() {
    let app = start().await;
    let body = json!({ "from": "+491709876543", "text": "Bitte zurückrufen", "id": "in-2" });
    assert_eq!(app.hook("sms/inbound", TOKEN, body).await.0, 200);
    let (case_id, _, last_event_id) = app.messages_of_first_case().await;
    let (_, r) = app
        .admin(
            "POST",
            &format!("/api/v1/cases/{case_id}/replies"),
            Some(json!({ "text": "Wir rufen an.", "based_on_event_id": last_event_id })),
        )
        .await;
    let reply_id = r["message_id"].as_i64().unwrap();
    app.wait_state(case_id, reply_id, "sent").await;
    let report = json!({ "id": format!("sms-{reply_id}"), "status": "failed", "error": "number not reachable" });
    assert_eq!(app.hook("sms/status", TOKEN, report).await.0, 200);
    let m = app.wait_state(case_id, reply_id, "failed").await;
    assert_eq!(m["delivery_error"], "number not reachable");
}

#[tokio::test]
async fn jobs_run_through_the_registry_and_unknown_kinds_go_to_the_dead_letter() {
    let app = start().await;
    app.server
        .store
        .write(|tx| {
            kontor_store::jobs::enqueue_job(tx, &Touch { label: "eins".into() }, 3, 0)?;
            kontor_store::jobs::enqueue_job(tx, &Orphan {}, 3, 0)
        })
        .await
        .unwrap();
    for _ in 0..500 {
        let (_, jobs) = app.admin("GET", "/api/v1/jobs", None).await;
        if jobs["done"] == 1 && jobs["dead"] == 1 {
            let (_, events) = app.admin("GET", "/api/v1/events?limit=1000", None).await;
            let touched: Vec<&Value> =
                events["items"].as_array().unwrap().iter().filter(|e| e["payload"]["key"] == "test.touched").collect();
            assert_eq!(touched.len(), 1, "the effect is committed exactly once");
            assert_eq!(touched[0]["payload"]["label"], "eins");
            assert_eq!(touched[0]["payload"]["attempts"], 1);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("jobs did not finish");
}
